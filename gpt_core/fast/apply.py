"""Apply the fast layer to a book model, in place and from outside (as pytorch-labs/gpt-fast does).

Every book module whose class has a fast subclass gets that class (``module.__class__`` is swapped): the
object, its parameters and its state_dict stay the book's, only the forward passes change. Then the weights
are put in the memory order the job wants. ``SPEED_UPS`` lists what changes, what it replaces and why.

Every ablation switch of GPTConfig (gpt_core.ablations) is honoured, none needs a module left on its book
class: the fast attention runs its kernel without a mask when ``causal_mask`` is False (and generation then
keeps no KV cache), the fast block reuses the book's ``norm_before`` / ``add_shortcut`` (norm placement,
shortcuts), the fast ``embed`` adds no positions without ``pos_embedding``; nn.ReLU and nn.Identity (ReLU,
no LayerNorm) have no fast class and stay as they are. tests/test_fast_equal.py checks every ablation.

    >>> from gpt_core.model import GPTConfig, GPTModel
    >>> model = GPTModel(GPTConfig(vocab_size=50, context_length=8, emb_dim=16, n_heads=2, n_layers=1))
    >>> is_fast(model)
    False
    >>> is_fast(speed_up(model)) or plain_mode()
    True
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from gpt_core.attention import MultiHeadAttention
from gpt_core.fast.attention import FastMultiHeadAttention
from gpt_core.fast.layers import FastGELU, FastLayerNorm, OneTokenLinear, use_fast_layout, use_training_layout
from gpt_core.fast.memory import keep_freed_memory
from gpt_core.fast.model import FastGPTModel, FastTransformerBlock
from gpt_core.fast.settings import plain_mode
from gpt_core.model import GELU, GPTModel, LayerNorm, TransformerBlock


@dataclass(frozen=True)
class SpeedUp:
    name: str  # the fast layer's function or class
    replaces: str  # the book layer's function it stands in for
    why: str  # one line: what it saves


SPEED_UPS: list[SpeedUp] = [
    SpeedUp("fast.layers.FastLayerNorm", "model.LayerNorm.forward",
            "one fused kernel instead of six passes over the activations"),
    SpeedUp("fast.layers.FastGELU", "model.GELU.forward", "one fused kernel instead of eight tensor operations"),
    SpeedUp("fast.attention.FastMultiHeadAttention", "attention.MultiHeadAttention.forward",
            "PyTorch's fused scaled_dot_product_attention: no T x T score matrix kept"),
    SpeedUp("fast.attention.use_fp32_attention", "attention.MultiHeadAttention.forward (bf16 training on CPU)",
            "short bf16 sequences: float32 attention's backward pass is 2-3x faster on CPU"),
    SpeedUp("fast.attention.KVCache", "generate's model(window) for every new token",
            "each layer keeps its keys and values: a new token costs one position of work"),
    SpeedUp("fast.layers.OneTokenLinear", "nn.Linear.forward (one token)",
            "one token's matrix-vector product shared out between the CPU cores: ~1.6x faster generation"),
    SpeedUp("fast.layers.use_fast_layout", "nn.Linear's (out, in) weight order (generation)",
            "float32 weights stored (in, out), the order one token's product reads fastest"),
    SpeedUp("fast.model.head_for_decoding", "model.GPTModel.out_head while generating",
            "a transposed copy of the head, read in memory order: one token's logits ~40% faster"),
    SpeedUp("fast.model.sparse_embedding_grad", "the dense gradient of model.GPTModel.embed's tok_emb",
            "tied head on CPU: only the looked-up rows, ~20% of a GPT-2 small training step"),
    SpeedUp("fast.layers.use_training_layout", "nn.Linear's (out, in) weight order, kept for training",
            "undoes use_fast_layout's order, with which GPT-2 small trains ~20% slower"),
    SpeedUp("fast.memory.keep_freed_memory", "nothing (allocator tuning: glibc keeps freed blocks)",
            "training on CPU: no page faults for each step's new tensors (21 ms instead of 34 ms a step)"),
]

# book class -> its fast subclass (exact classes only: a subclass someone else wrote is left alone)
FAST_CLASSES: dict[type, type] = {
    LayerNorm: FastLayerNorm,
    GELU: FastGELU,
    MultiHeadAttention: FastMultiHeadAttention,
    TransformerBlock: FastTransformerBlock,
    GPTModel: FastGPTModel,
    nn.Linear: OneTokenLinear,
}


def swap_in_fast_classes(model: nn.Module) -> nn.Module:
    """Give every book module its fast class (in place; parameters, buffers and state_dict unchanged)."""
    for module in model.modules():
        fast_class = FAST_CLASSES.get(type(module))
        if fast_class is not None:
            module.__class__ = fast_class
    return model


def is_fast(model: nn.Module) -> bool:
    """True when the fast layer has been applied to `model` (at least one module has a fast class)."""
    fast_classes = set(FAST_CLASSES.values())
    return any(type(module) in fast_classes for module in model.modules())


def speed_up(model: nn.Module) -> nn.Module:
    """Speed `model` up for inference and generation, in place; returns it. Idempotent.

    Fused LayerNorm / GELU / attention, the one-token path with its memory layout, and KV-cache decoding
    with the decoding head (gpt_core.generate uses them through ``FastGPTModel.start_decoding``). Call it
    again after changing the dtype: the best memory layout depends on it. Does nothing in plain mode
    (``LLM_LAB_PLAIN=1``, gpt_core.fast.settings).
    """
    if plain_mode():
        return model
    swap_in_fast_classes(model)
    return use_fast_layout(model)


def speed_up_for_training(model: nn.Module, device: torch.device | str) -> nn.Module:
    """Speed `model` up for training on `device`, in place; returns it. Call it after ``model.to(device)``.

    The same fast classes as `speed_up` (with their training rules: fp32 attention for short bf16
    sequences on CPU, the sparse gradient of a tied embedding on CPU), the weights in nn.Linear's (out, in)
    order, glibc keeping freed memory on CPU, and TF32 matmuls on CUDA (a 10-bit mantissa, as nanoGPT and
    the book's appendix use). Does nothing in plain mode.
    """
    if plain_mode():
        return model
    device = torch.device(device)
    if device.type == "cpu":
        keep_freed_memory()
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    swap_in_fast_classes(model)
    return use_training_layout(model)
