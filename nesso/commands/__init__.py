"""CLI subcommands: one module per stage, each with ``register(subparsers)``."""
