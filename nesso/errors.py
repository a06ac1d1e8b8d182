"""The one exception type that user-facing entry points turn into a clear one-line message."""


class NessoError(Exception):
    """A problem with the user's input or environment, phrased so that it says what to fix."""
