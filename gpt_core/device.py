"""Which device and number format to run on: CUDA GPU, Apple MPS, or CPU."""

from __future__ import annotations

import functools

import torch


def pick_device(preference: str = "auto") -> torch.device:
    """'auto' picks cuda > mps > cpu; 'cuda', 'mps' or 'cpu' ask for one and fail clearly if it is absent."""
    available = {
        "cuda": torch.cuda.is_available(),
        "mps": getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available(),
        "cpu": True,
    }
    preference = (preference or "auto").lower()
    if preference == "auto":
        return torch.device(next(name for name in ("cuda", "mps", "cpu") if available[name]))
    kind = preference.split(":")[0]
    if kind not in available:
        raise ValueError(f"Unknown device {preference!r}; use 'auto', 'cuda', 'mps' or 'cpu'.")
    if not available[kind]:
        raise ValueError(f"This machine has no {kind.upper()} device; use 'auto' or 'cpu'.")
    return torch.device(preference)


@functools.cache
def _cpu_bf16_works() -> bool:
    """bf16 on CPU is only fast with AVX512 (bf16) / AMX; also check that a bf16 matmul runs at all."""
    capability = str(torch.backends.cpu.get_cpu_capability())
    if "AVX512" not in capability:
        return False
    try:
        a = torch.ones(8, 8, dtype=torch.bfloat16)
        return bool(torch.allclose((a @ a).float(), torch.full((8, 8), 8.0)))
    except RuntimeError:
        return False


def autocast_dtype(device) -> torch.dtype | None:
    """The dtype for torch.autocast on this device (bfloat16 where it is supported and fast), else None."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu":
        return torch.bfloat16 if _cpu_bf16_works() else None
    return None  # MPS: autocast support is partial; stay in float32 so losses are right


def describe_device(device) -> str:
    """One line for the UI, e.g. 'CPU (x86_64, AVX512, 2 threads)' or 'CUDA: NVIDIA H100 (80 GB)'."""
    device = torch.device(device)
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        return f"CUDA: {props.name} ({props.total_memory / 2**30:.0f} GB)"
    if device.type == "mps":
        return "Apple MPS (Metal GPU)"
    import platform

    capability = torch.backends.cpu.get_cpu_capability()
    return f"CPU ({platform.machine()}, {capability}, {torch.get_num_threads()} threads)"

