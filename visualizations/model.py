"""Views of a whole GPT: every attention head at once, parameter counts, memory, embeddings.

The layer x head grid is ONE heatmap: each head's (T, T) weights are a tile, tiles are separated by a
gutter one cell wide. That builds far faster than one subplot per head. Weights are sent as whole
percents in uint8 (1 byte a cell instead of 8, base64 in the JSON), so gpt2-small on 64 tokens stays
under 1 MB of JSON. Like the attention figures, these are plain dicts wrapped by `fast_figure`.
"""

from __future__ import annotations

import base64

import numpy as np

from gpt_core.files import human_size
from visualizations.attention import PlainFigure, colorscale, fast_figure, grid_layout, rounded, token_labels

GUTTER = 255  # uint8 value of the gutter cells; anything above 100 is drawn in the background colour
PERCENT_COLORS = [
    [0.0, "#f7fbff"],
    [0.25 * 100 / 101, "#9ecae1"],
    [0.5 * 100 / 101, "#4292c6"],
    [100 / 101, "#08306b"],
    [100.5 / 101, "#ffffff"],  # values above 100 (the gutters) are white
    [1.0, "#ffffff"],
]


def tile_grid(attn: np.ndarray, gutter: int = 1) -> np.ndarray:
    """Tile attention weights (L, H, T, T) into one (L*T + (L-1)*gutter, H*T + (H-1)*gutter) array of percents.

    Gutter cells hold GUTTER (255), cells hold round(100 * weight).

    >>> tile_grid(np.full((2, 3, 2, 2), 0.5)).shape
    (5, 8)
    """
    attn = np.asarray(attn, dtype=np.float32)
    n_layers, n_heads, n_tokens, _ = attn.shape
    step = n_tokens + gutter
    grid = np.full((n_layers * step - gutter, n_heads * step - gutter), GUTTER, dtype=np.uint8)
    percents = np.rint(np.clip(attn, 0.0, 1.0) * 100).astype(np.uint8)  # (L, H, T, T)
    for layer in range(n_layers):
        for head in range(n_heads):
            row, col = layer * step, head * step
            grid[row : row + n_tokens, col : col + n_tokens] = percents[layer, head]
    return grid


def typed_array(array: np.ndarray) -> dict:
    """A 2-D uint8 array as plotly's typed-array JSON: 1 byte a cell (base64), instead of a list of numbers.

    >>> typed_array(np.array([[1, 2]], dtype=np.uint8))
    {'dtype': 'u1', 'bdata': 'AQI=', 'shape': '1, 2'}
    """
    rows, cols = array.shape
    data = base64.b64encode(np.ascontiguousarray(array, dtype=np.uint8).tobytes()).decode("ascii")
    return {"dtype": "u1", "bdata": data, "shape": f"{rows}, {cols}"}


def attention_grid_figure(attn: np.ndarray, tokens: list[str] | None = None, title: str = "") -> PlainFigure:
    """All heads of all layers, attn (L, H, T, T): rows of tiles are layers, columns of tiles are heads."""
    n_layers, n_heads, n_tokens, _ = attn.shape
    grid = tile_grid(attn)  # (L*T + L-1, H*T + H-1)
    tokens = tokens or [str(i) for i in range(n_tokens)]
    # One hover label per row and per column costs a few KB; one per cell would cost megabytes.
    row_labels = _tile_labels(n_layers, tokens, "layer", "query")
    col_labels = _tile_labels(n_heads, tokens, "head", "key")
    middle = n_tokens // 2
    step = n_tokens + 1
    heatmap = {
        "type": "heatmap",
        "z": typed_array(grid),
        "x": col_labels,
        "y": row_labels,
        "colorscale": PERCENT_COLORS,
        "zmin": 0,
        "zmax": 101,
        # under the grid, centred like it, so it stays beside the grid however wide the page is
        "colorbar": {"title": {"text": "weight %", "side": "right"}, "tickvals": [0, 25, 50, 75, 100],
                     "orientation": "h", "x": 0.5, "xanchor": "center", "y": -0.01, "yanchor": "top",
                     "len": 0.45, "thickness": 14},
        "hovertemplate": "%{y}<br>%{x}<br>weight %{z}%<extra></extra>",
    }
    side = min(960, max(640, 160 * max(n_layers, n_heads)))  # the bundled model's 4 x 4: 160 px per head
    layout = {
        "xaxis": {
            "type": "category",
            "tickvals": [col_labels[h * step + middle] for h in range(n_heads)],
            "ticktext": [f"head {h}" for h in range(n_heads)],
            "side": "top",
            "showgrid": False,
            "constrain": "domain",
        },
        "yaxis": {
            "type": "category",
            "tickvals": [row_labels[layer * step + middle] for layer in range(n_layers)],
            "ticktext": [f"layer {layer}" for layer in range(n_layers)],
            "autorange": "reversed",
            "showgrid": False,
            "scaleanchor": "x",
            "constrain": "domain",
        },
        "height": side + 150,
        "margin": {"l": 10, "r": 10, "t": 90, "b": 60},
        "plot_bgcolor": "white",
        "title": {"text": title, "font": {"size": 14}, "x": 0.01},
    }
    return fast_figure([heatmap], layout)


