"""A public classroom server: file inputs read only uploads, runs belong to their session, budgets evict only
finished idle work, fine-tunes that hit NaN keep nothing, and error popups never render the student's HTML."""

from __future__ import annotations

import json
import secrets
import threading
import time
from pathlib import Path

import httpx
import pytest
import torch
from gradio.utils import get_upload_folder

from gpt_core.events import DoneEvent
from ui import budgets, classify_tab, pretrain_tab, runs
from ui.budgets import BudgetStore
from ui.common import friendly
from ui.jobs import JobManager, JobView
from ui.run_tab import RunHistory

FILE_META = {"_type": "gradio.FileData"}


def call_raw(app_url: str, api_name: str, data: list) -> tuple[str, str]:
    """Call an endpoint as any HTTP client can, without gradio_client's upload step: (event, data) at the end."""
    app_url = app_url.rstrip("/")
    with httpx.Client(timeout=60) as http:
        event_id = http.post(f"{app_url}/gradio_api/call/{api_name}", json={"data": data}).json()["event_id"]
        stream = http.get(f"{app_url}/gradio_api/call/{api_name}/{event_id}").text
    events = [block for block in stream.strip().split("\n\n") if block.startswith("event:")]
    last = events[-1].split("\n")
    return last[0].removeprefix("event: "), last[1].removeprefix("data: ")


def file_value(path: Path | str) -> dict:
    return {"path": str(path), "meta": FILE_META, "orig_name": Path(path).name}


def bodies_with(marker: bytes) -> list[Path]:
    """Files in Gradio's upload folder whose bytes contain ``marker``."""
    folder = Path(get_upload_folder())
    return [path for path in folder.rglob("*") if path.is_file() and marker in path.read_bytes()]


def injection_inputs(path_value: dict) -> dict[str, list]:
    """Every endpoint with a file input, called with ``path_value`` as the file (other inputs valid)."""
    return {
        "train_bpe": [300, "An uploaded .txt file", "some text", path_value],
        "pretrain_start": ["nano", pretrain_tab.UPLOAD, path_value, pretrain_tab.BPE_4096, 5, 2, 16, 1e-3, 0,
                           "ROMEO:", runs.new_browser_id()],
        "instruct_data": ["upload", 160, path_value, 0, False, runs.new_browser_id()],
    }


# ---------------------------------------------------------------- uploads
@pytest.mark.app
@pytest.mark.parametrize("api_name", ["train_bpe", "pretrain_start", "instruct_data"])
def test_a_server_path_outside_the_upload_folder_is_refused_and_not_copied(app_url, tmp_path, api_name):
    marker = secrets.token_hex(16).encode()
    secret = tmp_path / ("secret.json" if api_name == "instruct_data" else "secret.txt")
    secret.write_bytes(b'[{"instruction": "leak", "output": "' + marker + b'"}]' + b" " * 200)
    event, data = call_raw(app_url, api_name, injection_inputs(file_value(secret))[api_name])
    print(api_name, event, data)
    assert event == "error"
    assert bodies_with(marker) == []  # nothing was copied into Gradio's cache, so nothing can be fetched


@pytest.mark.app
@pytest.mark.parametrize("api_name", ["train_bpe", "pretrain_start", "instruct_data"])
def test_a_cached_file_that_was_never_uploaded_is_refused(app_url, api_name):
    # Another student's download (a checkpoint zip, say) sits in the upload folder but was never uploaded.
    folder = Path(get_upload_folder()) / secrets.token_hex(16)
    folder.mkdir(parents=True)
    name = "other.json" if api_name == "instruct_data" else "other.txt"
    (folder / name).write_text('[{"instruction": "Say hi.", "output": "hi"}]' + " " * 200)
    event, data = call_raw(app_url, api_name, injection_inputs(file_value(folder / name))[api_name])
    assert event == "error"
    assert "That file was not uploaded to this page, so it cannot be read" in data


