"""Runs side by side: the comparison figure, the settings table, the CSV and file names."""

from __future__ import annotations

import csv
import io
import json
import math
import re

import plotly.graph_objects as go
import pytest
from hypothesis import given
from hypothesis import strategies as st

from visualizations.compare import (
    CSV_HEADER,
    EMPTY_MESSAGE,
    MAX_STEM_CHARS,
    RUN_COLORS,
    RUN_SYMBOLS,
    X_AXES,
    X_TITLES,
    RunCurve,
    compare_figure,
    differing_settings,
    runs_csv,
    safe_file_stem,
    settings_table_html,
    x_at_steps,
)
from visualizations.training import MAX_POINTS


def plotly_checked(figure: go.Figure) -> go.Figure:
    """The figure through plotly's full validation (raises on any property plotly does not know)."""
    return go.Figure(json.loads(figure.to_json()))


def two_runs() -> list[RunCurve]:
    """Run 1: steps 1..4, 100 tokens a step, 0.5 s a step; run 2 (still running): steps 2, 4, 200 tokens a step."""
    first = RunCurve("run 1 · baseline", steps=[1, 2, 3, 4], tokens=[100, 200, 300, 400],
                     seconds=[0.5, 1.0, 1.5, 2.0], train_loss=[8.0, 7.0, 6.5, 6.0], evals=[(2, 7.2), (4, 6.4)])
    second = RunCurve("run 2 · no causal mask", steps=[2, 4], tokens=[400, 800], seconds=[3.0, 5.0],
                      train_loss=[7.5, 5.0], evals=[(3, 5.5)], running=True)
    return [first, second]


def test_each_run_gets_a_line_and_validation_markers_in_its_own_colour():
    figure = plotly_checked(compare_figure(two_runs()))
    assert [trace.name for trace in figure.data] == [
        "run 1 · baseline · batch loss", "run 1 · baseline",
        "run 2 · no causal mask · batch loss", "run 2 · no causal mask (running)"]
    assert [trace.mode for trace in figure.data] == ["lines", "lines+markers"] * 2
    assert [trace.line.color for trace in figure.data] == [RUN_COLORS[0]] * 2 + [RUN_COLORS[1]] * 2
    assert [trace.marker.symbol for trace in figure.data[1::2]] == list(RUN_SYMBOLS[:2])  # not colour alone
    assert [trace.showlegend for trace in figure.data] == [False, None, False, None]  # one legend entry a run
    assert [trace.line.dash for trace in figure.data[1::2]] == ["solid", "dot"]  # the running run is dotted
    assert list(figure.data[0].y) == [8.0, 7.0, 6.5, 6.0] and list(figure.data[1].y) == [7.2, 6.4]


def contrast(first: str, second: str) -> float:
    """WCAG contrast ratio of two #rrggbb colours."""
    def luminance(color: str) -> float:
        channels = [int(color[i:i + 2], 16) / 255 for i in (1, 3, 5)]
        r, g, b = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
        return 0.2126 * r + 0.7152 * g + 0.0722 * b
    high, low = sorted([luminance(first), luminance(second)], reverse=True)
    return (high + 0.05) / (low + 0.05)


@pytest.mark.parametrize("background", ["#ffffff", "#0b0f19", "#1f2937"])  # light, dark page, dark block
def test_every_run_colour_shows_on_light_and_dark_backgrounds(background):
    assert min(contrast(color, background) for color in RUN_COLORS) >= 3.0  # WCAG's minimum for graphics
    assert len(set(RUN_COLORS)) == len(RUN_COLORS) and len(set(RUN_SYMBOLS)) == len(RUN_SYMBOLS)


def test_x_values_on_each_axis_choice():
    """Train points sit at their own step / tokens seen / seconds; validation points at the x of their step,
    interpolated from the run's logged steps (run 2's eval at step 3 lies halfway between its steps 2 and 4)."""
    expected = {
        "step": ([1, 2, 3, 4], [2, 4], [2, 4], [3]),
        "tokens seen": ([100, 200, 300, 400], [200.0, 400.0], [400, 800], [600.0]),
        "wall time (s)": ([0.5, 1.0, 1.5, 2.0], [1.0, 2.0], [3.0, 5.0], [4.0]),
    }
    assert set(expected) == set(X_AXES)
    for x_axis, x_values in expected.items():
        figure = compare_figure(two_runs(), x_axis=x_axis)
        assert [list(trace.x) for trace in figure.data] == list(x_values), x_axis
        assert figure.layout.xaxis.title.text == f"{X_TITLES[x_axis]}   (markers: validation loss, thin line: batch loss)"
    assert list(compare_figure(two_runs(), "tokens seen").data[2].x) == two_runs()[1].tokens  # tokens_seen as is


