"""The one exception type that reaches the user as a one-line message."""

import reprlib


class SarbError(Exception):
    """A problem with the user's input: the CLI prints ``sarb: error: <message>`` and exits 2.

    The message must name the offending file (and line) or value, so that it can be fixed
    without a traceback.
    """


def quote(value: object, limit: int = 60) -> str:
    """``repr(value)``, at most ``limit`` characters: a message quotes a bad value without
    formatting all of it (a YAML alias bomb, a megabyte string)."""
    short = reprlib.Repr()
    short.maxlevel, short.maxstring, short.maxother = 2, limit, limit
    text = short.repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
