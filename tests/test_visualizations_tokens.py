"""visualizations.tokens: spans, tables and heatmaps (pure functions, no app)."""

from __future__ import annotations

import html
import re

import numpy as np

from visualizations.tokens import (
    cosine_heatmap,
    embedding_heatmaps,
    merge_steps_html,
    merges_table_html,
    token_spans_html,
    token_text,
    windows_html,
)

TITLES = re.compile(r'<span class="tok"[^>]*title="([^"]*)"')
VOCAB = {1212: b" the", 7: b"<script>alert(1)</script>", 9: b"a\nb", 300: b"\xf0\x9f", 97: b"a", 98: b"b", 256: b"ab"}


def test_one_span_per_token_with_titles():
    out = token_spans_html([1212, 9, 300], [VOCAB[1212], VOCAB[9], VOCAB[300]])
    assert out.startswith('<div class="lab-tokens">')
    assert out.count('<span class="tok"') == 3
    assert [html.unescape(t) for t in TITLES.findall(out)] == [
        "id 1212 · b' the'",
        "id 9 · b'a\\nb'",
        "id 300 · b'\\xf0\\x9f'",
    ]
    assert ">·the</span>" in out  # visible space
    assert ">a↵\nb</span>" in out  # visible newline, then a real line break


def test_script_is_escaped():
    out = token_spans_html([7], [VOCAB[7]])
    assert "<script>" not in out
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in out


def test_draw_cap_with_note():
    ids = list(range(10))
    out = token_spans_html(ids, [b"x"] * 10, max_tokens=4)
    assert out.count('<span class="tok"') == 4
    assert "Drawing the first 4 of 10 tokens; the counts cover them all." in out


def test_token_text():
    assert token_text(b" the") == "·the"
    assert token_text(b"\t\r") == "→␍"
    assert token_text(b"\xf0\x9f") == "\\xf0\\x9f"


def test_merge_steps_html():
    steps = [([97, 98, 97], None, None, None), ([256, 97], (97, 98), 256, 1)]
    out = merge_steps_html(steps, VOCAB.__getitem__)
    assert out.count('<tr class="step') == 2
    assert out.count('class="tok chip"') == 5
    assert out.count("outline:3px") == 1  # the one token the merge made
    assert "merge #1: <b>a</b> + <b>b</b> → <b>ab</b> (id 256)" in out
    assert '<tr class="step current">' in out


def test_merges_table_html_with_gap():
    rows = [(1, (97, 98), 256, 12), None, (2, (256, 97), 1212, None)]
    out = merges_table_html(rows, lambda t: VOCAB.get(t, b"?"))
    assert out.count("<table") == 2  # the gap splits the merges into two tables side by side
    assert out.count("<tr>") == 4  # a header per table + 2 merges
    assert "<td>12</td>" in out and "<td>—</td>" in out
    assert "<caption>first merges</caption>" in out and "<caption>last merges</caption>" in out


def test_windows_html_shifts_target_by_one():
    out = windows_html([([97, 98], [98, 97])], VOCAB.__getitem__)
    input_row, target_row = re.findall(r"<tr><th>(?:input|target)</th>(.*?)</tr>", out)
    assert input_row.count('class="tok"') == 2 and target_row.count('class="tok"') == 2
    assert input_row.endswith("<td></td>")  # input fills columns 0..T-1
    assert target_row.startswith("<td></td>")  # target fills columns 1..T
    assert "<caption>window 0</caption>" in out


def test_embedding_heatmaps_shape_and_labels():
    rng = np.random.default_rng(0)
    tok, pos = rng.normal(size=(5, 16)), rng.normal(size=(5, 16))
    fig = embedding_heatmaps(tok, pos, tok + pos, ["the", "·cat", "·sat", "·the", "·mat"])
    assert len(fig.data) == 3
    assert [np.shape(trace.z) for trace in fig.data] == [(5, 16)] * 3
    assert list(fig.layout.yaxis.ticktext) == ["0: the", "1: ·cat", "2: ·sat", "3: ·the", "4: ·mat"]
    titles = [a.text for a in fig.layout.annotations]
    assert titles == ["token embeddings (5, 16)", "+ positional (5, 16)", "= input embeddings (5, 16)"]
    assert fig.layout.height == 430


