"""Index-aware regression and method="auto": exact corners, exact low-order games, any budget
from n + 2, the choice recorded."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tests.helpers import even_shift, planted_spectrum
from torchspex import explain
from torchspex.decoders import _offset
from torchspex.decoders import _part_fit as pf
from torchspex.decoders.base import BudgetTooSmallError, Evaluator
from torchspex.decoders.efficiency import enforce_corners
from torchspex.decoders.regression import decode_regression, design, index_family
from torchspex.fourier import SparseSpectrum, fourier_to_index

pytest.importorskip("lightgbm")


def quadratic(n: int, seed: int = 0):
    """A random game with terms of order <= 2 (its odd part is linear)."""
    g = torch.Generator().manual_seed(seed)
    lin = torch.randn(n, generator=g, dtype=torch.float64)
    quad = torch.randn(n, n, generator=g, dtype=torch.float64).triu(1) * 0.5

    def f(masks: torch.Tensor) -> torch.Tensor:
        x = masks.double()
        return 0.3 + x @ lin + ((x @ quad) * x).sum(dim=1)

    return f


def hierarchical(masks: torch.Tensor) -> torch.Tensor:
    x = masks.double()
    return (1.0 + 2.0 * x[:, 0] - x[:, 1] + 1.5 * x[:, 0] * x[:, 1] + x[:, 2] * x[:, 3] * x[:, 4]
            - 0.8 * x[:, 1] * x[:, 2] * x[:, 3] * x[:, 5] * x[:, 6] + 0.2 * x[:, 7:].sum(dim=1))


def _exact(f, n: int) -> SparseSpectrum:
    return explain(f, n, method="exhaustive").spectrum


def _dense(spectrum: SparseSpectrum, index: str, order: int) -> dict:
    return fourier_to_index(spectrum, index, order).to_dict()


def _sv(spectrum: SparseSpectrum, n: int) -> np.ndarray:
    d = _dense(spectrum, "SV", 1)
    return np.array([d.get((i,), 0.0) for i in range(n)])


def test_index_family():
    assert index_family("SV") == index_family("k-SII") == index_family("FSII") == "shapley"
    assert index_family("FBII") == index_family("BV") == index_family("Moebius") == "banzhaf"


@pytest.mark.parametrize("index", ["SV", "FBII"])
def test_low_order_game_is_recovered_exactly(index):
    n = 10
    f = quadratic(n)
    spec, info = decode_regression(Evaluator(f, n, n_samples=200), n, n_samples=200, index=index)
    exact = _exact(f, n)
    assert np.allclose(_sv(spec, n), _sv(exact, n), atol=1e-8)
    ours, truth = _dense(spec, "k-SII", 2), _dense(exact, "k-SII", 2)
    for key in truth:
        assert abs(ours.get(key, 0.0) - truth[key]) < 1e-7, key
    assert info["method"] == "regression"
    assert info["design"] == ("paired mix" if index == "SV" else "uniform")  # n = 10, 200 calls


def test_shapley_values_converge_on_a_hierarchical_game():
    n = 12
    exact = _sv(_exact(hierarchical, n), n)
    errors = []
    for budget in (64, 512):
        spec, _ = decode_regression(Evaluator(hierarchical, n, n_samples=budget), n,
                                    n_samples=budget, index="SV")  # fmt: skip
        errors.append(np.linalg.norm(_sv(spec, n) - exact) / np.linalg.norm(exact))
    assert errors[1] < 1e-6 < errors[0] or errors[1] < 0.1 * errors[0]


METHODS = ["auto", "regression", "spex", "proxyspex"]


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("index", ["SV", "FBII", "Moebius"])  # one per design family
def test_efficiency_and_baseline_for_every_method_and_index(method, index):
    n = 24 if method == "spex" else 14
    budget = 700 if method == "spex" else 300
    res = explain(hierarchical, n, method=method, n_samples=budget, index=index, max_order=2)
    assert res.n_evaluations <= budget
    ends = torch.stack([torch.zeros(n, dtype=torch.bool), torch.ones(n, dtype=torch.bool)])
    f_empty, f_full = hierarchical(ends).tolist()
    sv = res.to_index("SV").to_dict()
    total = sum(v for k, v in sv.items() if len(k) == 1)
    assert abs(total - (f_full - f_empty)) <= 1e-9 * abs(f_full - f_empty)
    assert abs(res.baseline_value - f_empty) < 1e-9
    # the () entry of every efficient index is the evaluated f(all removed)
    for efficient in ("SV", "k-SII", "STII", "FSII"):
        view = res.to_index(efficient, max_order=2).to_dict()
        assert abs(view.get((), 0.0) - f_empty) < 1e-9, efficient


@pytest.mark.parametrize("method", ["auto", "regression"])
def test_any_budget_from_n_plus_2(method):
    n = 30
    for budget in (n + 2, n + 3, 2 * n):
        res = explain(hierarchical, n, method=method, n_samples=budget, index="SV")
        assert res.n_evaluations <= budget
        assert res.n_evaluations >= budget - 1
        sv = res.to_index("SV").to_dict()
        assert all(math.isfinite(v) for v in sv.values())
    with pytest.raises(BudgetTooSmallError, match=f"n_samples >= {n + 2}") as err:
        explain(hierarchical, n, method=method, n_samples=n + 1, index="SV")
    assert err.value.minimum == n + 2


def test_auto_records_its_choice_and_reason():
    exhaustive = explain(hierarchical, 8, n_samples=256, index="SV")
    assert exhaustive.info["auto"]["choice"] == "exhaustive"
    assert "2^8" in exhaustive.info["auto"]["reason"]
    small = explain(hierarchical, 12, n_samples=100, index="k-SII")
    assert small.info["auto"]["choice"] == "regression"
    assert "shapley design" in small.info["auto"]["reason"]
    banzhaf = explain(hierarchical, 12, n_samples=100, index="FBII")
    assert banzhaf.info["design"] == "uniform"

    def sparse(masks):
        x = masks.double()
        return 2.0 * x[:, 3] * x[:, 40] - x[:, 7] + 0.5 * x[:, 10] * x[:, 11] * x[:, 12]

    from torchspex.decoders.auto import SPEX_FEATURES

    medium = explain(sparse, 64, n_samples=2000, index="SV")
    assert medium.info["auto"]["choice"] == "regression"
    assert f"< {SPEX_FEATURES}" in medium.info["auto"]["reason"]
    assert medium.info["design"] == "paired leverage"  # uniform sizes from 32 features on
    sv = medium.to_index("SV").to_dict()
    assert abs(sv[(3,)] - 1.0) < 1e-8 and abs(sv[(7,)] + 1.0) < 1e-8

    large = explain(sparse, SPEX_FEATURES, n_samples=2000, index="SV")
    choice = large.info["auto"]
    assert choice["choice"] in ("spex", "spex+regression")
    assert {"spex_error", "regression_cv_error", "reason"} <= set(choice)
    assert large.n_evaluations <= 2000
    sv = large.to_index("SV").to_dict()
    assert abs(sv[(3,)] - 1.0) < 1e-8 and abs(sv[(7,)] + 1.0) < 1e-8


def test_hybrid_skips_the_regression_where_spex_is_certified_exact(monkeypatch):
    """At n >= SPEX_FEATURES, where SPEX's spectrum reproduces the held-out design values to
    round-off, the regression is not fitted (SPEX's certificate); elsewhere it is, and the
    two errors are compared as before."""
    import torchspex.decoders.auto as auto
    from torchspex.decoders.auto import SPEX_FEATURES

    n = SPEX_FEATURES + 100

    def sparse(masks):
        x = masks.double()
        return 2.0 * x[:, 3] * x[:, 40] - x[:, 7] + 0.5 * x[:, 10] * x[:, 11] * x[:, 12]

    def refuse(*args, **kwargs):
        raise AssertionError("the regression was fitted")

    with monkeypatch.context() as patch:
        patch.setattr(auto, "fit_regression", refuse)
        res = explain(sparse, n, n_samples=2000, index="SV")
    choice = res.info["auto"]
    assert choice["choice"] == "spex" and choice["spex_certified"]
    assert "not fitted" in choice["reason"] and math.isnan(choice["regression_cv_error"])
    assert choice["spex_error"] <= auto.EXACT_HELDOUT * (choice["n_design_samples"] - 2)
    sv = res.to_index("SV").to_dict()
    assert abs(sv[(3,)] - 1.0) < 1e-8 and abs(sv[(7,)] + 1.0) < 1e-8
    assert abs(sv[(10,)] - 0.5 / 3) < 1e-8

    def dense(masks):  # every feature and a wobble: SPEX cannot reproduce it
        x = masks.double()
        return x @ torch.linspace(-1.0, 1.0, n, dtype=torch.float64) + torch.sin(3.0 * x.sum(1))

    res = explain(dense, n, n_samples=2000, index="SV")
    choice = res.info["auto"]
    assert not choice["spex_certified"] and math.isfinite(choice["regression_cv_error"])


def test_default_budget_warns_with_the_count():
    import torchspex.decoders.auto as auto

    auto._warned_default.discard(9)
    with pytest.warns(UserWarning, match=r"up to 256 masks for 9 features \(20 per feature, at "
                                         r"least 256\)"):
        explain(hierarchical, 9, index="SV")
    # capped at every mask: the warning says so, not "at least 256"
    auto._warned_default.discard(5)
    with pytest.warns(UserWarning, match=r"up to 32 masks for 5 features \(every mask, exact\)"):
        explain(lambda m: m.double().sum(1), 5, index="SV")


def test_enforce_corners_is_exact_and_leaves_exact_fits_alone():
    g = torch.Generator().manual_seed(0)
    n = 9
    coef = torch.randn(4, generator=g, dtype=torch.float64)
    spec = SparseSpectrum.from_sets([(), (0,), (1, 2), (0, 3, 4)], coef, n)
    masks = torch.rand(50, n, generator=g) < 0.5
    ends = torch.stack([torch.zeros(n, dtype=torch.bool), torch.ones(n, dtype=torch.bool)])
    fixed = enforce_corners(spec, torch.tensor(1.0), torch.tensor(-2.0), masks)
    assert torch.allclose(fixed.evaluate(ends), torch.tensor([1.0, -2.0], dtype=torch.float64))
    true_ends = spec.evaluate(ends)
    same = enforce_corners(spec, true_ends[0], true_ends[1], masks)
    assert torch.allclose(same.evaluate(masks), spec.evaluate(masks), atol=1e-12)


def test_enforce_corners_with_more_terms_than_samples():
    """A spectrum with far more terms than samples (a large tree read-out) is moved onto the
    corners through the samples' own system (the terms' s x s one would not fit in memory
    at s = 50,000): exact at both corners, the fitted values on the samples unchanged."""
    g = torch.Generator().manual_seed(1)
    n, s, m = 60, 4000, 80
    support = torch.rand(s, n, generator=g) < 0.06
    spec = SparseSpectrum.from_support(support, torch.randn(s, generator=g,
                                                            dtype=torch.float64)).coalesce()
    assert spec.n_terms > 20 * m
    masks = torch.rand(m, n, generator=g) < 0.5
    ends = torch.stack([torch.zeros(n, dtype=torch.bool), torch.ones(n, dtype=torch.bool)])
    fixed = enforce_corners(spec, torch.tensor(1.5), torch.tensor(-2.0), masks)
    got = fixed.evaluate(ends)
    assert abs(float(got[0]) - 1.5) < 1e-12 and abs(float(got[1]) + 2.0) < 1e-12
    assert float((fixed.evaluate(masks) - spec.evaluate(masks)).abs().max()) < 1e-6


def test_corner_correction_is_the_least_change_over_uniform_masks():
    """Without samples, the corners are met by the change of least mean square over every
    mask (Parseval: the sum of squared coefficient changes): each even term of the support,
    the constant and every pair moves by the even gap over their number, each odd term and
    every order-1 term by the odd gap over theirs; the least-squares step on a few uniform
    samples (on the support alone) moves the function over all masks more (1.6x here)."""
    from torchspex.decoders.efficiency import corner_pairs
    from torchspex.fourier._sets import set_sizes

    n = 10
    spec = SparseSpectrum.from_sets([(), (0,), (1, 2), (0, 3, 4), (5, 6)],
                                    [0.3, -1.0, 0.8, 0.5, -0.4], n)  # fmt: skip
    every = torch.tensor([[(k >> i) & 1 for i in range(n)] for k in range(1 << n)]).bool()
    ends = every[[0, -1]]
    f_empty, f_full = torch.tensor(2.0), torch.tensor(-1.0)
    fixed = enforce_corners(spec, f_empty, f_full)
    assert torch.allclose(fixed.evaluate(ends), torch.tensor([2.0, -1.0], dtype=torch.float64),
                          rtol=0, atol=1e-13)  # fmt: skip
    assert fixed.n_terms == 1 + n + corner_pairs(n).shape[0] + 1  # the triple (0, 3, 4) kept
    moved = fixed.evaluate(every) - spec.evaluate(every)
    before = spec.evaluate(ends)
    even_gap = float((f_empty + f_full - before[0] - before[1]) / 2)
    odd_gap = float((f_empty - f_full - before[0] + before[1]) / 2)
    odd = set_sizes(fixed.indices) % 2 == 1
    n_odd, n_even = int(odd.sum()), int((~odd).sum())
    want = even_gap**2 / n_even + odd_gap**2 / n_odd
    assert abs(float(moved.pow(2).mean()) - want) < 1e-12
    samples = torch.rand(40, n, generator=torch.Generator().manual_seed(0)) < 0.5
    by_samples = enforce_corners(spec, f_empty, f_full, samples)
    assert float((by_samples.evaluate(every) - spec.evaluate(every)).pow(2).mean()) > 1.5 * want
    # a spectrum already exact at the corners is returned with its values
    same = enforce_corners(spec, before[0], before[1])
    assert torch.allclose(same.evaluate(every), spec.evaluate(every), rtol=0, atol=1e-13)
    assert corner_pairs(600).shape[0] <= 1 << 17 < 600 * 599 // 2


@pytest.mark.parametrize("method", ["proxyspex", "spex"])
def test_sampled_methods_stay_faithful_where_the_corners_are_far_off(method):
    """An empty input the rest of the function does not predict (an empty prompt): SPEX and
    ProxySPEX fit uniform-like masks, which never see it; made exact at the corners, their
    surrogate must still follow the function on fresh uniform masks (R^2 0.83 for SPEX here
    when the correction was least squares on its own samples) with efficiency exact."""
    n = 40
    a = torch.randn(n, generator=torch.Generator().manual_seed(0), dtype=torch.float64)

    def f(m: torch.Tensor) -> torch.Tensor:
        x = m.double()
        out = x @ a + 2.0 * x[:, 0] * x[:, 1] - 1.5 * x[:, 2] * x[:, 3] * x[:, 4]
        return out + 4.0 * (~m.bool().any(dim=1))

    res = explain(f, n, method=method, n_samples=800, generator=0, index="SV")
    test = torch.rand(2000, n, generator=torch.Generator().manual_seed(9)) < 0.5
    y, pred = f(test), res.predict(test)
    r2 = 1 - float(((pred - y) ** 2).sum() / ((y - y.mean()) ** 2).sum())
    assert r2 > 0.94
    ends = torch.stack([torch.zeros(n, dtype=torch.bool), torch.ones(n, dtype=torch.bool)])
    gap = float(f(ends[1:]) - f(ends[:1]))
    assert float(res.first_order("SV").sum()) == pytest.approx(gap, abs=1e-10)


@pytest.mark.parametrize("budget", [200, 600])
def test_a_spike_at_the_empty_coalition_is_shared_equally(budget):
    """A sparse game but for its value at ∅ (a text with every word removed scores off the trend
    of the small coalitions): the odd part, fitted free at the corners and shifted onto them,
    gives every feature the spike's equal share, so the Shapley values are exact (the corner
    held as a constraint of the fit put it into the higher-order terms: off by 0.13 / 0.08
    at 200 / 600 calls)."""
    n = 12
    a = torch.randn(n, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    spike = 3.0

    def f_sparse(m: torch.Tensor) -> torch.Tensor:
        x = m.double()
        return x @ a + 0.8 * x[:, 0] * x[:, 1] - 0.5 * x[:, 2] * x[:, 3] * x[:, 4]

    def f(m: torch.Tensor) -> torch.Tensor:
        return f_sparse(m) + spike * (~m.bool().any(dim=1))

    exact = _sv(_exact(f, n), n)
    # the spike's own Shapley value is -spike / n for every feature
    assert np.allclose(exact, _sv(_exact(f_sparse, n), n) - spike / n, atol=1e-12)
    res = explain(f, n, n_samples=budget, generator=0, index="SV")
    assert res.info["method"] == "regression"
    assert np.abs(res.first_order("SV").numpy() - exact).max() < 1e-9
    ends = torch.stack([torch.zeros(n, dtype=torch.bool), torch.ones(n, dtype=torch.bool)])
    assert torch.allclose(res.predict(ends).double(), f(ends), rtol=0, atol=1e-12)


@pytest.mark.parametrize("outputs", [1, 2])
def test_a_spike_on_a_linear_odd_part_is_exact_with_few_pairs_per_feature(outputs):
    """From 32 features with fewer than 4 pairs per feature the odd part of one output is
    fitted around a cross-fitted proxy unless the pairs' odd values are exactly linear; that
    check fits the first-order terms as the odd part is fitted, free at the corners, so a spike
    at ∅ on an order-2 game still passes it and the Shapley values are exact (held to the
    corner, the check failed and the values were off by about 1). Two outputs (no proxy
    offset): each its own spike, each output's gap recorded."""
    n = 40
    g = torch.Generator().manual_seed(0)
    a = torch.randn(n, outputs, generator=g, dtype=torch.float64)
    q = torch.randn(n, n, generator=g, dtype=torch.float64).triu(1) * 0.3
    spike = torch.tensor([3.0, -1.5][:outputs], dtype=torch.float64)

    def f(m: torch.Tensor) -> torch.Tensor:
        x = m.double()
        out = (x @ a + ((x @ q) * x).sum(1, keepdim=True)
               + spike * (~m.bool().any(dim=1, keepdim=True)))  # fmt: skip
        return out.squeeze(1) if outputs == 1 else out

    exact = a + ((q.sum(0) + q.sum(1)) / 2).unsqueeze(1) - spike / n
    res = explain(f, n, n_samples=100, generator=0, index="SV")
    if outputs == 1:
        assert res.info["odd_linear"] is True
    sv = res.first_order("SV").double().reshape(outputs, n).T  # [*out, n] -> [n, o]
    assert float((sv - exact).abs().max()) < 1e-9
    assert len(res.info["odd"]["corner_shift"]) == outputs


