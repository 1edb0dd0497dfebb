"""gpt_core.lens: the logit lens and knocking out heads and layers, on the book model and a sped-up one."""

from __future__ import annotations

import copy

import numpy as np
import plotly.graph_objects as go
import pytest
import torch

from gpt_core.fast import speed_up
from gpt_core.lens import copy_sharing_weights, knocked_out, knockout_effect, logit_lens
from gpt_core.model import GPTConfig, GPTModel
from visualizations.lens import knockout_figure, layer_names, lens_figure

VOCAB = 97


def tiny_model(seed: int = 0, n_layers: int = 3) -> GPTModel:
    torch.manual_seed(seed)
    cfg = GPTConfig(vocab_size=VOCAB, context_length=16, emb_dim=32, n_heads=4, n_layers=n_layers)
    return GPTModel(cfg).eval()


def text_ids(seed: int = 1, n_tokens: int = 7) -> torch.Tensor:
    return torch.randint(0, VOCAB, (1, n_tokens), generator=torch.Generator().manual_seed(seed))


def out_proj_inputs(model: GPTModel, idx: torch.Tensor) -> list[torch.Tensor]:
    """What each layer's out_proj reads (the heads side by side), (1, T, emb_dim) per layer."""
    seen = []
    handles = [block.att.out_proj.register_forward_pre_hook(lambda module, args: seen.append(args[0].clone()))
               for block in model.trf_blocks]
    try:
        with torch.no_grad():
            model(idx)
    finally:
        for handle in handles:
            handle.remove()
    return seen


# ---------------------------------------------------------------- logit lens
def test_lens_last_row_is_the_models_own_top_k():
    model, idx = tiny_model(), text_ids()
    lens = logit_lens(model, idx, top_k=5)
    assert lens.top_ids.shape == lens.top_probs.shape == (3 + 1, 7, 5)
    with torch.no_grad():
        top = torch.topk(torch.softmax(model(idx)[0], dim=-1), 5)  # (T, 5)
    assert torch.equal(lens.top_ids[-1], top.indices)
    assert (lens.top_probs[-1] - top.values).abs().max().item() <= 1e-6
    assert lens.top_probs.dtype == torch.float32
    assert bool((lens.top_probs[:, :, :-1] >= lens.top_probs[:, :, 1:]).all())  # most likely first


def test_lens_first_row_reads_the_embeddings_and_middle_rows_the_blocks():
    model, idx = tiny_model(), text_ids()
    lens = logit_lens(model, idx, top_k=3)
    with torch.no_grad():
        x = model.embed(idx)
        expected = [x]
        for block in model.trf_blocks:
            x = block(x)
            expected.append(x)
        for row, hidden in enumerate(expected):
            probs = torch.softmax(model.out_head(model.final_norm(hidden))[0], dim=-1)
            assert torch.equal(lens.top_ids[row], torch.topk(probs, 3).indices), row


def test_lens_on_a_sped_up_model_equals_the_book_model():
    model, idx = tiny_model(), text_ids()
    fast = speed_up(copy.deepcopy(model)).eval()
    book_lens, fast_lens = logit_lens(model, idx), logit_lens(fast, idx)
    assert torch.equal(book_lens.top_ids, fast_lens.top_ids)
    assert torch.allclose(book_lens.top_probs, fast_lens.top_probs, atol=1e-6)


def test_lens_turns_dropout_off_and_leaves_the_mode_as_it_was():
    model = tiny_model()
    model.cfg.drop_rate = 0.5
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.5
    model.train()
    idx = text_ids()
    first, second = logit_lens(model, idx), logit_lens(model, idx)
    assert torch.equal(first.top_probs, second.top_probs)
    assert model.training


def test_lens_bad_input_messages():
    model = tiny_model()
    with pytest.raises(ValueError, match=r"shape \(1, T\) with at least one token; got \(2, 3\)"):
        logit_lens(model, torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="top_k must be a whole number from 1 to 97"):
        logit_lens(model, text_ids(), top_k=0)
    with pytest.raises(ValueError, match="at most 16 tokens"):
        logit_lens(model, text_ids(n_tokens=17))
    with pytest.raises(ValueError, match="between 0 and 96"):
        logit_lens(model, torch.tensor([[5, 97]]))


# ---------------------------------------------------------------- knocking out
def test_knocking_out_a_head_zeroes_exactly_its_slice_of_out_projs_input():
    model, idx = tiny_model(), text_ids()
    head_dim = model.cfg.head_dim  # 8
    intact = out_proj_inputs(model, idx)
    with knocked_out(model, heads=[(1, 2)]):
        knocked = out_proj_inputs(model, idx)
    assert torch.equal(knocked[0], intact[0])  # layer 0 runs before the knocked-out head: unchanged
    assert bool((knocked[1][..., 2 * head_dim:3 * head_dim] == 0).all())
    assert bool((intact[1][..., 2 * head_dim:3 * head_dim] != 0).any())
    others = [h for h in range(4) if h != 2]
    for h in others:  # the other heads of layer 1 read the same inputs: their outputs are unchanged
        part = slice(h * head_dim, (h + 1) * head_dim)
        assert torch.equal(knocked[1][..., part], intact[1][..., part]), h
    assert not torch.equal(knocked[2], intact[2])  # later layers see the change


