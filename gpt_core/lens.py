"""Looking inside a trained model: the logit lens and knocking out heads or layers.

The logit lens (nostalgebraist, 2020) asks every layer "what would the model say if it stopped here?": each
hidden state goes through the model's own final_norm and out_head, as the last one does. The rows go from
the embeddings (often just "the token that usually follows this one") to the model's real prediction.

Knocking out (an ablation) switches a part off and looks at what changes: a head's output becomes zero, or
a whole block passes its input through unchanged. If the prediction moves a lot, that part mattered here.

    >>> _ = torch.manual_seed(123)
    >>> model = GPTModel(GPTConfig.preset("nano", n_layers=2)).eval()
    >>> idx = torch.tensor([[15496, 11, 314, 716]])            # (1, T)
    >>> lens = logit_lens(model, idx, top_k=3)
    >>> lens.top_ids.shape                                     # (n_layers + 1, T, top_k)
    torch.Size([3, 4, 3])
    >>> with knocked_out(model, heads=[(0, 1)]):               # layer 0, head 1 switched off
    ...     changed = model(idx)
    >>> bool((changed != model(idx)).any())                    # the hooks are gone again afterwards
    True

Both work on the book model and on one sped up by gpt_core.fast.speed_up: they use only forward hooks on
modules both share (a block, its attention's out_proj), never the code inside them.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import torch
from torch import nn

from gpt_core.generate import next_token_probs
from gpt_core.model import GPTConfig, GPTModel, eval_mode


# ---------------------------------------------------------------- the logit lens
@dataclass
class LensResult:
    top_ids: torch.Tensor  # (n_layers + 1, T, k): each layer's k most likely next tokens at each position
    top_probs: torch.Tensor  # (n_layers + 1, T, k), float32
    # row 0 = the embeddings, row i = after block i; the last row is the model's own prediction


def check_single_text(model: GPTModel, idx: torch.Tensor) -> None:
    """idx must be one text's token ids, shape (1, T) with T >= 1, within the model's context and vocabulary."""
    if not isinstance(idx, torch.Tensor) or idx.dim() != 2 or idx.shape[0] != 1 or idx.shape[1] < 1:
        shape = tuple(idx.shape) if isinstance(idx, torch.Tensor) else type(idx).__name__
        raise ValueError(f"Give the token ids of one text, shape (1, T) with at least one token; got {shape}.")
    model.check_length(idx.shape[1])
    vocab_size = model.cfg.vocab_size
    if int(idx.min()) < 0 or int(idx.max()) >= vocab_size:
        raise ValueError(f"Token ids must be between 0 and {vocab_size - 1} (the model's vocabulary).")


def check_top_k(top_k: int, vocab_size: int) -> None:
    if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= vocab_size:
        raise ValueError(f"top_k must be a whole number from 1 to {vocab_size} (the vocabulary), got {top_k!r}.")


@torch.no_grad()
def logit_lens(model: GPTModel, idx: torch.Tensor, top_k: int = 5) -> LensResult:
    """Each layer's top_k next-token guesses at every position of idx (1, T), dropout off.

    Layer by layer: only one (T, vocab) table of probabilities exists at a time (GPT-2: 64 tokens x 50,257
    = 13 MB), never all n_layers + 1 of them.
    """
    check_single_text(model, idx)
    check_top_k(top_k, model.cfg.vocab_size)
    with eval_mode(model):
        capture = model.forward_with_capture(idx, hidden_states=True)
        top_ids, top_probs = [], []
        for hidden in capture.hidden_states:  # embeddings, then after each block: (1, T, emb_dim)
            logits = model.out_head(model.final_norm(hidden))[0]  # (T, vocab): stop here, read out
            probs = torch.softmax(logits.float(), dim=-1)  # (T, vocab)
            top = torch.topk(probs, top_k, dim=-1)  # (T, top_k), most likely first
            top_ids.append(top.indices)
            top_probs.append(top.values)
    return LensResult(top_ids=torch.stack(top_ids), top_probs=torch.stack(top_probs))


# ---------------------------------------------------------------- knocking out heads and layers
def check_knockout(model: GPTModel, heads: list[tuple[int, int]], layers: list[int]) -> None:
    """Every (layer, head) and layer must exist in the model; the message names the valid range."""
    n_layers, n_heads = len(model.trf_blocks), model.cfg.n_heads
    for layer in layers:
        if isinstance(layer, bool) or not isinstance(layer, int) or not 0 <= layer < n_layers:
            raise ValueError(f"Layer {layer!r} does not exist: this model's layers are 0 to {n_layers - 1}.")
    for pair in heads:
        if not (isinstance(pair, tuple | list) and len(pair) == 2):
            raise ValueError(f"A head is a (layer, head) pair, got {pair!r}.")
        layer, head = pair
        if isinstance(layer, bool) or not isinstance(layer, int) or not 0 <= layer < n_layers:
            raise ValueError(f"Layer {layer!r} does not exist: this model's layers are 0 to {n_layers - 1}.")
        if isinstance(head, bool) or not isinstance(head, int) or not 0 <= head < n_heads:
            raise ValueError(f"Head {head!r} does not exist: each layer of this model has heads 0 to {n_heads - 1}.")


def zero_heads_hook(heads: list[int], head_dim: int):
    """A forward pre-hook for out_proj: zero those heads' slices of the context, (B, T, n_heads * head_dim).

    out_proj reads the heads side by side, head h in columns h * head_dim to (h + 1) * head_dim, so a
    zero slice there is exactly "this head said nothing".
    """

    def hook(module: nn.Module, args: tuple) -> tuple:
        context_vec = args[0].clone()  # (B, T, d_out): never change the caller's tensor
        for head in heads:
            context_vec[..., head * head_dim:(head + 1) * head_dim] = 0
        return (context_vec, *args[1:])

    return hook


def pass_through_hook(module: nn.Module, args: tuple, output):
    """A forward hook for a block: return its input x unchanged (with the attention weights, if asked)."""
    x = args[0]  # (B, T, emb_dim): what went into the block
    if isinstance(output, tuple):  # block(x, return_weights=True) -> (x, attn_weights)
        return (x, *output[1:])
    return x


@contextlib.contextmanager
def knocked_out(model: GPTModel, heads: Iterable[tuple[int, int]] = (),
                layers: Iterable[int] = ()) -> Iterator[GPTModel]:
    """Inside the block, those (layer, head)s output zeros and those layers pass their input through.

    The hooks are removed when the block ends, also after an error; the weights are never changed. While
    the block runs, every forward pass of `model` is knocked out, in any thread: for a model that others
    use at the same time (a server's), knock out a `copy_sharing_weights(model)` (knockout_effect does).
    """
    heads, layers = [tuple(pair) for pair in heads], list(layers)
    check_knockout(model, heads, layers)
    heads_per_layer: dict[int, list[int]] = {}
    for layer, head in heads:
        heads_per_layer.setdefault(layer, []).append(head)
    handles = []
    try:
        for layer, layer_heads in heads_per_layer.items():
            attention = model.trf_blocks[layer].att
            hook = zero_heads_hook(layer_heads, attention.head_dim)
            handles.append(attention.out_proj.register_forward_pre_hook(hook))
        for layer in set(layers):
            handles.append(model.trf_blocks[layer].register_forward_hook(pass_through_hook))
        yield model
    finally:
        for handle in handles:
            handle.remove()


# ---------------------------------------------------------------- before and after
def copy_sharing_weights(model: nn.Module) -> nn.Module:
    """A copy of the model's modules that holds the very same weight tensors (no memory for weights).

    Hooks put on the copy leave the original alone, so a server can knock out heads for one student
    while other students use the model. GPT-2 small: about 10 ms.

        >>> model = GPTModel(GPTConfig.preset("nano"))
        >>> twin = copy_sharing_weights(model)
        >>> twin is model, twin.out_head.weight is model.out_head.weight
        (False, True)
    """
    shared = {}  # deepcopy's memo: id -> object to use instead of a copy
    for module in model.modules():
        for tensor in [*module._parameters.values(), *module._buffers.values(), *vars(module).values()]:
            if isinstance(tensor, torch.Tensor):
                shared[id(tensor)] = tensor
    return copy.deepcopy(model, shared)


@dataclass
class KnockoutResult:
    ids: torch.Tensor  # (k,): the intact model's k most likely next tokens (after the last position)
    before: torch.Tensor  # (k,): their probabilities, intact
    after: torch.Tensor  # (k,): their probabilities with the parts knocked out
    after_ids: torch.Tensor  # (k,): the knocked-out model's own k most likely next tokens
    after_probs: torch.Tensor  # (k,)


@torch.no_grad()
def knockout_effect(model: GPTModel, idx: torch.Tensor, heads: Iterable[tuple[int, int]] = (),
                    layers: Iterable[int] = (), top_k: int = 10) -> KnockoutResult:
    """The next-token probabilities after idx (1, T), intact and knocked out, dropout off.

    `model` itself is never hooked: the knock-out runs on a `copy_sharing_weights` of it.
    """
    check_single_text(model, idx)
    check_top_k(top_k, model.cfg.vocab_size)
    twin = copy_sharing_weights(model).eval()
    before = next_token_probs(twin(idx)[:, -1])[0]  # (vocab,): the intact model
    with knocked_out(twin, heads, layers):
        after = next_token_probs(twin(idx)[:, -1])[0]  # (vocab,): with the parts switched off
    top_before, top_after = torch.topk(before, top_k), torch.topk(after, top_k)
    return KnockoutResult(ids=top_before.indices, before=top_before.values, after=after[top_before.indices],
                          after_ids=top_after.indices, after_probs=top_after.values)


__all__ = ["GPTConfig", "GPTModel", "KnockoutResult", "LensResult", "copy_sharing_weights", "knocked_out",
           "knockout_effect", "logit_lens"]
