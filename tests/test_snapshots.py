"""Snapshots of the model's insides across training: when, what they hold, the head scores, the 2-D map."""

from __future__ import annotations

import json
import math
import threading

import pytest
import torch

from gpt_core.events import SnapshotEvent, StartEvent
from gpt_core.model import GPTConfig, GPTModel
from gpt_core.snapshots import (
    MAX_PROBE_CHARS,
    PROBE_TEXT,
    embedding_map,
    induction_score,
    induction_targets,
    make_probe,
    map_token_ids,
    previous_token_score,
    snapshot_steps,
    take_snapshot,
)
from gpt_core.tokenizer_choice import ByteTokenizer
from gpt_core.train import train
from gpt_core.train_config import TrainConfig

TEXT = "the quick brown fox jumps over the lazy dog. " * 16  # 720 bytes
IDS = ByteTokenizer().encode(TEXT)
PROBE = "the fox. the fox. the fox."  # 26 bytes: cut to the model's 24 tokens


def tiny_model(seed: int = 0, drop_rate: float = 0.0) -> GPTModel:
    torch.manual_seed(seed)
    cfg = GPTConfig.preset("nano", vocab_size=256, emb_dim=32, n_layers=2, n_heads=2, context_length=24,
                           drop_rate=drop_rate)
    return GPTModel(cfg)


def tiny_config(**overrides) -> TrainConfig:
    settings = dict(lr=3e-3, warmup_steps=2, max_steps=12, batch_size=4, eval_every=0, device="cpu",
                    autocast="off", seed=7, snapshot_steps=(0, 3, 12), snapshot_text=PROBE,
                    tokenizer=ByteTokenizer(), sample_prompt="the qu", sample_tokens=5)
    return TrainConfig(**{**settings, **overrides})


def snapshots_of(events) -> list[SnapshotEvent]:
    return [event for event in events if isinstance(event, SnapshotEvent)]


# ---------------------------------------------------------------- when
def test_snapshot_steps_are_log_spaced_from_0_to_the_last_step():
    assert snapshot_steps(1000) == [0, 10, 30, 100, 300, 1000]
    assert snapshot_steps(300) == [0, 10, 30, 100, 300]
    assert snapshot_steps(50) == [0, 10, 30, 50]
    assert snapshot_steps(1) == [0, 1]
    with pytest.raises(ValueError, match="whole number of at least 1"):
        snapshot_steps(0)


@pytest.mark.parametrize(("overrides", "message"), [
    ({"snapshot_steps": (0, 13)}, "go up to max_steps \\(12\\), got 13"),
    ({"snapshot_steps": (-1,)}, "snapshot_steps .* at least 0"),
    ({"snapshot_steps": (2.5,)}, "snapshot_steps .* whole number"),
    ({"snapshot_steps": tuple(range(12)) * 5}, "At most 50 snapshot_steps, got 60"),
    ({"snapshot_text": "x" * (MAX_PROBE_CHARS + 1)}, "at most 200 characters"),
])
def test_bad_snapshot_settings_are_explained(overrides, message):
    with pytest.raises(ValueError, match=message):
        tiny_config(**overrides)


# ---------------------------------------------------------------- a run
@pytest.fixture(scope="module")
def run_events(one_torch_thread):
    model = tiny_model()
    events = list(train(model, IDS[:640], IDS[640:], tiny_config()))
    return model, events


def test_a_run_yields_its_snapshots_in_order_with_the_right_shapes(run_events):
    model, events = run_events
    assert isinstance(events[0], StartEvent) and isinstance(events[1], SnapshotEvent)  # step 0: before training
    snapshots = snapshots_of(events)
    assert [s.step for s in snapshots] == [0, 3, 12]
    assert [e.kind for e in events].index("step") == 2
    for snapshot in snapshots:
        attention = torch.tensor(snapshot.attention)
        assert attention.shape == (2, 2, 24, 24)  # (n_layers, n_heads, T, T): the probe cut to 24 tokens
        assert torch.allclose(attention.sum(dim=-1), torch.ones(2, 2, 24), atol=2e-3)  # rows are distributions
        assert torch.equal(attention.triu(diagonal=1), torch.zeros(2, 2, 24, 24))  # no looking ahead
        assert "".join(snapshot.probe_tokens) == PROBE[:24]
        assert torch.tensor(snapshot.previous_token).shape == torch.tensor(snapshot.induction).shape == (2, 2)
        xy = torch.tensor(snapshot.map_xy)
        assert xy.shape == (len(snapshot.map_tokens), 2) and len(snapshot.map_tokens) == 28  # every byte of TEXT
        assert snapshot.map_variance[0] >= snapshot.map_variance[1] > 0
        assert len(snapshot.next_tokens) == len(snapshot.next_probs) == 10
        assert snapshot.next_probs == sorted(snapshot.next_probs, reverse=True) and sum(snapshot.next_probs) <= 1
        assert torch.tensor(snapshot.lens_probs).shape == (3, 24, 5)  # (n_layers + 1, T, top_k)
        assert len(snapshot.lens_tokens) == 3 and len(snapshot.lens_tokens[0][0]) == 5
        assert snapshot.sample.startswith("the qu")
        assert len(json.dumps(snapshot.to_dict())) < 60_000