@pytest.mark.app
def test_a_real_upload_is_accepted_with_its_extension_and_size_checked(client, tmp_path):
    from gradio_client import handle_file

    text = tmp_path / "notes.txt"
    text.write_text("To be, or not to be, that is the question. " * 40)
    state_status = client.predict(300, "An uploaded .txt file", "", handle_file(str(text)), api_name="/train_bpe")
    assert "Learned **" in state_status[0] and "of notes.txt" in state_status[0]
    wrong = tmp_path / "notes.json"
    wrong.write_text("[]")
    with pytest.raises(Exception, match=r"Invalid file type. Please upload a file that is one of these formats"):
        client.predict(300, "An uploaded .txt file", "", handle_file(str(wrong)), api_name="/train_bpe")


# ---------------------------------------------------------------- ownership
def test_browser_ids_are_signed_by_the_server():
    issued = runs.new_browser_id()
    name = runs.verified_browser(issued)
    assert name.startswith("browser-") and len(name) == len("browser-") + 32
    assert runs.owner_of(issued) == name
    assert runs.keep_or_issue_browser_id(issued) == issued  # a refreshed page keeps its id, so its runs
    forged = f"{name}.{'0' * 32}"
    assert runs.verified_browser(forged) is None and runs.keep_or_issue_browser_id(forged) != forged
    with pytest.raises(PermissionError, match="was not issued by this server"):
        runs.owner_of(forged)
    with pytest.raises(PermissionError, match="was not issued by this server"):
        runs.owner_of("browser-anything-a-client-sends")


def test_24_students_start_runs_and_every_run_stays_until_its_own_session_stops_it(monkeypatch, tmp_path):
    manager = JobManager(max_running=2)
    monkeypatch.setattr(runs, "_manager", manager)
    monkeypatch.setattr(pretrain_tab, "RUNS", BudgetStore("pretraining run", 16, 1e9,
                                                          on_evict=pretrain_tab.delete_run_files))
    monkeypatch.setattr(pretrain_tab, "RUNS_DIR", tmp_path)
    gate = threading.Event()

    def waiting_job(run):  # a run that trains only when the test lets it
        def job(stop):
            gate.wait(30)
            yield from ()
        return job

    monkeypatch.setattr(pretrain_tab, "pretrain_job", waiting_job)
    browsers = [runs.new_browser_id() for _ in range(24)]
    histories = [pretrain_tab.start_run("nano", pretrain_tab.SHAKESPEARE, None, pretrain_tab.BPE_4096, 10, 2, 16,
                                        1e-3, 0, "ROMEO:", None, browser)[-2] for browser in browsers]
    owners = [runs.verified_browser(browser) for browser in browsers]
    views = [manager.poll(history.job_id, owner) for history, owner in zip(histories, owners)]
    assert [view.status for view in views].count("running") == 2
    assert sorted(view.position for view in views if view.status == "queued") == list(range(1, 23))
    assert len(pretrain_tab.RUNS) == 24  # over the budget of 16, because no run was finished
    assert all(Path(pretrain_tab.run_of(owner, h.job_id).out_dir).is_dir() for owner, h in zip(owners, histories))
    assert [h.max_steps for h in histories] == [10] * 24 and histories[0].job_id.startswith("job-")
    with pytest.raises(PermissionError, match="belongs to another session"):
        manager.stop(histories[0].job_id, owners[1])
    assert pretrain_tab.stop_run(histories[0], browsers[0]).startswith("Stopping")
    gate.set()
    for history, owner in zip(histories, owners):
        assert manager.wait(history.job_id, owner, timeout=30).done
    pretrain_tab.RUNS.put(owners[0], "one-more", pretrain_tab.run_of(owners[0], histories[0].job_id))
    assert len(pretrain_tab.RUNS) == 16  # finished now, so the least recently used made room
    with pytest.raises(ValueError, match="Your pretraining run was cleared to make room for newer ones"):
        pretrain_tab.run_of(owners[1], histories[1].job_id)


