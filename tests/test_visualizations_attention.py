"""Attention, model and generation figures: masked cells, tile grid geometry, JSON size, labels; the Attention
tab's ladder figures (numbers in the cells, labels, sizes, wrapping, colours for both themes)."""

from __future__ import annotations

import base64
import json

import numpy as np
import plotly.graph_objects as go
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from visualizations.attention import (
    CELL_FONT,
    LADDER_WIDTH,
    TITLE_FONT,
    Matrix,
    Panel,
    cell_text,
    dim_labels,
    fitting_decimals,
    head_figure,
    ladder_figure,
    masked_cells,
    panel_traces,
    panels_figure,
    short_token_labels,
    text_width,
    token_labels,
    wrapped_rows,
)
from visualizations.generation import candidates_figure, generation_html
from visualizations.model import GUTTER, attention_grid_figure, parameter_figure, tile_grid

TOKENS = ["Your", " journey", " starts", " with", " one", " step"]
# Chapter 3's attention weights for "Your journey starts with one step" (simple attention), as the book prints them
BOOK_WEIGHTS = np.array([[0.2098, 0.2006, 0.1981, 0.1242, 0.1220, 0.1452],
                         [0.1385, 0.2379, 0.2333, 0.1240, 0.1082, 0.1581],
                         [0.1390, 0.2369, 0.2326, 0.1242, 0.1108, 0.1565],
                         [0.1435, 0.2074, 0.2046, 0.1462, 0.1263, 0.1720],
                         [0.1526, 0.1958, 0.1975, 0.1367, 0.1879, 0.1295],
                         [0.1385, 0.2184, 0.2128, 0.1420, 0.0988, 0.1896]])


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
    assert labels == ["0:a", "1:·a", "2:a", "3:↵"]
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
    assert figure.data[0].y[0] == "1. ·the"  # a space drawn as in the Tokenizer tab


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


# ---------------------------------------------------------------- the Attention tab's ladder figures
def weights_matrix(values: np.ndarray, tokens: list[str], title: str = "weights", **kwargs) -> Matrix:
    labels = short_token_labels(tokens)
    return Matrix(title, values, labels, labels, "weights", row_name="query", column_name="key", **kwargs)


def vectors_matrix(values: np.ndarray, tokens: list[str], title: str = "context") -> Matrix:
    return Matrix(title, values, short_token_labels(tokens), dim_labels(values.shape[1]), "vectors")


def plotly_checked(figure: go.Figure) -> go.Figure:
    """The figure through plotly's full validation (raises on any property plotly does not know)."""
    return go.Figure(json.loads(figure.to_json()))


def test_ladder_figure_prints_the_books_numbers_in_the_cells_with_token_and_dim_labels():
    context = BOOK_WEIGHTS @ np.random.default_rng(0).random((6, 3))
    figure = ladder_figure([[weights_matrix(BOOK_WEIGHTS, TOKENS, "weights<br>= softmax(scores)"),
                             vectors_matrix(context, TOKENS, "context<br>= weights · inputs")]])
    weights, vectors = figure.data
    assert weights.name == "weights = softmax(scores)" and vectors.name == "context = weights · inputs"
    assert np.asarray(weights.z, dtype=float).shape == (6, 6)
    assert np.allclose(np.asarray(weights.z, dtype=float)[1], BOOK_WEIGHTS[1])  # z: 4 decimals, as printed
    assert list(weights.text[1]) == ["0.1385", "0.2379", "0.2333", "0.1240", "0.1082", "0.1581"]
    assert weights.texttemplate == "%{text}" and weights.textfont.size >= 14
    assert list(weights.x) == list(weights.y) == ["0:Your", "1:·journey", "2:·starts", "3:·with", "4:·one",
                                                  "5:·step"]
    assert list(vectors.x) == ["dim 0", "dim 1", "dim 2"] and list(vectors.y) == list(weights.y)
    assert "query %{y}<br>key %{x}<br>weight %{z:.4f}" in weights.hovertemplate
    # titles above each matrix, the name in bold, at 16 px or more; the second matrix shares the first's rows
    assert [a.text for a in figure.layout.annotations] == ["<b>weights</b><br>= softmax(scores)",
                                                          "<b>context</b><br>= weights · inputs"]
    assert all(a.font.size >= 16 for a in figure.layout.annotations)
    assert figure.layout.yaxis.autorange == "reversed" and figure.layout.yaxis.showticklabels is True
    assert figure.layout.yaxis2.showticklabels is False  # the same tokens: not written twice
    assert figure.layout.xaxis.domain[1] < figure.layout.xaxis2.domain[0]  # side by side, left to right
    plotly_checked(figure)


