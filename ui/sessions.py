"""A new browser session costs the server almost nothing (Gradio 6 plumbing, not part of the lesson).

Gradio 6 makes a ``SessionState`` for each session's first request, on the server's event loop, and its
constructor builds the configuration of every block in the app at once (``config_values``: 420 blocks here, about
50 ms of Python holding the event loop). Gradio reads that configuration only to make a "deep link" (a
``gr.DeepLinkButton``, which this app has none of) and updates single entries of it as events change a block.
Thirty students opening the page, or joining a class, froze every other request for 1.5 s or more
(bench/classroom.py: explore views at p50 1.3 s while a class joined, 0.06 s otherwise).

``light_sessions()`` makes that configuration lazy: a block's entry is built the first time it is read, from the
same block it would have been built from at the start (``LazyConfigs``), so a deep link gets the same entries and
a new session costs about a tenth of a millisecond.

``light_queue()`` does the same for the queue's monitoring summary: after every event Gradio 6.31 rebuilds it from
the last 10,000 events (a pandas DataFrame, grouped, percentiles: 3-9 ms holding the GIL, growing with the
number of events), for a dashboard (``/monitoring``) this app does not open. The summary is then rebuilt every
``ANALYTICS_EVERY`` events from the last ``ANALYTICS_EVENTS``, unless the server's own environment says otherwise
(``GRADIO_ANALYTICS_CACHE_FREQUENCY``, ``GRADIO_ANALYTICS_MAX_EVENTS``). On a class's server this was 4-8% of the
GIL, and why the same load cost 36% more CPU after eight minutes than in the first (bench/classroom.py).

``steady_gc()`` keeps Python's full garbage collections short. A started server holds millions of objects that live
as long as it does (torch, Gradio's blocks, the models, the first views); under a class's load Python walked all of
them in a full collection every 25-30 s, 290-350 ms holding the GIL each time, and every request in flight waited
(the periodic spikes of bench/classroom.py's p95, in every phase). ``gc.freeze()`` after start-up moves them out of
the collector's sight for good; what requests make is collected as before.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Iterator, MutableMapping
from copy import copy
from typing import Any

from gradio import state_holder


class LazyConfigs(MutableMapping):
    """A session's ``config_values``: block id -> that block's config, each built the first time it is read.

    >>> import gradio as gr
    >>> with gr.Blocks() as demo:
    ...     box = gr.Textbox("hello")
    >>> configs = LazyConfigs(copy(demo.default_config), [box._id])
    >>> len(configs), configs.built
    (1, 0)
    >>> configs[box._id]["props"]["value"], configs.built
    ('hello', 1)
    """

    def __init__(self, blocks_config, block_ids: list[int]):
        self.blocks_config = blocks_config  # the session's own BlocksConfig (its blocks change with updates)
        self.configs: dict[int, dict | None] = dict.fromkeys(block_ids)  # None: not built yet; Gradio's order
        self.built = 0

    def __getitem__(self, key: int) -> dict:
        config = self.configs[key]
        if config is None:
            block = self.blocks_config.blocks[key]
            self.configs[key] = config = self.blocks_config.config_for_block(key, [], block)
            self.built += 1
        return config

    def __setitem__(self, key: int, config: dict) -> None:
        self.configs[key] = config

    def __delitem__(self, key: int) -> None:
        del self.configs[key]

    def __contains__(self, key: object) -> bool:
        return key in self.configs

    def __iter__(self) -> Iterator[int]:
        keys = list(self.configs)
        for key in keys:  # a deep link reads them all: build the rest first
            self[key]
        return iter(keys)

    def __len__(self) -> int:
        return len(self.configs)


def _light_init(self, blocks) -> None:
    """``SessionState.__init__`` of Gradio 6.31 with ``config_values`` built lazily (tests/test_sessions.py
    checks it sets the same attributes, to the same values, as Gradio's own)."""
    self.blocks_config = copy(blocks.default_config)
    self.config_values = LazyConfigs(self.blocks_config,
                                     [key for key in self.blocks_config.blocks if key in blocks.blocks])
    self.state_data: dict[int, Any] = {}
    self._state_ttl = {}
    self.is_closed = False
    self.STATE_TTL_WHEN_CLOSED = 1 if os.getenv("GRADIO_IS_E2E_TEST", None) else 3600


GRADIO_INIT = state_holder.SessionState.__init__


def light_sessions(on: bool = True) -> None:
    """Make new sessions light (``on``), or give Gradio its own constructor back (``on=False``, for tests)."""
    state_holder.SessionState.__init__ = _light_init if on else GRADIO_INIT


ANALYTICS_EVERY = 1000  # events between two rebuilds of the queue's monitoring summary (Gradio: 1)
ANALYTICS_EVENTS = 2000  # events the summary covers (Gradio: 10,000)


def light_queue() -> None:
    """Rebuild the queue's monitoring summary every ANALYTICS_EVERY events, not after each one; takes effect for
    queues made from now on (``demo.queue()``), and leaves settings already in the environment alone."""
    os.environ.setdefault("GRADIO_ANALYTICS_CACHE_FREQUENCY", str(ANALYTICS_EVERY))
    os.environ.setdefault("GRADIO_ANALYTICS_MAX_EVENTS", str(ANALYTICS_EVENTS))


def steady_gc() -> int:
    """Collect once, then freeze every object the started server holds (``gc.freeze``), so later full collections
    only walk what requests made since. Call it once, when start-up is done. Returns the number frozen."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