@pytest.mark.parametrize("constrained", [False, True])
def test_prefix_solutions_equal_one_kkt_solve_per_prefix(constrained):
    """The Cholesky path of the cross-validation gives, for every prefix of the support, the
    solution of that prefix's own constrained ridge problem."""
    from torchspex.decoders._part_fit import _prefix_solutions, _solve_batched

    g = torch.Generator().manual_seed(3)
    n_f, s, o = 3, 12, 2
    a = torch.randn(n_f, 20, s, generator=g, dtype=torch.float64)
    gram = a.mT @ a
    rhs = torch.randn(n_f, s, o, generator=g, dtype=torch.float64)
    pen = torch.rand(s, generator=g, dtype=torch.float64)
    c = torch.randn(1, s, generator=g, dtype=torch.float64) if constrained else None
    d = torch.randn(1, o, generator=g, dtype=torch.float64) if constrained else None
    scale = torch.diagonal(gram, dim1=1, dim2=2).mean(dim=1)
    h = gram + torch.diag_embed(pen * scale.unsqueeze(1))
    cols = [1, 4, 7, 12]
    got = _prefix_solutions(torch.linalg.cholesky(h), rhs, c, d, cols)
    for i, k in enumerate(cols):
        hk = h[:, :k, :k]
        # the same problem through the KKT solver (its tiny ridge switched off by a zero scale)
        want = _solve_batched(hk, rhs[:, :k], torch.zeros(1, k, dtype=torch.float64),
                              None if c is None else c[:, :k], d)[0]  # fmt: skip
        assert torch.allclose(got[:, :k, i], want, atol=1e-9, rtol=1e-9)
        assert torch.equal(got[:, k:, i], torch.zeros_like(got[:, k:, i]))
        if constrained:
            assert torch.allclose(c[:, :k] @ got[:, :k, i], d.expand(n_f, -1, -1), atol=1e-9)


