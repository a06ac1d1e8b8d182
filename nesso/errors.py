"""The one exception type that user-facing entry points turn into a clear one-line message."""


class NessoError(Exception):
    """A problem with the user's input or environment, phrased so that it says what to fix."""


def one_line(text: str, limit: int = 400) -> str:
    """``text`` with its whitespace runs collapsed to single spaces, cut to ``limit`` characters with "…" if longer:
    a model's output or a library's message quoted inside a line of ours."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "…"
