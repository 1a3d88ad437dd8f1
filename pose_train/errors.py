"""The one exception type that reaches the user as a single line (see cli.main)."""


class UserError(Exception):
    """Bad input or environment: printed as one line, exit code ``code``, no traceback."""

    def __init__(self, message, code=2):
        super().__init__(message)
        self.code = code


class Interrupted(KeyboardInterrupt):
    """Ctrl-C or a SIGTERM: stop cleanly and exit 128 + the signal number, as a shell does."""

    def __init__(self, signum=2):
        super().__init__()
        self.signum = signum


def interrupt_exit_code(err):
    return 128 + getattr(err, "signum", 2)   # a bare KeyboardInterrupt is SIGINT (2)
