"""Sharding forward passes over torch.distributed ranks (2 CPU processes, gloo) and executors."""

from __future__ import annotations

import os
import socket
import sys
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import torchspex
from torchspex.decoders.base import Evaluator
from torchspex.distributed import (
    DistributedEvaluationError,
    check_executor,
    map_batches,
    resolve_process_group,
    shard_offsets,
)
from torchspex.fourier import SparseSpectrum

N = 24
WORLD = 2
GROUP_TIMEOUT_S = 20
SPAWN_DEADLINE_S = 150


def planted(n: int = N, n_outputs: int | None = None) -> SparseSpectrum:
    """A sparse function with terms of order 0..3."""
    support = torch.zeros(5, n, dtype=torch.bool)
    support[1, 0] = True
    support[2, [1, 2]] = True
    support[3, [3, 4, 5]] = True
    support[4, [7, 9]] = True
    coef = torch.tensor([1.0, 2.0, -1.0, 0.5, 0.25], dtype=torch.float64)
    if n_outputs is not None:
        coef = torch.stack([coef * (k + 1) for k in range(n_outputs)], dim=1)
    return SparseSpectrum.from_support(support, coef)


class Counting:
    """A value function that records how many masks each call got."""

    def __init__(self, truth: SparseSpectrum, fail_on_call: int | None = None) -> None:
        self.truth = truth
        self.fail_on_call = fail_on_call
        self.calls: list[int] = []

    @property
    def n_masks(self) -> int:
        return sum(self.calls)

    def __call__(self, masks: torch.Tensor) -> torch.Tensor:
        self.calls.append(int(masks.shape[0]))
        if self.fail_on_call is not None and len(self.calls) == self.fail_on_call:
            raise RuntimeError("model exploded on this rank")
        return self.truth.evaluate(masks)


def same(a: SparseSpectrum, b: SparseSpectrum) -> bool:
    return torch.equal(a.indices, b.indices) and torch.equal(a.coefficients, b.coefficients)


# ---------------------------------------------------------------------------- the 2-rank run
def _record(out: dict[str, Any], name: str, fn: Any) -> None:
    start = time.monotonic()
    try:
        out[name] = ("ok", fn())
    except Exception as err:
        out[name] = ("error", type(err).__name__, str(err), getattr(err, "rank", None))
    out[name + ".seconds"] = time.monotonic() - start


def _scenario_spex(rank: int) -> dict[str, Any]:
    f_alone, f_shared = Counting(planted()), Counting(planted())
    alone = torchspex.explain(f_alone, N, b=4, max_order=3, process_group=False)
    shared = torchspex.explain(f_shared, N, b=4, max_order=3)  # the default group
    return {
        "identical": same(alone.spectrum, shared.spectrum),
        "n_evaluations": (alone.n_evaluations, shared.n_evaluations),
        "alone_masks": f_alone.n_masks,
        "local_masks": f_shared.n_masks,
        "local_calls": f_shared.calls,
        "info": {k: shared.info[k] for k in ("world_size", "n_local_evaluations")},
        "n_model_evaluations": shared.info["n_model_evaluations"],
        "indices": shared.spectrum.indices,
        "coefficients": shared.spectrum.coefficients,
    }


def _scenario_uneven(rank: int) -> dict[str, Any]:
    """Rounds of 1, 3 and 5 masks with [m, 2] outputs, batch_size 2 and a thread pool."""
    truth = planted(10, n_outputs=2)
    codes = torch.tensor([5, 17, 300, 2, 1023, 64, 99, 511, 8])  # 9 distinct masks
    masks = (codes[:, None] >> torch.arange(10)) % 2 == 1
    rounds = [masks[:1], masks[1:4], masks[4:]]
    with ThreadPoolExecutor(2) as pool:
        ev = Evaluator(
            truth.evaluate, 10, batch_size=2, process_group=dist.group.WORLD, executor=pool
        )
        got = [ev(masks) for masks in rounds]
    return {
        "exact": all(torch.equal(v, truth.evaluate(m)) for v, m in zip(got, rounds)),
        "out_shape": ev.out_shape,
        "n_local": ev.n_local_evaluations,
        "n_model": ev.n_model_evaluations,
        "n_evaluations": ev.n_evaluations,
    }


