"""The generation worker process (ui.decode_worker) ends with the server that started it."""

from __future__ import annotations

import pytest

from ui import decode_worker


def test_the_worker_exits_once_its_server_is_gone(monkeypatch):
    parents = iter([4242, 4242, 1])  # the server, the server, then init: the server was killed
    naps, exits = [], []
    monkeypatch.setattr(decode_worker.os, "getppid", lambda: next(parents))
    monkeypatch.setattr(decode_worker.time, "sleep", naps.append)

    def exit_now(code):
        exits.append(code)
        raise SystemExit(code)

    monkeypatch.setattr(decode_worker.os, "_exit", exit_now)
    with pytest.raises(SystemExit):
        decode_worker._exit_with_parent(4242, check_s=5.0)
    assert naps == [5.0, 5.0] and exits == [0]
