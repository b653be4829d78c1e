"""The one exception type for errors a user can cause (bad names, malformed files, bad options).

It lives in `datasets`, the bottom of the import chain, so every package can raise it and the
CLI can turn it into one line on stderr and exit code 2.
"""


class FusebenchError(ValueError):
    """A problem with the user's input: unknown name, malformed file, bad parameter."""
