"""The one exception type deepres raises for bad input (files, names, arguments), and
``first_line`` to quote another exception briefly."""


class DeepresError(Exception):
    """A user-facing error: the message names the file or value at fault and the fix."""


def first_line(error: BaseException) -> str:
    """The first non-empty line of ``str(error)`` (a traceback-sized message quoted in one
    line), or the exception type's name when its text is empty."""
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__
