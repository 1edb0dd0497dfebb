"""The book's printed numbers, reproduced with the book's seeds (facts from the book; tests written here).

A student with *Build a Large Language Model (From Scratch)* open compares numbers: chapter 3's attention
outputs, and chapter 4's GPT_CONFIG_124M model after ``torch.manual_seed(123)``: its parameter count and the
six token ids it greedily appends to "Hello, I am" ("Featureiman Byeswickattribute argue").
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gpt_core.attention import (
    CausalAttention,
    MultiHeadAttention,
    MultiHeadAttentionWrapper,
    SelfAttention,
    simple_attention,
)
from gpt_core.fast import speed_up
from gpt_core.fast.settings import use_plain
from gpt_core.generate import generate
from gpt_core.model import GPTConfig, GPTModel

# "Your journey starts with one step": the book's 6 x 3 inputs (chapter 3)
INPUTS = torch.tensor([[0.43, 0.15, 0.89], [0.55, 0.87, 0.66], [0.57, 0.85, 0.64],
                       [0.22, 0.58, 0.33], [0.77, 0.25, 0.10], [0.05, 0.80, 0.55]])
BOOK_IDS = [15496, 11, 314, 716, 27018, 24086, 47843, 30961, 42348, 7267]  # "Hello, I am" + 6 greedy tokens


def assert_printed(actual: torch.Tensor, printed: list[list[float]]) -> None:
    largest = (actual.detach() - torch.tensor(printed)).abs().max().item()
    print(f"largest difference from the printed values: {largest:.2e}")
    assert largest < 1e-4


# ---------------------------------------------------------------- chapter 3
def test_simple_attention_context_vectors():
    _, context = simple_attention(INPUTS)
    assert_printed(context, [[0.4421, 0.5931, 0.5790], [0.4419, 0.6515, 0.5683], [0.4431, 0.6496, 0.5671],
                             [0.4304, 0.6298, 0.5510], [0.4671, 0.5910, 0.5266], [0.4177, 0.6503, 0.5645]])


def test_self_attention_with_linear_layers_seed_789():
    torch.manual_seed(789)
    assert_printed(SelfAttention(3, 2)(INPUTS),
                   [[-0.0739, 0.0713], [-0.0748, 0.0703], [-0.0749, 0.0702],
                    [-0.0760, 0.0685], [-0.0763, 0.0679], [-0.0754, 0.0693]])


CAUSAL = [[-0.4519, 0.2216], [-0.5874, 0.0058], [-0.6300, -0.0632],
          [-0.5675, -0.0843], [-0.5526, -0.0981], [-0.5299, -0.1081]]


def test_causal_attention_seed_123():
    torch.manual_seed(123)
    batch = torch.stack((INPUTS, INPUTS))  # (2, 6, 3)
    context = CausalAttention(3, 2, 6, 0.0)(batch)
    assert context.shape == (2, 6, 2)
    assert_printed(context[0], CAUSAL)


def test_multi_head_wrapper_seed_123():
    torch.manual_seed(123)
    context = MultiHeadAttentionWrapper(3, 2, 6, 0.0, num_heads=2)(torch.stack((INPUTS, INPUTS)))
    assert context.shape == (2, 6, 4)
    assert_printed(context[0], [[-0.4519, 0.2216, 0.4772, 0.1063], [-0.5874, 0.0058, 0.5891, 0.3257],
                                [-0.6300, -0.0632, 0.6202, 0.3860], [-0.5675, -0.0843, 0.5478, 0.3589],
                                [-0.5526, -0.0981, 0.5321, 0.3428], [-0.5299, -0.1081, 0.5077, 0.3493]])


def test_multi_head_attention_seed_123():
    torch.manual_seed(123)
    context = MultiHeadAttention(3, 2, 6, 0.0, num_heads=2)(torch.stack((INPUTS, INPUTS)))
    assert_printed(context[0], [[0.3190, 0.4858], [0.2943, 0.3897], [0.2856, 0.3593],
                                [0.2693, 0.3873], [0.2639, 0.3928], [0.2575, 0.4028]])


# ---------------------------------------------------------------- chapter 4
def test_book_preset_is_gpt_config_124m():
    cfg = GPTConfig.preset("book")
    assert (cfg.vocab_size, cfg.context_length, cfg.emb_dim, cfg.n_heads, cfg.n_layers) == (50257, 1024, 768, 12, 12)
    assert (cfg.drop_rate, cfg.qkv_bias, cfg.tie_weights, cfg.init) == (0.1, False, False, "pytorch")


def book_weights(cfg: GPTConfig, seed: int) -> list[torch.Tensor]:
    """The book's chapter-4 GPTModel, built layer by layer in its own order with PyTorch's default init."""
    torch.manual_seed(seed)
    d = cfg.emb_dim
    tensors = [nn.Embedding(cfg.vocab_size, d).weight, nn.Embedding(cfg.context_length, d).weight]
    for _ in range(cfg.n_layers):
        for _ in range(3):  # W_query, W_key, W_value (no bias)
            tensors.append(nn.Linear(d, d, bias=cfg.qkv_bias).weight)
        out_proj = nn.Linear(d, d)
        expand, project = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)
        tensors += [out_proj.weight, out_proj.bias, expand.weight, expand.bias, project.weight, project.bias]
        tensors += [torch.ones(d), torch.zeros(d), torch.ones(d), torch.zeros(d)]  # norm1, norm2
    tensors += [torch.ones(d), torch.zeros(d), nn.Linear(d, cfg.vocab_size, bias=False).weight]
    return tensors


@pytest.mark.slow
def test_seed_123_gives_the_books_model_and_its_six_tokens():
    cfg = GPTConfig.preset("book")
    torch.manual_seed(123)
    model = GPTModel(cfg).eval()
    assert model.num_parameters() == 163_009_536
    ours = list(model.parameters())
    reference = book_weights(cfg, 123)
    assert [tuple(t.shape) for t in ours] == [tuple(t.shape) for t in reference]
    assert all(torch.equal(a, b) for a, b in zip(ours, reference))  # bit for bit
    del reference
    prompt = torch.tensor([BOOK_IDS[:4]])
    assert generate(model, prompt, 6).tolist() == [BOOK_IDS]
    assert generate(model, prompt, 6, use_cache=False).tolist() == [BOOK_IDS]
    with use_plain(False):
        speed_up(model)  # the fast layer (KV cache, fused kernels, one-token path) continues the same way
    assert generate(model, prompt, 6).tolist() == [BOOK_IDS]