def test_the_last_snapshot_lens_ends_with_the_model_s_own_prediction(run_events):
    model, events = run_events
    last = snapshots_of(events)[-1]
    with torch.no_grad():
        probs = torch.softmax(model.eval()(torch.tensor([ByteTokenizer().encode(PROBE)[:24]])), -1)[0]  # (T, V)
    top = probs.max(dim=-1)  # (T,)
    assert [guesses[0] for guesses in last.lens_tokens[-1]] == [ByteTokenizer().decode([i]) for i in top.indices]
    assert torch.allclose(torch.tensor([p[0] for p in last.lens_probs[-1]]), top.values, atol=1e-4)
    # ... and the prompt's next-token table is the model's last-position softmax
    with torch.no_grad():
        prompt_probs = torch.softmax(model(torch.tensor([ByteTokenizer().encode("the qu")]))[0, -1], -1)
    assert last.next_probs[0] == pytest.approx(prompt_probs.max().item(), abs=1e-4)


def test_a_run_stopped_early_photographs_its_last_step():
    config = tiny_config(snapshot_steps=(0, 12), max_tokens=5 * 4 * 24)  # 4 x 24 tokens a step: stops at step 5
    assert [s.step for s in snapshots_of(train(tiny_model(), IDS[:640], IDS[640:], config))] == [0, 5]
    stop = threading.Event()
    stop.set()
    assert [s.step for s in snapshots_of(train(tiny_model(), IDS[:640], IDS[640:], config, stop=stop))] == [0, 1]


def test_a_run_without_a_tokenizer_trains_and_keeps_only_the_map():
    config = tiny_config(tokenizer=None, snapshot_steps=(0, 4), max_steps=4)
    events = list(train(tiny_model(), IDS[:640], IDS[640:], config))
    assert events[-1].reason == "max_steps"
    snapshots = snapshots_of(events)
    assert [s.step for s in snapshots] == [0, 4]
    assert snapshots[0].probe_tokens == [] and snapshots[0].attention == [] and snapshots[0].sample == ""
    assert snapshots[0].next_tokens == [] and snapshots[0].lens_tokens == []
    assert snapshots[0].map_tokens[:3] == ["#32", "#111", "#101"]  # " ", "o", "e": the most frequent bytes
    assert torch.tensor(snapshots[0].map_xy).shape == (28, 2)


def test_no_snapshot_steps_means_no_snapshots():
    events = list(train(tiny_model(), IDS[:640], IDS[640:], tiny_config(snapshot_steps=(), max_steps=3)))
    assert snapshots_of(events) == []


def test_a_snapshot_has_dropout_off_and_restores_train_mode():
    model = tiny_model(drop_rate=0.5).train()
    probe = make_probe(tiny_config(), model, IDS)
    first, second = take_snapshot(model, probe, 0), take_snapshot(model, probe, 0)
    assert model.training
    assert first.attention == second.attention and first.next_probs == second.next_probs  # no random dropout


def test_the_default_probe_repeats_one_line():
    assert PROBE_TEXT == "ROMEO:\nI will go to the king.\nROMEO:\nI will go to the king."
    assert TrainConfig().snapshot_text == PROBE_TEXT and TrainConfig().snapshot_steps == ()


# ---------------------------------------------------------------- head scores on hand-made attention
def causal_uniform(n: int) -> torch.Tensor:
    weights = torch.ones(n, n).tril()
    return weights / weights.sum(dim=-1, keepdim=True)


def test_a_perfect_previous_token_head_scores_1_and_a_uniform_one_the_mean_of_1_over_t():
    one_step_back = torch.diag(torch.ones(5), diagonal=-1)
    one_step_back[0, 0] = 1.0
    assert previous_token_score(one_step_back).item() == 1.0
    assert previous_token_score(torch.eye(6)).item() == 0.0  # each token looks at itself
    expected = sum(1 / (t + 1) for t in range(1, 6)) / 5  # row t spreads 1 over t + 1 tokens
    assert previous_token_score(causal_uniform(6)).item() == pytest.approx(expected)
    stacked = torch.stack([one_step_back, torch.eye(6)]).reshape(1, 2, 6, 6)  # (L, H, T, T)
    assert previous_token_score(stacked).tolist() == [[1.0, 0.0]]


