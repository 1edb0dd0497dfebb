"""Chapter 7: instruction fine-tuning (Alpaca-style prompts, loss masks, exact-match scoring).

    records = generated_tasks(960, seed=123, tasks=EASY_TASKS)  # gpt_core.instruct_tasks
    splits = split_records(records)                       # 85% train, 10% test, 5% val
    for event in finetune_instruct(model, tokenizer, splits["train"], INSTRUCT_PRESETS["classroom"],
                                   val_records=splits["val"]):
        ...
    exact_match_score(model, tokenizer, splits["test"])   # before and after

Each epoch ends with a SampleEvent: the model's greedy answer to the first validation record.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from gpt_core.events import Event, ExactMatchEvent, SampleEvent, WarningEvent
from gpt_core.finetune_loop import FinetuneConfig, FinetuneRun, model_device, set_trainable
from gpt_core.generate import generate
from gpt_core.instruct_data import (
    RESPONSE_HEADER,
    InstructionDataset,
    extract_response,
    format_input,
    instruction_collate,
)
from gpt_core.model import GPTModel


@dataclass
class InstructConfig(FinetuneConfig):
    epochs: int = 2
    eval_every: int = 5
    mask_instruction: bool = False  # True: learn only the response tokens (the book's exercise 7.2)
    allowed_max_length: int | None = None  # None: the model's context length
    sample_tokens: int = 40  # each epoch ends with a greedy answer to the first validation record
    answer_tokens: int = 40  # the longest answer written when the held-out records are scored


INSTRUCT_PRESETS: dict[str, InstructConfig] = {
    # The book's chapter 7 with GPT-2 medium (355M): 2 epochs, lr 5e-5, weight decay 0.1, batch 8.
    "book-gpt2-medium": InstructConfig(epochs=2, lr=5e-5, weight_decay=0.1, batch_size=8, eval_every=5,
                                       eval_batches=5),
    # The bundled 2.6M-parameter model on the easy generated tasks (ui/instruct_tab.py: 960 records, 816 to
    # train): 3 epochs of 816 // 16 = 51 steps, 153 steps, about 50 s on one idle CPU core; bench/instruct_demo.py
    # measures it. A small model takes a 20x larger learning rate than GPT-2 medium. The learning rate stays
    # constant (as in the book), so the answers are as good as the last steps leave them: batches of 16 and the
    # gradient norm clipped at 1 keep them from flipping between "yes" and "no" late in the run (batches of 8
    # for 204 steps: 60-100% exact match over 9 seeds; of 16 for 153 steps: 80-95% on the 4 worst of those).
    # Answers are one word, so 16 tokens is plenty (a model that has not learned to stop costs 16 tokens per
    # record, not 40). Losses every 25 steps on 2 batches.
    "classroom": InstructConfig(epochs=3, lr=1e-3, weight_decay=0.1, batch_size=16, eval_every=25,
                                eval_batches=2, mask_instruction=True, grad_clip=1.0, sample_tokens=16,
                                answer_tokens=16),
}


def instruction_loss(model: nn.Module, batch, amp_dtype=None) -> torch.Tensor:
    """Next-token cross-entropy over the targets that are not -100 (padding, and the prompt when masked).

    Written as sum / count so that a batch whose targets are all -100 gives 0 instead of NaN.
    """
    inputs, targets = batch
    with torch.autocast(device_type=inputs.device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
        logits = model(inputs)  # (B, T, vocab)
    loss_sum = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), ignore_index=-100, reduction="sum")
    return loss_sum / (targets != -100).sum().clamp(min=1)


def answer(model: GPTModel, tokenizer, entry: dict, max_new_tokens: int = 40) -> str:
    """The model's greedy answer to one record (its ``output`` is not shown to the model)."""
    prompt = format_input(entry) + RESPONSE_HEADER
    encode = getattr(tokenizer, "encode_ordinary", tokenizer.encode)
    context_length = model.cfg.context_length
    prompt_ids = encode(prompt)[-(context_length - 1):]
    max_new_tokens = max(1, min(max_new_tokens, context_length - len(prompt_ids)))
    idx = torch.tensor(prompt_ids, device=model_device(model))
    new_ids = generate(model, idx, max_new_tokens, temperature=0.0, eos_id=tokenizer.eot_id)[len(prompt_ids):]
    new_ids = new_ids.tolist()
    if tokenizer.eot_id in new_ids:
        new_ids = new_ids[: new_ids.index(tokenizer.eot_id)]
    return extract_response(RESPONSE_HEADER + tokenizer.decode(new_ids))


@dataclass
class ExactMatch:
    score: float  # correct / total
    correct: int
    total: int
    rows: list[dict]  # {"instruction", "input", "expected", "answer", "correct"} per record


def exact_match_score(model: GPTModel, tokenizer, records: Sequence[dict], max_new_tokens: int = 40) -> ExactMatch:
    """Share of records whose greedy answer equals ``output`` exactly (after stripping spaces)."""
    rows = []
    for entry in records:
        got = answer(model, tokenizer, entry, max_new_tokens)
        rows.append({"instruction": entry["instruction"], "input": entry.get("input", ""),
                     "expected": entry["output"], "answer": got, "correct": got == entry["output"].strip()})
    correct = sum(row["correct"] for row in rows)
    return ExactMatch(score=correct / len(rows) if rows else float("nan"), correct=correct, total=len(rows),
                      rows=rows)


def finetune_instruct(model: GPTModel, tokenizer, records: Sequence[dict], config: InstructConfig,
                      stop: threading.Event | None = None, *, val_records: Sequence[dict] | None = None,
                      score_records: Sequence[dict] | None = None, score_tokens: int | None = None) -> Iterator[Event]:
    """Supervised fine-tuning on instruction records; yields events (see ``FinetuneRun``).

    Each epoch ends with a SampleEvent: the greedy answer to the first validation record (or training record).
    ``score_records``: held-out records answered before and after tuning (an ExactMatchEvent each), in at most
    ``score_tokens`` tokens (None: ``config.answer_tokens``).
    """
    score_tokens = config.answer_tokens if score_tokens is None else score_tokens
    context_length = model.cfg.context_length
    max_length = min(config.allowed_max_length or context_length, context_length)
    collate = functools.partial(instruction_collate, pad_id=tokenizer.eot_id, allowed_max_length=max_length,
                                mask_instruction=config.mask_instruction)
    train_set = InstructionDataset(records, tokenizer)
    val_set = InstructionDataset(val_records, tokenizer) if val_records else None
    set_trainable(model, config.trainable)
    torch.manual_seed(config.seed)
    run = FinetuneRun(model, train_set, val_set, collate, instruction_loss, config, stop)
    sample_entry = (val_records or records)[0]
    prompt = format_input(sample_entry)

    def score(when: str) -> Iterator[ExactMatchEvent]:
        if score_records:
            result = exact_match_score(model, tokenizer, score_records, score_tokens)
            yield ExactMatchEvent(when=when, correct=result.correct, total=result.total, rows=result.rows)

    def before() -> Iterator[Event]:
        too_long = sum(len(item.ids) >= max_length for item in train_set)
        if too_long:
            yield WarningEvent(f"{too_long} training records are longer than {max_length} tokens and are cut.")
        yield from score("before")

    def epoch_end(step: int, epoch: int) -> Iterator[Event]:
        text = answer(model, tokenizer, sample_entry, config.sample_tokens)
        yield SampleEvent(step=step, prompt=prompt, text=text)

    return run.events(epoch_end=epoch_end, before=before, after=lambda: score("after"))
