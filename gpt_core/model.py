"""A GPT-2 model written from scratch (chapter 4), with the same maths and shapes as OpenAI's GPT-2.

    tokens -> tok_emb + pos_emb -> dropout -> n_layers x TransformerBlock -> final_norm -> out_head -> logits

Each TransformerBlock is pre-norm:  x = x + attention(norm1(x));  x = x + feed_forward(norm2(x)).
GPTConfig's switches (causal_mask, pos_embedding, residual, norm, activation) turn parts of this off or move
them, for ablations (gpt_core.ablations); their defaults are GPT-2.

    >>> cfg = GPTConfig.preset("nano")
    >>> model = GPTModel(cfg)
    >>> model(torch.tensor([[15496, 11, 314, 716]])).shape   # (batch, tokens, vocab)
    torch.Size([1, 4, 50257])

This is the book layer: plain modules, written as the maths. gpt_core.fast speeds a model up from outside
(fused kernels, memory layouts, a KV cache) without touching its parameters, and tests/test_fast_equal.py
checks every speed-up against the module here.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import asdict, dataclass, fields, replace

import torch
from torch import nn

from gpt_core.attention import MultiHeadAttention

# ---------------------------------------------------------------- configuration
NORM_CHOICES = ("pre", "post", "none")  # GPT-2's pre-norm, the original Transformer's post-norm, no LayerNorm
ACTIVATION_CHOICES = ("gelu", "relu")


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
    # switches for ablations (gpt_core.ablations); the defaults are GPT-2's
    causal_mask: bool = True  # False: attention also sees the tokens after each position
    pos_embedding: bool = True  # False: no position embedding at all (the model gets no word order)
    residual: bool = True  # False: no shortcut connections around attention and the feed-forward
    norm: str = "pre"  # "pre": GPT-2's norm before each sublayer; "post": x = norm(x + sublayer(x)); "none"
    activation: str = "gelu"  # "gelu": the book's tanh GELU; "relu": max(0, x)

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
        for name in ("causal_mask", "pos_embedding", "residual"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"GPTConfig.{name} must be True or False, got {getattr(self, name)!r}.")
        if self.norm not in NORM_CHOICES:
            raise ValueError(f"norm must be one of {', '.join(NORM_CHOICES)} (where the LayerNorms go), "
                             f"got {self.norm!r}.")
        if self.activation not in ACTIVATION_CHOICES:
            raise ValueError(f"activation must be one of {', '.join(ACTIVATION_CHOICES)}, got {self.activation!r}.")

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
    """Normalise each token vector to mean 0 and variance 1, then scale and shift it (learned, per feature).

        >>> LayerNorm(4)(torch.tensor([[1.0, 2.0, 3.0, 4.0]]))
        tensor([[-1.3416, -0.4472,  0.4472,  1.3416]], grad_fn=<AddBackward0>)
    """

    def __init__(self, emb_dim: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps  # keeps the division safe when every value is the same (variance 0)
        self.scale = nn.Parameter(torch.ones(emb_dim))
        self.shift = nn.Parameter(torch.zeros(emb_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=-1, keepdim=True)  # (B, T, 1)
        var = x.var(dim=-1, keepdim=True, unbiased=False)  # (B, T, 1): divided by n, as GPT-2 does
        norm_x = (x - mean) / torch.sqrt(var + self.eps)  # (B, T, emb_dim)
        return self.scale * norm_x + self.shift


class GELU(nn.Module):
    """GELU, the tanh approximation GPT-2 uses: a smooth ReLU that lets a little through below 0.

        >>> GELU()(torch.tensor([-1.0, 0.0, 1.0, 2.0]))
        tensor([-0.1588,  0.0000,  0.8412,  1.9546])
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 0.5 * x * (1 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3))))


class FeedForward(nn.Module):
    """Expand each token vector 4x, GELU (or ReLU: cfg.activation), project back. Works on every position separately."""

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(cfg.emb_dim, 4 * cfg.emb_dim),  # (B, T, 4 * emb_dim)
            GELU() if cfg.activation == "gelu" else nn.ReLU(),  # ReLU: negative values become exactly 0
            nn.Linear(4 * cfg.emb_dim, cfg.emb_dim),  # (B, T, emb_dim)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class TransformerBlock(nn.Module):
    """Attention then feed-forward, each after a LayerNorm and with a shortcut around it (pre-norm).

    The ablation switches of GPTConfig change where the LayerNorms go and whether the shortcuts exist:
        GPT-2 (norm="pre"):           x = x + attention(norm1(x));  x = x + feed_forward(norm2(x))
        original Transformer ("post"): x = norm1(x + attention(x));  x = norm2(x + feed_forward(x))
        norm="none":                  as "pre", with norm1 and norm2 doing nothing (nn.Identity)
        residual=False:               the same lines without "x +"
    """

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.att = MultiHeadAttention(d_in=cfg.emb_dim, d_out=cfg.emb_dim, context_length=cfg.context_length,
                                      dropout=cfg.drop_rate, num_heads=cfg.n_heads, qkv_bias=cfg.qkv_bias,
                                      causal=cfg.causal_mask)
        self.ff = FeedForward(cfg)
        self.norm1 = make_norm(cfg)
        self.norm2 = make_norm(cfg)
        self.drop_shortcut = nn.Dropout(cfg.drop_rate)
        self.post_norm = cfg.norm == "post"
        self.residual = cfg.residual

    def forward(self, x: torch.Tensor, return_weights: bool = False):
        """x (B, T, emb_dim) -> (B, T, emb_dim); with return_weights, also attention's (B, n_heads, T, T)."""
        attn_out = self.att(self.norm_before(x, self.norm1), return_weights=return_weights)
        if return_weights:
            attn_out, attn_weights = attn_out
        x = self.add_shortcut(x, attn_out, self.norm1)  # shortcut around attention
        x = self.add_shortcut(x, self.ff(self.norm_before(x, self.norm2)), self.norm2)  # around the feed-forward
        return (x, attn_weights) if return_weights else x

    def norm_before(self, x: torch.Tensor, norm: nn.Module) -> torch.Tensor:
        """What goes into a sublayer: pre-norm (GPT-2) normalises it; post-norm leaves it as it is."""
        return x if self.post_norm else norm(x)

    def add_shortcut(self, x: torch.Tensor, sublayer_out: torch.Tensor, norm: nn.Module) -> torch.Tensor:
        """x + dropout(sublayer_out): the shortcut. Without residual only the sublayer's output goes on;
        post-norm normalises the sum afterwards."""
        out = self.drop_shortcut(sublayer_out)  # (B, T, emb_dim)
        if self.residual:
            out = x + out  # the shortcut: the sublayer only adds a change to x
        return norm(out) if self.post_norm else out


