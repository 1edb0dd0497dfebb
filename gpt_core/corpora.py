"""The texts a run can learn from, by name, and downloads kept in a cache.

Two texts come with the lab and work offline:

- ``shakespeare``: Shakespeare's plays, from a Python package (``gpt_core.data.shakespeare_text``);
- ``verdict``: the book's chapter 2-5 story "The Verdict" (Edith Wharton, 1908, public domain), bundled in
  ``assets/texts/the-verdict.txt`` and checked against its sha256:

    >>> len(the_verdict_text())   # the book prints len(raw_text) == 20479
    20479
    >>> load_corpus("verdict")[:20]
    'I HAD always thought'

``download_cached`` fetches anything else once (the book's instruction data) into ``$LLM_LAB_CACHE`` or
``~/.cache/llm_lab``, checked by size and sha256 and written atomically.
"""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from pathlib import Path

from gpt_core.files import write_bytes_atomically

VERDICT_PATH = Path(__file__).resolve().parent.parent / "assets" / "texts" / "the-verdict.txt"
VERDICT_SIZE = 20479  # bytes; the book prints len(raw_text) == 20479 (plain ASCII, no trailing newline)
VERDICT_SHA256 = "b41e41a68f0398a3154ae69e2e4c0e2694e17fe0d66730536837f1b01935b31f"  # the book repository's file

DEFAULT_MAX_BYTES = 50 * 1024 * 1024  # a downloaded corpus larger than 50 MB is refused
TIMEOUT_S = 20.0


def cache_dir() -> Path:
    """The folder where downloads are kept: ``$LLM_LAB_CACHE`` or ``~/.cache/llm_lab`` (created if needed)."""
    folder = Path(os.environ.get("LLM_LAB_CACHE") or Path.home() / ".cache" / "llm_lab")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def sha256_of(data: bytes) -> str:
    """Hex sha256 of some bytes, e.g. ``sha256_of(b"")`` -> ``'e3b0c442...b855'``."""
    return hashlib.sha256(data).hexdigest()


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
    write_bytes_atomically(path, data)
    return path


def _matches(data: bytes, sha256: str | None, size: int | None) -> bool:
    if size is not None and len(data) != size:
        return False
    return sha256 is None or sha256_of(data) == sha256.lower()


def the_verdict_text() -> str:
    """The text of "The Verdict" (20,479 characters), the book's chapter 2-5 training story."""
    data = VERDICT_PATH.read_bytes()
    if len(data) != VERDICT_SIZE or sha256_of(data) != VERDICT_SHA256:
        raise ValueError(f"{VERDICT_PATH} is damaged (its size or sha256 is not the book's file's). "
                         "Restore it from the repository.")
    return data.decode("utf-8")


def _shakespeare() -> str:
    from gpt_core.data import shakespeare_text

    return shakespeare_text()


CORPORA = {"shakespeare": _shakespeare, "verdict": the_verdict_text}  # name -> a function giving the text


def load_corpus(name_or_path: str) -> str:
    """A text by name (``CORPORA``: shakespeare, verdict) or the path of a UTF-8 text file."""
    if name_or_path in CORPORA:
        return CORPORA[name_or_path]()
    path = Path(name_or_path)
    if not path.is_file():
        raise ValueError(f"Unknown corpus {name_or_path!r}: use {', '.join(CORPORA)} or the path of a text file.")
    return path.read_text(encoding="utf-8")
