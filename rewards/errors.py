"""User-facing errors: one line that names the problem and how to fix it."""


class UserError(Exception):
    """An error the user caused (bad config, bad file, unreachable endpoint).

    Entry points print ``str(error)`` as a single line and exit non-zero, without a traceback.
    """
