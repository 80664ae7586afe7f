"""Errors that the CLI turns into one clear line and a non-zero exit."""


class UserError(Exception):
    """Bad input, a bad run directory or a bad option: printed as one line, exit status 2."""
