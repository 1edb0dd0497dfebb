"""Programmatic use through gradio_client: labelled outputs, /generate's result, the synchronous runs."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from gpt_core.checkpoints import load_checkpoint, load_checkpoint_tokenizer
from gpt_core.classify import add_classification_head, classify, load_classifier
from gpt_core.generate import generate
from gpt_core.model import GPTConfig, GPTModel
from ui import api, instruct_tab, models, pretrain_tab, runs

NANO = "Random init · nano (untrained)"
BPE = pretrain_tab.BPE_4096
BUNDLED = models.DEFAULT_CHOICE  # 4 layers, 192 wide, its own 4,096-token BPE (a small zip)
MESSAGES = ("WINNER! Claim your free prize now, text CLAIM to 81010", "See you at the station at six, love")
CLASS_MODE = "/class_"  # class mode's endpoints (ui/classroom.py) are the lead's to hide


@pytest.mark.app
def test_every_documented_output_has_a_label(client):
    endpoints = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
    unlabelled = {name: [r["label"] for r in info["returns"] if r["label"].startswith("value_")]
                  for name, info in endpoints.items() if not name.startswith(CLASS_MODE)}
    assert {name: labels for name, labels in unlabelled.items() if labels} == {}
    assert len(endpoints) >= 30
    for name in ("/attention_head", "/generate_steps", "/instruct_loss_mask", "/pretrain_run", "/classify_run",
                 "/instruct_run"):
        assert name in endpoints


@pytest.mark.app
def test_generate_returns_the_text_and_ids_of_a_direct_engine_call(client):
    *_, text, result = client.predict(NANO, "Hello there", 6, 0.0, 0, 1.0, 7, api_name="/generate")
    loaded = models.load_choice(NANO)
    ids = loaded.tokenizer.encode("Hello there")
    expected = generate(loaded.model, torch.tensor(ids), 6)[len(ids):].tolist()
    assert result["new_token_ids"] == expected
    assert result["token_ids"] == ids + expected
    assert result["text"] == text == loaded.tokenizer.decode(expected)


@pytest.mark.app
def test_generate_steps_replays_the_same_generation(client):
    html, chart, data = client.predict(NANO, "Hello there", 4, 0.0, 0, 1.0, 7, 2, api_name="/generate_steps")
    *_, result = client.predict(NANO, "Hello there", 4, 0.0, 0, 1.0, 7, api_name="/generate")
    assert data["new_token_ids"] == result["new_token_ids"]
    assert [step["token_id"] for step in data["steps"]] == result["new_token_ids"]
    assert [step["step"] for step in data["steps"]] == [1, 2, 3, 4]
    assert len(data["steps"][0]["candidates"]) == 10
    assert 'data-chosen' in html


@pytest.mark.app
def test_attention_head_returns_rows_that_sum_to_one(client):
    _, data = client.predict(NANO, "one two three four", 1, 2, api_name="/attention_head")
    assert (data["layer"], data["head"]) == (1, 2)
    n = len(data["tokens"])
    assert n == 4 and len(data["weights"]) == n
    for row, weights in enumerate(data["weights"]):
        assert sum(weights) == pytest.approx(1.0, abs=1e-2)
        assert all(w == 0 for w in weights[row + 1:])  # causal: no token looks ahead
    with pytest.raises(Exception, match="layer"):
        client.predict(NANO, "one two", 99, 0, api_name="/attention_head")


@pytest.mark.app
def test_instruct_loss_mask_counts_the_masked_targets(client):
    _, note, masked = client.predict("generated", 160, None, 0, True, models.DEFAULT_CHOICE,
                                     api_name="/instruct_loss_mask")
    _, _, unmasked = client.predict("generated", 160, None, 0, False, models.DEFAULT_CHOICE,
                                    api_name="/instruct_loss_mask")
    assert masked["n_targets"] == unmasked["n_targets"]
    assert masked["n_ignored"] > unmasked["n_ignored"] >= 3  # the instruction on top of the padding
    assert f"{masked['n_ignored']} are -100" in note


@pytest.mark.app
def test_pretrain_run_returns_metrics_and_a_checkpoint_without_browser_state(client, tmp_path):
    summary, zip_path = client.predict("nano", "Shakespeare (packaged)", None, BPE, 3, 2, 16,
                                       1e-3, 1, "ROMEO:", [], api_name="/pretrain_run")
    assert summary["status"] == "done" and summary["steps"] == 3
    assert 0 < summary["final_val_loss"] < 20 and 0 < summary["final_train_loss"] < 20
    assert summary["tokens_per_s"] > 0 and summary["seconds"] > 0
    assert summary["settings"]["steps"] == 3 and summary["settings"]["batch_size"] == 2
    with zipfile.ZipFile(zip_path) as archive:
        assert {"model.safetensors", "config.json"} <= set(archive.namelist())
        archive.extractall(tmp_path)
    weights = load_file(tmp_path / "model.safetensors")
    assert weights["tok_emb.weight"].shape == (4096, 128)  # the 4,096-token BPE, nano's width
    with pytest.raises(Exception, match="batch size"):
        client.predict("nano", "Shakespeare (packaged)", None, BPE, 3, 0, 16, 1e-3, 1, "",
                       [], api_name="/pretrain_run")


@pytest.fixture
def three_steps(monkeypatch):
    """Every run stops after 3 steps (the server's step cap), on one torch thread."""
    monkeypatch.setattr(runs.job_manager(), "max_steps_cap", 3)
    monkeypatch.setenv("LLM_LAB_TORCH_THREADS", "1")
    threads = torch.get_num_threads()
    yield 3
    torch.set_num_threads(threads)


def unzipped(zip_path: str, folder: Path) -> list[str]:
    """Unzip a downloaded file into ``folder``; its names, sorted."""
    assert Path(zip_path).is_file() and zip_path.endswith(".zip")
    with zipfile.ZipFile(zip_path) as archive:
        archive.extractall(folder)
        return sorted(archive.namelist())


@pytest.mark.app
def test_classify_run_returns_the_classifier_as_a_zip_that_loads_back(client, tmp_path, three_steps):
    summary, zip_path = client.predict(BUNDLED, "classroom", "all", 1, 3e-4, api_name="/classify_run")
    assert summary["status"] == "done" and summary["steps"] == 3
    assert Path(zip_path).name.startswith("llm-lab-spam-classifier-shakespeare-gpt")
    assert unzipped(zip_path, tmp_path) == ["config.json", "lab_tokenizer.json", "model.safetensors"]
    weights = load_file(tmp_path / "model.safetensors")
    assert weights["out_head.weight"].shape == (2, 192) and weights["out_head.bias"].shape == (2,)
    assert weights["tok_emb.weight"].shape == (4096, 192)  # kept: the head is no longer tied to it
    info = json.loads((tmp_path / "config.json").read_text())
    assert info["gpt_config"]["emb_dim"] == 192 and info["extra"]["job_id"] == summary["job_id"]
    model, head = load_classifier(tmp_path)
    assert head == {"class_names": ["ham", "spam"], "max_length": 64}
    tokenizer = load_checkpoint_tokenizer(tmp_path)
    for message in MESSAGES:  # the session's served classifier (/classify_text) and the reloaded one agree
        plot, _ = client.predict(message, None, api_name="/classify_text")
        served = json.loads(plot["plot"])["data"][0]
        assert served["y"] == ["ham", "spam"]
        reloaded = classify(model, tokenizer, message, max_length=head["max_length"])
        assert list(reloaded.values()) == pytest.approx(served["x"], abs=1e-6)
    downloaded = client.predict(None, api_name="/classify_download")  # the tab's button: the same weights
    assert unzipped(downloaded, tmp_path / "again")[-1] == "model.safetensors"
    again = load_file(tmp_path / "again" / "model.safetensors")
    assert all(torch.equal(again[key], weights[key]) for key in weights)


@pytest.mark.app
def test_instruct_run_returns_the_tuned_model_as_a_zip_that_loads_back(client, tmp_path, three_steps):
    summary, zip_path = client.predict(BUNDLED, "classroom", 1, 1e-3, True, "generated", 160, None,
                                       api_name="/instruct_run")
    assert summary["status"] == "done" and summary["steps"] == 3
    assert Path(zip_path).name.startswith("llm-lab-instruct-shakespeare-gpt")
    assert unzipped(zip_path, tmp_path) == ["config.json", "lab_tokenizer.json", "model.safetensors"]
    weights = load_file(tmp_path / "model.safetensors")
    assert weights["tok_emb.weight"].shape == (4096, 192) and weights["pos_emb.weight"].shape == (256, 192)
    assert weights["trf_blocks.3.att.W_query.weight"].shape == (192, 192)
    assert "out_head.weight" not in weights  # tied to the token embedding, saved once
    model = load_checkpoint(tmp_path)
    served = instruct_tab.TUNED_MODELS.find(f"session-{client.session_hash}", "latest")
    assert served.job_id == summary["job_id"]
    ids = torch.tensor([load_checkpoint_tokenizer(tmp_path).encode("Is this a question?")])  # (1, T)
    with torch.no_grad():
        assert torch.allclose(model(ids), served.model(ids), atol=1e-5)  # (1, T, 4096)


def test_a_model_over_the_download_limit_gives_a_note_not_a_file(monkeypatch, tmp_path):
    monkeypatch.setattr(api, "MODEL_ZIPS_DIR", tmp_path)
    model = add_classification_head(GPTModel(GPTConfig(vocab_size=50, context_length=8, emb_dim=16, n_heads=2,
                                                       n_layers=1)))
    size = sum(tensor.numel() * 4 for tensor in model.state_dict().values())  # float32
    monkeypatch.setattr(api, "MAX_MODEL_ZIP_BYTES", size - 1)
    notes = []
    assert api.zip_or_note(lambda: api.model_zip(model, None, "too big"), notes) is None
    assert notes == [f"No model file: The fine-tuned model is {size / 1e3:.1f} kB, more than this server's limit "
                     f"of {(size - 1) / 1e3:.1f} kB for a download (LLM_LAB_MAX_MODEL_ZIP_MB)."]
    assert list(tmp_path.iterdir()) == []  # refused before anything was written
    monkeypatch.setattr(api, "MAX_MODEL_ZIP_BYTES", size)
    path = Path(api.model_zip(model, None, "Just Right!"))
    assert (path.name, path.parent.parent) == ("just-right.zip", tmp_path)
    with zipfile.ZipFile(path) as archive:  # no tokenizer given: none in the zip
        assert sorted(archive.namelist()) == ["config.json", "model.safetensors"]
    assert sorted(entry.name for entry in path.parent.iterdir()) == ["just-right.zip"]  # the folder is gone
