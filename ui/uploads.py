"""Files students upload: the only server files a handler may read.

An API client can send any server path as a file input's value
(``{"path": "/etc/passwd", "meta": {"_type": "gradio.FileData"}}``). Gradio refuses paths outside its upload
folder before it copies anything, but the upload folder also holds files that were never uploaded: other
students' downloads (checkpoint zips) are cached there too. So before a byte is read, ``uploaded_file`` checks:

1. the path lies inside Gradio's upload folder (``GRADIO_TEMP_DIR``, else ``/tmp/gradio``),
2. the server's ``/upload`` route received it (``Blocks.upload_file_set``): an upload, not a cached output,
3. it is a plain file (no link, no folder), with an allowed extension and at most ``max_bytes`` bytes.

A handler called from Python (tests, scripts) rather than through the running app has no upload record, so
only the last check applies: the caller already has the file system.
"""

from __future__ import annotations

import os
from pathlib import Path

from gradio.context import LocalContext
from gradio.utils import get_upload_folder, is_in_or_equal

from gpt_core.files import human_size


def _running_blocks():
    """The Blocks serving the current event, or None when the handler is called from plain Python."""
    blocks = LocalContext.blocks.get(None)
    return blocks if blocks is not None and getattr(blocks, "is_running", False) else None


def uploaded_file(value, *, what: str, suffixes: tuple[str, ...], max_bytes: int) -> Path:
    """The path of a file this student uploaded, checked before anything is read; else a plain ValueError.

    ``value`` is what a ``gr.File(type="filepath")`` input gives the handler (a path string, or None).
    """
    if not value:
        raise ValueError(f"Upload {what} first.")
    if not isinstance(value, str | os.PathLike):
        raise ValueError(f"That is not an uploaded file: upload {what} with the upload box.")
    path = Path(value)
    blocks = _running_blocks()
    if blocks is not None:
        inside = is_in_or_equal(os.path.abspath(path), get_upload_folder())
        if not inside or str(path) not in blocks.upload_file_set:
            raise ValueError(f"That file was not uploaded to this page, so it cannot be read: upload {what} "
                             f"with the upload box.")
    if path.is_symlink() or not path.is_file():
        raise ValueError(f"The uploaded file is gone from the server (uploads are cleaned after a while): "
                         f"upload {what} again.")
    if path.suffix.lower() not in suffixes:
        raise ValueError(f"{path.name} is not {what}: the file name must end in {' or '.join(suffixes)}.")
    size = path.stat().st_size
    if size > max_bytes:
        raise ValueError(f"{path.name} is {human_size(size)}; the limit is {human_size(max_bytes)}. "
                         f"Upload a smaller file.")
    return path


def read_upload(value, *, what: str, suffixes: tuple[str, ...], max_bytes: int) -> tuple[bytes, str]:
    """(the bytes, the file name) of a checked upload; at most ``max_bytes`` bytes are ever read."""
    path = uploaded_file(value, what=what, suffixes=suffixes, max_bytes=max_bytes)
    with path.open("rb") as handle:
        data = handle.read(max_bytes + 1)
    if len(data) > max_bytes:  # the file grew after the check
        raise ValueError(f"{path.name} is larger than {human_size(max_bytes)}. Upload a smaller file.")
    return data, path.name
