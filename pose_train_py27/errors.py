# -*- coding: utf-8 -*-
"""The error type of the Python 2.7 side's input checks."""


class InputError(Exception):
    """A bad input: printed as one line, exit code 2."""
