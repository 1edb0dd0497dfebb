"""Sampling, the KV cache, streaming with probabilities, and a golden greedy sequence.

Every test that takes `model` runs twice: on the book's model, and on the same model sped up by gpt_core.fast
(KV cache, decoding head, one-token path): the loop in gpt_core.generate is the same for both."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gpt_core.fast import speed_up
from gpt_core.fast.settings import use_plain
from gpt_core.generate import (
    GenerationStep,
    filter_logits,
    generate,
    next_token_probs,
    sample_next_token,
    stream_generate,
)
from gpt_core.model import GPTConfig, GPTModel

TINY = GPTConfig(vocab_size=101, context_length=24, emb_dim=32, n_heads=4, n_layers=2)
PROMPT = torch.tensor([[15496, 11, 314, 716]])


@pytest.fixture(scope="module", params=["book", "fast"])
def model(request):
    torch.manual_seed(7)
    model = GPTModel(TINY).eval()
    if request.param == "fast":
        with use_plain(False):
            speed_up(model)
    return model


def test_golden_greedy_nano():
    torch.manual_seed(123)
    nano = GPTModel(GPTConfig.preset("nano"))
    out = generate(nano, PROMPT, 6)
    assert out.tolist() == [[15496, 11, 314, 716, 39347, 39347, 39347, 39347, 39347, 43350]]
    assert nano.training  # generate switched dropout off only while it ran


def test_cached_and_uncached_greedy_identical(model):
    idx = torch.randint(0, 101, (3, 5))
    cached = generate(model, idx, 15)
    uncached = generate(model, idx, 15, use_cache=False)
    assert cached.shape == (3, 20)
    assert cached.tolist() == uncached.tolist()


def test_generation_past_the_context_slides_the_window(model):
    idx = torch.randint(0, 101, (1, 20))
    uncached = generate(model, idx, 10, use_cache=False)  # the last 24 tokens each step
    assert uncached.shape == (1, 30)
    assert generate(model, idx, 10, use_cache=True).tolist() == uncached.tolist()  # the cache gives way
    long_prompt = torch.randint(0, 101, (1, 30))
    assert generate(model, long_prompt, 3).tolist() == generate(model, long_prompt, 3, use_cache=False).tolist()
    assert generate(model, long_prompt, 3).shape == (1, 33)


def test_one_dimensional_prompt_and_zero_tokens(model):
    out = generate(model, torch.tensor([1, 2, 3]), 4)
    assert out.shape == (7,) and out[:3].tolist() == [1, 2, 3]
    assert generate(model, PROMPT % 101, 0).tolist() == (PROMPT % 101).tolist()


def test_eos_stops_and_is_included(model):
    idx = torch.tensor([[5, 6, 7]])
    free_run = generate(model, idx, 8)[0, 3:].tolist()
    eos = free_run[2]
    stop_at = free_run.index(eos)
    out = generate(model, idx, 8, eos_id=eos)[0, 3:].tolist()
    assert out == free_run[: stop_at + 1]


def test_seeded_sampling_reproduces(model):
    def run(seed):
        generator = torch.Generator().manual_seed(seed)
        return generate(model, PROMPT % 101, 12, temperature=1.3, top_k=20, generator=generator).tolist()

    assert run(5) == run(5)
    assert run(5) != run(6)
    steps_a = [s.token_id for s in stream_generate(model, PROMPT % 101, 10, temperature=1.0, top_p=0.9, seed=3)]
    steps_b = [s.token_id for s in stream_generate(model, PROMPT % 101, 10, temperature=1.0, top_p=0.9, seed=3)]
    assert steps_a == steps_b and len(steps_a) == 10


def test_top_k_one_equals_greedy(model):
    greedy = generate(model, PROMPT % 101, 10)
    sampled = generate(model, PROMPT % 101, 10, temperature=2.0, top_k=1, generator=torch.Generator().manual_seed(0))
    assert greedy.tolist() == sampled.tolist()


def test_stream_generate_steps(model):
    idx = PROMPT % 101
    steps = list(stream_generate(model, idx, 6, top_n=5))
    assert [s.token_id for s in steps] == generate(model, idx, 6)[0, 4:].tolist()
    for step in steps:
        assert isinstance(step, GenerationStep)
        assert len(step.candidates) == 5
        assert step.candidates[0][0] == step.token_id  # greedy picks the best candidate
        assert step.prob == pytest.approx(step.candidates[0][1])
        assert sum(p for _, p in step.candidates) <= 1.0 + 1e-6
        assert [p for _, p in step.candidates] == sorted((p for _, p in step.candidates), reverse=True)
    top3 = list(stream_generate(model, idx, 3, temperature=1.0, top_k=3, seed=0, top_n=10))
    assert all(len(s.candidates) == 3 for s in top3)
    assert all(sum(p for _, p in s.candidates) == pytest.approx(1.0, abs=1e-5) for s in top3)


def test_sampling_argument_messages(model):
    with pytest.raises(ValueError, match=r"top_p must be in \(0, 1\]"):
        generate(model, PROMPT % 101, 2, temperature=1.0, top_p=1.5)
    with pytest.raises(ValueError, match=r"top_p must be in \(0, 1\]"):
        sample_next_token(torch.zeros(1, 5), top_p=0.0)
    with pytest.raises(ValueError, match="top_k must be at least 1"):
        sample_next_token(torch.zeros(1, 5), temperature=1.0, top_k=0)
    with pytest.raises(ValueError, match="batch of 2"):
        next(stream_generate(model, torch.zeros(2, 3, dtype=torch.long), 2))


def test_filters_by_hand():
    logits = torch.tensor([[3.0, 1.0, 2.0, 0.0]])
    assert torch.isinf(filter_logits(logits, top_k=2)).tolist() == [[False, True, False, True]]
    assert torch.equal(filter_logits(logits, top_k=1000), logits)  # larger than the vocabulary: keep all
    probs = torch.softmax(logits, -1)[0]  # 0.644, 0.087, 0.237, 0.032
    assert torch.isinf(filter_logits(logits, top_p=0.8)).tolist() == [[False, True, False, True]]
    assert torch.isinf(filter_logits(logits, top_p=0.5)).tolist() == [[False, True, True, True]]
    assert probs[0] > 0.5
    assert torch.allclose(next_token_probs(logits, temperature=0.0), torch.softmax(logits, -1))
    hot = next_token_probs(logits, temperature=100.0)
    assert (hot.max() - hot.min()).item() < 0.01


@settings(max_examples=40, deadline=None)
@given(vocab=st.integers(2, 40), top_k=st.one_of(st.none(), st.integers(1, 50)),
       top_p=st.one_of(st.none(), st.floats(0.01, 1.0)), temperature=st.floats(0.05, 3.0),
       seed=st.integers(0, 1000))
def test_sampled_token_is_always_allowed(vocab, top_k, top_p, temperature, seed):
    torch.manual_seed(seed)
    logits = torch.randn(2, vocab)
    probs = next_token_probs(logits, temperature, top_k, top_p)
    assert torch.allclose(probs.sum(-1), torch.ones(2), atol=1e-5)
    assert ((probs > 0).sum(-1) <= min(top_k or vocab, vocab)).all()
    token = sample_next_token(logits, temperature, top_k, top_p, torch.Generator().manual_seed(seed))
    assert token.shape == (2, 1)
    assert (probs.gather(-1, token) > 0).all()
    assert (probs.argmax(-1) == logits.argmax(-1)).all()  # the best token always survives filtering


@pytest.mark.parametrize("fast", [False, True])
def test_stream_generate_can_be_resumed_on_another_thread(fast):
    """Gradio resumes generator handlers on whichever worker thread is free."""
    import threading

    torch.manual_seed(0)
    model = GPTModel(GPTConfig.preset("nano", vocab_size=64, emb_dim=32, n_layers=1, n_heads=2)).eval()
    if fast:
        with use_plain(False):
            speed_up(model)
    stream = stream_generate(model, torch.tensor([1, 2, 3]), max_new_tokens=4)
    first = next(stream)
    rest = []
    worker = threading.Thread(target=lambda: rest.extend(stream))
    worker.start()
    worker.join()
    expected = [step.token_id for step in stream_generate(model, torch.tensor([1, 2, 3]), max_new_tokens=4)]
    assert [first.token_id] + [step.token_id for step in rest] == expected
    assert torch.is_inference_mode_enabled() is False
