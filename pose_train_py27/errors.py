# -*- coding: utf-8 -*-
"""The one error type that reaches the user, in both runtimes.

Bad input or environment is raised as InputError (or a subclass: pose_train.errors.UserError,
VerifyError, CheckpointError) wherever it is found, and printed as one line with its exit
code at one boundary per runtime: pose_train.cli.main, and pose_train_py27.__main__ in the
legacy image. Nothing in between translates one error type into another.
"""


class InputError(Exception):
    """Bad input or environment: printed as one line, exit code ``code`` (2: bad input)."""

    def __init__(self, message="", code=2):
        super(InputError, self).__init__(message)
        self.code = code
