"""A GPT-2 model written from scratch (chapter 4), with the same maths and shapes as OpenAI's GPT-2.

    tokens -> tok_emb + pos_emb -> dropout -> n_layers x TransformerBlock -> final_norm -> out_head -> logits

Each TransformerBlock is pre-norm:  x = x + attention(norm1(x));  x = x + feed_forward(norm2(x)).

    >>> cfg = GPTConfig.preset("nano")
    >>> model = GPTModel(cfg)
    >>> model(torch.tensor([[15496, 11, 314, 716]])).shape   # (batch, tokens, vocab)
    torch.Size([1, 4, 50257])
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace

import torch
import torch.nn.functional as F
from torch import nn

from gpt_core.attention import KVCache, Linear, MultiHeadAttention


# ---------------------------------------------------------------- configuration
@dataclass
class GPTConfig:
    vocab_size: int = 50257  # GPT-2's BPE vocabulary
    context_length: int = 1024  # longest sequence the model can read (positions)
    emb_dim: int = 768  # width of every token vector
    n_heads: int = 12  # attention heads per layer
    n_layers: int = 12  # transformer blocks
    drop_rate: float = 0.0  # dropout on embeddings, attention weights and shortcuts
    qkv_bias: bool = True  # bias in the query/key/value projections (GPT-2 has one)
    tie_weights: bool = True  # output head shares its weights with the token embedding
    init: str = "gpt2"  # "gpt2": every matrix from normal(0, 0.02), as OpenAI's; "pytorch": the layers' own
    #                     defaults, as the book's chapters 4-5 model (with its seed, the book's very weights)

    def __post_init__(self):
        for name in ("vocab_size", "context_length", "emb_dim", "n_heads", "n_layers"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"GPTConfig.{name} must be a positive whole number, got {value!r}.")
        if self.emb_dim % self.n_heads != 0:
            raise ValueError(f"emb_dim ({self.emb_dim}) must be divisible by n_heads ({self.n_heads}) "
                             f"so that every head gets the same width.")
        if not 0.0 <= self.drop_rate < 1.0:
            raise ValueError(f"drop_rate must be between 0 and 1 (1 excluded), got {self.drop_rate}.")
        if self.init not in ("gpt2", "pytorch"):
            raise ValueError(f"init must be 'gpt2' or 'pytorch', got {self.init!r}.")

    @property
    def head_dim(self) -> int:
        return self.emb_dim // self.n_heads

    @classmethod
    def preset(cls, name: str, **overrides) -> GPTConfig:
        """`GPTConfig.preset("micro", vocab_size=tokenizer.vocab_size)`"""
        if name not in PRESETS:
            raise ValueError(f"Unknown preset {name!r}; choose one of {', '.join(PRESETS)}.")
        return replace(PRESETS[name], **overrides)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> GPTConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"Unknown GPTConfig keys: {', '.join(unknown)}. Known keys: {', '.join(sorted(known))}.")
        return cls(**d)


def _gpt2(emb_dim, n_heads, n_layers):
    return GPTConfig(emb_dim=emb_dim, n_heads=n_heads, n_layers=n_layers)


def _classroom(n_layers, emb_dim, n_heads, context_length):
    return GPTConfig(n_layers=n_layers, emb_dim=emb_dim, n_heads=n_heads, context_length=context_length,
                     drop_rate=0.1)


PRESETS: dict[str, GPTConfig] = {
    # the book's GPT_CONFIG_124M (chapter 4): dropout 0.1, no qkv bias, an untied head and PyTorch's own
    # init, so `torch.manual_seed(123); GPTModel(GPTConfig.preset("book"))` holds the book's weights
    "book": GPTConfig(drop_rate=0.1, qkv_bias=False, tie_weights=False, init="pytorch"),
    # OpenAI's four GPT-2 sizes (124M, 355M, 774M, 1558M parameters)
    "gpt2-small": _gpt2(768, 12, 12),
    "gpt2-medium": _gpt2(1024, 16, 24),
    "gpt2-large": _gpt2(1280, 20, 36),
    "gpt2-xl": _gpt2(1600, 25, 48),
    # classroom sizes: train in seconds to minutes on a laptop CPU
    "nano": _classroom(2, 128, 4, 128),
    "micro": _classroom(4, 256, 4, 256),
    "mini": _classroom(6, 384, 6, 256),
}


# ---------------------------------------------------------------- building blocks
class LayerNorm(nn.Module):
    """Normalise each token vector to mean 0, variance 1, then rescale: scale * (x - mean) / sqrt(var + eps) + shift."""

    def __init__(self, emb_dim: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.scale = nn.Parameter(torch.ones(emb_dim))
        self.shift = nn.Parameter(torch.zeros(emb_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # same as: (x - mean) / sqrt(var + eps) * scale + shift, with var the biased variance; one fused kernel
        return F.layer_norm(x, self.scale.shape, self.scale, self.shift, self.eps)


class GELU(nn.Module):
    """GELU, tanh approximation (GPT-2's): 0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 * x^3)))."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(x, approximate="tanh")  # the formula above, as one fused kernel


class FeedForward(nn.Module):
    """Expand each token vector 4x, GELU, project back. Works on every position separately."""

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.layers = nn.Sequential(
            Linear(cfg.emb_dim, 4 * cfg.emb_dim),  # (B, T, 4 * emb_dim); nn.Linear + one-token fast path
            GELU(),
            Linear(4 * cfg.emb_dim, cfg.emb_dim),  # (B, T, emb_dim)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class TransformerBlock(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.att = MultiHeadAttention(d_in=cfg.emb_dim, d_out=cfg.emb_dim, context_length=cfg.context_length,
                                      dropout=cfg.drop_rate, num_heads=cfg.n_heads, qkv_bias=cfg.qkv_bias)
        self.ff = FeedForward(cfg)
        self.norm1 = LayerNorm(cfg.emb_dim)
        self.norm2 = LayerNorm(cfg.emb_dim)
        self.drop_shortcut = nn.Dropout(cfg.drop_rate)

    def forward(self, x: torch.Tensor, return_weights: bool = False, kv_cache: KVCache | None = None):
        attn_out = self.att(self.norm1(x), return_weights=return_weights, kv_cache=kv_cache)
        if return_weights:
            attn_out, attn_weights = attn_out
        x = x + self.drop_shortcut(attn_out)  # shortcut around attention
        x = x + self.drop_shortcut(self.ff(self.norm2(x)))  # shortcut around the feed-forward
        return (x, attn_weights) if return_weights else x


@dataclass
class ForwardCapture:
    logits: torch.Tensor  # (B, T, vocab_size)
    attn_weights: list[torch.Tensor]  # per layer: (B, n_heads, T, T)
    hidden_states: list[torch.Tensor] | None  # embeddings, then each block's output: (B, T, emb_dim)


class GPTModel(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.cfg = cfg
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.emb_dim)
        self.pos_emb = nn.Embedding(cfg.context_length, cfg.emb_dim)
        self.drop_emb = nn.Dropout(cfg.drop_rate)
        self.trf_blocks = nn.ModuleList([TransformerBlock(cfg) for _ in range(cfg.n_layers)])
        self.final_norm = LayerNorm(cfg.emb_dim)
        self.out_head = nn.Linear(cfg.emb_dim, cfg.vocab_size, bias=False)
        if cfg.tie_weights:
            self.out_head.weight = self.tok_emb.weight  # one matrix, used twice
        if cfg.init == "gpt2":  # "pytorch": every layer keeps the values it drew when it was built
            self.use_gpt2_init()
        self.use_fast_layout()  # memory order only: the values stay the same

    def use_gpt2_init(self) -> GPTModel:
        """GPT-2's init: every matrix from normal(0, 0.02), biases 0, and the residual projections smaller."""
        self.apply(self._init_weights)
        # GPT-2: residual projections start smaller so the sum over layers keeps a steady scale
        for block in self.trf_blocks:
            for proj in (block.att.out_proj, block.ff.layers[2]):
                nn.init.normal_(proj.weight, mean=0.0, std=0.02 / math.sqrt(2 * self.cfg.n_layers))
        return self

    @staticmethod
    def _init_weights(module: nn.Module):
        if isinstance(module, nn.Linear | nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def use_fast_layout(self) -> GPTModel:
        """Store the blocks' weight matrices in the memory order that generates tokens fastest on CPU.

        Shapes and values do not change (nn.Linear's weight stays (out, in); only the order of the numbers
        in memory moves). Generating one token runs a matrix-vector product per layer, whose speed depends
        on reading memory in order:
        - float32: (in, out), as Hugging Face's Conv1D does; `Linear`'s one-token path needs it.
        - bfloat16 / float16: (out, in), nn.Linear's own order: the CPU's reduced-precision kernels read
          it faster (GPT-2 small: ~15% more tokens per second).
        The tied token embedding keeps its (vocab, emb_dim) order. Called after init and after loading
        weights; call it again after changing the dtype (`model.to(torch.bfloat16)`). Training wants the
        other order: see `use_training_layout`.
        """
        for weight in self._block_weights():
            if weight.dtype in (torch.bfloat16, torch.float16):
                weight.data = weight.data.contiguous()  # (out, in) in memory
            elif weight.is_contiguous():
                weight.data = weight.data.t().contiguous().t()  # (in, out) in memory
        return self

    def use_training_layout(self) -> GPTModel:
        """Store every weight matrix in nn.Linear's own (out, in) order, the one training is fastest with.

        Each gradient is created in its weight's memory order, and the (in, out) order of `use_fast_layout`
        makes the backward pass and AdamW copy and stride through memory: GPT-2 small trains ~20% slower
        with it on CPU. gpt_core.train and gpt_core.finetune call this before they build the optimizer.
        """
        for weight in self._block_weights():
            weight.data = weight.data.contiguous()  # (out, in) in memory
        return self

    def _block_weights(self) -> list[nn.Parameter]:
        """The nn.Linear weights whose memory order can change (not the tied embedding, not on 'meta')."""
        return [module.weight for module in self.modules()
                if isinstance(module, nn.Linear) and module.weight is not self.tok_emb.weight
                and module.weight.device.type != "meta"]

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())  # shared (tied) weights counted once

    def embed(self, idx: torch.Tensor, start_pos: int = 0) -> torch.Tensor:
        """Token ids (B, T) -> token + position embeddings (B, T, emb_dim), after dropout."""
        num_tokens = idx.shape[1]
        if start_pos + num_tokens > self.cfg.context_length:
            raise ValueError(f"The model reads at most {self.cfg.context_length} tokens (its context_length), "
                             f"got {start_pos + num_tokens}. Use a shorter text or keep only the last "
                             f"{self.cfg.context_length} tokens.")
        positions = torch.arange(start_pos, start_pos + num_tokens, device=idx.device)
        token_vectors = F.embedding(idx, self.tok_emb.weight, sparse=self.sparse_embedding_grad(idx))
        return self.drop_emb(token_vectors + self.pos_emb(positions))  # (B, T, emb_dim)

    def sparse_embedding_grad(self, idx: torch.Tensor) -> bool:
        """True when the token embedding should send its gradient as rows (sparse): CPU training, tied head.

        The gradient of a lookup table is zero except in the rows of the tokens that were looked up. As a
        dense matrix it is mostly zeros (50,257 x 768 for GPT-2: 154 MB to fill, then to add to the head's
        gradient). With a tied head the shared matrix gets the head's dense gradient anyway, so sending only
        the looked-up rows gives the same sum with two fewer passes over that memory (on 2 CPU cores ~20%
        of a GPT-2 small training step). Untied (e.g. a classifier's new head), the embedding's gradient
        must stay dense, because AdamW takes no sparse gradients. On a GPU those passes cost little.
        """
        return (self.out_head.weight is self.tok_emb.weight and idx.device.type == "cpu"
                and torch.is_grad_enabled() and self.tok_emb.weight.requires_grad)

    def forward(self, idx: torch.Tensor, *, kv_caches: list[KVCache] | None = None,
                last_token_only: bool = False) -> torch.Tensor:
        """idx (B, T) token ids -> logits (B, T, vocab_size).

        kv_caches: one KVCache per layer (generation); idx then holds only the new tokens.
        last_token_only: compute logits for the last position only (B, 1, vocab_size), as generation needs.
        """
        x = self.transformer(idx, kv_caches=kv_caches)
        if last_token_only:
            x = x[:, -1:, :]
        return self.out_head(x)  # (B, T, vocab_size)

    def transformer(self, idx: torch.Tensor, kv_caches: list[KVCache] | None = None) -> torch.Tensor:
        """Everything before the output head: idx (B, T) -> final-normed hidden states (B, T, emb_dim)."""
        start_pos = kv_caches[0].length if kv_caches else 0
        x = self.embed(idx, start_pos)
        for i, block in enumerate(self.trf_blocks):
            x = block(x, kv_cache=kv_caches[i] if kv_caches else None)
        return self.final_norm(x)

    @torch.no_grad()
    def forward_with_capture(self, idx: torch.Tensor, hidden_states: bool = False) -> ForwardCapture:
        """One forward pass that also keeps every layer's attention weights (and hidden states if asked)."""
        x = self.embed(idx)
        states = [x] if hidden_states else None
        attn_weights = []
        for block in self.trf_blocks:
            x, weights = block(x, return_weights=True)
            attn_weights.append(weights)  # (B, n_heads, T, T)
            if states is not None:
                states.append(x)
        logits = self.out_head(self.final_norm(x))
        return ForwardCapture(logits=logits, attn_weights=attn_weights, hidden_states=states)

    def new_kv_caches(self, batch_size: int, max_len: int | None = None) -> list[KVCache]:
        """One empty, pre-allocated KVCache per layer, on the model's device and dtype."""
        cfg = self.cfg
        weight = self.tok_emb.weight
        max_len = min(max_len or cfg.context_length, cfg.context_length)
        return [KVCache.allocate(batch_size, cfg.n_heads, max_len, cfg.head_dim, weight.dtype, weight.device)
                for _ in range(cfg.n_layers)]


# ---------------------------------------------------------------- size and memory
def parameter_breakdown(model_or_cfg: GPTModel | GPTConfig) -> list[tuple[str, int]]:
    """Parameters per component; the numbers add up to the model's total.

    >>> dict(parameter_breakdown(GPTConfig.preset("gpt2-small")))["token embedding"]
    38597376
    """
    cfg = model_or_cfg.cfg if isinstance(model_or_cfg, GPTModel) else model_or_cfg
    d, n = cfg.emb_dim, cfg.n_layers
    attention = 3 * (d * d + (d if cfg.qkv_bias else 0)) + d * d + d  # W_query/W_key/W_value + out_proj
    feed_forward = d * 4 * d + 4 * d + 4 * d * d + d
    layer_norms = 2 * d * (2 * n + 1)  # norm1, norm2 per block + final_norm; scale and shift each
    return [
        ("token embedding", cfg.vocab_size * d),
        ("position embedding", cfg.context_length * d),
        ("attention (all layers)", n * attention),
        ("feed-forward (all layers)", n * feed_forward),
        ("layer norms", layer_norms),
        ("output head", 0 if cfg.tie_weights else d * cfg.vocab_size),
    ]


def estimate_memory(cfg: GPTConfig, dtype: torch.dtype = torch.float32, training: bool = False,
                    batch_size: int = 8, context_length: int | None = None) -> dict[str, int]:
    """Rough bytes needed: weights; with training also gradients, AdamW's two moments (fp32) and activations.

    Activations: Korthikanti et al. (2022) count about T * (34 * emb_dim + 5 * n_heads * T) bytes per layer
    and sequence at 2 bytes per value (scaled here to `dtype`), plus the logits and their softmax.
    """
    bytes_per_value = torch.finfo(dtype).bits // 8 if dtype.is_floating_point else 4
    n_params = sum(count for _, count in parameter_breakdown(cfg))
    memory = {"weights": n_params * bytes_per_value}
    if training:
        tokens = context_length or cfg.context_length
        layer_bytes_16bit = tokens * (34 * cfg.emb_dim + 5 * cfg.n_heads * tokens)
        logits_bytes = 2 * tokens * cfg.vocab_size * bytes_per_value
        memory["gradients"] = n_params * bytes_per_value
        memory["optimizer"] = n_params * 4 * 2
        memory["activations"] = batch_size * (cfg.n_layers * layer_bytes_16bit * bytes_per_value // 2 + logits_bytes)
    memory["total"] = sum(memory.values())
    return memory
