"""The shared steps (torchspex/_pipeline.py): Problem and Run, alone and as explain runs them."""

from __future__ import annotations

import pytest
import torch

from torchspex import BudgetTooSmallError, Interactions, explain
from torchspex._pipeline import Problem, Run, check_generator, check_n_samples
from torchspex.cache import EvaluationStore
from torchspex.decoders.base import Evaluator, planned_evaluations
from torchspex.decoders.dispatch import decode

N = 12


def game(masks: torch.Tensor) -> torch.Tensor:
    x = masks.double()
    return x @ torch.arange(1.0, N + 1, dtype=torch.float64) + 2.0 * x[:, 0] * x[:, 1] * x[:, 4]


def problem(**overrides: object) -> Problem:
    settings = {"method": "spex", "index": "SII", "max_order": 2, "n_samples": 400,
                "generator": 3, "nonfinite": "raise", "decoder_options": {}}  # fmt: skip
    return Problem.check(N, **{**settings, **overrides})  # type: ignore[arg-type]


class Counting:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, masks: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return game(masks)


# ---------------------------------------------------------------------- validate
def test_check_gives_canonical_settings() -> None:
    p = problem(method="SPEX", index="k-sii", generator=None)
    assert (p.method, p.index, p.max_order, p.n_samples, p.nonfinite) == (
        "spex", "k-SII", 2, 400, "raise"
    )
    assert torch.equal(p.generator.get_state(), torch.Generator().manual_seed(0).get_state())
    seeded = problem(generator=7).generator
    assert torch.equal(seeded.get_state(), torch.Generator().manual_seed(7).get_state())
    own = torch.Generator().manual_seed(1)
    assert problem(generator=own).generator is own  # a generator is used as given


@pytest.mark.parametrize(
    ("overrides", "error", "match"),
    [
        ({"method": "lasso", "index": "nope"}, ValueError, "`method` must be one of"),  # first
        ({"index": "nope", "max_order": 0}, ValueError, "`index` must be one of"),
        ({"max_order": N + 1}, ValueError, "`max_order` must be between 1 and n_features=12"),
        ({"n_samples": 0}, ValueError, "`n_samples` must be >= 1"),
        ({"n_samples": 2.5}, TypeError, "`n_samples` must be an int"),
        ({"generator": True}, TypeError, "`generator` must be"),
        ({"nonfinite": "drop"}, ValueError, "nonfinite='drop'"),
    ],
)
def test_check_refuses_bad_settings_in_order(overrides: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        problem(**overrides)


def test_check_helpers() -> None:
    assert check_n_samples(None) is None and check_n_samples(5) == 5
    with pytest.raises(TypeError):
        check_n_samples(True)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="got str"):
        check_generator("0")  # type: ignore[arg-type]


def test_check_budget_refuses_without_evaluating_and_leaves_the_generator() -> None:
    p = problem(method="regression", n_samples=4)  # the regression needs n + 2 = 14
    state = p.generator.get_state()
    with pytest.raises(BudgetTooSmallError, match="n_samples >= 14") as info:
        p.check_budget(N)
    assert info.value.minimum == 14
    for method, enough in (("regression", 14), ("spex", 266), ("auto", 14)):
        problem(method=method, n_samples=enough).check_budget(N)  # stops at the first evaluation
    with pytest.raises(BudgetTooSmallError, match="n_samples >= 266"):
        problem(n_samples=265).check_budget(N)
    assert torch.equal(p.generator.get_state(), state)
    with pytest.raises(BudgetTooSmallError, match=r"2\^12"):
        problem(method="exhaustive", n_samples=4095).check_budget(N)
    problem(method="exhaustive", n_samples=4096).check_budget(N)


def test_order_caps_at_the_feature_count_and_replay_restarts_the_stream() -> None:
    p = problem(max_order=4)
    assert (p.order(N), p.order(3), problem(max_order=None).order(3)) == (4, 3, None)
    state = p.generator.get_state()
    a, b = p.replay(state), p.replay(state)
    assert torch.equal(torch.rand(5, generator=a), torch.rand(5, generator=b))
    assert torch.equal(p.generator.get_state(), state)


