"""The one exception type that reaches the user as a one-line message."""


class SarbError(Exception):
    """A problem with the user's input: the CLI prints ``sarb: error: <message>`` and exits 2.

    The message must name the offending file (and line) or value, so that it can be fixed
    without a traceback.
    """
