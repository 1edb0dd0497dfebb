"""Which batches a pretraining run reads, in which order.

- ``as_dataset``: token ids -> non-overlapping windows of ``context_length`` (a dataset is kept as it is);
- ``BatchStream``: the lab's order, fixed by a seed and resumable from (epoch, batch index), DDP-aware;
- ``BookBatches``: the book's chapter 5 order, a shuffling torch DataLoader that draws on torch's global
  random numbers (nothing is reseeded), and evaluation on the first batches of a fresh pass;
- ``fixed_batches``: the same first batches at every evaluation.

Both orders answer ``next_batch()`` with (inputs, targets), each (batch_size, context_length):

    >>> from gpt_core.data import SlidingWindowDataset
    >>> stream = BatchStream(SlidingWindowDataset(list(range(100)), 8, 8), batch_size=4, seed=123)
    >>> [tuple(t.shape) for t in stream.next_batch()]
    [(4, 8), (4, 8)]
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import torch
from torch.utils.data import DataLoader

from gpt_core.data import SlidingWindowDataset
from gpt_core.train_config import check


def as_dataset(data, context_length: int, split: str):
    """Token ids (list or 1-D tensor) -> non-overlapping windows; a dataset of (input, target) pairs is kept."""
    if data is None:
        return None
    is_ids = getattr(data, "ndim", None) == 1 or (  # a 1-D tensor or numpy array, or a list of ints
        isinstance(data, Sequence) and len(data) > 0 and isinstance(data[0], numbers.Integral)
    )
    if not is_ids:
        check(hasattr(data, "__getitem__") and hasattr(data, "__len__"),
               f"The {split} data must be token ids or a dataset of (input, target) pairs.")
        return data
    try:
        return SlidingWindowDataset(data, context_length=context_length, stride=context_length)
    except ValueError as err:
        raise ValueError(f"The {split} text is too short: {err}") from None


def collate(dataset, indices: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    pairs = [dataset[int(i)] for i in indices]
    inputs = torch.stack([torch.as_tensor(x) for x, _ in pairs])  # (B, T)
    targets = torch.stack([torch.as_tensor(y) for _, y in pairs])  # (B, T)
    return inputs, targets


class BatchOrder:
    """Where a run is in its data: ``epoch`` passes done and ``batch_index`` batches into the current one."""

    epoch: int
    batch_index: int
    batches_per_epoch: int

    @property
    def epochs_done(self) -> float:
        return self.epoch + self.batch_index / self.batches_per_epoch

    def position(self) -> dict:
        return {"epoch": self.epoch, "batch_index": self.batch_index}


class BatchStream(BatchOrder):
    """Batches in a seeded order that can be resumed from ``(epoch, batch_index)``.

    Epoch e visits the windows in the order ``randperm(n, seed + e)``. Under DDP each global batch holds
    ``batch_size * world_size`` windows and process ``rank`` takes its slice, so processes never share a window.
    """

    def __init__(self, dataset, batch_size: int, seed: int, rank: int = 0, world_size: int = 1,
                 epoch: int = 0, batch_index: int = 0, val_set=None, n_eval: int = 4):
        self.dataset, self.batch_size, self.seed = dataset, batch_size, seed
        self.rank, self.world_size = rank, world_size
        self.epoch, self.batch_index = epoch, batch_index
        self.batches_per_epoch = len(dataset) // (batch_size * world_size)
        if self.batches_per_epoch == 0:
            raise ValueError(
                f"The training data has {len(dataset)} sequences, fewer than one batch of "
                f"{batch_size * world_size}. Use a smaller batch size or context length, or a longer text."
            )
        self._order_epoch, self._order = None, None
        self._fixed = {"train": fixed_batches(dataset, batch_size, n_eval),
                       "val": fixed_batches(val_set, batch_size, n_eval)}

    def _epoch_order(self) -> torch.Tensor:
        if self._order_epoch != self.epoch:
            generator = torch.Generator().manual_seed(self.seed + self.epoch)
            self._order = torch.randperm(len(self.dataset), generator=generator)
            self._order_epoch = self.epoch
        return self._order

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.batch_index >= self.batches_per_epoch:
            self.epoch, self.batch_index = self.epoch + 1, 0
        start = (self.batch_index * self.world_size + self.rank) * self.batch_size
        indices = self._epoch_order()[start : start + self.batch_size]
        self.batch_index += 1
        return collate(self.dataset, indices.tolist())

    def eval_batches(self, split: str) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The same first batches of the split at every evaluation, so that the curves compare fairly."""
        return self._fixed[split]


def fixed_batches(dataset, batch_size: int, n_batches: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The first ``n_batches`` batches in order (the last may be smaller): the same ones at every evaluation."""
    if dataset is None:
        return []
    n_items = min(len(dataset), batch_size * n_batches)
    return [collate(dataset, range(start, min(start + batch_size, n_items)))
            for start in range(0, n_items, batch_size)]


class BookBatches(BatchOrder):
    """The book's ``train_model_simple`` batches: ``for input_batch, target_batch in train_loader`` per epoch.

    The training loader shuffles (``shuffle=True, drop_last=True``) and the validation loader does not, as
    ``create_dataloader_v1`` in chapter 2. Neither has its own random generator: every pass draws from
    torch's global one, so the order depends on everything drawn before (the model's init, dropout), exactly
    as in the book. Evaluation reads the first ``n_eval`` batches of a fresh pass (``calc_loss_loader``).
    """

    def __init__(self, train_set, val_set, batch_size: int, n_eval: int):
        self.train_loader = DataLoader(train_set, batch_size=batch_size, shuffle=True, drop_last=True)
        self.val_loader = DataLoader(val_set, batch_size=batch_size, shuffle=False) if val_set else None
        self.n_eval = n_eval
        self.batches_per_epoch = len(self.train_loader)
        if self.batches_per_epoch == 0:
            raise ValueError(f"The training data has {len(train_set)} sequences, fewer than one batch of "
                             f"{batch_size}. Use a smaller batch size or context length, or a longer text.")
        self.epoch, self.batch_index, self._this_epoch = 0, 0, None

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self._this_epoch is None:  # the first batch: the first pass begins
            self._this_epoch = iter(self.train_loader)
        elif self.batch_index >= self.batches_per_epoch:  # a new epoch: a new pass, a new shuffle
            self.epoch, self.batch_index, self._this_epoch = self.epoch + 1, 0, iter(self.train_loader)
        self.batch_index += 1
        return next(self._this_epoch)

    def eval_batches(self, split: str) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The first ``n_eval`` batches of a fresh pass over the split (the training split reshuffles)."""
        loader = self.train_loader if split == "train" else self.val_loader
        if loader is None:
            return []
        return [batch for _, batch in zip(range(self.n_eval), loader)]