def test_the_proxy_tries_deep_trees_once_the_rows_carry_them(monkeypatch):
    """Below MID_ROWS samples the proxy fits the default depths (3, 5) with every leaf at rate
    0.1 for at most PROXY_ROUNDS rounds; from MID_ROWS depth 5 only; from DEEP_ROWS on depth 8
    (the high-order terms of deep trees become candidates) of at most DEEP_LEAVES leaves, at
    DEEP_RATE for at most DEEP_ROUNDS rounds, and the info records the leaves of the one
    chosen."""
    from torchspex.decoders import _candidates as cand

    tried: list[list[tuple]] = []
    rounds: list[int] = []
    real = cand.fit_proxy

    def spy(x, y, valid, configs, max_rounds, *args):
        tried.append([(c[0], c[2] if len(c) > 2 else None, c[1]) for c in configs])
        rounds.append(max_rounds)
        return real(x, y, valid, configs, max_rounds, *args)

    monkeypatch.setattr(cand, "fit_proxy", spy)
    n = 12
    runs = [decode_regression(Evaluator(hierarchical, n, n_samples=m), n, n_samples=m)[1]
            for m in (600, cand.MID_ROWS, cand.DEEP_ROWS + 2)]  # fmt: skip
    assert tried == [[(3, None, 0.1), (5, None, 0.1)], [(5, None, 0.1)],
                     [(8, cand.DEEP_LEAVES, cand.DEEP_RATE)]]  # fmt: skip
    assert rounds == [cand.PROXY_ROUNDS, cand.PROXY_ROUNDS, cand.DEEP_ROUNDS]
    assert [r["proxy"]["n_fits"] for r in runs] == [2, 1, 1]
    assert runs[0]["proxy"]["num_leaves"] == 2 ** runs[0]["proxy"]["max_depth"]
    assert runs[1]["proxy"]["max_depth"] == 5 and runs[1]["proxy"]["num_leaves"] == 32
    assert runs[2]["proxy"]["max_depth"] == 8
    assert runs[2]["proxy"]["learning_rate"] == cand.DEEP_RATE
    assert runs[2]["proxy"]["num_leaves"] == cand.DEEP_LEAVES


def test_large_parts_cross_validate_on_fewer_folds(monkeypatch):
    """A part of CV_SINGLE_FROM terms or more is cross-validated on LARGE_PART_FOLDS folds, a
    smaller one on 5; an explicit ``n_folds`` applies to every part."""

    n, m = 10, 300
    info = decode_regression(Evaluator(hierarchical, n, n_samples=m), n, n_samples=m)[1]
    assert info["odd"]["n_folds"] == info["even"]["n_folds"] == 5
    sizes = (info["odd"]["n_terms"], info["even"]["n_terms"])
    monkeypatch.setattr(pf, "CV_SINGLE_FROM", min(sizes))
    info = decode_regression(Evaluator(hierarchical, n, n_samples=m), n, n_samples=m)[1]
    assert [info[part]["n_folds"] for part in ("odd", "even")] == [
        pf.LARGE_PART_FOLDS if size >= min(sizes) else 5 for size in sizes]
    assert pf.LARGE_PART_FOLDS in (info["odd"]["n_folds"], info["even"]["n_folds"])
    info = decode_regression(Evaluator(hierarchical, n, n_samples=m), n, n_samples=m,
                             n_folds=4)[1]  # fmt: skip
    assert info["odd"]["n_folds"] == info["even"]["n_folds"] == 4


def test_candidates_rank_by_scores_averaged_over_proxies(monkeypatch):
    """The candidate scores of B proxies are the mean of the B single proxies' squared
    coefficients (each on its own held-out fifth, drawn in turn from the same generator), and
    the info records B; at effort="high" 5 proxies below DEEP_ROWS samples, 3 from there on,
    1 from BAG_FEATURES features on; one at the default effort="low"."""
    from torchspex.decoders import _candidates as cand
    from torchspex.sampling.coalitions import paired_coalitions

    bags = [cand.proxy_bags(cand.DEEP_ROWS - 1, 64), cand.proxy_bags(cand.DEEP_ROWS, 64),
            cand.proxy_bags(cand.DEEP_ROWS - 1, cand.BAG_FEATURES),
            cand.proxy_bags(cand.DEEP_ROWS - 1, 64, "low")]  # fmt: skip
    assert bags == [5, 3, 1, 1]
    n = 10
    masks, _ = paired_coalitions(n, 300, torch.Generator().manual_seed(1), "leverage")
    flat = hierarchical(masks).double().reshape(-1, 1)
    monkeypatch.setattr(cand, "PROXY_BAGS", 1)
    g = torch.Generator().manual_seed(7)
    singles = [cand._proxy_terms(masks, flat, g, "high") for _ in range(3)]
    monkeypatch.setattr(cand, "PROXY_BAGS", 3)
    idx, score, info = cand._proxy_terms(masks, flat, torch.Generator().manual_seed(7), "high")
    assert info["bags"] == 3 and singles[0][2]["bags"] == 1
    want: dict[tuple, float] = {}
    for s_idx, s_score, _ in singles:
        for row, v in zip(s_idx.tolist(), s_score.tolist()):
            key = tuple(i for i in row if i >= 0)
            want[key] = want.get(key, 0.0) + v / 3
    got = {tuple(i for i in row if i >= 0): v for row, v in zip(idx.tolist(), score.tolist())}
    assert got.keys() == want.keys()
    for key, v in want.items():
        assert got[key] == pytest.approx(v, rel=1e-12, abs=1e-300)
    # the proxies differ (different held-out rows), so averaging is not a no-op
    assert not torch.equal(singles[0][1], singles[1][1])


def _noisy_additive(n: int, seed: int = 0):
    """A linear game plus a noise function of every mask (a random table over all 2^n
    masks): its pair values are small and a fit from few rows mostly sees the noise."""
    g = torch.Generator().manual_seed(seed)
    lin = torch.randn(n, generator=g, dtype=torch.float64)
    table = 0.5 * torch.randn(1 << n, generator=g, dtype=torch.float64)
    powers = 1 << torch.arange(n)

    def f(masks: torch.Tensor) -> torch.Tensor:
        return masks.double() @ lin + table[masks.long() @ powers]

    return f


def _pairs(spectrum: SparseSpectrum, n: int) -> np.ndarray:
    d = _dense(spectrum, "k-SII", 2)
    return np.array([d.get((i, j), 0.0) for i in range(n) for j in range(i + 1, n)])


def test_pair_shrinkage_lowers_noisy_pair_errors_and_leaves_the_rest():
    """Over four noise games: every factor below 1 and every shrunk fit closer to the exact
    pairs than the plain one, the factors well below 1 on average, the Shapley values and the
    corners untouched."""
    n, budget = 12, 160
    factors = []
    for seed in range(4):
        f = _noisy_additive(n, seed)
        exact = _exact(f, n)
        errors, svs = {}, {}
        for shrink in (True, False):
            spec, info = decode_regression(Evaluator(f, n, n_samples=budget), n,
                                           n_samples=budget, index="SV", shrink=shrink)  # fmt: skip
            errors[shrink] = np.linalg.norm(_pairs(spec, n) - _pairs(exact, n))
            svs[shrink] = _sv(spec, n)
            ends = torch.stack([torch.zeros(n, dtype=torch.bool), torch.ones(n, dtype=torch.bool)])
            assert torch.allclose(spec.evaluate(ends), f(ends), rtol=0, atol=1e-12)
            if shrink:
                factors.append(info["even"]["shrinkage"][0])
            else:
                assert "shrinkage" not in info["even"]
        assert 0.0 <= factors[-1] < 1.0  # the noise is seen as noise
        assert errors[True] < errors[False]
        # the Shapley values depend on the odd part only, which is never shrunk
        np.testing.assert_allclose(svs[True], svs[False], rtol=0, atol=1e-12)
    assert np.mean(factors) < 0.9


def test_pair_shrinkage_leaves_exact_fits_exact():
    n = 10
    f = quadratic(n)
    spec, info = decode_regression(Evaluator(f, n, n_samples=200), n, n_samples=200, index="k-SII")
    assert info["even"]["shrinkage"][0] == pytest.approx(1.0, abs=1e-12)
    np.testing.assert_allclose(_pairs(spec, n), _pairs(_exact(f, n), n), rtol=0, atol=1e-8)


def test_size_strata_merge_small_classes_and_skip_enumerated_ones():
    from torchspex.decoders._even import _size_strata
    from torchspex.sampling.coalitions import paired_coalitions

    n = 12
    masks, _ = paired_coalitions(n, 300, torch.Generator().manual_seed(0), "kernel")
    x = masks[2::2]
    label, fraction = _size_strata(x)
    k = x.sum(dim=1)
    cls = torch.minimum(k, n - k)
    for s in cls.unique().tolist():
        total = math.comb(n, s) // (2 if 2 * s == n else 1)
        enumerated = int((cls == s).sum()) == total
        assert bool((label[cls == s] == -1).all()) == enumerated
    assert bool((label == -1).any()) and bool((label >= 0).any())
    sampled = label >= 0
    counts = torch.bincount(label[sampled])
    assert bool((counts >= 4).all()) and counts.numel() >= 2
    # strata are runs of neighbouring size classes
    for s in label[sampled].unique():
        sizes = cls[label == s].unique()
        assert bool((sizes == torch.arange(int(sizes.min()), int(sizes.max()) + 1)).all())
    assert bool(((fraction > 0) & (fraction <= 1)).all())


def _and_game(masks: torch.Tensor) -> torch.Tensor:
    """AND-type interactions (what trees capture and a linear fit from few rows does not)."""
    x = masks.double()
    return (4 * x[:, 0] * x[:, 1] * x[:, 2] + 3 * x[:, 3] * x[:, 4] + x[:, 9]
            - 2 * x[:, 5] * x[:, 6] * x[:, 7] * x[:, 8] + 0.5 * x[:, 10] * x[:, 11])


def test_cross_fitted_proxy_offset_is_kept_when_it_cross_validates_better():
    n, budget = 120, 200
    exact = np.zeros(n)
    exact[:3], exact[3:5], exact[5:9], exact[9], exact[10:12] = 4 / 3, 1.5, -0.5, 1.0, 0.25
    errors, chosen = {}, {}
    for cross_fit in (True, False):
        evaluator = Evaluator(_and_game, n, n_samples=budget)
        spec, info = decode_regression(evaluator, n, n_samples=budget, index="SV",
                                       cross_fit=cross_fit)  # fmt: skip
        sv = _sv(spec, n)
        errors[cross_fit] = np.linalg.norm(sv - exact) / np.linalg.norm(exact)
        chosen[cross_fit] = info["odd"].get("proxy_offset")
        assert abs(sv.sum() - exact.sum()) <= 1e-12 * exact.sum()
        ends = torch.stack([torch.zeros(n, dtype=torch.bool), torch.ones(n, dtype=torch.bool)])
        assert torch.allclose(spec.evaluate(ends), _and_game(ends), rtol=0, atol=1e-12)
    assert chosen == {True: True, False: None}
    assert errors[True] < 0.7 * errors[False]  # 0.29 against 0.54 when written


