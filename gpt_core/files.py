"""Writing files so that a reader (or a run killed mid-write) never sees half of one, and sizes in words.

Everything is first written to a temporary file in the same folder, then renamed into place: on one file
system a rename is atomic, so the old file or the new one is there, never a mix.

    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "latest.txt"
    >>> write_text_atomically(path, "step-000200\\n")
    >>> path.read_text()
    'step-000200\\n'
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def write_atomically(path: str | Path, write: Callable[[str], None]) -> None:
    """``write(tmp_path)`` fills a temporary file next to ``path``, which is then renamed to ``path``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


def write_bytes_atomically(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically, flushed to disk before the rename."""
    def write(tmp: str) -> None:
        with open(tmp, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())

    write_atomically(path, write)


def write_text_atomically(path: str | Path, text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    write_bytes_atomically(path, text.encode("utf-8"))


def human_size(n_bytes: float) -> str:
    """A size in words a student reads at a glance.

    >>> human_size(2_500_000)
    '2.5 MB'
    """
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n_bytes >= size:
            return f"{n_bytes / size:.1f} {unit}"
    return f"{n_bytes:.0f} bytes"
