"""torchspex.interop: shapiq round trips (exact), shapiq's ExactComputer as oracle, shap export."""

from __future__ import annotations

import time

import matplotlib
import numpy as np
import pytest
import torch

from torchspex import Interactions, SparseSpectrum, explain
from torchspex.interop import SHAPIQ_INDICES, from_shapiq, to_shap

matplotlib.use("Agg")
shapiq = pytest.importorskip("shapiq")


def random_result(n=6, n_terms=12, term_order=3, seed=0, **kw) -> Interactions:
    g = torch.Generator().manual_seed(seed)
    sets = [()]
    for _ in range(n_terms):
        k = int(torch.randint(1, term_order + 1, (1,), generator=g))
        sets.append(tuple(torch.randperm(n, generator=g)[:k].tolist()))
    coef = torch.randn(len(sets), generator=g, dtype=torch.float64)
    return Interactions(SparseSpectrum.from_sets(sets, coef, n), **kw)


def game(masks):
    """A 5-player game with interactions up to order 3 (used with shapiq's ExactComputer)."""
    x = torch.as_tensor(np.asarray(masks), dtype=torch.float64)
    return (
        1.5 + x[:, 0] - 2 * x[:, 1] * x[:, 2] + 0.5 * x[:, 3]
        + 3 * x[:, 0] * x[:, 2] * x[:, 4] - 0.25 * x[:, 4]
    )


VIEWS = [(index, order) for index in SHAPIQ_INDICES for order in (1, 2, 3)
         if not (index in ("SV", "BV") and order > 1)]


def iv_dict(iv):
    return dict(iv.interactions)


def assert_same(a: dict, b: dict, atol=1e-12):
    for key in set(a) | set(b):
        assert a.get(key, 0.0) == pytest.approx(b.get(key, 0.0), abs=atol), key


@pytest.mark.parametrize(("index", "order"), VIEWS)
def test_to_shapiq_copies_values_exactly(index, order):
    result = random_result(index=index, max_order=order)
    iv = result.to_shapiq()
    renamed = iv.index != result.index  # shapiq's order-1 names: SV, BV
    # FBII keeps its own order-1 view (() = the FBII intercept, as shapiq's ExactComputer)
    view = result.to_index(iv.index) if renamed and index != "FBII" else result
    assert renamed == (order == 1 and index not in ("Moebius", "SV", "BV"))
    expected = dict(view.values.to_dict())
    expected.setdefault((), 0.0)
    for i in range(result.n_features):  # every player has a first-order entry (for plots)
        expected.setdefault((i,), 0.0)
    assert iv_dict(iv) == expected  # bit-exact copy, () included
    assert iv.n_players == 6 and iv.min_order == 0


@pytest.mark.parametrize(("index", "order"), VIEWS)
def test_from_shapiq_round_trip(index, order):
    iv = random_result(seed=1).to_shapiq(index, order)
    back = Interactions.from_shapiq(iv)
    assert back.index == iv.index
    view = back.to_index(iv.index, iv.max_order)
    assert_same(view.values.to_dict(), iv_dict(iv))
    # and the exported values of the rebuilt result are iv's again
    assert_same(iv_dict(back.to_shapiq()), iv_dict(iv))


@pytest.mark.parametrize(
    ("index", "order"),
    [("Moebius", 5), ("SII", 2), ("k-SII", 2), ("BII", 2), ("STII", 2), ("FSII", 2),
     ("FBII", 2), ("SV", 1), ("BV", 1), ("k-SII", 3), ("FSII", 3), ("FBII", 1)],
)
def test_matches_shapiq_exact_computer(index, order):
    exact = shapiq.ExactComputer(game, n_players=5)(index, order)
    ours = explain(game, 5, method="exhaustive", index=index, max_order=order).to_shapiq()
    assert ours.index == exact.index and ours.max_order == exact.max_order
    # shapiq solves FSII by a weighted regression: agreement to ~1e-9 there
    assert_same(iv_dict(ours), iv_dict(exact), atol=1e-8)
    assert ours.baseline_value == pytest.approx(exact.baseline_value, abs=1e-10)
    # from_shapiq reads shapiq's own object back, exactly
    back = from_shapiq(exact).to_index(exact.index, exact.max_order)
    assert_same(back.values.to_dict(), iv_dict(exact), atol=1e-10)


def test_from_shapiq_moebius_is_the_game():
    exact = shapiq.ExactComputer(game, n_players=5)("Moebius", 5)
    result = from_shapiq(exact, feature_names=list("abcde"))
    masks = torch.tensor(np.unpackbits(np.arange(32, dtype=np.uint8)[:, None], axis=1)[:, 3:])
    masks = masks.bool()
    assert torch.allclose(result.predict(masks), game(masks), atol=1e-12)
    assert result.feature_names == list("abcde")


