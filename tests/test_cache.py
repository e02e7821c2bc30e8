import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import torchspex
from tests import _cache_game
from torchspex.cache import EvaluationStore, fingerprint

N = 7


def run(path: Path, **kwargs) -> torchspex.Interactions:
    _cache_game.CALLS.clear()
    return torchspex.explain(
        _cache_game.game, N, method="exhaustive", batch_size=8, cache=path, **kwargs
    )


def stored(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT COUNT(*) FROM evaluations").fetchone()[0]


def test_exception_after_k_batches_then_resume(tmp_path: Path) -> None:
    reference = torchspex.explain(_cache_game.game, N, method="exhaustive")
    path = tmp_path / "evals.sqlite"
    original = _cache_game.game

    def failing(masks: torch.Tensor) -> torch.Tensor:
        if len(_cache_game.CALLS) == 5:
            raise RuntimeError("device lost")
        return original(masks)

    _cache_game.CALLS.clear()
    with pytest.raises(RuntimeError, match="device lost") as info:
        torchspex.explain(failing, N, method="exhaustive", batch_size=8, cache=path,
                          cache_key="k")
    assert "after 40 successful evaluations" in "".join(getattr(info.value, "__notes__", []))
    assert stored(path) == 40
    # same problem (same fingerprint: the failing wrapper is the same code), model fixed
    _cache_game.CALLS.clear()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(_cache_game, "CALLS", [0] * 10)  # never reaches the failure branch again
        result = torchspex.explain(failing, N, method="exhaustive", batch_size=8, cache=path,
                                   cache_key="k")
        calls = _cache_game.CALLS[10:]
    assert result.info["n_cached"] == 40
    assert result.info["n_model_evaluations"] == 128 - 40
    assert sum(calls) == 128 - 40 + 1  # the remaining masks + one stored mask re-checked
    assert len(calls) == (128 - 40 + 7) // 8  # no extra forward call for the check
    assert torch.equal(result.spectrum.coefficients, reference.spectrum.coefficients)


@pytest.mark.slow
def test_sigkill_then_resume(tmp_path: Path) -> None:
    path = tmp_path / "evals.sqlite"
    env = {**os.environ, "TORCHSPEX_TEST_SLEEP": "0.05", "PYTHONPATH": os.getcwd()}
    proc = subprocess.Popen([sys.executable, "-m", "tests._cache_game", str(path)], env=env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if path.exists():
            try:
                if stored(path) >= 48:
                    break
            except sqlite3.OperationalError:
                pass
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    done = stored(path)
    assert 48 <= done < 128
    result = run(path)
    assert result.info["n_model_evaluations"] == 128 - done
    assert sum(_cache_game.CALLS) == 128 - done + 1
    reference = torchspex.explain(_cache_game.game, N, method="exhaustive")
    assert torch.equal(result.spectrum.coefficients, reference.spectrum.coefficients)


def test_complete_cache_rechecks_one_stored_value(tmp_path: Path) -> None:
    path = tmp_path / "evals.sqlite"
    first = run(path)
    second = run(path)
    assert _cache_game.CALLS == [1]  # one call of one stored mask, nothing else evaluated
    assert second.info["n_cached"] == 128
    assert second.info["n_model_evaluations"] == 0
    assert torch.equal(first.spectrum.coefficients, second.spectrum.coefficients)


def test_model_changed_behind_a_complete_cache_is_detected(tmp_path: Path) -> None:
    # the value function reaches its model through a global, which the fingerprint cannot
    # see: the second call has the same key, every value is stored, and the model is not
    # what it was
    path = tmp_path / "evals.sqlite"
    model = torch.nn.Linear(3, 1)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0, 2.0, 3.0]]))
    _CHANGING["model"] = model
    first = torchspex.explain(_through_global, 3, method="exhaustive", cache=path)
    again = torchspex.explain(_through_global, 3, method="exhaustive", cache=path)
    assert torch.equal(first.spectrum.coefficients, again.spectrum.coefficients)
    with torch.no_grad():
        model.weight.mul_(10.0)
    with pytest.raises(ValueError, match="no longer reproduces"):
        torchspex.explain(_through_global, 3, method="exhaustive", cache=path)


