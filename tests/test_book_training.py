"""Chapter 5's printed training losses, reproduced by the lab's loop with the book's recipe.

``python -m gpt_core.train --recipe book-ch5`` is the book's ``train_model_simple`` run: GPT_CONFIG_124M at
context 256 after ``torch.manual_seed(123)``, "The Verdict" split 90/10 by characters, batches of 2 from a
shuffling DataLoader on torch's global random numbers, ``AdamW(model.parameters(), lr=0.0004,
weight_decay=0.1)``, no schedule, no clipping, evaluation on 5 batches after steps 1, 6, ... and the book layer
alone. The book prints (facts from the book; test written here):

    Ep 1 (Step 000000): Train loss 9.781, Val loss 9.933
    Ep 1 (Step 000005): Train loss 8.111, Val loss 8.339

Six of the run's 90 steps are trained here (about half a minute on 2 CPU cores).
"""

from __future__ import annotations

import re

import pytest

from gpt_core import train_cli
from gpt_core.fast.settings import plain_mode, use_plain

BOOK_LOSSES = [(1, 9.781, 9.933), (6, 8.111, 8.339)]  # (step, train loss, val loss) as printed in chapter 5


@pytest.fixture
def restore_plain_setting():
    with use_plain(plain_mode()):  # the recipe switches the book layer on for the process; undo it afterwards
        yield


@pytest.mark.slow
def test_book_recipe_prints_the_books_chapter_5_losses(capsys, restore_plain_setting):
    assert train_cli.main(["--recipe", "book-ch5", "--max-steps", "6", "--device", "cpu", "--no-save"]) == 0
    printed = capsys.readouterr().out
    losses = [(int(step), float(train), float(val)) for step, train, val in
              re.findall(r"step (\d+): train loss ([\d.]+), val loss ([\d.]+)", printed)]
    print(printed)
    largest = max(max(abs(a[1] - b[1]), abs(a[2] - b[2])) for a, b in zip(losses, BOOK_LOSSES))
    print(f"largest difference from the printed losses: {largest:.4f}")
    assert [step for step, _, _ in losses] == [1, 6]
    assert largest < 0.0015  # the book prints three decimals