def test_from_shapiq_missing_empty_uses_baseline():
    iv = shapiq.InteractionValues(
        {(0,): 1.0, (0, 1): 0.5}, index="SII", max_order=2, n_players=3, min_order=1,
        interaction_lookup={(0,): 0, (0, 1): 1}, baseline_value=2.0,
    )
    result = from_shapiq(iv)
    assert result.baseline_value == pytest.approx(2.0)  # SII: baseline is f(empty)
    assert result[(0,)] == pytest.approx(1.0) and result[(0, 1)] == pytest.approx(0.5)
    bv = shapiq.InteractionValues(
        {(0,): 1.0, (2,): -3.0}, index="BV", max_order=1, n_players=3, min_order=1,
        interaction_lookup={(0,): 0, (2,): 1}, baseline_value=0.5,
    )
    result = from_shapiq(bv)
    assert result.baseline_value == pytest.approx(0.5)
    assert result.first_order("BV").tolist() == pytest.approx([1.0, 0.0, -3.0])


def test_to_shapiq_large_n_is_fast():
    n = 1000
    g = torch.Generator().manual_seed(0)
    idx = torch.stack([torch.randperm(n, generator=g)[:3] for _ in range(400)])
    idx[:150, 2] = -1
    coef = torch.randn(400, generator=g, dtype=torch.float64)
    spec = SparseSpectrum(idx, coef, n).coalesce()
    result = Interactions(spec, index="FBII", max_order=2)
    result.to_shapiq()  # warm-up (imports)
    start = time.perf_counter()
    iv = result.to_shapiq()
    assert time.perf_counter() - start < 1.0
    expected = {(): 0.0, **{(i,): 0.0 for i in range(n)}, **result.values.to_dict()}
    assert iv.n_players == n and iv.interactions == expected


def test_shapiq_plots_run():
    result = random_result(n=5, index="k-SII", max_order=2, feature_names=list("ABCDE"))
    iv = result.to_shapiq()
    fig, _ = iv.plot_network(show=False, feature_names=list("ABCDE"))
    texts = {t.get_text() for ax in fig.axes for t in ax.texts}
    assert set("ABCDE") <= texts
    fig = iv.plot_force(feature_names=np.array(list("ABCDE")), show=False)
    assert len(fig.axes) >= 1 and fig.axes[0].has_data()
    matplotlib.pyplot.close("all")


def test_to_shap():
    shap = pytest.importorskip("shap")
    result = random_result(n=5, feature_names=list("ABCDE"))
    e = to_shap(result, data=np.arange(5.0))
    assert e.values.shape == (5,)
    assert np.array_equal(e.values, result.first_order("SV").numpy())
    assert e.base_values + e.values.sum() == pytest.approx(result.full_value, abs=1e-12)
    assert e.feature_names == list("ABCDE")
    shap.plots.waterfall(e, show=False)
    shap.plots.bar(e, show=False)
    matplotlib.pyplot.close("all")
    bv = result.to_shap("BV")
    assert np.allclose(bv.values, result.first_order("BV").numpy())


def test_errors():
    result = random_result()
    with pytest.raises(ValueError, match="shapiq also defines"):
        result.to_shapiq("Fourier")
    multi = Interactions(result.spectrum.replace(
        coefficients=torch.stack([result.spectrum.coefficients] * 2, dim=1)))
    with pytest.raises(ValueError, match=r"select\(0\)\.to_shapiq"):
        multi.to_shapiq()
    with pytest.raises(ValueError, match=r"select\(0\)\.to_shap"):
        multi.to_shap()
    with pytest.raises(ValueError, match="one entry per feature"):
        result.to_shap(data=[1.0, 2.0])
    iv = shapiq.InteractionValues({(): 0.0, (0, 1): 1.0}, index="CHII", max_order=2,
                                  n_players=2, min_order=0, interaction_lookup={(): 0, (0, 1): 1})
    iv.index = "not-an-index"  # CHII itself is read back now (shapiq 1.8's indices)
    with pytest.raises(ValueError, match="shapiq also defines"):
        from_shapiq(iv)
    with pytest.raises(TypeError, match=r"shapiq\.InteractionValues"):
        from_shapiq({(0,): 1.0})


def test_network_plot_draws_players_without_first_order_value():
    # f = x0 x1: a pure pair, no first-order Moebius terms; shapiq draws a node only for
    # players with an order-1 entry
    result = explain(lambda m: (m[:, 0] & m[:, 1]).double(), 3, method="exhaustive",
                     index="Moebius")  # fmt: skip
    iv = result.to_shapiq()
    assert iv[(0,)] == 0.0 and iv[(2,)] == 0.0 and iv[(0, 1)] == 1.0
    fig, ax = iv.plot_network(show=False, feature_names=list("ABC"))
    assert {"A", "B", "C"} <= {t.get_text() for t in ax.texts}
    matplotlib.pyplot.close(fig)