def test_cross_fitted_proxies_are_read_into_spectra_only_when_asked_for():
    """The fold proxies' spectra are read lazily: their odd part at ∅ comes from their
    predictions at the corners and equals their spectra's to round-off; where the offset is
    not kept and only the Shapley values are read, no fold spectrum is read."""
    n, budget = 12, 40
    masks, _ = design(n, budget, torch.Generator().manual_seed(0), "shapley")
    flat = _and_game(masks).reshape(-1, 1)
    p = (masks.shape[0] - 2) // 2
    fold = torch.arange(p) % 5
    fit = {"max_depth": 3, "learning_rate": 0.1, "n_trees": 50}
    column, at_empty, proxies = _offset._cross_fitted_proxy(masks, flat, fold, 5, fit, n,
                                                        torch.Generator().manual_seed(1))
    assert len(proxies) == 5 and proxies._spectra == [None] * 5
    odd = _offset._odd_part(proxies.mean())
    assert abs(float(odd.coefficients.sum()) - float(at_empty)) <= 1e-12
    for f in range(5):  # each pair's odd value is the spectrum of the proxy that missed it
        at = (fold == f).nonzero().squeeze(1)
        odd_f = _offset._odd_part(proxies.spectrum(f))
        assert torch.allclose(odd_f.evaluate(masks[2 + 2 * at]).reshape(-1), column[at],
                              rtol=0, atol=1e-12)  # fmt: skip
        idx, score = proxies[f]
        assert torch.equal(idx, proxies.spectrum(f).indices) and bool((score >= 0).all())
    seen = []
    original = _offset._FoldProxies.spectrum
    try:
        _offset._FoldProxies.spectrum = lambda self, f: seen.append(f) or original(self, f)
        spec, info = decode_regression(Evaluator(_and_game, n, n_samples=64), n, n_samples=64,
                                       index="SV")  # fmt: skip
        offset = info["odd"].get("proxy_offset")
        _sv(spec, n)
        assert offset is not None and (offset or seen == [])
        spec.complete()  # the even part's jackknife reuses the fold proxies
        assert sorted(set(seen)) == list(range(5))
    finally:
        _offset._FoldProxies.spectrum = original


@pytest.mark.parametrize(("index", "choice"), [("SV", "regression"), ("BV", "proxyspex")])
def test_auto_below_n_plus_2_gives_an_answer_that_adds_up(index, choice):
    """Below the regression's n + 2 calls, auto still answers (with LightGBM): the Shapley
    family by the regression around the cross-fitted proxy, the Banzhaf family by ProxySPEX;
    exact at the corners, the pairs shrunk by the jackknife factor, the reason recorded."""
    n, budget = 100, 80
    res = explain(hierarchical, n, n_samples=budget, index=index)
    assert res.info["auto"]["choice"] == choice
    assert "n + 2 = 102" in res.info["auto"]["reason"]
    assert res.n_evaluations <= budget
    ends = torch.stack([torch.zeros(n, dtype=torch.bool), torch.ones(n, dtype=torch.bool)])
    f_empty, f_full = hierarchical(ends).tolist()
    assert torch.allclose(res.spectrum.evaluate(ends), hierarchical(ends), rtol=0, atol=1e-9)
    if index == "SV":
        total = sum(v for k, v in res.to_index("SV").to_dict().items() if len(k) == 1)
        assert abs(total - (f_full - f_empty)) <= 1e-9 * abs(f_full - f_empty)
        assert abs(res.baseline_value - f_empty) < 1e-9
        assert res.info["even"]["shrinkage_noise"] == "jackknife"
        factor = res.info["even"]["shrinkage"][0]
    else:
        factor = res.info["shrinkage"][0]
    assert 0.0 <= factor <= 1.0  # the pairs' James-Stein factor


def _noisy_linear(n: int):
    """A linear game plus a high-frequency wobble no sparse fit can capture: ``(weights,
    game)``; its pairs are noise."""
    g = torch.Generator().manual_seed(5)
    lin = torch.randn(n, generator=g, dtype=torch.float64)

    def noisy(masks: torch.Tensor) -> torch.Tensor:
        x = masks.double()
        noise = torch.sin(37.0 * (x @ torch.arange(1.0, n + 1, dtype=torch.float64)))
        return x @ lin + 0.5 * noise

    return lin, noisy


def test_fewer_pairs_than_features_shrink_by_the_jackknife():
    """With fewer pairs than features the even part's noise comes from refitting it (proxy
    included) without each fold: noise pairs are pulled to zero, the Shapley values are
    those of the unshrunk fit (the jackknife draws come last)."""
    n, budget = 40, 60  # 29 pairs < 40 features
    _, noisy = _noisy_linear(n)

    fits = {}
    for shrink in (True, False):
        fits[shrink] = decode_regression(Evaluator(noisy, n, n_samples=budget), n,
                                         n_samples=budget, index="k-SII",
                                         shrink=shrink)  # fmt: skip
    spec, info = fits[True]
    assert info["even"]["shrinkage_noise"] == "jackknife"
    factor = info["even"]["shrinkage"][0]
    assert 0.0 <= factor < 0.5
    plain = _pairs(fits[False][0], n)
    assert np.linalg.norm(_pairs(spec, n)) <= 0.5 * np.linalg.norm(plain)
    # the even terms scaled by the factor, the change at the corners spread back as one shift
    shift = even_shift(spec, fits[False][0], factor)
    assert float(shift.max() - shift.min()) < 1e-12
    np.testing.assert_allclose(_sv(spec, n), _sv(fits[False][0], n), rtol=0, atol=1e-12)


def test_few_pairs_per_feature_cap_the_factor_by_the_calibration_slope():
    """From n to 4n pairs the sandwich's James-Stein factor is capped by the calibration slope
    of refits that choose their own terms: an even part the fit chose terms for out of noise
    is pulled further to zero, real pairs are kept whole, the Shapley values do not move."""
    n, budget = 20, 102  # 50 pairs: n <= p < 4n
    lin, noisy = _noisy_linear(n)

    for seed in range(3):
        fits = {shrink: decode_regression(Evaluator(noisy, n, n_samples=budget), n,
                                          n_samples=budget, index="k-SII", shrink=shrink,
                                          generator=torch.Generator().manual_seed(seed))
                for shrink in (True, False)}  # fmt: skip
        spec, info = fits[True]
        even = info["even"]
        assert even["shrinkage_noise"] == "sandwich"
        stein, slope = even["stein_factor"][0], even["calibration_slope"][0]
        factor = even["shrinkage"][0]
        assert factor == min(stein, slope)
        assert slope < stein  # the cap bites (0.32 / 0.71 at seed 0 when written)
        plain = _pairs(fits[False][0], n)
        shift = even_shift(spec, fits[False][0], factor)
        assert float(shift.max() - shift.min()) < 1e-12
        assert np.linalg.norm(_pairs(spec, n)) < np.linalg.norm(plain)
        np.testing.assert_allclose(_sv(spec, n), _sv(fits[False][0], n), rtol=0, atol=1e-12)

    # every pair a candidate (28 <= 30 pairs < 4n = 32): the refits reproduce them, slope 1
    n = 8
    lin = lin[:n]

    def paired(masks: torch.Tensor) -> torch.Tensor:
        x = masks.double()
        return x @ lin + 2.0 * x[:, 0] * x[:, 1] - 1.5 * x[:, 2] * x[:, 3]

    for seed in range(3):
        spec, info = decode_regression(Evaluator(paired, n, n_samples=62), n, n_samples=62,
                                       index="k-SII", generator=torch.Generator().manual_seed(seed))
        assert info["n_pairs"] == 30 and info["even"]["calibration_slope"][0] > 0.999
        pairs = _dense(spec, "k-SII", 2)
        np.testing.assert_allclose([pairs[(0, 1)], pairs[(2, 3)]], [2.0, -1.5], atol=1e-6)


def test_no_candidate_terms_at_all_still_fit():
    """No proxy and no pairs: the odd and even parts hold only their fixed terms (the
    cross-validation over penalties on discovered terms has nothing to try)."""
    n, budget = 12, 60
    lin = torch.linspace(-1.0, 1.0, n, dtype=torch.float64)
    f = lambda m: m.double() @ lin  # noqa: E731
    spec, info = decode_regression(Evaluator(f, n, n_samples=budget), n, n_samples=budget,
                                   index="k-SII", proxy=False, pairs=False)  # fmt: skip
    assert info["odd"]["n_discovered"] == 0 and info["even"]["n_discovered"] == 0
    np.testing.assert_allclose(_sv(spec, n), lin.numpy(), atol=1e-9)


def test_auto_below_the_proxy_minimum_says_what_it_needs():
    n = 100
    with pytest.raises(BudgetTooSmallError, match="n_samples >= 102"):
        explain(hierarchical, n, n_samples=63, index="SV")


def test_the_odd_part_averages_the_best_settings_and_leaves_the_rest(monkeypatch):
    """With ODD_AVERAGE > 1 the odd part averages the fits of the best settings by CV error
    (those within AVG_TOL of the best): recorded in the info, the corners still exact (every
    fit meets the constraint, so the mean does), the Shapley values moved, the even part
    (pairs) bitwise what it is without it."""
    from torchspex.decoders import regression as reg

    n, budget = 12, 400
    ends = torch.stack([torch.zeros(n, dtype=torch.bool), torch.ones(n, dtype=torch.bool)])
    fits = {}
    for k in (1, 6):
        monkeypatch.setattr(reg, "ODD_AVERAGE", k)
        fits[k] = decode_regression(Evaluator(hierarchical, n, n_samples=budget), n,
                                    n_samples=budget, index="SV", effort="high")  # fmt: skip
        spec = fits[k][0]
        assert torch.allclose(spec.evaluate(ends), hierarchical(ends).double(), rtol=0,
                              atol=1e-12)  # fmt: skip
    assert "averaged" not in fits[1][1]["odd"] and 1 < fits[6][1]["odd"]["averaged"] <= 6
    assert not np.allclose(_sv(fits[1][0], n), _sv(fits[6][0], n), rtol=0, atol=1e-12)
    np.testing.assert_array_equal(_pairs(fits[1][0], n), _pairs(fits[6][0], n))


