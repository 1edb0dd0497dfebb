"""Which device and number format to run on: CUDA GPU, Apple MPS, or CPU; its name in words; a CPU's peak."""

from __future__ import annotations

import functools
import threading
import time

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
        # a T4 (compute capability 7.5) "supports" bfloat16 only by emulation, slower than float32
        return torch.bfloat16 if torch.cuda.is_bf16_supported(including_emulation=False) else torch.float16
    if device.type == "cpu":
        return torch.bfloat16 if _cpu_bf16_works() else None
    return None  # MPS: autocast support is partial; stay in float32 so losses are right


def device_in_words(device, threads: int | None = None) -> str:
    """The device as a student would name it: 'CPU, 2 threads', 'NVIDIA H100', 'Apple GPU (MPS)'.

    ``threads``: the CPU threads a run uses (default: torch's current setting).

    >>> device_in_words("cpu", threads=2), device_in_words("cpu", threads=1)
    ('CPU, 2 threads', 'CPU, 1 thread')
    """
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "mps":
        return "Apple GPU (MPS)"
    threads = threads or torch.get_num_threads()
    return f"CPU, {threads} thread{'s' if threads != 1 else ''}"


def describe_device(device) -> str:
    """One detailed line for logs, e.g. 'CPU (x86_64, AVX512, 2 threads)' or 'CUDA: NVIDIA H100 (80 GB)'."""
    device = torch.device(device)
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        return f"CUDA: {props.name} ({props.total_memory / 2**30:.0f} GB)"
    if device.type == "mps":
        return "Apple MPS (Metal GPU)"
    import platform

    capability = torch.backends.cpu.get_cpu_capability()
    return f"CPU ({platform.machine()}, {capability}, {torch.get_num_threads()} threads)"



_peak_lock = threading.Lock()


@functools.cache
def cpu_peak_flops(threads: int, dtype: torch.dtype = torch.float32, size: int = 256, repeats: int = 30) -> float:
    """What this CPU's matrix multiply reaches, in FLOP/s, measured: the yardstick of a CPU run's MFU.

    A GPU's peak is printed on its data sheet; a CPU's depends on its vector units, its clock and the
    threads a run gets, so the lab measures it once (per ``threads`` and ``dtype``; cached) with the
    operation that dominates training: a dense (size x size) @ (size x size) product, 2 * size**3 FLOPs.
    The fastest of ``repeats`` products counts. A 256-wide product takes well under a millisecond, so on
    a machine busy with other programs most repeats still run uninterrupted, and the fastest one reads
    the CPU's own speed (a bigger product would be interrupted and read the other programs' load).
    ``dtype``: the one a run's matmuls use (bfloat16 under CPU autocast; ``autocast_dtype``).
    torch's thread setting is process-wide: it is set to ``threads`` for the measurement, then restored.

    >>> cpu_peak_flops(1) > 1e9   # any CPU of the last twenty years does a GFLOP/s
    True
    """
    a, b = torch.randn(size, size).to(dtype), torch.randn(size, size).to(dtype)
    with _peak_lock:
        before = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            a @ b  # the first product allocates and warms the caches
            fastest = float("inf")
            for _ in range(repeats):
                start = time.perf_counter()
                a @ b
                fastest = min(fastest, time.perf_counter() - start)
        finally:
            torch.set_num_threads(before)
    return 2 * size**3 / max(fastest, 1e-9)
