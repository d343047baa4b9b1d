"""``runtime.warm_worker``: when a warm interpreter may stand in for a fresh one."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from runtime import warm_worker


@pytest.fixture(autouse=True)
def _no_warm_left() -> Iterator[None]:
    yield
    warm_worker.discard()


def _started_env() -> dict[str, str]:
    return warm_worker.worker_env(os.environ, ())


def test_only_variables_read_later_may_differ() -> None:
    warm_worker.start()
    taken = warm_worker.take({**_started_env(), "APP_SETTING": "1", "NUCLIO_FUNCTION_NAME": "f"})
    assert taken is not None
    proc, sock = taken
    assert proc.poll() is None
    sock.close()  # end-of-file: the worker exits without settings
    assert proc.wait(10) == 1


@pytest.mark.parametrize("name", ["PYTHONPATH", "PYTHONHASHSEED", "LD_PRELOAD", "LC_ALL",
                                  "LANG", "TZ", "MALLOC_ARENA_MAX"])
def test_a_variable_read_at_start_refuses_the_warm_worker(name: str) -> None:
    warm_worker.start()
    proc = warm_worker._warm[0] if warm_worker._warm else None
    assert proc is not None
    assert warm_worker.take({**_started_env(), name: "changed"}) is None
    assert proc.poll() is not None  # stopped, not left running
    assert warm_worker.take(_started_env()) is None  # and not offered again


def test_turned_off_by_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NUCLIO_WARM_WORKER", "false")
    warm_worker.start()
    assert warm_worker.take(_started_env()) is None
