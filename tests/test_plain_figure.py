"""PlainFigure (visualizations.attention): the figure JSON written straight from the dicts equals plotly's.

The explore views' figures are plain dicts; ``PlainFigure.to_json`` writes them without building plotly's objects
(30 ms and a few thousand objects in reference cycles per attention ladder). These tests compare its JSON with
``go.Figure(dicts, _validate=False).to_json()``, what the views sent before, for figures the app's own views draw,
and check the plotly-object side (attributes, changes, pickling) still behaves like a ``go.Figure``.
"""

from __future__ import annotations

import copy
import gc
import json
import math
import pickle

import numpy as np
import plotly.graph_objects as go
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_model_tabs import as_array

from visualizations import attention, compare, generation, lens, model, snapshots, training
from visualizations.attention import PlainFigure, fast_figure


def plotly_json(figure: PlainFigure) -> dict:
    """What the view sent before PlainFigure: plotly's figure of the same dicts, as JSON, arrays decoded."""
    return decoded(json.loads(go.Figure(figure._spec, _validate=False).to_json()))


def decoded(value):
    """Plotly writes numpy arrays as base64 ({"dtype", "bdata", "shape"}); plotly.js reads both that and lists."""
    if isinstance(value, dict):
        if {"bdata", "dtype"} <= set(value):
            return as_array(value).tolist()
        return {key: decoded(item) for key, item in value.items()}
    if isinstance(value, list):
        return [decoded(item) for item in value]
    return value


def difference(ours, theirs, path: str = "$") -> str | None:
    """Where two JSON values differ (numbers to float32 precision: plotly may send float32 arrays), or None."""
    if isinstance(ours, dict) and isinstance(theirs, dict):
        if set(ours) != set(theirs):
            return f"{path}: keys {sorted(set(ours) ^ set(theirs))}"
        return next((d for key in ours if (d := difference(ours[key], theirs[key], f"{path}.{key}"))), None)
    if isinstance(ours, list) and isinstance(theirs, list):
        if len(ours) != len(theirs):
            return f"{path}: {len(ours)} items against {len(theirs)}"
        return next((d for i, pair in enumerate(zip(ours, theirs)) if (d := difference(*pair, f"{path}[{i}]"))), None)
    if {type(ours), type(theirs)} == {type(None), float} and not math.isfinite(ours if theirs is None else theirs):
        return None  # NaN or infinity in a numpy array: plotly sends float64 bytes, JSON has only null (as in lists)
    numbers = (int, float)
    if isinstance(ours, numbers) and isinstance(theirs, numbers) and not isinstance(ours, bool):
        return None if math.isclose(ours, theirs, rel_tol=1e-6, abs_tol=1e-12) else f"{path}: {ours} against {theirs}"
    return None if ours == theirs and type(ours) is type(theirs) else f"{path}: {ours!r:.80} against {theirs!r:.80}"


def assert_same_as_plotly(figure: PlainFigure) -> None:
    assert isinstance(figure, PlainFigure) and figure._figure is None  # written from the dicts, not plotly's figure
    ours = decoded(json.loads(figure.to_json()))
    found = difference(ours, plotly_json(figure))
    assert found is None, found
    assert ours["layout"]["template"]["layout"]["font"] == {"color": "#2a3f5f"}  # plotly's default template


def the_figures() -> dict[str, PlainFigure]:
    """One figure of each kind the views draw, with small inputs (NaN, masks and numpy values included)."""
    rng = np.random.default_rng(0)
    tokens = ["The", "·cat", "·sat", "·down"]
    weights = np.tril(rng.random((4, 4)))
    weights /= weights.sum(axis=1, keepdims=True)
    masked = np.triu(np.ones((4, 4), dtype=bool), 1)
    scores = np.where(masked, -np.inf, rng.normal(size=(4, 4)))
    run = compare.RunCurve("run 1 · baseline", steps=[1, 2, 3, 4], tokens=[100, 200, 300, 400],
                           seconds=[1.0, 2.0, 3.0, 4.0], train_loss=[8.0, 7.0, 6.5, 6.2], evals=[(2, 7.1), (4, 6.4)])
    return {
        "panels": attention.panels_figure([attention.Panel("scores", scores, "scores", masked=masked),
                                           attention.Panel("weights", weights, masked=masked)], tokens, "ladder"),
        "head": attention.head_figure(weights, tokens, "layer 1, head 2"),
        "attention grid": model.attention_grid_figure(rng.random((2, 2, 4, 4)), tokens, "every head"),
        "parameters": model.parameter_figure([("token embedding", 38_597_376), ("blocks", 85_054_464)]),
        "embeddings": model.embedding_figure(rng.normal(size=(4, 8)), rng.normal(size=(4, 8)), tokens, n_dims=8),
        "position norms": model.position_norm_figure(rng.random(16) + 0.5, 4),
        "candidates": generation.candidates_figure([("·mat", 0.5), ("·floor", 0.25), ("·bed", np.float32(0.125))],
                                                   "·mat", 1),
        "kv speed": generation.kv_speed_figure([8, 16], [1.5, 2.5], [2.0, 6.0], [8, 16]),
        "lens": lens.lens_figure([[["·mat", "·bed"]] * 4] * 2, rng.random((2, 4, 2)), tokens),
        "knockout": lens.knockout_figure(tokens, rng.random(4), rng.random(4)),
        "training": training.training_figure([(1, 8.0), (2, 7.0)], [(2, 6.9, 7.1)], 100, [1e-4] * 100, 2),
        "compare": compare.compare_figure([run]),
        "head scores": snapshots.head_scores_figure([0, 100, 200], [[[0.1, 0.2]]] * 3,
                                                      [[[0.0, 0.1]], [[0.2, 0.3]], [[float("nan"), 0.4]]], 1),
        "embedding map": snapshots.embedding_map_figure(["a", "b", "c"], [[0.0, 1.0], [1.0, 0.5], [0.2, 0.3]],
                                                        [0.6, 0.3], labels=["a"]),
        "note": snapshots.note_figure("No snapshot yet"),
    }