# ---------------------------------------------------------------- budgets
def test_budget_evicts_least_recently_used_finished_items_only():
    evicted = []
    store = BudgetStore("thing", max_items=2, max_bytes=100, on_evict=evicted.append)
    running = {"a": True}
    store.put("alice", "a", "A", size_bytes=10, busy=lambda: running["a"])
    store.put("bob", "b", "B", size_bytes=10)
    store.put("carol", "c", "C", size_bytes=10)  # over 2 items: b goes, a is busy and stays
    assert (evicted, len(store)) == (["B"], 2)
    store.put("dave", "d", "D", size_bytes=95)  # over 100 bytes: c goes; a is still busy
    assert evicted == ["B", "C"] and store.total_bytes() == 105  # over budget while a runs, by design
    running["a"] = False
    assert store.get("alice", "a") == "A"  # used just now, so d is the least recently used
    store.put("erin", "e", "E", size_bytes=1)
    assert evicted == ["B", "C", "D"]
    with pytest.raises(ValueError, match="Your thing was cleared to make room for newer ones"):
        store.get("bob", "b")
    with pytest.raises(ValueError, match="There is no thing 'a' for this page"):
        store.get("mallory", "a")  # another owner's key is simply not there


def test_idle_items_are_evicted_and_memory_is_handed_back(monkeypatch):
    store = budgets.register_store(BudgetStore("idle thing", max_items=10, max_bytes=1e9))
    store.put("alice", "old", torch.zeros(1_000_000), size_bytes=4_000_000)
    store.put("bob", "busy", "B", busy=lambda: True)
    trimmed = []
    monkeypatch.setattr(budgets, "release_memory", lambda: trimmed.append(True))
    time.sleep(0.05)
    assert budgets.sweep_idle(max_idle_s=0.01) >= 1
    assert trimmed == [True] and len(store) == 1 and store.find("bob", "busy") == "B"
    with pytest.raises(ValueError, match="cleared after 0.000166667 minutes without use"):
        store.get("alice", "old")


# ---------------------------------------------------------------- NaN fine-tunes and messages
def test_a_classifier_whose_loss_turns_nan_is_not_kept(monkeypatch):
    monkeypatch.setattr(classify_tab, "CLASSIFIERS", BudgetStore("classifier", 4, 1e9))

    def diverging(model, tokenizer, config, stop, datasets=None):
        yield DoneEvent(reason="nan", step=3, checkpoint_path=None, message="The loss became NaN at step 3.")

    monkeypatch.setattr(classify_tab, "finetune_classifier", diverging)
    loaded = classify_tab.load_choice("Random init · nano (untrained)")
    config, _ = classify_tab.classify_config("classroom", "head", 1, 1e-3)
    events = list(classify_tab.classify_job(loaded, config, "alice")(threading.Event()))
    assert [event.kind for event in events] == ["done"]  # the engine's events, passed on; nothing kept
    with pytest.raises(ValueError, match="There is no classifier yet"):
        classify_tab.classifier_of("alice")
    history = RunHistory("job")
    history.fold(JobView(job_id="job", label="classify", status="done", position=None, events=events,
                         next_since=1, done=True, error=None))
    assert (history.status, history.reason, history.since) == ("done", "nan", 1)
    assert history.status_line() == "⏹ The loss became NaN at step 3."


def test_error_popups_show_html_from_data_as_text():
    def bad_record():
        raise ValueError('Record 0: "output" must be a string, but it is a list ([\'<img src=x onerror=alert(1)>\']).')

    with pytest.raises(Exception) as caught:
        friendly(bad_record)()
    assert "<img" not in str(caught.value) and "&lt;img src=x onerror=alert(1)&gt;" in str(caught.value)