def _scenario_failure(rank: int) -> Any:
    # rank 1 fails on its second call: SPEX's second round
    f = Counting(planted(), fail_on_call=2 if rank == 1 else None)
    return torchspex.explain(f, N, b=4, max_order=3).n_evaluations


def _scenario_mismatch(rank: int) -> Any:
    return torchspex.explain(Counting(planted()), N, b=4, max_order=3, generator=rank).n_evaluations


def _scenario_other_inputs(rank: int, shift: float) -> Any:
    """Each rank explains a different function (shifted by ``shift * rank``), same seed."""
    truth = planted()
    f = lambda masks: truth.evaluate(masks) + shift * rank  # noqa: E731
    return torchspex.explain(f, N, b=4, max_order=3).n_evaluations


def _scenario_other_inputs_same_baseline(rank: int) -> Any:
    """Each rank explains a different model input over one shared baseline: the ranks' values
    agree at the all-removed mask (a round's first) and differ wherever a feature is kept."""
    truth = planted()
    empty = truth.evaluate(torch.zeros(1, N, dtype=torch.bool))
    f = lambda masks: (truth.evaluate(masks) - empty) * (1 + rank) + empty  # noqa: E731
    return torchspex.explain(f, N, b=4, max_order=3).n_evaluations


def _scenario_cache(rank: int, path: Path) -> dict[str, Any]:
    first = torchspex.explain(Counting(planted(10)), 10, method="exhaustive", cache=path)
    f = Counting(planted(10))
    again = torchspex.explain(f, 10, method="exhaustive", cache=path)
    return {
        "first": first.info["n_model_evaluations"],
        "again": (again.info["n_model_evaluations"], f.n_masks),
        "identical": same(first.spectrum, again.spectrum),
    }


def _scenario_spectral_interaction(rank: int) -> dict[str, Any]:
    torch.manual_seed(0)  # same weights on every rank (the rank's own process)
    model = torch.nn.Sequential(torch.nn.Linear(12, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))
    model = model.double().eval()
    x = torch.randn(3, 12, dtype=torch.float64)
    calls: list[int] = []

    def forward(inputs: torch.Tensor) -> torch.Tensor:
        calls.append(int(inputs.shape[0]))
        return model(inputs)

    explainer = torchspex.SpectralInteraction(forward)
    kwargs: dict[str, Any] = {"target": 1, "method": "spex", "b": 3, "max_order": 2}
    alone = explainer.attribute(x, process_group=False, **kwargs)
    n_alone = sum(calls)
    calls.clear()
    shared = explainer.attribute(x, **kwargs)
    return {
        "identical": same(alone.spectrum, shared.spectrum),
        "rows": (n_alone, sum(calls)),
    }


