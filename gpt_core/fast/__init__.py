"""The fast layer: speed-ups applied from outside to the book layer, each naming the book function it replaces.

Used by default; ``LLM_LAB_PLAIN=1`` (see ``gpt_core.fast.settings``) runs the book layer alone.

The model's (``gpt_core.fast.apply``; each speed-up listed in ``SPEED_UPS``, tests/test_fast_equal.py):
    speed_up(model)                          in place, for inference and generation
    speed_up_for_training(model, device)     in place, for training (after ``model.to(device)``)
    is_fast(model)                           True once either was applied
"""

# The model's speed-ups (gpt_core.fast.apply) are imported on first use, so that importing the tokenizer's fast
# layer does not import the model too.
_MODEL_EXPORTS = ("SPEED_UPS", "SpeedUp", "is_fast", "speed_up", "speed_up_for_training")


def __getattr__(name: str):
    if name in _MODEL_EXPORTS:
        from gpt_core.fast import apply

        return getattr(apply, name)
    raise AttributeError(f"module 'gpt_core.fast' has no attribute {name!r}")
