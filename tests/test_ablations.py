"""gpt_core.ablations: each switch changes the forward pass or the training the way its `what` says.

One test per ablation (tiny models, fixed seeds), then apply_ablations / changed_settings and the checkpoint
round trip of an ablated model. Book vs fast layer for every ablation: tests/test_fast_equal.py.
"""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
from torch import nn

from gpt_core.ablations import ABLATIONS, EXPECTED_CHOICES, apply_ablations, changed_settings
from gpt_core.checkpoints import load_checkpoint, save_checkpoint
from gpt_core.model import GPTConfig, GPTModel, LayerNorm, parameter_breakdown
from gpt_core.tokenizer_choice import ByteTokenizer
from gpt_core.train import make_optimizer, train
from gpt_core.train_config import TrainConfig, lr_at

BASE = GPTConfig(vocab_size=50, context_length=16, emb_dim=32, n_heads=4, n_layers=2, drop_rate=0.0)
RUN = TrainConfig(lr=1e-3, warmup_steps=4, max_steps=20, device="cpu", autocast="off")


def ablated(*names: str, base: GPTConfig = BASE, seed: int = 0) -> GPTModel:
    """A tiny model with the named ablations, in eval mode, from a fixed seed."""
    cfg, _, _ = apply_ablations(list(names), base, RUN)
    torch.manual_seed(seed)
    return GPTModel(cfg).eval()


def ids(length: int = 10, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, BASE.vocab_size, (1, length), generator=torch.Generator().manual_seed(seed))


