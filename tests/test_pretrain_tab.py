"""The Pretrain tab: settings checks, short runs through the gradio_client API and the job manager, and one
browser run whose loss curve must grow while it trains."""

from __future__ import annotations

import json
import math
import re
import time
import zipfile
from pathlib import Path
from urllib.request import urlopen

import gradio as gr
import pytest
import torch
from gradio_client import Client
from gradio_client.exceptions import AppError

from gpt_core.checkpoints import load_checkpoint
from gpt_core.model import GPTModel
from ui import experiments, models, pretrain_tab, runs
from ui.jobs import JobManager, JobView

SHAKESPEARE, BPE = pretrain_tab.SHAKESPEARE, pretrain_tab.BPE_4096
FINISHED = ("✅", "❌", "⏹")


def settings(browser: str, steps: int = 20, batch_size: int = 4, context_length: int = 32, lr: float = 3e-3,
             warmup: int = 5) -> tuple:
    """The arguments of /pretrain_start: nano, Shakespeare, BPE 4,096, tiny batches."""
    return ("nano", SHAKESPEARE, None, BPE, steps, batch_size, context_length, lr, warmup, "ROMEO:", browser)


def plot_data(plot: dict) -> list[dict]:
    return json.loads(plot["plot"])["data"]


def traces_by_name(plot: dict) -> dict[str, dict]:
    return {trace["name"]: trace for trace in plot_data(plot)}


def predict_with_defaults(client, api_name: str, *first):
    """Call an endpoint with these first arguments and every other parameter at its default (undocumented ones
    too, such as the page's /pretrain_poll_experiment, which gradio_client does not fill in)."""
    info = json.loads(urlopen(f"{client.src.rstrip('/')}/gradio_api/info?all_endpoints=true").read())
    values = [parameter.get("parameter_default") for parameter in info["named_endpoints"][api_name]["parameters"]]
    values[:len(first)] = first
    return client.predict(*values, api_name=api_name)


def poll_until_done(client, browser: str, timeout: float = 90.0, api_name: str = "/pretrain_poll") -> tuple:
    """Call /pretrain_poll (or the page's own /pretrain_poll_experiment) as the timer does until the status says
    the run finished; return the last output in which every view was redrawn (the final poll always redraws)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predict_with_defaults(client, api_name, False, browser)
        if any(mark in result[0] for mark in FINISHED):
            return result
        time.sleep(0.3)
    raise AssertionError(f"the run did not finish within {timeout} s; last status: {result[0]!r}")


@pytest.fixture
def quick_runs(monkeypatch):
    """One torch thread per run, and the app's manager restored after the test."""
    monkeypatch.setenv("LLM_LAB_TORCH_THREADS", "1")
    threads = torch.get_num_threads()
    yield runs.job_manager()
    torch.set_num_threads(threads)


def stop_all(manager: JobManager, owners: list[str]) -> None:
    for owner in owners:
        for view in manager.jobs_of(owner):
            if not view.done:
                manager.stop(view.job_id, owner)
                manager.wait(view.job_id, owner, timeout=30)


