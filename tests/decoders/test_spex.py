"""SPEX decoder: exact recovery, noise and dense tails, budgets, determinism, options."""

from __future__ import annotations

import warnings

import pytest
import torch

from tests.helpers import (
    PlantedGame,
    combine,
    dense_tail,
    held_out_r2,
    max_coefficient_error,
    planted_spectrum,
)
from torchspex import BudgetTooSmallError, explain
from torchspex.decoders import Evaluator
from torchspex.decoders.spex import decode_spex, default_degree
from torchspex.fourier import spectrum_to_dense
from torchspex.sampling import default_n_samples, min_spex_samples, spex_sample_count


def run(spectrum, n_samples, seed=0, noise_sd=0.0, **options):
    game = PlantedGame(spectrum, noise_sd=noise_sd, seed=seed + 11)
    evaluator = Evaluator(game, spectrum.n_features, n_samples=n_samples)
    spec, info = decode_spex(
        evaluator, spectrum.n_features, n_samples=n_samples,
        generator=torch.Generator().manual_seed(seed), **options,
    )
    return spec, info, game


@pytest.mark.parametrize(
    ("n", "n_terms", "order", "n_samples"),
    [(21, 8, 2, 1500), (64, 25, 3, 4000), (128, 40, 5, 12_000), (200, 60, 4, 12_000)],
)
def test_exact_recovery_of_planted_spectra(n, n_terms, order, n_samples):
    truth = planted_spectrum(n, n_terms, order, torch.Generator().manual_seed(n))
    spec, info, game = run(truth, n_samples, degree_parameter=max(order, 2))
    assert max_coefficient_error(truth, spec) < 1e-8
    assert spec.prune(atol=1e-8).n_terms == truth.n_terms
    assert game.n_evaluations <= n_samples
    assert info["n_evaluations"] == game.n_evaluations
    assert not info["exact"]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("n", "n_terms", "order", "n_samples"), [(1000, 100, 4, 50_000), (500, 250, 3, 40_000)]
)
def test_exact_recovery_large_n(n, n_terms, order, n_samples):
    truth = planted_spectrum(n, n_terms, order, torch.Generator().manual_seed(n))
    spec, info, game = run(truth, n_samples)
    assert max_coefficient_error(truth, spec) < 1e-8
    assert game.n_evaluations <= n_samples
    assert info["b"] == 8


def test_multi_output_recovery():
    truth = planted_spectrum(80, 30, 3, torch.Generator().manual_seed(3), n_outputs=3)
    spec, _, _ = run(truth, 6000)
    assert spec.out_shape == (3,)
    assert max_coefficient_error(truth, spec) < 1e-8


@pytest.mark.parametrize("noise_sd", [0.5, 2.0])
def test_noise_degrades_gracefully(noise_sd):
    truth = planted_spectrum(100, 40, 4, torch.Generator().manual_seed(5))
    spec, info, _ = run(truth, 8000, noise_sd=noise_sd)
    r2 = held_out_r2(truth, spec, 10_000, torch.Generator().manual_seed(1))
    assert r2 > (0.999 if noise_sd < 1 else 0.98)
    assert info["noise_sd"] == pytest.approx(noise_sd, rel=0.15)
    # the refit removes peeling bias: main coefficients within a few standard errors
    assert max_coefficient_error(truth, spec) < 10 * noise_sd / info["n_evaluations"] ** 0.5 * 3


@pytest.mark.slow
def test_dense_tail_degrades_gracefully():
    g = torch.Generator().manual_seed(6)
    main = planted_spectrum(100, 40, 4, g)
    energy = 0.15 * float((main.coefficients[1:] ** 2).sum())
    full = combine(main, dense_tail(100, 500, 7, energy, g, min_order=3))
    spec, _, _ = run(full, 8000)
    r2 = held_out_r2(full, spec, 4000, torch.Generator().manual_seed(1))
    ceiling = 1 - energy / float((full.coefficients[1:] ** 2).sum())
    assert r2 > ceiling - 0.03
    found = {tuple(r) for r in spec.prune(atol=0.3).sets()}
    assert len(found & {tuple(r) for r in main.sets()}) >= main.n_terms - 2


def test_refit_none_keeps_peeled_values_and_hard_decoder():
    truth = planted_spectrum(60, 20, 3, torch.Generator().manual_seed(8))
    spec, info, _ = run(truth, 4000, refit=None, decoder_type="hard")
    assert info["refit"] is None and info["decoder_type"] == "hard"
    assert max_coefficient_error(truth, spec) < 1e-8


