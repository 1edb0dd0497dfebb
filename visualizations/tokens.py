"""Pictures of tokens: coloured spans, merge steps, training windows and embedding heatmaps.

Pure functions: ids, bytes and arrays in, an HTML string or a plotly figure out. No gradio here.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence

import numpy as np

from visualizations.attention import PlainFigure, colorscale, fast_figure, grid_layout, rounded

# Pastel backgrounds with dark text; neighbours always differ (colour by position). The chips stay light in
# the dark theme too, so their text is always CHIP_TEXT (at least 12:1 on every one of these colours; the app's
# CSS gives it to every span.tok[data-id], the windows table has it inline).
TOKEN_COLORS = ("#fde68a", "#bbf7d0", "#bfdbfe", "#fbcfe8", "#ddd6fe", "#fed7aa", "#a5f3fc", "#d9f99d")
CHIP_TEXT = "#111827"
HIGHLIGHT = "#dc2626"  # outline of the pair merged at a replay step
MAX_REPLAY_HTML = 150_000  # characters of HTML in one merge replay; the steps beyond are named, not drawn

MergeStep = tuple[list[int], "tuple[int, int] | None", "int | None", "int | None"]  # tokens, pair, new id, rank
MergeRow = tuple[int, tuple[int, int], int, "int | None"]  # rank, pair, new id, count

# Whitespace made visible: a space is drawn as a middle dot, a newline as a return arrow (then a real line break).
VISIBLE_WHITESPACE = {" ": "·", "\n": "↵\n", "\t": "→", "\r": "␍"}


def token_text(token: bytes) -> str:
    """The bytes of a token as text a student can see: whitespace made visible, half characters as \\x escapes.

    >>> token_text(b" the")
    '·the'
    >>> token_text(b"\\xf0\\x9f")
    '\\\\xf0\\\\x9f'
    """
    text = token.decode("utf-8", errors="backslashreplace")
    return "".join(VISIBLE_WHITESPACE.get(char, char) for char in text)


def token_title(token_id: int, token: bytes) -> str:
    """Tooltip text of a token: `id 262 · b' the'`."""
    return f"id {token_id} · {token!r}"


def _span(token_id: int, token: bytes, color: str, css_class: str = "tok", style: str = "",
          label: str | None = None) -> str:
    """One token chip. Its id is in `data-id`: the app's CSS prints it under the token (a projector cannot show
    the hover tooltip) and gives the chip its CHIP_TEXT colour; the tooltip still gives the id and the bytes.
    A long merge replay holds thousands of chips, so a chip stays short (the id needs no quotes).

    >>> _span(262, b" the", "#fde68a")
    '<span class="tok" data-id=262 style="background:#fde68a" title="id 262 · b&#x27; the&#x27;">·the</span>'
    """
    title = html.escape(token_title(token_id, token), quote=True)
    label = html.escape(token_text(token)) if label is None else label
    style = f"background:{color};{style}" if style else f"background:{color}"
    return f'<span class="{css_class}" data-id={int(token_id)} style="{style}" title="{title}">{label}</span>'


def token_chip(token_id: int, token: bytes, color: str) -> str:
    r"""A token as a chip in running text, its id printed under it by the app's CSS (any view of token ids can use
    it). A token that ends with line breaks shows them as ↵ inside the chip, and the real breaks follow it (a chip
    keeps its id under it, so it cannot itself be split over two lines).

    >>> token_chip(198, b".\n\n", "#bbf7d0").endswith('>.↵↵</span>\n\n')
    True
    """
    breaks = len(token) - len(token.rstrip(b"\n"))
    if not breaks:
        return _span(token_id, token, color)
    label = html.escape(token_text(token[:-breaks])) + "↵" * breaks
    return _span(token_id, token, color, label=label) + "\n" * breaks


def token_spans_html(ids: Sequence[int], pieces: Sequence[bytes], max_tokens: int = 2000) -> str:
    """Each token as a coloured `<span class="tok" data-id=… title="id … · b'…'">` in `<div class="lab-tokens">`.

    Only the first `max_tokens` are drawn (a browser slows down with many thousands of spans); a note says so.
    """
    shown = min(len(ids), max_tokens)
    spans = [
        token_chip(token_id, piece, TOKEN_COLORS[position % len(TOKEN_COLORS)])
        for position, (token_id, piece) in enumerate(zip(ids[:shown], pieces[:shown]))
    ]
    note = ""
    if len(ids) > shown:
        note = f'<p class="lab-note">Drawing the first {shown:,} of {len(ids):,} tokens; the counts cover them all.</p>'
    return f'<div class="lab-tokens">{"".join(spans)}</div>{note}'


def _chip(token_id: int, token: bytes, highlighted: bool) -> str:
    color = TOKEN_COLORS[token_id % len(TOKEN_COLORS)]  # by id: a token keeps its colour from step to step
    outline = f"outline:3px solid {HIGHLIGHT};outline-offset:1px;font-weight:700;" if highlighted else ""
    return _span(token_id, token, color, css_class="tok chip", style=outline)


def _pair_text(pair: tuple[int, int], token_bytes: Callable[[int], bytes]) -> str:
    """`(75, 75)` -> `l + l` (escaped for HTML)."""
    left, right = (html.escape(token_text(token_bytes(t))) for t in pair)
    return f"<b>{left}</b> + <b>{right}</b>"


def _step_row(number: int, step: MergeStep, current: bool, token_bytes: Callable[[int], bytes]) -> str:
    """One replay row: the step number, the tokens as chips (the ones this merge made outlined), the merge."""
    tokens, pair, new_id, rank = step
    chips = "".join(_chip(t, token_bytes(t), highlighted=(t == new_id)) for t in tokens)
    if new_id is None:
        what = "the raw UTF-8 bytes, one token each"
    else:
        new_text = html.escape(token_text(token_bytes(new_id)))
        what = f"merge #{rank:,}: {_pair_text(pair, token_bytes)} → <b>{new_text}</b> (id {new_id})"
    count = f"{len(tokens)} token{'s' if len(tokens) != 1 else ''}"
    return (
        f'<tr class="step{" current" if current else ""}"><td class="step-no">step {number}</td>'
        f'<td class="chips">{chips}</td><td>{count}</td><td>{what}</td></tr>'
    )


def merge_steps_html(steps: Sequence[MergeStep], token_bytes: Callable[[int], bytes],
                     max_html: int = MAX_REPLAY_HTML) -> str:
    """The merge-by-merge replay of one word as rows of chips, one row per step (the last row is the current step).

    `steps` holds (tokens, merged_pair, new_id, rank) per step; step 0 is the raw bytes (pair, id, rank None).
    In each row the tokens that step's merge made are outlined in red. A long word makes many long rows, so
    the rows kept are: the current step, step 0, then the steps just before the current one, while the HTML
    stays under `max_html` characters; one row says which steps were left out.
    """
    last = len(steps) - 1
    drawn = {last: _step_row(last, steps[last], True, token_bytes)}
    used = len(drawn[last])
    candidates = ([0] if last > 0 else []) + list(range(last - 1, 0, -1))
    for number in candidates:
        row = _step_row(number, steps[number], False, token_bytes)
        if used + len(row) > max_html:
            if number == 0:
                continue  # step 0 alone is too long: still try the later, shorter rows
            break
        drawn[number] = row
        used += len(row)
    rows, previous = [], -1
    for number in sorted(drawn):
        if number - previous > 1:
            rows.append(
                f'<tr class="skipped"><td class="step-no">steps {previous + 1}–{number - 1}</td>'
                f'<td colspan="3">{number - previous - 1} steps not drawn (a long word); move the merge step '
                "slider to see any of them.</td></tr>"
            )
        rows.append(drawn[number])
        previous = number
    return f'<table class="lab-replay">{"".join(rows)}</table>'


def merges_table_html(rows: Sequence[MergeRow | None], token_bytes: Callable[[int], bytes]) -> str:
    """The learned merges as tables: rank, the pair (as text), the new token, its id and how often the pair occurred.

    `rows` holds (rank, pair, new_id, count); a `None` row splits the list into blocks drawn side by side
    (the first merges and the last merges).
    """
    head = "<tr><th>rank</th><th>pair</th><th></th><th>new token</th><th>id</th><th>count</th></tr>"
    blocks: list[list[str]] = [[]]
    for row in rows:
        if row is None:
            blocks.append([])
            continue
        rank, (left, right), new_id, count = row
        pair = (
            f"{_span(left, token_bytes(left), TOKEN_COLORS[0])} "
            f"{_span(right, token_bytes(right), TOKEN_COLORS[2])}"
        )
        new_token = _span(new_id, token_bytes(new_id), TOKEN_COLORS[1])
        count_text = "—" if count is None else f"{count:,}"
        blocks[-1].append(
            f"<tr><td>{rank:,}</td><td>{pair}</td><td>→</td><td>{new_token}</td><td>{new_id}</td>"
            f"<td>{count_text}</td></tr>"
        )
    captions = ["all merges"] if len(blocks) == 1 else ["first merges", "last merges"]
    tables = [
        f'<table class="lab-merge-table"><caption>{captions[min(i, len(captions) - 1)]}</caption>{head}'
        f'{"".join(block)}</table>'
        for i, block in enumerate(blocks)
    ]
    return f'<div class="lab-merge-blocks">{"".join(tables)}</div>'


def windows_html(pairs: Sequence[tuple[Sequence[int], Sequence[int]]], token_bytes: Callable[[int], bytes]) -> str:
    """Training windows as aligned rows: the target row is the input row moved one token to the left.

    Each window is drawn with one column per position; the target row starts one column later, so each target
    token sits under the same token in the input row: at every position the model must predict the next token.
    """
    tables = []
    for number, (input_ids, target_ids) in enumerate(pairs):
        columns = len(input_ids) + 1

        def cells(ids, offset, columns=columns):
            out = ["<td></td>"] * offset
            for position, token_id in enumerate(ids):
                color = TOKEN_COLORS[(position + offset) % len(TOKEN_COLORS)]
                label = html.escape(token_text(token_bytes(token_id)))
                title = html.escape(token_title(token_id, token_bytes(token_id)), quote=True)
                out.append(
                    f'<td class="tok" style="background:{color};color:{CHIP_TEXT}" title="{title}">{label}<br>'
                    f'<small class="tok-id">{token_id}</small></td>'
                )
            out += ["<td></td>"] * (columns - offset - len(ids))
            return "".join(out)

        tables.append(
            f'<table class="lab-window"><caption>window {number}</caption>'
            f'<tr><th>input</th>{cells(input_ids, 0)}</tr>'
            f'<tr><th>target</th>{cells(target_ids, 1)}</tr></table>'
        )
    return f'<div class="lab-windows">{"".join(tables)}</div>'


# ---------------------------------------------------------------------------------------------------------------
# Embedding heatmaps
# ---------------------------------------------------------------------------------------------------------------

HEATMAP_HEIGHT = 430
FONT = {"size": 13}
# Transparent paper and plot area: the figure sits on the page's own background in the light and the dark theme
# (the app's CSS recolours the axis text and grid lines in the dark one).
CLEAR = "rgba(0,0,0,0)"


def _token_axis(labels: Sequence[str]) -> dict:
    """A category axis that keeps repeated tokens apart: tick i is labelled `i: token`."""
    return {
        "tickmode": "array",
        "tickvals": list(range(len(labels))),
        "ticktext": [f"{i}: {label}" for i, label in enumerate(labels)],
        "autorange": "reversed",
    }


def embedding_heatmaps(
    token_embeddings: np.ndarray, pos_embeddings: np.ndarray, input_embeddings: np.ndarray, labels: Sequence[str]
) -> PlainFigure:
    """Three heatmaps side by side: token (T, d) + positional (T, d) = input (T, d), tokens down the side."""
    n_tokens, emb_dim = np.shape(input_embeddings)
    titles = [
        f"token embeddings ({n_tokens}, {emb_dim})",
        f"+ positional ({n_tokens}, {emb_dim})",
        f"= input embeddings ({n_tokens}, {emb_dim})",
    ]
    layout = grid_layout(1, 3, titles, horizontal_spacing=0.03, shared_yaxes=True)
    limit = float(np.abs(np.asarray(input_embeddings)).max() or 1.0)  # one colour scale for all three
    data = []
    for col, matrix in enumerate((token_embeddings, pos_embeddings, input_embeddings), start=1):
        suffix = "" if col == 1 else str(col)
        data.append({
            "type": "heatmap",
            "z": rounded(matrix),
            "colorscale": colorscale("RdBu"),
            "zmid": 0.0,
            "zmin": -limit,
            "zmax": limit,
            "showscale": col == 3,
            "colorbar": {"title": {"text": "value"}, "thickness": 12},
            "hovertemplate": "token %{y}, dim %{x}: %{z:.2f}<extra></extra>",
            "xaxis": f"x{suffix}",
            "yaxis": f"y{suffix}",
        })
        layout[f"xaxis{suffix}"].update(title={"text": "dimension"}, dtick=4)
    layout["yaxis"].update(_token_axis(labels))
    layout.update(height=HEATMAP_HEIGHT, margin={"l": 10, "r": 10, "t": 50, "b": 40}, font=FONT,
                  paper_bgcolor=CLEAR, plot_bgcolor=CLEAR)
    return fast_figure(data, layout)


def cosine_heatmap(similarities: np.ndarray, labels: Sequence[str], title: str) -> PlainFigure:
    """A (T, T) heatmap of cosine similarities with the tokens on both axes and the values written in."""
    decimals = 2 if len(labels) <= 10 else 1  # keep the numbers inside their cells
    z = np.round(np.asarray(similarities, dtype=np.float32), 2)
    heatmap = {
        "type": "heatmap",
        "z": rounded(z, 2),
        "x": list(range(len(labels))),
        "y": list(range(len(labels))),
        "zmin": -1.0,
        "zmax": 1.0,
        "colorscale": colorscale("RdBu"),
        "text": [[f"{value:.{decimals}f}" for value in row] for row in np.round(z, decimals) + 0.0],  # no "-0.0"
        "texttemplate": "%{text}",
        "textfont": {"size": 11 if len(labels) <= 10 else 10},
        "colorbar": {"title": {"text": "cosine"}, "thickness": 12},
        "hovertemplate": "%{y} vs %{x}: %{z:.2f}<extra></extra>",
    }
    layout = {
        "yaxis": _token_axis(labels),
        "xaxis": {**_token_axis(labels), "autorange": True, "tickangle": -45},
        "title": {"text": title},
        "height": HEATMAP_HEIGHT + 70,
        "margin": {"l": 10, "r": 10, "t": 50, "b": 10},
        "font": FONT,
        "paper_bgcolor": CLEAR,
        "plot_bgcolor": CLEAR,
    }
    return fast_figure([heatmap], layout)