def test_val_points_before_the_first_logged_step_start_from_zero():
    assert x_at_steps([10, 20], [1000, 2000], [5, 10, 15, 30]) == [500.0, 1000.0, 1500.0, 2000.0]
    assert x_at_steps([0, 10], [0, 50], [5]) == [25.0]  # a logged step 0 is used as is
    assert x_at_steps([], [], [3]) == [0.0]


def test_hover_shows_the_run_the_step_and_perplexity():
    figure = compare_figure(two_runs(), x_axis="tokens seen")
    val = figure.data[3]
    assert val.meta == "run 2 · no causal mask" and list(val.text) == ["3"]
    assert list(val.customdata) == [round(math.exp(5.5), 1)]
    assert val.hovertemplate.startswith("%{meta}<br>step %{text} · tokens seen %{x:,d}")
    step_figure = compare_figure(two_runs(), x_axis="step")
    assert step_figure.data[0].text is None and "step %{x:,}" in step_figure.data[0].hovertemplate


def test_layout_stays_put_while_runs_grow():
    runs = two_runs()
    layouts = []
    for shown in (1, 2, 4):
        partial = RunCurve("grows", runs[0].steps[:shown], runs[0].tokens[:shown], runs[0].seconds[:shown],
                           runs[0].train_loss[:shown], running=shown < 4)
        layout = compare_figure([partial, runs[1]]).layout
        layouts.append((layout.height, layout.margin.t, layout.margin.l, layout.legend.y, tuple(layout.yaxis.range),
                        layout.uirevision))
    assert layouts == [(380, 60, 10, 1.02, (0.0, 8.4), "step|False")] * 3  # the first loss (8.0) is the highest


def test_log_scale_range_and_uirevision():
    layout = compare_figure(two_runs(), x_axis="wall time (s)", log_scale=True).layout
    assert layout.yaxis.type == "log"
    assert list(layout.yaxis.range) == pytest.approx([math.log10(5.0 * 0.9), math.log10(8.0 * 1.05)])
    assert layout.uirevision == "wall time (s)|True"  # a new axis resets the zoom


def test_a_run_without_evals_still_has_its_legend_entry_and_nan_is_a_gap():
    run = RunCurve("diverged", [1, 2, 3], [10, 20, 30], [1.0, 2.0, 3.0], [8.0, float("nan"), float("inf")])
    figure = plotly_checked(compare_figure([run]))
    assert list(figure.data[0].y) == [8.0, None, None]
    assert list(figure.data[1].x) == [None] and figure.data[1].name == "diverged"
    assert list(figure.layout.yaxis.range) == [0.0, 8.4]


def test_long_runs_are_thinned_to_max_points_per_trace():
    steps = list(range(1, 3001))
    run = RunCurve("long", steps, [64 * s for s in steps], [0.1 * s for s in steps], [8 - s / 1000 for s in steps])
    train = compare_figure([run], x_axis="tokens seen").data[0]
    assert len(train.x) == MAX_POINTS and train.x[0] == 64 and train.x[-1] == 64 * 3000


def test_labels_are_escaped_and_bounded():
    run = RunCurve("<script>alert(1)</script>" + "x" * 100, [1], [1], [1.0], [5.0])
    names = [trace.name for trace in compare_figure([run]).data]
    assert all("<script>" not in name for name in names)
    assert names[1].startswith("&lt;script&gt;alert(1)&lt;/script&gt;") and names[1].endswith("…")


def test_no_runs_draws_a_message_not_an_empty_frame():
    figure = plotly_checked(compare_figure([]))
    assert len(figure.data) == 0
    assert [note.text for note in figure.layout.annotations] == [EMPTY_MESSAGE]
    assert figure.layout.xaxis.visible is False and figure.layout.height == 380


def test_bad_input_says_what_is_wrong():
    with pytest.raises(ValueError, match="one of step, tokens seen, wall time"):
        compare_figure(two_runs(), x_axis="epochs")
    with pytest.raises(ValueError, match="one entry per logged step, got 2, 1, 2 and 2 entries"):
        RunCurve("bad", [1, 2], [10], [0.1, 0.2], [8.0, 7.0])


# ---------------------------------------------------------------------------------------------------------------
# Settings table
# ---------------------------------------------------------------------------------------------------------------

SETTINGS = [
    {"model size": "nano", "tokenizer": "GPT-2", "lr": "1e-2", "causal mask": "on", "dropout": "0.0"},
    {"model size": "nano", "tokenizer": "GPT-2", "lr": "3e-3", "causal mask": "off", "dropout": "0.0"},
]
RESULTS = [{"final train loss": "4.30", "final val loss": "4.48", "tokens/s": "12,000", "time": "1 min 05 s"},
           {"final train loss": "0.90", "final val loss": "5.10", "tokens/s": "11,500", "time": "1 min 10 s"}]


def highlighted(page: str) -> list[str]:
    return re.findall(r'<tr class="differs"><th scope="row">≠ ([^<]*)</th>', page)


