"""Programmatic use through gradio_client: labelled outputs, /generate's result, the synchronous runs."""

from __future__ import annotations

import zipfile

import pytest
import torch
from safetensors.torch import load_file

from gpt_core.generate import generate
from ui import models, pretrain_tab

NANO = "Random init · nano (untrained)"
BPE = pretrain_tab.BPE_4096
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