def test_cross_validation_keeps_its_best_settings_in_order(monkeypatch):
    """keep=k returns the best setting first, then the next best by CV error, only those
    within AVG_TOL times the best error (and, with AVERAGE_ONE_PENALTY, only those at the
    best setting's penalties: its prefixes)."""
    from torchspex.decoders._part_fit import _cross_validate

    monkeypatch.setattr(pf, "AVG_TOL", math.inf)
    monkeypatch.setattr(pf, "AVERAGE_ONE_PENALTY", False)
    g = torch.Generator().manual_seed(0)
    p, s = 60, 10
    a = torch.randn(p, s, generator=g, dtype=torch.float64)
    y = a[:, :3] @ torch.tensor([[1.0], [-2.0], [0.5]], dtype=torch.float64)
    y = y + 0.3 * torch.randn(p, 1, generator=g, dtype=torch.float64)
    w = torch.ones(p, dtype=torch.float64)
    args = (a, a, y, w, y.var(dim=0, correction=0), None, None, 3, [0, 2, 4, 7],
            (0.0,), 5)  # fmt: skip
    one = _cross_validate(*args, torch.Generator().manual_seed(1))
    top = _cross_validate(*args, torch.Generator().manual_seed(1), keep=4)
    assert len(one) == 1 and len(top) == 4 and top[0] == one[0]
    errors = [t[0] for t in top]
    assert errors == sorted(errors) and len({(t[1], t[2]) for t in top}) == 4
    monkeypatch.setattr(pf, "AVERAGE_ONE_PENALTY", True)
    shared = _cross_validate(*args, torch.Generator().manual_seed(1), keep=4)
    assert shared[0] == one[0] and len(shared) > 1
    assert all(t[2:] == one[0][2:] for t in shared)
    assert [t[0] for t in shared] == sorted(t[0] for t in shared)
    assert shared == [top[0], *[t for t in sorted(
        (t for t in _cross_validate(*args, torch.Generator().manual_seed(1), keep=100)
         if t[2:] == one[0][2:]), key=lambda t: t[0]) if t != top[0]][:3]]  # fmt: skip
    monkeypatch.setattr(pf, "AVG_TOL", 1.0 + 1e-12)  # nothing is as good as the best
    assert _cross_validate(*args, torch.Generator().manual_seed(1), keep=4) == one


def _cv_problem(constrained: bool) -> tuple:
    g = torch.Generator().manual_seed(4)
    p, s = 200, 40
    a = torch.randn(p, s, generator=g, dtype=torch.float64)
    y = a[:, :6] @ torch.randn(6, 2, generator=g, dtype=torch.float64)
    y = y + 0.5 * torch.randn(p, 2, generator=g, dtype=torch.float64)
    w = 0.5 + torch.rand(p, generator=g, dtype=torch.float64)
    c = torch.ones(1, s, dtype=torch.float64) if constrained else None
    d = torch.ones(1, 2, dtype=torch.float64) if constrained else None
    return (a, w.unsqueeze(1) * a, y, w, y.var(dim=0, correction=0), c, d, 4,
            [0, 2, 4, 8, 16, 36], (0.0,), 5)  # fmt: skip


@pytest.mark.parametrize("constrained", [False, True])
def test_cross_validation_in_float32_ranks_the_settings_as_float64_does(monkeypatch, constrained):
    """Large parts score their settings in float32 (CV_SINGLE_FROM): the same settings in the
    same order, errors within float32 round-off of the float64 ones."""

    args = _cv_problem(constrained)
    double = pf._cross_validate(*args, torch.Generator().manual_seed(1), keep=6)
    monkeypatch.setattr(pf, "CV_SINGLE_FROM", 1)
    single = pf._cross_validate(*args, torch.Generator().manual_seed(1), keep=6)
    assert [t[1:] for t in single] == [t[1:] for t in double]
    for got, want in zip(single, double):
        assert abs(got[0] - want[0]) <= 1e-4 * want[0]


def test_cross_validation_in_float32_falls_back_to_float64_kkt(monkeypatch):
    """Where a float32 factor fails, the prefixes are solved through the float64 KKT systems
    and scored as before."""
    from torchspex.decoders import _linalg

    args = _cv_problem(True)
    want = pf._cross_validate(*args, torch.Generator().manual_seed(1), keep=3)
    monkeypatch.setattr(pf, "CV_SINGLE_FROM", 1)
    calls = []

    def failing(self, shift):
        calls.append(self.base.dtype)
        factor, info = torch.linalg.cholesky_ex(self.base)
        return factor, torch.ones_like(info)

    monkeypatch.setattr(_linalg.ShiftedCholesky, "__call__", failing)
    got = pf._cross_validate(*args, torch.Generator().manual_seed(1), keep=3)
    assert calls and all(dtype == torch.float32 for dtype in calls)
    assert [t[1:] for t in got] == [t[1:] for t in want]
    for g_, w_ in zip(got, want):
        assert abs(g_[0] - w_[0]) <= 1e-4 * w_[0]
    # training Gram matrices handed over in float32 (as _walsh_normals gives them): the
    # fallback recomputes the float64 ones
    a, aw, y, n_folds = args[0], args[1], args[2], args[10]
    fold = torch.randperm(a.shape[0], generator=torch.Generator().manual_seed(1)) % n_folds
    normal = pf._fold_normals(a, aw, y, fold, n_folds)
    normal = (*normal[:3], torch.stack(normal[3]).float(), normal[4])
    handed = pf._cross_validate(*args, torch.Generator().manual_seed(1), keep=3,
                                 normal=normal)  # fmt: skip
    assert handed == got


def test_effort_sets_the_proxies_and_is_checked_before_any_call():
    """effort="low" (default) ranks candidates with one proxy, "high" with PROXY_BAGS; the
    choice is in info, auto keeps its own rules with either, and a bad value raises before
    the first model call."""
    from torchspex import explain
    from torchspex.decoders import _candidates as cand

    n, budget = 12, 300
    calls = []

    def game(m):
        calls.append(m.shape[0])
        return hierarchical(m)

    low = explain(game, n, n_samples=budget, index="SV")
    high = explain(game, n, n_samples=budget, index="SV", effort="high")
    assert low.info["effort"] == "low" and low.info["proxy"]["bags"] == 1
    assert high.info["effort"] == "high" and high.info["proxy"]["bags"] == cand.PROXY_BAGS
    assert low.info["auto"]["choice"] == high.info["auto"]["choice"] == "regression"
    for r in (low, high):  # efficiency holds at either effort
        assert float(r.first_order("SV").sum()) == pytest.approx(
            float(r.full_value - r.baseline_value), abs=1e-10)
    calls.clear()
    with pytest.raises(ValueError, match="`effort` must be one of"):
        explain(game, n, n_samples=budget, effort="max")
    assert calls == []


def test_minimal_effort_fits_no_proxy_and_stays_exact_where_the_budget_pins_the_terms():
    """effort="minimal" fits no LightGBM proxy (no proxy info, no cross-fitted offset, no
    boosting at all), keeps efficiency, and is exact on a game whose terms are pairs and
    triples the budget holds as candidates; proxy=True beside it is refused before any call."""
    import lightgbm

    from torchspex import explain

    n, budget = 12, 400
    rng = torch.Generator().manual_seed(5)
    weights = torch.randn(n, generator=rng, dtype=torch.float64)

    def game(m: torch.Tensor) -> torch.Tensor:
        x = m.double()
        return x @ weights + 2.0 * x[:, 0] * x[:, 3] - 1.5 * x[:, 2] * x[:, 5] * x[:, 7]

    boosted = []
    real_train = lightgbm.Booster.update

    def counting(self, *args, **kwargs):  # every boosting round of any proxy
        boosted.append(1)
        return real_train(self, *args, **kwargs)

    lightgbm.Booster.update = counting
    try:
        minimal = explain(game, n, n_samples=budget, index="SV", effort="minimal")
    finally:
        lightgbm.Booster.update = real_train
    assert boosted == []
    assert minimal.info["effort"] == "minimal" and minimal.info["proxy"] is None
    assert minimal.info["auto"]["choice"] == "regression"
    sv = minimal.first_order("SV")
    assert float(sv.sum()) == pytest.approx(float(minimal.full_value - minimal.baseline_value),
                                            abs=1e-10)  # fmt: skip
    exact = weights.clone()
    exact[[0, 3]] += 1.0  # 2 x0 x3: 1 each
    exact[[2, 5, 7]] += -0.5  # -1.5 x2 x5 x7: -0.5 each
    torch.testing.assert_close(sv, exact, atol=1e-9, rtol=0)
    calls = []
    for proxy in (True, 1, np.True_):  # any true value, as the flag check accepts them
        with pytest.raises(ValueError, match="effort='minimal' fits no LightGBM proxy"):
            explain(lambda m: calls.append(1) or game(m), n, n_samples=budget,
                    effort="minimal", proxy=proxy)  # fmt: skip
    # below n + 2 calls auto needs a LightGBM proxy (both families): refused at "minimal"
    for index in ("SV", "BV"):
        with pytest.raises(BudgetTooSmallError, match="at effort='minimal'"):
            explain(lambda m: calls.append(1) or game(m), 100, n_samples=80, index=index,
                    effort="minimal")  # fmt: skip
    assert calls == []