@pytest.mark.parametrize("kind", list(the_figures()))
def test_json_is_plotlys_for_every_kind_of_figure(kind):
    assert_same_as_plotly(the_figures()[kind])


def test_the_views_figures_are_written_as_plotly_would(client, monkeypatch):
    """The figures /attention, /inside, /generate, /embeddings and the lens draw for a new sentence (not from a
    cache): every one written from the dicts, equal to plotly's JSON."""
    made: list[PlainFigure] = []
    plain_init = PlainFigure.__init__

    def recording(self, data, layout):
        plain_init(self, data, layout)
        made.append(self)

    monkeypatch.setattr(PlainFigure, "__init__", recording)
    api = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
    for endpoint in ("/attention", "/inside", "/generate", "/embeddings", "/inside_lens"):
        parameters = api[endpoint]["parameters"]
        values = [p.get("parameter_default") for p in parameters]
        text_at = next(i for i, p in enumerate(parameters) if p["component"] == "Textbox")
        values[text_at] = f"A plain figure for {endpoint} is drawn once"
        client.predict(*values, api_name=endpoint)
    assert len(made) >= 8
    for figure in made:
        assert_same_as_plotly(figure)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.one_of(st.floats(allow_nan=True, allow_infinity=True, width=32), st.integers(-10**6, 10**6),
                          st.none()), min_size=1, max_size=12),
       st.text(max_size=20))
def test_any_numbers_and_text_come_out_as_plotly_writes_them(values, title):
    """NaN and infinities (null), integers, None and any text (escaped) in a trace, numpy arrays too."""
    figure = fast_figure([{"type": "scatter", "y": values, "name": title, "x": np.arange(len(values))},
                          {"type": "bar", "y": np.array([v if v is not None else np.nan for v in values])}],
                         {"title": {"text": title}, "height": 200})
    assert_same_as_plotly(figure)


def test_plotlys_attributes_and_changes_still_work():
    figure = fast_figure([{"type": "bar", "x": ["a", "b"], "y": [1, 2]}], {"height": 200})
    assert figure.layout.height == 200 and list(figure.data[0].y) == [1, 2]  # builds plotly's figure
    figure.update_layout(height=300)
    assert json.loads(figure.to_json())["layout"]["height"] == 300  # a change is in the JSON it writes
    assert figure.to_dict()["layout"]["height"] == 300
    assert json.loads(pickle.loads(pickle.dumps(figure)).to_json())["layout"]["height"] == 300
    assert json.loads(copy.deepcopy(figure).to_json())["layout"]["height"] == 300


def test_a_value_orjson_cannot_write_goes_through_plotlys_encoder():
    import datetime

    figure = fast_figure([{"type": "scatter", "x": [datetime.date(2026, 12, 2)], "y": [np.float16(1.5)]}], {})
    assert json.loads(figure.to_json())["data"][0]["x"] == ["2026-12-02"]


def test_writing_a_ladder_leaves_no_garbage_in_reference_cycles():
    """The point of PlainFigure: a view's figures are freed as soon as they are sent, not by a collector pause."""
    tokens = ["The", "·cat", "·sat", "·down", "·on", "·the", "·mat"]
    weights = np.tril(np.ones((7, 7))) / np.arange(1, 8)[:, None]
    panels = [attention.Panel(f"head {h}", weights) for h in range(4)]
    attention.panels_figure(panels, tokens).to_json()  # warm: templates, imports
    gc.collect()
    gc.disable()
    try:
        for _ in range(5):
            attention.panels_figure(panels, tokens).to_json()
        cycles = gc.collect()
        for _ in range(5):
            go.Figure(attention.panels_figure(panels, tokens)._spec, _validate=False).to_json()
        plotly_cycles = gc.collect()
    finally:
        gc.enable()
    assert cycles == 0
    assert plotly_cycles > 1000  # what plotly's objects left for the collector before
