"""The one setting of the fast layer: run the book layer alone ("plain") or with the speed-ups (the default).

``LLM_LAB_PLAIN=1`` in the environment means "book layer only". It is read on every call, so a test, a CLI
flag (``--plain``) or a worker process can switch it at any time:

>>> with use_plain(True):
...     plain_mode()
True
>>> with use_plain(False):
...     plain_mode()
False
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

PLAIN_ENV = "LLM_LAB_PLAIN"
_TRUE_WORDS = {"1", "true", "yes", "on"}


def plain_mode() -> bool:
    """True when ``LLM_LAB_PLAIN`` says "book layer only" (``1``, ``true``, ``yes`` or ``on``)."""
    return os.environ.get(PLAIN_ENV, "").strip().lower() in _TRUE_WORDS


def set_plain(plain: bool) -> None:
    """Switch the book layer alone on (``True``) or off (``False``) for this process and its children."""
    os.environ[PLAIN_ENV] = "1" if plain else "0"


@contextmanager
def use_plain(plain: bool = True) -> Iterator[None]:
    """``with use_plain(True): ...`` runs the block with the book layer alone, then restores the setting."""
    before = os.environ.get(PLAIN_ENV)
    set_plain(plain)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(PLAIN_ENV, None)
        else:
            os.environ[PLAIN_ENV] = before
