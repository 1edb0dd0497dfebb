"""Corpora that come from the internet, downloaded once and cached on disk.

Shakespeare ships inside a package (see ``gpt_core.data.shakespeare_text``) and works offline. The book's
short story "The Verdict" (Edith Wharton, 1908, public domain) is fetched from the book's repository the first
time it is asked for, then read from the cache:

    >>> text = the_verdict_text()  # the first call needs the internet  # doctest: +SKIP
    >>> len(text)  # doctest: +SKIP
    20479

Cache folder: ``$LLM_LAB_CACHE`` when set, else ``~/.cache/llm_lab``.

Integrity check for The Verdict. No published sha256 of the file could be confirmed while this module was
written (it was written without internet access), so the check is:

1. the size must be ``VERDICT_SIZE`` bytes (20,479: the length the book prints), and
2. on the first successful download the file's sha256 is recorded in a sidecar file
   (``the-verdict.txt.sha256``); every later read of the cache must match it ("trust on first use").

If you know the true hash, set ``VERDICT_SHA256`` below and the download is checked against it instead.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

VERDICT_URL = (
    "https://raw.githubusercontent.com/rasbt/LLMs-from-scratch/main/ch02/01_main-chapter-code/the-verdict.txt"
)
VERDICT_FILENAME = "the-verdict.txt"
VERDICT_SIZE = 20479  # bytes; the book prints len(raw_text) == 20479 (plain ASCII, no trailing newline)
VERDICT_SHA256: str | None = None  # unknown when written; see the module docstring (recorded on first download)

DEFAULT_MAX_BYTES = 50 * 1024 * 1024  # a downloaded corpus larger than 50 MB is refused
TIMEOUT_S = 20.0
OFFLINE_MESSAGE = "The Verdict needs the internet once; Shakespeare works offline."


def cache_dir() -> Path:
    """The folder where downloads are kept: ``$LLM_LAB_CACHE`` or ``~/.cache/llm_lab`` (created if needed)."""
    folder = Path(os.environ.get("LLM_LAB_CACHE") or Path.home() / ".cache" / "llm_lab")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def sha256_of(data: bytes) -> str:
    """Hex sha256 of some bytes, e.g. ``sha256_of(b"")`` -> ``'e3b0c442...b855'``."""
    return hashlib.sha256(data).hexdigest()


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary file in the same folder, then rename: readers never see half a file."""
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as tmp_file:
            tmp_file.write(data)
            tmp_file.flush()
            os.fsync(tmp_file.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def _fetch(url: str, max_bytes: int, offline_message: str) -> bytes:
    """Download ``url`` into memory, refusing more than ``max_bytes``; network trouble -> ConnectionError."""
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
            data = response.read(max_bytes + 1)
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise ConnectionError(f"Could not download {url} ({reason}). {offline_message}") from err
    if len(data) > max_bytes:
        raise ValueError(f"The download from {url} is larger than the limit of {max_bytes:,} bytes.")
    return data


def download_cached(
    url: str,
    filename: str,
    sha256: str | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    *,
    size: int | None = None,
    offline_message: str = "Check the internet connection and try again.",
) -> Path:
    """Return the path of ``filename`` in the cache, downloading ``url`` first if it is not there yet.

    - ``sha256``: expected hex digest. A download that does not match raises ValueError and nothing is cached.
      A cached file that does not match (corrupted, or an older version) is downloaded again.
    - ``size``: expected number of bytes, checked the same way.
    - ``max_bytes``: refuse bigger downloads (protects the server from a huge file).
    - The file appears atomically (temporary file + rename), so a killed download leaves no half file.
    """
    path = cache_dir() / filename
    if path.exists() and _matches(path.read_bytes(), sha256, size):
        return path
    data = _fetch(url, max_bytes, offline_message)
    if size is not None and len(data) != size:
        raise ValueError(f"The download from {url} has {len(data):,} bytes, expected {size:,}. Nothing was saved.")
    if sha256 is not None and sha256_of(data) != sha256.lower():
        raise ValueError(
            f"The download from {url} does not match its expected sha256 checksum "
            f"(got {sha256_of(data)}, expected {sha256.lower()}). Nothing was saved."
        )
    _atomic_write_bytes(path, data)
    return path


def _matches(data: bytes, sha256: str | None, size: int | None) -> bool:
    if size is not None and len(data) != size:
        return False
    return sha256 is None or sha256_of(data) == sha256.lower()


def the_verdict_path(url: str = VERDICT_URL) -> Path:
    """Download (once) and return the cached path of the-verdict.txt, checked as described in the module docstring."""
    sidecar = cache_dir() / (VERDICT_FILENAME + ".sha256")
    expected = VERDICT_SHA256
    if expected is None and sidecar.exists():
        expected = sidecar.read_text().strip() or None
    path = download_cached(url, VERDICT_FILENAME, sha256=expected, size=VERDICT_SIZE, offline_message=OFFLINE_MESSAGE)
    if expected is None:  # first successful download: remember what we got (trust on first use)
        _atomic_write_bytes(sidecar, (sha256_of(path.read_bytes()) + "\n").encode())
    return path


def the_verdict_text(url: str = VERDICT_URL) -> str:
    """The text of "The Verdict" (20,479 characters), the book's chapter 2-5 training story."""
    return the_verdict_path(url).read_text(encoding="utf-8")