def test_hooks_are_removed_after_the_block_and_after_an_error():
    model, idx = tiny_model(), text_ids()
    with torch.no_grad():
        intact = model(idx)
        with knocked_out(model, heads=[(0, 0), (0, 3)], layers=[2]):
            changed = model(idx)
        assert not torch.equal(changed, intact)
        assert torch.equal(model(idx), intact)
        with pytest.raises(RuntimeError, match="boom"), knocked_out(model, heads=[(1, 1)]):
            raise RuntimeError("boom")
        assert torch.equal(model(idx), intact)
    assert all(not block.att.out_proj._forward_pre_hooks and not block._forward_hooks for block in model.trf_blocks)


def test_knocking_out_a_layer_equals_the_model_without_that_block():
    model, idx = tiny_model(), text_ids()
    without = copy.deepcopy(model)
    del without.trf_blocks[1]
    with torch.no_grad(), knocked_out(model, layers=[1]):
        assert torch.allclose(model(idx), without(idx), atol=1e-6)
        capture = model.forward_with_capture(idx, hidden_states=True)  # the block's (x, weights) form too
    assert torch.equal(capture.hidden_states[2], capture.hidden_states[1])


@pytest.mark.parametrize("heads, layers", [([(1, 2)], []), ([(0, 1), (2, 3)], [1]), ([], [0])])
def test_knocked_out_sped_up_model_equals_the_book_model(heads, layers):
    model, idx = tiny_model(), text_ids()
    fast = speed_up(copy.deepcopy(model)).eval()
    with torch.no_grad(), knocked_out(model, heads, layers), knocked_out(fast, heads, layers):
        book, sped_up = model(idx), fast(idx)
        intact = tiny_model()(idx)
    assert torch.allclose(book, sped_up, atol=1e-5)
    assert not torch.allclose(book, intact, atol=1e-3)


def test_knockout_bad_indices_name_the_valid_range():
    model = tiny_model()
    cases = [
        ({"heads": [(3, 0)]}, "Layer 3 does not exist: this model's layers are 0 to 2."),
        ({"heads": [(0, 4)]}, "Head 4 does not exist: each layer of this model has heads 0 to 3."),
        ({"heads": [(0, -1)]}, "Head -1 does not exist"),
        ({"layers": [-1]}, "Layer -1 does not exist: this model's layers are 0 to 2."),
        ({"layers": [1.0]}, "Layer 1.0 does not exist"),
        ({"heads": [(0, 1, 2)]}, r"A head is a \(layer, head\) pair, got \(0, 1, 2\)."),
    ]
    for kwargs, message in cases:
        with pytest.raises(ValueError, match=message), knocked_out(model, **kwargs):
            pass
    assert all(not block.att.out_proj._forward_pre_hooks for block in model.trf_blocks)


def test_knockout_effect_leaves_the_shared_model_alone_and_reports_before_and_after():
    model, idx = tiny_model(), text_ids()
    result = knockout_effect(model, idx, layers=[2], top_k=4)
    with torch.no_grad():
        before = torch.softmax(model(idx)[0, -1], dim=-1)
        with knocked_out(model, layers=[2]):
            after = torch.softmax(model(idx)[0, -1], dim=-1)
    assert torch.equal(result.ids, torch.topk(before, 4).indices)
    assert torch.allclose(result.before, before[result.ids], atol=1e-6)
    assert torch.allclose(result.after, after[result.ids], atol=1e-6)
    assert torch.equal(result.after_ids, torch.topk(after, 4).indices)
    assert all(not block._forward_hooks for block in model.trf_blocks)
    twin = copy_sharing_weights(model)
    assert all(a is b for a, b in zip(model.parameters(), twin.parameters()))
    assert twin.trf_blocks[0] is not model.trf_blocks[0]


# ---------------------------------------------------------------- figures
def test_lens_figure_rows_cells_and_bold_hits():
    tokens = [[["a", "b"], ["c", "d"]], [["·x", "y"], ["z", "w"]], [["q", "r"], ["s", "t"]]]  # (3 rows, 2, 2)
    probs = np.array([[[0.5, 0.2], [0.4, 0.1]], [[0.9, 0.05], [0.3, 0.2]], [[0.6, 0.1], [0.7, 0.2]]])
    figure = lens_figure(tokens, probs, [" in", "put"], first_position=5, next_tokens=["·x", None], title="t")
    go.Figure(figure.to_dict())  # plotly's full validation accepts it
    heatmap = figure.data[0]
    assert list(heatmap.y) == ["embeddings", "after layer 0", "after layer 1 (output)"]
    assert list(heatmap.x) == ["5:·in", "6:put"]
    assert [list(row) for row in heatmap.text] == [["a", "c"], ["<b>·x</b>", "z"], ["q", "s"]]
    assert heatmap.z[1][0] == 0.9
    assert heatmap.customdata[1][0] == ("after layer 0 · position 5 '·in'<br>next in the text: '·x'"
                                        "<br>1. '·x' 90.0%<br>2. 'y' 5.0%")
    assert layer_names(49)[-1] == "after layer 47 (output)"


def test_knockout_figure_bars_and_changes():
    figure = knockout_figure(["·the", "a"], np.array([0.5, 0.2]), np.array([0.3, 0.25]), "t")
    go.Figure(figure.to_dict())
    intact, knocked = figure.data
    assert list(intact.y) == ["1. ·the", "2. a"] and list(intact.text) == ["50.0%", "20.0%"]
    assert list(knocked.text) == ["30.0% (−20.0 pts)", "25.0% (+5.0 pts)"]
    assert len(knockout_figure(["·the"], np.array([0.5])).data) == 1  # the intact model alone