def test_ridge_refit():
    truth = planted_spectrum(60, 20, 3, torch.Generator().manual_seed(8))
    spec, _, _ = run(truth, 4000, refit="ridge", noise_sd=0.2)
    assert held_out_r2(truth, spec, 5000, torch.Generator().manual_seed(1)) > 0.99


@pytest.mark.parametrize("n_samples", [984, 1500, 5000, 31_487])
def test_never_more_evaluations_than_budget(n_samples):
    truth = planted_spectrum(100, 10, 3, torch.Generator().manual_seed(9))
    game = PlantedGame(truth)
    evaluator = Evaluator(game, 100)  # no budget check inside: the decoder must respect it
    _, info = decode_spex(evaluator, 100, n_samples=n_samples)
    assert game.n_evaluations == info["n_evaluations"] <= n_samples


def test_budget_too_small_refused_before_any_evaluation():
    truth = planted_spectrum(100, 10, 3, torch.Generator().manual_seed(9))
    game = PlantedGame(truth)
    minimum = min_spex_samples(100, 2)  # the default t = 5 is lowered to fit, down to 2
    with pytest.raises(BudgetTooSmallError, match=f"at least {minimum}") as err:
        decode_spex(Evaluator(game, 100), 100, n_samples=minimum - 1)
    assert err.value.minimum == minimum
    minimum = min_spex_samples(100, 5)  # an explicit t is never lowered
    with pytest.raises(BudgetTooSmallError, match=f"at least {minimum}") as err:
        decode_spex(Evaluator(game, 100), 100, n_samples=minimum - 1, degree_parameter=5)
    assert err.value.minimum == minimum
    assert game.n_calls == 0
    with pytest.raises(BudgetTooSmallError) as err:
        decode_spex(Evaluator(game, 100), 100, n_samples=5000, b=7)
    assert err.value.minimum > 5000
    assert game.n_calls == 0


def test_tight_budget_lowers_the_degree_parameter():
    truth = planted_spectrum(100, 10, 2, torch.Generator().manual_seed(9))
    for t in (2, 3, 4, 5):  # max_order=None: t = 5 unless the budget is tighter
        game = PlantedGame(truth)
        budget = min_spex_samples(100, t) + 1
        _, info = decode_spex(Evaluator(game, 100), 100, n_samples=budget)
        assert info["degree_parameter"] == t and game.n_evaluations <= budget
    _, info = decode_spex(Evaluator(PlantedGame(truth), 100), 100, n_samples=5000, max_order=2)
    assert info["degree_parameter"] == default_degree(2) == 3


def test_low_max_order_still_decodes_higher_order_terms():
    # max_order caps the reported indices, not the learned function: order-3 terms must be
    # decoded (with t = max_order = 2 they were not, and the order-2 indices came out wrong);
    # t = max(3, max_order) decodes them with fewer delays per bin than t = 5
    truth = planted_spectrum(64, 25, 3, torch.Generator().manual_seed(0))
    assert int((truth.indices >= 0).sum(1).max()) == 3
    for budget in (1024, 700):
        game = PlantedGame(truth)
        spec, info = decode_spex(Evaluator(game, 64), 64, n_samples=budget, max_order=2)
        assert info["degree_parameter"] == 3
        assert max_coefficient_error(truth, spec) < 1e-8


@pytest.mark.parametrize("seed", range(8))
def test_crowded_bins_noiseless_exact(seed):
    # 26 terms in 3 groups of 8 bins: most bins hold several terms at first. Their residuals
    # are not noise; reading them as noise rejected every true singleton (seed 3 peeled 2 terms)
    truth = planted_spectrum(64, 26, 3, torch.Generator().manual_seed(seed))
    spec, info = decode_spex(Evaluator(PlantedGame(truth), 64), 64, n_samples=1024)
    assert info["b"] == 3
    assert max_coefficient_error(truth, spec) < 1e-8


def test_same_generator_same_result():
    truth = planted_spectrum(60, 20, 3, torch.Generator().manual_seed(10))
    first, info1, _ = run(truth, 3000, seed=3, noise_sd=0.5)
    second, info2, _ = run(truth, 3000, seed=3, noise_sd=0.5)
    assert torch.equal(first.indices, second.indices)
    assert torch.equal(first.coefficients, second.coefficients)
    assert info1["n_evaluations"] == info2["n_evaluations"]
    third, _, _ = run(truth, 3000, seed=4, noise_sd=0.5)
    assert not torch.equal(first.coefficients, third.coefficients)


