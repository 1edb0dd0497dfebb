"""The fine-tuning figures and the loss-mask HTML: traces, fixed axes, counts and roles (the loss curves are
pretraining's figure: tests/test_visualizations_training.py)."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from visualizations.finetune import (
    MASK_ROLES,
    accuracy_curves_figure,
    class_probability_figure,
    confusion_figure,
    loss_mask_html,
    mask_roles,
    visible_token,
)


def test_accuracy_curves_fixed_y_axis_and_points():
    figure = accuracy_curves_figure([(0, 0.5, 0.45), (56, 1.0, 0.98), (112, 1.0, None)], max_steps=168)
    train, val = figure.data
    assert (train.name, val.name) == ("train accuracy", "validation accuracy")
    assert list(train.x) == [0, 56, 112] and list(val.x) == [0, 56]
    assert list(figure.layout.yaxis.range) == [0, 1.04]
    assert list(figure.layout.xaxis.range) == [0, 168]


def test_confusion_figure_counts_labels_and_row_shares():
    figure = confusion_figure([[120, 10], [4, 124]])
    heatmap = figure.data[0]
    assert [list(row) for row in heatmap.z] == [[120, 10], [4, 124]]
    assert list(heatmap.x) == ["predicted ham", "predicted spam"]
    assert list(heatmap.y) == ["true ham", "true spam"]
    assert heatmap.text[0][0] == "120<br>(92.3% of ham)"
    assert heatmap.text[1][0] == "4<br>(3.1% of spam)"


def test_class_probability_figure_names_the_winner():
    figure = class_probability_figure({"ham": 0.25, "spam": 0.75})
    bar = figure.data[0]
    assert list(bar.y) == ["ham", "spam"] and list(bar.x) == [0.25, 0.75]
    assert list(bar.text) == ["25.0%", "75.0%"]
    assert figure.layout.title.text.endswith("<b>spam</b>")
    assert list(figure.layout.xaxis.range) == [0, 1.15]


def test_mask_roles_without_and_with_instruction_mask():
    # 6 real tokens (4 prompt + 2 response), 2 padding positions: targets predict tokens 1..5, then end-of-text
    unmasked = [11, 12, 13, 20, 21, 50256, -100, -100]
    assert mask_roles(unmasked, n_ids=6, prompt_length=4) == [
        "prompt", "prompt", "prompt", "response", "response", "end", "padding", "padding"]
    masked = [-100, -100, -100, 20, 21, 50256, -100, -100]
    assert mask_roles(masked, n_ids=6, prompt_length=4) == [
        "masked", "masked", "masked", "response", "response", "end", "padding", "padding"]


@given(st.integers(1, 30), st.integers(1, 30), st.integers(0, 5), st.booleans())
def test_mask_roles_counts_match_the_collate_rule(prompt_length, response_length, padding, mask):
    n_ids = prompt_length + response_length
    targets = list(range(1, n_ids)) + [50256] + [-100] * padding
    if mask:
        targets[: prompt_length - 1] = [-100] * (prompt_length - 1)
    roles = mask_roles(targets, n_ids=n_ids, prompt_length=prompt_length)
    assert len(roles) == n_ids + padding
    assert roles.count("padding") == padding
    assert roles.count("end") == 1
    assert roles.count("masked") == (prompt_length - 1 if mask else 0)
    assert roles.count("response") == response_length
    ignored = sum(role in ("masked", "padding") for role in roles)
    assert ignored == sum(target == -100 for target in targets)


def test_loss_mask_html_cells_labels_and_line_breaks():
    html = loss_mask_html(["###", " Response", ":\n", "5", "<|endoftext|>"],
                          [" Response", ":\n", "5", "<|endoftext|>", "<|endoftext|>"],
                          ["masked", "masked", "response", "end", "padding"])
    cells = re.findall(r'<span class="cell (ignored|counted) (\w+)"', html)
    assert cells == [("ignored", "masked"), ("ignored", "masked"), ("counted", "response"), ("counted", "end"),
                     ("ignored", "padding")]
    assert html.count('<span class="tgt">−100</span>') == 3
    assert html.count('class="lab-mask-break"') == 1  # after the token that ends with a newline
    assert "·Response" in html and ":↵" in html
    assert all(text in html for _, text in MASK_ROLES.values() if "<" not in text)


def test_visible_token():
    assert visible_token(" a\tb\n") == "·a→b↵"
    assert visible_token("") == "∅"