def test_cosine_heatmap_shape_and_labels():
    sims = np.eye(3)
    fig = cosine_heatmap(sims, ["a", "b", "a"], "cosine")
    assert np.shape(fig.data[0].z) == (3, 3)
    assert list(fig.layout.xaxis.ticktext) == ["0: a", "1: b", "2: a"]
    assert list(fig.layout.yaxis.ticktext) == ["0: a", "1: b", "2: a"]  # repeated tokens stay apart
    assert list(fig.data[0].text[0]) == ["1.00", "0.00", "0.00"]
    assert cosine_heatmap(np.eye(12), ["a"] * 12, "cosine").data[0].text[0][0] == "1.0"  # 12 tokens: 1 decimal


# ----- ids printed under the tokens, dark text on every chip (projector mode, both themes) ---------------------------

IDS = re.compile(r'<span class="tok[^"]*" data-id=(\d+) ')


def _contrast(foreground: str, background: str) -> float:
    def luminance(hex_colour: str) -> float:
        channels = [int(hex_colour[i:i + 2], 16) / 255 for i in (1, 3, 5)]
        r, g, b = (c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels)
        return 0.2126 * r + 0.7152 * g + 0.0722 * b

    high, low = sorted((luminance(foreground), luminance(background)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def test_every_token_view_carries_the_ids_for_the_css_to_print():
    assert IDS.findall(token_spans_html([1212, 9, 300], [VOCAB[1212], VOCAB[9], VOCAB[300]])) == ["1212", "9", "300"]
    replay = merge_steps_html([([97, 98, 97], None, None, None), ([256, 97], (97, 98), 256, 1)], VOCAB.__getitem__)
    assert IDS.findall(replay) == ["97", "98", "97", "256", "97"]
    table = merges_table_html([(1, (97, 98), 256, 12)], VOCAB.__getitem__)
    assert IDS.findall(table) == ["97", "98", "256"]
    windows = windows_html([([97, 98], [98, 97])], VOCAB.__getitem__)
    assert re.findall(r'<small class="tok-id">(\d+)</small>', windows) == ["97", "98", "98", "97"]


def test_a_token_ending_in_line_breaks_keeps_them_outside_its_chip():
    out = token_spans_html([198, 628, 1212], [b"\n", b".\n\n", VOCAB[1212]])
    assert '">↵</span>\n<span' in out  # the chip shows ↵, the real line break follows it
    assert '">.↵↵</span>\n\n<span' in out
    assert IDS.findall(out) == ["198", "628", "1212"]


def test_chip_text_reads_at_4_5_to_1_on_every_chip_colour():
    from visualizations.tokens import CHIP_TEXT, TOKEN_COLORS

    assert min(_contrast(CHIP_TEXT, colour) for colour in TOKEN_COLORS) >= 4.5  # the chips' text (the app's CSS)
    assert f"color:{CHIP_TEXT}" in windows_html([([97], [98])], VOCAB.__getitem__)


def test_loss_mask_text_reads_at_4_5_to_1_on_every_cell_colour():
    from visualizations.finetune import MASK_CSS, MASK_IGNORED, MASK_ROLES, MASK_TEXT

    assert min(_contrast(MASK_TEXT, colour) for colour, _ in MASK_ROLES.values()) >= 4.5
    assert min(_contrast(MASK_IGNORED, MASK_ROLES[role][0]) for role in ("masked", "padding")) >= 4.5
    assert "#9ca3af" not in MASK_CSS  # the old pale grey (2:1)


def test_heatmaps_are_transparent_so_they_follow_the_theme():
    fig = cosine_heatmap(np.eye(3), ["a", "b", "a"], "cosine")
    assert fig.layout.paper_bgcolor == "rgba(0,0,0,0)" and fig.layout.plot_bgcolor == "rgba(0,0,0,0)"
    heatmaps = embedding_heatmaps(np.eye(2), np.eye(2), np.eye(2), ["a", "b"])
    assert heatmaps.layout.paper_bgcolor == "rgba(0,0,0,0)"
