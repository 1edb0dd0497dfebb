"""The one-token fast path (gpt_core.fast.layers.one_token_linear) and the decoding head copy (gpt_core.fast.model)."""
import copy

import pytest
import torch
import torch.nn.functional as F

from gpt_core.fast import speed_up
from gpt_core.fast.layers import OneTokenLinear, one_token_linear, use_one_token_linear
from gpt_core.fast.settings import use_plain
from gpt_core.generate import generate
from gpt_core.model import GPTConfig, GPTModel

TINY = GPTConfig(vocab_size=97, context_length=32, emb_dim=24, n_heads=4, n_layers=2)


@pytest.mark.parametrize("threads", [2, 3, 4])
def test_one_token_linear_matches_f_linear(threads):
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        torch.manual_seed(0)
        weight_t, bias, x = torch.randn(48, 40), torch.randn(40), torch.randn(1, 48)
        assert use_one_token_linear(x, weight_t)
        diff = (one_token_linear(x, weight_t, bias) - F.linear(x, weight_t.t(), bias)).abs().max().item()
        print("largest difference", diff)
        assert diff < 1e-5
    finally:
        torch.set_num_threads(old)


def test_linear_uses_fast_path_only_for_one_token():
    layer = OneTokenLinear(24, 8)
    assert not use_one_token_linear(torch.zeros(1, 2, 24), layer.weight.t())  # two tokens
    assert not use_one_token_linear(torch.zeros(1, 1, 24), layer.weight.t())  # (out, in) layout
    layer.weight.data = layer.weight.data.t().contiguous().t()
    x = torch.randn(1, 1, 24)
    assert torch.allclose(layer(x), F.linear(x, layer.weight, layer.bias), atol=1e-6)
    assert layer(x).shape == (1, 1, 8)


def test_head_copy_follows_weight_updates():
    torch.manual_seed(0)
    with use_plain(False):
        model = speed_up(GPTModel(TINY).eval())
    prompt = torch.tensor([[1, 2, 3]])
    generate(model, prompt, 4)  # makes the head copy
    with torch.no_grad():
        model.tok_emb.weight.mul_(-1.0)  # in place: same tensor, new version
    fresh = copy.deepcopy(model)
    assert torch.equal(generate(model, prompt, 6), generate(fresh, prompt, 6))
    assert torch.equal(generate(model, prompt, 6, use_cache=False), generate(model, prompt, 6))
