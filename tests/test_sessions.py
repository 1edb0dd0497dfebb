"""ui/sessions.py: a new session builds no block configs until one is read, and ends up where Gradio's own does."""

from __future__ import annotations

import gradio as gr
import pytest
from gradio.state_holder import SessionState

from ui import sessions


def small_demo() -> tuple[gr.Blocks, gr.Textbox, gr.Slider]:
    with gr.Blocks() as demo:
        text = gr.Textbox("The cat sat", label="text")
        slider = gr.Slider(1, 8, value=4, step=1, label="heads")
        plot = gr.Plot(label="plot")
        text.change(lambda t: None, text, plot)
    return demo, text, slider


@pytest.fixture
def gradio_sessions():
    """Gradio's own constructor for the test's first session, the light one after; light again at the end."""
    sessions.light_sessions(False)
    yield
    sessions.light_sessions(True)


def both(demo) -> tuple[SessionState, SessionState]:
    sessions.light_sessions(False)
    eager = SessionState(demo)
    sessions.light_sessions(True)
    return eager, SessionState(demo)


def test_a_new_session_builds_no_config_until_one_is_read(gradio_sessions):
    demo, text, _ = small_demo()
    _, light = both(demo)
    configs = light.config_values
    assert isinstance(configs, sessions.LazyConfigs)
    assert configs.built == 0
    assert len(configs) == len(demo.blocks)
    assert configs[text._id]["props"]["value"] == "The cat sat"
    assert configs.built == 1


def test_the_light_session_has_gradios_attributes_and_configs(gradio_sessions):
    demo, text, slider = small_demo()
    eager, light = both(demo)
    assert sorted(vars(light)) == sorted(vars(eager))
    for name in ("state_data", "_state_ttl", "is_closed", "STATE_TTL_WHEN_CLOSED"):
        assert getattr(light, name) == getattr(eager, name), name
    assert list(light.config_values) == list(eager.config_values)  # the same blocks, in the same order
    assert list(light.components) == list(eager.components)  # what a deep link saves


def test_updates_land_in_the_light_configs_as_in_gradios(gradio_sessions):
    demo, text, slider = small_demo()
    eager, light = both(demo)
    for state in (eager, light):
        state[slider._id] = gr.Slider(1, 12, value=6, step=1, label="heads")  # an update that makes a new block
        state._update_value_in_config(text._id, "A new sentence")  # an event's output value
    assert light.config_values.built == 1  # the text's own: the slider's came with its update
    assert light.config_values[slider._id] == eager.config_values[slider._id]
    assert light.config_values[text._id]["props"]["value"] == "A new sentence"
    assert list(light.components) == list(eager.components)
    assert light.config_values.built == len(demo.blocks) - 1


def test_the_lab_makes_light_sessions():
    import app

    demo = app.build_demo()
    state = SessionState(demo)
    assert isinstance(state.config_values, sessions.LazyConfigs)
    assert (state.config_values.built, len(state.config_values)) == (0, len(demo.blocks))
    assert len(demo.blocks) > 300  # why it matters: every block's config used to be built per session


def test_deleting_a_config_forgets_it(gradio_sessions):
    demo, text, slider = small_demo()
    _, light = both(demo)
    del light.config_values[text._id]
    light.config_values[slider._id]
    del light.config_values[slider._id]
    assert text._id not in light.config_values and slider._id not in light.config_values
    assert len(light.config_values) == len(demo.blocks) - 2
    with pytest.raises(KeyError):
        light.config_values[text._id]


def test_the_queue_rebuilds_its_monitoring_summary_every_thousand_events(monkeypatch):
    monkeypatch.delenv("GRADIO_ANALYTICS_CACHE_FREQUENCY", raising=False)
    monkeypatch.setenv("GRADIO_ANALYTICS_MAX_EVENTS", "300")  # a server's own setting stays
    sessions.light_queue()
    demo, _, _ = small_demo()
    demo.queue()
    assert demo._queue.ANAYLTICS_CACHE_FREQUENCY == sessions.ANALYTICS_EVERY == 1000  # (sic: Gradio's spelling)
    assert demo._queue.ANALYTICS_MAX_EVENTS == 300


def test_a_frozen_start_leaves_full_collections_short_and_still_collects_new_garbage():
    import gc
    import time
    import weakref

    class Node:
        pass

    keep = [{"n": i, "list": [i]} for i in range(200_000)]  # a started server's long-lived objects
    try:
        frozen = sessions.steady_gc()
        assert frozen >= 200_000
        start = time.perf_counter()
        gc.collect()
        print(f"a full collection after the freeze: {1000 * (time.perf_counter() - start):.1f} ms")
        node = Node()
        node.me = node  # a cycle made by a request after start-up: still collected
        gone = weakref.ref(node)
        del node
        gc.collect()
        assert gone() is None
        assert gc.get_freeze_count() >= 200_000  # a collection does not thaw the start-up objects ...
        assert not any(item is keep[0] for item in gc.get_objects(generation=2))  # ... nor walk them
    finally:
        gc.unfreeze()
        del keep
