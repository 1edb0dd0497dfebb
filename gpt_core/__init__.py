"""gpt_core: the GPT-2 engine of LLM Lab, written from scratch in PyTorch (no UI imports here)."""