class _TinyLM(torch.nn.Module):
    """A causal LM without transformers: running mean of embeddings, then a linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = torch.nn.Embedding(16, 8)
        self.head = torch.nn.Linear(8, 16)

    def forward(self, input_ids, attention_mask, position_ids=None):
        att = attention_mask.unsqueeze(-1).to(self.emb.weight.dtype)
        h = (self.emb(input_ids) * att).cumsum(1) / att.cumsum(1).clamp_min(1.0)
        return SimpleNamespace(logits=self.head(torch.tanh(h)))


def _scenario_llm(rank: int, path: Path) -> dict[str, Any]:
    """LLMSpectralInteraction over both ranks, each with its own cache file."""
    from torchspex.grouping.text import TextFeatures
    from torchspex.llm import LLMSpectralInteraction

    torch.manual_seed(0)  # same weights on every rank
    model = _TinyLM().double().eval()
    rows: list[int] = []
    model.register_forward_pre_hook(
        lambda m, args, kw: rows.append(kw["input_ids"].shape[0]), with_kwargs=True
    )
    feats = TextFeatures(
        text="Q: a b c d e",
        input_ids=torch.arange(1, 7),
        token_features=torch.tensor([-1, 0, 1, 2, 3, 4]),
        labels=list("abcde"),
        spans=[(3 + 2 * i, 4 + 2 * i) for i in range(5)],
    )
    explainer = LLMSpectralInteraction(model, SimpleNamespace(pad_token_id=0))
    kwargs: dict[str, Any] = {"target": [7, 8], "method": "exhaustive", "perturbations_per_eval": 4}
    alone = explainer.attribute(feats, process_group=False, **kwargs)
    n_alone = sum(rows)
    rows.clear()
    shared = explainer.attribute(feats, cache=path, **kwargs)
    n_shared = sum(rows)
    rows.clear()
    again = explainer.attribute(feats, cache=path, **kwargs)
    return {
        "identical": same(alone.spectrum, shared.spectrum) and same(alone.spectrum, again.spectrum),
        "rows": (n_alone, n_shared, sum(rows)),
        "world_size": shared.info["world_size"],
    }


def _scenario_crash(rank: int) -> Any:
    def f(masks: torch.Tensor) -> torch.Tensor:
        if rank == 1:
            os._exit(3)  # the process dies without a word
        return planted().evaluate(masks)

    return torchspex.explain(f, N, b=4, max_order=3).n_evaluations


def _worker(rank: int, port: int, folder: str, with_attr: bool) -> None:
    out: dict[str, Any] = {}
    target = Path(folder) / f"rank{rank}.pt"
    try:
        dist.init_process_group(
            "gloo",
            init_method=f"tcp://127.0.0.1:{port}",
            rank=rank,
            world_size=WORLD,
            timeout=timedelta(seconds=GROUP_TIMEOUT_S),
        )
        torch.set_num_threads(1)
        _record(out, "spex", lambda: _scenario_spex(rank))
        _record(out, "uneven", lambda: _scenario_uneven(rank))
        _record(out, "failure", lambda: _scenario_failure(rank))
        _record(out, "after_failure", lambda: _scenario_spex(rank)["identical"])
        _record(out, "mismatch", lambda: _scenario_mismatch(rank))
        _record(out, "other_inputs", lambda: _scenario_other_inputs(rank, 0.5))
        _record(out, "tiny_noise", lambda: _scenario_other_inputs(rank, 1e-9))
        _record(out, "same_baseline", lambda: _scenario_other_inputs_same_baseline(rank))
        # rank 1's cache path is a folder: it cannot open the store before the first round
        bad = Path(folder) / ("ok.db" if rank == 0 else "")
        _record(out, "cache_broken", lambda: _scenario_cache(rank, bad))
        _record(out, "after_cache_broken", lambda: _scenario_spex(rank)["identical"])
        _record(out, "cache_shared", lambda: _scenario_cache(rank, Path(folder) / "shared.db"))
        _record(out, "cache_own", lambda: _scenario_cache(rank, Path(folder) / f"own{rank}.db"))
        if with_attr:
            _record(out, "attr", lambda: _scenario_spectral_interaction(rank))
        _record(out, "llm", lambda: _scenario_llm(rank, Path(folder) / f"llm{rank}.db"))
        torch.save(out, target)
        _record(out, "crash", lambda: _scenario_crash(rank))
    except BaseException:
        out["worker"] = traceback.format_exc()
    torch.save(out, target)
    if "crash" in out:
        os._exit(0)  # the group is broken: skip destroy_process_group
    dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _has_attr_hook() -> bool:
    import inspect

    from torchspex.attr.spectral_interaction import SpectralInteraction

    return "process_group" in inspect.signature(SpectralInteraction.attribute).parameters


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    folder = tmp_path_factory.mktemp("ranks")
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    ctx = mp.spawn(
        _worker, args=(_free_port(), str(folder), _has_attr_hook()), nprocs=WORLD, join=False
    )
    deadline = time.monotonic() + SPAWN_DEADLINE_S
    try:
        while not all(not p.is_alive() for p in ctx.processes):
            if time.monotonic() > deadline:
                pytest.fail(f"the 2-rank run did not finish within {SPAWN_DEADLINE_S} s (a hang)")
            time.sleep(0.05)
    finally:
        for p in ctx.processes:
            if p.is_alive():
                p.kill()
    results = [torch.load(folder / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]
    for r, res in enumerate(results):
        assert "worker" not in res, f"rank {r} crashed:\n{res['worker']}"
    return results


def _ok(results: list[dict[str, Any]], name: str) -> list[Any]:
    for r, res in enumerate(results):
        assert res[name][0] == "ok", f"rank {r}, {name}: {res[name]}"
    return [res[name][1] for res in results]


@pytest.mark.slow
def test_two_ranks_give_the_single_process_spectrum_bit_for_bit(two_ranks) -> None:
    ranks = _ok(two_ranks, "spex")
    alone = Counting(planted())
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the ranks: the refit's rounding depends on the thread count
    try:
        reference = torchspex.explain(alone, N, b=4, max_order=3)  # this (parent) process
    finally:
        torch.set_num_threads(threads)
    for res in ranks:
        assert res["identical"]
        assert torch.equal(res["indices"], reference.spectrum.indices)
        assert torch.equal(res["coefficients"], reference.spectrum.coefficients)
        assert res["n_evaluations"] == (reference.n_evaluations,) * 2
        assert res["n_model_evaluations"] == alone.n_masks
    # each rank ran about half of the forward passes, and together the single run's plus four:
    # the two witness masks (the first round's emptiest and fullest) every rank evaluates once
    local = [res["local_masks"] for res in ranks]
    assert sum(local) == alone.n_masks + 2 * WORLD
    assert abs(local[0] - local[1]) <= len(alone.calls) + 1  # rounds split as evenly as they can
    assert [res["info"] for res in ranks] == [
        {"world_size": 2, "n_local_evaluations": n} for n in (local[0] - 2, local[1] - 2)
    ]
    # rank 0 takes the extra mask of an odd round (contiguous shards, first ranks larger)
    for rank, res in enumerate(ranks):
        expected = [shard_offsets(m, 2)[rank + 1] - shard_offsets(m, 2)[rank] for m in alone.calls]
        expected[0] += 2  # the witnesses, with the first batch
        # a rank whose shard of a round is empty (the one-mask round of the all-kept corner)
        # makes no call
        assert res["local_calls"] == [m for m in expected if m]


@pytest.mark.slow
def test_unequal_and_empty_shards_with_vector_outputs_and_an_executor(two_ranks) -> None:
    ranks = _ok(two_ranks, "uneven")
    # rounds of 1, 3, 5 masks: rank 0 evaluates 1 + 2 + 3, rank 1 evaluates 0 + 1 + 2 (and, in
    # the first round, both evaluate its one mask as the witness: rank 1's value function still
    # sees a 1-mask call); the witnesses are not counted
    assert [res["n_local"] for res in ranks] == [6, 3]
    for res in ranks:
        assert res["exact"] and res["out_shape"] == (2,)
        assert res["n_model"] == res["n_evaluations"] == 9


@pytest.mark.slow
def test_a_failure_on_one_rank_raises_on_every_rank(two_ranks) -> None:
    r0, r1 = (res["failure"] for res in two_ranks)
    assert r1[:2] == ("error", "RuntimeError") and "model exploded" in r1[2]
    assert r0[:2] == ("error", "DistributedEvaluationError") and r0[3] == 1
    assert "rank 1 of 2 failed" in r0[2] and "model exploded on this rank" in r0[2]
    assert all(res["failure.seconds"] < GROUP_TIMEOUT_S / 2 for res in two_ranks)  # no timeout
    # the group stays in step: the next explanation works on both ranks
    assert _ok(two_ranks, "after_failure") == [True, True]


@pytest.mark.slow
def test_ranks_asking_for_different_masks_raise_on_every_rank(two_ranks) -> None:
    for res in two_ranks:
        kind, name, message, _ = res["mismatch"]
        assert (kind, name) == ("error", "ValueError")
        assert "same generator seed" in message and "process_group=False" in message


@pytest.mark.slow
def test_ranks_explaining_different_inputs_raise_on_every_rank(two_ranks) -> None:
    # the same seed asks for the same masks, so only the values can tell: the witness does
    for res in two_ranks:
        kind, name, message, _ = res["other_inputs"]
        assert (kind, name) == ("error", "ValueError")
        assert "same model and inputs" in message and "process_group=False" in message
    # a difference at the level of batch-composition noise is not an error
    alone = _ok(two_ranks, "spex")[0]["n_evaluations"][0]  # the same design, explained alone
    assert _ok(two_ranks, "tiny_noise") == [alone, alone]


@pytest.mark.slow
def test_ranks_explaining_different_inputs_over_one_baseline_raise_on_every_rank(two_ranks):
    # the first round's first mask, all removed, is the shared baseline on both ranks (the only
    # witness once, so this mixed the ranks' values silently); the fullest mask tells them apart
    for res in two_ranks:
        kind, name, message, _ = res["same_baseline"]
        assert (kind, name) == ("error", "ValueError") and "same model and inputs" in message


@pytest.mark.slow
def test_a_cache_that_fails_to_open_on_one_rank_raises_on_every_rank(two_ranks) -> None:
    r0, r1 = (res["cache_broken"] for res in two_ranks)
    assert r1[:2] == ("error", "OperationalError")
    assert r0[:2] == ("error", "DistributedEvaluationError") and r0[3] == 1
    assert "rank 1 of 2 failed while opening cache" in r0[2] and "OperationalError" in r0[2]
    assert _ok(two_ranks, "after_cache_broken") == [True, True]  # the ranks stay in step


@pytest.mark.slow
@pytest.mark.parametrize("case", ["cache_shared", "cache_own"])
def test_cache_with_ranks_resumes_without_model_calls(two_ranks, case) -> None:
    for res in _ok(two_ranks, case):
        assert res["first"] == 1024  # all 2^10 masks, counted over both ranks
        assert res["again"] == (0, 0) and res["identical"]


@pytest.mark.slow
def test_spectral_interaction_shares_forward_passes(two_ranks) -> None:
    assert "attr" in two_ranks[0], "the ranks did not run the SpectralInteraction case"
    ranks = _ok(two_ranks, "attr")
    assert all(res["identical"] for res in ranks)
    alone = ranks[0]["rows"][0]
    shared = [res["rows"][1] for res in ranks]
    n_examples = 3  # each mask is one row per example; each rank also evaluates two witnesses
    assert sum(shared) == alone + 2 * WORLD * n_examples
    assert abs(shared[0] - shared[1]) <= alone // 10


@pytest.mark.slow
def test_llm_helper_shares_forward_passes_and_cache(two_ranks) -> None:
    ranks = _ok(two_ranks, "llm")
    assert all(res["identical"] and res["world_size"] == WORLD for res in ranks)
    alone = ranks[0]["rows"][0]
    assert alone == 32  # 2^5 prompts, one row each
    shared = [res["rows"][1] for res in ranks]
    assert sum(shared) == alone + 2 * WORLD and abs(shared[0] - shared[1]) <= 1  # + witnesses
    assert [res["rows"][2] for res in ranks] == [0, 0]  # second call: all from the cache


@pytest.mark.slow
def test_a_rank_that_dies_makes_the_others_raise_not_hang(two_ranks) -> None:
    kind, *rest = two_ranks[0]["crash"]
    assert kind == "error", rest
    assert two_ranks[0]["crash.seconds"] < GROUP_TIMEOUT_S + 5


# ---------------------------------------------------------------------------- one process
def test_shard_offsets_are_contiguous_and_balanced() -> None:
    for m in range(12):
        for world in (1, 2, 3, 5):
            off = shard_offsets(m, world)
            sizes = np.diff(off)
            assert off[0] == 0 and off[-1] == m and sizes.max() - sizes.min() <= 1
            assert list(sizes) == sorted(sizes, reverse=True)


def test_no_process_group_without_torch_distributed() -> None:
    assert not dist.is_initialized()
    assert resolve_process_group(None) is None
    assert resolve_process_group(False) is None
    with pytest.raises(TypeError, match=r"`process_group` must be a torch\.distributed"):
        resolve_process_group("nccl")
    with pytest.raises(TypeError, match="`process_group` must be"):
        torchspex.explain(Counting(planted(10)), 10, method="exhaustive", process_group=1)


def test_executor_must_have_submit_or_map() -> None:
    with pytest.raises(TypeError, match="`executor` must have a `submit` or `map` method"):
        check_executor(object())
    with pytest.raises(TypeError, match="`executor` must"):
        torchspex.explain(Counting(planted(10)), 10, method="exhaustive", executor=4)


class MapOnly:
    """An executor with only ``map`` that returns futures-like objects (as Dask's client)."""

    class Done:
        def __init__(self, value: Any) -> None:
            self.value = value

        def result(self) -> Any:
            return self.value

    def __init__(self) -> None:
        self.n_batches = 0

    def map(self, fn: Any, batches: list[Any]) -> list[Any]:
        self.n_batches += len(batches)
        return [self.Done(fn(b)) for b in batches]


@pytest.mark.parametrize("kind", ["threads", "map-only"])
def test_executor_gives_the_serial_result(kind: str) -> None:
    serial_f = Counting(planted())
    serial = torchspex.explain(serial_f, N, b=4, max_order=3, batch_size=64)
    f = Counting(planted())
    if kind == "threads":
        with ThreadPoolExecutor(3) as pool:
            result = torchspex.explain(f, N, b=4, max_order=3, batch_size=64, executor=pool)
    else:
        pool = MapOnly()
        result = torchspex.explain(f, N, b=4, max_order=3, batch_size=64, executor=pool)
        assert pool.n_batches == len(serial_f.calls)
    assert same(serial.spectrum, result.spectrum)
    assert sorted(f.calls) == sorted(serial_f.calls) and max(f.calls) == 64
    assert result.info["n_model_evaluations"] == serial.info["n_model_evaluations"]


def test_executor_numpy_masks_and_vector_outputs() -> None:
    truth = planted(10, n_outputs=3)

    def f(masks: np.ndarray) -> np.ndarray:
        assert isinstance(masks, np.ndarray)
        return truth.evaluate(torch.from_numpy(masks)).numpy()

    with ThreadPoolExecutor(2) as pool:
        ev = Evaluator(f, 10, mask_format="numpy", batch_size=5, executor=pool)
        masks = torch.rand(23, 10, generator=torch.Generator().manual_seed(1)) < 0.5
        values = ev(masks)
    assert torch.equal(values, truth.evaluate(masks))
    assert ev.n_calls == -(-ev.n_evaluations // 5)


def test_executor_error_names_the_batch_and_cancels_the_rest() -> None:
    started: list[int] = []

    def f(masks: torch.Tensor) -> torch.Tensor:
        started.append(int(masks.shape[0]))
        time.sleep(0.05)
        if len(started) == 1:
            raise RuntimeError("first batch failed")
        return masks.sum(dim=1).double()

    with ThreadPoolExecutor(1) as pool:
        ev = Evaluator(f, 4, batch_size=1, executor=pool)
        with pytest.raises(RuntimeError, match="first batch failed") as info:
            ev(torch.eye(4, dtype=torch.bool))
    if sys.version_info >= (3, 11):
        assert "on batch 0" in "".join(info.value.__notes__)
    assert len(started) < 4  # queued batches were cancelled
    assert ev.n_evaluations == 0 and ev.n_local_evaluations == 0


def test_executor_without_batch_size_warns() -> None:
    with ThreadPoolExecutor(1) as pool, pytest.warns(UserWarning, match="set `batch_size`"):
        torchspex.explain(Counting(planted(10)), 10, method="exhaustive", executor=pool)


def test_map_batches_serial_is_lazy() -> None:
    seen: list[int] = []
    it = map_batches(lambda b: seen.append(b) or b, [1, 2, 3])
    assert next(it) == 1 and seen == [1]
    it.close()
    assert seen == [1]


def test_distributed_evaluation_error_names_the_rank() -> None:
    err = DistributedEvaluationError("rank 1 of 2 failed", rank=1)
    assert isinstance(err, RuntimeError) and err.rank == 1