def make_norm(cfg: GPTConfig) -> nn.Module:
    """A LayerNorm of width emb_dim, or nn.Identity (does nothing, no parameters) when cfg.norm is "none"."""
    return nn.Identity() if cfg.norm == "none" else LayerNorm(cfg.emb_dim)


@dataclass
class ForwardCapture:
    logits: torch.Tensor  # (B, T, vocab_size)
    attn_weights: list[torch.Tensor]  # per layer: (B, n_heads, T, T)
    hidden_states: list[torch.Tensor] | None  # embeddings, then each block's output: (B, T, emb_dim)


class GPTModel(nn.Module):
    """Token ids (B, T) -> logits (B, T, vocab_size): a score for every possible next token, at every position."""

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.cfg = cfg
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.emb_dim)
        # no position embedding (cfg.pos_embedding False): the model is told nothing about word order
        self.pos_emb = nn.Embedding(cfg.context_length, cfg.emb_dim) if cfg.pos_embedding else None
        self.drop_emb = nn.Dropout(cfg.drop_rate)
        self.trf_blocks = nn.ModuleList([TransformerBlock(cfg) for _ in range(cfg.n_layers)])
        self.final_norm = make_norm(cfg)
        self.out_head = nn.Linear(cfg.emb_dim, cfg.vocab_size, bias=False)
        if cfg.tie_weights:
            self.out_head.weight = self.tok_emb.weight  # one matrix, used twice
        if cfg.init == "gpt2":  # "pytorch": every layer keeps the values it drew when it was built
            self.use_gpt2_init()

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

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())  # shared (tied) weights counted once

    def check_length(self, num_tokens: int) -> None:
        """Refuse a text longer than the model's context (it has no position embedding for the rest)."""
        if num_tokens > self.cfg.context_length:
            raise ValueError(f"The model reads at most {self.cfg.context_length} tokens (its context_length), "
                             f"got {num_tokens}. Use a shorter text or keep only the last "
                             f"{self.cfg.context_length} tokens.")

    def embed(self, idx: torch.Tensor) -> torch.Tensor:
        """Token ids (B, T) -> token + position embeddings (B, T, emb_dim), after dropout."""
        num_tokens = idx.shape[1]
        self.check_length(num_tokens)
        tok_embeds = self.tok_emb(idx)  # (B, T, emb_dim): one learned vector per token id
        if self.pos_emb is None:  # cfg.pos_embedding False: nothing tells the model where each token is
            return self.drop_emb(tok_embeds)
        pos_embeds = self.pos_emb(torch.arange(num_tokens, device=idx.device))  # (T, emb_dim): one per position
        return self.drop_emb(tok_embeds + pos_embeds)  # (B, T, emb_dim)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """idx (B, T) token ids -> logits (B, T, vocab_size)."""
        x = self.embed(idx)  # (B, T, emb_dim)
        for block in self.trf_blocks:
            x = block(x)  # (B, T, emb_dim)
        x = self.final_norm(x)
        return self.out_head(x)  # (B, T, vocab_size)

    @torch.no_grad()
    def forward_with_capture(self, idx: torch.Tensor, hidden_states: bool = False) -> ForwardCapture:
        """The forward pass, also keeping every layer's attention weights (and hidden states if asked)."""
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
    layer_norms = 0 if cfg.norm == "none" else 2 * d * (2 * n + 1)  # norm1, norm2 per block + final_norm
    return [
        ("token embedding", cfg.vocab_size * d),
        ("position embedding", cfg.context_length * d if cfg.pos_embedding else 0),
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


@contextlib.contextmanager
def eval_mode(model: nn.Module):
    """Dropout off inside the block (``model.eval()``); the model's train/eval mode is restored afterwards.

    >>> model = GPTModel(GPTConfig.preset("nano")).train()
    >>> with eval_mode(model):
    ...     model.training
    False
    >>> model.training
    True
    """
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)