# ---------------------------------------------------------------- units
@pytest.mark.parametrize("value, message", [
    (0, "The batch size must be a whole number from 1 to 512; got 0."),
    (2.5, "The batch size must be a whole number from 1 to 512; got 2.5."),
    (float("nan"), "The batch size must be a whole number from 1 to 512; got NaN (not a number)."),
    (float("-inf"), "The batch size must be a whole number from 1 to 512; got minus infinity."),
    (10**30, "The batch size must be a whole number from 1 to 512; got 1000000000000000000000000000000."),
    ("eight", "The batch size must be a whole number from 1 to 512; got 'eight'."),
    ([8], "The batch size must be a whole number from 1 to 512; got [8]."),
    (None, "The batch size is empty: it must be a whole number from 1 to 512."),
])
def test_batch_size_messages(value, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        pretrain_tab.whole_number(value, "The batch size", 1, 512)


@pytest.mark.parametrize("value", [0, -1e-3, float("nan"), float("inf"), None, 1e300, "fast"])
def test_learning_rate_must_be_a_positive_number(value):
    with pytest.raises(ValueError, match="The learning rate must be a number above 0 and at most 10, such as 0.003"):
        pretrain_tab.learning_rate(value)


def test_context_longer_than_the_text_is_refused():
    corpus = pretrain_tab.Corpus("tiny.txt", None, list(range(900)), list(range(100)))
    with pytest.raises(ValueError, match=r"context length \(128 tokens\) is longer than the validation part of "
                                         r"tiny.txt \(100 tokens"):
        pretrain_tab.check_fits(corpus, 128, 4)
    with pytest.raises(ValueError, match="tiny.txt gives only 14 training windows of 64 tokens, fewer than one "
                                         "batch of 16"):
        pretrain_tab.check_fits(corpus, 64, 16)
    pretrain_tab.check_fits(corpus, 64, 14)  # 14 windows fill exactly one batch


def test_upload_must_be_utf8_and_small(tmp_path, monkeypatch):
    latin1 = tmp_path / "notes.txt"
    latin1.write_bytes("Caf\u00e9 au lait, s'il vous pla\u00eet. ".encode("latin-1") * 10)
    with pytest.raises(ValueError, match=r"notes.txt is not UTF-8 text \(byte 0xe9 at position 3 cannot be read\)"):
        pretrain_tab.read_corpus(pretrain_tab.UPLOAD, str(latin1))
    monkeypatch.setattr(pretrain_tab, "MAX_UPLOAD_BYTES", 1_000)
    big = tmp_path / "big.txt"
    big.write_text("To be or not to be. " * 100)
    with pytest.raises(ValueError, match=r"big.txt is 2.0 kB; the limit is 1.0 kB. Upload a smaller file."):
        pretrain_tab.read_corpus(pretrain_tab.UPLOAD, str(big))
    with pytest.raises(ValueError, match="Upload a .txt file first"):
        pretrain_tab.read_corpus(pretrain_tab.UPLOAD, None)


def test_settings_summary_counts_the_real_parameters():
    summary = pretrain_tab.settings_summary("micro", BPE, 100, 8, 128)
    n_params = GPTModel(pretrain_tab.model_config("micro", 4096, 128)).num_parameters()
    assert f"**{n_params:,} parameters**" in summary
    assert "4 layers × 256 wide, 4 heads" in summary and "1,024 tokens per step" in summary
    assert pretrain_tab.settings_summary("nano", BPE, 100, 0, 128) == "⚠ The batch size must be a whole number from 1 to 512; got 0."


def test_config_plans_evals_samples_and_checkpoints(tmp_path):
    corpus = pretrain_tab.Corpus("t", object(), [], [])
    config = pretrain_tab.pretrain_config(200, 8, 64, 1e-3, 10, "ROMEO:", corpus, str(tmp_path))
    assert (config.eval_every, config.sample_every, config.checkpoint_every) == (20, 25, 50)
    assert (config.max_steps, config.batch_size, config.context_length, config.warmup_steps) == (200, 8, 64, 10)
    assert (config.seed, config.eval_batches, config.sample_tokens) == (123, 4, 32)


def test_time_estimates_say_when_the_server_stops_a_run(monkeypatch):
    monkeypatch.setattr(pretrain_tab, "cpu_peak", lambda: 100e9)  # a measured 100 GFLOP/s
    monkeypatch.setattr(pretrain_tab, "pick_device", lambda preference: torch.device("cpu"))
    monkeypatch.setattr(pretrain_tab, "run_threads", lambda: 1)
    monkeypatch.setattr(runs.job_manager(), "max_minutes_cap", 10)
    monkeypatch.setattr(runs.job_manager(), "max_steps_cap", 2000)
    # mini at context 256 (untied head): 6 * 13.8M + 12 * 6 * 384 * 256 = 89.8 MFLOP per token; 40% of 100 GFLOP/s
    step_s = 16 * 256 * pretrain_tab.flops_per_token(pretrain_tab.model_config("mini", 4096, 256), 256) / 40e9
    assert round(step_s, 2) == 9.2
    summary = pretrain_tab.settings_summary("mini", BPE, 1000, 16, 256)
    assert ("roughly **2 h 33 min** for 1,000 steps on CPU, 1 thread, but **this server stops runs after 10 "
            "minutes: about 65 of 1,000 steps**") in summary
    summary = pretrain_tab.settings_summary("nano", BPE, 1000, 16, 64)
    assert "roughly **" in summary and "stops runs" not in summary and "on CPU, 1 thread (" in summary


def test_devices_are_named_in_words():
    assert pretrain_tab.device_in_words("cpu", threads=2) == "CPU, 2 threads"
    assert pretrain_tab.device_in_words("mps") == "Apple GPU (MPS)"
    assert pretrain_tab.duration_words(183 * 60) == "3 h 03 min"


def test_mfu_on_a_cpu_is_a_share_of_the_measured_peak(monkeypatch):
    from ui.run_tab import RunHistory

    monkeypatch.setattr(pretrain_tab, "cpu_peak", lambda: 80e9)
    monkeypatch.setattr(pretrain_tab, "run_threads", lambda: 1)
    history = RunHistory("j", max_steps=100, device="cpu", tokens_per_s=4000.0, eta_s=30.0, tokens_seen=48_000, step=3)
    assert pretrain_tab.run_stats(history, 5e6) == (
        "**4,000 tokens/s** · MFU **25.0%** (share of this CPU's measured matmul peak spent on the model) · "
        "about **30 s** left · 48,000 tokens seen")
    history.tokens_per_s = 40_000.0  # 2.5 times the measured peak: that peak was measured on a busy machine
    assert "MFU n/a on CPU, 1 thread" in pretrain_tab.run_stats(history, 5e6)
    status = pretrain_tab.run_status(history, JobView("j", "pretrain", "running", None, [], 0, False, None))
    assert status.startswith("⏳ Running on CPU, 1 thread · step 3 / 100 ·")


def test_the_plan_shows_the_schedule_and_the_first_batch_the_run_reads(tmp_path):
    from gpt_core.train import Run

    figure, batch = pretrain_tab.default_plan()  # what build_tab passes as the initial values
    schedule = {trace.name: trace for trace in figure.data}["learning rate"]
    assert schedule.x[-1] == pretrain_tab.CLASSROOM_STEPS and figure.layout.yaxis2.tickvals[-1] == pretrain_tab.CLASSROOM_LR
    assert "the plan" in figure.layout.title.text
    batch_size, context = pretrain_tab.CLASSROOM_BATCH, pretrain_tab.CLASSROOM_CONTEXT
    assert f"Each step is one batch of {batch_size} windows of {context} tokens" in batch
    assert [f"window {i} of {batch_size} · {context} tokens" in batch for i in (1, 2, 3, 4)] == [True] * 3 + [False]
    corpus = pretrain_tab.prepare_corpus(SHAKESPEARE, None, BPE)
    config = pretrain_tab.pretrain_config(pretrain_tab.CLASSROOM_STEPS, batch_size, context, 1e-3, 10, "ROMEO:",
                                          corpus, str(tmp_path))
    model = GPTModel(pretrain_tab.model_config("nano", corpus.tokenizer.vocab_size, context))
    inputs, _ = Run(model, corpus.train_ids, corpus.val_ids, config, None).batches.next_batch()
    shown = [int(token_id) for token_id in re.findall(r'title="id (\d+)"', batch)]
    assert shown == inputs[:3].flatten().tolist()  # the run's own first batch, in order


def test_the_plan_follows_the_settings_until_a_run_starts():
    pretrain_tab.prepare_corpus(SHAKESPEARE, None, BPE)
    figure, batch = pretrain_tab.plan_views(SHAKESPEARE, BPE, 300, 8, 32, 1e-3, 30, None)
    assert len({trace.name: trace for trace in figure.data}["learning rate"].x) == 300
    assert "window 1 of 8 · 32 tokens" in batch
    _, refused = pretrain_tab.plan_views(SHAKESPEARE, BPE, 300, 0, 32, 1e-3, 30, None)
    assert "⚠ The batch size must be a whole number from 1 to 512; got 0." in refused
    _, later = pretrain_tab.plan_views(pretrain_tab.UPLOAD, BPE, 300, 8, 32, 1e-3, 30, None)
    assert "tokenized when you press Start" in later
    from ui.run_tab import RunHistory

    assert pretrain_tab.plan_views(SHAKESPEARE, BPE, 300, 8, 32, 1e-3, 30, RunHistory("j")) == (gr.skip(),) * 2


def test_a_packaged_text_is_tokenized_once_and_kept_on_disk(tmp_path, monkeypatch):
    monkeypatch.setenv("LLM_LAB_CACHE", str(tmp_path))
    monkeypatch.setattr(pretrain_tab, "_corpora", pretrain_tab.OrderedDict())
    first = pretrain_tab.prepare_corpus(pretrain_tab.VERDICT, None, BPE)
    (folder,) = (tmp_path / "corpora").iterdir()
    assert sorted(path.name for path in folder.iterdir()) == ["ids.npy", "lab_tokenizer.json"]
    monkeypatch.setattr(pretrain_tab, "_corpora", pretrain_tab.OrderedDict())  # a restarted server

    def no_training(*args):
        raise AssertionError("the tokenizer was trained again")

    monkeypatch.setattr(pretrain_tab, "make_tokenizer", no_training)
    again = pretrain_tab.prepare_corpus(pretrain_tab.VERDICT, None, BPE)
    assert torch.equal(again.train_ids, first.train_ids) and torch.equal(again.val_ids, first.val_ids)
    assert again.tokenizer.encode("I had always thought") == first.tokenizer.encode("I had always thought")
    assert pretrain_tab.prepare_corpus(pretrain_tab.VERDICT, None, BPE) is again  # then from memory


# ---------------------------------------------------------------- through the API
@pytest.mark.app
def test_bad_settings_through_the_api(client):
    with pytest.raises(AppError, match=re.escape("The batch size must be a whole number from 1 to 512; got 0.")):
        client.predict(*settings(runs.new_browser_id(), batch_size=0), api_name="/pretrain_start")
    with pytest.raises(ValueError, match=re.escape("The number of steps must be a whole number of at least 1; got "
                                                  "infinity.")):
        pretrain_tab.start_run(*settings(runs.new_browser_id(), steps=float("inf"))[:-1], None, runs.new_browser_id())
    with pytest.raises(ValueError, match=re.escape("The number of warm-up steps must be a whole number of at least "
                                                  "0; got NaN (not a number).")):
        pretrain_tab.start_run(*settings(runs.new_browser_id(), warmup=float("nan"))[:-1], None, runs.new_browser_id())
    with pytest.raises(AppError, match="The learning rate must be a number above 0 and at most 10"):
        client.predict(*settings(runs.new_browser_id(), lr=0), api_name="/pretrain_start")
    with pytest.raises(AppError, match=r"The context length must be a whole number from 2 to 1,024; got 5000"):
        client.predict(*settings(runs.new_browser_id(), context_length=5000), api_name="/pretrain_start")


def test_nan_learning_rate_through_the_handler():
    with pytest.raises(ValueError, match=r"The learning rate must be a number above 0 and at most 10, such as 0.003; got NaN \(not a number\)"):
        *values, browser = settings(runs.new_browser_id(), lr=float("nan"))
        pretrain_tab.start_run(*values, None, browser)


@pytest.mark.app
@pytest.mark.slow
def test_short_run_streams_curves_samples_and_a_checkpoint(client, quick_runs, monkeypatch):
    monkeypatch.setattr(quick_runs, "max_steps_cap", 20)
    monkeypatch.setattr(pretrain_tab, "cpu_peak", lambda: 1e13)  # whatever the machine's load, an MFU under 100%
    browser = runs.new_browser_id()
    status, stats, plot, _, download, *_ = client.predict(*settings(browser, steps=5000), api_name="/pretrain_start")
    assert (stats, download["value"], download["visible"]) == ("", None, False)  # no old checkpoint shown
    assert len(traces_by_name(plot)["learning rate"]["x"]) == 20  # the planned schedule, before the first step
    assert "This server allows at most 20 steps per run; using 20 instead of 5000." in status
    status, stats, plot, samples, download, *_ = poll_until_done(client, browser)
    assert status.startswith("✅ Finished all 20 steps.")
    traces = traces_by_name(plot)
    assert [float(x) for x in traces["batch loss"]["x"]] == list(range(1, 21))
    assert [float(x) for x in traces["validation loss"]["x"]] == [2, 4, 6, 8, 10, 12, 14, 16, 18, 20]
    losses = [float(y) for y in traces["batch loss"]["y"]]
    print("first and last batch loss:", losses[0], losses[-1])
    assert abs(losses[0] - math.log(4096)) < 0.5  # a random model starts near ln(vocab)
    assert min(losses[-5:]) < losses[0] - 1.0  # and learns something in 20 steps
    assert len(traces["learning rate"]["x"]) == 20 and traces["now"]["x"] == [20]
    assert re.search(r"\*\*[\d,]+ tokens/s\*\* · MFU \*\*[\d.]+%\*\* \(share of this CPU's measured matmul peak",
                     stats)
    assert samples.count("step ") == pretrain_tab.N_SAMPLES_SHOWN and "step 20</div>" in samples
    print("download:", download)
    assert download["visible"] is True and download["value"].endswith(".zip")
    with zipfile.ZipFile(download["value"]) as archive:
        assert sorted(archive.namelist()) == ["config.json", "lab_tokenizer.json", "model.safetensors"]
    dropdown, note = client.predict(browser, api_name="/pretrain_use")
    print(dropdown)
    label = dropdown["value"]
    assert label.startswith("Your pretrain run · job-") and "step 20, Shakespeare" in label
    assert label in [choice[0] for choice in dropdown["choices"]]
    loaded = models.load_choice(label)
    assert loaded.tokenizer.vocab_size == 4096 and loaded.cfg.n_layers == 2
    assert "is now the model of the Inside GPT and Generate tabs" in note


@pytest.mark.app
@pytest.mark.slow
def test_a_loss_that_turns_nan_stops_and_keeps_the_last_good_checkpoint(client, quick_runs, monkeypatch):
    real_train = pretrain_tab.train

    def poisoned_train(model, *args, **kwargs):
        for event in real_train(model, *args, **kwargs):
            yield event
            if event.kind == "checkpoint" and event.step == 10:  # after a good checkpoint, break the weights
                with torch.no_grad():
                    model.tok_emb.weight.fill_(float("nan"))

    monkeypatch.setattr(pretrain_tab, "train", poisoned_train)
    browser = runs.new_browser_id()
    client.predict(*settings(browser, steps=40), api_name="/pretrain_start")
    status, _, _, _, download, *_ = poll_until_done(client, browser)
    assert "The loss became NaN or infinite at step 11, so training stopped" in status
    assert re.search(r"The last good checkpoint is \S+step-000010", status)
    assert download["value"].endswith("-step10.zip")


@pytest.mark.app
@pytest.mark.slow
def test_sessions_keep_their_own_runs_and_the_cap_queues_a_third(app_url, quick_runs, monkeypatch):
    monkeypatch.setenv("LLM_LAB_MAX_RUNS", "2")
    monkeypatch.setattr(quick_runs, "max_running", JobManager().max_running)  # the app's manager, capped at 2
    browsers = [runs.new_browser_id() for _ in range(3)]
    owners = [runs.verified_browser(browser) for browser in browsers]
    clients = [Client(app_url, verbose=False) for _ in owners]
    try:
        for client, browser in zip(clients, browsers):
            client.predict(*settings(browser, steps=2000, batch_size=2, context_length=16),
                           api_name="/pretrain_start")
        statuses = [client.predict(False, browser, api_name="/pretrain_poll")[0]
                    for client, browser in zip(clients, browsers)]
        assert statuses[2] == ("Waiting for a free slot: your run is number 1 in the queue "
                               "(this server runs 2 at a time).")
        job_ids = [runs.latest_job(owner, "pretrain").job_id for owner in owners]
        assert len(set(job_ids)) == 3
        with pytest.raises(PermissionError, match="belongs to another session"):
            quick_runs.poll(job_ids[0], owners[1])
        with pytest.raises(PermissionError, match="belongs to another session"):
            quick_runs.stop(job_ids[0], owners[1])
        # an id this server did not sign is refused outright: nobody can act for another student by their id
        forged = browsers[0].rsplit(".", 1)[0] + ".0123456789abcdef0123456789abcdef"
        with pytest.raises(AppError, match="was not issued by this server"):
            clients[1].predict(False, forged, api_name="/pretrain_poll")
        # a refreshed page (a new session, the same browser id) finds its own run again
        refreshed = Client(app_url, verbose=False)
        again = refreshed.predict(False, browsers[1], api_name="/pretrain_poll")[0]
        for _ in range(40):
            if re.match(r"⏳ Running on CPU, 1 thread · step \d+ / 2000", again):
                break
            time.sleep(0.5)
            again = refreshed.predict(False, browsers[1], api_name="/pretrain_poll")[0]
        assert re.match(r"⏳ Running on CPU, 1 thread · step \d+ / 2000", again), again
        assert clients[2].predict(browsers[2], api_name="/pretrain_stop").startswith("Stopping")  # the queued run
        assert clients[0].predict(browsers[0], api_name="/pretrain_stop").startswith("Stopping")
        assert quick_runs.wait(job_ids[0], owners[0], timeout=30).status == "stopped"
    finally:
        stop_all(quick_runs, owners)


# ---------------------------------------------------------------- in the browser
@pytest.mark.browser
@pytest.mark.slow
def test_browser_run_grows_the_loss_curve(page, quick_runs, monkeypatch):
    monkeypatch.setattr(quick_runs, "max_steps_cap", 2000)
    page.get_by_role("tab", name="Pretrain").click()
    page.wait_for_selector("#pretrain-start")
    page.fill("#pretrain-batch input", "4")
    page.fill("#pretrain-context input", "32")
    page.fill("#pretrain-steps input", "2000")
    page.click("#pretrain-start")
    page.wait_for_selector("#pretrain-plot .js-plotly-plot", timeout=60_000)
    count = "() => (document.querySelector('#pretrain-plot .js-plotly-plot').data || [])" \
            ".filter(t => t.name === 'batch loss').map(t => t.x.length)[0] || 0"
    seen = [page.evaluate(count)]
    deadline = time.monotonic() + 60
    while len(set(seen)) < 4 and time.monotonic() < deadline:
        page.wait_for_timeout(1200)
        seen.append(page.evaluate(count))
    growth = sorted(set(seen))
    print("batch-loss points seen across polls:", seen)
    assert len(growth) >= 4 and growth == sorted(growth)  # it grew at least three times
    page.screenshot(path="/tmp/lab/shot_pretrain.png", full_page=True)
    page.click("#pretrain-stop")
    page.wait_for_function("document.querySelector('#pretrain-status').innerText.includes('Stopped at step')",
                           timeout=30_000)


def test_shown_speed_is_the_median_of_recent_steps_so_one_slow_step_does_not_jump():
    from gpt_core.events import StepEvent
    from ui.jobs import JobView
    from ui.run_tab import SPEED_WINDOW, RunHistory

    def steps(first: int, speeds: list[float]) -> JobView:
        events = [StepEvent(step=first + i, epoch=0.0, tokens_seen=1024 * (first + i), train_loss=5.0, lr=1e-3,
                            grad_norm=1.0, tokens_per_s=speed, elapsed_s=1.0, eta_s=1.0, mfu=None)
                  for i, speed in enumerate(speeds)]
        return JobView(job_id="j", label="pretrain", status="running", position=None, events=events,
                       next_since=first + len(speeds), done=False, error=None)

    history = RunHistory("j")
    history.fold(steps(1, [30_000.0] * 25))
    history.fold(steps(26, [12_000.0]))  # the last step was slowed by something else
    assert (history.tokens_per_s, history.mfu, history.tokens_seen) == (30_000.0, None, 26 * 1024)
    assert len(history.recent_speeds) == SPEED_WINDOW == 20
    assert pretrain_tab.run_stats(history, 5e6) == ("**30,000 tokens/s** · MFU n/a on this device (no known "
                                                    "peak FLOP/s) · about **1 s** left · 26,624 tokens seen")


# ---------------------------------------------------------------- experiments: switches, side by side, export
@pytest.mark.parametrize("ablations, prediction, message", [
    (["no-such-switch"], "lower", "Unknown switch 'no-such-switch'; the switches are: no-causal-mask, "),
    (["relu", "dropout", "post-norm", "no-warmup", "no-clipping"], "lower",
     "Change at most 4 things in one run (you picked 5)"),
    ([1, 2], "lower", "The switches must be a list of names"),
    (["relu"], "much better", "Unknown prediction 'much better'; choose one of: lower, about the same, higher"),
])
def test_bad_switches_and_predictions_are_refused(ablations, prediction, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        pretrain_tab.start_run(*settings(runs.new_browser_id())[:-1], None, runs.new_browser_id(), ablations,
                               prediction)


def test_a_verdict_compares_with_the_unchanged_run_and_says_why():
    text = experiments.verdict(("no-causal-mask",), "higher", 3.10, ("run 1 · no switches", 4.48), 8.3)
    assert "Val loss **3.100** against **4.480** for run 1 · no switches (-1.380): **lower**." in text
    assert "✗ you predicted *higher*." in text and "*Why (no causal mask):*" in text
    text = experiments.verdict(("relu",), "about the same", 4.50, ("run 1 · no switches", 4.48), 8.3)
    assert "(+0.020): **about the same**." in text and "✓ as you predicted." in text
    assert "Run the same settings without switches to compare" in experiments.verdict(("relu",), None, 4.5, None)
    assert experiments.verdict((), "lower", 4.5, None) == ""


@pytest.mark.app
@pytest.mark.slow
def test_two_runs_side_by_side_a_verdict_a_repeat_and_the_exports(client, quick_runs, monkeypatch):
    monkeypatch.setattr(quick_runs, "max_steps_cap", 20)
    browser = runs.new_browser_id()
    status, stats, plot, samples, download, note, timer = client.predict(*settings(browser),
                                                                         api_name="/pretrain_start")
    assert "Started **run 1**" in status  # /pretrain_start: the inputs and outputs scripts have always used
    assert len(poll_until_done(client, browser)) == 6  # status, stats, plot, samples, download, timer
    status, *_ = client.predict(*settings(browser), ["no-causal-mask"], "higher",
                                api_name="/pretrain_start_experiment")
    assert "Started **run 2, no causal mask**" in status
    second = poll_until_done(client, browser, api_name="/pretrain_poll_experiment")
    verdict_text, compare_plot, table = second[5], second[6], second[7]
    print(verdict_text)
    assert re.search(r"Val loss \*\*[\d.]+\*\* against \*\*[\d.]+\*\* for run 1 · no switches \([+-][\d.]+\): "
                     r"\*\*(lower|about the same|higher|breaks)\*\*", verdict_text)
    assert "*Why (no causal mask):*" in verdict_text
    assert re.search(r"\*\*With the mask put back\*\*.* val loss \*\*[\d.]+\*\* \(a model that knows nothing scores "
                     r"ln\(4,096\) = 8.32\)", verdict_text)
    names = [trace["name"] for trace in plot_data(compare_plot) if trace.get("showlegend", True)]
    assert any(name.startswith("run 1 · no switches") for name in names)
    assert any(name.startswith("run 2 · no causal mask") for name in names)
    assert json.loads(compare_plot["plot"])["config"]["toImageButtonOptions"]["filename"] == \
        "llm-lab-pretrain-runs-1-2"
    assert re.findall(r'<tr class="differs"><th scope="row">([^<]*)<', table) == ["≠ causal mask"]
    # repeat with one change: the second run's settings and switch come back
    jobs = [view.job_id for view in quick_runs.jobs_of(runs.verified_browser(browser))]
    repeated = client.predict(jobs[1], browser, api_name="/pretrain_repeat")
    assert list(repeated[:9]) == ["nano", SHAKESPEARE, BPE, 20, 4, 32, 3e-3, 5, "ROMEO:"]
    assert repeated[9] == ["no-causal-mask"] and "Change **one** thing" in repeated[11]
    # the runs as CSV and as a page that opens offline
    csv_path, html_path = client.predict("tokens seen", False, browser, api_name="/pretrain_download_runs")
    assert Path(csv_path).name == "llm-lab-pretrain-runs-1-2.csv" and Path(html_path).suffix == ".html"
    lines = Path(csv_path).read_text().splitlines()
    assert lines[0] == "run,step,tokens_seen,seconds,train_loss,val_loss" and len(lines) == 1 + 2 * 20
    # the run without a mask cannot be a GPT-2: its export is refused, saying why
    with pytest.raises(AppError, match="This model was trained without a causal mask"):
        client.predict(browser, api_name="/pretrain_export")


@pytest.mark.app
@pytest.mark.slow
def test_export_for_transformers_gives_the_same_logits(client, quick_runs, monkeypatch, tmp_path):
    from transformers import GPT2LMHeadModel

    monkeypatch.setattr(quick_runs, "max_steps_cap", 10)
    browser = runs.new_browser_id()
    client.predict(*settings(browser, steps=10), api_name="/pretrain_start")
    poll_until_done(client, browser)
    exported, note = client.predict(browser, api_name="/pretrain_export")
    assert Path(exported["value"]).name.startswith("llm-lab-pretrain-run-1-nano-hf-step10")
    with zipfile.ZipFile(exported["value"]) as archive:
        archive.extractall(tmp_path)
        folder = tmp_path / Path(exported["value"]).stem
        assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} <= \
            {path.name for path in folder.iterdir()}
    assert f'from_pretrained("{folder.name}")' in note
    run = pretrain_tab.runs_of(runs.verified_browser(browser))[-1]
    ours = load_checkpoint(run.out_dir)  # the run's newest checkpoint, as the lab loads it
    hf = GPT2LMHeadModel.from_pretrained(folder).eval()
    ids = torch.tensor([[1, 2, 3, 40, 50, 4095]])
    with torch.no_grad():
        difference = (hf(ids).logits - ours(ids)).abs().max().item()
    print("largest logit difference, transformers vs the lab:", difference)
    assert hf.config.n_layer == 2 and hf.config.vocab_size == 4096 and difference < 1e-4


@pytest.mark.slow
@pytest.mark.parametrize("name", list(pretrain_tab.ABLATION_NAMES))
def test_every_switch_runs_from_the_tab(name, quick_runs):
    from gpt_core.ablations import changed_settings

    browser = runs.new_browser_id()
    *values, _ = settings(browser, steps=2, batch_size=2, context_length=16, warmup=0)
    history = pretrain_tab.start_run(*values, None, browser, [name], "higher")[-2]
    owner = runs.verified_browser(browser)
    view = quick_runs.wait(history.job_id, owner, timeout=60)
    run = pretrain_tab.run_of(owner, history.job_id)
    plain = pretrain_tab.model_config("nano", 4096, 16)
    expected = changed_settings([name], plain, pretrain_tab.pretrain_config(2, 2, 16, 3e-3, 0, "ROMEO:",
                                                                          run.corpus, run.out_dir))
    print(name, expected, view.status)
    assert view.status == "done" and view.error is None
    for setting, _, after in expected:  # the run trained with the switch's settings
        assert str(getattr(run.model_cfg, setting, getattr(run.config, setting, None))) == after
    assert run.record.ablations == ((name,) if expected else ())  # a switch that changes nothing is dropped