def test_a_perfect_induction_head_scores_1_and_a_previous_token_head_0():
    ids = [5, 6, 7, 8, 5, 6, 7, 8]  # a line of 4 said twice
    assert induction_targets(ids) == [[], [], [], [], [1], [2], [3], [4]]
    induction = torch.zeros(8, 8)
    induction[range(8), [0, 0, 0, 0, 1, 2, 3, 4]] = 1.0
    assert induction_score(induction, ids).item() == 1.0
    one_step_back = torch.diag(torch.ones(7), diagonal=-1)
    one_step_back[0, 0] = 1.0
    assert induction_score(one_step_back, ids).item() == 0.0
    assert induction_score(causal_uniform(8), ids).item() == pytest.approx((1 / 5 + 1 / 6 + 1 / 7 + 1 / 8) / 4)
    assert induction_score(induction, [1, 2, 3, 4, 5, 6, 7, 8]).item() == 0.0  # nothing repeats: nothing to copy


def test_a_token_seen_twice_before_splits_its_induction_weight():
    ids = [1, 2, 1, 3, 1]
    assert induction_targets(ids) == [[], [], [1], [], [1, 3]]
    weights = torch.zeros(5, 5)
    weights[2, 1] = 1.0
    weights[4, 1], weights[4, 3] = 0.5, 0.5  # half on each token that once followed a 1
    assert induction_score(weights, ids).item() == 1.0


# ---------------------------------------------------------------- the embedding map
def test_mirrored_embeddings_give_the_same_map():
    torch.manual_seed(0)
    embeddings = torch.randn(50, 8) * torch.linspace(3, 0.5, 8)  # distinct variances: a well-defined PCA
    coords, variance = embedding_map(embeddings)
    mirrored, _ = embedding_map(-embeddings)
    assert torch.allclose(coords, mirrored, atol=1e-5)
    assert coords.shape == (50, 2) and variance[0] > variance[1] > 0 and sum(variance) < 1
    # a component whose sign flips between snapshots is turned back to agree with the previous map
    flipped, _ = embedding_map(embeddings, previous=coords * torch.tensor([-1.0, 1.0]))
    assert torch.allclose(flipped, coords * torch.tensor([-1.0, 1.0]), atol=1e-5)
    nudged, _ = embedding_map(-(embeddings + 0.01 * torch.randn(50, 8)), previous=coords)
    assert torch.allclose(nudged, coords, atol=0.1)  # a small change moves the points a little, never mirror-wise


def test_the_map_shows_the_most_frequent_tokens_then_the_probe():
    assert map_token_ids([3, 3, 1, 1, 1, 2], vocab_size=5, probe_ids=[4, 3], n=2) == [1, 3, 4]
    assert map_token_ids(torch.tensor([0, 0, 2]), vocab_size=4, probe_ids=[], n=10) == [0, 2]
    assert map_token_ids(None, vocab_size=4, probe_ids=[1], n=3) == [0, 1, 2]  # a dataset: the first ids


def test_a_line_of_points_lies_on_the_first_component_with_the_farthest_point_positive():
    points = torch.tensor([[float(i), 2.0 * i, 0.0] for i in (0, 1, 2, 6)])  # along (1, 2, 0); mean at i = 2.25
    coords, variance = embedding_map(points)
    assert [round(x, 4) for x in coords[:, 0].tolist()] == [round((i - 2.25) * math.sqrt(5), 4) for i in (0, 1, 2, 6)]
    assert coords[:, 1].abs().max().item() < 1e-5 and variance[0] == pytest.approx(1.0)


# ---------------------------------------------------------------- the Pretrain tab's section
def history_of(events, max_steps: int = 12):
    from ui.jobs import JobView
    from ui.run_tab import RunHistory

    events = list(events)
    history = RunHistory("job-1", max_steps=max_steps)
    history.fold(JobView("job-1", "pretrain", "done", None, events, len(events), True, None))
    return history


def test_the_history_keeps_the_snapshots_and_a_deep_copy_shares_them(run_events):
    import copy

    history = history_of(run_events[1])
    assert [s.step for s in history.snapshots] == [0, 3, 12]
    copied = copy.deepcopy(history)
    assert copied.snapshots[2] is history.snapshots[2] and copied.snapshots is not history.snapshots


