"""Ablations: switch one part of GPT-2 or of its training off, train again, and compare the losses.

Each ``Ablation`` names one change as settings of the model (``GPTConfig``) and of the run (``TrainConfig``),
with what a student reads before the run (``what``), the guess (``expected``: the validation loss against the
unchanged run) and the reason shown afterwards (``why``). ``apply_ablations`` applies several in order and says
which ones changed nothing (the run already had that setting); ``changed_settings`` lists (setting, before,
after) for a table. ``python -m gpt_core.train --ablate NAME`` uses them from the command line.

    >>> model_cfg, train_cfg, already = apply_ablations(["no-causal-mask", "constant-lr"], GPTConfig.preset("nano"),
    ...                                                  TrainConfig())
    >>> model_cfg.causal_mask, train_cfg.schedule, already
    (False, 'constant', [])
    >>> changed_settings(["fewer-heads", "dropout"], GPTConfig.preset("nano"), TrainConfig())  # nano: 0.1 already
    [('n_heads', '4', '2')]
    >>> apply_ablations(["dropout"], GPTConfig.preset("nano"), TrainConfig())[2]
    ['dropout']
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields, replace

from gpt_core.model import GPTConfig, GPTModel
from gpt_core.train_config import TrainConfig

EXPECTED_CHOICES = ("lower", "about the same", "higher", "breaks")  # the val loss against the unchanged run


@dataclass(frozen=True)
class Ablation:
    name: str  # CLI name, e.g. "no-causal-mask"
    title: str  # "No causal mask"
    what: str  # one sentence a student reads before the run: what the switch changes
    expected: str  # "lower" | "about the same" | "higher" | "breaks": the val loss against the unchanged run
    why: str  # 1-2 sentences shown after the run: why that happens
    model: Callable[[GPTConfig], dict]  # GPTConfig overrides (may be {})
    train: Callable[[TrainConfig], dict]  # TrainConfig overrides (may be {})


def no_change(config) -> dict:
    return {}


def fewer_heads(cfg: GPTConfig) -> dict:
    """Half the heads (at least 1), each twice as wide: emb_dim stays, so the parameters stay too."""
    return {"n_heads": heads_that_fit("fewer-heads", max(1, cfg.n_heads // 2), cfg.emb_dim)}


def more_heads(cfg: GPTConfig) -> dict:
    """Twice the heads, each half as wide: emb_dim stays, so the parameters stay too."""
    return {"n_heads": heads_that_fit("more-heads", 2 * cfg.n_heads, cfg.emb_dim)}


def heads_that_fit(name: str, heads: int, emb_dim: int) -> int:
    """`heads`, or a ValueError when emb_dim cannot be split into that many equal heads."""
    if emb_dim % heads != 0:
        raise ValueError(f"{name} needs {heads} heads, but emb_dim {emb_dim} cannot be split into {heads} "
                         f"equal parts. Pick an emb_dim divisible by {heads}.")
    return heads


_ABLATIONS = [
    Ablation(
        "no-causal-mask", "No causal mask",
        "Attention may also look at the tokens after each position, including the very token it must predict.",
        "lower",
        "Each position can read the next token and copy it, so the loss collapses towards 0 without learning "
        "language; generation falls apart, because when the model writes, the next token is not there yet.",
        lambda cfg: {"causal_mask": False}, no_change),
    Ablation(
        "no-pos-embedding", "No position embedding",
        "The position embedding is removed, so nothing added to a token's vector says where in the text it is.",
        "higher",
        "Attention alone sees a bag of tokens; the causal mask still lets a token tell how many came before it, "
        "so the model recovers some word order and the loss rises only a little.",
        lambda cfg: {"pos_embedding": False}, no_change),
    Ablation(
        "no-residual", "No shortcut connections",
        "Each block's attention and feed-forward replace the token vector instead of adding a change to it.",
        "higher",
        "Without shortcuts a token's own identity must survive every sublayer and the gradients must pass "
        "through all of them on the way back, so the model learns slowly (deep models hardly at all).",
        lambda cfg: {"residual": False}, no_change),
    Ablation(
        "no-layernorm", "No LayerNorm",
        "Every LayerNorm, the final one included, is removed, so nothing rescales the token vectors.",
        "about the same",
        "Nothing keeps the size of the vectors in check, but a model only a few blocks deep does not let them grow "
        "much, so it trains about as well; every block adds to the sum, so deep models drift without it.",
        lambda cfg: {"norm": "none"}, no_change),
    Ablation(
        "post-norm", "Post-norm (the original Transformer)",
        "Each LayerNorm moves from before its sublayer to after the shortcut's sum: x = norm(x + sublayer(x)).",
        "about the same",
        "A shallow model trains either way; post-norm's gradients pass through a LayerNorm in every layer, "
        "which is why deep post-norm models need a warm-up and GPT-2 moved the norm in front.",
        lambda cfg: {"norm": "post"}, no_change),
    Ablation(
        "relu", "ReLU instead of GELU",
        "The feed-forward uses ReLU, which sets every negative value to exactly 0, instead of the smooth GELU.",
        "about the same",
        "ReLU and GELU differ only near 0 (GELU lets a little through below 0 and has no kink), so a small model "
        "learns about as well with either; GELU is usually a little better.",
        lambda cfg: {"activation": "relu"}, no_change),
    Ablation(
        "untied-head", "Untied output head",
        "The output head gets its own vocab x emb_dim matrix instead of reusing the token embedding's.",
        "about the same",
        "Many more parameters, but in a short run neither way wins by much; tying saves that matrix and lets "
        "rare tokens learn from both ends of the model.",
        lambda cfg: {"tie_weights": False}, no_change),
    Ablation(
        "tied-head", "Tied output head",
        "The output head reuses the token embedding's matrix (as GPT-2 does) instead of having its own.",
        "higher",
        "The book's model draws its token embedding from N(0, 1), so a head tied to it starts with huge logits "
        "(a first loss near 86, not 8.3) and spends its steps shrinking them; GPT-2 ties its head but starts the "
        "embedding at N(0, 0.02).",
        lambda cfg: {"tie_weights": True}, no_change),
    Ablation(
        "no-weight-decay", "No weight decay",
        "AdamW no longer pulls the weight matrices towards 0 a little at every step.",
        "about the same",
        "Weight decay curbs overfitting over long training; a short run on plenty of text barely overfits, "
        "so the validation loss hardly moves.",
        no_change, lambda config: {"weight_decay": 0.0}),
    Ablation(
        "no-warmup", "No warm-up",
        "The first step already uses the full learning rate instead of climbing to it over the warm-up steps.",
        "higher",
        "The first updates are large while the weights are random and Adam's gradient estimates are still "
        "rough, so the run first has to recover from badly aimed steps (or, at high rates, diverges).",
        no_change, lambda config: {"warmup_steps": 0}),
    Ablation(
        "constant-lr", "Constant learning rate",
        "After the warm-up the learning rate stays at its peak instead of decaying along a cosine.",
        "higher",
        "Near the end the cosine schedule takes small steps that settle the weights into a low point; a "
        "constant rate keeps bouncing around it, so the final loss is a little higher.",
        no_change, lambda config: {"schedule": "constant"}),
    Ablation(
        "no-clipping", "No gradient clipping",
        "Steps whose gradients are very large are no longer scaled down to a norm of grad_clip.",
        "about the same",
        "Clipping only acts on the rare steps with a huge gradient; a healthy run has few, so the loss barely "
        "changes (clipping guards against spikes).",
        no_change, lambda config: {"grad_clip": None}),
    Ablation(
        "dropout", "Dropout 0.1",
        "During training 10% of the embeddings, attention weights and sublayer outputs are set to 0 at random.",
        "higher",
        "Dropout keeps the model from leaning on any single activation, which fights overfitting; a short run "
        "hardly overfits, so it mostly slows learning.",
        lambda cfg: {"drop_rate": 0.1}, no_change),
    Ablation(
        "fewer-heads", "Half the heads",
        "Each layer has half as many attention heads, each twice as wide (same emb_dim, same parameters).",
        "about the same",
        "The same parameters are split into fewer, wider heads, so each layer can follow fewer relations at "
        "once; at this size the difference is small.",
        fewer_heads, no_change),
    Ablation(
        "more-heads", "Twice the heads",
        "Each layer has twice as many attention heads, each half as wide (same emb_dim, same parameters).",
        "about the same",
        "More, narrower heads can follow more relations at once but each compares tokens in fewer dimensions; "
        "at this size the difference is small.",
        more_heads, no_change),
]
ABLATIONS: dict[str, Ablation] = {ablation.name: ablation for ablation in _ABLATIONS}


def check_names(names: Sequence[str]) -> None:
    """Refuse a name that is not in ABLATIONS, listing the known names."""
    if isinstance(names, str):
        raise ValueError(f"Give the ablations as a list of names, such as [{names!r}], not one string.")
    unknown = [name for name in names if name not in ABLATIONS]
    if unknown:
        raise ValueError(f"Unknown ablation {unknown[0]!r}; choose from {', '.join(ABLATIONS)}.")


def apply_ablations(names: Sequence[str], model_cfg: GPTConfig,
                    train_config: TrainConfig) -> tuple[GPTConfig, TrainConfig, list[str]]:
    """Apply the named ablations in order. Returns the new configs and the names that changed nothing.

    The configs given are not changed (new ones are made with dataclasses.replace, so both are checked
    again). A name changes nothing when the run already has its setting (``"dropout"`` on a model with
    drop_rate 0.1): callers show "already so in this run".
    """
    check_names(names)
    already_so = []
    for name in names:
        ablation = ABLATIONS[name]
        model_changes = changes(model_cfg, ablation.model(model_cfg))
        train_changes = changes(train_config, ablation.train(train_config))
        if not model_changes and not train_changes:
            already_so.append(name)
            continue
        model_cfg = replace(model_cfg, **model_changes)
        train_config = replace(train_config, **train_changes)
    return model_cfg, train_config, already_so


def changes(config, overrides: dict) -> dict:
    """The overrides whose value differs from the config's."""
    return {key: value for key, value in overrides.items() if getattr(config, key) != value}


def changed_settings(names: Sequence[str], model_cfg: GPTConfig,
                     train_config: TrainConfig) -> list[tuple[str, str, str]]:
    """(setting, before, after) for every setting the named ablations change, model settings first."""
    new_model_cfg, new_train_config, _ = apply_ablations(names, model_cfg, train_config)
    rows = []
    for before, after in ((model_cfg, new_model_cfg), (train_config, new_train_config)):
        for field in fields(before):
            old, new = getattr(before, field.name), getattr(after, field.name)
            if old is not new and old != new:
                rows.append((field.name, str(old), str(new)))
    return rows


def put_causal_mask_back(model: GPTModel) -> GPTModel:
    """The same weights with the causal mask on again (in place): how a model trained without the mask does when
    it writes text, where it cannot read the token it has to predict. Its loss then shows what it really learnt.

        >>> model = put_causal_mask_back(GPTModel(GPTConfig.preset("nano", causal_mask=False)))
        >>> model.cfg.causal_mask, all(block.att.causal for block in model.trf_blocks)
        (True, True)
    """
    for block in model.trf_blocks:
        block.att.causal = True
    model.cfg = replace(model.cfg, causal_mask=True)
    return model
