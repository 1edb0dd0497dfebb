"""Attention, model and generation figures: masked cells, tile grid geometry, JSON size, labels."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from visualizations.attention import (
    Panel,
    head_figure,
    masked_cells,
    panel_traces,
    panels_figure,
    token_labels,
)
from visualizations.generation import candidates_figure, generation_html
from visualizations.model import GUTTER, attention_grid_figure, parameter_figure, tile_grid

TOKENS = ["Your", " journey", " starts", " with", " one", " step"]


def causal_weights(n: int, seed: int = 0) -> np.ndarray:
    """Softmax rows of random scores with the future masked: (n, n), zeros above the diagonal."""
    scores = torch.randn(n, n, generator=torch.Generator().manual_seed(seed))
    scores = scores.masked_fill(torch.ones(n, n, dtype=torch.bool).triu(1), -torch.inf)
    return torch.softmax(scores, dim=-1).numpy()


def test_masked_scores_are_nan_in_values_and_drawn_by_a_separate_grey_layer():
    scores = np.array([[1.0, -np.inf, -np.inf], [0.5, 0.0, -np.inf], [0.2, 0.0, 0.3]])
    traces = panel_traces(Panel("scores", scores, "scores"), token_labels(TOKENS[:3]))
    values, masked_layer = traces[0], traces[1]
    assert len(traces) == 2
    # masked cells are null (not drawn) in the values, a true 0.0 stays a number
    assert np.isnan(np.asarray(values["z"], dtype=float)).sum() == 3
    assert np.asarray(values["z"], dtype=float)[1, 1] == 0.0
    # the masked layer covers exactly the 3 masked cells and says so on hover
    assert np.isfinite(np.asarray(masked_layer["z"], dtype=float)).sum() == 3
    assert masked_layer["name"] == "masked"
    assert "masked" in masked_layer["hovertemplate"]


def test_zero_weights_without_a_mask_are_not_drawn_as_masked():
    weights = np.array([[1.0, 0.0], [0.0, 1.0]])
    traces = panel_traces(Panel("weights", weights), token_labels(TOKENS[:2]))
    assert len(traces) == 1
    assert traces[0]["z"] == [[1.0, 0.0], [0.0, 1.0]]


def test_explicit_mask_on_weights_and_dropped_layer():
    weights = causal_weights(4)
    masked = np.triu(np.ones((4, 4), dtype=bool), 1)
    dropped = np.zeros((4, 4), dtype=bool)
    dropped[2, 0] = dropped[3, 3] = True
    traces = panel_traces(Panel("w", weights, masked=masked, dropped=dropped), token_labels(TOKENS[:4]))
    assert [trace["name"] for trace in traces] == ["w", "masked", "dropped"]
    assert np.isfinite(np.asarray(traces[1]["z"], dtype=float)).sum() == 6  # 4 * 3 / 2 future cells
    assert np.isfinite(np.asarray(traces[2]["z"], dtype=float)).sum() == 2


def test_token_labels_are_unique_and_show_spaces():
    labels = token_labels(["a", " a", "a", "\n"])
    assert labels == ["0:a", "1:␣a", "2:a", "3:↵"]
    assert len(set(labels)) == 4


def test_masked_cells_helper():
    assert masked_cells(np.array([np.nan, -np.inf, 0.0, np.inf])).tolist() == [True, True, False, True]


def test_panels_figure_axes_and_labels():
    weights = causal_weights(6)
    masked = np.triu(np.ones((6, 6), dtype=bool), 1)
    scores = np.where(masked, -np.inf, weights)
    figure = panels_figure([Panel("scores", scores, "scores"), Panel("weights", weights, masked=masked)], TOKENS)
    assert [a.text for a in figure.layout.annotations] == ["scores", "weights"]
    assert list(figure.data[0].x) == token_labels(TOKENS)
    assert list(figure.data[0].y) == token_labels(TOKENS)
    assert figure.layout.yaxis.autorange == "reversed"  # query 0 at the top, like the book's matrices
    assert len(figure.data) == 4  # values + masked layer in each panel


def test_panels_figure_in_two_columns_has_two_rows():
    weights = causal_weights(5)
    figure = panels_figure([Panel(f"p{i}", weights) for i in range(4)], TOKENS[:5], columns=2)
    assert figure.layout.yaxis3.domain[1] < figure.layout.yaxis.domain[0]  # second row below the first


def test_head_figure_masks_the_future():
    figure = head_figure(causal_weights(6), TOKENS, "layer 0, head 1")
    assert figure.data[1].name == "masked"
    assert np.isfinite(np.asarray(figure.data[1].z, dtype=float)).sum() == 15


@settings(max_examples=25, deadline=None)
@given(layers=st.integers(1, 5), heads=st.integers(1, 5), tokens=st.integers(1, 9))
def test_tile_grid_shape_gutters_and_tiles(layers, heads, tokens):
    attn = np.random.default_rng(0).random((layers, heads, tokens, tokens)).astype(np.float32)
    grid = tile_grid(attn)
    assert grid.shape == (layers * tokens + layers - 1, heads * tokens + heads - 1)
    assert grid.dtype == np.uint8
    assert int((grid == GUTTER).sum()) == grid.size - layers * heads * tokens * tokens
    layer, head = layers - 1, heads - 1
    tile = grid[layer * (tokens + 1): layer * (tokens + 1) + tokens, head * (tokens + 1): head * (tokens + 1) + tokens]
    assert np.array_equal(tile, np.rint(attn[layer, head] * 100).astype(np.uint8))


def test_attention_grid_json_for_gpt2_small_on_64_tokens_is_under_1_5_mb():
    n_layers, n_heads, n_tokens = 12, 12, 64
    attn = np.stack([np.stack([causal_weights(n_tokens, seed=layer * 12 + head) for head in range(n_heads)])
                     for layer in range(n_layers)])
    figure = attention_grid_figure(attn, [f"t{i}" for i in range(n_tokens)])
    size = len(figure.to_json())
    print(f"grid JSON: {size:,} bytes")
    assert size < 1_500_000
    z = figure.data[0].z  # plotly's typed array: 1 byte a cell, base64
    assert z["shape"] == f"{12 * 64 + 11}, {12 * 64 + 11}"
    assert len(base64.b64decode(z["bdata"])) == (12 * 64 + 11) ** 2
    assert [t for t in figure.layout.xaxis.ticktext] == [f"head {h}" for h in range(12)]
    assert [t for t in figure.layout.yaxis.ticktext] == [f"layer {layer}" for layer in range(12)]
    assert json.loads(figure.to_json())["data"][0]["z"]["dtype"] == "u1"  # 1 byte per cell on the wire


def test_attention_grid_labels_are_unique_per_row_and_column():
    attn = np.full((2, 3, 4, 4), 0.25, dtype=np.float32)
    figure = attention_grid_figure(attn, ["a", "b", "a", "c"])
    assert len(set(figure.data[0].x)) == len(figure.data[0].x) == 3 * 4 + 2
    assert len(set(figure.data[0].y)) == len(figure.data[0].y) == 2 * 4 + 1
    assert figure.data[0].y[5] == "layer 1 · query 0 'a'"


def test_parameter_figure_total_in_title():
    figure = parameter_figure([("token embedding", 300), ("attention", 100)])
    assert "total 400" in figure.layout.title.text
    assert list(figure.data[0].x) == [300, 100]


def test_candidates_figure_has_fixed_range_bar_count_and_highlights_chosen():
    figure = candidates_figure([(" the", 0.5), (" a", 0.3), (" one", 0.1)], " a", step=2, n_bars=10)
    assert len(figure.data[0].y) == 10  # always 10 rows, so the chart does not jump while streaming
    assert tuple(figure.layout.xaxis.range) == (0, 1.12)
    colors = list(figure.data[0].marker.color)
    assert colors[1] != colors[0] and colors[0] == colors[2]
    assert figure.data[0].y[0] == "1. ␣the"


def test_generation_html_escapes_and_marks_the_highlighted_step():
    html = generation_html("<b>", [" x", " <y>"], [0.25, 0.5], highlight=2)
    assert "&lt;b&gt;" in html and "&lt;y&gt;" in html
    assert html.count('class="tok"') == 2
    assert 'title="step 2: p = 0.500"' in html
    assert html.count("outline") == 1


@pytest.mark.parametrize("n_tokens", [1, 24])
def test_panels_figure_extreme_sizes(n_tokens):
    weights = causal_weights(n_tokens)
    figure = panels_figure([Panel("weights", weights)], [f"w{i}" for i in range(n_tokens)])
    assert figure.layout.height >= 250
    assert np.asarray(figure.data[0].z).shape == (n_tokens, n_tokens)
