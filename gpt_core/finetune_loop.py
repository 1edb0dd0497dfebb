"""The fine-tuning loop shared by chapters 6 (classification) and 7 (instructions).

One step, as in the book's ``train_classifier_simple`` and ``train_model_simple``::

    optimizer.zero_grad()
    loss = loss_fn(model, batch)      classification: cross-entropy at the last real token;
                                      instructions: next-token cross-entropy on the unmasked targets
    loss.backward()
    optimizer.step()                  AdamW at a constant learning rate

``FinetuneRun(...).events()`` yields the same events as pretraining (``gpt_core.events``): Start, Step, Eval
(and whatever the chapter adds at an epoch's end: accuracy, a sample), Done. The ``stop`` flag ends it after
the current step, so the server's job manager (``ui.jobs``) runs both kinds unchanged.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, fields

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from gpt_core.data import make_loader
from gpt_core.device import pick_device
from gpt_core.events import DoneEvent, EvalEvent, Event, StartEvent, StepEvent
from gpt_core.model import GPTModel, eval_mode
from gpt_core.train import make_optimizer
from gpt_core.train_config import AUTOCAST_CHOICES, OPTIMIZER_CHOICES, training_autocast_dtype

TRAINABLE_CHOICES = ("head", "last_block", "all")


@dataclass
class FinetuneConfig:
    """Settings shared by both kinds of fine-tuning. The learning rate is constant (as in the book)."""

    epochs: int = 5
    lr: float = 5e-5
    weight_decay: float = 0.1  # on weight matrices only (make_optimizer), not on biases and norms
    batch_size: int = 8
    eval_every: int = 50  # optimizer steps between two evaluations (0: only at the end of each epoch)
    eval_batches: int = 5  # evaluate on the same first N batches of each split
    max_steps: int | None = None  # stop earlier than `epochs` (a server's cap); None: run every epoch
    grad_clip: float | None = None  # clip the gradient norm (None: no clipping, as in the book)
    betas: tuple[float, float] = (0.9, 0.999)  # torch's AdamW defaults, as in the book
    trainable: str = "all"  # "head", "last_block" or "all" (see set_trainable)
    optimizer: str = "lab"  # "lab": no decay on biases and norms, fused; "book": AdamW(model.parameters())
    seed: int = 123
    device: str = "auto"
    autocast: str = "auto"  # "auto" (bf16 where fast), "bf16" or "off"
    log_every: int = 1

    def __post_init__(self):
        self.betas = tuple(self.betas)
        for name, minimum in (("epochs", 1), ("batch_size", 1), ("eval_batches", 1), ("log_every", 1),
                              ("eval_every", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ValueError(f"{name} must be a whole number of at least {minimum}, got {value!r}.")
        if self.max_steps is not None and (not isinstance(self.max_steps, int) or self.max_steps < 1):
            raise ValueError(f"max_steps must be a whole number of at least 1 (or None), got {self.max_steps!r}.")
        if not (isinstance(self.lr, int | float) and math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"The learning rate must be a number above 0, got {self.lr!r}.")
        if not (isinstance(self.weight_decay, int | float) and self.weight_decay >= 0):
            raise ValueError(f"weight_decay must be 0 or more, got {self.weight_decay!r}.")
        if self.trainable not in TRAINABLE_CHOICES:
            raise ValueError(f"trainable must be one of {', '.join(TRAINABLE_CHOICES)}; got {self.trainable!r}.")
        if self.optimizer not in OPTIMIZER_CHOICES:
            raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZER_CHOICES)}; got {self.optimizer!r}.")
        if self.autocast not in AUTOCAST_CHOICES:
            raise ValueError(f"autocast must be one of {', '.join(AUTOCAST_CHOICES)}; got {self.autocast!r}.")

    def to_dict(self) -> dict:
        return {f.name: list(v) if isinstance(v := getattr(self, f.name), tuple) else v for f in fields(self)}


def set_trainable(model: GPTModel, trainable: str = "last_block") -> int:
    """Freeze the model, then unfreeze: "head" (out_head only), "last_block" (+ trf_blocks[-1] and final_norm,
    the book's choice) or "all". Returns the number of trainable parameters."""
    if trainable not in TRAINABLE_CHOICES:
        raise ValueError(f"trainable must be one of {', '.join(TRAINABLE_CHOICES)}; got {trainable!r}.")
    parts = {"head": [model.out_head], "last_block": [model.out_head, model.trf_blocks[-1], model.final_norm],
             "all": [model]}[trainable]
    for param in model.parameters():
        param.requires_grad = False
    for part in parts:
        for param in part.parameters():
            param.requires_grad = True
    return sum(p.numel() for p in model.parameters() if p.requires_grad)

def model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


LossFn = Callable[[nn.Module, tuple, torch.dtype | None], torch.Tensor]
EpochEndFn = Callable[[int, int], Iterator[Event]]


@torch.no_grad()
def mean_loss(model: nn.Module, batches: Sequence[tuple], loss_fn: LossFn, amp_dtype=None) -> float | None:
    """Average loss over fixed batches with dropout off; None when there are none."""
    if not batches:
        return None
    device = model_device(model)
    with eval_mode(model):
        losses = [float(loss_fn(model, to_device(batch, device), amp_dtype)) for batch in batches]
    return sum(losses) / len(losses)


def to_device(batch: tuple, device: torch.device) -> tuple:
    return tuple(t.to(device) for t in batch)


def first_batches(loader: DataLoader | None, n: int) -> list[tuple]:
    if loader is None:
        return []
    return [batch for _, batch in zip(range(n), loader)]


class FinetuneRun:
    """One fine-tuning run: its device, optimizer, loaders and fixed eval batches. ``events()`` is the loop.

    One step: batch -> loss_fn -> backward -> (clip) -> AdamW step at a constant learning rate.
    Events: Start; Step every ``log_every`` steps; Eval every ``eval_every`` steps and at each epoch's end;
    whatever ``epoch_end`` yields after each epoch; Done (reason "max_steps", "stopped" or "nan").
    """

    def __init__(self, model: nn.Module, train_set: Dataset, val_set: Dataset | None, collate_fn: Callable,
                 loss_fn: LossFn, config: FinetuneConfig, stop: threading.Event | None = None):
        self.model, self.loss_fn, self.config = model, loss_fn, config
        self.stop = stop or threading.Event()
        self.device = pick_device(config.device)
        self.amp_dtype = training_autocast_dtype(self.device, config.autocast)
        self.model = model.to(self.device)
        if len(train_set) < config.batch_size:
            raise ValueError(f"There are {len(train_set)} training examples, fewer than one batch of "
                             f"{config.batch_size}. Use a smaller batch size or more data.")
        self.train_loader = make_loader(train_set, config.batch_size, shuffle=True, seed=config.seed,
                                        drop_last=True, collate_fn=collate_fn)
        self.train_eval_loader = make_loader(train_set, config.batch_size, shuffle=False, drop_last=False,
                                             collate_fn=collate_fn)
        self.val_loader = make_loader(val_set, config.batch_size, shuffle=False, drop_last=False,
                                      collate_fn=collate_fn) if val_set else None
        self.eval_train = first_batches(self.train_eval_loader, config.eval_batches)
        self.eval_val = first_batches(self.val_loader, config.eval_batches)
        total = config.epochs * len(self.train_loader)
        self.max_steps = min(total, config.max_steps) if config.max_steps else total
        self.optimizer = make_optimizer(model, config, self.device)
        self.step, self.tokens_seen = 0, 0

    @property
    def epoch(self) -> float:
        return round(self.step / len(self.train_loader), 4)

    def evaluate(self) -> EvalEvent:
        train_loss = mean_loss(self.model, self.eval_train, self.loss_fn, self.amp_dtype)
        val_loss = mean_loss(self.model, self.eval_val, self.loss_fn, self.amp_dtype)
        return EvalEvent(step=self.step, val_loss=val_loss, train_loss=train_loss,
                         val_perplexity=math.exp(min(val_loss, 700.0)) if val_loss is not None else None)

    def train_step(self, batch: tuple) -> tuple[float, float]:
        """One optimizer step on one batch. Returns (loss, gradient norm) measured before the update."""
        self.optimizer.zero_grad(set_to_none=True)  # forget the last step's gradients
        loss = self.loss_fn(self.model, to_device(batch, self.device), self.amp_dtype)
        loss.backward()  # the gradient of every trainable weight
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        grad_norm = nn.utils.clip_grad_norm_(trainable, self.config.grad_clip or math.inf)  # no clipping: inf
        loss_value, grad_norm = float(loss.detach()), float(grad_norm)
        if math.isfinite(loss_value) and math.isfinite(grad_norm):
            self.optimizer.step()  # AdamW moves every trainable weight a little
        return loss_value, grad_norm

    def events(self, epoch_end: EpochEndFn | None = None, before: Callable[[], Iterator[Event]] | None = None,
               after: Callable[[], Iterator[Event]] | None = None) -> Iterator[Event]:
        config = self.config
        n_trainable = sum(p.numel() for p in self.model.parameters() if p.requires_grad)
        yield StartEvent(device=str(self.device), autocast=str(self.amp_dtype).removeprefix("torch.")
                         if self.amp_dtype else None, n_params=n_trainable, tokens_per_step=0,
                         max_steps=self.max_steps, start_step=0)
        if before is not None:
            yield from before()
        self.model.train()
        start_time = time.perf_counter()
        reason = None
        for epoch in range(config.epochs):
            for batch in self.train_loader:
                loss, grad_norm = self.train_step(batch)
                if not (math.isfinite(loss) and math.isfinite(grad_norm)):
                    yield DoneEvent(reason="nan", step=self.step, checkpoint_path=None,
                                    message=f"The loss became NaN or infinite at step {self.step + 1}, so "
                                            "fine-tuning stopped. Try a smaller learning rate.")
                    return
                self.step += 1
                batch_tokens = batch[0].numel()
                self.tokens_seen += batch_tokens
                elapsed = time.perf_counter() - start_time
                if self.stop.is_set():
                    reason = "stopped"
                elif self.step >= self.max_steps:
                    reason = "max_steps"
                if self.step % config.log_every == 0 or self.step == 1 or reason:
                    s_per_step = elapsed / self.step
                    yield StepEvent(step=self.step, epoch=self.epoch, tokens_seen=self.tokens_seen,
                                    train_loss=loss, lr=config.lr, grad_norm=grad_norm,
                                    tokens_per_s=self.tokens_seen / max(elapsed, 1e-9), elapsed_s=elapsed,
                                    eta_s=(self.max_steps - self.step) * s_per_step, mfu=None)
                if config.eval_every and self.step % config.eval_every == 0:
                    yield self.evaluate()
                if reason:
                    break
            if not config.eval_every or self.step % config.eval_every != 0:
                yield self.evaluate()  # every epoch (and the run) ends with an evaluation
            if epoch_end is not None:
                yield from epoch_end(self.step, epoch + 1)
            if reason:
                break
        if after is not None:
            yield from after()
        reason = reason or "max_steps"
        message = (f"Stopped at step {self.step}, as asked." if reason == "stopped"
                   else f"Finished {self.step} steps ({self.epoch:g} epochs).")
        yield DoneEvent(reason=reason, message=message, step=self.step, checkpoint_path=None)
