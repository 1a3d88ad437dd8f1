"""The error that reaches the user as one line: pose_train_py27's InputError, under the name
the modern code raises (see pose_train_py27/errors.py and cli.main)."""
from pose_train_py27.errors import InputError


class UserError(InputError):
    """Bad input or environment: printed as one line, exit code ``code``, no traceback."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C or a SIGTERM: stop cleanly and exit 128 + the signal number, as a shell does."""

    def __init__(self, signum=2):
        super().__init__()
        self.signum = signum


def interrupt_exit_code(err):
    return 128 + getattr(err, "signum", 2)   # a bare KeyboardInterrupt is SIGINT (2)
