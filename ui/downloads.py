"""Downloads with meaningful names: a figure as a page that works offline, numbers as CSV, a plot's PNG.

Each file is written into a fresh folder of its own under ``DOWNLOADS_DIR`` (in the system's temp folder, where
Gradio accepts files from), so one student never gets another's file and two students can download files with
the same name at the same time. When a handler returns the path, Gradio copies the file into its own cache and
serves that copy (app.py's ``CACHE_CLEANING`` removes those after an hour). Our folders are cleaned here, each
time a new one is made: folders older than ``MAX_AGE_S`` go, then the oldest ones until all of them together
take at most ``MAX_TOTAL_BYTES`` (a figure page is about 5 MB: plotly.js is inside it).

The PNG needs no file on the server: ``png_config(stem)`` goes into the plot's JSON (``ui.view_cache.plot_value``)
and the camera button in the plot's toolbar saves the picture as ``stem.png`` in the browser.
"""

from __future__ import annotations

import html
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

from visualizations.compare import safe_file_stem

DOWNLOADS_DIR = Path(os.environ.get("LLM_LAB_DOWNLOADS_DIR") or Path(tempfile.gettempdir()) / "llm_lab_downloads")
MAX_AGE_S = 3600  # Gradio has copied a file into its own cache long before this
MAX_TOTAL_BYTES = 300 * 1024 * 1024  # about sixty figure pages
MAX_FILE_BYTES = 50 * 1024 * 1024  # one file: ten long runs as CSV are a few MB

_lock = threading.Lock()


def png_config(stem: str) -> dict:
    """The plotly config that makes the toolbar's camera button save ``stem.png`` at twice the screen's size.

    >>> png_config("llm-lab-pretrain-runs")["toImageButtonOptions"]
    {'format': 'png', 'filename': 'llm-lab-pretrain-runs', 'scale': 2}
    """
    return {"toImageButtonOptions": {"format": "png", "filename": safe_file_stem(stem), "scale": 2},
            "displaylogo": False}


def _folder_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def clean_downloads(root: Path | None = None, max_age_s: float = MAX_AGE_S, max_total_bytes: int = MAX_TOTAL_BYTES,
                    now: float | None = None) -> list[str]:
    """Delete the download folders older than ``max_age_s``, then the oldest ones until the rest take at most
    ``max_total_bytes``. Returns the names of the folders deleted."""
    root = Path(root or DOWNLOADS_DIR)
    now = time.time() if now is None else now
    try:
        folders = sorted((entry for entry in root.iterdir() if entry.is_dir()), key=lambda entry: entry.stat().st_mtime)
    except FileNotFoundError:
        return []
    deleted, kept = [], []
    for folder in folders:  # oldest first
        if now - folder.stat().st_mtime > max_age_s:
            shutil.rmtree(folder, ignore_errors=True)
            deleted.append(folder.name)
        else:
            kept.append((folder, _folder_bytes(folder)))
    total = sum(size for _, size in kept)
    for folder, size in kept:
        if total <= max_total_bytes:
            break
        shutil.rmtree(folder, ignore_errors=True)
        deleted.append(folder.name)
        total -= size
    return deleted


def new_download_folder(root: Path | None = None, max_total_bytes: int = MAX_TOTAL_BYTES) -> Path:
    """A new empty folder under ``root`` (default ``DOWNLOADS_DIR``), made after cleaning the old ones."""
    root = Path(root or DOWNLOADS_DIR)
    with _lock:
        clean_downloads(root, max_total_bytes=max_total_bytes)
        root.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(dir=root))


def _write(data: str, stem: str, suffix: str) -> str:
    """Write ``data`` (UTF-8) as ``<stem><suffix>`` in a new folder of its own; returns the file's path."""
    encoded = data.encode("utf-8")
    if len(encoded) > MAX_FILE_BYTES:
        raise ValueError(f"This download would be {len(encoded) / 1e6:.0f} MB, more than the server's limit of "
                         f"{MAX_FILE_BYTES / 1e6:.0f} MB: compare fewer or shorter runs.")
    path = new_download_folder() / f"{safe_file_stem(stem)}{suffix}"
    path.write_bytes(encoded)
    return str(path)


def figure_html_file(figure, stem: str) -> str:
    """The figure as one HTML page with plotly.js inside it (it opens offline, and zooms and hovers like the app);
    its camera button saves ``stem.png``. Returns the path of ``<stem>.html``."""
    stem = safe_file_stem(stem)
    page = figure.to_html(full_html=True, include_plotlyjs=True, include_mathjax=False, config=png_config(stem))
    page = page.replace("<head>", f"<head><title>{html.escape(stem)}</title>", 1)
    return _write(page, stem, ".html")


def csv_file(text: str, stem: str) -> str:
    """``text`` (a CSV, such as ``visualizations.compare.runs_csv``) as ``<stem>.csv``; returns its path."""
    return _write(text, stem, ".csv")
