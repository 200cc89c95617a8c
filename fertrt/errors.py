"""The one exception type the CLI turns into a clean message instead of a traceback."""


class FertrtError(Exception):
    """A user-facing error: bad input, missing optional package, unsupported option.

    The message must say which file or option is at fault and what was expected.
    """
