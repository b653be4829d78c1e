"""The one exception type for errors a user can cause (bad names, malformed files, bad options).

It lives in `datasets`, the bottom of the import chain, so every package can raise it and the
CLI can turn it into one line on stderr and exit code 2.
"""


class FusebenchError(ValueError):
    """A problem with the user's input: unknown name, malformed file, bad parameter."""


class EnvironmentFault(FusebenchError):
    """A problem with the machine rather than the input: a results folder that is a file, a
    file where a folder belongs (the CLI's exit code 3, like an OSError such as a full disk)."""