def test_the_views_redraw_every_snapshot(run_events):
    from ui.snapshots_view import snapshot_views
    from visualizations.attention import PlainFigure

    history = history_of(run_events[1])
    for index, step in enumerate([0, 3, 12]):
        heading, scores, attention, embedding_map, next_tokens, sample, lens = snapshot_views(index, "t h", history)
        assert heading.startswith(f"Step **{step}** (snapshot {index + 1} of 3)")
        assert all(isinstance(f, PlainFigure) for f in (scores, attention, embedding_map, next_tokens, lens))
        assert len(scores.data) == 2 * 4 and list(scores.data[0].x) == ["0", "3", "12"]  # 4 heads, 2 panels
        assert scores.layout.shapes[0].x0 == index - 0.4  # the snapshot shown is shaded
        assert attention.data[0].z["shape"] == "49, 49"  # 2 x 2 tiles of 24 x 24 with one gutter
        assert list(embedding_map.data[1].text) == ["h", "t"]  # the map's order: most frequent first, ties by id
        assert len(next_tokens.data[0].x) == 10 and f"step {step}" in sample
        assert len(lens.data[0].y) == 3  # embeddings, after layer 0, after layer 1 (output)
    assert snapshot_views(7, "t", history)[0].startswith("Step **12** (snapshot 3 of 3)")  # ahead: the newest
    with pytest.raises(ValueError, match="The snapshot"):
        snapshot_views(float("nan"), "t", history)


def test_before_any_snapshot_the_section_says_when_the_photos_are_taken():
    from ui.run_tab import RunHistory
    from ui.snapshots_view import SnapshotSection, snapshot_views

    assert snapshot_views() == ("Start a run: the model is photographed at steps 0, 10, 30, 100, 300 and 1000.",
                                None, None, None, None, "", None)
    assert snapshot_views(0, "", RunHistory("job-2", max_steps=50))[0].endswith("steps 0, 10, 30 and 50.")
    slider, count = SnapshotSection.refresh(RunHistory("job-2", max_steps=50))
    assert (slider["value"], slider["maximum"], slider["interactive"], count) == (0, 1, False, 0)


def test_refresh_grows_the_slider_without_moving_it(run_events):
    from ui.snapshots_view import SnapshotSection

    slider, count = SnapshotSection.refresh(history_of(run_events[1]))
    assert "value" not in slider and (slider["maximum"], slider["interactive"], count) == (2, True, 3)
    assert slider["info"] == "steps 0 · 3 · 12"


def test_a_run_without_a_tokenizer_shows_only_the_map():
    from ui.snapshots_view import NO_TEXT, snapshot_views

    config = tiny_config(tokenizer=None, snapshot_steps=(0, 2), max_steps=2)
    history = history_of(train(tiny_model(), IDS[:640], IDS[640:], config), max_steps=2)
    heading, scores, attention, embedding_map, next_tokens, sample, lens = snapshot_views(1, "#32", history)
    assert heading.startswith("Step **2**") and sample == ""
    assert scores.layout.annotations[0].text == NO_TEXT and lens.layout.annotations[0].text == NO_TEXT
    assert list(embedding_map.data[1].text) == ["#32"]  # the space, labelled by its id


def test_the_section_registers_its_redraw_endpoint():
    import gradio as gr

    from ui.snapshots_view import build_snapshot_section

    with gr.Blocks() as demo:
        history = gr.State(None)
        section = build_snapshot_section(history)
    names = [fn.api_name for fn in demo.fns.values()]
    assert names.count("pretrain_snapshots") == 1
    assert section.refresh_outputs == [section.index, section.count] and len(section.view_outputs) == 7


def test_the_slider_follows_new_snapshots_unless_the_student_went_back():
    from types import SimpleNamespace

    from ui.snapshots_view import SnapshotSection

    history = SimpleNamespace(snapshots=[SimpleNamespace(step=step) for step in (0, 10, 30)])
    slider, count = SnapshotSection.refresh(history, index=1, known=2)  # on the newest of 2: follows to the 3rd
    assert (slider["value"], slider["maximum"], slider["info"], count) == (2, 2, "steps 0 · 10 · 30", 3)
    slider, _ = SnapshotSection.refresh(history, index=0, known=2)  # went back to step 0: stays there
    assert "value" not in slider
    slider, _ = SnapshotSection.refresh(history, index=2, known=3)  # nothing new: the value is left alone
    assert "value" not in slider
    slider, count = SnapshotSection.refresh(SimpleNamespace(snapshots=[]), index=4, known=6)  # a new run
    assert (slider["value"], slider["interactive"], count) == (0, False, 0)
