"""With no internet, a GPT-2 pick fails in seconds, the failure is remembered, and other models never wait.

No test touches the real network: the hub endpoint points at 127.0.0.1 (a closed port, or a socket that
accepts and never answers), and every socket connect is counted; one to any other address fails the test.
"""

from __future__ import annotations

import dataclasses
import socket
import threading
import time

import pytest
import torch

from gpt_core import hub
from gpt_core.checkpoints import export_hf, load_hf_gpt2
from gpt_core.model import GPTConfig, GPTModel
from ui import models

LOOPBACK = ("127.0.0.1", "::1", "localhost")


@pytest.fixture
def online(monkeypatch, tmp_path):
    """HF_HUB_OFFLINE off (conftest turns it on), an empty HF cache, default timeouts, nothing remembered."""
    from huggingface_hub import constants

    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HUB_ETAG_TIMEOUT", "LLM_LAB_OFFLINE_RETRY_S"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf_cache"))
    hub.forget_failures()
    yield tmp_path / "hf_cache"
    hub.forget_failures()


@pytest.fixture(scope="module")
def meta_device_ready():
    """Build one model on the 'meta' device first: the first time imports torch._dynamo (seconds, once)."""
    with torch.device("meta"):
        GPTModel(GPTConfig(vocab_size=10, context_length=4, emb_dim=4, n_heads=1, n_layers=1))


@pytest.fixture
def connects(monkeypatch):
    """Every socket connect made during the test, in order; a connect outside this machine fails the test."""
    calls = []
    real_connect = socket.socket.connect

    def counted_connect(sock, address):
        calls.append(address)
        if address[0] not in LOOPBACK:
            raise AssertionError(f"a test tried to reach {address}")
        return real_connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", counted_connect)
    return calls


@pytest.fixture
def no_connect(monkeypatch):
    """Every socket connect attempted during the test; each one raises (HF_HUB_OFFLINE=1 must not try any)."""
    calls = []

    def refuse_connect(sock, address):
        calls.append(address)
        raise AssertionError(f"HF_HUB_OFFLINE=1 but something tried to connect to {address}")

    monkeypatch.setattr(socket.socket, "connect", refuse_connect)
    return calls


@pytest.fixture
def refused_endpoint(monkeypatch):
    """HF_ENDPOINT set to a local port where nothing listens (connection refused)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    return f"http://127.0.0.1:{port}"


@pytest.fixture
def silent_endpoint(monkeypatch):
    """HF_ENDPOINT set to a local socket that accepts connections and never answers."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.getsockname()[1]}")
        yield


def timed_failure(call) -> tuple[float, str]:
    """Run call(), which must raise; returns (seconds it took, the message)."""
    start = time.perf_counter()
    with pytest.raises(Exception) as caught:
        call()
    return time.perf_counter() - start, str(caught.value)


def cache_tiny_gpt2(cache_dir, repo_id="openai-community/gpt2") -> GPTModel:
    """Put a tiny random GPT-2 in the Hugging Face cache layout, as if downloaded earlier; returns it."""
    torch.manual_seed(0)
    model = GPTModel(GPTConfig(vocab_size=300, context_length=16, emb_dim=32, n_heads=2, n_layers=2)).eval()
    repo_folder = cache_dir / f"models--{repo_id.replace('/', '--')}"
    commit = "0" * 40
    export_hf(model, repo_folder / "snapshots" / commit)
    (repo_folder / "refs").mkdir(parents=True)
    (repo_folder / "refs" / "main").write_text(commit)
    return model


# ---------------------------------------------------------------- (a), (b): fail in under 2 s
def test_refused_port_fails_within_two_seconds(online, refused_endpoint, connects):
    seconds, message = timed_failure(lambda: load_hf_gpt2("gpt2"))
    print(f"refused port: failed in {seconds:.3f} s after {len(connects)} connect(s)")
    assert seconds < 2.0
    assert len(connects) >= 1
    assert "GPT-2 weights need the internet" in message and "Connection refused" in message


def test_silent_server_fails_within_two_seconds(online, silent_endpoint, connects):
    seconds, message = timed_failure(lambda: load_hf_gpt2("gpt2"))
    print(f"server that never answers: failed in {seconds:.3f} s")
    assert hub.PROBE_TIMEOUT_S - 0.1 < seconds < 2.0
    assert f"no answer within {hub.PROBE_TIMEOUT_S:g} s" in message
    assert len(connects) >= 1


def test_failure_is_a_connection_error(online, refused_endpoint):
    with pytest.raises(ConnectionError, match="other models still work offline"):
        load_hf_gpt2("gpt2-medium")


