"""Fine-tuning views: accuracy curves, the confusion matrix, class probabilities, and the loss mask.

Pure functions: numbers and token strings in, plotly figures or HTML out. No gradio, no torch here.
The loss curves are ``visualizations.training.training_figure``, as in pretraining. The accuracy curves keep
a fixed x range (0 to the run's last step) so they do not jump while a run streams in.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

import plotly.graph_objects as go

from visualizations.attention import visible_token
from visualizations.training import TRAIN_COLOR, VAL_COLOR

CLASS_COLORS = {"ham": "#31a354", "spam": "#de2d26"}
CLEAR = "rgba(0,0,0,0)"  # transparent paper and plot area: the figures sit on the page's light or dark background
GRID = "rgba(128,128,128,0.25)"  # a grid line that shows on both

AccuracyPoint = tuple[int, float, "float | None"]  # (step, train accuracy, val accuracy)


def _layout(figure: go.Figure, title: str, height: int = 320) -> go.Figure:
    figure.update_layout(
        title={"text": title, "font": {"size": 14}},
        height=height,
        margin={"l": 10, "r": 10, "t": 50, "b": 10},
        paper_bgcolor=CLEAR,
        plot_bgcolor=CLEAR,
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.0, "xanchor": "right", "x": 1.0},
        uirevision=title,  # keep zoom steady between streamed updates
    )
    figure.update_xaxes(showgrid=True, gridcolor=GRID, zeroline=False)
    figure.update_yaxes(showgrid=True, gridcolor=GRID, zeroline=False)
    return figure


def accuracy_curves_figure(points: Sequence[AccuracyPoint], max_steps: int,
                           title: str = "accuracy (higher is better)") -> go.Figure:
    """Train and validation accuracy against the step; the y axis is fixed at 0 to 100%."""
    figure = go.Figure()
    for index, (name, color) in enumerate((("train accuracy", TRAIN_COLOR), ("validation accuracy", VAL_COLOR)),
                                          start=1):
        rows = [(row[0], row[index]) for row in points if row[index] is not None]
        if rows:
            steps, values = zip(*rows)
            figure.add_scatter(x=steps, y=values, mode="lines+markers", name=name, line={"color": color, "width": 2},
                               hovertemplate="step %{x}: %{y:.1%}<extra></extra>")
    figure.add_hline(y=0.5, line={"color": "#999", "dash": "dot", "width": 1},
                     annotation_text="coin flip (50%)", annotation_position="bottom right")
    figure.update_xaxes(range=[0, max(max_steps, 1)], title_text="optimizer step")
    figure.update_yaxes(range=[0, 1.04], tickformat=".0%", title_text="share of messages right")
    return _layout(figure, title)


def confusion_figure(matrix: Sequence[Sequence[int]], class_names: Sequence[str] = ("ham", "spam"),
                     title: str = "confusion matrix (test messages)") -> go.Figure:
    """A heatmap of ``matrix[true][predicted]`` with the count and the share of its row in every cell.

    >>> confusion_figure([[120, 9], [4, 125]]).data[0].text[0][1]
    '9<br>(7.0% of ham)'
    """
    rows = [list(row) for row in matrix]
    text = []
    for true_name, row in zip(class_names, rows):
        total = sum(row) or 1
        text.append([f"{count:,}<br>({count / total:.1%} of {true_name})" for count in row])
    figure = go.Figure(go.Heatmap(
        z=rows,
        x=[f"predicted {name}" for name in class_names],
        y=[f"true {name}" for name in class_names],
        text=text,
        texttemplate="%{text}",
        textfont={"size": 15},
        colorscale="Blues",
        showscale=False,
        hovertemplate="%{y}, %{x}: %{z} messages<extra></extra>",
    ))
    figure.update_yaxes(autorange="reversed", tickfont={"size": 13})
    figure.update_xaxes(side="top", tickfont={"size": 13})
    figure.update_layout(title={"text": title, "font": {"size": 14}, "y": 0.98}, height=320,
                         margin={"l": 10, "r": 10, "t": 80, "b": 10}, paper_bgcolor=CLEAR)
    return figure


def class_probability_figure(probs: dict[str, float], title: str = "what the classifier says") -> go.Figure:
    """One horizontal bar per class with its probability (0 to 100%); the winning class is labelled."""
    names = list(probs)
    values = [probs[name] for name in names]
    winner = max(names, key=probs.get) if names else ""
    figure = go.Figure(go.Bar(
        x=values,
        y=names,
        orientation="h",
        marker_color=[CLASS_COLORS.get(name, TRAIN_COLOR) for name in names],
        text=[f"{value:.1%}" for value in values],
        textposition="outside",
        cliponaxis=False,
        hovertemplate="%{y}: %{x:.4f}<extra></extra>",
    ))
    figure.update_xaxes(range=[0, 1.15], tickformat=".0%", title_text="probability")
    figure.update_yaxes(autorange="reversed", tickfont={"size": 14})
    figure.update_layout(title={"text": f"{title}: <b>{winner}</b>", "font": {"size": 14}}, height=200,
                         margin={"l": 10, "r": 30, "t": 50, "b": 10}, paper_bgcolor=CLEAR, plot_bgcolor=CLEAR)
    return figure


# ---------------------------------------------------------------------------------------------------------------
# The loss mask over one formatted example
# ---------------------------------------------------------------------------------------------------------------

# Why a target counts or not: the role of every position in the targets row. The cells stay light in the dark
# theme, so their text is always dark (MASK_TEXT at least 14:1 on every colour, MASK_IGNORED 6:1 on the greys).
MASK_TEXT = "#111827"
MASK_IGNORED = "#4b5563"
MASK_ROLES = {
    "prompt": ("#bfdbfe", "counts: predicts a token of the prompt"),
    "response": ("#bbf7d0", "counts: predicts a token of the response"),
    "end": ("#fde68a", "counts: the first <|endoftext|>, so the model learns to stop"),
    "masked": ("#e5e7eb", "-100: a prompt token, masked (the instruction is not learned)"),
    "padding": ("#f3f4f6", "-100: padding, ignored by the loss"),
}

# Sizes follow the theme's text sizes, so projector mode (larger --text-*) enlarges the cells too. Every text colour
# is set on the element that holds the text (Gradio's `.prose *` rule would give it the page's text colour).
MASK_CSS = f"""
.lab-mask {{ display: flex; flex-wrap: wrap; gap: 3px; font-family: ui-monospace, SFMono-Regular, Menlo, monospace;
            font-size: var(--text-md, 14px); max-height: 460px; overflow-y: auto; padding: 4px; }}
