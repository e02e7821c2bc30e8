"""Exact tree Shapley values and pair interactions (torchspex.decoders.treeshap).

The oracle is the exact Fourier read-out (``TreeInteraction(..., full_spectrum=True)``, itself
checked against brute force over all masks in tests/attr/test_tree.py): every value must agree
to 1e-9 relative to the largest one, on both routes (pattern tables and row by row).
"""

from __future__ import annotations

import itertools
import math
import warnings
from typing import Any

import numpy as np
import pytest
import torch

import torchspex.decoders.treeshap as treeshap
from torchspex import TreeInteraction
from torchspex.decoders.trees import TreeEnsemble, parse_tree_ensemble
from torchspex.decoders.treeshap import decision_patterns, tree_paths, tree_shapley_values
from torchspex.fourier._sets import unique_rows

lgb = pytest.importorskip("lightgbm")


def _data(n: int, m: int, seed: int, nan: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(m, n))
    y = x[:, 0] + 2 * x[:, 1] * x[:, 2] - np.abs(x[:, 3]) + rng.normal(0, 0.1, m)
    if nan:
        x[rng.random(x.shape) < nan] = np.nan
    return x, y


def _reference(model, rows, background) -> tuple[np.ndarray, np.ndarray, dict]:
    """Shapley values ``[B, n, O]``, SII ``[B, n, n, O]`` and ``{triple: SII [B, O]}`` from the
    full Fourier spectrum."""
    masking = "path_dependent" if background is None else "interventional"
    explainer = TreeInteraction(model, masking, background=background)
    full = explainer.attribute(rows, index="SII", max_order=3, full_spectrum=True)
    n = full.n_features
    coef = full.values.coefficients.reshape(len(full.values.sets()), len(rows), -1)
    sii = np.zeros((len(rows), n, n, coef.shape[2]))
    triples = {}
    for s, c in zip(full.values.sets(), coef.numpy()):
        if len(s) == 2:
            sii[:, s[0], s[1]] = sii[:, s[1], s[0]] = c
        if len(s) == 3:
            triples[tuple(s)] = c
    sv = full.first_order("SV").reshape(len(rows), -1, n).transpose(1, 2).numpy()
    return sv, sii, triples


def _check(model, rows, background=None, route=None) -> None:
    """Both orders against the reference; ``route``: ``"tables"`` or ``"rows"`` for every
    leaf, None for the automatic choice."""
    sv_ref, sii_ref, triples_ref = _reference(model, rows, background)
    scale = max(np.abs(sv_ref).max(), np.abs(sii_ref).max())
    budget, cheaper = treeshap._TABLE_BUDGET, treeshap._table_is_cheaper
    try:
        if route == "rows":
            treeshap._TABLE_BUDGET = 0
        if route == "tables":
            treeshap._table_is_cheaper = lambda *args: True
        for order in (1, 2, 3):
            sv, base, sets, sii = tree_shapley_values(model, rows, background, order)
            np.testing.assert_allclose(sv.numpy(), sv_ref, rtol=0, atol=1e-9 * scale)
            if order == 1:
                continue
            is_pair = np.ones(len(sets), dtype=bool) if order == 2 else sets[:, 2].numpy() < 0
            dense = np.zeros_like(sii_ref)
            i, k = sets[is_pair, :2].numpy().T
            dense[:, i, k] = dense[:, k, i] = sii[:, is_pair].numpy()
            np.testing.assert_allclose(dense, sii_ref, rtol=0, atol=1e-9 * scale)
            if order == 3:  # every triple sharing a path, and no other, with its SII
                got = {tuple(t): sii[:, q].numpy() for q, t in enumerate(sets.tolist())
                       if t[2] >= 0}  # fmt: skip
                for t in set(got) | set(triples_ref):
                    want = triples_ref.get(t, np.zeros_like(sv_ref[:, 0]))
                    np.testing.assert_allclose(got.get(t, np.zeros_like(want)), want, rtol=0,
                                               atol=1e-9 * scale)  # fmt: skip
                nonzero = {t for t, v in triples_ref.items() if np.abs(v).max() > 1e-12 * scale}
                assert nonzero <= set(got)
    finally:
        treeshap._TABLE_BUDGET, treeshap._table_is_cheaper = budget, cheaper
    # efficiency: the values add up to the raw output minus the all-removed value
    ens = parse_tree_ensemble(model)
    np.testing.assert_allclose(sv.sum(dim=1) + base, ens.predict(rows), rtol=0,
                               atol=1e-9 * max(1.0, scale))


def _hand_tree(feature, threshold, left, right, value, n_features) -> TreeEnsemble:
    size = len(feature)
    return TreeEnsemble(
        feature=np.asarray(feature, dtype=np.int64),
        threshold=np.asarray(threshold, dtype=np.float64),
        left=np.asarray(left, dtype=np.int64),
        right=np.asarray(right, dtype=np.int64),
        value=np.asarray(value, dtype=np.float64).reshape(size, -1),
        cover=np.arange(1, size + 1, dtype=np.float64),  # uneven covers
        default_left=np.zeros(size, dtype=bool),
        missing=np.full(size, 2, dtype=np.int8),
        roots=np.array([0]),
        base=np.array([0.5]),
        n_features=n_features,
    )


# ---------------------------------------------------------------------------- models
@pytest.mark.parametrize("route", [None, "tables", "rows"])
@pytest.mark.parametrize("masking", ["path_dependent", "interventional"])
def test_lightgbm_regressor_equals_fourier_readout(masking: str, route: str | None) -> None:
    x, y = _data(6, 300, 0)
    model = lgb.LGBMRegressor(n_estimators=12, num_leaves=12, min_child_samples=5,
                              verbose=-1, n_jobs=1, random_state=0).fit(x, y)
    background = x[200:212] if masking == "interventional" else None
    _check(model, x[:9], background, route)


@pytest.mark.parametrize("masking", ["path_dependent", "interventional"])
def test_lightgbm_multiclass_and_missing_values(masking: str) -> None:
    x, y = _data(5, 300, 1, nan=0.15)
    labels = np.digitize(np.nan_to_num(y), [-1.0, 1.0])
    model = lgb.LGBMClassifier(n_estimators=6, num_leaves=8, min_child_samples=5,
                               verbose=-1, n_jobs=1, random_state=0).fit(x, labels)
    assert parse_tree_ensemble(model).n_outputs == 3
    background = x[200:208] if masking == "interventional" else None  # NaNs in both
    for route in ("tables", "rows"):
        _check(model, x[:7], background, route)


@pytest.mark.parametrize("masking", ["path_dependent", "interventional"])
def test_xgboost_models(masking: str) -> None:
    xgb = pytest.importorskip("xgboost")
    x, y = _data(5, 300, 2, nan=0.1)
    background = x[200:206] if masking == "interventional" else None
    reg = xgb.XGBRegressor(n_estimators=8, max_depth=4, n_jobs=1, random_state=0).fit(x, y)
    clf = xgb.XGBClassifier(n_estimators=5, max_depth=3, n_jobs=1, random_state=0)
    clf.fit(x, np.digitize(np.nan_to_num(y), [-1.0, 1.0]))
    for model in (reg, clf):
        for route in ("tables", "rows"):
            _check(model, x[:6], background, route)


def test_xgboost_trained_on_a_dataframe() -> None:
    # a booster that records feature names (trained on a pandas DataFrame) reads and explains
    # plain arrays: its base margin comes from inplace_predict, not a nameless DMatrix
    xgb = pytest.importorskip("xgboost")
    pd = pytest.importorskip("pandas")
    x, y = _data(5, 300, 2, nan=0.1)
    frame = pd.DataFrame(x, columns=[f"f{i}" for i in range(x.shape[1])])
    model = xgb.XGBRegressor(n_estimators=6, max_depth=3, n_jobs=1, random_state=0)
    model.fit(frame, y)
    ens = parse_tree_ensemble(model)
    margin = model.get_booster().inplace_predict(frame.iloc[:20], predict_type="margin")
    np.testing.assert_allclose(ens.predict(x[:20])[:, 0], margin, rtol=0, atol=1e-5)
    for route in ("tables", "rows"):
        _check(model, x[:6], None, route)