def test_minimal_effort_screens_the_odd_characters_a_low_order_fit_misses(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """effort="minimal" has no proxy to propose terms of order 5 or more; the Walsh screen of
    the odd residual does (every odd character at once): a product of five features, whose
    Fourier terms reach order 5, gets exact Shapley values (c / 5 each) with the screen and not
    without it; where the pairs do not pin the low-order fit the screen stays off."""
    from torchspex.decoders import _candidates as cand

    n = 10
    weights = torch.linspace(-1.0, 1.0, n, dtype=torch.float64)

    def game(m: torch.Tensor) -> torch.Tensor:
        x = m.double()
        return x @ weights + 3.0 * x[:, :5].prod(dim=1)

    exact = weights.clone()
    exact[:5] += 3.0 / 5
    budget = 2 + 2 * cand.WALSH_SCREEN_ROWS * (n + math.comb(n, 3)) + 200
    screened = explain(game, n, n_samples=budget, index="SV", effort="minimal")
    # both parts screened, a quarter of the pairs each (some characters may coincide: none
    # here, odd and even ones differ)
    assert screened.info["walsh_screen"] == 2 * int(cand.WALSH_SCREEN_SHARE * (budget - 2) // 2)
    torch.testing.assert_close(screened.first_order("SV"), exact, atol=1e-9, rtol=0)
    monkeypatch.setattr(cand, "WALSH_SCREEN_FEATURES", 0)
    plain = explain(game, n, n_samples=budget, index="SV", effort="minimal")
    assert plain.info["walsh_screen"] is None
    assert float((plain.first_order("SV") - exact).abs().max()) > 1e-3
    monkeypatch.undo()
    monkeypatch.setattr(cand, "WALSH_SCREEN_EVEN", False)
    small = explain(game, n, n_samples=300, index="SV", effort="minimal")  # 149 pairs < 260
    assert small.info["walsh_screen"] is None


def test_minimal_effort_screens_the_even_characters_the_pairs_need(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The even part's screen proposes the order-4 characters of a product of four features
    (the proxy's deeper splits would): with it the k-SII pairs are exact (those of the
    exhaustive decode), without it they are not; the Shapley values are the same either way."""
    from torchspex.decoders import _candidates as cand

    n = 10
    weights = torch.linspace(-1.0, 1.0, n, dtype=torch.float64)

    def game(m: torch.Tensor) -> torch.Tensor:
        x = m.double()
        return x @ weights + 2.0 * x[:, :4].prod(dim=1) + x[:, 5] * x[:, 8]

    exact = explain(game, n, n_samples=1 << n).to_index("k-SII", 2).values.to_dict()
    budget = 600
    with_screen = explain(game, n, n_samples=budget, index="k-SII", max_order=2,
                          effort="minimal")  # fmt: skip
    got = with_screen.values.to_dict()
    assert max(abs(got.get(k, 0.0) - v) for k, v in exact.items()) < 1e-8
    monkeypatch.setattr(cand, "WALSH_SCREEN_EVEN", False)
    without = explain(game, n, n_samples=budget, index="k-SII", max_order=2, effort="minimal")
    missed = without.values.to_dict()
    assert max(abs(missed.get(k, 0.0) - v) for k, v in exact.items()) > 1e-3
    torch.testing.assert_close(without.first_order("SV"), with_screen.first_order("SV"))


def test_screened_triples_find_pure_parities_a_tree_misses():
    """A game of pure order-3 parities (no lower-order term on their features) gives a tree
    nothing to split on; the screen of the odd residual ranks the two strongest of those
    triples first (only what beats the universal threshold is returned, best first), and the
    default decode gets the Shapley values exactly at 402 calls: -2 F_K / |K| to each member
    of each odd term K."""
    from torchspex.decoders import _candidates as cand
    from torchspex.sampling.coalitions import paired_coalitions

    n = 24
    planted = [((1, 5, 9), 1.5), ((2, 7, 20), 1.1), ((11, 12, 19), 0.7)]
    first = [(3, 0.5), (17, -0.25)]

    def f(m: torch.Tensor) -> torch.Tensor:
        z = 1.0 - 2.0 * m.double()  # (-1)^x
        out = sum(c * z[:, i] for i, c in first)
        for (i, j, k), c in planted:
            out = out + c * z[:, i] * z[:, j] * z[:, k]
        return out

    masks, weights = paired_coalitions(n, 402, torch.Generator().manual_seed(0), "kernel")
    x, y = masks[2::2], f(masks)
    odd = ((y[2::2] - y[3::2]) / 2).unsqueeze(1)
    rows, score = cand._screened_triples(x, odd, weights[2::2], n, 10)
    assert [tuple(r) for r in rows[:2].tolist()] == [planted[0][0], planted[1][0]]
    assert rows.shape[0] <= 10 and bool(torch.all(score[:-1] >= score[1:]))
    want = torch.zeros(n, dtype=torch.float64)
    for i, c in first:
        want[i] -= 2 * c
    for term, c in planted:
        want[list(term)] -= 2 * c / 3
    res = explain(f, n, n_samples=402, generator=0, index="SV")
    assert torch.allclose(res.first_order("SV"), want, atol=1e-9)


@pytest.mark.parametrize("n", [3, 4, 9, 31])
def test_the_triple_screen_scores_every_triple_as_the_full_tensor_does(n):
    """The screen forms each triple's estimate once (``i < j < k``, one matrix product per
    first feature); the triples come in ``torch.combinations`` order and every score is the
    one the full tensor ``sum_p r_p z_pi z_pj z_pk`` gives, so the screen returns what that
    tensor would (the triples beyond the threshold, best first)."""
    from torchspex.decoders import _candidates as cand
    from torchspex.decoders.refit import walsh_design

    combos, starts = cand._triples(n)
    assert torch.equal(combos, torch.combinations(torch.arange(n), 3))
    assert starts[-1] == combos.shape[0] and len(starts) == max(n - 2, 0) + 1
    g = torch.Generator().manual_seed(n)
    p = 40 * n
    x = torch.rand(p, n, generator=g) < 0.5
    z = walsh_design(x, cand._first_order_rows(n, 1)[1:], n)
    # a planted triple so that at least one stands out of the threshold
    y = (2.0 * z[:, 0] * z[:, 1] * z[:, n - 1] + 0.5 * torch.randn(p, generator=g,
         dtype=torch.float64)).unsqueeze(1)  # fmt: skip
    w = torch.rand(p, generator=g, dtype=torch.float64) + 0.5
    rows, score = cand._screened_triples(x, y, w, n, combos.shape[0])
    assert rows.shape[0] >= 1 and tuple(rows[0].tolist()) == (0, 1, n - 1)
    gram = z.T @ (w.unsqueeze(1) * z)
    b = torch.linalg.solve(gram + 1e-9 * torch.diagonal(gram).mean() * torch.eye(n,
                           dtype=torch.float64), z.T @ (w.unsqueeze(1) * y))  # fmt: skip
    r = (w.unsqueeze(1) * (y - z @ b) / w.sum())[:, 0]
    full = torch.einsum("p,pi,pj,pk->ijk", r, z, z, z)
    want = full[rows[:, 0], rows[:, 1], rows[:, 2]] ** 2
    assert torch.allclose(score, want, rtol=1e-10, atol=1e-300)
    assert bool(torch.all(score[:-1] >= score[1:]))


@pytest.mark.parametrize("walsh", [False, True])
@pytest.mark.parametrize("constrained", [False, True])
@pytest.mark.parametrize("rows", [200, 30])  # 30 rows for 40 columns: rank deficient
def test_averaged_fit_matches_each_settings_kkt_fit(constrained, rows, walsh, monkeypatch):
    """The averaged fit through one Cholesky factor per penalty (every prefix from it, each
    refined) equals the mean of the KKT fits of the settings to round-off. In a +-1 (Walsh)
    design the settings of one penalty share one factor."""
    from torchspex.decoders import _linalg

    a, aw, y, w, _, c, d, *_ = _cv_problem(constrained)
    if walsh:
        a = torch.sign(a)
        aw = w.unsqueeze(1) * a
    a, aw, y = a[:rows], aw[:rows], y[:rows]
    factors = []
    original = _linalg.ShiftedCholesky.__call__
    monkeypatch.setattr(_linalg.ShiftedCholesky, "__call__",
                        lambda self, shift: factors.append(1) or original(self, shift))
    gram, rhs = a.T @ aw, aw.T @ y
    settings = [(40, 1e-3, 0.0), (20, 1e-3, 0.0), (9, 0.0, 0.0), (40, 1e-1, 1e-2)]
    got = pf._averaged_fit(gram, rhs, c, d, settings, 4)
    assert len(factors) == (3 if walsh else 4)
    want = torch.zeros(40, 2, dtype=torch.float64)
    for k, pen, fixed_pen in settings:
        penalty = torch.full((k,), pen, dtype=torch.float64)
        penalty[:4] = fixed_pen
        want[:k] += pf._solve_refined(gram[:k, :k], rhs[:k], penalty,
                                       None if c is None else c[:, :k], d) / len(settings)
    # the minimum-norm directions of a rank-deficient system are resolved by the 1e-9 ridge
    # in both: agreement to that ridge's reach, not to round-off
    tol = 1e-10 if rows > 40 else 1e-6
    assert torch.allclose(got, want, rtol=0, atol=tol * float(want.abs().max()))
    if rows > 40:  # a full-rank unpenalized fit is exact: its residual is orthogonal
        exact = pf._averaged_fit(gram, rhs, c, d, [(40, 0.0, 0.0)], 4)
        if c is None:
            assert torch.allclose(gram @ exact, rhs, rtol=0, atol=1e-10 * float(rhs.abs().max()))


def test_averaged_fit_falls_back_to_kkt_where_the_factor_fails(monkeypatch):
    from torchspex.decoders import _linalg

    a, aw, y, _, _, c, d, *_ = _cv_problem(True)
    gram, rhs = a.T @ aw, aw.T @ y
    settings = [(40, 1e-3, 0.0), (12, 1e-3, 0.0)]
    want = pf._averaged_fit(gram, rhs, c, d, settings, 4)

    def failing(self, shift):
        factor, info = torch.linalg.cholesky_ex(self.base)
        return factor, torch.ones_like(info)

    monkeypatch.setattr(_linalg.ShiftedCholesky, "__call__", failing)
    got = pf._averaged_fit(gram, rhs, c, d, settings, 4)
    assert torch.allclose(got, want, rtol=0, atol=1e-10 * float(want.abs().max()))


def test_fold_normals_are_the_normal_equations_and_their_training_shares():

    a, aw, y, *_ = _cv_problem(False)
    fold = torch.randperm(a.shape[0], generator=torch.Generator().manual_seed(0)) % 5
    got_fold, gram, rhs, grams, rhss = pf._fold_normals(a, aw, y, fold, 5)
    assert got_fold is fold and len(grams) == len(rhss) == 5
    assert torch.allclose(gram, a.T @ aw, rtol=1e-13, atol=1e-12)
    assert torch.allclose(rhs, aw.T @ y, rtol=1e-13, atol=1e-12)
    for f in range(5):  # each fold's training share: the normal equations without its rows
        train = fold != f
        assert torch.allclose(grams[f], a[train].T @ aw[train], rtol=0, atol=1e-12)
        assert torch.allclose(rhss[f], aw[train].T @ y[train], rtol=0, atol=1e-12)


def test_projected_spread_is_the_projection_of_the_spread():
    """_coefficient_spread(project=T) is T times the coefficients' spread: the covariance of
    linear values of the coefficients without the [o, s, p] factor."""

    g = torch.Generator().manual_seed(2)
    a, _, _, w, _, c, _, *_ = _cv_problem(True)
    resid = torch.randn(a.shape[0], 2, generator=g, dtype=torch.float64)
    penalty = torch.full((a.shape[1],), 1e-3, dtype=torch.float64)
    strata = (torch.arange(a.shape[0]) % 3, torch.full((a.shape[0],), 0.25, dtype=torch.float64))
    project = torch.randn(7, a.shape[1], generator=g, dtype=torch.float64)
    full = pf._coefficient_spread(a, w, resid, penalty, c, strata)
    got = pf._coefficient_spread(a, w, resid, penalty, c, strata, project=project)
    assert got.shape == (2, 7, a.shape[0])
    assert torch.allclose(got, project @ full, rtol=0, atol=1e-12 * float(full.abs().max()))


def test_index_map_is_the_conversion_of_each_coefficient():
    from torchspex.decoders import _even
    from torchspex.fourier import fourier_to_index

    idx = torch.tensor([[0, 1, -1, -1], [0, 1, 2, 3], [1, 2, -1, -1], [0, -1, -1, -1],
                        [0, 1, 2, 4]])  # fmt: skip
    coef = torch.tensor([0.5, -1.0, 2.0, 0.3, 0.7], dtype=torch.float64)
    spec = SparseSpectrum(idx, coef, 5)
    for index in ("k-SII", "STII", "FSII"):
        view = fourier_to_index(spec, index, 2).to_dict()
        want = torch.tensor([v for k, v in sorted(view.items()) if len(k) == 2],
                            dtype=torch.float64)
        got = _even._index_map(idx, 5, index, 2) @ coef  # pairs in ascending order
        assert torch.allclose(got, want, rtol=0, atol=1e-14), index
    assert _even._index_map(idx[3:4, :1], 5, "k-SII", 2).shape == (0, 1)


def test_penalty_walk_finds_the_best_of_a_unimodal_ladder_with_fewer_scores():

    for best in range(5):
        calls = []

        def score(i, first, best=best, calls=calls):
            calls.append((i, first))
            return [(1.0 + abs(i - best), 3, float(i), 0.0)]

        got = pf._penalty_walk(score, 5)
        assert min(got, key=lambda i: got[i][0][0]) == best
        assert calls[0][1] and not any(first for _, first in calls[1:])
        assert len(calls) == (4 if best < 2 else 3)


def test_cross_validation_walk_keeps_the_full_grids_best(monkeypatch):

    for constrained in (False, True):
        args = _cv_problem(constrained)
        walk = pf._cross_validate(*args, torch.Generator().manual_seed(1), keep=3)
        monkeypatch.setattr(pf, "PENALTY_WALK", False)
        full = pf._cross_validate(*args, torch.Generator().manual_seed(1), keep=3)
        monkeypatch.setattr(pf, "PENALTY_WALK", True)
        # the same candidates score alike up to round-off (the walk batches its penalties
        # differently: the last digit moves with the CPU's kernels, e.g. AVX512)
        def same(a, b):
            return a[1:] == b[1:] and math.isclose(a[0], b[0], rel_tol=1e-12)

        assert same(walk[0], full[0])
        assert all(any(same(t, f) for f in full) or t[0] > full[-1][0] or t[2] for t in walk)


def test_fixed_penalties_are_walked_to_the_full_ladders_best(monkeypatch):
    """With a ladder of penalties on the always-kept terms (the odd part around a proxy), the
    walk over it (FIXED_PENALTY_WALK) keeps the best setting of the whole ladder and scores
    fewer of its penalties."""
    fixed = (0.0, 1e-2, 1e-1, 1.0, 10.0, 100.0, 1000.0)
    seen: list[float] = []
    real = pf._prefix_solutions

    def spy(chol, *args):
        seen.append(float(chol.shape[1]))
        return real(chol, *args)

    monkeypatch.setattr(pf, "_prefix_solutions", spy)
    for constrained in (False, True):
        args = list(_cv_problem(constrained))
        args[9] = fixed  # the fixed terms' penalties
        seen.clear()
        walk = pf._cross_validate(*args, torch.Generator().manual_seed(1), keep=3)
        n_walk = len(seen)
        monkeypatch.setattr(pf, "FIXED_PENALTY_WALK", False)
        seen.clear()
        full = pf._cross_validate(*args, torch.Generator().manual_seed(1), keep=3)
        monkeypatch.setattr(pf, "FIXED_PENALTY_WALK", True)
        assert walk == full
        assert n_walk < len(seen)


@pytest.mark.parametrize("n", [1, 6, 11])
def test_walsh_normals_equal_the_design_products(n):
    """The fold normal equations from a Walsh-Hadamard transform of the rows' histogram equal
    the products of the Walsh design (duplicate rows, the empty term, every order)."""
    from torchspex.decoders.refit import walsh_design

    g = torch.Generator().manual_seed(n)
    p = 90
    x = torch.rand(p, n, generator=g) < 0.5
    x[1] = x[0]  # a repeated mask
    support = torch.unique(torch.where(torch.rand(40, 3, generator=g) < 0.3, -1,
                                       torch.randint(0, n, (40, 3), generator=g)), dim=0)
    support = torch.cat([torch.full((1, 3), -1), support])  # the empty set too
    support = torch.stack([torch.tensor(sorted(set(r.tolist()) - {-1}) + [-1] * 3)[:3]
                           for r in support]).unique(dim=0)  # fmt: skip
    w = torch.rand(p, generator=g, dtype=torch.float64)
    y = torch.randn(p, 2, generator=g, dtype=torch.float64)
    fold = torch.randperm(p, generator=g) % 5
    a = walsh_design(x, support, n)
    want = pf._fold_normals(a, w.unsqueeze(1) * a, y, fold, 5)
    got = pf._walsh_normals(x, support, w, y, fold, 5, n)
    assert got[0] is fold
    for gw, ww in zip(got[1:3], want[1:3]):
        assert torch.allclose(gw, ww, rtol=0, atol=1e-12)
    for part in (3, 4):
        for gw, ww in zip(got[part], want[part]):
            assert torch.allclose(gw, ww, rtol=0, atol=1e-12)
    # the float32 training Gram matrices (for a float32 cross-validation): the float64 ones
    # rounded once, the rest unchanged
    single = pf._walsh_normals(x, support, w, y, fold, 5, n, torch.float32)
    assert single[3].dtype == torch.float32 and single[3].shape == (5, *got[1].shape)
    assert torch.equal(single[3], torch.stack(got[3]).float())
    for part in (1, 2, 4):
        for gw, ww in zip(single[part], got[part]):
            assert torch.equal(gw, ww)


@pytest.mark.parametrize("constrained", [False, True])
def test_coefficient_spread_is_the_stratified_hc2_sandwich(constrained):
    """The spread from the Cholesky factor equals the sandwich written out with the explicit
    constrained inverse Q: leverages w_i a_i' Q a_i, residuals / sqrt(1 - h_ii), per stratum
    Q z' (centred, finite-population factor)."""

    g = torch.Generator().manual_seed(3)
    p, s = 120, 30
    a = torch.sign(torch.randn(p, s, generator=g, dtype=torch.float64))
    w = 0.5 + torch.rand(p, generator=g, dtype=torch.float64)
    resid = torch.randn(p, 2, generator=g, dtype=torch.float64)
    penalty = torch.full((s,), 1e-3, dtype=torch.float64)
    c = torch.ones(1, s, dtype=torch.float64) if constrained else None
    label = torch.arange(p) % 3
    label[:5] = -1  # an enumerated class: no sampling variance
    fraction = torch.full((p,), 0.25, dtype=torch.float64)
    got = pf._coefficient_spread(a, w, resid, penalty, c, (label, fraction))
    gram = a.T @ (w.unsqueeze(1) * a)
    h = gram + torch.diag((penalty + 1e-9) * torch.diagonal(gram).mean())
    q = torch.linalg.inv(h)
    if c is not None:
        q = q - q @ c.T @ torch.linalg.inv(c @ q @ c.T) @ c @ q
    lev = (w * torch.einsum("ps,st,pt->p", a, q, a)).clamp(0.0, 0.99)
    z = (w.unsqueeze(1) * a).unsqueeze(0) * (resid / (1 - lev).sqrt().unsqueeze(1)).T.unsqueeze(2)
    want = torch.zeros(2, s, p, dtype=torch.float64)
    for h_label in range(3):
        rows = (label == h_label).nonzero().squeeze(1)
        zh = z[:, rows] - z[:, rows].mean(dim=1, keepdim=True)
        m = rows.numel()
        want[:, :, rows] = (q @ zh.mT) * math.sqrt(m / (m - 1) * 0.75)
    # the leverages are computed in float32 (they only scale the residuals): 1e-6, not 1e-12
    assert torch.allclose(got, want, rtol=0, atol=1e-6 * float(want.abs().max()))


def _planted_triples_game(seed: int, n: int = 64) -> SparseSpectrum:
    """A constant, 10 first-order, 10 pair and 5 triple Walsh terms (:func:`planted_spectrum`
    per order)."""
    g = torch.Generator().manual_seed(seed)
    parts = [planted_spectrum(n, 10, 1, g),
             planted_spectrum(n, 10, 2, g, min_order=2, constant=None),
             planted_spectrum(n, 5, 3, g, min_order=3, constant=None)]  # fmt: skip
    idx = torch.cat([torch.nn.functional.pad(part.indices, (0, 3 - part.indices.shape[1]),
                                             value=-1) for part in parts])  # fmt: skip
    return SparseSpectrum(idx, torch.cat([part.coefficients for part in parts]), n).coalesce()


@pytest.mark.parametrize(("game_seed", "seed"), [(2, 2), (3, 1)])
def test_the_odd_part_rescreens_the_triples_it_missed(game_seed, seed, monkeypatch):
    """A planted triple that neither the proxy nor the first screen ranks (the other planted
    triples hide it) is the fitted odd part's whole residual: the second screen finds it, the
    refit on the same folds is kept, and the Shapley values are exact. Without the second
    screen they are not; with a share test above the residual's share no refit runs."""
    from torchspex.decoders import _candidates as cand
    from torchspex.decoders import regression as reg
    from torchspex.decoders.base import Evaluator
    from torchspex.fourier import fourier_to_index

    spec = _planted_triples_game(game_seed)
    want = fourier_to_index(spec, "SV", 1).to_dict()

    def run():
        ev = Evaluator(lambda m: spec.evaluate(m), 64, n_samples=1024)
        got, info = reg.decode_regression(ev, 64, n_samples=1024, index="SV",
                                          generator=torch.Generator().manual_seed(seed))
        sv = fourier_to_index(got, "SV", 1).to_dict()
        return max(abs(sv.get(k, 0.0) - v) for k, v in want.items()), info["odd"]

    err, info = run()
    assert err < 1e-9
    assert info["rescreen"]["refit_kept"] and info["rescreen"]["new_triples"] >= 1
    assert info["rescreen"]["share"] >= cand.RESCREEN_SHARE
    monkeypatch.setattr(cand, "RESCREEN_SHARE", info["rescreen"]["share"] * 1.01)
    high, info_high = run()
    assert high > 1e-3 and "refit_kept" not in info_high["rescreen"]
    monkeypatch.setattr(cand, "RESCREEN_TRIPLES", False)
    off, info_off = run()
    assert off == high and "rescreen" not in info_off


def test_shapley_values_alone_defer_the_even_part():
    """index="SV" fits what the Shapley values need (the odd part) and defers the even part to
    the first read of the spectrum: the Shapley values are those of the eager fit of the same
    design (index="k-SII"), reading them does not complete it, the completed spectrum is
    bitwise the eager one, and info["even"] (also in copies of info) is filled when it
    completes, with its seconds."""
    from torchspex.fourier import DeferredSpectrum

    n = 12
    w = torch.randn(n, n, generator=torch.Generator().manual_seed(0), dtype=torch.float64) / 3

    def f(masks: torch.Tensor) -> torch.Tensor:
        x = masks.double()
        return torch.tanh(x @ w).sum(dim=1) + x[:, 0] * x[:, 1] * x[:, 2]

    lazy = explain(f, n, n_samples=600, generator=1, index="SV")
    eager = explain(f, n, n_samples=600, generator=1, index="k-SII")
    assert isinstance(lazy.spectrum, DeferredSpectrum) and lazy.spectrum.is_deferred
    assert not isinstance(eager.spectrum, DeferredSpectrum)
    assert lazy.info["even"] == {"deferred": True} and math.isnan(lazy.info["cv_error"])
    sv = lazy.first_order("SV")
    # what an SV result is read through: none of it completes the spectrum
    text = (f"{lazy!r} {lazy} {lazy[(0,)]} {lazy.top_k(3)} {len(lazy)} {lazy.to_dict()}"
            f"{lazy._repr_html_()}")
    assert "n_terms=" in text and lazy.spectrum.is_deferred
    assert lazy.to_index("SV").values.to_dict() == eager.to_index("SV").values.to_dict()
    assert lazy.baseline_value == pytest.approx(eager.baseline_value, abs=1e-12)
    assert lazy.full_value == pytest.approx(eager.full_value, abs=1e-12)
    assert lazy.spectrum.is_deferred
    torch.testing.assert_close(sv, eager.first_order("SV"), rtol=0, atol=1e-12)
    ends = torch.stack([torch.zeros(n, dtype=torch.bool), torch.ones(n, dtype=torch.bool)])
    assert float(sv.sum()) == pytest.approx(float(f(ends[1:]) - f(ends[:1])), abs=1e-12)
    info_copy = dict(lazy.info)
    pairs = lazy.to_index("k-SII", 2).values
    assert not lazy.spectrum.is_deferred
    torch.testing.assert_close(pairs.coefficients, eager.to_index("k-SII", 2).values.coefficients,
                               rtol=0, atol=0)  # fmt: skip
    assert torch.equal(lazy.spectrum.indices, eager.spectrum.indices)
    assert torch.equal(lazy.spectrum.coefficients, eager.spectrum.coefficients)
    even = info_copy["even"]
    assert even["deferred"] and even["seconds"] > 0
    assert even["n_terms"] == eager.info["even"]["n_terms"]
    assert even["shrinkage"] == eager.info["even"]["shrinkage"]
    torch.testing.assert_close(lazy.first_order("SV"), sv, rtol=0, atol=0)


def test_high_effort_averages_the_plain_and_the_offset_fit_from_three_pairs_per_feature():
    """From OFFSET_FEATURES features, between AVERAGE_FROM and AVERAGE_BELOW pairs per feature,
    effort="high" returns the mean of the plain odd fit and the fit around the cross-fitted
    proxy (shifted onto the corners, so efficiency holds); effort="low" keeps the offset alone
    below CROSS_FIT_PAIRS and the plain fit above it."""
    n = 40
    g = torch.Generator().manual_seed(3)
    w = torch.randn(n, generator=g, dtype=torch.float64)

    def f(m: torch.Tensor) -> torch.Tensor:
        x = m.double()
        return torch.tanh(x @ w / 4) + 0.5 * x[:, 0] * x[:, 1] * x[:, 2]

    for budget, low in ((300, True), (450, None)):  # 3.7 and 5.6 pairs per feature
        infos = {}
        for effort in ("low", "high"):
            spec, info = decode_regression(Evaluator(f, n, n_samples=budget), n, n_samples=budget,
                                           index="SV", effort=effort)  # fmt: skip
            sv = _sv(spec, n)
            ends = f(torch.stack([torch.ones(n, dtype=torch.bool),
                                  torch.zeros(n, dtype=torch.bool)]))  # fmt: skip
            gap = abs(float(sv.sum()) - float(ends[0] - ends[1]))
            assert gap <= 1e-12 * float(abs(ends).max())
            infos[effort] = info["odd"]
        assert infos["high"]["proxy_offset"] == "averaged" and "offset_cv_error" in infos["high"]
        assert infos["low"].get("proxy_offset") == low


def test_pairs_rank_first_only_where_they_fit_the_term_cap():
    """Every pair ranks first among the even candidates only where all of them fit in the
    part's terms: at 48 features (1,128 pairs) and 1,149 pairs of samples the cap is 816
    terms, so forcing the pairs first filled it with pairs in the proxy's order (those it
    never used in index order) and left out the order-4 and order-5 terms of a planted
    hierarchical game, whose pairs then absorbed them (k-SII pair error 0.21 here); ranked by
    the proxy like every other term they come out exact (1.6e-14).
    """
    from itertools import combinations

    from torchspex.decoders import regression as reg

    n, calls = 48, 2300
    assert not reg._pairs_wanted({}, n, (calls - 2) // 2, reg.default_max_terms(n, 1149))
    assert reg._pairs_wanted({}, 13, 200, reg.default_max_terms(13, 200))  # all 78 fit
    g = torch.Generator().manual_seed(0)
    rows: set[tuple[int, ...]] = set()
    for order in (5, 5, 5, 3, 3, 3):  # each top term with every non-empty subset of it
        top = sorted(torch.randperm(n, generator=g)[:order].tolist())
        for k in range(1, order + 1):
            rows.update(combinations(top, k))
    ordered = sorted(rows, key=lambda s: (len(s), s))
    support = torch.zeros(len(ordered) + 1, n, dtype=torch.bool)
    for i, s in enumerate(ordered, start=1):
        support[i, list(s)] = True
    sign = torch.randint(0, 2, (len(ordered) + 1,), generator=g) * 2 - 1
    coef = (1.0 + torch.rand(len(ordered) + 1, generator=g, dtype=torch.float64)) * sign
    spec = SparseSpectrum.from_support(support, coef).coalesce()
    want = {k: v for k, v in fourier_to_index(spec, "k-SII", 2).to_dict().items() if len(k) == 2}
    res = explain(lambda m: spec.evaluate(m), n, n_samples=calls, generator=0, index="k-SII")
    got = {k: v for k, v in res.to_index("k-SII", 2).values.to_dict().items() if len(k) == 2}
    keys = set(want) | set(got)
    err = math.sqrt(sum((got.get(k, 0.0) - want.get(k, 0.0)) ** 2 for k in keys)
                    / sum(v * v for v in want.values()))  # fmt: skip
    assert err < 1e-6


@pytest.mark.parametrize(("n", "n_samples"), [(32, 100), (40, 300), (64, 300)])
def test_an_exactly_linear_game_stays_exact_where_the_proxy_offset_is_kept(n, n_samples):
    # from 32 features below 4 pairs per feature the odd part is fitted around a cross-fitted
    # proxy whatever the comparison says; a linear game made that fit inexact (SV error
    # 0.37-0.71), while the first-order terms alone reproduce every pair
    w = torch.randn(n, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    res = explain(lambda m: m.double() @ w, n, method="regression", n_samples=n_samples,
                  index="SV")  # fmt: skip
    assert res.info["odd_linear"] is True and "proxy_offset" not in res.info["odd"]
    torch.testing.assert_close(res.first_order("SV"), w, rtol=0, atol=1e-12)
    # a pair's product only adds even terms and first-order ones: its odd part stays linear
    pair = explain(lambda m: m.double() @ w + m[:, 0].double() * m[:, 1].double(), n,
                   method="regression", n_samples=n_samples, index="SV")  # fmt: skip
    assert pair.info["odd_linear"] is True
    # a triple's product has an odd term of order 3: the offset stays
    bent = explain(lambda m: m.double() @ w + m[:, :3].double().prod(1), n,
                   method="regression", n_samples=n_samples, index="SV")  # fmt: skip
    assert "odd_linear" not in bent.info and bent.info["odd"]["proxy_offset"] is True


@pytest.mark.parametrize(
    ("option", "match"),
    [({"max_terms": 0}, "`max_terms` must be a positive int"),
     ({"max_terms": -3}, "`max_terms` must be a positive int"),
     ({"max_terms": True}, "`max_terms` must be a positive int"),
     ({"max_terms": 2.5}, "`max_terms` must be a positive int"),
     ({"pairs": "yes"}, "`pairs` must be True, False or None"),
     ({"pairs": 0}, "`pairs` must be True, False or None")],
)
def test_bad_regression_options_are_refused_before_any_call(option, match):
    # max_terms=0 was silently the default, -3 and True a cap of one term, 2.5 a TypeError deep
    # in the fit; pairs="yes" and 0 were taken as flags
    calls = []
    with pytest.raises(ValueError, match=match):
        explain(lambda m: calls.append(1) or m.double().sum(1), 12, method="regression",
                n_samples=200, **option)  # fmt: skip
    assert not calls