def largest(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


# ---------------------------------------------------------------- the registry
def test_registry_order_and_texts():
    assert list(ABLATIONS) == [
        "no-causal-mask", "no-pos-embedding", "no-residual", "no-layernorm", "post-norm", "relu", "untied-head",
        "tied-head", "no-weight-decay", "no-warmup", "constant-lr", "no-clipping", "dropout", "fewer-heads",
        "more-heads"]
    for name, ablation in ABLATIONS.items():
        assert ablation.name == name and ablation.title and ablation.expected in EXPECTED_CHOICES
        assert ablation.what.endswith(".") and ". " not in ablation.what, name  # one sentence
        assert ablation.why.endswith(".") and ablation.why.count(". ") <= 1, name  # one or two sentences
        assert len(ablation.what) <= 160 and len(ablation.why) <= 260, name
    assert ABLATIONS["no-causal-mask"].expected == "lower"


# ---------------------------------------------------------------- one test per ablation: the model
def test_no_causal_mask_lets_earlier_positions_see_later_tokens():
    tokens = ids()
    changed = tokens.clone()
    changed[0, -1] = (changed[0, -1] + 1) % BASE.vocab_size  # only the last token changes
    with torch.no_grad():
        differences = {}
        for name in ("tied-head", "no-causal-mask"):  # tied-head: the unchanged model (BASE is tied)
            model = ablated(name)
            differences[name] = largest(model(tokens)[0, :-1], model(changed)[0, :-1])  # earlier positions
    print(f"earlier positions' logits change by {differences['tied-head']} with the mask, "
          f"{differences['no-causal-mask']:.2e} without")
    assert differences["tied-head"] == 0.0 and differences["no-causal-mask"] > 1e-4
    weights = ablated("no-causal-mask").forward_with_capture(tokens).attn_weights[0]  # (1, n_heads, T, T)
    later = torch.ones(10, 10, dtype=torch.bool).triu(diagonal=1)  # (query, key) pairs with the key later
    assert weights[..., later].min() > 0.05  # every position looks at every later token (about 1/10 each)


def test_no_pos_embedding_has_no_position_table_and_sees_a_bag_of_words():
    model = ablated("no-pos-embedding")
    assert model.pos_emb is None and not any("pos_emb" in key for key in model.state_dict())
    assert ablated().num_parameters() - model.num_parameters() == BASE.context_length * BASE.emb_dim
    assert dict(parameter_breakdown(model))["position embedding"] == 0
    # one layer, causal mask: the last position attends to the earlier tokens as a set, in any order
    one_layer = replace(BASE, n_layers=1)
    tokens = ids()
    shuffled = torch.cat([tokens[:, :-1].flip(1), tokens[:, -1:]], dim=1)  # earlier tokens reversed, last kept
    with torch.no_grad():
        without = ablated("no-pos-embedding", base=one_layer)
        with_positions = ablated("tied-head", base=one_layer)
        bag = largest(without(tokens)[0, -1], without(shuffled)[0, -1])
        ordered = largest(with_positions(tokens)[0, -1], with_positions(shuffled)[0, -1])
        # no mask either: the whole model only permutes with its input (any number of layers)
        unordered = ablated("no-pos-embedding", "no-causal-mask")
        permutation = torch.randperm(10, generator=torch.Generator().manual_seed(2))
        equivariance = largest(unordered(tokens)[:, permutation], unordered(tokens[:, permutation]))
    print(f"last position after reordering: {bag:.1e} without positions, {ordered:.1e} with; "
          f"no mask, no positions: permuted logits differ by {equivariance:.1e}")
    assert bag < 1e-5 and ordered > 1e-4 and equivariance < 1e-5


@pytest.mark.parametrize("name", ["no-residual", "tied-head"])
def test_no_residual_block_with_zeroed_sublayers_returns_zero(name):
    block = ablated(name).trf_blocks[0]
    with torch.no_grad():
        for projection in (block.att.out_proj, block.ff.layers[2]):  # the sublayers' last layers give 0
            projection.weight.zero_(), projection.bias.zero_()
        x = torch.randn(2, 5, BASE.emb_dim)
        out = block(x)
    expected = torch.zeros_like(x) if name == "no-residual" else x  # with the shortcut: x passes unchanged
    assert torch.equal(out, expected)


def test_no_layernorm_has_no_norms_and_the_logits_scale_with_the_hidden_state():
    model = ablated("no-layernorm")
    assert not any(isinstance(m, LayerNorm) for m in model.modules())
    assert not any("norm" in key for key in model.state_dict())
    assert ablated().num_parameters() - model.num_parameters() == 2 * BASE.emb_dim * (2 * BASE.n_layers + 1)
    hidden = torch.randn(1, 6, BASE.emb_dim)
    with torch.no_grad():
        logits = {name: ablated(name).out_head(ablated(name).final_norm(3 * hidden)) / 3
                  - ablated(name).out_head(ablated(name).final_norm(hidden)) for name in ("no-layernorm", "tied-head")}
    # no final LayerNorm: 3x the hidden state gives 3x the logits; with it the scale is normalised away
    assert logits["no-layernorm"].abs().max() < 1e-6 and logits["tied-head"].abs().max() > 1e-3


def test_post_norm_blocks_output_mean_0_variance_1_per_token():
    tokens = ids()
    stats = {}
    for name in ("post-norm", "tied-head"):
        states = ablated(name).forward_with_capture(tokens, hidden_states=True).hidden_states[1:]  # each block
        outputs = torch.stack(states)  # (n_layers, B, T, emb_dim)
        stats[name] = (outputs.mean(-1).abs().max().item(), (outputs.var(-1, unbiased=False) - 1).abs().max().item())
    print(f"block outputs, largest |mean| and |var - 1| per token: {stats}")
    assert stats["post-norm"][0] < 1e-5 and stats["post-norm"][1] < 1e-3
    assert stats["tied-head"][1] > 0.5  # pre-norm: the residual stream keeps its own scale


def test_relu_zeroes_exactly_the_negative_pre_activations():
    x = torch.randn(2, 5, BASE.emb_dim)
    for name in ("relu", "tied-head"):
        expand, activation = ablated(name).trf_blocks[0].ff.layers[:2]
        with torch.no_grad():
            pre = expand(x)
            post = activation(pre)
        if name == "relu":
            assert isinstance(activation, nn.ReLU)
            assert torch.equal(post[pre < 0], torch.zeros_like(post[pre < 0]))
            assert torch.equal(post[pre > 0], pre[pre > 0])
        else:  # GELU lets a little through below 0
            assert (post[pre < -0.1] != 0).all()


def test_untied_and_tied_head_flip_the_shared_matrix():
    tied, untied = ablated("tied-head"), ablated("untied-head")
    assert tied.out_head.weight is tied.tok_emb.weight and untied.out_head.weight is not untied.tok_emb.weight
    assert untied.num_parameters() - tied.num_parameters() == BASE.vocab_size * BASE.emb_dim
    retied = ablated("tied-head", base=replace(BASE, tie_weights=False))
    assert retied.out_head.weight is retied.tok_emb.weight


def test_dropout_changes_train_mode_outputs_between_calls_but_not_eval():
    model = ablated("dropout")
    assert model.cfg.drop_rate == 0.1
    tokens = ids()
    with torch.no_grad():
        model.train()
        train_difference = largest(model(tokens), model(tokens))
        model.eval()
        eval_difference = largest(model(tokens), model(tokens))
    assert train_difference > 1e-4 and eval_difference == 0.0


@pytest.mark.parametrize(("name", "heads"), [("fewer-heads", 2), ("more-heads", 8)])
def test_fewer_and_more_heads_keep_the_parameters(name, heads):
    model = ablated(name)
    assert model.cfg.n_heads == heads and model.cfg.emb_dim == BASE.emb_dim
    assert model.num_parameters() == ablated().num_parameters()
    weights = model.forward_with_capture(ids(7)).attn_weights
    assert [tuple(w.shape) for w in weights] == [(1, heads, 7, 7)] * BASE.n_layers


def test_heads_that_do_not_split_emb_dim_are_refused():
    with pytest.raises(ValueError, match="more-heads needs 24 heads, but emb_dim 12 cannot be split"):
        apply_ablations(["more-heads"], GPTConfig(emb_dim=12, n_heads=12), RUN)
    with pytest.raises(ValueError, match="fewer-heads needs 2 heads, but emb_dim 15 cannot be split"):
        apply_ablations(["fewer-heads"], GPTConfig(emb_dim=15, n_heads=5), RUN)
    assert apply_ablations(["fewer-heads"], GPTConfig(emb_dim=16, n_heads=1), RUN)[2] == ["fewer-heads"]


# ---------------------------------------------------------------- one test per ablation: the training
def test_no_weight_decay_gives_every_param_group_decay_0():
    model = ablated()
    _, config, _ = apply_ablations(["no-weight-decay"], BASE, RUN)
    groups = make_optimizer(model, config, torch.device("cpu")).param_groups
    assert [group["weight_decay"] for group in groups] == [0.0, 0.0]
    assert [group["weight_decay"] for group in make_optimizer(model, RUN, torch.device("cpu")).param_groups] == [
        0.1, 0.0]


def test_no_warmup_starts_at_the_full_learning_rate():
    _, config, _ = apply_ablations(["no-warmup"], BASE, RUN)
    # step 1 is already the first step of the cosine decay (1/20 of the way): just under the peak
    assert config.warmup_steps == 0 and lr_at(1, config) == 1e-4 + 9e-4 * (1 + math.cos(math.pi / 20)) / 2
    assert lr_at(1, config) > 0.99e-3 and lr_at(1, RUN) == pytest.approx(2.5e-4)  # warm-up: 1e-3 / 4 steps
    _, constant, _ = apply_ablations(["no-warmup", "constant-lr"], BASE, RUN)
    assert [lr_at(step, constant) for step in (1, 2, 20)] == [1e-3] * 3


def test_constant_lr_stays_at_the_peak_after_the_warmup():
    _, config, _ = apply_ablations(["constant-lr"], BASE, RUN)
    assert [lr_at(step, config) for step in range(1, 21)] == [2.5e-4, 5e-4, 7.5e-4] + [1e-3] * 17
    assert lr_at(20, RUN) == pytest.approx(1e-4)  # cosine: down to min_lr


def test_no_clipping_leaves_a_huge_gradient_as_it_is(monkeypatch):
    seen = []  # (max_norm, the gradients' norm after the call) for every step
    clip = nn.utils.clip_grad_norm_

    def recording_clip(parameters, max_norm):
        parameters = list(parameters)
        total = clip(parameters, max_norm)
        seen.append((max_norm, torch.cat([p.grad.flatten() for p in parameters if p.grad is not None]).norm()))
        return total

    monkeypatch.setattr(nn.utils, "clip_grad_norm_", recording_clip)
    text = ByteTokenizer().encode("the quick brown fox jumps over the lazy dog. " * 8)
    cfg = replace(BASE, vocab_size=256)
    baseline = replace(RUN, grad_clip=0.01, max_steps=1, batch_size=2, eval_every=0, seed=3)  # clips every step
    _, no_clip, _ = apply_ablations(["no-clipping"], cfg, baseline)
    norms = []
    for config in (baseline, no_clip):
        seen.clear()
        torch.manual_seed(0)
        events = list(train(GPTModel(cfg), text, None, config))
        assert events[-1].reason == "max_steps"
        norms.append((seen[0][0], seen[0][1].item(), events[-2].grad_norm))
    print(f"(max_norm, norm after clipping, norm reported): clipped {norms[0]}, not clipped {norms[1]}")
    assert no_clip.grad_clip is None and norms[1][0] == math.inf
    assert norms[0][1] == pytest.approx(0.01, rel=1e-3)  # scaled down to grad_clip
    assert norms[1][1] == pytest.approx(norms[1][2], rel=1e-4) and norms[1][1] > 1  # left as it was


# ---------------------------------------------------------------- apply_ablations and changed_settings
def test_unknown_names_are_refused_with_the_known_names():
    with pytest.raises(ValueError, match="Unknown ablation 'no-attention'; choose from no-causal-mask, "
                                         "no-pos-embedding, .*more-heads"):
        apply_ablations(["relu", "no-attention"], BASE, RUN)
    with pytest.raises(ValueError, match=r"as a list of names, such as \['relu'\]"):
        apply_ablations("relu", BASE, RUN)


def test_already_so_names_change_nothing():
    untied = replace(BASE, tie_weights=False, drop_rate=0.1)
    model_cfg, config, already = apply_ablations(["untied-head", "dropout", "relu", "relu"], untied,
                                                 replace(RUN, warmup_steps=0))
    assert already == ["untied-head", "dropout", "relu"]  # the second relu: already so after the first
    assert model_cfg == replace(untied, activation="relu") and config == replace(RUN, warmup_steps=0)
    assert apply_ablations(["no-warmup"], BASE, replace(RUN, warmup_steps=0))[2] == ["no-warmup"]


def test_combined_ablations_apply_in_order_and_leave_the_inputs_alone():
    before_model, before_run = replace(BASE), replace(RUN)
    model_cfg, config, already = apply_ablations(
        ["no-causal-mask", "relu", "constant-lr", "fewer-heads", "fewer-heads", "no-layernorm", "post-norm"],
        BASE, RUN)
    assert (model_cfg.causal_mask, model_cfg.activation, model_cfg.n_heads, model_cfg.norm) == (
        False, "relu", 1, "post")  # 4 -> 2 -> 1 heads; the later norm switch wins
    assert config.schedule == "constant" and already == []
    assert before_model == BASE and before_run == RUN and config is not RUN


def test_changed_settings_lists_before_and_after():
    rows = changed_settings(["no-causal-mask", "more-heads", "no-clipping", "dropout", "no-weight-decay"],
                            replace(BASE, drop_rate=0.1), RUN)
    assert rows == [("n_heads", "4", "8"), ("causal_mask", "True", "False"), ("weight_decay", "0.1", "0.0"),
                    ("grad_clip", "1.0", "None")]
    assert changed_settings([], BASE, RUN) == []


@pytest.mark.parametrize("names", [[name] for name in ABLATIONS if ABLATIONS[name].model(BASE)]
                         + [["no-causal-mask", "no-pos-embedding", "no-residual", "post-norm", "relu"]])
def test_checkpoint_round_trip_gives_the_same_logits(tmp_path, names):
    model = ablated(*names)
    save_checkpoint(model, tmp_path)
    loaded = load_checkpoint(tmp_path)
    tokens = ids()
    assert loaded.cfg == model.cfg
    assert list(loaded.state_dict()) == list(model.state_dict())
    with torch.no_grad():
        assert torch.equal(loaded(tokens), model(tokens))


def test_putting_the_causal_mask_back_hides_the_future_again():
    from gpt_core.ablations import put_causal_mask_back

    torch.manual_seed(0)
    model = GPTModel(GPTConfig(vocab_size=50, context_length=8, emb_dim=16, n_heads=2, n_layers=2,
                               causal_mask=False)).eval()
    ids, changed = torch.tensor([[1, 2, 3, 4]]), torch.tensor([[1, 2, 3, 9]])
    with torch.no_grad():
        before = (model(ids)[0, :3] - model(changed)[0, :3]).abs().max().item()
        put_causal_mask_back(model)
        after = (model(ids)[0, :3] - model(changed)[0, :3]).abs().max().item()
    print("earlier positions move by", before, "without the mask and by", after, "with it back")
    assert before > 1e-4 and after == 0.0 and model.cfg.causal_mask is True