.lab-mask .cell {{ display: inline-flex; flex-direction: column; border-radius: 4px; padding: 1px 4px;
                  min-width: 1.6em; text-align: center; color: {MASK_TEXT}; }}
.lab-mask .cell .inp {{ white-space: pre; color: {MASK_TEXT}; }}
.lab-mask .cell .tgt {{ white-space: pre; font-size: var(--text-sm, 12px); color: {MASK_TEXT};
                       border-top: 1px solid rgba(17, 24, 39, 0.25); }}
.lab-mask .cell.ignored .tgt {{ color: {MASK_IGNORED}; }}
.lab-mask-legend {{ display: flex; flex-wrap: wrap; gap: 10px; font-size: var(--text-md, 14px); margin-bottom: 6px; }}
.lab-mask-legend span {{ border-radius: 4px; padding: 1px 6px; color: {MASK_TEXT}; }}
.lab-mask-break {{ flex-basis: 100%; height: 0; }}
"""


def mask_roles(targets: Sequence[int], n_ids: int, prompt_length: int, ignore_index: int = -100) -> list[str]:
    """The role of each target position (see ``MASK_ROLES``), for a row made by ``instruction_collate``.

    ``n_ids`` is the number of real tokens (prompt + response) and ``prompt_length`` the prompt's share.
    Target ``i`` predicts token ``i + 1``; target ``n_ids - 1`` is the first end-of-text.

    >>> mask_roles([-100, 7, 8, 50256, -100], n_ids=4, prompt_length=2)
    ['masked', 'response', 'response', 'end', 'padding']
    """
    roles = []
    for position, target in enumerate(targets):
        if position >= n_ids:
            roles.append("padding")
        elif target == ignore_index:
            roles.append("masked")
        elif position == n_ids - 1:
            roles.append("end")
        else:
            roles.append("prompt" if position + 1 < prompt_length else "response")
    return roles


def loss_mask_html(input_tokens: Sequence[str], target_tokens: Sequence[str], roles: Sequence[str]) -> str:
    """Every position of one training row: the input token on top, the target it must predict below.

    Targets set to -100 are drawn grey with "−100" instead of a token. The input's line breaks start a new line
    (after the last of several newline tokens in a row), so the Alpaca prompt keeps its shape.
    """
    legend = "".join(f'<span style="background:{color};color:{MASK_TEXT}">{html.escape(text)}</span>'
                     for color, text in MASK_ROLES.values())
    cells = []
    next_tokens = [*input_tokens[1:], ""]
    for position, (token, target, role) in enumerate(zip(input_tokens, target_tokens, roles)):
        color, meaning = MASK_ROLES[role]
        ignored = role in ("masked", "padding")
        target_label = "−100" if ignored else visible_token(target)
        title = f"position {position}: input {token!r} → target {'-100' if ignored else repr(target)} ({meaning})"
        cells.append(
            f'<span class="cell {"ignored" if ignored else "counted"} {role}" style="background:{color};color:{MASK_TEXT}" '
            f'title="{html.escape(title, quote=True)}"><span class="inp">{html.escape(visible_token(token))}</span>'
            f'<span class="tgt">{html.escape(target_label)}</span></span>'
        )
        if token.endswith("\n") and not next_tokens[position].startswith("\n"):  # "\n", "\n" stay on one line
            cells.append('<span class="lab-mask-break"></span>')
    return (f'<div class="lab-mask-legend">{legend}</div>'
            f'<div class="lab-mask">{"".join(cells)}</div>')
