"""The pretraining figure (loss curves over the learning-rate schedule), run statistics and samples."""

from __future__ import annotations

import math
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gpt_core.train_config import TrainConfig, lr_schedule
from visualizations.training import (
    MAX_POINTS,
    loss_range,
    samples_html,
    stats_markdown,
    thin,
    training_figure,
)


def schedule(max_steps: int = 100) -> list[float]:
    return lr_schedule(TrainConfig(lr=1e-3, warmup_steps=10, max_steps=max_steps))


def by_name(figure) -> dict:
    return {trace.name: trace for trace in figure.data}


@given(st.integers(0, 3000), st.integers(2, 500))
def test_thin_keeps_the_ends_and_at_most_max_points(n, max_points):
    kept = thin(list(range(n)), max_points)
    assert len(kept) == min(n, max_points)
    assert kept == sorted(set(kept))
    if n:
        assert kept[0] == 0 and kept[-1] == n - 1


def test_axes_stay_put_while_a_run_streams_in():
    losses = [(step, 8.3 - 0.03 * step) for step in range(1, 101)]
    ranges = []
    for shown in (5, 50, 100):
        figure = training_figure(losses[:shown], [(50, 6.8, 6.9)] if shown >= 50 else [], 100, schedule(), shown)
        ranges.append((tuple(figure.layout.xaxis.range), tuple(figure.layout.yaxis.range)))
    assert {x for x, _ in ranges} == {(0, 100)}  # the whole planned run from the first poll on
    assert {y for _, y in ranges} == {(0.0, round(8.27 * 1.05, 6))}  # the first loss is the highest


def test_loss_hover_shows_perplexity_and_the_schedule_marks_the_current_step():
    figure = training_figure([(1, 8.0), (2, 7.0)], [(2, 6.9, 7.1)], 100, schedule(), current_step=2)
    traces = by_name(figure)
    assert list(traces["batch loss"].customdata) == [round(math.exp(8.0), 1), round(math.exp(7.0), 1)]
    assert "perplexity" in traces["validation loss"].hovertemplate
    assert list(traces["validation loss"].y) == [7.1] and list(traces["train loss"].y) == [6.9]
    lr = traces["learning rate"]
    assert len(lr.x) == 100 and lr.x[0] == 1 and lr.x[-1] == 100
    assert max(lr.y) == pytest.approx(1e-3) and lr.y[-1] == pytest.approx(1e-4)
    assert list(traces["now"].x) == [2] and traces["now"].y[0] == pytest.approx(2e-4)  # warmup: 2/10 of the peak
    assert figure.layout.yaxis2.ticktext == ("0", "0.001")


def test_log_scale_and_long_runs_are_thinned():
    losses = [(step, 8.0 / step**0.2) for step in range(1, 2001)]
    figure = training_figure(losses, [], 2000, schedule(2000), 2000, log_scale=True)
    assert figure.layout.yaxis.type == "log"
    low, high = figure.layout.yaxis.range
    assert low == pytest.approx(math.log10(min(v for _, v in losses) * 0.9))
    assert high == pytest.approx(math.log10(8.0 * 1.05))
    traces = by_name(figure)
    assert len(traces["batch loss"].x) == MAX_POINTS and traces["batch loss"].x[-1] == 2000
    assert len(traces["learning rate"].x) == MAX_POINTS
    assert len(figure.to_json()) < 40_000  # small enough to send every second


def test_fine_tuning_curves_without_a_schedule_fill_the_figure():
    figure = training_figure([(1, 0.9), (2, 0.7), (3, 1.3)], [(2, 0.8, 0.85), (3, 0.6, None)], max_steps=168)
    assert [trace.name for trace in figure.data] == ["batch loss", "train loss", "validation loss"]
    assert list(figure.data[2].x) == [2] and list(figure.data[1].y) == [0.8, 0.6]  # a None val loss is left out
    assert list(figure.layout.xaxis.range) == [0, 168] and figure.layout.xaxis.title.text == "optimizer step"
    assert list(figure.layout.yaxis.range) == [0.0, round(1.3 * 1.05, 6)]
    assert list(figure.layout.yaxis.domain) == [0, 1] and figure.layout.height == 320
    assert sorted(key for key in figure.layout.to_plotly_json() if "axis" in key) == ["xaxis", "yaxis"]  # no strip


def test_an_empty_run_still_draws_its_axes():
    figure = training_figure([], [], max_steps=0)
    assert len(figure.data) == 0
    assert list(figure.layout.xaxis.range) == [0, 1] and list(figure.layout.yaxis.range) == [0.0, 10.5]
    with_schedule = training_figure([], [], 20, schedule(20))
    assert [trace.name for trace in with_schedule.data] == ["learning rate"]  # no "now" dot before step 1
    assert with_schedule.layout.height == 460 and list(with_schedule.layout.xaxis2.range) == [0, 20]


def test_loss_range_ignores_nan_and_has_a_default():
    assert loss_range([float("nan"), 5.0, None], log_scale=False) == [0.0, 5.25]
    assert loss_range([], log_scale=False) == [0.0, 10.5]


def test_stats_line_with_and_without_mfu():
    assert stats_markdown(1234.4, 0.123, 65, 10_000, "cuda") == (
        "**1,234 tokens/s** · MFU **12.3%** (share of the GPU's peak FLOP/s spent on the model) · about "
        "**1 min 05 s** left · 10,000 tokens seen")
    assert stats_markdown(None, None, None, 0, None).startswith("tokens/s … · MFU n/a on this device")


def test_samples_newest_first_escaped_and_only_the_last_few():
    samples = [(step, f"ROMEO: <b>text {step}</b>") for step in (10, 20, 30, 40, 50)]
    page = samples_html(samples, "ROMEO:", last=3)
    assert [int(s) for s in re.findall(r"step (\d+)", page)] == [50, 40, 30]
    assert "&lt;b&gt;text 50&lt;/b&gt;" in page and "<b>text" not in page
    assert page.count("<b>ROMEO:</b>") == 3
    assert "Samples appear here" in samples_html([], "ROMEO:")


def test_runs_of_line_breaks_become_one_counted_marker():
    page = samples_html([(100, "ROMEO:" + "\n" * 30), (200, "ROMEO:\nBut soft\n\nwhat light")], "ROMEO:")
    assert page.count("⏎ × 30") == 1 and "\n" * 3 not in page
    assert "But soft\n\nwhat light" in page  # two line breaks stay as they are
