import pytest
import torch

from tests.helpers import PlantedGame, even_shift, held_out_r2
from torchspex import explain
from torchspex.decoders.base import BudgetTooSmallError, Evaluator
from torchspex.decoders.exhaustive import decode_exhaustive
from torchspex.decoders.proxyspex import MIN_SAMPLES, decode_proxyspex, truncate_by_energy
from torchspex.fourier import SparseSpectrum, moebius_to_fourier, spectrum_to_dense

pytest.importorskip("lightgbm")


@pytest.fixture(autouse=True)
def one_torch_thread():
    # Many tiny BLAS/OpenMP calls: on a shared 2-core box two threads per process spin on each
    # other (10x slower). Single-threaded like the LightGBM fits; restored afterwards.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def hierarchical_game(
    n: int, n_chains: int, depth: int, seed: int, n_outputs: int | None = None
) -> SparseSpectrum:
    """Sum of products over nested feature sets: every prefix of ``n_chains`` random chains
    of ``depth`` features gets a Möbius coefficient (so each high-order term comes with its
    subsets, the hierarchy ProxySPEX relies on). Returned in the Fourier basis."""
    g = torch.Generator().manual_seed(seed)
    sets, coef = [], []
    shape = () if n_outputs is None else (n_outputs,)
    for _ in range(n_chains):
        chain = torch.randperm(n, generator=g)[:depth].tolist()
        for k in range(1, depth + 1):
            sets.append(tuple(sorted(chain[:k])))
            coef.append(3.0 * 1.5**-k * torch.randn(shape, generator=g, dtype=torch.float64))
    moebius = SparseSpectrum.from_sets(sets, torch.stack(coef), n, basis="Moebius")
    return moebius_to_fourier(moebius)


def run(game: PlantedGame, n: int, n_samples: int, seed: int = 0, **kwargs):
    evaluator = Evaluator(game, n, n_samples=n_samples)
    spec, info = decode_proxyspex(
        evaluator, n, n_samples=n_samples, generator=torch.Generator().manual_seed(seed), **kwargs
    )
    return spec, info, evaluator


@pytest.mark.slow
@pytest.mark.parametrize(("n", "n_samples", "seed"), [(60, 1500, 0), (100, 2000, 1)])
def test_recovers_planted_hierarchical_game(n, n_samples, seed):
    truth = hierarchical_game(n, n_chains=6, depth=4, seed=seed)
    game = PlantedGame(truth)
    spec, info, evaluator = run(game, n, n_samples, seed)
    r2 = held_out_r2(truth, spec, 3000, torch.Generator().manual_seed(99))
    assert r2 >= 0.95, info
    assert evaluator.n_evaluations == game.n_evaluations == n_samples
    assert spec.basis == "Fourier" and spec.coefficients.dtype == torch.float64
    assert info["proxy"]["validation_r2"] > 0.9


def test_small_game_fast_path_and_budget():
    n = 20
    truth = hierarchical_game(n, n_chains=3, depth=3, seed=2)
    game = PlantedGame(truth)
    spec, info, evaluator = run(game, n, 400, max_depth=3, max_rounds=300)
    assert evaluator.n_evaluations == game.n_evaluations == 400
    assert held_out_r2(truth, spec, 2000, torch.Generator().manual_seed(5)) >= 0.95
    assert (spec.orders == 0).sum() == 1  # the empty set is always in the support
    assert info["n_terms_kept"] == spec.n_terms <= info["n_terms_read"] + 1


def test_same_generator_same_result_other_generator_differs():
    n = 20
    game = PlantedGame(hierarchical_game(n, n_chains=3, depth=3, seed=3))
    opts = {"max_depth": 3, "max_rounds": 200}
    a, info_a, _ = run(game, n, 300, seed=7, **opts)
    b, info_b, _ = run(game, n, 300, seed=7, **opts)
    c, _, _ = run(game, n, 300, seed=8, **opts)
    assert torch.equal(a.indices, b.indices)
    assert torch.equal(a.coefficients, b.coefficients)
    assert info_a["proxy"] == info_b["proxy"]
    assert not (a.indices.shape == c.indices.shape and torch.equal(a.coefficients, c.coefficients))


