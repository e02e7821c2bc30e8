"""torchspex.optimize: MILP and brute force against an independent enumeration of all masks."""

from __future__ import annotations

import itertools

import pytest
import torch

from torchspex import Interactions, SparseSpectrum
from torchspex.fourier import fourier_to_moebius
from torchspex.optimize import optimize


def random_spectrum(n: int, n_terms: int, max_order: int, seed: int) -> SparseSpectrum:
    g = torch.Generator().manual_seed(seed)
    sets = [()]
    for _ in range(n_terms):
        k = int(torch.randint(1, max_order + 1, (1,), generator=g))
        sets.append(tuple(torch.randperm(n, generator=g)[:k].tolist()))
    coef = torch.randn(len(sets), generator=g, dtype=torch.float64)
    return SparseSpectrum.from_sets(sets, coef, n)


def all_masks(n: int) -> torch.Tensor:
    return torch.tensor(list(itertools.product([False, True], repeat=n)))


def enumerate_best(spec, maximize, lo=0, hi=None, fixed=None):
    """Oracle: evaluate every mask with SparseSpectrum.evaluate (not the FWHT path)."""
    n = spec.n_features
    masks = all_masks(n)
    values = spec.evaluate(masks)
    count = masks.sum(dim=1)
    ok = (count >= lo) & (count <= (n if hi is None else hi))
    for f, kept in (fixed or {}).items():
        ok &= masks[:, f] == kept
    values = values[ok]
    return float(values.max() if maximize else values.min())


CONSTRAINTS = [
    {},
    {"n_kept": 3},
    {"max_kept": 2},
    {"min_kept": 7},
    {"min_kept": 2, "max_kept": 4},
    {"fixed": {0: True, 3: False}},
    {"n_kept": 4, "fixed": {1: False, 5: True}},
]


def _bounds(kw, n):
    lo = max(kw.get("n_kept", 0), kw.get("min_kept", 0))
    hi = min(kw.get("n_kept", n), kw.get("max_kept", n))
    return lo, hi


@pytest.mark.parametrize("maximize", [True, False])
@pytest.mark.parametrize("kw", CONSTRAINTS)
@pytest.mark.parametrize("method", ["milp", "brute_force"])
def test_matches_enumeration(method, kw, maximize):
    n = 9
    for seed in range(3):
        spec = random_spectrum(n, 25, 4, seed)
        best = optimize(spec, maximize, method=method, **kw)
        lo, hi = _bounds(kw, n)
        expected = enumerate_best(spec, maximize, lo, hi, kw.get("fixed"))
        assert best.value == pytest.approx(expected, abs=1e-9)
        assert best.optimal and best.method == method
        kept = int(best.mask.sum())
        assert lo <= kept <= hi
        for f, state in kw.get("fixed", {}).items():
            assert bool(best.mask[f]) == state
        assert best.value == float(spec.evaluate(best.mask[None])[0])


@pytest.mark.slow
@pytest.mark.parametrize("maximize", [True, False])
def test_milp_equals_brute_force_n16(maximize):
    for seed, kw in enumerate([{}, {"n_kept": 13}, {"max_kept": 5, "fixed": {2: True}}]):
        spec = random_spectrum(16, 60, 4, seed)
        exact = optimize(spec, maximize, method="brute_force", **kw)
        milp = optimize(spec, maximize, method="milp", **kw)
        assert milp.value == pytest.approx(exact.value, abs=1e-9)


def test_high_order_terms_use_integer_parity():
    # orders 7 and 8 exceed HULL_MAX_ORDER and take the x(K) = 2w + z rows
    spec = SparseSpectrum.from_sets(
        [(), (0, 1, 2, 3, 4, 5, 6), (1, 2, 3, 4, 5, 6, 7, 8), (0,), (8,), (2, 9)],
        [0.3, 1.0, -0.7, 0.4, -0.2, 0.5], 10,
    )
    for maximize in (True, False):
        for kw in ({}, {"n_kept": 5}):
            got = optimize(spec, maximize, method="milp", **kw).value
            lo, hi = _bounds(kw, 10)
            assert got == pytest.approx(enumerate_best(spec, maximize, lo, hi), abs=1e-9)


def test_moebius_input_and_true_value():
    spec = random_spectrum(8, 15, 3, 0)
    moebius = fourier_to_moebius(spec)
    calls = []

    def value_function(masks):
        calls.append(masks.shape)
        return spec.evaluate(masks) + 1.0

    best = optimize(moebius, n_kept=4, value_function=value_function)
    assert best.value == pytest.approx(enumerate_best(spec, True, 4, 4), abs=1e-9)
    assert best.true_value == pytest.approx(best.value + 1.0, abs=1e-12)
    assert calls == [torch.Size([1, 8])]
    assert best.kept == tuple(torch.nonzero(best.mask).squeeze(1).tolist())
    assert len(best.kept) + len(best.removed) == 8


