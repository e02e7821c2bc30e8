"""decoders/_proxy.py: the proxy helpers ProxySPEX and the regression share."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from torchspex.decoders._proxy import as_tuple, draw_seed, fit_proxy, holdout_rows, proxy_configs


def test_holdout_rows_and_seed_follow_the_generator():
    a = holdout_rows(50, 0.2, torch.Generator().manual_seed(3))
    b = holdout_rows(50, 0.2, torch.Generator().manual_seed(3))
    assert a.dtype == bool and a.sum() == 10 and np.array_equal(a, b)
    assert holdout_rows(3, 0.05, torch.Generator()).sum() == 1  # at least one row
    g = torch.Generator().manual_seed(0)
    assert draw_seed(g) != draw_seed(g)


def test_configs_default_depths_and_checks():
    assert proxy_configs(None, 0.1) == [(3, 0.1), (5, 0.1)]
    assert proxy_configs(2, (0.1, 0.3)) == [(2, 0.1), (2, 0.3)]
    with pytest.raises(ValueError, match="`learning_rate` must be floats in"):
        proxy_configs(None, 2.0)
    with pytest.raises(ValueError, match="at least one value"):
        as_tuple("energy", (), float, 0.0, 1.0)


def test_fit_proxy_learns_a_pair_on_the_training_rows():
    pytest.importorskip("lightgbm")
    g = torch.Generator().manual_seed(0)
    masks = torch.rand(400, 6, generator=g) < 0.5
    y = (2.0 * (masks[:, 0] & masks[:, 1]) + masks[:, 2]).double().numpy()
    valid = holdout_rows(400, 0.2, g)
    booster, info = fit_proxy(masks.numpy().astype(np.float32), y, valid,
                              proxy_configs(None, 0.1), 200, 10, draw_seed(g))  # fmt: skip
    assert info["validation_r2"] > 0.99 and info["n_fits"] == 2
    assert np.allclose(booster.predict(masks[valid].numpy().astype(np.float32)), y[valid],
                       atol=0.05)  # fmt: skip


def test_min_gain_stops_the_tail_of_tiny_improvements():
    """With min_gain the early stop ignores rounds that gain less than that fraction of the
    held-out variance: a near-exact fit stops far earlier, its held-out fit nearly as good."""
    rng = np.random.default_rng(0)
    x = (rng.random((400, 10)) < 0.5).astype(np.float32)
    y = 3.0 * x[:, 0] * x[:, 1] - 2.0 * x[:, 2] + x[:, 3] * x[:, 4] * x[:, 5]
    valid = holdout_rows(400, 0.2, torch.Generator().manual_seed(1))
    _, info_full = fit_proxy(x, y, valid, [(3, 0.1)], 1000, 30, 7)
    _, info_cut = fit_proxy(x, y, valid, [(3, 0.1)], 1000, 30, 7, min_gain=1e-4)
    assert info_cut["n_trees"] < info_full["n_trees"] / 2
    assert info_cut["validation_r2"] > 0.999
    assert info_full["validation_r2"] >= info_cut["validation_r2"]


def test_a_config_may_cap_the_leaves_and_the_refit_keeps_them():
    """A ``(depth, rate, leaves)`` config grows trees of at most ``leaves`` leaves (depth 8,
    4 leaves here), the info records them, and ``refit_proxy`` with the same leaves does too;
    a ``(depth, rate)`` config grows up to ``2^depth``."""
    pytest.importorskip("lightgbm")
    from torchspex.decoders._proxy import refit_proxy

    rng = np.random.default_rng(2)
    x = (rng.random((600, 8)) < 0.5).astype(np.float32)
    y = np.sin(x @ rng.normal(size=8)) + x[:, 0] * x[:, 1] * x[:, 2] * x[:, 3]
    valid = holdout_rows(600, 0.2, torch.Generator().manual_seed(0))

    def most_leaves(booster):
        return max(t["num_leaves"] for t in booster.dump_model()["tree_info"])

    capped, info = fit_proxy(x, y, valid, [(8, 0.1, 4)], 50, 10, 3)
    assert info["num_leaves"] == 4 and info["max_depth"] == 8 and most_leaves(capped) <= 4
    full, info_full = fit_proxy(x, y, valid, [(3, 0.1)], 50, 10, 3)
    assert info_full["num_leaves"] == 8 and most_leaves(full) == 8
    refit = refit_proxy(x, y, 8, 0.1, 20, 3, info["num_leaves"])
    assert most_leaves(refit) <= 4
    assert most_leaves(refit_proxy(x, y, 8, 0.1, 20, 3)) > 4


@pytest.mark.parametrize("n", [12, 64])
def test_row_wise_histograms_grow_the_column_wise_trees(n):
    """The proxies' fixed row-wise histogram layout grows the trees the column-wise one grows
    (the same per-bin sums, in the same row order): the early-stopped booster's text up to its
    parameters and its held-out predictions are identical."""
    from torchspex.decoders import _proxy

    rng = np.random.default_rng(n)
    x = (rng.random((900, n)) < 0.5).astype(np.float32)
    y = np.sin(x @ rng.standard_normal(n)) + 2.0 * x[:, 0] * x[:, 1] * x[:, 2]
    valid = holdout_rows(900, 0.2, torch.Generator().manual_seed(0))
    real = _proxy._base_params
    out = []
    for layout in ("row", "col"):

        def params(n_train, seed, layout=layout):
            p = {k: v for k, v in real(n_train, seed).items() if not k.startswith("force_")}
            return {**p, f"force_{layout}_wise": True}

        _proxy._base_params = params
        try:
            booster, info = fit_proxy(x, y, valid, [(3, 0.1), (6, 0.1, 24)], 300, 20, 7)
        finally:
            _proxy._base_params = real
        out.append((booster.model_to_string().split("\nparameters:")[0], info,
                    booster.predict(x[valid])))  # fmt: skip
    assert "force_row_wise" in real(100, 0) and "force_col_wise" not in real(100, 0)
    assert out[0][0] == out[1][0] and out[0][1] == out[1][1]
    assert np.array_equal(out[0][2], out[1][2])
    assert out[0][1]["n_trees"] > 10  # a real fit, not a stub


def test_proxies_on_subsets_of_binned_rows_are_the_proxies_of_those_rows():
    """A booster trained on a subset of :class:`ProxyRows` (the rows binned once) is the
    booster a fresh Dataset of those rows gives, tree for tree, also where a feature is
    constant on the subset (it keeps both bins there, and still gets no split); the held-out
    split of ``fit_proxy`` on binned rows is the one it makes alone."""
    pytest.importorskip("lightgbm")
    from torchspex.decoders._proxy import ProxyRows, refit_proxy

    g = torch.Generator().manual_seed(4)
    masks = torch.rand(300, 8, generator=g) < 0.5
    masks[:150, 7] = True  # constant on the first half
    x = masks.numpy().astype(np.float32)
    m = masks.double()
    y = (1.5 * m[:, 0] * m[:, 1] - m[:, 2] + 0.5 * m[:, 7]).numpy()
    pool = ProxyRows(x, y)

    def trees(booster) -> str:  # the trees (the header's feature ranges are the bins' own)
        return booster.model_to_string().split("\nTree=", 1)[1].split("end of trees")[0]

    for used in (np.arange(150), np.flatnonzero(np.arange(300) % 5 != 1)):
        alone = refit_proxy(x[used], y[used], 4, 0.1, 30, 7)
        shared = refit_proxy(x, y, 4, 0.1, 30, 7, rows=(pool, used))
        assert trees(shared) == trees(alone)
    valid = holdout_rows(300, 0.2, g)
    configs = proxy_configs(None, 0.1)
    alone, info = fit_proxy(x, y, valid, configs, 100, 10, 3)
    shared, info_shared = fit_proxy(x, y, valid, configs, 100, 10, 3, rows=pool)
    assert trees(shared) == trees(alone) and info_shared == info


def test_one_decode_bins_its_samples_once_for_every_proxy(monkeypatch):
    """The regression's proxy, the odd part's five cross-fitted proxies and the even part's
    jackknife refits all train on subsets of one :class:`ProxyRows` (binning 327 features of
    1,000 masks took 18-21 ms, one thread), and the result is the one a fresh binning for
    every proxy gives."""
    pytest.importorskip("lightgbm")
    from torchspex import explain
    from torchspex.decoders import _proxy

    def f(m: torch.Tensor) -> torch.Tensor:  # 40 features: the offset and the refits run
        x = m.double()
        return x[:, :20].sum(1) + 2.0 * x[:, 0] * x[:, 1] - x[:, 2] * x[:, 3] * x[:, 30]

    n = 40
    original_init, original_subset = _proxy.ProxyRows.__init__, _proxy.ProxyRows.subset
    # the reference: every subset from rows binned afresh
    monkeypatch.setattr(_proxy.ProxyRows, "subset",
                        lambda self, rows: original_subset(_proxy.ProxyRows(self.x, self.y), rows))
    want = explain(f, n, n_samples=200, generator=3, index="k-SII")
    monkeypatch.setattr(_proxy.ProxyRows, "subset", original_subset)
    made: list[int] = []

    def counted(self, x, y):
        made.append(x.shape[0])
        original_init(self, x, y)

    monkeypatch.setattr(_proxy.ProxyRows, "__init__", counted)
    got = explain(f, n, n_samples=200, generator=3, index="k-SII")
    assert got.info["odd"]["proxy_offset"] is True
    assert "calibration_slope" in got.info["even"]  # the even part refitted per fold
    assert made == [200]
    assert torch.equal(got.spectrum.indices, want.spectrum.indices)
    assert torch.equal(got.spectrum.coefficients, want.spectrum.coefficients)