def test_the_differing_settings_are_exactly_the_highlighted_rows():
    page = settings_table_html(SETTINGS, ["run 1", "run 2"], RESULTS)
    assert highlighted(page) == ["lr", "causal mask"]
    assert page.count('class="differs"') == 2 and page.count("≠") == 3  # two rows and the caption
    plain = re.findall(r'<th scope="row" class="lab-compare-key">([^<]*)</th>', page)
    assert plain == ["model size", "tokenizer", "dropout"]
    assert re.findall(r'<tr class="results"><th scope="row">([^<]*)</th>', page) == list(RESULTS[0])
    assert "<td>4.48</td><td>5.10</td>" in page
    assert re.findall(r'<th scope="col">([^<]*)</th>', page) == ["setting", "run 1", "run 2"]


def test_a_setting_one_run_lacks_differs_and_shows_a_dash():
    rows = [{"lr": "1e-3"}, {"lr": "1e-3", "ablation": "no causal mask"}]
    page = settings_table_html(rows, ["a", "b"], [{}, {}])
    assert differing_settings(rows) == ["ablation"] and highlighted(page) == ["ablation"]
    assert "<td>—</td><td>no causal mask</td>" in page


def test_one_run_or_equal_runs_highlight_nothing():
    assert highlighted(settings_table_html(SETTINGS[:1], ["only"], RESULTS[:1])) == []
    page = settings_table_html([SETTINGS[0], dict(SETTINGS[0])], ["a", "b"], RESULTS)
    assert highlighted(page) == [] and "every run has the same settings" in page


def test_table_escapes_labels_settings_and_results():
    evil = "<script>alert('x')</script>"
    page = settings_table_html([{evil: evil}, {evil: "1"}], [evil, "b"], [{"r": evil}, {"r": "2"}])
    assert "<script>alert" not in page
    assert page.count("&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;") == 4  # label, setting, value, result
    long_page = settings_table_html([{"prompt": "a" * 500}], ["run"], [{}])
    assert "<td>" + "a" * 119 + "…</td>" in long_page  # a value is cut to 120 characters


def test_table_checks_its_lengths_and_styles_are_scoped():
    with pytest.raises(ValueError, match="got 2 settings, 1 labels and 2 results"):
        settings_table_html(SETTINGS, ["a"], RESULTS)
    page = settings_table_html(SETTINGS, ["a", "b"], RESULTS)
    rules = re.findall(r"^([^{}\n]+)\{", page.split("</style>")[0].split("<style>")[1], flags=re.M)
    assert rules and all(selector.strip().startswith(".lab-compare") for rule in rules
                         for selector in rule.split(","))
    assert EMPTY_MESSAGE in settings_table_html([], [], [])


# ---------------------------------------------------------------------------------------------------------------
# CSV and file names
# ---------------------------------------------------------------------------------------------------------------

def test_runs_csv_has_one_line_per_logged_step_and_val_loss_where_evaluated():
    lines = runs_csv(two_runs()).splitlines()
    assert lines[0] == ",".join(CSV_HEADER) == "run,step,tokens_seen,seconds,train_loss,val_loss"
    assert lines[1:] == [
        "run 1 · baseline,1,100,0.5,8.0,",
        "run 1 · baseline,2,200,1.0,7.0,7.2",
        "run 1 · baseline,3,300,1.5,6.5,",
        "run 1 · baseline,4,400,2.0,6.0,6.4",
        "run 2 · no causal mask,2,400,3.0,7.5,",
        "run 2 · no causal mask,3,,,,5.5",  # evaluated at a step that was not logged
        "run 2 · no causal mask,4,800,5.0,5.0,",
    ]


def test_runs_csv_quotes_commas_and_defuses_formulas():
    run = RunCurve('=cmd,"x"', [1], [8], [0.1234567], [float("nan")], [(1, None)])
    rows = list(csv.reader(io.StringIO(runs_csv([run]))))
    assert rows[1] == ["'=cmd,\"x\"", "1", "8", "0.123", "", ""]
    assert runs_csv([]) == "run,step,tokens_seen,seconds,train_loss,val_loss\n"


def test_file_stems():
    assert safe_file_stem("llm-lab", "pretrain", "nano", "no causal mask") == "llm-lab-pretrain-nano-no-causal-mask"
    assert safe_file_stem("Run 2 · Ünïcode", "lr=1e-3") == "run-2-unicode-lr-1e-3"
    assert safe_file_stem("../../etc/passwd") == "etc-passwd"
    assert safe_file_stem("—") == "llm-lab"
    assert safe_file_stem("a" * 50, "b" * 50) == "a" * 50 + "-" + "b" * 29


@given(st.lists(st.text(max_size=200), max_size=5))
def test_file_stem_is_always_safe(parts):
    stem = safe_file_stem(*parts)
    assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", stem) and len(stem) <= MAX_STEM_CHARS
