"""Writing files so that a reader (or a run killed mid-write) never sees half of one, and sizes in words.

Everything is first written to a temporary file in the same folder (``.NAME.<random>.tmp``), then renamed into
place: on one file system a rename is atomic, so the old file or the new one is there, never a mix. A process
killed between the two leaves its temporary file behind; ``remove_temp_files`` clears a folder of them.

    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "latest.txt"
    >>> write_text_atomically(path, "step-000200\\n")
    >>> path.read_text()
    'step-000200\\n'
    >>> (path.parent / ".latest.txt.k3j9.tmp").write_text("half")   # what a killed writer leaves
    4
    >>> [p.name for p in remove_temp_files(path.parent)], sorted(p.name for p in path.parent.iterdir())
    (['.latest.txt.k3j9.tmp'], ['latest.txt'])
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from collections.abc import Callable
from pathlib import Path

TEMP_PATTERNS = (".*.tmp", "*.tmp-*", ".tmp-*")  # write_atomically's files, and temporary folders (.tmp-step-...)


def _new_temp_file(path: Path) -> Path:
    """An empty new file ``.NAME.<random>.tmp`` next to ``path``, with the permissions ``open`` would give it
    (``tempfile.mkstemp`` makes files only their owner can read: a saved model should not be)."""
    while True:
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
        try:
            os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))  # the umask applies
            return tmp
        except FileExistsError:
            continue


def write_atomically(path: str | Path, write: Callable[[str], None]) -> None:
    """``write(tmp_path)`` fills a temporary file next to ``path``, which is then renamed to ``path``."""
    path = Path(path)
    tmp = str(_new_temp_file(path))
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


def remove_temp_files(folder: str | Path) -> list[Path]:
    """Delete the temporary files and folders (``TEMP_PATTERNS``) that writers killed mid-write left in
    ``folder``; return what was deleted. Call it only on a folder no other process is writing to."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = sorted({p for pattern in TEMP_PATTERNS for p in folder.glob(pattern)})
    for stale in removed:
        if stale.is_dir() and not stale.is_symlink():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                stale.unlink()
    return removed


def human_size(n_bytes: float) -> str:
    """A size in words a student reads at a glance.

    >>> human_size(2_500_000)
    '2.5 MB'
    """
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n_bytes >= size:
            return f"{n_bytes / size:.1f} {unit}"
    return f"{n_bytes:.0f} bytes"