# ---------------------------------------------------------------------- plan, decode, assemble
def test_planned_is_the_decoders_bound() -> None:
    for method in ("regression", "exhaustive", "spex", "auto"):
        p = problem(method=method, n_samples=None)
        assert p.planned(N) == planned_evaluations(method, N, None, 2, {})


def test_decode_is_dispatch_decode_with_the_settings() -> None:
    p = problem()
    evaluator = Evaluator(game, N, n_samples=400)
    ours, _ = p.decode(evaluator, N, generator=p.replay(p.generator.get_state()))
    theirs, _ = decode("spex", Evaluator(game, N, n_samples=400), N, n_samples=400,
                       max_order=2, generator=torch.Generator().manual_seed(3), index="SII")
    assert torch.equal(ours.indices, theirs.indices)
    assert torch.equal(ours.coefficients, theirs.coefficients)
    assert 0 < evaluator.n_evaluations <= 400


def test_result_carries_index_order_and_method() -> None:
    p = problem(method="exhaustive", n_samples=None)
    spectrum, _ = p.decode(Evaluator(game, N), N)
    result = p.result(Interactions, spectrum, n_evaluations=4096, feature_names=None,
                      feature_ids=list("abcdefghijkl"), info={"x": 1})
    assert (result.index, result.max_order, result.method) == ("SII", 2, "exhaustive")
    assert result.feature_ids == tuple("abcdefghijkl") and result.info == {"x": 1}
    assert result.n_evaluations == 4096


# ---------------------------------------------------------------------- evaluate: Run
def test_run_finishes_the_bar_and_closes_stores(tmp_path) -> None:
    with Run() as run:
        store = run.open_store(tmp_path / "c.sqlite", "key", N, None)
        bar = run.show_progress("label", [10, 6])
        assert bar.bar.total == 16
        bar.update(5)
    assert isinstance(store, EvaluationStore) and run.stores == [store]
    assert bar.bar.total == 5  # finished at exactly 100%
    with pytest.raises(Exception, match="closed"):
        store.any_entry()
    with Run() as run:
        assert run.show_progress("label", [10, None]).bar.total is None  # one unknown plan


def test_run_closes_everything_when_a_step_fails(tmp_path) -> None:
    run = Run()

    def failing_step() -> None:
        with run:
            run.open_store(tmp_path / "c.sqlite", "key", N, None)
            run.show_progress("label", [10]).update(3)
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        failing_step()
    store, bar = run.stores[0], run.progress
    assert bar is not None
    assert bar.bar.total == 10  # closed as it stood, not finished
    with pytest.raises(Exception, match="closed"):
        store.any_entry()


# ---------------------------------------------------------------------- explain runs the steps
def test_explain_is_the_steps_in_sequence(tmp_path) -> None:
    f = Counting()
    result = explain(f, N, method="spex", index="SII", max_order=2, n_samples=400,
                     generator=3, cache=tmp_path / "c.sqlite")
    p = problem()
    evaluator = Evaluator(game, N, n_samples=p.n_samples)
    spectrum, _ = p.decode(evaluator, N)
    assert torch.equal(result.spectrum.coefficients, spectrum.prune(atol=0.0).coefficients)
    assert result.n_evaluations == evaluator.n_evaluations
    assert result.info["n_model_evaluations"] == evaluator.n_evaluations
    assert result.info["n_cached"] == 0
    again = explain(Counting(), N, method="spex", index="SII", max_order=2,
                    n_samples=400, generator=3, cache=tmp_path / "c.sqlite")
    assert again.info["n_cached"] == evaluator.n_evaluations  # the store was written and closed
    assert torch.equal(again.spectrum.coefficients, result.spectrum.coefficients)


def test_generator_seeds_as_numpy_ints_and_out_of_range() -> None:
    import numpy as np

    from torchspex._pipeline import check_generator

    a, b = check_generator(np.int64(7)), check_generator(7)
    assert torch.equal(torch.rand(3, generator=a), torch.rand(3, generator=b))
    with pytest.raises(ValueError, match=r"-2\*\*63\.\.2\*\*64 - 1"):
        check_generator(2**70)  # was torch's "Overflow when unpacking long long"
