"""The one exception type that reaches the user as a clear message (no traceback)."""


class PianoedgeError(Exception):
    """A problem the user can fix; the message names the problem and the fix."""