# ---------------------------------------------------------------- (c): HF_HUB_OFFLINE=1 never connects
def test_offline_mode_never_connects(online, refused_endpoint, no_connect, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    seconds, message = timed_failure(lambda: load_hf_gpt2("gpt2"))
    assert no_connect == []
    assert seconds < 0.5
    assert "HF_HUB_OFFLINE=1" in message and "not in its local cache" in message


def test_offline_mode_loads_a_cached_model(online, refused_endpoint, no_connect, monkeypatch,
                                           meta_device_ready):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = cache_tiny_gpt2(online)
    loaded = load_hf_gpt2("gpt2")
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        assert torch.allclose(loaded(ids), model(ids), atol=1e-5)
    assert no_connect == []


def test_cached_model_loads_without_network_even_when_not_in_offline_mode(online, silent_endpoint, connects,
                                                                         meta_device_ready):
    cache_tiny_gpt2(online)
    start = time.perf_counter()
    loaded = load_hf_gpt2("gpt2")
    seconds = time.perf_counter() - start
    assert loaded.cfg.n_layers == 2
    assert connects == []
    assert seconds < 1.0  # no wait for the silent hub


# ---------------------------------------------------------------- (d): remembered, then retried
def test_failure_is_remembered_then_retried_after_the_retry_period(online, refused_endpoint, connects,
                                                                     monkeypatch):
    monkeypatch.setenv("LLM_LAB_OFFLINE_RETRY_S", "60")
    now = [1000.0]
    monkeypatch.setattr(hub, "_clock", lambda: now[0])
    timed_failure(lambda: load_hf_gpt2("gpt2"))
    first_connects = len(connects)
    assert first_connects >= 1

    now[0] += 59  # still within the retry period: answered from memory
    seconds, message = timed_failure(lambda: load_hf_gpt2("gpt2-medium"))
    print(f"remembered failure: {seconds * 1000:.2f} ms")
    assert seconds < 0.1
    assert len(connects) == first_connects
    assert "'openai-community/gpt2-medium'" in message and "noticed 59 s ago" in message
    assert "again in 1 s" in message

    now[0] += 2  # 61 s after the failure: the hub is tried again
    timed_failure(lambda: load_hf_gpt2("gpt2"))
    assert len(connects) > first_connects


def test_retry_period_setting(monkeypatch):
    monkeypatch.delenv("LLM_LAB_OFFLINE_RETRY_S", raising=False)
    assert hub.retry_after_s() == 300.0
    monkeypatch.setenv("LLM_LAB_OFFLINE_RETRY_S", "0")
    assert hub.retry_after_s() == 0.0
    monkeypatch.setenv("LLM_LAB_OFFLINE_RETRY_S", "soon")
    assert hub.retry_after_s() == 300.0


# ---------------------------------------------------------------- (e): the model menu
def gpt2_small_label() -> str:
    return next(label for label in models.choice_labels() if label.startswith("GPT-2 small"))


def test_menu_names_the_bundled_model_and_still_serves_it(online, refused_endpoint, connects):
    seconds, message = timed_failure(lambda: models.load_choice(gpt2_small_label()))
    print(f"menu pick of GPT-2 with the hub refused: {seconds:.3f} s")
    assert seconds < 2.0
    assert f"Pick '{models.DEFAULT_CHOICE}', which works offline." in message
    assert "bundled" in models.DEFAULT_CHOICE

    first_connects = len(connects)
    seconds, message = timed_failure(lambda: models.load_choice(gpt2_small_label()))
    assert seconds < 0.1 and len(connects) == first_connects
    assert models.DEFAULT_CHOICE in message

    bundled = models.load_choice(models.DEFAULT_CHOICE)  # works while GPT-2 keeps failing
    assert bundled.tokenizer.vocab_size == 4096
    assert gpt2_small_label() not in models._loaded


def test_a_slow_download_does_not_block_other_requests(monkeypatch):
    label = gpt2_small_label()
    index = models.choice_labels().index(label)
    started, finish = threading.Event(), threading.Event()

    def slow_download():
        started.set()
        finish.wait(5)
        raise ValueError("the test's download never finishes")

    choices = list(models.MODEL_CHOICES)
    choices[index] = dataclasses.replace(choices[index], build=slow_download)
    monkeypatch.setattr(models, "MODEL_CHOICES", choices)
    monkeypatch.setattr(models, "LOAD_WAIT_S", 0.2)
    first_error = []

    def first_pick():
        try:
            models.load_choice(label)
        except ValueError as error:
            first_error.append(str(error))

    first = threading.Thread(target=first_pick)
    first.start()
    try:
        assert started.wait(2)
        seconds, message = timed_failure(lambda: models.load_choice(label))  # same model: short wait
        assert 0.15 < seconds < 1.0
        assert "still loading" in message and models.DEFAULT_CHOICE in message

        start = time.perf_counter()
        models.load_choice(models.DEFAULT_CHOICE)  # another model: no wait for the download
        assert time.perf_counter() - start < 1.0
    finally:
        finish.set()
        first.join(5)
    assert not first.is_alive()
    assert "the test's download never finishes" in first_error[0]
    assert label not in models._loaded
