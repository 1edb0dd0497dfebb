"""Fast versions of the model's small layers, and the memory order of its weight matrices.

Each class subclasses the book's layer and overrides only ``forward``: gpt_core.fast.speed_up installs it by
swapping ``module.__class__``, so the parameters (names, shapes, values) stay the book's.

- ``FastLayerNorm`` replaces ``gpt_core.model.LayerNorm.forward`` (one fused kernel).
- ``FastGELU`` replaces ``gpt_core.model.GELU.forward`` (one fused kernel).
- ``OneTokenLinear`` replaces ``nn.Linear.forward`` for a single token (``one_token_linear``).
- ``use_fast_layout`` / ``use_training_layout`` choose the memory order of the weights (values unchanged).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from gpt_core.model import GELU, LayerNorm


# ---------------------------------------------------------------- fused kernels
class FastLayerNorm(LayerNorm):
    """Replaces ``LayerNorm.forward`` (mean, var, subtract, divide, scale, shift: six passes over the
    activations) by ``F.layer_norm``: the same formula (biased variance, same eps) in one fused kernel that
    reads x once and, for the backward pass, keeps only the mean and 1/std instead of every intermediate.
    Same values up to float rounding (tests/test_fast_equal.py: within 1e-5).

    Measured (2 CPU cores, float32, forward + backward): nano's 16 x 64 tokens x 128, 1.5 ms -> 0.19 ms;
    GPT-2 small's 256 tokens x 768, 1.7 ms -> 0.30 ms.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, self.scale.shape, self.scale, self.shift, self.eps)


class FastGELU(GELU):
    """Replaces ``GELU.forward`` (0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 * x^3))), written as eight
    tensor operations) by ``F.gelu(x, approximate="tanh")``: the same formula as one fused kernel.

    Measured (2 CPU cores, float32, forward + backward): nano's 16 x 64 tokens x 512, 5.2 ms -> 1.4 ms;
    GPT-2 small's 256 tokens x 3072, 7.2 ms -> 2.0 ms.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(x, approximate="tanh")


# ---------------------------------------------------------------- one token at a time: generation
def one_token_linear(x: torch.Tensor, weight_t: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """x (1, in) @ weight_t (in, out) + bias -> (1, out), the work shared out between the CPU threads.

    Replaces ``F.linear`` (``nn.Linear.forward``) for one token. For a single token a linear layer is a
    matrix-vector product: each weight is read from memory once and used once, so its speed is the memory
    bandwidth. One BLAS matrix-vector call runs on one core, which on a 2-core CPU reads 20-28 GB/s. Here
    the rows of weight_t (one per input feature) are cut into one block per thread; a batched matmul lets
    each thread multiply its slice of x by its block, reading its own stretch of memory, and the partial
    sums are added: 35-47 GB/s together, and GPT-2 small generates ~1.6x faster than with F.linear.

        weight_t (in, out) -> (parts, in / parts, out)   consecutive rows, a view, no copy
        x (1, in) -> (parts, 1, in / parts)
        bmm -> partial sums (parts, 1, out) -> add them up -> (1, out)

    `in` must be divisible by `parts` (one block per thread: torch.get_num_threads()). The sum is taken in
    another order, so it can differ from F.linear in the last bits.

        >>> weight_t = torch.arange(12.0).view(4, 3)  # (in=4, out=3)
        >>> x = torch.ones(1, 4)
        >>> torch.equal(one_token_linear(x, weight_t), x @ weight_t)
        True
    """
    d_in, d_out = weight_t.shape
    parts = torch.get_num_threads()
    blocks = weight_t.view(parts, d_in // parts, d_out)  # (parts, in / parts, out)
    x_pieces = x.reshape(parts, 1, d_in // parts)  # (parts, 1, in / parts)
    partial_sums = torch.bmm(x_pieces, blocks)  # (parts, 1, out)
    out = partial_sums.sum(dim=0)  # (1, out)
    return out if bias is None else out.add_(bias)


def use_one_token_linear(x: torch.Tensor, weight_t: torch.Tensor) -> bool:
    """True when `one_token_linear` is the faster choice: one token, a multi-core CPU, float32 weights laid
    out (in, out) in memory, and `in` divisible by the thread count. Elsewhere F.linear is as fast or faster.
    """
    parts = torch.get_num_threads()
    return (x.device.type == "cpu" and parts > 1 and x.shape[:-1].numel() == 1 and weight_t.is_contiguous()
            and weight_t.dtype == torch.float32 and weight_t.shape[0] % parts == 0)


class OneTokenLinear(nn.Linear):
    """Replaces ``nn.Linear.forward`` with `one_token_linear` when a single token comes in; otherwise it is
    nn.Linear's own forward. The fast path needs the weight stored (in, out) in memory (weight.t()
    contiguous), so that each thread's block is one stretch of memory: `use_fast_layout` stores it so.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight_t = self.weight.t()  # (in, out)
        if use_one_token_linear(x, weight_t):
            return one_token_linear(x, weight_t, self.bias).view(*x.shape[:-1], self.out_features)
        return super().forward(x)


# ---------------------------------------------------------------- memory order of the weights
def matrix_weights(model: nn.Module) -> list[nn.Parameter]:
    """The nn.Linear weights whose memory order can change (not a tied token embedding, not on 'meta')."""
    tok_emb = getattr(model, "tok_emb", None)
    tied = tok_emb.weight if tok_emb is not None else None
    return [module.weight for module in model.modules()
            if isinstance(module, nn.Linear) and module.weight is not tied and module.weight.device.type != "meta"]


def use_fast_layout(model: nn.Module) -> nn.Module:
    """Store the weight matrices in the memory order that generates tokens fastest on CPU (in place).

    Replaces nothing: the book keeps nn.Linear's own order. Shapes and values do not change (the weight
    stays (out, in); only the order of the numbers in memory moves). Generating one token runs a
    matrix-vector product per layer, whose speed depends on reading memory in order:
    - float32: (in, out), as Hugging Face's Conv1D does; `OneTokenLinear`'s fast path needs it.
    - bfloat16 / float16: (out, in), nn.Linear's own order: the CPU's reduced-precision kernels read
      it faster (GPT-2 small: ~15% more tokens per second).
    The tied token embedding keeps its (vocab, emb_dim) order. Call it again after changing the dtype
    (`speed_up(model.to(torch.bfloat16))` does). Training wants the other order: `use_training_layout`.
    """
    for weight in matrix_weights(model):
        if weight.dtype in (torch.bfloat16, torch.float16):
            weight.data = weight.data.contiguous()  # (out, in) in memory
        elif weight.is_contiguous():
            weight.data = weight.data.t().contiguous().t()  # (in, out) in memory
    return model


def use_training_layout(model: nn.Module) -> nn.Module:
    """Store every weight matrix in nn.Linear's own (out, in) order, the one training is fastest with.

    Each gradient is created in its weight's memory order, and the (in, out) order of `use_fast_layout`
    makes the backward pass and AdamW copy and stride through memory: GPT-2 small trains ~20% slower
    with it on CPU.
    """
    for weight in matrix_weights(model):
        weight.data = weight.data.contiguous()  # (out, in) in memory
    return model
