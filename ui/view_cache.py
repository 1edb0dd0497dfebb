"""Finished views kept for a class: thirty students often look at the same sentence.

A ``ResultCache`` keeps the latest results of an expensive view (Inside GPT, the attention ladder) under a
count and byte budget, with their figures already turned into the JSON the browser gets (``plot_value``), so
the first student pays for the forward pass and the figures and the others get a dictionary look-up.
(Students' own things, such as runs and classifiers, live in ``ui.budgets`` stores instead: those are never
dropped while in use and their owners are told when they go.)
"""

from __future__ import annotations

import json
import threading
import weakref
from collections import OrderedDict

import numpy as np
from gradio.components.plot import PlotData


def plot_value(figure, config: dict | None = None) -> PlotData:
    """A figure as the JSON gr.Plot sends to the browser, made once (gr.Plot would run fig.to_json() on
    every request, even for a view that comes from the cache).

    ``config``: plotly's config for this plot (Gradio's plot passes the JSON's "config" to Plotly.react), such
    as ``ui.downloads.png_config(stem)`` to name the PNG the toolbar's camera button saves.

    >>> import plotly.graph_objects as go
    >>> json.loads(plot_value(go.Figure(), config={"displaylogo": False}).plot)["config"]
    {'displaylogo': False}
    """
    plot = figure.to_json()
    if config:
        plot = f'{plot[:-1]},"config":{json.dumps(config, separators=(",", ":"))}}}'  # plot ends with the "}"
    return PlotData(type="plotly", plot=plot)


def size_in_bytes(value) -> int:
    """About how much memory a cached result holds: its strings, arrays and plots, summed through containers.

    >>> size_in_bytes(["abc", np.zeros(10, dtype=np.uint8), {"k": "xy"}])
    15
    """
    if isinstance(value, str):
        return len(value)
    if isinstance(value, np.ndarray):
        return value.nbytes
    if isinstance(value, PlotData):
        return len(value.plot)
    if isinstance(value, dict):
        return sum(size_in_bytes(item) for item in value.values())
    if isinstance(value, (list, tuple)):
        return sum(size_in_bytes(item) for item in value)
    if hasattr(value, "__dataclass_fields__"):
        return sum(size_in_bytes(getattr(value, name)) for name in value.__dataclass_fields__)
    return 0  # numbers, None: negligible next to the figures


class ResultCache:
    """The latest results of an expensive view under a budget: at most `max_items` results and `max_bytes`
    bytes (as counted by size_in_bytes); the least recently used result goes first.

    A result can be tied to an `owner` (the model it was computed with): it is returned only while that same
    object is asked for again, so a model registered again under the same name is never answered from an old
    result. The cache holds its owners by weak reference, so it never keeps a model in memory.
    Safe to use from Gradio's worker threads.
    """

    def __init__(self, max_items: int, max_bytes: int):
        self.max_items, self.max_bytes = max_items, max_bytes
        self._results: OrderedDict = OrderedDict()  # key -> (value, size, owner reference); oldest first
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key, owner=None):
        """The value stored for `key` (and the same owner), or None."""
        with self._lock:
            entry = self._results.get(key)
            if entry is None:
                return None
            value, _, owner_ref = entry
            if owner_ref is not None and owner_ref() is not owner:
                return None  # computed with another model that had the same name
            self._results.move_to_end(key)  # now the most recently used
            return value

    def get_or_make(self, key, make, owner=None):
        """The value stored for `key` (and the same owner), else `make()`, kept for the next one who asks."""
        value = self.get(key, owner)
        if value is None:
            value = make()
            self.put(key, value, owner)
        return value

    def put(self, key, value, owner=None) -> None:
        """Keep `value`, then drop the least recently used results until the cache is within its budget."""
        size = size_in_bytes(value)
        if size > self.max_bytes:
            return  # larger than the whole budget: not worth keeping
        owner_ref = weakref.ref(owner) if owner is not None else None
        with self._lock:
            if key in self._results:
                self._bytes -= self._results.pop(key)[1]
            self._results[key] = (value, size, owner_ref)
            self._bytes += size
            while len(self._results) > self.max_items or self._bytes > self.max_bytes:
                _, (_, dropped_size, _) = self._results.popitem(last=False)
                self._bytes -= dropped_size

    def __len__(self) -> int:
        return len(self._results)

    @property
    def total_bytes(self) -> int:
        return self._bytes

    def clear(self) -> None:
        with self._lock:
            self._results.clear()
            self._bytes = 0