def test_instruction_json_is_bounded_in_depth_and_records():
    from gpt_core.instruct_data import MAX_JSON_DEPTH, MAX_RECORDS, load_user_json

    with pytest.raises(ValueError, match=f"nests lists or objects more than {MAX_JSON_DEPTH} levels deep"):
        load_user_json(b"[" * 100_000 + b"]" * 100_000)
    many = json.dumps([{"instruction": "Say hi.", "output": "hi"}] * (MAX_RECORDS + 1)).encode()
    with pytest.raises(ValueError, match=f"The file has {MAX_RECORDS + 1:,} records; the limit is {MAX_RECORDS:,}"):
        load_user_json(many)


def call_raw_json(app_url: str, api_name: str, body: str) -> tuple[str, str]:
    """Like call_raw, with a hand-written JSON body: NaN and Infinity are what any HTTP client can send."""
    app_url = app_url.rstrip("/")
    with httpx.Client(timeout=60) as http:
        event_id = http.post(f"{app_url}/gradio_api/call/{api_name}", content=body,
                             headers={"content-type": "application/json"}).json()["event_id"]
        last = http.get(f"{app_url}/gradio_api/call/{api_name}/{event_id}").text.strip().split("\n")[-2:]
    return last[0].removeprefix("event: "), last[1].removeprefix("data: ")


@pytest.mark.app
@pytest.mark.parametrize("api_name, body, message", [
    ("pretrain_start", '["nano", "Shakespeare (packaged)", null, "GPT-2\'s 50,257 tokens", NaN, 16, 64, 0.002, 20, '
                       '"ROMEO:", null]', "The number of steps must be a whole number of at least 1; got NaN"),
    ("pretrain_start", '["nano", "Shakespeare (packaged)", null, "GPT-2\'s 50,257 tokens", 10, 16, 64, Infinity, 20, '
                       '"ROMEO:", null]', "The learning rate must be a number above 0 and at most 10, such as 0.003; "
                                          "got infinity"),
    ("pretrain_start", '["nano", "Shakespeare (packaged)", null, "GPT-2\'s 50,257 tokens", 10, '
                       '100000000000000000000000000000, 64, 0.002, 20, "ROMEO:", null]',
     "The batch size must be a whole number from 1 to 512; got 100000000000000000000000000000"),
    ("classify_start", '["Random init · nano (untrained)", "classroom", "head", "three", 0.001, null]',
     "The number of epochs must be a whole number from 1 to 10; got 'three'"),
    ("instruct_start", '["Random init · nano (untrained)", "classroom", 2, -Infinity, true, null]',
     "The learning rate must be a number above 0 and at most 10, such as 0.003; got minus infinity"),
    ("instruct_data", '["generated", NaN, null, 0, false, null]',
     "The number of generated records must be a whole number from 1 to 2,000; got NaN"),
])
def test_run_tabs_answer_edge_numbers_from_any_client_in_plain_words(app_url, api_name, body, message):
    event, data = call_raw_json(app_url, api_name, '{"data": ' + body + "}")
    assert event == "error"
    assert message in json.loads(data)["error"]


def test_explorer_models_in_use_stay_and_a_cleared_one_says_so(monkeypatch):
    from ui import models

    monkeypatch.setattr(models, "EXPLORER_MODELS", BudgetStore("model in the explorer", 2, 1e9,
                                                               on_evict=models._forget_model))
    tiny = models.random_init("nano")
    labels = [f"Your pretrain run · test-{n}" for n in range(3)]
    models.register_model(labels[0], tiny, models.gpt2_tokenizer(), "first")
    models.register_model(labels[1], tiny, models.gpt2_tokenizer(), "second")
    assert models.load_choice(labels[0]).note == "first"  # picked again: now the most recently used
    models.register_model(labels[2], tiny, models.gpt2_tokenizer(), "third")
    assert labels[1] not in models.choice_labels() and labels[0] in models.choice_labels()
    with pytest.raises(ValueError, match="Your model in the explorer was cleared to make room for newer ones"):
        models.load_choice(labels[1])
    with pytest.raises(ValueError, match="Unknown model 'no such model'"):
        models.load_choice("no such model")
    for label in labels:
        models._forget_model(label)