def _tile_labels(n_tiles: int, tokens: list[str], tile_name: str, token_role: str) -> list[str]:
    """Unique axis labels for a tiled axis: a label per token in every tile, and a distinct one per gutter.

    >>> _tile_labels(2, ["a", "b"], "head", "key")[1:4]
    ["head 0 · key 1 'b'", 'gap 1', "head 1 · key 0 'a'"]
    """
    labels = []
    for tile in range(n_tiles):
        if tile:
            labels.append(f"gap {tile}")  # unique, so plotly keeps each gutter as its own category
        labels.extend(f"{tile_name} {tile} · {token_role} {i} '{tok}'" for i, tok in enumerate(tokens))
    return labels


def parameter_figure(breakdown: list[tuple[str, int]], notes: dict[str, str] | None = None) -> PlainFigure:
    """Horizontal bars: parameters per component, largest at the top.

    notes: a text instead of the count for some components, e.g. a tied output head (no parameters of its own).
    """
    names = [name for name, _ in breakdown]
    counts = [int(count) for _, count in breakdown]
    total = sum(counts) or 1
    notes = notes or {}
    bars = {
        "type": "bar",
        "x": counts,
        "y": names,
        "orientation": "h",
        "text": [notes.get(name, _count_text(c, total)) for name, c in zip(names, counts)],
        # Short bars (layer norms, a tied head) print their text beside the bar, not in it.
        "textposition": ["auto" if c > 0.1 * max(counts, default=0) else "outside" for c in counts],
        "marker": {"color": "#4292c6"},
        "hovertemplate": "%{y}: %{x:,} parameters<extra></extra>",
    }
    layout = {
        "yaxis": {"autorange": "reversed"},
        "height": 80 + 34 * len(names),
        "margin": {"l": 10, "r": 10, "t": 40, "b": 10},
        "title": {"text": f"Parameters per component (total {total:,})", "font": {"size": 14}},
        "xaxis": {"title": {"text": "parameters"}},
        "plot_bgcolor": "white",
    }
    return fast_figure([bars], layout)


def _count_text(count: int, total: int) -> str:
    """A bar's label: millions for big counts, the exact count for small ones, and the share.

    >>> _count_text(786_432, 2_615_424), _count_text(3_456, 2_615_424)
    ('0.79 M (30%)', '3,456 (0.1%)')
    """
    if count >= 100_000:
        return f"{count / 1e6:,.2f} M ({100 * count / total:.0f}%)"
    return f"{count:,} ({100 * count / total:.1f}%)"


def embedding_figure(tok_emb: np.ndarray, pos_emb: np.ndarray, tokens: list[str], n_dims: int = 32,
                     title: str = "") -> PlainFigure:
    """The first `n_dims` dimensions of the token embeddings, the position embeddings and their sum, per token."""
    labels = token_labels(tokens)
    parts = [("token embedding", tok_emb), ("position embedding", pos_emb), ("input = sum", tok_emb + pos_emb)]
    layout = grid_layout(1, 3, [name for name, _ in parts], horizontal_spacing=0.03, shared_yaxes=True)
    bound = float(max(np.abs(values[:, :n_dims]).max() for _, values in parts)) or 1.0
    data = []
    for col, (name, values) in enumerate(parts, start=1):
        suffix = "" if col == 1 else str(col)
        data.append({
            "type": "heatmap",
            "z": rounded(values[:, :n_dims]),
            "y": labels,
            "colorscale": colorscale("RdBu_r"),
            "zmin": -bound,
            "zmax": bound,
            "showscale": col == 3,
            "hovertemplate": f"{name}<br>%{{y}}<br>dim %{{x}}: %{{z:.3f}}<extra></extra>",
            "xaxis": f"x{suffix}",
            "yaxis": f"y{suffix}",
        })
        layout[f"xaxis{suffix}"]["title"] = {"text": "dimension"}
        layout[f"yaxis{suffix}"].update(autorange="reversed", tickfont={"size": 10})
    layout.update(
        height=min(900, 170 + 16 * len(tokens)),
        margin={"l": 10, "r": 10, "t": 80, "b": 10},
        title={"text": title, "font": {"size": 14}, "x": 0.01},
    )
    return fast_figure(data, layout)


def position_norm_figure(pos_norms: np.ndarray, n_used: int) -> PlainFigure:
    """The length (L2 norm) of each position embedding vector; the positions the text uses are highlighted."""
    positions = list(range(len(pos_norms)))
    norms = rounded(pos_norms)
    data = [
        {"type": "scatter", "x": positions, "y": norms, "mode": "lines", "name": "all positions",
         "line": {"color": "#9ecae1"}},
        {"type": "scatter", "x": positions[:n_used], "y": norms[:n_used], "mode": "markers", "name": "your text",
         "marker": {"color": "#08306b", "size": 6}},
    ]
    layout = {
        "height": 300,
        "margin": {"l": 10, "r": 10, "t": 40, "b": 10},
        "title": {"text": "Norm of each position embedding", "font": {"size": 14}},
        "xaxis": {"title": {"text": "position"}},
        "yaxis": {"title": {"text": "‖pos_emb[p]‖"}},
        "legend": {"orientation": "h", "y": -0.25},
    }
    return fast_figure(data, layout)


def memory_markdown(memory: dict[str, int], title: str) -> str:
    """A small Markdown table of an estimate_memory(...) result, in MB/GB."""
    rows = [f"| {name.replace('_', ' ')} | {human_size(size)} |" for name, size in memory.items()]
    return "\n".join([f"**{title}**", "", "| part | memory |", "|---|---|", *rows])
