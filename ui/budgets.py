"""What the server keeps for students, under budgets: finished runs, classifiers, instruction data, models.

Thirty students share one server, so every store of things made for them has a budget: how many items,
how many bytes (memory or disk). When a new item would go over it, the least recently used items that are
**finished and idle** make room; an item in use (a run still running or queued) is never evicted, even if
the store then goes over its budget for a while. Items unused for ``LLM_LAB_IDLE_MINUTES`` are evicted too,
and freed memory is handed back to the operating system, so a server's memory comes back down after a class.

The student whose item went is told so: ``get`` then raises a ValueError that says why, instead of a
confusing "not found".

Example::

    store = BudgetStore("classifier", max_items=2, max_bytes=10**9)
    store.put("browser-a", "a", classifier, size_bytes=10_000_000)
    store.get("browser-a", "a")   # the classifier; marks it as just used
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import gc
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gpt_core.files import human_size

log = logging.getLogger("llm_lab")


def env_number(name: str, default: float, whole: bool = False) -> float:
    """A setting from the environment (see the README's settings table), else its default; an int if ``whole``."""
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    kind = "a whole number" if whole else "a number"
    try:
        number = int(value) if whole else float(value)
    except ValueError as err:
        raise ValueError(f"The environment variable {name} must be {kind}, got {value!r}.") from err
    if number < 0:
        raise ValueError(f"The environment variable {name} must be 0 or more, got {value!r}.")
    return number


def idle_seconds() -> float:
    """How long a finished item may stay unused before it is evicted (LLM_LAB_IDLE_MINUTES, default 30)."""
    return env_number("LLM_LAB_IDLE_MINUTES", 30) * 60


@dataclass
class _Item:
    owner: str
    value: Any
    size_bytes: int
    busy: Callable[[], bool]
    last_used: float = field(default_factory=time.monotonic)


class BudgetStore:
    """Items keyed by (owner, key), within ``max_items`` and ``max_bytes``; thread-safe.

    ``on_evict(value)`` runs for every evicted item (delete its folder, say). ``what`` names the items in
    messages ("pretraining run", "classifier", ...).
    """

    def __init__(self, what: str, max_items: int, max_bytes: float, on_evict: Callable[[Any], None] | None = None):
        self.what = what
        self.max_items = max(1, int(max_items))
        self.max_bytes = max_bytes
        self.on_evict = on_evict
        self._items: OrderedDict[tuple[str, str], _Item] = OrderedDict()  # least recently used first
        self._gone: OrderedDict[tuple[str, str], str] = OrderedDict()  # why evicted items went (bounded)
        self._lock = threading.RLock()

    # ----- public API -------------------------------------------------------------------------------------
    def put(self, owner: str, key: str, value: Any, size_bytes: int = 0,
            busy: Callable[[], bool] = lambda: False) -> None:
        """Keep ``value`` for ``owner``; evict idle items beyond the budget (never this one)."""
        with self._lock:
            self._items[(owner, key)] = _Item(owner, value, int(size_bytes), busy)
            self._items.move_to_end((owner, key))
            self._gone.pop((owner, key), None)
            self._make_room(keep=(owner, key))

    def get(self, owner: str, key: str, missing: str | None = None) -> Any:
        """The item, marked as just used; a ValueError saying why when it is no longer here, or ``missing``
        when there never was one."""
        with self._lock:
            item = self._items.get((owner, key))
            if item is None:
                reason = self._gone.get((owner, key))
                raise ValueError(reason or missing or f"There is no {self.what} {key!r} for this page.")
            item.last_used = time.monotonic()
            self._items.move_to_end((owner, key))
            return item.value

    def find(self, owner: str, key: str) -> Any | None:
        """The item or None, without marking it used and without an error."""
        with self._lock:
            item = self._items.get((owner, key))
            return item.value if item else None

    def items_of(self, owner: str) -> list[Any]:
        """Every item this owner still has, least recently used first (none is marked as used)."""
        with self._lock:
            return [item.value for item in self._items.values() if item.owner == owner]

    def resize(self, owner: str, key: str, size_bytes: int) -> None:
        """Record an item's new size (a run folder grows while it trains), then keep the budget."""
        with self._lock:
            item = self._items.get((owner, key))
            if item is not None:
                item.size_bytes = int(size_bytes)
                self._make_room(keep=(owner, key))

    def evict_idle(self, max_idle_s: float) -> int:
        """Evict finished items unused for more than ``max_idle_s`` seconds; returns how many went."""
        now = time.monotonic()
        with self._lock:
            stale = [key for key, item in self._items.items()
                     if now - item.last_used > max_idle_s and not item.busy()]
            for key in stale:
                self._evict(key, f"Your {self.what} was cleared after {max_idle_s / 60:g} minutes without use "
                                 f"(this server frees memory and disk for the class). Make a new one.")
        return len(stale)

    def total_bytes(self) -> int:
        with self._lock:
            return sum(item.size_bytes for item in self._items.values())

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    # ----- internals --------------------------------------------------------------------------------------
    def _over_budget(self) -> bool:
        return len(self._items) > self.max_items or self.total_bytes() > self.max_bytes

    def _make_room(self, keep: tuple[str, str]) -> None:
        """Evict idle items, least recently used first, until the store is within its budget."""
        for key in list(self._items):
            if not self._over_budget():
                return
            if key == keep or self._items[key].busy():
                continue
            self._evict(key, f"Your {self.what} was cleared to make room for newer ones (this server keeps "
                             f"{self.max_items} {self.what}s and {human_size(self.max_bytes)} of them). "
                             f"Make a new one.")

    def _evict(self, key: tuple[str, str], reason: str) -> None:
        item = self._items.pop(key)
        self._gone[key] = reason
        while len(self._gone) > 10_000:
            self._gone.popitem(last=False)
        log.info("evicted %s %s of %s", self.what, key[1][:80], key[0])
        if self.on_evict:
            try:
                self.on_evict(item.value)
            except Exception:  # noqa: BLE001 - cleaning up must never break the request that made room
                log.exception("cleaning up an evicted %s failed", self.what)


# ---------------------------------------------------------------------------------------------------------------
# Every store of the server, swept for idle items by one background thread
# ---------------------------------------------------------------------------------------------------------------

_stores: list[BudgetStore] = []
_sweeper: threading.Thread | None = None
_sweeper_lock = threading.Lock()


def register_store(store: BudgetStore) -> BudgetStore:
    """Add a store to the idle sweep (started once, on the first store)."""
    global _sweeper
    _stores.append(store)
    with _sweeper_lock:
        if _sweeper is None:
            _sweeper = threading.Thread(target=_sweep_forever, name="llm-lab-idle-sweep", daemon=True)
            _sweeper.start()
    return store


def sweep_idle(max_idle_s: float | None = None) -> int:
    """Evict idle items from every store, then give freed memory back to the operating system."""
    max_idle_s = idle_seconds() if max_idle_s is None else max_idle_s
    evicted = sum(store.evict_idle(max_idle_s) for store in list(_stores))
    if evicted:
        release_memory()
    return evicted


def release_memory() -> None:
    """Collect garbage and ask glibc to return free heap pages (training keeps freed blocks for speed)."""
    gc.collect()
    name = ctypes.util.find_library("c")
    if name:
        with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to trim
            ctypes.CDLL(name).malloc_trim(0)


def _sweep_forever(period_s: float = 60.0) -> None:
    while True:
        time.sleep(period_s)
        try:
            sweep_idle()
        except Exception:  # noqa: BLE001 - the sweep must keep running
            log.exception("idle sweep failed")