def test_max_order_caps_the_report_not_the_depth():
    # issue 28: max_order capped the proxy's depth, so a max_order=2 fit could not learn the
    # order-3 chains whose mass its Shapley values need
    n = 20
    truth = hierarchical_game(n, n_chains=3, depth=3, seed=4)
    spec, info, _ = run(PlantedGame(truth), n, 400, max_order=2, max_rounds=300)
    assert info["proxy"]["max_depth"] > 2  # the fit chose a depth above max_order ...
    assert spec.max_size > 2  # ... and kept the terms it found
    capped, _, _ = run(PlantedGame(truth), n, 400, max_order=2, max_depth=2, max_rounds=300)
    assert capped.max_size <= 2  # an explicit max_depth is still honoured
    want = spectrum_to_dense(truth)

    def err(s: SparseSpectrum) -> float:
        return float((spectrum_to_dense(s) - want).norm() / want.norm())

    assert err(spec) < 0.5 * err(capped)


def test_multi_output_fits_one_proxy_per_output_on_a_union_support():
    n = 20
    truth = hierarchical_game(n, n_chains=3, depth=3, seed=5, n_outputs=2)
    spec, info, evaluator = run(PlantedGame(truth), n, 500, max_depth=3, max_rounds=300)
    assert spec.coefficients.shape == (spec.n_terms, 2)
    assert isinstance(info["proxy"], list) and len(info["proxy"]) == 2
    assert evaluator.n_evaluations == 500
    for j in range(2):
        truth_j = truth.replace(coefficients=truth.coefficients[:, j])
        learned_j = spec.replace(coefficients=spec.coefficients[:, j])
        assert held_out_r2(truth_j, learned_j, 2000, torch.Generator().manual_seed(j)) >= 0.95


def test_proxy_coefficients_without_refit():
    n = 20
    truth = hierarchical_game(n, n_chains=3, depth=3, seed=6)
    spec, info, _ = run(PlantedGame(truth), n, 400, max_depth=3, refit=None, energy=1.0)
    assert info["energy"] == 1.0
    assert held_out_r2(truth, spec, 2000, torch.Generator().manual_seed(1)) >= 0.9


def test_budget_covering_every_mask_is_exact():
    n = 6
    truth = hierarchical_game(n, n_chains=2, depth=3, seed=7)
    spec, info, evaluator = run(PlantedGame(truth), n, 1000)
    exact, _ = decode_exhaustive(Evaluator(PlantedGame(truth), n), n)
    assert info["method"] == "exhaustive" and evaluator.n_evaluations == 64
    assert torch.allclose(spectrum_to_dense(spec), spectrum_to_dense(exact), atol=1e-12, rtol=0)
    # max_order caps the report, never the fit: every order of the exact spectrum is kept
    capped, capped_info, _ = run(PlantedGame(truth), n, 64, max_order=1)
    assert capped_info["exact"] and capped.n_terms == exact.n_terms == 64
    assert torch.allclose(spectrum_to_dense(capped), spectrum_to_dense(exact), atol=1e-12, rtol=0)


def test_explain_with_proxyspex():
    n = 20
    truth = hierarchical_game(n, n_chains=3, depth=2, seed=8)
    result = explain(PlantedGame(truth), n, method="proxyspex", n_samples=300, index="Fourier",
                     max_depth=2, max_rounds=200)
    assert result.n_evaluations == 300


def test_truncate_by_energy_rule():
    coef = torch.tensor([10.0, 4.0, -3.0, 2.0, 1.0, 0.0])
    sizes = torch.tensor([0, 1, 2, 1, 3, 1])
    # non-constant energy 16, 9, 4, 1 (total 30): 0.5 -> 16/30 = 0.53 reached with 1 term
    assert truncate_by_energy(coef, sizes, 0.5).tolist() == [True, True, False, False, False, False]
    # 0.95: 29/30 = 0.967 reached with 3 terms
    assert truncate_by_energy(coef, sizes, 0.95).tolist() == [True, True, True, True, False, False]
    # 1.0 keeps every nonzero term, never the all-zero one
    assert truncate_by_energy(coef, sizes, 1.0).tolist() == [True, True, True, True, True, False]
    assert truncate_by_energy(coef, sizes, 1.0, max_terms=2).tolist() == [
        True, True, True, False, False, False]
    # a constant-only spectrum keeps just the constant; several outputs add their energies
    assert truncate_by_energy(torch.tensor([1.0, 0.0]), torch.tensor([0, 1])).tolist() == [
        True, False]
    two = torch.tensor([[0.0, 0.0], [3.0, 0.0], [0.0, 2.0], [0.1, 0.1]])
    assert truncate_by_energy(two, torch.tensor([0, 1, 1, 2]), 0.9).tolist() == [
        True, True, True, False]