def test_ladder_figure_has_transparent_backgrounds_and_a_height_that_fits_its_content():
    figure = ladder_figure([[weights_matrix(BOOK_WEIGHTS, TOKENS)]])
    layout = figure.layout
    assert layout.paper_bgcolor == layout.plot_bgcolor == "rgba(0,0,0,0)"  # the theme's own background shows
    assert layout.font.color == layout.xaxis.tickfont.color == "#6b7280"  # grey: reads on white and on dark grey
    assert 6 * 30 < layout.height < 6 * 40 + 200  # 6 rows of cells, a title, the key labels: no empty frame
    assert layout.xaxis.fixedrange and layout.yaxis.fixedrange  # a drag on a projected page does not zoom
    tall = ladder_figure([[weights_matrix(causal_weights(24), [f"w{i}" for i in range(24)])]])
    assert tall.layout.height > layout.height


def test_masked_and_dropped_cells_have_their_own_layers_and_marks():
    weights = causal_weights(4)
    masked = np.triu(np.ones((4, 4), dtype=bool), 1)
    scores = np.where(masked, -np.inf, np.log(weights + 1e-9))
    dropped = np.zeros((4, 4), dtype=bool)
    dropped[3, 0] = dropped[2, 2] = True
    labels = short_token_labels(TOKENS[:4])
    figure = ladder_figure([[Matrix("masked scores", scores, labels, labels, "scores", masked_text="−∞"),
                             weights_matrix(weights, TOKENS[:4], masked=masked, masked_text="0"),
                             weights_matrix(weights * 2, TOKENS[:4], "after dropout", masked=masked, dropped=dropped,
                                            masked_text="0")]])
    names = [trace.name for trace in figure.data]
    assert names == ["masked scores", "masked", "weights", "masked", "after dropout", "masked", "dropped"]
    score_values, score_mask = figure.data[0], figure.data[1]
    assert np.isnan(np.asarray(score_values.z, dtype=float)).sum() == 6  # the 6 future cells are not values
    assert np.isfinite(np.asarray(score_mask.z, dtype=float)).sum() == 6
    assert score_mask.text[0][1] == "−∞" and score_mask.text[1][0] == ""
    assert figure.data[3].text[0][3] == "0"  # a masked weight is exactly 0
    dropped_layer = figure.data[6]
    assert np.isfinite(np.asarray(dropped_layer.z, dtype=float)).sum() == 2 and dropped_layer.text[3][0] == "0"
    assert "dropped" in dropped_layer.hovertemplate and "masked" in score_mask.hovertemplate
    plotly_checked(figure)


def test_numbers_are_left_out_where_they_do_not_fit_and_the_labels_get_smaller():
    tokens = [f" word{i}" for i in range(24)]
    figure = ladder_figure([[vectors_matrix(np.random.default_rng(1).random((24, 3)), tokens, "inputs"),
                             weights_matrix(causal_weights(24), tokens, "scores"),
                             weights_matrix(causal_weights(24, 1), tokens),
                             vectors_matrix(np.random.default_rng(2).random((24, 3)), tokens)]])
    assert all(trace.text is None for trace in figure.data)  # 24 tokens: cells too small; the hover has the values
    assert figure.layout.yaxis.tickfont.size == 12
    assert figure.layout.xaxis2.tickangle == -90  # narrow columns: the token labels stand on end
    assert figure.layout.xaxis.tickangle == 0  # "dim 0" fits under its (widened) column
    plotly_checked(figure)


