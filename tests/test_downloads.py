"""Downloads: file names, contents, offline figure pages, cleaning, and the PNG name in a plot's JSON."""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import plotly.graph_objects as go
import pytest

from ui import downloads
from ui.downloads import clean_downloads, csv_file, figure_html_file, png_config
from ui.view_cache import plot_value
from visualizations.compare import RunCurve, compare_figure, runs_csv


@pytest.fixture(autouse=True)
def downloads_dir(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "downloads"
    monkeypatch.setattr(downloads, "DOWNLOADS_DIR", root)
    return root


def figure() -> go.Figure:
    run = RunCurve("run 1", [1, 2, 3], [64, 128, 192], [0.5, 1.0, 1.5], [8.123, 7.456, 6.789], [(3, 6.95)])
    return compare_figure([run])


def test_csv_file_has_the_stem_as_name_and_the_text_as_content(downloads_dir):
    text = runs_csv([RunCurve("a", [1], [64], [0.5], [8.0])])
    path = Path(csv_file(text, "LLM Lab pretrain: nano vs. no causal mask"))
    assert path.name == "llm-lab-pretrain-nano-vs-no-causal-mask.csv"
    assert path.parent.parent == downloads_dir
    assert path.read_text(encoding="utf-8").splitlines() == ["run,step,tokens_seen,seconds,train_loss,val_loss",
                                                             "a,1,64,0.5,8.0,"]


def test_every_download_gets_a_folder_of_its_own():
    first, second = Path(csv_file("x\n", "runs")), Path(csv_file("y\n", "runs"))
    assert first.name == second.name == "runs.csv" and first.parent != second.parent
    assert (first.read_text(), second.read_text()) == ("x\n", "y\n")  # one student's file never overwrites another's


def test_figure_page_works_offline_and_holds_the_plot():
    path = Path(figure_html_file(figure(), "llm-lab-pretrain-runs"))
    page = path.read_text(encoding="utf-8")
    assert path.name == "llm-lab-pretrain-runs.html"
    assert page.startswith("<!doctype html>") and "<title>llm-lab-pretrain-runs</title>" in page
    assert re.search(r"<script[^>]*\bsrc=", page) is None  # no script fetched from anywhere: plotly.js is inside
    assert len(page) > 3_000_000 and "Plotly.newPlot" in page
    assert "[8.123,7.456,6.789]" in page and "run 1 · batch loss" in page  # the plot's data
    assert '"filename": "llm-lab-pretrain-runs"' in page  # its camera button saves a named PNG too


def test_png_config_names_the_picture():
    assert png_config("LLM Lab / runs") == {
        "toImageButtonOptions": {"format": "png", "filename": "llm-lab-runs", "scale": 2}, "displaylogo": False}


def test_plot_value_carries_the_config_and_is_unchanged_without_it():
    plain = plot_value(figure())
    assert plain.plot == figure().to_json() and "config" not in json.loads(plain.plot)
    named = json.loads(plot_value(figure(), config=png_config("llm-lab-runs")).plot)
    assert named["config"]["toImageButtonOptions"]["filename"] == "llm-lab-runs"
    assert named["data"] == json.loads(plain.plot)["data"] and named["layout"] == json.loads(plain.plot)["layout"]


def test_old_folders_are_cleaned_when_a_new_one_is_made(downloads_dir):
    old, recent = Path(csv_file("old\n", "a")).parent, Path(csv_file("recent\n", "b")).parent
    hour_ago = time.time() - downloads.MAX_AGE_S - 5
    os.utime(old, (hour_ago, hour_ago))
    newest = Path(csv_file("new\n", "c")).parent
    assert sorted(folder.name for folder in downloads_dir.iterdir()) == sorted([recent.name, newest.name])


def test_cleaning_keeps_the_total_under_its_budget(downloads_dir):
    folders = []
    for number in range(4):
        folders.append(Path(csv_file("x" * 1000, f"f{number}")).parent)
        stamp = time.time() - 100 + number  # oldest first
        os.utime(folders[-1], (stamp, stamp))
    deleted = clean_downloads(downloads_dir, max_total_bytes=2500)
    assert deleted == [folders[0].name, folders[1].name]  # the two oldest go, 2,000 bytes stay
    assert sorted(folder.name for folder in downloads_dir.iterdir()) == sorted(f.name for f in folders[2:])
    assert clean_downloads(downloads_dir / "missing") == []


def test_a_download_over_the_limit_is_refused(monkeypatch):
    monkeypatch.setattr(downloads, "MAX_FILE_BYTES", 10)
    with pytest.raises(ValueError, match="more than the server's limit"):
        csv_file("x" * 11, "big")