def test_interactions_optimize_uses_feature_ids():
    spec = SparseSpectrum.from_sets([(), (0,), (1, 2), (3,)], [0.0, -1.0, -2.0, 0.5], 4)
    result = Interactions(spec, feature_ids=["a", "b", "c", "d"])
    # f = -(-1)^a - 2 (-1)^(b+c) + 0.5 (-1)^d: max keeps a, exactly one of b/c, removes d
    best = result.optimize(maximize=True, fixed={"b": True})
    assert best.kept == ("a", "b") and best.removed == ("c", "d")
    assert best.value == pytest.approx(3.5)
    with pytest.raises(KeyError, match="'z'"):
        result.optimize(fixed={"z": True})


def test_default_method_switches_on_size():
    assert optimize(random_spectrum(6, 5, 2, 0)).method == "brute_force"
    assert optimize(random_spectrum(20, 30, 3, 0)).method == "milp"


def test_empty_spectrum_and_trivial_constraints():
    spec = SparseSpectrum.from_sets([()], [2.0], 5)
    best = optimize(spec, n_kept=5, method="milp")
    assert best.mask.all() and best.value == 2.0


def test_infeasible_and_invalid_arguments():
    spec = random_spectrum(6, 5, 2, 0)
    with pytest.raises(ValueError, match="no mask satisfies"):
        optimize(spec, max_kept=1, fixed={0: True, 1: True})
    with pytest.raises(ValueError, match="no mask satisfies"):
        optimize(spec, min_kept=4, max_kept=3)
    with pytest.raises(ValueError, match="no mask satisfies"):
        optimize(spec, n_kept=2, min_kept=3)
    with pytest.raises(ValueError, match="`n_kept` must be between 0 and n_features=6"):
        optimize(spec, n_kept=7)
    with pytest.raises(TypeError, match="`max_kept` must be an int"):
        optimize(spec, max_kept=2.0)
    with pytest.raises(ValueError, match="`fixed` keys"):
        optimize(spec, fixed={6: True})
    with pytest.raises(TypeError, match="`fixed` values must be bools"):
        optimize(spec, fixed={0: 1})
    with pytest.raises(ValueError, match="`method` must be one of"):
        optimize(spec, method="gurobi")
    with pytest.raises(ValueError, match="brute_force"):
        optimize(random_spectrum(23, 3, 2, 0), method="brute_force")
    multi = spec.replace(coefficients=torch.stack([spec.coefficients] * 2, dim=1))
    with pytest.raises(ValueError, match=r"select\(0\)"):
        optimize(multi)
    with pytest.raises(ValueError, match="one value per mask"):
        optimize(spec, value_function=lambda m: torch.zeros(m.shape[0], 2))


def test_time_limit_stop_warns_and_reports_not_optimal(monkeypatch):
    import scipy.optimize

    real = scipy.optimize.milp
    seen = {}

    def stopped_early(*args, **kwargs):
        seen.update(kwargs["options"])
        res = real(*args, **kwargs)
        res.status, res.message = 1, "Time limit reached."
        return res

    monkeypatch.setattr(scipy.optimize, "milp", stopped_early)
    spec = random_spectrum(20, 30, 3, 0)
    with pytest.warns(UserWarning, match="before proving optimality") as caught:
        best = optimize(spec, method="milp", time_limit=5.0)
    assert not best.optimal and seen["time_limit"] == 5.0
    assert caught[0].filename == __file__  # the warning names the caller's line
    assert best.value == float(spec.evaluate(best.mask[None])[0])
    with pytest.raises(ValueError, match="`time_limit` must be a positive"):
        optimize(spec, time_limit=0)


def test_milp_optimum_with_high_order_terms_under_a_count():
    # HiGHS's presolve returned (1, 2, 4), value 1.6484, as proven optimal (found by a review's
    # random search, 1 case in ~6,500); the optimum is (2, 3, 4), 1.6542
    sets = [(0, 1, 2, 3, 4, 5, 6, 7), (0, 2, 3, 4, 5, 6, 7), (2, 5), (0,), (5, 6, 7), ()]
    coefs = [0.8565424820162186 + 0.1562080030228549, -0.00289117987123094,
             -2.0876853319435575, 1.2891864338147236, 0.33642029733774, -1.0492173935854077]
    spec = SparseSpectrum.from_sets(sets, coefs, 8)
    for n_kept in range(9):
        milp = optimize(spec, n_kept=n_kept, method="milp")
        brute = optimize(spec, n_kept=n_kept, method="brute_force")
        assert milp.optimal
        assert milp.value == pytest.approx(brute.value, abs=1e-12), n_kept


def test_milp_edge_inputs():
    # coefficients that require grad (a spectrum built in a training loop) failed in the MILP
    # only; no feature at all raised SciPy's "`c` must have at least one element"; a bool
    # time limit was read as 1 second
    spec = SparseSpectrum.from_sets([(0, 1), (2,), ()], [0.5, -1.0, 0.25], 3)
    grad = SparseSpectrum(spec.indices, spec.coefficients.clone().requires_grad_(), 3)
    assert optimize(grad, method="milp").value == pytest.approx(optimize(spec).value)
    empty = SparseSpectrum.from_sets([()], [3.0], 0)
    assert optimize(empty, method="milp").value == 3.0
    with pytest.raises(ValueError, match="time_limit"):
        optimize(spec, method="milp", time_limit=True)