def test_a_row_too_wide_for_a_short_sentences_numbers_is_cut_in_two():
    tokens = ["The", " cat", " sat", " on", " the", " mat", " because", " it", " was", " tired"]
    row = [weights_matrix(causal_weights(10, seed), tokens, f"m{seed}") for seed in range(3)]
    row.append(vectors_matrix(-np.random.default_rng(0).random((10, 2)), tokens))
    assert [[m.title for m in part] for part in wrapped_rows([row])] == [["m0", "m1"], ["m2", "context"]]
    figure = ladder_figure([row])
    assert all(trace.text is not None for trace in figure.data if trace.name != "masked")  # now they fit
    assert figure.layout.yaxis3.domain[1] < figure.layout.yaxis.domain[0]  # the third matrix starts a new row
    six = [weights_matrix(causal_weights(6, seed), TOKENS, f"m{seed}") for seed in range(3)]
    assert len(wrapped_rows([six])) == 1  # 6 tokens fit in one row
    many = [weights_matrix(causal_weights(24, seed), [f"t{i}" for i in range(24)]) for seed in range(3)]
    assert len(wrapped_rows([many])) == 1  # 24 tokens: numbers would not fit anyway, the row stays whole


def test_every_row_of_the_ladder_fits_the_planned_width():
    tokens = [f" extraordinarily{i}" for i in range(24)]  # long tokens are cut on the axes
    row = [vectors_matrix(np.ones((24, 8)), tokens, "inputs<br>(token vectors)"),
           weights_matrix(causal_weights(24), tokens), weights_matrix(causal_weights(24), tokens),
           vectors_matrix(np.ones((24, 8)), tokens)]
    figure = ladder_figure([row])
    assert max(axis["domain"][1] for name, axis in figure.layout.to_plotly_json().items()
               if name.startswith("xaxis")) <= 1.0
    assert all(len(label) <= 12 for label in figure.data[0].y)
    assert short_token_labels([" extraordinarily"]) == ["0:·extraord…"]
    assert LADDER_WIDTH >= 1150


def test_weights_colours_run_from_zero_to_the_largest_weight_or_twice_the_even_share():
    even = np.full((5, 5), 0.2) + np.linspace(-0.01, 0.01, 5)
    trace = ladder_figure([[weights_matrix(even, TOKENS[:5])]]).data[0]
    assert (trace.zmin, trace.zmax) == (0.0, pytest.approx(0.4))  # untrained, near-even weights look even
    trace = ladder_figure([[weights_matrix(causal_weights(5), TOKENS[:5])]]).data[0]
    assert trace.zmax == pytest.approx(1.0)  # the first query sees only itself: weight 1
    scores = ladder_figure([[Matrix("s", np.array([[-2.0, 1.0]]), ["a"], ["a", "b"], "scores")]]).data[0]
    assert (scores.zmin, scores.zmax) == (-2.0, 2.0)  # scores: white at 0


def test_cell_text_decimals_and_widths():
    assert cell_text(np.array([[0.07131, -0.45194, np.inf]]), 4) == [["0.0713", "-0.4519", ""]]
    assert text_width("-0.4519", CELL_FONT) > text_width("0.1385", CELL_FONT)
    wide = Matrix("w", np.array([[-0.4519, 0.2216]]), ["a"], ["0", "1"])
    assert fitting_decimals(wide, 72) == 4 and fitting_decimals(wide, 42) == 2 and fitting_decimals(wide, 25) is None
    assert Matrix("inputs", np.array([[0.43]]), ["a"], ["0"], decimals=2).decimals == 2
    assert TITLE_FONT >= 16 and CELL_FONT >= 14