def test_truncate_by_energy_matches_shapiq_rule():
    # shapiq keeps the terms that reach 95% (`argmin(cumsum < 0.95) + 1` of them).
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        coef = torch.randn(50, generator=g, dtype=torch.float64) * torch.rand(50, generator=g)
        sizes = torch.ones(50, dtype=torch.long)
        power = torch.sort(coef**2, descending=True).values
        share = torch.cumsum(power, 0) / power.sum()
        expected = int(torch.argmin((share < 0.95).int())) + 1
        assert int(truncate_by_energy(coef, sizes, 0.95).sum()) == expected


def calls_counter():
    calls = []

    def f(masks):
        calls.append(masks.shape[0])
        return masks.double().sum(dim=1)

    return f, calls


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"n_samples": None}, ValueError, r"needs a budget.*n_samples=800"),
        ({"n_samples": 10}, BudgetTooSmallError, f"n_samples >= {MIN_SAMPLES}"),
        ({"n_samples": 500, "bogus": 1}, TypeError, "unknown options \\['bogus'\\]"),
        ({"n_samples": 500, "energy": 1.5}, ValueError, "`energy` must be"),
        ({"n_samples": 500, "energy": ()}, ValueError, "`energy` must name at least one"),
        ({"n_samples": 500, "refit": "lasso"}, ValueError, "`refit` must be one of"),
        ({"n_samples": 500, "max_depth": 0}, ValueError, "`max_depth` must be"),
        ({"n_samples": 500, "learning_rate": 2.0}, ValueError, "`learning_rate` must be"),
        ({"n_samples": 500, "validation_fraction": 0.9}, ValueError, "`validation_fraction`"),
        ({"n_samples": 500, "max_terms": 0}, ValueError, "`max_terms` must be"),
        ({"n_samples": 500, "shrink": "yes"}, ValueError, "`shrink` must be True or False"),
    ],
)
def test_errors_before_any_evaluation(kwargs, exc, match):
    f, calls = calls_counter()
    evaluator = Evaluator(f, 20, n_samples=kwargs.get("n_samples"))
    with pytest.raises(exc, match=match):
        decode_proxyspex(evaluator, 20, **kwargs)
    assert calls == [] and evaluator.n_evaluations == 0


def test_budget_error_carries_minimum():
    with pytest.raises(BudgetTooSmallError) as err:
        decode_proxyspex(Evaluator(calls_counter()[0], 5), 5, n_samples=20)
    assert err.value.minimum == 32  # 2^5 masks would be exact


def _pairs_and_first(spec: SparseSpectrum):
    from torchspex.fourier import fourier_to_index

    ksii = fourier_to_index(spec, "k-SII", 2)
    sv = fourier_to_index(spec, "SV", 1)
    first = torch.zeros(spec.n_features, dtype=torch.float64)  # [n], absent terms 0
    one = sv.orders == 1
    first[sv.indices[one, 0]] = sv.coefficients[one].double().reshape(-1)
    return ksii.coefficients[ksii.orders == 2], first