_CHANGING: dict[str, torch.nn.Module] = {}


def _through_global(masks: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return _CHANGING["model"](masks.float())[:, 0]


def test_changed_problem_never_reuses_values(tmp_path: Path) -> None:
    path = tmp_path / "evals.sqlite"
    run(path)
    other = run(path, cache_key="model v2")
    assert other.info["n_cached"] == 0
    order = run(path, max_order=2)
    assert order.info["n_cached"] == 0


def test_changed_model_behind_same_key_is_detected(tmp_path: Path) -> None:
    path = tmp_path / "evals.sqlite"
    key = fingerprint("problem")
    store = EvaluationStore(path, key, 3)
    store.append([bytes([0b10100000])], torch.tensor([5.0]).numpy(), ())
    store.close()
    ev = torchspex.decoders.Evaluator(
        lambda m: m.double().sum(1), 3, store=EvaluationStore(path, key, 3)
    )
    with pytest.raises(ValueError, match="no longer reproduces"):
        ev(torch.tensor([[True, True, True]]))


def test_store_rejects_other_feature_count(tmp_path: Path) -> None:
    path = tmp_path / "evals.sqlite"
    EvaluationStore(path, "k", 3).close()
    with pytest.raises(ValueError, match="holds this problem with 3 features"):
        EvaluationStore(path, "k", 4)


def test_fingerprint_covers_modules_and_generators() -> None:
    a, b = torch.nn.Linear(2, 1), torch.nn.Linear(2, 1)
    assert fingerprint(a) != fingerprint(b)
    assert fingerprint(torch.Generator().manual_seed(1)) == fingerprint(
        torch.Generator().manual_seed(1)
    )
    assert fingerprint(torch.Generator().manual_seed(1)) != fingerprint(
        torch.Generator().manual_seed(2)
    )



def test_many_writers_open_one_new_store_at_once(tmp_path: Path) -> None:
    # Ranks (or resumed jobs) open the same new file at the same instant: registering the problem
    # must not race (two INSERTs of one fingerprint) and concurrent appends must wait, not fail.
    import threading

    import numpy as np

    path = str(tmp_path / "shared.sqlite")
    n_writers, errors = 8, []
    for trial in range(20):
        key = f"problem-{trial}"
        barrier = threading.Barrier(n_writers)

        def writer(rank: int, key: str, barrier: threading.Barrier) -> None:
            try:
                barrier.wait()
                store = EvaluationStore(path, key, n_features=5)
                keys = [bytes([rank, i]) for i in range(20)]
                store.append(keys, np.full((20, 2), 1.0 * rank), (2,))
                store.close()
            except Exception as exc:  # collected and asserted below
                errors.append(repr(exc))

        threads = [
            threading.Thread(target=writer, args=(r, key, barrier)) for r in range(n_writers)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        store = EvaluationStore(path, key, n_features=5)
        assert len(store) == 20 * n_writers and store.out_shape == (2,)
        store.close()


def test_fingerprint_covers_what_a_closure_captured() -> None:
    def make(model: torch.nn.Module, scale: float):
        return lambda x: scale * model(x)

    a, b = torch.nn.Linear(2, 1), torch.nn.Linear(2, 1)
    assert fingerprint(make(a, 1.0)) == fingerprint(make(a, 1.0))
    assert fingerprint(make(a, 1.0)) != fingerprint(make(b, 1.0))  # other weights
    assert fingerprint(make(a, 1.0)) != fingerprint(make(a, 2.0))  # other constant
    with torch.no_grad():
        a.weight += 1.0
    assert fingerprint(make(a, 1.0)) != fingerprint(make(b, 1.0))

    def recursive(n: int) -> int:  # captures itself: followed a bounded depth, no recursion
        return 0 if n == 0 else recursive(n - 1)

    assert fingerprint(recursive) == fingerprint(recursive)