def test_sklearn_models() -> None:
    from sklearn.ensemble import (
        ExtraTreesRegressor,
        GradientBoostingClassifier,
        GradientBoostingRegressor,
        HistGradientBoostingRegressor,
        RandomForestClassifier,
        RandomForestRegressor,
    )
    from sklearn.tree import DecisionTreeRegressor

    x, y = _data(5, 200, 3)
    labels = (y > np.median(y)).astype(int)
    models = [
        DecisionTreeRegressor(max_depth=6, random_state=0).fit(x, y),
        RandomForestRegressor(n_estimators=4, max_depth=5, random_state=0).fit(x, y),
        ExtraTreesRegressor(n_estimators=4, max_depth=4, random_state=0).fit(x, y),
        GradientBoostingRegressor(n_estimators=6, max_depth=3, random_state=0).fit(x, y),
        RandomForestClassifier(n_estimators=4, max_depth=4, random_state=0).fit(x, labels),
        GradientBoostingClassifier(n_estimators=4, max_depth=3, random_state=0).fit(x, labels),
    ]
    xn, yn = _data(5, 200, 4, nan=0.1)
    models.append(HistGradientBoostingRegressor(max_iter=6, max_depth=4, random_state=0)
                  .fit(xn, yn))  # fmt: skip
    for model in models:
        rows = xn[:5] if isinstance(model, HistGradientBoostingRegressor) else x[:5]
        for background in (None, x[100:106]):
            for route in ("tables", "rows"):
                _check(model, rows, background, route)


# ---------------------------------------------------------------------------- structure
def test_repeated_splits_on_one_feature() -> None:
    #        0:x0
    #     1:x0      2:x1
    #    3    4   5:x0   6
    #            7    8
    ens = _hand_tree(feature=[0, 0, 1, -1, -1, 0, -1, -1, -1],
                     threshold=[0.5, -0.5, 0.5, 0, 0, 1.5, 0, 0, 0],
                     left=[1, 3, 5, -1, -1, 7, -1, -1, -1],
                     right=[2, 4, 6, -1, -1, 8, -1, -1, -1],
                     value=[0, 0, 0, 1.5, -7.0, 0, 4.0, -2.0, 11.0], n_features=3)
    paths = tree_paths(ens)
    assert paths.n_slots.tolist() == [1, 1, 2, 2, 2]  # x0 merged: leaves 3, 4 have one slot
    rows = np.array([[0.0, 0.0, 0.0], [1.0, 1.0, 5.0], [2.0, 0.0, 0.0], [-1.0, 1.0, 0.0]])
    for route in ("tables", "rows"):
        _check(ens, rows, None, route)
        _check(ens, rows, rows[[0, 2, 3]], route)


def test_random_deep_trees_with_repeated_features() -> None:
    n, depth = 5, 7
    n_int, size = 2**depth - 1, 2 ** (depth + 1) - 1
    for seed in range(3):
        rng = np.random.default_rng(seed)
        feature = np.concatenate([rng.integers(0, n, n_int), np.full(size - n_int, -1)])
        threshold = np.concatenate([rng.normal(size=n_int), np.zeros(size - n_int)])
        left = np.concatenate([2 * np.arange(n_int) + 1, np.full(size - n_int, -1)])
        right = np.concatenate([2 * np.arange(n_int) + 2, np.full(size - n_int, -1)])
        value = np.concatenate([np.zeros(n_int), rng.normal(size=size - n_int)])
        ens = _hand_tree(feature, threshold, left, right, value, n)
        if seed == 2:  # some children with zero cover: removing their feature never reaches them
            cover = ens.cover.copy()
            cover[rng.choice(np.arange(1, size), 12, replace=False)] = 0.0
            ens = TreeEnsemble(**{**ens.__dict__, "cover": cover})
            assert (tree_paths(ens).zero_fraction == 0).any()
        rows = rng.normal(size=(6, n))
        for route in ("tables", "rows"):
            _check(ens, rows, None, route)
            _check(ens, rows, rng.normal(size=(5, n)), route)


def test_single_leaf_booster() -> None:
    x = np.zeros((50, 3))
    booster = lgb.train({"objective": "regression", "verbose": -1, "num_threads": 1},
                        lgb.Dataset(x, np.full(50, 2.5)), num_boost_round=3)
    rows = np.random.default_rng(0).normal(size=(4, 3))
    for background in (None, rows[:2]):
        sv, base, pairs, sii = tree_shapley_values(booster, rows, background, max_order=2)
        assert sv.shape == (4, 3, 1) and not sv.any()
        assert base.tolist() == pytest.approx([2.5])
        assert pairs.shape == (0, 2) and sii.shape == (4, 0, 1)


def test_decision_patterns_follow_the_trainers_routing() -> None:
    x, y = _data(4, 200, 6, nan=0.2)
    model = lgb.LGBMRegressor(n_estimators=5, num_leaves=10, min_child_samples=5,
                              verbose=-1, n_jobs=1).fit(x, y)
    ens = parse_tree_ensemble(model)
    paths = tree_paths(ens)
    pat = decision_patterns(paths, x[:20])[paths.leaf]  # [L, R]
    # a row reaches a leaf iff every bit of the leaf's pattern is set: one leaf per tree
    reached = (pat == (1 << paths.n_slots)[:, None] - 1).double()
    assert reached.sum(dim=0).tolist() == [ens.roots.size] * 20
    predicted = (reached.T @ paths.value).numpy() + ens.base
    np.testing.assert_allclose(predicted[:, 0], model.predict(x[:20], raw_score=True),
                               atol=1e-9)


# ---------------------------------------------------------------------------- memory, shap
def test_row_chunks_do_not_change_the_result(monkeypatch: pytest.MonkeyPatch) -> None:
    x, y = _data(6, 300, 7)
    model = lgb.LGBMRegressor(n_estimators=10, num_leaves=10, verbose=-1, n_jobs=1).fit(x, y)
    for background in (None, x[:20]):
        whole = tree_shapley_values(model, x[:50], background, max_order=2)
        monkeypatch.setattr(treeshap, "_CHUNK", 64)  # a few rows per chunk
        chunked = tree_shapley_values(model, x[:50], background, max_order=2)
        monkeypatch.undo()
        for a, b in zip(whole, chunked):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