def test_shrink_pulls_noise_pairs_toward_zero_and_keeps_the_odd_part():
    """An additive game plus noise has no pairs: whatever ProxySPEX reads as pairs is noise,
    and the jackknife James-Stein factor pulls them toward zero; the odd part (the Shapley
    values) is untouched and the even change at the corners is spread back over the
    constant, the even terms and every pair as one shift."""
    n, m = 40, 160
    g = torch.Generator().manual_seed(3)
    w = torch.randn(n, generator=g, dtype=torch.float64)

    def noisy(masks):
        x = masks.double()
        return x @ w + 0.8 * torch.randn(x.shape[0], generator=g, dtype=torch.float64)

    plain, _, _ = run(noisy, n, m, seed=1)
    g.manual_seed(3)
    torch.randn(n, generator=g, dtype=torch.float64)  # the same noise draws again
    shrunk, info, _ = run(noisy, n, m, seed=1, shrink=True)
    (factor,) = info["shrinkage"]
    assert 0.0 <= factor < 0.5
    pairs_plain, sv_plain = _pairs_and_first(plain)
    pairs_shrunk, sv_shrunk = _pairs_and_first(shrunk)
    assert pairs_plain.abs().sum() > 0
    assert float(pairs_shrunk.norm()) <= 0.5 * float(pairs_plain.norm())
    shift = even_shift(shrunk, plain, factor)
    assert float(shift.max() - shift.min()) < 1e-10
    assert torch.allclose(sv_shrunk, sv_plain, atol=1e-12)
    ends = torch.stack([torch.zeros(n, dtype=torch.bool), torch.ones(n, dtype=torch.bool)])
    assert torch.allclose(shrunk.evaluate(ends), plain.evaluate(ends), atol=1e-10)


def test_shrink_keeps_real_pairs():
    n, m = 30, 400
    truth = SparseSpectrum.from_sets([(), (0,), (2,), (0, 1), (3, 4)],
                                     [1.0, -0.5, 0.7, 2.0, -1.5], n)  # fmt: skip
    game = PlantedGame(truth)
    spec, info, _ = run(game, n, m, shrink=True)
    (factor,) = info["shrinkage"]
    assert factor > 0.99
    pairs, _ = _pairs_and_first(spec)
    exact, _ = _pairs_and_first(truth)
    assert torch.allclose(pairs.sort().values, exact.sort().values, atol=0.02)


class CountingMLP:
    """A small random tanh MLP on masked inputs (removed features set to 0), counting calls."""

    def __init__(self, n: int, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        self.net = torch.nn.Sequential(
            torch.nn.Linear(n, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1)
        ).double()
        with torch.no_grad():
            for p in self.net.parameters():
                p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64))
        self.x = torch.randn(n, generator=g, dtype=torch.float64)
        self.n_calls = 0

    def __call__(self, masks: torch.Tensor) -> torch.Tensor:
        self.n_calls += masks.shape[0]
        with torch.no_grad():
            return self.net(masks.double() * self.x).squeeze(-1)

    def gap(self) -> float:
        """``f(N) - f(∅)``, not counted."""
        n = self.x.shape[0]
        with torch.no_grad():
            ends = torch.stack([torch.zeros(n), torch.ones(n)]).double() * self.x
            values = self.net(ends).squeeze(-1)
        return float(values[1] - values[0])


def test_every_mask_with_max_order_is_the_exact_spectrum():
    # issue 28: n_samples >= 2^n evaluated every mask, then dropped the orders above max_order,
    # so the Shapley values no longer summed to f(N) - f(∅)
    n = 10
    model = CountingMLP(n, seed=0)
    result = explain(model, n, method="proxyspex", n_samples=1 << n, max_order=2)
    assert model.n_calls == result.n_evaluations == 1 << n
    exact = explain(CountingMLP(n, seed=0), n, method="exhaustive")
    assert result.spectrum.max_size > 2  # the fit keeps every order ...
    dense, want = spectrum_to_dense(result.spectrum), spectrum_to_dense(exact.spectrum)
    assert torch.allclose(dense, want, atol=1e-10, rtol=0)
    assert max(len(k) for k in result.to_dict()) <= 2  # ... the report applies max_order
    sv = result.first_order("SV")
    assert abs(float(sv.sum()) - model.gap()) < 1e-10
    assert torch.allclose(sv, exact.first_order("SV"), atol=1e-10, rtol=0)
    assert result.info["exact"] and result.info["method"] == "exhaustive"
    assert "2^10" in result.info["exact_reason"]


def test_max_order_below_every_mask_keeps_efficiency():
    # below 2^n the proxy's read-out keeps its own orders (max_order caps only the report)
    # and the corners make the learned function exact at ∅ and N
    n = 10
    model = CountingMLP(n, seed=1)
    result = explain(model, n, method="proxyspex", n_samples=300, max_order=2,
                     max_rounds=200)  # fmt: skip
    assert model.n_calls == result.n_evaluations <= 300
    assert result.info["corners_exact"]
    assert abs(float(result.first_order("SV").sum()) - model.gap()) < 1e-10
