"""Errors that a user can act on, apart from ValueError and OSError (no heavy imports: the CLI catches these)."""


class OwlearnError(Exception):
    """An error whose message tells the user what to change; the CLI prints the message without a traceback."""