def test_small_n_falls_back_to_exhaustive():
    truth = planted_spectrum(9, 6, 3, torch.Generator().manual_seed(2))
    game = PlantedGame(truth)
    with pytest.warns(UserWarning, match="exact spectrum"):
        spec, info = decode_spex(Evaluator(game, 9), 9, n_samples=600)
    assert info["exact"] and info["method"] == "exhaustive"
    assert game.n_evaluations == 512
    assert max_coefficient_error(truth, spec) < 1e-12
    with pytest.warns(UserWarning, match="default SPEX budget"):
        decode_spex(Evaluator(PlantedGame(truth), 9), 9)


def test_default_budget_warns_with_the_number_of_calls():
    truth = planted_spectrum(30, 10, 2, torch.Generator().manual_seed(4))
    game = PlantedGame(truth)
    expected = default_n_samples(30, 3)
    with pytest.warns(UserWarning, match=f"default budget of {expected} calls") as record:
        spec, info = decode_spex(Evaluator(game, 30), 30, max_order=2)
    assert len([w for w in record if "default budget" in str(w.message)]) == 1
    assert info["n_samples_default"] == info["n_samples"] == expected
    assert game.n_evaluations == info["n_evaluations"] <= expected
    assert info["n_evaluations"] >= 0.9 * expected
    assert info["degree_parameter"] == default_degree(2) == 3
    assert max_coefficient_error(truth, spec) < 1e-8
    # the default grows with n
    assert default_n_samples(30, 5) < default_n_samples(100, 5) < default_n_samples(1000, 5)
    # a fixed design (the `b` option) is the user's choice: no warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _, info = decode_spex(Evaluator(PlantedGame(truth), 30), 30, max_order=2, b=5)
    assert info["n_queries"] == spex_sample_count(30, 5, 3)


def test_option_errors():
    ev = Evaluator(lambda m: m.double().sum(1), 30)
    with pytest.raises(TypeError, match="unknown option"):
        decode_spex(ev, 30, n_samples=5000, chase=3)
    with pytest.raises(ValueError, match="`decoder_type` must be one of"):
        decode_spex(ev, 30, n_samples=5000, decoder_type="list")
    with pytest.raises(ValueError, match="`refit` must be one of"):
        decode_spex(ev, 30, n_samples=5000, refit="lasso")
    with pytest.raises(ValueError, match="`res_energy_cutoff` must be a number"):
        decode_spex(ev, 30, n_samples=5000, res_energy_cutoff=1.5)
    with pytest.raises(ValueError, match="`degree_parameter` must be an int"):
        decode_spex(ev, 30, n_samples=5000, degree_parameter=0)
    assert ev.n_evaluations == 0


def test_explain_end_to_end():
    truth = planted_spectrum(50, 12, 2, torch.Generator().manual_seed(12))
    game = PlantedGame(truth)
    result = explain(game, 50, method="spex", n_samples=3000, max_order=2, index="Fourier")
    assert result.n_evaluations <= 3000
    learned = {k: v for k, v in result.to_dict().items() if abs(v) > 1e-9}
    expected = {k: v for k, v in truth.to_dict().items() if k}
    assert learned.keys() >= expected.keys()
    for k, v in expected.items():
        assert learned[k] == pytest.approx(v, abs=1e-9)


def test_no_generator_means_seed_zero_and_leaves_global_rng_alone():
    truth = planted_spectrum(40, 8, 2, torch.Generator().manual_seed(13))
    state = torch.get_rng_state()
    spec_none, _ = decode_spex(Evaluator(PlantedGame(truth), 40), 40, n_samples=2000)
    assert torch.equal(torch.get_rng_state(), state)
    spec_zero, _ = decode_spex(
        Evaluator(PlantedGame(truth), 40), 40, n_samples=2000,
        generator=torch.Generator().manual_seed(0),
    )
    assert torch.equal(spec_none.coefficients, spec_zero.coefficients)


@pytest.mark.parametrize(
    ("n", "n_samples"),
    [(12, 3000), (16, 3000), (100, 1300), (100, 2500), (300, 4000), (1000, 1400)],
)
def test_spends_at_least_90_percent_of_the_budget(n, n_samples):
    truth = planted_spectrum(n, 20, 3, torch.Generator().manual_seed(n))
    game = PlantedGame(truth)
    _, info = decode_spex(Evaluator(game, n), n, n_samples=n_samples, max_order=3)
    assert game.n_evaluations == info["n_evaluations"] <= n_samples
    assert info["n_evaluations"] >= 0.9 * n_samples
    assert info["budget_spent"] == info["n_evaluations"] / n_samples
    assert info["n_evaluations"] == info["n_design_evaluations"] + info["n_uniform"]
    assert info["n_queries"] == info["n_delays"] * info["n_bins"]
    assert info["n_bins"] == sum(1 << b for b in info["group_b"])
    assert "unspent_reason" not in info


