"""Allocator tuning for training on CPU (moved here from gpt_core.device; it replaces no book function).

    >>> isinstance(keep_freed_memory(), bool)
    True
"""

from __future__ import annotations

import functools

# A freed block this large or smaller stays with the process for reuse (see keep_freed_memory).
KEEP_FREED_BLOCKS_UP_TO = 512 * 2**20


@functools.cache
def keep_freed_memory() -> bool:
    """Ask glibc's malloc to keep freed blocks of up to 512 MB for reuse instead of handing them back to Linux.

    Replaces nothing in the book layer: it changes where memory comes from, never a number.

    Every training step allocates the same large tensors again (the logits, their gradient, activations).
    By default glibc returns a freed block of more than 128 KB to the operating system at once, so the
    next step's block is fresh memory: Linux must fault in and zero every 4 KB page of it first. On a
    classroom model that is ~11,000 page faults per step, a third of the step's time (21 ms instead of
    34 ms per step on 2 cores); GPT-2 small's step faults in 440 MB (113,000 pages). Kept blocks are reused
    straight away.

    Process-wide and done once; the price is that up to 1 GB of freed memory can stay reserved. Threads
    other than the main one allocate from 64 MB heaps, so there larger blocks still come from Linux.
    Returns False where malloc is not glibc's (macOS, Windows, musl), which then keeps its own habits.
    """
    import ctypes
    import platform

    if platform.system() != "Linux":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3  # mallopt's parameter numbers, from <malloc.h>
        return bool(libc.mallopt(m_mmap_threshold, KEEP_FREED_BLOCKS_UP_TO)
                    and libc.mallopt(m_trim_threshold, 2 * KEEP_FREED_BLOCKS_UP_TO))
    except (OSError, AttributeError):
        return False
