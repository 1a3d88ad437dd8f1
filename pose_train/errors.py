"""The one exception type that reaches the user as a single line (see cli.main)."""


class UserError(Exception):
    """Bad input or environment: printed as one line, exit code ``code``, no traceback."""

    def __init__(self, message, code=2):
        super().__init__(message)
        self.code = code
