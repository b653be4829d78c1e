"""How a dataset is named where a name is a place: ``mmrec:PATH``, ``recbole:PATH``,
``catalogue:PATH`` and ``ALIAS=SPEC`` (the registry, the catalogue and the feature store all
read these; they are defined here once)."""

from __future__ import annotations

import re

MMREC_PREFIX = "mmrec:"
RECBOLE_PREFIX = "recbole:"
CATALOGUE_PREFIX = "catalogue:"
PATH_PREFIXES = (MMREC_PREFIX, RECBOLE_PREFIX, CATALOGUE_PREFIX)
ALIAS_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def split_alias(name: str) -> tuple[str | None, str]:
    """``ALIAS=SPEC`` -> (ALIAS, SPEC); any other name -> (None, name). Only a short word
    before ``=`` is an alias, so a folder path holding ``=`` is still a path."""
    head, sep, rest = name.partition("=")
    if sep and ALIAS_RE.fullmatch(head) and rest:
        return head, rest
    return None, name
