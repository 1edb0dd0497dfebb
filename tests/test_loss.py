"""gpt_core.loss.cross_entropy: the same loss and gradient as torch.nn.functional.cross_entropy."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from gpt_core.loss import cross_entropy


def test_worked_example_from_the_docstring():
    logits = torch.tensor([[2.0, 1.0, 0.1]], requires_grad=True)
    loss = cross_entropy(logits, torch.tensor([0]))
    loss.backward()
    assert round(loss.item(), 4) == 0.4170
    assert [round(g, 3) for g in logits.grad[0].tolist()] == [-0.341, 0.242, 0.099]


@settings(max_examples=60, deadline=None)
@given(rows=st.integers(1, 40), vocab=st.integers(2, 300), seed=st.integers(0, 10_000),
       spread=st.sampled_from([0.1, 3.0, 40.0]), bf16=st.booleans())
def test_loss_and_gradient_match_pytorch(rows, vocab, seed, spread, bf16):
    generator = torch.Generator().manual_seed(seed)
    dtype = torch.bfloat16 if bf16 else torch.float32
    values = (torch.randn(rows, vocab, generator=generator) * spread).to(dtype)
    targets = torch.randint(0, vocab, (rows,), generator=generator)
    ours_logits, ref_logits = values.clone().requires_grad_(), values.clone().requires_grad_()
    ours = cross_entropy(ours_logits, targets)
    reference = F.cross_entropy(ref_logits.float(), targets)
    ours.backward(torch.tensor(0.7))
    reference.backward(torch.tensor(0.7))
    loss_diff = abs(ours.item() - reference.item())
    grad_diff = (ours_logits.grad.float() - ref_logits.grad.float()).abs().max().item()
    assert ours.dtype == torch.float32 and ours_logits.grad.dtype == dtype
    assert loss_diff <= 1e-5 * max(1.0, reference.item()), loss_diff
    assert grad_diff <= (2e-3 if bf16 else 1e-6), grad_diff  # bf16 gradients round to 8 bits


def test_batch_and_time_axes_are_flattened():
    torch.manual_seed(0)
    logits, targets = torch.randn(2, 5, 11), torch.randint(0, 11, (2, 5))
    diff = (cross_entropy(logits, targets) - F.cross_entropy(logits.flatten(0, 1), targets.flatten())).abs().item()
    print("largest difference", diff)
    assert diff < 1e-6


def test_a_second_backward_through_the_same_graph_is_refused():
    logits = torch.randn(3, 7, requires_grad=True)
    loss = cross_entropy(logits, torch.tensor([1, 2, 3]))
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()  # the saved softmax became the first gradient; reusing it would be wrong
