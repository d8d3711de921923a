"""Errors a user can act on: the CLI prints the message alone and exits non-zero."""


class UserError(Exception):
    """Something the user must fix; the message says what and how."""
