"""The model menu: the bundled Shakespeare model is the offline default and has learned something."""

import math

import torch

from ui import models


def test_bundled_model_is_the_default_and_loads_with_its_own_tokenizer():
    assert models.DEFAULT_CHOICE.startswith("Shakespeare GPT")
    loaded = models.load_choice(models.DEFAULT_CHOICE)
    assert loaded.tokenizer.vocab_size == 4096
    assert (loaded.cfg.vocab_size, loaded.cfg.n_layers, loaded.cfg.emb_dim, loaded.cfg.context_length) == (
        4096, 4, 192, 256)
    assert models.load_choice(models.DEFAULT_CHOICE) is loaded  # built once, shared


def test_bundled_model_predicts_shakespeare_far_better_than_chance():
    loaded = models.load_choice(models.DEFAULT_CHOICE)
    text = "ROMEO:\nBut soft, what light through yonder window breaks?\nIt is the east, and Juliet is the sun."
    ids = torch.tensor([loaded.tokenizer.encode(text)])
    with torch.no_grad():
        logits = loaded.model(ids[:, :-1])
    loss = torch.nn.functional.cross_entropy(logits[0], ids[0, 1:]).item()
    print(f"bundled model loss on a famous line: {loss:.3f} nats (uniform: {math.log(4096):.3f})")
    assert loss < 6.0 < math.log(4096)


def test_picking_a_model_redraws_inside_gpt_and_generate():
    import app

    demo = app.build_demo()
    picker = next(block for block in demo.blocks.values() if getattr(block, "label", "") == models.model_picker().label)
    redraws = {fn.fn.__name__ for fn in demo.fns.values() for target, event in fn.targets
               if target == picker._id and event == "change"}
    assert {"look_inside_page", "preview_next_token"} <= redraws  # the view and what the page shows