def test_equals_shap_tree_explainer() -> None:
    shap = pytest.importorskip("shap")
    x, y = _data(6, 300, 8)
    model = lgb.LGBMRegressor(n_estimators=20, num_leaves=16, verbose=-1, n_jobs=1).fit(x, y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        path = shap.TreeExplainer(model, feature_perturbation="tree_path_dependent")
        inter = shap.TreeExplainer(model, data=x[:30], feature_perturbation="interventional")
        want_path = path.shap_values(x[:10])
        want_inter = inter.shap_values(x[:10])
    np.testing.assert_allclose(tree_shapley_values(model, x[:10])[0][..., 0], want_path,
                               atol=1e-8)
    # shap routes the background in float32: differences of order 1e-8 near thresholds
    np.testing.assert_allclose(tree_shapley_values(model, x[:10], x[:30])[0][..., 0],
                               want_inter, atol=1e-6)


def test_errors() -> None:
    x, y = _data(4, 100, 9)
    model = lgb.LGBMRegressor(n_estimators=2, num_leaves=4, verbose=-1, n_jobs=1).fit(x, y)
    with pytest.raises(ValueError, match="`max_order` must be 1, 2 or 3"):
        tree_shapley_values(model, x[:2], max_order=4)
    # a chain of 63 splits on 63 distinct features: more than a pattern holds
    n = 63
    size = 2 * n + 1
    internal = np.arange(n)
    feature = np.concatenate([internal, np.full(n + 1, -1)])
    left = np.concatenate([n + internal, np.full(n + 1, -1)])  # left child: a leaf
    right = np.concatenate([internal[1:], [2 * n], np.full(n + 1, -1)])
    ens = _hand_tree(feature, np.zeros(size), left, right, np.ones(size), n)
    with pytest.raises(ValueError, match="more than 62 distinct features"):
        tree_paths(ens)


# ---------------------------------------------------------------------------- brute force
def _all_masks(n: int) -> np.ndarray:
    return np.array(list(itertools.product([0, 1], repeat=n)), dtype=bool)  # [2^n, n]


def _interventional_game(predict, rows: np.ndarray, background: np.ndarray) -> np.ndarray:
    """``[B, 2^n]``: the model's own ``predict`` of the hybrid rows (kept features from the
    row, removed ones from each background row), averaged over the background."""
    n = rows.shape[1]
    masks = _all_masks(n)
    hybrid = np.where(masks[None, :, None, :], rows[:, None, None, :], background[None, None])
    game = predict(hybrid.reshape(-1, n)).reshape(len(rows), len(masks), len(background))
    return game.mean(axis=2)


def _path_dependent_game(ens: TreeEnsemble, rows: np.ndarray) -> np.ndarray:
    """``[B, 2^n]`` (first output): the textbook top-down recursion, a kept feature's split
    followed as the row goes, a removed one's children weighted by their cover."""
    masks = _all_masks(rows.shape[1])
    internal = ens.left >= 0
    left = ens.goes_left(rows)  # [N, B]
    weight = np.zeros((len(ens.feature), len(rows), len(masks)))
    weight[ens.roots] = 1.0
    order = list(ens.roots)  # breadth-first: parents before children
    for node in order:
        if internal[node]:
            order.extend([ens.left[node], ens.right[node]])
    for node in order:
        if internal[node]:
            lc, rc = ens.left[node], ens.right[node]
            share = ens.cover[lc] / (ens.cover[lc] + ens.cover[rc])
            kept = masks[None, :, ens.feature[node]]
            go = left[node][:, None]
            weight[lc] = weight[node] * np.where(kept, go, share)
            weight[rc] = weight[node] * np.where(kept, ~go, 1 - share)
    leaf = ~internal
    return np.einsum("lbm,l->bm", weight[leaf], ens.value[leaf, 0]) + ens.base[0]


def _shapley_indices(game: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Shapley values ``[B, n]`` and SII ``[B, n, n]`` of ``game`` (``[B, 2^n]`` over
    :func:`_all_masks`) from their definitions."""
    n = int(np.log2(game.shape[1]))
    masks = _all_masks(n)
    size = masks.sum(axis=1)
    code = masks @ (1 << np.arange(n))
    at = np.empty(1 << n, dtype=np.int64)
    at[code] = np.arange(len(masks))
    sv = np.zeros((len(game), n))
    sii = np.zeros((len(game), n, n))
    for i in range(n):
        out = ~masks[:, i]
        w = 1.0 / (n * np.array([math.comb(n - 1, s) for s in size[out]]))
        sv[:, i] = (game[:, at[code[out] | 1 << i]] - game[:, out]) @ w
        for k in range(i + 1, n):
            both = out & ~masks[:, k]
            s = size[both]
            w2 = 1.0 / ((n - 1) * np.array([math.comb(n - 2, t) for t in s]))
            delta = (game[:, at[code[both] | 1 << i | 1 << k]] - game[:, at[code[both] | 1 << i]]
                     - game[:, at[code[both] | 1 << k]] + game[:, both])  # fmt: skip
            sii[:, i, k] = sii[:, k, i] = delta @ w2
    return sv, sii


def _triple_indices(game: np.ndarray) -> dict[tuple[int, int, int], np.ndarray]:
    """SII ``{(i, j, l): [B]}`` of every triple of ``game`` (``[B, 2^n]`` over
    :func:`_all_masks`) from its definition: the third discrete derivative at each set ``S``
    of the others, weighted ``|S|! (n - |S| - 3)! / (n - 2)!``."""
    n = int(np.log2(game.shape[1]))
    masks = _all_masks(n)
    size = masks.sum(axis=1)
    code = masks @ (1 << np.arange(n))
    at = np.empty(1 << n, dtype=np.int64)
    at[code] = np.arange(len(masks))
    out = {}
    for t in itertools.combinations(range(n), 3):
        rest = ~masks[:, list(t)].any(axis=1)
        s = size[rest]
        w = 1.0 / ((n - 2) * np.array([math.comb(n - 3, k) for k in s]))
        delta = np.zeros((len(game), int(rest.sum())))
        for chosen in itertools.product((0, 1), repeat=3):
            add = sum(1 << i for i, c in zip(t, chosen) if c)
            delta += (-1) ** (3 - sum(chosen)) * game[:, at[code[rest] | add]]
        out[t] = delta @ w
    return out


def _brute_force(predict, rows: np.ndarray, background: np.ndarray) -> tuple[np.ndarray, ...]:
    """Interventional Shapley values ``[B, n]`` and SII ``[B, n, n]`` over all ``2^n`` masks."""
    return _shapley_indices(_interventional_game(predict, rows, background))


def _check_brute_force(model, predict, rows, background) -> None:
    sv_ref, sii_ref = _brute_force(predict, rows, background)
    scale = max(np.abs(sv_ref).max(), np.abs(sii_ref).max())
    sv, _, pairs, sii = tree_shapley_values(model, rows, background, max_order=2)
    np.testing.assert_allclose(sv[..., 0].numpy(), sv_ref, rtol=0, atol=1e-9 * scale)
    dense = np.zeros_like(sii_ref)
    i, k = pairs.numpy().T
    dense[:, i, k] = dense[:, k, i] = sii[..., 0].numpy()
    np.testing.assert_allclose(dense, sii_ref, rtol=0, atol=1e-9 * scale)


def test_sklearn_forest_equals_brute_force_over_all_masks() -> None:
    # shap, shapiq 1.8 and Woodelf differ from this by ~1e-3 relative on a depth-6 forest
    # (benchmarks/tree_vs_shapiq.py); the model's own predictions are the reference here
    from sklearn.ensemble import RandomForestRegressor

    x, y = _data(5, 300, 10)
    forest = RandomForestRegressor(n_estimators=10, max_depth=6, random_state=0).fit(x, y)
    _check_brute_force(forest, forest.predict, x[:3] + 0.05, x[100:106])


def test_xgboost_with_missing_values_equals_brute_force_over_all_masks() -> None:
    xgb = pytest.importorskip("xgboost")
    x, y = _data(5, 300, 11, nan=0.15)  # NaN rows follow each split's default direction
    model = xgb.XGBRegressor(n_estimators=10, max_depth=4, n_jobs=1, random_state=0).fit(x, y)

    # XGBoost predicts in float32: the game is read in float64 from the parsed trees, whose
    # predictions match XGBoost's to float32 rounding
    ens = parse_tree_ensemble(model)
    margin = model.get_booster().predict(xgb.DMatrix(x[:50]), output_margin=True)
    np.testing.assert_allclose(ens.predict(x[:50])[:, 0], margin, rtol=1e-6, atol=1e-6)
    _check_brute_force(model, lambda rows: ens.predict(rows)[:, 0], x[:3], x[100:107])


@pytest.mark.parametrize("zero_as_missing", [False, True])
def test_lightgbm_missing_values_equal_brute_force_over_all_masks(zero_as_missing: bool) -> None:
    x, y = _data(5, 400, 12, nan=0.15)
    x[np.random.default_rng(0).random(x.shape) < 0.1] = 0.0  # zeros: missing for zero_as_missing
    model = lgb.LGBMRegressor(n_estimators=10, num_leaves=12, min_child_samples=5,
                              zero_as_missing=zero_as_missing, verbose=-1, n_jobs=1,
                              random_state=0).fit(x, y)

    def predict(rows: np.ndarray) -> np.ndarray:
        return model.predict(rows, raw_score=True)

    _check_brute_force(model, predict, x[:3], x[200:206])


# ---------------------------------------------------------------------------- categorical
def _categorical_data(m: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Six features, 0, 2 and 4 categorical (integer codes: 6, 30 and 3 categories), with
    NaN in every column."""
    rng = np.random.default_rng(seed)
    x = np.column_stack([rng.integers(0, 6, m), rng.normal(size=m), rng.integers(0, 30, m),
                         rng.normal(size=m), rng.integers(0, 3, m), rng.normal(size=m)])
    y = (2.0 * np.isin(x[:, 0], [0, 2, 5]) + (x[:, 2] % 4 == 1) * x[:, 1] + x[:, 3]
         - (x[:, 4] == 1) * x[:, 5] + rng.normal(0, 0.1, m))  # fmt: skip
    x[rng.random(x.shape) < 0.1] = np.nan
    return x, y


def _held_out(m: int, seed: int) -> np.ndarray:
    """Rows whose categorical columns hold unseen categories (up to 70, past a 32-bit word),
    negative and fractional codes (``int()`` truncates: -0.5 is category 0 for LightGBM,
    outside for XGBoost), and NaN."""
    rng = np.random.default_rng(seed)
    x = _categorical_data(m, seed)[0]
    cat = [0, 2, 4]
    x[:, cat] = rng.integers(-2, 70, (m, 3))
    x[: m // 4, cat] += rng.uniform(-0.9, 0.9, (m // 4, 3))
    x[rng.random(x.shape) < 0.15] = np.nan
    return x


def _lgb_categorical(**params: Any) -> Any:
    x, y = _categorical_data(500, 20)
    return lgb.LGBMRegressor(n_estimators=10, num_leaves=12, min_child_samples=5,
                             min_data_per_group=5, cat_smooth=1.0, verbose=-1, n_jobs=1,
                             random_state=0, **params).fit(x, y, categorical_feature=[0, 2, 4])


@pytest.mark.parametrize("zero_as_missing", [False, True])
def test_lightgbm_categorical_splits_route_as_lightgbm(zero_as_missing: bool) -> None:
    # many-vs-many splits (features 0 and 2) and one-hot ones (feature 4: 3 categories, under
    # max_cat_to_onehot); unseen categories, negative values and NaN go right
    model = _lgb_categorical(zero_as_missing=zero_as_missing)
    ens = parse_tree_ensemble(model)
    rows = ens.category >= 0
    assert set(ens.feature[rows]) == {0, 2, 4}
    n_left = np.unpackbits(ens.category_bits.view(np.uint8), axis=1).sum(axis=1)
    assert (n_left == 1).any() and (n_left > 1).any()
    x = _held_out(400, 21)
    np.testing.assert_allclose(ens.predict(x)[:, 0], model.predict(x, raw_score=True),
                               rtol=0, atol=1e-12)


def _check_indices(model, game: np.ndarray, rows: np.ndarray, background) -> None:
    """Shapley values and SII of both routes (pattern tables and the Fourier read-out) and
    k-SII order 2 against the indices of ``game`` (``[B, 2^n]``) from their definitions."""
    sv_ref, sii_ref = _shapley_indices(game)
    scale = max(np.abs(sv_ref).max(), np.abs(sii_ref).max())
    sv, base, pairs, sii = tree_shapley_values(model, rows, background, max_order=2)
    np.testing.assert_allclose(sv[..., 0].numpy(), sv_ref, rtol=0, atol=1e-9 * scale)
    dense = np.zeros_like(sii_ref)
    i, k = pairs.numpy().T
    dense[:, i, k] = dense[:, k, i] = sii[..., 0].numpy()
    np.testing.assert_allclose(dense, sii_ref, rtol=0, atol=1e-9 * scale)
    np.testing.assert_allclose(base.numpy(), game[:1, 0], rtol=0, atol=1e-9 * scale)
    sv_full, sii_full, triples_full = _reference(model, rows, background)
    np.testing.assert_allclose(sv_full[..., 0], sv_ref, rtol=0, atol=1e-9 * scale)
    np.testing.assert_allclose(sii_full[..., 0], sii_ref, rtol=0, atol=1e-9 * scale)
    # order 3: every triple's SII, from the patterns and from the spectrum
    triples_ref = _triple_indices(game)
    _, _, sets, sii3 = tree_shapley_values(model, rows, background, max_order=3)
    got = {tuple(t): sii3[:, q, 0].numpy() for q, t in enumerate(sets.tolist()) if t[2] >= 0}
    assert any(np.abs(v).max() > 1e-6 * scale for v in triples_ref.values())
    for t, value in triples_ref.items():
        zero = np.zeros(len(rows))
        np.testing.assert_allclose(got.get(t, zero), value, rtol=0, atol=1e-9 * scale)
        np.testing.assert_allclose(triples_full.get(t, zero[:, None])[:, 0], value, rtol=0,
                                   atol=1e-9 * scale)  # fmt: skip
    # k-SII order 2 (Bernoulli aggregation of SII): pairs are SII, singletons SV - SII/2
    masking = "path_dependent" if background is None else "interventional"
    explainer = TreeInteraction(model, masking, background=background)
    ksii = explainer.attribute(rows, index="k-SII", max_order=2).to_dict()
    n = rows.shape[1]
    want = {(): game[:, 0]}
    want.update({(a,): sv_ref[:, a] - sii_ref[:, a].sum(axis=1) / 2 for a in range(n)})
    want.update({(a, b): sii_ref[:, a, b] for a, b in itertools.combinations(range(n), 2)})
    for key, value in want.items():
        got = np.asarray(ksii.get(key, np.zeros(len(rows))))
        np.testing.assert_allclose(got, value, rtol=0, atol=1e-9 * scale, err_msg=str(key))


@pytest.mark.parametrize("masking", ["path_dependent", "interventional"])
def test_lightgbm_categorical_splits_equal_brute_force_over_all_masks(masking: str) -> None:
    model = _lgb_categorical()
    rows = _held_out(4, 22)
    if masking == "interventional":
        background = _held_out(6, 23)
        game = _interventional_game(lambda r: model.predict(r, raw_score=True), rows, background)
        _check_indices(model, game, rows, background)
        return
    game = _path_dependent_game(parse_tree_ensemble(model), rows)
    # the recursion's Shapley values are LightGBM's own path-dependent TreeSHAP
    contrib = model.predict(rows, pred_contrib=True)
    sv_ref = _shapley_indices(game)[0]
    np.testing.assert_allclose(sv_ref, contrib[:, :-1], rtol=0, atol=1e-9 * np.abs(sv_ref).max())
    _check_indices(model, game, rows, None)


def test_xgboost_categorical_splits_equal_brute_force_over_all_masks() -> None:
    # XGBoost sends the listed categories right, every other value left (unseen and negative
    # categories), NaN to the default child; partition splits and one-hot splits
    xgb = pytest.importorskip("xgboost")
    x, y = _categorical_data(500, 24)
    types = ["c", "q", "c", "q", "c", "q"]
    for onehot in (1, 8):
        model = xgb.XGBRegressor(n_estimators=10, max_depth=4, n_jobs=1, random_state=0,
                                 enable_categorical=True, feature_types=types,
                                 max_cat_to_onehot=onehot).fit(x, y)
        ens = parse_tree_ensemble(model)
        assert set(ens.feature[ens.category >= 0]) == {0, 2, 4}
        held = _held_out(400, 25)
        data = xgb.DMatrix(held, feature_types=types, enable_categorical=True)
        margin = model.get_booster().predict(data, output_margin=True)
        # XGBoost sums in float32: routing is exact, the sum agrees to float32 rounding
        np.testing.assert_allclose(ens.predict(held)[:, 0], margin, rtol=0, atol=1e-5)
    rows, background = held[:4], held[10:16]
    game = _interventional_game(lambda r: ens.predict(r)[:, 0], rows, background)
    _check_indices(model, game, rows, background)
    _check_indices(model, _path_dependent_game(ens, rows), rows, None)


def test_sklearn_hist_gradient_boosting_categorical_features_are_refused() -> None:
    # HistGradientBoosting ordinal-encodes declared categorical features and moves them to the
    # first columns before its trees see them: refused until that mapping is read
    from sklearn.ensemble import HistGradientBoostingRegressor

    x, y = _categorical_data(200, 26)
    model = HistGradientBoostingRegressor(max_iter=3, categorical_features=[0, 2]).fit(x, y)
    with pytest.raises(ValueError, match="categorical_features=None"):
        tree_shapley_values(model, x[:2])


def test_routing_keys_equal_rows_one_by_one(monkeypatch: pytest.MonkeyPatch) -> None:
    # rows grouped per tree by their routing key (repeated rows included) give the same
    # values as every row on its own (trees over the key size), and a mix of both
    x, y = _data(6, 300, 14, nan=0.1)
    model = lgb.LGBMRegressor(n_estimators=10, num_leaves=16, min_child_samples=5,
                              verbose=-1, n_jobs=1, random_state=0).fit(x, y)
    rows = np.concatenate([x[:20], x[:20], x[5:8]])
    splits = parse_tree_ensemble(model).left >= 0
    for background in (None, x[200:212]):
        keyed = tree_shapley_values(model, rows, background, max_order=2)
        for bits in (0, 12):  # no tree keyed; trees of at most 12 splits keyed
            monkeypatch.setattr(treeshap, "_KEY_BITS", bits)
            other = tree_shapley_values(model, rows, background, max_order=2)
            monkeypatch.undo()
            for a, b in zip(keyed, other):
                torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
    assert splits.sum() > 12 * 10 / 2  # some trees over 12 splits: the mix is a mix


def test_dense_row_tables_equal_the_entry_by_entry_sums(monkeypatch: pytest.MonkeyPatch) -> None:
    # the rows' values through dense per-tree tables over every target equal the per-entry
    # gather and index_add they replace (Shapley values and pairs, both maskings, two outputs,
    # blocks of a few trees)
    x, y = _data(6, 300, 15)
    model = lgb.LGBMClassifier(objective="multiclass", num_class=3, n_estimators=6,
                               num_leaves=12, verbose=-1, n_jobs=1, random_state=0)
    model.fit(x, (y > np.quantile(y, 0.3)).astype(int) + (y > np.quantile(y, 0.7)))
    used = []
    original = treeshap._accumulate

    def spy(paths, groups, entries, classes, bpat, order, out, *rest):
        used.append(out.shape[0] <= treeshap.DENSE_SPREAD * entries.tree.numel() / paths.n_trees)
        return original(paths, groups, entries, classes, bpat, order, out, *rest)

    monkeypatch.setattr(treeshap, "_accumulate", spy)
    monkeypatch.setattr(treeshap, "_CHUNK", 4096)  # blocks of a few trees
    for background in (None, x[200:230]):
        for order in (1, 2):
            monkeypatch.setattr(treeshap, "DENSE_SPREAD", 1e9)
            dense = tree_shapley_values(model, x[:60], background, max_order=order)
            monkeypatch.setattr(treeshap, "DENSE_SPREAD", 0)
            entry = tree_shapley_values(model, x[:60], background, max_order=order)
            for a, b in zip(dense, entry):
                if a is not None:
                    torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
    assert True in used and False in used


def _rows_one_by_one(monkeypatch: pytest.MonkeyPatch) -> None:
    """Leaves without an upfront table computed class by class (no distinct patterns, no lazy
    tables): a class's values then do not depend on the other classes of its chunk, so that
    ways of forming the chunks compare bitwise."""
    monkeypatch.setattr(treeshap, "DISTINCT_PATTERNS", False)
    monkeypatch.setattr(treeshap, "LAZY_TABLES", False)


def _same_bitwise_with(monkeypatch: pytest.MonkeyPatch, settings: dict[str, Any], model: Any,
                       rows: np.ndarray, backgrounds: tuple, orders: tuple[int, ...] = (2,),
                       atol: float = 0.0) -> Any:  # fmt: skip
    """Values up to each of ``orders`` with treeshap's current settings, checked equal (bitwise,
    or to ``atol``) to those with ``settings`` applied, for each background; returns the last
    values."""
    out = None
    for background in backgrounds:
        for order in orders:
            out = tree_shapley_values(model, rows, background, max_order=order)
            with monkeypatch.context() as patch:
                for name, value in settings.items():
                    patch.setattr(treeshap, name, value)
                other = tree_shapley_values(model, rows, background, max_order=order)
            for a, b in zip(out, other):
                if a is not None:
                    torch.testing.assert_close(a, b, rtol=0, atol=atol)
    return out


def test_entry_sums_at_once_equal_tree_by_tree(monkeypatch: pytest.MonkeyPatch) -> None:
    # a block's entry-by-entry row sums in one gather and index_add (few rows) are bitwise
    # those of a pair of calls per tree (both maskings, order 2, two outputs, blocks of a few
    # trees)
    x, y = _data(6, 300, 15)
    model = lgb.LGBMClassifier(objective="multiclass", num_class=3, n_estimators=6,
                               num_leaves=12, verbose=-1, n_jobs=1, random_state=0)
    model.fit(x, (y > np.quantile(y, 0.3)).astype(int) + (y > np.quantile(y, 0.7)))
    monkeypatch.setattr(treeshap, "DENSE_SPREAD", 0)  # entry by entry
    monkeypatch.setattr(treeshap, "_CHUNK", 4096)  # blocks of a few trees
    monkeypatch.setattr(treeshap, "ROWS_AT_ONCE", 1e9)
    _same_bitwise_with(monkeypatch, {"ROWS_AT_ONCE": 0}, model, x[:60], (None, x[200:230]))


def test_distinct_background_patterns_equal_every_background_row(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # interventional rows summed over each leaf's distinct background patterns (weighted by
    # their counts) equal the sum over every background row: repeated background rows,
    # orders 1 to 3, leaves computed row by row (no pattern tables)
    x, y = _data(6, 300, 15)
    model = lgb.LGBMRegressor(n_estimators=6, num_leaves=12, verbose=-1, n_jobs=1,
                              random_state=0).fit(x, y)
    background = np.concatenate([x[200:215], x[200:210], x[250:260]])
    monkeypatch.setattr(treeshap, "_table_is_cheaper", lambda d, work, interventional: False)
    monkeypatch.setattr(treeshap, "DISTINCT_BACKGROUNDS", 1.0)
    _same_bitwise_with(monkeypatch, {"DISTINCT_BACKGROUNDS": 0.0}, model, x[:40], (background,),
                       orders=(1, 2, 3), atol=1e-12)  # fmt: skip


@pytest.mark.parametrize("seen_map", [0, 8])
def test_distinct_patterns_by_map_equal_the_sort(monkeypatch: pytest.MonkeyPatch,
                                                 seen_map: int) -> None:  # fmt: skip
    # each row's distinct patterns (increasing, padded) and every entry's place among them,
    # through the map of patterns seen (SEEN_MAP 8) or the sort (0): the same tensors, and
    # they rebuild the keys; empty rows and no leaves
    monkeypatch.setattr(treeshap, "SEEN_MAP", seen_map)
    gen = torch.Generator().manual_seed(0)
    for d, shape in ((5, (7, 40)), (3, (4, 1)), (6, (3, 0)), (4, (0, 5))):
        keys = torch.randint(0, 1 << d, shape, generator=gen)
        keys[:, : shape[1] // 2] &= 6  # repeated patterns
        for fill in (0, (1 << d) - 1):
            distinct, at = treeshap._distinct_patterns(keys, d, fill)
            expected, expected_at = treeshap._distinct(keys, fill)
            assert torch.equal(distinct, expected) and torch.equal(at, expected_at)
            assert torch.equal(distinct.gather(1, at), keys)
            for row, values in zip(distinct, keys):
                count = values.unique().numel()
                assert torch.equal(row[:count], values.unique())
                assert bool((row[count:] == fill).all())


def test_distinct_patterns_and_lazy_tables_equal_rows_one_by_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # leaves whose tables are built at first use and rows computed once per distinct pattern of
    # a leaf equal every class computed by itself without tables (to 1e-12, values up to 1.7:
    # path-dependent tables and rows round differently), both maskings: pieces of leaves
    # (past the first of their group) some with a table built and some computed by rows (one
    # pass), tables built in a first pass of rows and read in the next (small _CHUNK), keyed
    # and unkeyed trees, orders 1-3, two outputs
    x, y = _data(12, 900, 31)
    x = np.round(x * 2) / 2  # repeated rows: classes share patterns
    labels = (y > np.quantile(y, 0.3)).astype(int) + (y > np.quantile(y, 0.7))
    settings: dict[str, Any] = {"min_child_samples": 2, "verbose": -1, "n_jobs": 1,
                                "random_state": 0}
    models = [lgb.LGBMRegressor(n_estimators=8, num_leaves=64, **settings).fit(x, y),
              lgb.LGBMClassifier(objective="multiclass", num_class=3, n_estimators=3,
                                 num_leaves=48, **settings).fit(x, labels)]  # fmt: skip
    background = x[800:830]
    states = []
    original = treeshap._lazy_leaves

    def spy(paths, g, a, b, keys, *rest):
        assert g.lazy is not None
        before = bool(g.lazy.built[a:b].all())
        original(paths, g, a, b, keys, *rest)
        built = g.lazy.built[a:b]
        states.append((g.keyed, before, bool(built.all()), bool(built.any()),
                       g.lazy.interventional))  # fmt: skip

    monkeypatch.setattr(treeshap, "_lazy_leaves", spy)
    monkeypatch.setattr(treeshap, "LAZY_DEPTH", 3)  # path-dependent groups lazy from d = 4
    off = {"DISTINCT_PATTERNS": False, "LAZY_TABLES": False, "_CHUNK": 1 << 22,
           "_table_is_cheaper": lambda d, work, interventional: False}
    cases = [(bits, model, 0.1, 1 << 14, 60, (1, 2, 3)) for bits in (63, 6) for model in models]
    cases.append((63, models[0], 0.0, 1024, 200, (2,)))  # passes of about 60 rows
    for bits, model, cost, chunk, rows, orders in cases:  # bits 6: trees over 6 splits by rows
        monkeypatch.setattr(treeshap, "_KEY_BITS", bits)
        for name in ("TABLE_VALUE_COST", "TABLE_VALUE_COST_PATH_DEPENDENT"):
            monkeypatch.setattr(treeshap, name, {1: cost, 2: cost / 10, 3: cost / 20})
        monkeypatch.setattr(treeshap, "_CHUNK", chunk)
        _same_bitwise_with(monkeypatch, off, model, x[:rows], (None, background),
                           orders=orders, atol=1e-12)  # fmt: skip
    for masking in (True, False):
        seen = [state[:4] for state in states if state[4] == masking]
        assert {keyed for keyed, _, _, _ in seen} == {True, False}
        assert any(some and not done for _, _, done, some in seen)  # mixed pieces
        assert any(before for _, before, _, _ in seen)  # tables of an earlier pass


def test_row_classes_by_direct_keys_equal_one_sort(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # small trees take their keys as classes outright (DIRECT_KEYS), the others' classes come
    # from one sort of their keys or (UNIQUE_FROM rows on) torch.unique tree by tree: the
    # values are bitwise those of one sort of all keys (repeated rows, missing values, both
    # maskings, order 2)
    x, y = _data(6, 1500, 16, nan=0.05)
    model = lgb.LGBMRegressor(n_estimators=8, num_leaves=10, min_child_samples=5,
                              verbose=-1, n_jobs=1, random_state=0).fit(x, y)
    # a tree of 3 splits (8 keys <= 1,500 / 64), two on feature 0: some keys never occur
    small = _hand_tree([0, 0, 1, -1, -1, -1, -1], [0.0, -1.0, 0.0, 0, 0, 0, 0],
                       [1, 3, 5, -1, -1, -1, -1], [2, 4, 6, -1, -1, -1, -1],
                       [0, 0, 0, 1.0, -2.0, 0.5, 3.0], 6)
    rows = np.concatenate([x[:700], x[:300]])
    built = []
    original = treeshap._RowClasses.build

    def spy(paths, chunk, keyed, dtype, *rest):
        classes = original(paths, chunk, keyed, dtype, *rest)
        built.append(int(classes.count.max()))
        return classes

    monkeypatch.setattr(treeshap._RowClasses, "build", staticmethod(spy))
    for m in (model, small):
        _same_bitwise_with(monkeypatch, {"DIRECT_KEYS": 10**12}, m, rows, (None, x[1000:1020]))
        monkeypatch.setattr(treeshap, "UNIQUE_FROM", 0)
        _same_bitwise_with(monkeypatch, {"DIRECT_KEYS": 10**12}, m, rows, (None, x[1000:1020]))
        monkeypatch.setattr(treeshap, "UNIQUE_FROM", 10**9)
    # the model's classes are its distinct keys every way; the small tree's direct keys are
    # all 8 keys, against the 6 that occur
    assert built[0] == built[1] == built[4] == built[5] > 16
    assert built[8:10] == built[12:14] == [8, 6]


@pytest.mark.parametrize("dtype", [torch.int32, torch.int64])
def test_sort_rows_equals_torch_sort(dtype: torch.dtype) -> None:
    # the packed NumPy sort of keys in [0, 2^31) and the argsort (negative keys, keys from
    # 2^31) give torch's sorted values and an order that reads them from the keys; no keys
    gen = torch.Generator().manual_seed(0)
    cases = [torch.randint(0, 50, (7, 300), generator=gen), torch.zeros(3, 5, dtype=torch.int64),
             torch.randint(0, 2**31, (4, 100), generator=gen), torch.zeros(0, 4, dtype=torch.int64),
             torch.zeros(2, 0, dtype=torch.int64)]  # fmt: skip
    cases.append(torch.tensor([[2**31 - 1, 0, 5, 2**31 - 1, 5]]))  # the packed sort's largest
    if dtype == torch.int64:
        cases += [torch.randint(-5, 5, (3, 50), generator=gen),
                  torch.randint(0, 2**40, (3, 50), generator=gen),
                  torch.tensor([[2**31, 1, 2**31, 0]])]  # fmt: skip
    for keys in cases:
        keys = keys.to(dtype)
        got, order = treeshap._sort_rows(keys)
        want = keys.sort(dim=1).values
        assert got.dtype == keys.dtype and order.dtype == torch.int64
        assert torch.equal(got, want) and torch.equal(keys.gather(1, order), want)
        assert torch.equal(order.sort(dim=1).values, torch.arange(keys.shape[1]).expand_as(keys))


def _caterpillar(k: int, seed: int) -> TreeEnsemble:
    """One tree splitting on features 0 .. k - 1 in turn (leaf to the left at each): its
    deepest leaves have ``k`` distinct path features."""
    rng = np.random.default_rng(seed)
    feature = list(range(k)) + [-1] * (k + 1)
    left = [k + i for i in range(k)] + [-1] * (k + 1)
    right = list(range(1, k)) + [2 * k] + [-1] * (k + 1)
    value = [0.0] * k + rng.normal(size=k + 1).tolist()
    return _hand_tree(feature, [0.0] * (2 * k + 1), left, right, value, k)


@pytest.mark.parametrize("k", [6, 30])
def test_key_product_patterns_equal_slot_by_slot(monkeypatch: pytest.MonkeyPatch, k: int) -> None:
    # the keyed leaves' decision patterns from one product per block of trees equal the
    # patterns packed slot by slot: random deep trees with repeated features, and a path of
    # 30 distinct features (float64 patterns); the values are bitwise equal
    x, y = _data(8, 400, 17)
    deep = lgb.LGBMRegressor(n_estimators=6, num_leaves=24, max_depth=9, min_child_samples=3,
                             verbose=-1, n_jobs=1, random_state=0).fit(x, y)
    model: Any = deep if k == 6 else _caterpillar(k, 0)
    rows = x[:40] if k == 6 else np.random.default_rng(1).normal(0.8, 1, (40, k))
    ens = parse_tree_ensemble(model)
    paths = tree_paths(ens)
    if k == 6:  # some slot is decided by several splits on its feature
        mask = paths.mask[paths.feature >= 0]
        assert bool(((mask & (mask - 1)) != 0).any())
    monkeypatch.setattr(treeshap, "KEY_PRODUCT_SPREAD", 1e9)  # the product in every block
    _same_bitwise_with(monkeypatch, {"KEY_PRODUCT": False}, model, rows, (None, rows[:5] - 0.5))
    # the patterns themselves, class by class, against key & mask == need packed
    groups = []
    for d in torch.unique(paths.n_slots).tolist():
        idx = torch.nonzero(paths.n_slots == d).squeeze(1)
        idx = idx[torch.argsort(paths.leaf_tree[idx], stable=True)]
        groups.append(treeshap._Group(d, True, idx, paths.leaf_tree[idx], paths.feature[idx, :d],
                                      None))
    kp = treeshap._KeyPatterns.build(paths, groups, torch.int64)
    assert kp is not None
    key = torch.randint(-(2**63), 2**63 - 1, (paths.n_trees, 50))  # every bit, 62 too
    splits = paths.tree_splits[:, None]
    key &= torch.where(splits >= 63, -1, (1 << splits.clamp(max=62)) - 1)
    pattern = kp.block(key, 0, paths.n_trees)
    assert pattern.dtype == (torch.float32 if k <= 24 else torch.float64)
    for g in groups:
        follow = ((key[g.tree][..., None] & paths.mask[g.idx, None, : g.d])
                  == paths.need[g.idx, None, : g.d])  # fmt: skip
        want = (follow.long() << torch.arange(g.d)).sum(dim=-1)
        got = treeshap._follow_patterns(key[g.tree], paths.mask[g.idx, : g.d],
                                        paths.need[g.idx, : g.d])  # fmt: skip
        assert torch.equal(got, want)
        assert g.local is not None
        torch.testing.assert_close(pattern[g.tree, g.local].long(), want, rtol=0, atol=0)


def test_key_product_steps_aside_past_52_slots() -> None:
    # float64 holds a pattern of at most 52 slots exactly: beyond that the slot-by-slot
    # packing computes them (a path of 55 distinct features, 55 splits: still keyed)
    paths = tree_paths(_caterpillar(55, 2))
    idx = torch.arange(paths.leaf.numel())
    groups = [treeshap._Group(int(paths.n_slots.max()), True, idx, paths.leaf_tree,
                              paths.feature, None)]
    assert treeshap._KeyPatterns.build(paths, groups, torch.int64) is None
    rows = np.random.default_rng(3).normal(2.0, 1, (3, 55))
    values, base, _, _ = tree_shapley_values(_caterpillar(55, 2), rows)
    np.testing.assert_allclose(values.sum(dim=1) + base, _caterpillar(55, 2).predict(rows),
                               rtol=0, atol=1e-9)


@pytest.mark.parametrize("k", [20, 40])
def test_interventional_values_of_a_deep_path_add_up(k: int) -> None:
    # past 16 slots the interventional rows count bits without a table (and past 31 in int64
    # keys): a path of k distinct features, every row's Shapley values add up to its
    # prediction less the background's mean prediction
    tree = _caterpillar(k, 4)
    rng = np.random.default_rng(5)
    rows = rng.normal(1.5, 1, (6, k))
    rows[:, : k - 3] = 1.0  # right at the first k - 3 splits: the deepest leaves are reached
    background = rng.normal(1.0, 1, (9, k))
    background[::2, : k - 2] = 1.0
    values, base, _, _ = tree_shapley_values(tree, rows, background)
    want = tree.predict(rows)[:, 0] - tree.predict(background)[:, 0].mean()
    np.testing.assert_allclose(values.sum(dim=1)[:, 0], want, rtol=0, atol=1e-12)
    np.testing.assert_allclose(base[0], tree.predict(background)[:, 0].mean(), rtol=0, atol=1e-12)


def test_rank_grids_route_as_binary_search(monkeypatch: pytest.MonkeyPatch) -> None:
    # the key tables' ranks from the grids (TreeEnsemble.rank), beside splits routed in full
    # (missing values in some chunks), give values bitwise those of binary search: a
    # scikit-learn forest and a LightGBM booster (both with key tables), both maskings, orders
    # 1-2; a cell per threshold, so that some cells spill to binary search
    from sklearn.ensemble import RandomForestRegressor

    from torchspex.decoders import _tree_parsers as tp

    x, y = _data(7, 600, 23, nan=0.0)
    rows = x[:300].copy()
    rows[250:, 3] = np.nan  # a chunk whose feature 3 takes the full rule
    models = [RandomForestRegressor(n_estimators=12, max_depth=8, random_state=0).fit(x, y),
              lgb.LGBMRegressor(n_estimators=10, num_leaves=20, verbose=-1, n_jobs=1,
                                random_state=0).fit(x, y)]  # fmt: skip
    monkeypatch.setattr(treeshap, "_CHUNK", 1 << 18)  # chunks of about 150 rows
    monkeypatch.setattr(tp, "RANK_GRID_CELLS", 1)  # grids within the chunks' rows; crowded
    for model in models:
        cuts = parse_tree_ensemble(model)._cuts[1]
        rows = rows.copy()
        for j in range(7):  # rows right at thresholds (ties decide the side)
            if cuts[j].size:
                rows[: 2 * cuts[j].size : 2, j] = cuts[j][:150]
        for background in (None, x[400:420]):
            for order in (1, 2):
                values = []
                for at in (1 << 62, 0):  # binary search, then grids from any size
                    monkeypatch.setattr(tp, "RANK_GRID_ROWS", at)
                    ens = parse_tree_ensemble(model)
                    paths = tree_paths(ens)
                    values.append(tree_shapley_values(ens, rows, background, max_order=order,
                                                      paths=paths))  # fmt: skip
                for a, b in zip(*values):
                    if a is not None:
                        torch.testing.assert_close(a, b, rtol=0, atol=0)
                assert any(g is not None for g in paths.router._rank_grids.values())


def test_key_tables_equal_split_by_split_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    # routing keys from per-feature tables equal the split-by-split keys bitwise: numeric
    # splits (LightGBM <=, XGBoost < on float32 inputs, scikit-learn), categorical splits and
    # LightGBM's missing type Zero (routed in full beside the tables), and chunks of rows with
    # and without missing values (their features' splits in full)
    xgb = pytest.importorskip("xgboost")
    from sklearn.ensemble import RandomForestRegressor

    x, y = _data(6, 400, 18, nan=0.0)
    x[:100:7, 2] = np.nan  # missing values in some chunks only
    x[5:60:9, 3] = 0.0
    models = [
        lgb.LGBMRegressor(n_estimators=8, num_leaves=12, min_child_samples=5, verbose=-1,
                          n_jobs=1, random_state=0).fit(x, y),
        lgb.LGBMRegressor(n_estimators=8, num_leaves=12, min_child_samples=5, verbose=-1,
                          n_jobs=1, random_state=0, zero_as_missing=True).fit(x, y),
        _lgb_categorical(),
        xgb.XGBRegressor(n_estimators=8, max_depth=4, n_jobs=1, random_state=0).fit(x, y),
        RandomForestRegressor(n_estimators=5, max_depth=5, random_state=0).fit(
            np.nan_to_num(x), y),
    ]
    monkeypatch.setattr(treeshap, "_CHUNK", 512)  # several passes of rows, blocks of trees
    monkeypatch.setattr(treeshap, "KEY_TABLE_SPLITS", 0.0)  # tables wherever they can
    _rows_one_by_one(monkeypatch)  # the passes differ: bitwise only row by row
    used = []
    original = treeshap._KeyTables.keys

    def spy(self, paths, x, below, dtype, lo, hi):
        used.append(bool(x.nan.any()))
        return original(self, paths, x, below, dtype, lo, hi)

    monkeypatch.setattr(treeshap._KeyTables, "keys", spy)
    for i, model in enumerate(models):
        rows = _held_out(200, 22) if i == 2 else x[:200]
        rows = np.nan_to_num(rows) if i == 4 else rows
        _same_bitwise_with(monkeypatch, {"KEY_TABLES": False}, model, rows,
                           (None, rows[150:160]))
    assert True in used and False in used


def test_row_passes_and_tree_blocks_equal_row_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    # rows in passes with each pass's trees in blocks (ROW_PASSES) give bitwise the values of
    # chunks of rows over all trees: more trees than targets (so that blocks form), keys from
    # feature tables (by lookups and by dense columns, KEY_COLUMNS) and split by split, missing
    # values in some passes only, categorical splits, two outputs, orders 1-3, both maskings
    xgb = pytest.importorskip("xgboost")
    from sklearn.ensemble import RandomForestRegressor

    x, y = _data(4, 400, 23)
    x = np.round(x * 2) / 2  # few thresholds: feature tables within the small _CHUNK
    x[:60:7, 2] = np.nan  # in the first pass only (orders 2, 3)
    labels = (y > np.median(y)).astype(int)
    models = [
        lgb.LGBMRegressor(n_estimators=30, num_leaves=8, min_child_samples=5, verbose=-1,
                          n_jobs=1, random_state=0).fit(x, y),
        xgb.XGBClassifier(n_estimators=30, max_depth=3, n_jobs=1, random_state=0).fit(x, labels),
        RandomForestRegressor(n_estimators=30, max_depth=4, random_state=0).fit(
            np.nan_to_num(x), y),
        lgb.LGBMClassifier(objective="multiclass", num_class=2, n_estimators=15, num_leaves=6,
                           min_child_samples=5, verbose=-1, n_jobs=1, random_state=0).fit(
            x, labels),
        _lgb_categorical(),
    ]
    blocks = []
    original = treeshap._RowClasses.build

    def spy(paths, rows, keyed, dtype, tables=None, lo=0, hi=None, ranks=None):
        blocks.append((lo, rows.shape[0], tables is not None,
                       tables is not None and tables.columns is not None))
        return original(paths, rows, keyed, dtype, tables, lo, hi, ranks)

    monkeypatch.setattr(treeshap._RowClasses, "build", spy)
    monkeypatch.setattr(treeshap, "_CHUNK", 2048)  # chunks of 68 rows; passes of 150-300 rows
    _rows_one_by_one(monkeypatch)  # passes and chunks hold other classes
    # in blocks of 6-13 trees, their classes by a sort or keys as classes
    monkeypatch.setattr(treeshap, "DIRECT_KEYS", 8)
    for i, model in enumerate(models):
        rows = _held_out(300, 24) if i == 4 else x[:300]
        rows = np.nan_to_num(rows) if i == 2 else rows
        for splits, columns in ((0.0, True), (0.0, False), (1e9, True)):
            monkeypatch.setattr(treeshap, "KEY_TABLE_SPLITS", splits)  # tables always / never
            monkeypatch.setattr(treeshap, "KEY_COLUMNS", columns)
            _same_bitwise_with(monkeypatch, {"ROW_PASSES": False}, model, rows,
                               (None, rows[150:170]), orders=(1, 2, 3))  # fmt: skip
        _same_bitwise_with(monkeypatch, {"ROW_PASSES": False, "KEY_TABLES": False}, model, rows,
                           (None,), orders=(2,))  # the tables' columns against no tables
    assert any(lo > 0 and columns for lo, _, _, columns in blocks)
    assert any(lo > 0 and tables and not columns for lo, _, tables, columns in blocks)
    assert any(lo > 0 and not tables for lo, _, tables, _ in blocks)
    assert any(lo > 0 and size >= 64 for lo, size, _, _ in blocks)  # unique / direct keys
    assert max(size for _, size, _, _ in blocks) > 2048 // 30  # passes longer than the chunks


def test_bit_packer_equals_shifted_sums() -> None:
    # keys packed a byte at a time equal the sum of left << bit: trees without splits (key 0),
    # trees with bits past 31 (int64), bit positions held by some trees only, splits out of
    # tree order
    rng = np.random.default_rng(0)
    splits = np.array([0, 3, 40, 9, 0, 31, 1, 63])
    tree = np.repeat(np.arange(len(splits)), splits)
    bit = np.concatenate([rng.permutation(s) for s in splits])
    perm = rng.permutation(len(tree))
    tree, bit = tree[perm], bit[perm]
    left = rng.random((len(tree), 37)) < 0.5
    expect = torch.zeros(len(splits), 37, dtype=torch.int64)
    expect.index_add_(0, torch.from_numpy(tree), torch.from_numpy(left).long()
                      << torch.from_numpy(bit)[:, None])  # fmt: skip
    packed = treeshap._BitPacker(tree, bit, len(splits))(left, torch.int64)
    assert packed.dtype == np.int64
    assert torch.equal(torch.from_numpy(packed), expect)
    narrow = splits <= 31
    keep = narrow[tree]
    small = treeshap._BitPacker(tree[keep], bit[keep], len(splits))(left[keep], torch.int32)
    assert small.dtype == np.int32
    assert torch.equal(torch.from_numpy(small).long(), expect * torch.from_numpy(narrow)[:, None])
    # one packer reused over steps of rows into column slices of the caller's keys (its layout
    # kept from call to call, a shorter last step a view of it): the same keys
    pack = treeshap._BitPacker(tree, bit, len(splits))
    keys = np.zeros((len(splits), 37), dtype=np.int64)
    for a in range(0, 37, 15):
        got = pack(left[:, a : a + 15], torch.int64, out=keys[:, a : a + 15])
        assert np.shares_memory(got, keys)
    assert torch.equal(torch.from_numpy(keys), expect)
    assert torch.equal(torch.from_numpy(pack(left[:, :5], torch.int64)), expect[:, :5])
    # every tree with a split in its first byte (the byte copied, not OR-ed), int32, into a
    # column slice of keys whose other columns hold a sentinel that must stay
    some = np.array([2, 5, 1, 8, 31])
    tree = np.repeat(np.arange(len(some)), some)
    bit = np.concatenate([rng.permutation(s) for s in some])
    left = rng.random((len(tree), 20)) < 0.5
    expect = torch.zeros(len(some), 20, dtype=torch.int64)
    expect.index_add_(0, torch.from_numpy(tree), torch.from_numpy(left).long()
                      << torch.from_numpy(bit)[:, None])  # fmt: skip
    keys = np.full((len(some), 30), -7, dtype=np.int32)
    keys[:, 5:25] = 0
    treeshap._BitPacker(tree, bit, len(some))(left, torch.int32, out=keys[:, 5:25])
    assert (keys[:, :5] == -7).all() and (keys[:, 25:] == -7).all()
    assert torch.equal(torch.from_numpy(keys[:, 5:25]).long(), expect)


def test_unique_rows_equal_torch_unique() -> None:
    g = torch.Generator().manual_seed(7)
    for shape, high in (((500, 3), 4), ((1, 3), 9), ((300, 3), 2**62), ((0, 3), 2)):
        rows = torch.randint(0, high, shape, generator=g)
        want = torch.unique(rows, dim=0, return_inverse=True)
        got = unique_rows(rows)
        assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])


def test_wide_keys_multiclass_and_threshold_rows_through_tables_and_product(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # trees of 32-63 splits (int64 keys, bits past 31) with three outputs, and XGBoost rows
    # lying exactly on its thresholds (strict <, float32 inputs): the tables and the product
    # forced everywhere equal the split-by-split keys and slot-by-slot patterns bitwise
    xgb = pytest.importorskip("xgboost")
    x, y = _data(8, 3000, 19)
    labels = np.digitize(y, np.quantile(y, [0.33, 0.66]))
    wide = lgb.LGBMClassifier(n_estimators=4, num_leaves=50, min_child_samples=2, verbose=-1,
                              n_jobs=1, random_state=0).fit(x, labels)
    splits = tree_paths(parse_tree_ensemble(wide)).tree_splits
    assert int(splits.max()) > 31 and int(splits.max()) <= 63
    boost = xgb.XGBRegressor(n_estimators=6, max_depth=5, n_jobs=1, random_state=0).fit(x, y)
    ens = parse_tree_ensemble(boost)
    on = np.tile(x[:60], (1, 1))
    inner = ens.feature >= 0
    for r in range(60):  # each row takes one split's threshold in that split's feature
        node = np.flatnonzero(inner)[r % int(inner.sum())]
        on[r, ens.feature[node]] = ens.threshold[node]
    monkeypatch.setattr(treeshap, "KEY_TABLE_SPLITS", 0.0)
    monkeypatch.setattr(treeshap, "KEY_PRODUCT_SPREAD", 1e9)
    old_paths = {"KEY_TABLES": False, "KEY_PRODUCT": False}
    values = _same_bitwise_with(monkeypatch, old_paths, wide, x[:700], (None, x[2000:2010]))
    assert values[0].shape[2] == 3  # three outputs
    _same_bitwise_with(monkeypatch, old_paths, boost, on, (None, x[2000:2010]))


def test_key_tables_step_aside_where_they_hold_nothing() -> None:
    # LightGBM's missing type Zero on every split: no split fits a table, so none are built
    x, y = _data(6, 400, 20)
    model = lgb.LGBMRegressor(n_estimators=5, num_leaves=12, verbose=-1, n_jobs=1,
                              random_state=0, zero_as_missing=True).fit(x, y)
    paths = tree_paths(parse_tree_ensemble(model))
    assert bool((paths.router.missing == 1).all())
    assert treeshap._KeyTables.build(paths, paths.tree_splits <= 63, 10**6) is None