def test_unspent_budget_is_explained():
    truth = planted_spectrum(100, 10, 3, torch.Generator().manual_seed(9))
    game = PlantedGame(truth)
    _, info = decode_spex(Evaluator(game, 100), 100, n_samples=8000, b=3, refit=None)
    assert info["budget_spent"] < 0.9
    assert "refit=None" in info["unspent_reason"]
    assert game.n_evaluations <= 8000


def test_leftover_uniform_samples_join_the_noisy_refit():
    truth = planted_spectrum(100, 20, 3, torch.Generator().manual_seed(2))
    game = PlantedGame(truth, noise_sd=0.5, seed=3)
    spec, info = decode_spex(Evaluator(game, 100), 100, n_samples=3000, max_order=3)
    assert info["n_uniform"] > 0
    assert held_out_r2(truth, spec, 5000, torch.Generator().manual_seed(1)) > 0.99


def test_budget_design_two_large_groups_and_a_small_one():
    """Near the threshold the budget buys groups (4, 4, 2), not (4, 3, 3, 2): the same 36 bins
    resolve 50 terms only as two large groups and a small one (n = 256, t = 3: 962 calls)."""
    truth = planted_spectrum(256, 50, 3, torch.Generator().manual_seed(0))
    spec, info, game = run(truth, 962, max_order=3)
    assert info["group_b"] == (4, 4, 2)
    assert game.n_evaluations <= 962
    assert held_out_r2(truth, spec, 5000, torch.Generator().manual_seed(1)) > 0.999


def _mlp(n: int, seed: int):
    """A small random tanh MLP on masked inputs (removed features set to 0), counting calls."""
    g = torch.Generator().manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(n, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
    net = net.double()
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64))
    x = torch.randn(n, generator=g, dtype=torch.float64)
    calls = [0]

    def f(masks: torch.Tensor) -> torch.Tensor:
        calls[0] += masks.shape[0]
        with torch.no_grad():
            return net(masks.double() * x).squeeze(-1)

    return f, calls


@pytest.mark.parametrize("n_samples", [256, 300])
def test_budget_of_every_mask_below_the_smallest_design_is_exact(n_samples):
    # issue 28: at n = 8 the smallest SPEX design needs more than 2^8 = 256 masks; a budget that
    # covers every mask must give the exact spectrum (as proxyspex does), not a refusal
    n = 8
    f, calls = _mlp(n, seed=0)
    with pytest.warns(UserWarning, match="exact spectrum"):
        result = explain(f, n, method="spex", n_samples=n_samples, max_order=2)
    assert calls[0] == result.n_evaluations == 1 << n <= n_samples
    exact = explain(_mlp(n, seed=0)[0], n, method="exhaustive")
    assert result.spectrum.max_size > 2  # max_order caps the report, not the spectrum
    assert torch.allclose(spectrum_to_dense(result.spectrum), spectrum_to_dense(exact.spectrum),
                          atol=1e-10, rtol=0)  # fmt: skip
    assert max(len(k) for k in result.to_dict()) <= 2
    ends = torch.stack([torch.zeros(n, dtype=torch.bool), torch.ones(n, dtype=torch.bool)])
    f_empty, f_full = f(ends).tolist()
    assert abs(float(result.first_order("SV").sum()) - (f_full - f_empty)) < 1e-10
    assert result.info["exact"] and result.info["method"] == "exhaustive"
    assert result.info["requested_method"] == "spex" and "2^8" in result.info["exact_reason"]


def test_budget_just_below_every_mask_names_the_exact_minimum():
    with pytest.raises(BudgetTooSmallError, match=r"n_samples >= 256 "):
        explain(_mlp(8, seed=0)[0], 8, method="spex", n_samples=255)


def test_default_budget_through_explain_counts_the_all_kept_corner():
    # the design's default budget plus the all-kept mask the corners need: info and the
    # warning say so (info said 1,344 where 1,345 masks were evaluated)
    import torchspex

    calls = []

    def f(masks):
        calls.append(masks.shape[0])
        return masks.double().sum(1)

    with pytest.warns(UserWarning, match="and one more, the all-kept mask"):
        res = torchspex.explain(f, 20, method="spex")
    assert sum(calls) == res.n_evaluations == res.info["n_samples"] == default_n_samples(20, 5) + 1
