"""The Classify and Instruct tabs: handlers, the gradio_client API (short runs through the job manager) and
one browser run per tab."""

from __future__ import annotations

import copy
import json
import re
import threading
import time

import gradio as gr
import pytest
import torch
from gradio_client import handle_file
from gradio_client.exceptions import AppError

from gpt_core.events import (
    AccuracyEvent,
    CheckpointEvent,
    ConfusionEvent,
    DoneEvent,
    EvalEvent,
    ExactMatchEvent,
    SampleEvent,
    StartEvent,
    StepEvent,
    WarningEvent,
)
from gpt_core.instruct import INSTRUCT_PRESETS
from gpt_core.instruct_data import InstructionDataset, split_records
from gpt_core.instruct_tasks import generated_tasks
from ui import classify_tab, instruct_tab, models, run_tab, runs
from ui.budgets import BudgetStore
from ui.jobs import JobManager, JobView
from ui.run_tab import RunHistory

NANO = "Random init · nano (untrained)"
FINISHED = ("✅", "❌", "⏹")


def plot_data(plot: dict) -> list[dict]:
    """The traces of a gr.Plot value as the browser receives them."""
    return json.loads(plot["plot"])["data"]


def numbers(values) -> list[float]:
    return [float(value) for value in values]


def poll_until_done(client, api_name: str, browser_id: str, timeout: float = 90.0) -> tuple:
    """Call the poll endpoint (as the timer does) until the status says the run has finished."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = client.predict(browser_id, api_name=api_name)
        if any(mark in result[0] for mark in FINISHED):
            return result
        time.sleep(0.5)
    raise AssertionError(f"{api_name} did not finish within {timeout} s; last status: {result[0]!r}")


@pytest.fixture
def few_steps(monkeypatch):
    """Cap every run at 6 steps (the server's step cap) and keep torch on one thread."""
    monkeypatch.setattr(runs.job_manager(), "max_steps_cap", 6)
    monkeypatch.setenv("LLM_LAB_TORCH_THREADS", "1")
    threads = torch.get_num_threads()
    yield 6
    torch.set_num_threads(threads)


# ---------------------------------------------------------------- units
def test_data_preview_counts_and_examples():
    counts, examples = classify_tab.data_preview(0)
    assert "4,862 messages, 4,220 ham and 642 spam" in counts
    assert "642 + 642 = 1,284" in counts
    assert "| train | 898 |" in counts and "| val | 128 |" in counts and "| test | 258 |" in counts
    assert len(examples) == classify_tab.N_EXAMPLES
    assert sorted(label for label, _ in examples) == ["ham"] * 3 + ["spam"] * 3


def test_classify_config_clamps_steps_to_the_server_cap(monkeypatch):
    monkeypatch.setattr(runs.job_manager(), "max_steps_cap", 10)
    config, note = classify_tab.classify_config("classroom", "head", 3, 1e-3)
    assert (config.trainable, config.epochs, config.lr, config.max_steps) == ("head", 3, 1e-3, 10)
    assert note == "This server allows at most 10 steps per run; using 10 instead of 168."
    with pytest.raises(ValueError, match="learning rate must be a number above 0"):
        classify_tab.classify_config("classroom", "head", 3, 0)


def test_texts_describe_the_model_actually_selected():
    bundled = models.DEFAULT_CHOICE  # the bundled Shakespeare GPT: 4,096 tokens, 192 wide
    text = classify_tab.model_markdown(bundled)
    assert "all **4,096 tokens**" in text and "**2 × 192 + 2 = 386 weights**" in text and "50,257" not in text
    text, radio = classify_tab.model_views(NANO)  # random-init nano: GPT-2's vocabulary, 128 wide
    assert "all **50,257 tokens**" in text and "2 × 128 + 2 = 258 weights" in text
    assert radio["choices"][0] == ("the new head only (2 × 128 + 2 = 258 weights)", "head")
    assert [value for _, value in radio["choices"]] == ["head", "last_block", "all"]
    assert "50,257" not in classify_tab.INTRO and "768" not in classify_tab.INTRO
    # a GPT-2 that was never downloaded is not loaded just to be described
    text, radio = classify_tab.model_views("GPT-2 small (124M, download)")
    assert "once the model is loaded" in text and radio["choices"][0] == ("the new head only (2 outputs)", "head")


def test_plan_before_start_the_baseline_and_the_planned_steps():
    plan = classify_tab.results_markdown()
    assert "| train (898) | val (128) | test (258) |" in plan
    assert "| before training | ≈ 50% | ≈ 50% | ≈ 50% |" in plan and "coin flip" in plan
    config, _ = classify_tab.classify_config("classroom", "all", 3, 3e-4)
    loss, accuracy = classify_tab.plan_figures(config)
    assert list(loss.layout.xaxis.range) == [0, 168] and list(accuracy.layout.xaxis.range) == [0, 168]
    assert accuracy.layout.shapes[0].y0 == 0.5  # the coin-flip line


def test_the_warnings_about_cut_messages_are_one_line():
    cut = [f"{n} {split} messages were longer than 64 tokens; only their first 64 tokens are read."
           for n, split in ((331, "train"), (51, "val"), (95, "test"))]
    history = RunHistory("job-1-ab", status="running", device="cpu", max_steps=168, warnings=cut + ["Odd."])
    status = classify_tab.run_status(history, view_of([]))
    assert status.split("\n\n")[1:] == [
        "⚠ 477 messages (331 train, 51 val, 95 test) are longer than 64 tokens: the classifier reads only their "
        "first 64.", "⚠ Odd."]
    assert status.startswith("⏳ Running on CPU, ")


def test_mask_view_counts_exact_for_a_known_example():
    tokenizer = models.gpt2_tokenizer()
    entry = {"instruction": "Add 2 and 3.", "input": "", "output": "5"}
    item = InstructionDataset([entry], tokenizer)[0]
    plain = instruct_tab.mask_view(entry, tokenizer, mask_instruction=False)
    masked = instruct_tab.mask_view(entry, tokenizer, mask_instruction=True)
    n_targets = len(item.ids) + instruct_tab.EXTRA_PADDING  # every real token after the first, end-of-text, padding
    assert plain.n_targets == masked.n_targets == n_targets
    assert plain.n_ignored == instruct_tab.EXTRA_PADDING  # padding only
    assert masked.n_ignored == instruct_tab.EXTRA_PADDING + item.prompt_length - 1  # + targets inside the prompt
    assert f"**{n_targets - masked.n_ignored} of {n_targets} targets count**" in masked.note
    assert masked.html.count("−100") == masked.n_ignored


def test_instruct_plan_is_drawn_from_the_defaults():
    classroom = INSTRUCT_PRESETS["classroom"]
    plan = instruct_tab.plan_markdown(models.DEFAULT_CHOICE, None, "classroom", classroom.epochs, classroom.lr,
                                      classroom.mask_instruction)
    assert "#### What Start does (preset *classroom*)" in plan
    bundled = instruct_tab.literal(models.DEFAULT_CHOICE)  # Markdown-escaped: 4 layers \\(pretrained here, bundled\\)
    assert f"- **Model**: a copy of *{bundled}*" in plan
    assert "- **Data**: 816 training records (of 960; 48 validation, 96 test)" in plan
    assert "- **Steps**: 3 epochs × 51 batches of 16 = **153 steps**" in plan
    assert "learning rate 0.001 (constant), weight decay 0.1, gradient norm clipped at 1" in plan
    assert "the instruction is **masked**: only the response's tokens count (the book's exercise 7.2)" in plan
    assert "the first 20 test records, answered greedily in at most 16 tokens" in plan
    assert f"**What to expect from {bundled}**: the bundled Shakespeare GPT" in plan
    unmasked = instruct_tab.plan_markdown(NANO, None, "classroom", 2, 3e-4, False)
    assert "2 epochs × 51 batches of 16 = **102 steps**" in unmasked and "**not masked**" in unmasked
    assert f"**What to expect from {instruct_tab.literal(NANO)}**: an untrained model (random weights)" in unmasked
    assert "cannot be made yet: The number of epochs must be" in instruct_tab.plan_markdown(
        NANO, None, "classroom", 0, 3e-4, True)


def test_instruct_plan_names_the_server_cap(monkeypatch):
    monkeypatch.setattr(runs.job_manager(), "max_steps_cap", 50)
    plan = instruct_tab.plan_markdown(models.DEFAULT_CHOICE, None, "classroom", 3, 1e-3, True)
    assert "= **50 steps** (⚠ This server allows at most 50 steps per run; using 50 instead of 153.)" in plan


def test_instruct_notes_name_the_model_used():
    assert [instruct_tab.model_kind(label) for label in (models.DEFAULT_CHOICE, NANO, "GPT-2 small (124M, download)",
                                                         "my pretrain run")] == [
        "bundled", "random-init", "GPT-2", "explorer"]
    assert "GPT-2 was pretrained on 40 GB of web text" in instruct_tab.expect_note("GPT-2 small (124M, download)")
    assert "a model pretrained in the Pretrain tab" in instruct_tab.expect_note("my pretrain run")
    bundled, nano = instruct_tab.literal(models.DEFAULT_CHOICE), instruct_tab.literal(NANO)
    history = RunHistory("job-1-ab")
    history.before = ExactMatchEvent(when="before", correct=0, total=3, rows=answers([False] * 3))
    history.after = ExactMatchEvent(when="after", correct=0, total=3, rows=answers([False] * 3))
    bundled_note = instruct_tab.result_note(history, models.DEFAULT_CHOICE)
    assert bundled_note.startswith(f"No exact answer yet from **{bundled}**.")
    assert "random" not in bundled_note and "untrained" not in bundled_note
    assert instruct_tab.result_note(history, NANO).startswith(
        f"No exact answer yet: **{nano}** started from random weights")
    history.after = ExactMatchEvent(when="after", correct=2, total=3, rows=answers([True, True, False]))
    assert instruct_tab.result_note(history, models.DEFAULT_CHOICE) == (
        f"**{bundled}** now answers 2 of 3 held-out prompts exactly, 2 more than before tuning.")
    view = view_of([], status="done")
    view.label = f"instruct · {models.DEFAULT_CHOICE}"
    assert instruct_tab.model_label(view) == models.DEFAULT_CHOICE
    assert instruct_tab.run_status(history, view).endswith("2 more than before tuning.")


def test_instruct_model_output_renders_literally():
    from markdown_it import MarkdownIt

    raw = "6### Response: *PL* Chief-enter _STBISHOP_ <b>x</b> [a](b) `c`\n#########"
    history = RunHistory("job-1-ab", samples=[(3, raw)])
    status = instruct_tab.run_status(history, view_of([]))
    rendered = MarkdownIt().render(status.split("\n\n")[1])
    for tag in ("<em>", "<strong>", "<h1>", "<h6>", "<b>", "<a ", "<code>"):
        assert tag not in rendered
    shown = rendered.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
    assert "«6### Response: *PL* Chief-enter _STBISHOP_ <b>x</b> [a](b) `c` ↵ #########»" in shown
    rows = [{"instruction": "Is this a number?", "input": "7", "expected": "number", "answer": "*a*\n# b",
             "correct": False}]
    result = ExactMatchEvent(when="after", correct=0, total=1, rows=rows)
    assert instruct_tab.compare_rows(None, result) == [["Is this a number?", "7", "number", "…", "✗ *a* ↵ # b"]]


def test_instruct_mask_view_uses_the_pickers_tokenizer():
    marker = {"source": instruct_tab.GENERATED, "count": 40}
    _, bundled_note, _, _ = instruct_tab.show_mask(marker, 0, True, None, models.DEFAULT_CHOICE)
    _, gpt2_note, _, _ = instruct_tab.show_mask(marker, 0, True, None, NANO)
    assert "in the tokens of the bundled model's BPE (4,096 token ids, trained on Shakespeare)" in bundled_note
    assert "in the tokens of GPT-2's BPE (50,257 token ids)" in gpt2_note
    assert instruct_tab.show_mask_of_model(marker, 0, True, None, models.DEFAULT_CHOICE) == (gr.skip(),) * 4


def test_instruct_generated_sets_are_kept_as_markers():
    for source, tasks in instruct_tab.GENERATED_SETS.items():
        marker = instruct_tab.keep_records(None, source, instruct_tab.load_records(source, 30, None))
        assert marker == {"source": source, "count": 30} and not instruct_tab.is_stored(marker)
        assert instruct_tab.records_of(None, marker) == generated_tasks(30, seed=instruct_tab.DATA_SEED,
                                                                        tasks=tasks)
    assert instruct_tab.records_of(None, None) == instruct_tab.default_records()
    assert len(instruct_tab.default_records()) == instruct_tab.DEFAULT_RECORDS == 960
    assert "*Spot a feature*" in instruct_tab.data_summary(instruct_tab.default_records())
    assert "*Compute*" in instruct_tab.data_summary(generated_tasks(30), instruct_tab.GENERATED_HARD)


def test_classifier_is_kept_per_browser_and_evicted_oldest_first(monkeypatch):
    monkeypatch.setattr(classify_tab, "CLASSIFIERS", BudgetStore("classifier", max_items=2, max_bytes=1e9))
    tiny = torch.nn.Linear(4, 2)
    for owner in ("a", "b", "c"):
        classify_tab.keep_classifier(owner, classify_tab.TrainedClassifier(tiny, None, 64, owner))
    assert classify_tab.classifier_of("c").label == "c" and classify_tab.classifier_of("b").label == "b"
    with pytest.raises(ValueError, match="Your classifier was cleared to make room for newer ones"):
        classify_tab.classifier_of("a")
    with pytest.raises(ValueError, match="There is no classifier yet"):
        classify_tab.classifier_of("never-trained")


# ---------------------------------------------------------------- the run history and the shared skeleton
def view_of(events: list, status: str = "running", since: int = 0, **extra) -> JobView:
    """A poll's answer with these events, as the job manager gives it."""
    return JobView(job_id="job-1-ab", label="classify · nano", status=status, position=extra.pop("position", None),
                   events=events, next_since=since + len(events), done=status in ("done", "failed", "stopped"),
                   error=extra.pop("error", None), note=extra.pop("note", None))


def step_event(step: int, loss: float) -> StepEvent:
    return StepEvent(step=step, epoch=step / 8, tokens_seen=512 * step, train_loss=loss, lr=1e-4, grad_norm=1.0,
                     tokens_per_s=2000.0, elapsed_s=0.5 * step, eta_s=0.5 * (6 - step), mfu=None)


def answers(correct: list[bool]) -> list[dict]:
    return [{"instruction": f"Add {n} and 1.", "input": "", "expected": str(n + 1), "answer": str(n + ok),
             "correct": ok} for n, ok in enumerate(correct)]


def test_history_folds_every_kind_of_event_and_writes_the_status_line():
    history = RunHistory("job-1-ab", start_note="This server allows at most 6 steps per run; using 6 instead of 168.")
    first = [
        StartEvent(device="cpu", autocast=None, n_params=1538, tokens_per_step=512, max_steps=6, start_step=0),
        WarningEvent("12 train messages were longer than 64 tokens and were cut."),
        AccuracyEvent(step=0, epoch=0.0, train_accuracy=0.5, val_accuracy=0.46875, test_accuracy=0.48, final=True),
        ExactMatchEvent(when="before", correct=0, total=3, rows=answers([False, False, False])),
        AccuracyEvent(step=0, epoch=0.0, train_accuracy=0.5, val_accuracy=0.4375),
        step_event(1, 0.75), step_event(2, 0.69),
        EvalEvent(step=2, val_loss=0.7, val_perplexity=2.01, train_loss=0.68),
    ]
    history.fold(view_of(first))
    assert (history.since, history.status, history.max_steps, history.n_params, history.device) == (
        8, "running", 6, 1538, "cpu")
    assert (history.step, history.epoch, history.eta_s, history.tokens_seen) == (2, 0.25, 2.0, 1024)
    assert history.step_losses == [(1, 0.75), (2, 0.69)] and history.evals == [(2, 0.68, 0.7)]
    assert history.accuracy == [(0, 0.5, 0.4375)] and history.baseline == (0.5, 0.46875, 0.48)
    assert (history.final, history.confusion, history.after, history.before.correct) == (None, None, None, 0)
    assert history.running and history.tokens_per_s == 2000.0
    assert history.status_line(view_of([])) == (
        "⏳ Running on cpu · step 2 / 6 · epoch 0.25 · 1,538 trainable parameters · about 2 s left\n\n"
        "⚠ 12 train messages were longer than 64 tokens and were cut.\n\n"
        "⚠ This server allows at most 6 steps per run; using 6 instead of 168.")
    assert history.status_line(show_eta=False).startswith(
        "⏳ Running on cpu · step 2 / 6 · epoch 0.25 · 1,538 trainable parameters\n\n⚠ 12 train")

    second = [
        step_event(3, 0.52),
        SampleEvent(step=3, prompt="Add 0 and 1.", text="Add 0 and 1. 1"),
        AccuracyEvent(step=3, epoch=0.375, train_accuracy=0.75, val_accuracy=None),
        CheckpointEvent(step=3, path="/tmp/run/step-000003"),
        AccuracyEvent(step=3, epoch=0.375, train_accuracy=0.875, val_accuracy=0.8125, test_accuracy=0.8, final=True),
        ConfusionEvent(step=3, matrix=[[120, 10], [4, 124]]),
        ExactMatchEvent(when="after", correct=2, total=3, rows=answers([True, True, False])),
        DoneEvent(reason="max_steps", message="Finished 3 steps in 1.5 s.", step=3, checkpoint_path=None),
    ]
    history.fold(view_of(second, status="done", since=8, note="Stopped at the server's limit of 10 minutes."))
    assert (history.since, history.status, history.step, history.done, history.reason) == (
        16, "done", 3, "Finished 3 steps in 1.5 s.", "max_steps")
    assert history.accuracy == [(0, 0.5, 0.4375), (3, 0.75, None)]
    assert (history.baseline, history.final) == ((0.5, 0.46875, 0.48), (0.875, 0.8125, 0.8))
    assert history.confusion == [[120, 10], [4, 124]] and history.samples == [(3, "Add 0 and 1. 1")]
    assert history.checkpoint == "/tmp/run/step-000003"  # Done without a path keeps the last checkpoint
    assert (history.before.score, history.after.score) == (0.0, 2 / 3) and not history.running
    assert history.status_line(view_of([], status="done")) == (
        "✅ Finished 3 steps in 1.5 s.\n\n⚠ Stopped at the server's limit of 10 minutes.\n\n"
        "⚠ 12 train messages were longer than 64 tokens and were cut.\n\n"
        "⚠ This server allows at most 6 steps per run; using 6 instead of 168.")
    assert copy.deepcopy(history) == history  # what gr.State does per session
    assert classify_tab.results_markdown(history).splitlines()[-2:] == [
        "| before training | 50.0% | 46.9% | 48.0% |", "| after training | 87.5% | 81.2% | 80.0% |"]
    assert instruct_tab.score_markdown(history.before, history.after) == (
        "Exact match on 3 held-out test records (greedy answer == expected output): before tuning **0/3 (0%)** "
        "· after tuning **2/3 (67%)**")
    assert [row[3:] for row in instruct_tab.compare_rows(history.before, history.after)] == [
        ["✗ 0", "✓ 1"], ["✗ 1", "✓ 2"], ["✗ 2", "✗ 2"]]


def test_status_line_while_queued_getting_ready_stopped_and_failed(monkeypatch):
    monkeypatch.setattr(runs.job_manager(), "max_running", 2)
    history = RunHistory("job-1-ab", start_note="Steps lowered.")
    assert history.status_line(view_of([], status="queued", position=3)) == (
        "Waiting for a free slot: your run is number 3 in the queue (this server runs 2 at a time).\n\n"
        "⚠ Steps lowered.")
    history.fold(view_of([]))
    assert history.status_line() == run_tab.GETTING_READY + "\n\n⚠ Steps lowered."
    assert history.status_line(preparing="⏳ Starting…") == "⏳ Starting…\n\n⚠ Steps lowered."
    history.fold(view_of([], status="stopped"))
    assert history.status_line().startswith("⏹ Stopped before training began.")
    history.fold(view_of([], status="failed", error="RuntimeError: out of memory"))
    assert history.status_line().startswith("❌ The run failed: RuntimeError: out of memory")


def test_the_skeleton_starts_polls_skips_stops_and_reattaches(monkeypatch):
    manager = JobManager(max_running=1)
    monkeypatch.setattr(runs, "_manager", manager)
    tab = run_tab.RunTab("demo", "demo run", n_views=2)
    browser = runs.new_browser_id()
    owner = runs.verified_browser(browser)
    gate = threading.Event()

    def job(stop):
        yield StartEvent(device="cpu", autocast=None, n_params=10, tokens_per_step=8, max_steps=2, start_step=0)
        gate.wait(10)
        yield step_event(1, 2.5)
        yield DoneEvent(reason="max_steps", message="Finished all 2 steps.", step=1, checkpoint_path=None)

    def status(history, view):
        return history.status_line(view)

    def views(history, view, owner_seen):
        return f"{len(history.step_losses)} losses", owner_seen

    history = tab.start(owner, job, "nano", max_steps=2, start_note=None)
    assert manager.poll(history.job_id, owner).label == "demo · nano"
    with pytest.raises(ValueError, match="^Your demo run is still going: press Stop first, or wait until it"):
        tab.owner_for_start(history, browser, None)
    while manager.poll(history.job_id, owner).next_since < 1:
        time.sleep(0.01)
    text, losses, seen, history, timer = tab.poll(history, browser, None, status, views)
    assert (text, losses, seen, history.since, timer.active) == (
        "⏳ Running on cpu · step 0 / 2 · epoch 0.00 · 10 trainable parameters", "0 losses", owner, 1, True)
    unchanged = tab.poll(history, browser, None, status, views)  # no new event: only the status is sent
    assert unchanged[1:3] == (gr.skip(), gr.skip()) and unchanged[4].active is True
    assert tab.reattach(browser)[0] is None and tab.reattach(browser)[1].active is True
    assert tab.reattach(None)[1].active is False
    gate.set()
    manager.wait(history.job_id, owner, timeout=10)
    text, losses, _, history, timer = tab.poll(history, browser, None, status, views)
    assert (text, losses, history.since, timer.active) == ("✅ Finished all 2 steps.", "1 losses", 3, False)
    assert tab.stop(history, browser, None) == "There is no demo run going."
    text, losses, _, again, _ = tab.poll(None, browser, None, status, views)  # a refreshed page: from event 0
    assert (text, losses, again.job_id, again.step_losses) == (
        "✅ Finished all 2 steps.", "1 losses", history.job_id, [(1, 2.5)])
    stranger = runs.new_browser_id()
    *skips, no_history, timer = tab.poll(None, stranger, None, status, views)  # no run to follow
    assert (skips, no_history, timer.active) == ([gr.skip()] * 3, None, False)


# ---------------------------------------------------------------- Classify tab through the API
@pytest.mark.app
def test_classify_data_api_counts(client):
    counts, table = client.predict(3, api_name="/classify_data")
    assert "| train | 898 | 455 | 443 |" in counts
    assert "| test | 258 | 130 | 128 |" in counts
    assert len(table["data"]) == 6 and table["headers"] == ["label", "message"]


@pytest.mark.app
def test_classify_before_training_and_without_model(client):
    # said in place (no error: an error would leave a red badge on the views for the whole next run)
    plot, note = client.predict("Win a prize!", runs.new_browser_id(), api_name="/classify_text")
    assert plot is None and note == ("⚠ There is no classifier yet: press Start fine-tuning above, wait until the "
                                     "run finishes, then classify your message.")
    assert "**" not in note.removeprefix("⚠")
    _, empty = client.predict("  ", runs.new_browser_id(), api_name="/classify_text")
    assert empty == "⚠ Type a message first: the box is empty."
    with pytest.raises(AppError, match="No model is loaded: pick a model in the menu at the top"):
        client.predict(None, "classroom", "all", 1, 3e-4, runs.new_browser_id(), api_name="/classify_start")


def test_classify_while_the_first_run_trains_says_so(monkeypatch):
    owner = "browser-still-training"
    monkeypatch.setattr(classify_tab, "owner_of", lambda browser_id, request=None: owner)
    started = threading.Event()

    def slow_job(stop):
        started.set()
        stop.wait(30)
        yield DoneEvent(reason="stopped", message="Stopped.", step=0, checkpoint_path=None)

    job_id = runs.job_manager().start(owner, slow_job, "classify · test")
    try:
        started.wait(10)
        _, note = classify_tab.classify_message("Win a prize!", "any")
        assert note == ("⚠ Your classifier is still training: press Classify again when the run above has "
                        "finished.")
    finally:
        runs.job_manager().stop(job_id, owner)
        runs.job_manager().wait(job_id, owner, timeout=30)


@pytest.mark.app
@pytest.mark.slow
def test_classify_short_run_accuracy_confusion_and_classify_text(client, few_steps):
    browser = runs.new_browser_id()
    status, _ = client.predict(NANO, "classroom", "all", 3, 3e-4, browser, api_name="/classify_start")
    assert "This server allows at most 6 steps per run; using 6 instead of 168." in status
    status, loss, accuracy, results, confusion, _ = poll_until_done(client, "/classify_poll", browser)
    assert status.startswith("✅ Finished 6 steps")
    assert re.search(r"\d+ messages \(12 train(, \d+ val)?(, \d+ test)?\) are longer than 64 tokens", status)
    loss_traces = {trace["name"]: trace for trace in plot_data(loss)}
    assert numbers(loss_traces["batch loss"]["x"]) == [1, 2, 3, 4, 5, 6]
    accuracy_traces = {trace["name"]: trace for trace in plot_data(accuracy)}
    assert numbers(accuracy_traces["train accuracy"]["x"]) == [0, 6]  # before training, and at the (early) end
    rows = re.findall(r"\| (before|after) training \| ([\d.]+)% \| ([\d.]+)% \| ([\d.]+)% \|", results)
    assert [row[0] for row in rows] == ["before", "after"]
    heatmap = plot_data(confusion)[0]
    assert sum(sum(row) for row in heatmap["z"]) == 258  # every test message, once
    assert [sum(row) for row in heatmap["z"]] == [130, 128]  # true ham, true spam
    plot, verdict = client.predict("WINNER! Claim your free prize now, text CLAIM to 81010", browser,
                                   api_name="/classify_text")
    bar = plot_data(plot)[0]
    assert bar["y"] == ["ham", "spam"]
    assert sum(numbers(bar["x"])) == pytest.approx(1.0, abs=1e-6)
    assert re.match(r"\*\*ham [\d.]+% · spam [\d.]+%\*\*", verdict)
    long_message = "free prize " * 100
    n_tokens = len(models.gpt2_tokenizer().encode(long_message))
    _, long_note = client.predict(long_message, browser, api_name="/classify_text")
    assert f"Your message has {n_tokens} tokens; the classifier reads only the first 64" in long_note


# ---------------------------------------------------------------- Instruct tab through the API
@pytest.mark.app
def test_instruct_data_and_mask_counts(client):
    records = instruct_tab.load_records("generated", 160, None)
    first = InstructionDataset([split_records(records)["train"][0]], models.bundled_tokenizer())[0]
    n_targets = len(first.ids) + instruct_tab.EXTRA_PADDING
    summary, table, _, plain_note, _, text = client.predict("generated", 160, None, 0, False,
                                                            api_name="/instruct_data")
    assert summary.startswith("**160 records** → train 136 · validation 8 · test 16")
    assert "in the tokens of the bundled model's BPE" in plain_note
    assert len(table["data"]) == instruct_tab.SHOWN_RECORDS
    assert (f"**{n_targets - 3} of {n_targets} targets count** for the loss; **3 are -100** "
            f"(3 padding + 0 instruction)") in plain_note
    _, _, mask_html, masked_note, _, _ = client.predict("generated", 160, None, 0, True, api_name="/instruct_data")
    n_masked = first.prompt_length - 1
    assert f"**{n_masked + 3} are -100** (3 padding + {n_masked} instruction)" in masked_note
    assert mask_html.count("−100") == n_masked + 3
    assert text.startswith("Below is an instruction that describes a task.")


@pytest.mark.app
@pytest.mark.parametrize("content, message", [
    (b'{"instruction": "x"}', "The JSON must be a list of records"),
    (b'[{"instruction": "Say hi."}]', 'Record 0 has no "output" field.'),
    (b'[{"instruction": "Add.", "output": 5}]', 'Record 0: "output" must be a string, but it is a int'),
    (b"[]", "The dataset is empty: the JSON list has no records."),
    (b"[{", "The file is not valid JSON"),
])
def test_instruct_bad_json_upload_messages(client, tmp_path, content, message):
    path = tmp_path / "records.json"
    path.write_bytes(content)
    with pytest.raises(AppError, match=re.escape(message)):
        client.predict("upload", 160, handle_file(str(path)), 0, False, api_name="/instruct_data")


@pytest.mark.app
def test_instruct_oversize_and_missing_file_messages(client, tmp_path, monkeypatch):
    monkeypatch.setattr(instruct_tab, "MAX_JSON_BYTES", 100)
    path = tmp_path / "big.json"
    data = json.dumps([{"instruction": "Say hi.", "output": "hi"}] * 10).encode()
    path.write_bytes(data)
    with pytest.raises(AppError, match=rf"big.json is {len(data)} bytes; the limit is 100 bytes\. Upload a smaller file"):
        client.predict("upload", 160, handle_file(str(path)), 0, False, api_name="/instruct_data")
    with pytest.raises(AppError, match="Upload a JSON file first"):
        client.predict("upload", 160, None, 0, False, api_name="/instruct_data")


@pytest.mark.app
@pytest.mark.slow
def test_instruct_short_run_scores_before_and_after(client, few_steps, monkeypatch):
    monkeypatch.setattr(instruct_tab, "EVAL_RECORDS", 3)
    monkeypatch.setattr(instruct_tab, "ANSWER_TOKENS", 4)
    browser = runs.new_browser_id()
    # the client's session keeps the records the data tests loaded last: load the default 960 again
    client.predict("generated", instruct_tab.DEFAULT_RECORDS, None, 0, True, api_name="/instruct_data")
    status, _ = client.predict(NANO, "classroom", 3, 3e-4, True, browser, api_name="/instruct_start")
    assert "on 816 records, 6 steps" in status and "the 3 held-out prompts" in status
    status, loss, score, compare, _ = poll_until_done(client, "/instruct_poll", browser)
    assert status.startswith("✅ Finished 6 steps")
    steps = numbers(next(trace for trace in plot_data(loss) if trace["name"] == "batch loss")["x"])
    assert steps == [1, 2, 3, 4, 5, 6]
    assert re.search(r"before tuning \*\*\d/3 \(\d+%\)\*\* · after tuning \*\*\d/3 \(\d+%\)\*\*", score)
    assert compare["headers"] == instruct_tab.COMPARE_HEADERS
    assert len(compare["data"]) == 3
    assert all(row[3][:2] in ("✓ ", "✗ ") and row[4][:2] in ("✓ ", "✗ ") for row in compare["data"])


# ---------------------------------------------------------------- one browser run per tab
@pytest.mark.browser
@pytest.mark.slow
def test_browser_classify_tab(page, few_steps):
    page.get_by_role("tab", name="Classify").click()
    page.locator("#classify-start").click()
    page.wait_for_selector("text=The classifier is ready", timeout=90_000)
    page.wait_for_selector("#classify-confusion .js-plotly-plot", timeout=30_000)
    page.locator("#classify-button").click()
    page.wait_for_selector("#classify-probs .js-plotly-plot", timeout=30_000)
    assert page.locator("#classify-probs .js-plotly-plot text", has_text="%").count() >= 2
    page.reload()  # the browser id lives in localStorage: the refreshed page finds its run and shows it again
    page.get_by_role("tab", name="Classify").click()
    page.wait_for_selector("text=The classifier is ready", timeout=30_000)
    page.wait_for_selector("#classify-confusion .js-plotly-plot", timeout=30_000)


@pytest.mark.browser
@pytest.mark.slow
def test_browser_instruct_tab(page, few_steps, monkeypatch):
    monkeypatch.setattr(instruct_tab, "EVAL_RECORDS", 3)
    monkeypatch.setattr(instruct_tab, "ANSWER_TOKENS", 4)
    page.get_by_role("tab", name="Instruct").click()
    page.wait_for_selector("#instruct-mask .cell", timeout=30_000)
    plan = page.locator("#instruct-plan").inner_text()  # drawn before anything was pressed
    assert "816 training records" in plan and "153 steps" in plan and "What to expect from" in plan
    assert page.locator("#instruct-mask .cell.masked").count() > 0  # the classroom preset masks the prompt
    page.get_by_label("mask the instruction").uncheck()
    page.wait_for_function("document.querySelectorAll('#instruct-mask .cell.masked').length == 0", timeout=30_000)
    assert page.locator("#instruct-mask .cell.padding").count() == instruct_tab.EXTRA_PADDING
    page.locator("#instruct-start").click()
    page.wait_for_function("document.querySelector('#instruct-score').innerText.match(/after tuning \\d/)",
                           timeout=90_000)
    page.wait_for_selector("#instruct-loss .js-plotly-plot", timeout=30_000)  # the plot may draw after the score
    assert page.locator("#instruct-loss .js-plotly-plot").count() == 1
