"""The one exception type deepres raises for bad input (files, names, arguments)."""


class DeepresError(Exception):
    """A user-facing error: the message names the file or value at fault and the fix."""
