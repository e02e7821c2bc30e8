"""Exact Fourier read-out of tree ensembles (torchspex.decoders.trees)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from torchspex.decoders.exhaustive import all_masks
from torchspex.decoders.trees import (
    TreeEnsemble,
    parse_tree_ensemble,
    tree_ensemble_to_fourier,
)

lgb = pytest.importorskip("lightgbm")


def _binary_data(n: int, m: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 2, (m, n)).astype(np.float64)
    w = rng.normal(size=n)
    y = x @ w + 2 * x[:, 0] * x[:, 1] - 3 * x[:, 1] * x[:, 2] * x[:, 3] + rng.normal(0, 0.1, m)
    return x, y


def _hand_tree(feature, threshold, left, right, value, n_features, base=0.0) -> TreeEnsemble:
    left = np.asarray(left)
    size = len(left)
    return TreeEnsemble(
        feature=np.asarray(feature, dtype=np.int64),
        threshold=np.asarray(threshold, dtype=np.float64),
        left=left.astype(np.int64),
        right=np.asarray(right, dtype=np.int64),
        value=np.asarray(value, dtype=np.float64).reshape(size, -1),
        cover=np.ones(size),
        default_left=np.zeros(size, dtype=bool),
        missing=np.full(size, 2, dtype=np.int8),
        roots=np.array([0]),
        base=np.array([base]),
        n_features=n_features,
    )


def _random_complete_tree(rng, n: int, depth: int, base: float = 0.0) -> TreeEnsemble:
    """A complete tree of ``depth`` over ``n`` features (features repeat on paths), thresholds
    from -0.5 / 0.5 / 1.5 (a 0/1 mask bit may go either way, or both the same way)."""
    n_int = 2**depth - 1
    size = 2 ** (depth + 1) - 1
    feature = np.concatenate([rng.integers(0, n, n_int), np.full(size - n_int, -1)])
    threshold = np.concatenate([rng.choice([-0.5, 0.5, 1.5], n_int), np.zeros(size - n_int)])
    left = np.concatenate([2 * np.arange(n_int) + 1, np.full(size - n_int, -1)])
    right = np.concatenate([2 * np.arange(n_int) + 2, np.full(size - n_int, -1)])
    value = np.concatenate([np.zeros(n_int), rng.normal(size=size - n_int)])
    return _hand_tree(feature, threshold, left, right, value, n, base=base)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_lightgbm_readout_equals_predict_on_all_masks(seed: int) -> None:
    n = 8 + seed  # up to 10 features
    x, y = _binary_data(n, 400, seed)
    booster = lgb.train(
        {"objective": "regression", "verbose": -1, "num_leaves": 12, "max_depth": 4,
         "min_data_in_leaf": 5, "num_threads": 1, "seed": seed},
        lgb.Dataset(x, y),
        num_boost_round=25,
    )
    spec = tree_ensemble_to_fourier(booster, n)
    masks = all_masks(n)
    expected = booster.predict(masks.double().numpy(), raw_score=True)
    np.testing.assert_allclose(spec.evaluate(masks).numpy(), expected, rtol=0, atol=1e-9)
    assert spec.max_size <= 4


def test_lgbm_classifier_raw_score_and_multiclass() -> None:
    n = 7
    x, y = _binary_data(n, 300, 3)
    clf = lgb.LGBMClassifier(n_estimators=15, num_leaves=6, verbose=-1, n_jobs=1)
    clf.fit(x, y > np.median(y))
    masks = all_masks(n)
    spec = tree_ensemble_to_fourier(clf, n)
    expected = clf.predict(masks.double().numpy(), raw_score=True)
    np.testing.assert_allclose(spec.evaluate(masks).numpy(), expected, atol=1e-9)
    multi = lgb.LGBMClassifier(n_estimators=10, num_leaves=5, verbose=-1, n_jobs=1)
    multi.fit(x, np.digitize(y, np.quantile(y, [0.33, 0.66])))
    spec = tree_ensemble_to_fourier(multi)
    assert spec.out_shape == (3,)
    expected = multi.predict(masks.double().numpy(), raw_score=True)
    np.testing.assert_allclose(spec.evaluate(masks).numpy(), expected, atol=1e-9)


def test_hand_built_tree_splitting_twice_on_one_feature() -> None:
    # root: x0 <= 0.5 ? node1 : node2; node1 splits on x0 again (unreachable right leaf),
    # node2 splits on x1 then on x0 again, with thresholds that send x0 = 1 left.
    #        0:x0
    #     1:x0      2:x1
    #    3    4   5:x0   6
    #            7    8
    feature = [0, 0, 1, -1, -1, 0, -1, -1, -1]
    threshold = [0.5, 0.5, 0.5, 0, 0, 1.5, 0, 0, 0]
    left = [1, 3, 5, -1, -1, 7, -1, -1, -1]
    right = [2, 4, 6, -1, -1, 8, -1, -1, -1]
    value = [0, 0, 0, 1.5, -7.0, 0, 4.0, -2.0, 11.0]
    ens = _hand_tree(feature, threshold, left, right, value, n_features=3, base=0.25)
    spec = tree_ensemble_to_fourier(ens)
    masks = all_masks(3)
    expected = ens.predict(masks.double().numpy())[:, 0]
    # brute force by hand: x0 = 0 -> 1.5; x0 = 1, x1 = 0 -> -2; x0 = 1, x1 = 1 -> 4
    x0, x1 = masks[:, 0].numpy(), masks[:, 1].numpy()
    by_hand = np.where(~x0, 1.5, np.where(x1, 4.0, -2.0)) + 0.25
    np.testing.assert_allclose(expected, by_hand)
    np.testing.assert_allclose(spec.evaluate(masks).numpy(), expected, atol=1e-12)
    assert 2 not in {i for s in spec.sets() for i in s}  # x2 is never used


def test_random_hand_built_trees_with_repeated_features() -> None:
    rng = np.random.default_rng(5)
    n = 4
    for _ in range(20):
        ens = _random_complete_tree(rng, n, 5)  # features repeat on paths
        masks = all_masks(n)
        spec = tree_ensemble_to_fourier(ens)
        expected = ens.predict(masks.double().numpy())[:, 0]
        np.testing.assert_allclose(spec.evaluate(masks).numpy(), expected, atol=1e-12)


def test_sklearn_models_readout() -> None:
    from sklearn.ensemble import (
        ExtraTreesRegressor,
        GradientBoostingClassifier,
        GradientBoostingRegressor,
        HistGradientBoostingRegressor,
        RandomForestClassifier,
        RandomForestRegressor,
    )
    from sklearn.tree import DecisionTreeRegressor

    n = 6
    x, y = _binary_data(n, 200, 4)
    masks = all_masks(n)
    xm = masks.double().numpy()
    regs = [
        DecisionTreeRegressor(max_depth=5, random_state=0),
        RandomForestRegressor(n_estimators=5, max_depth=4, random_state=0),
        ExtraTreesRegressor(n_estimators=5, max_depth=4, random_state=0),
        GradientBoostingRegressor(n_estimators=10, max_depth=3, random_state=0),
        HistGradientBoostingRegressor(max_iter=10, max_depth=3, random_state=0),
    ]
    for model in regs:
        model.fit(x, y)
        spec = tree_ensemble_to_fourier(model, n)
        np.testing.assert_allclose(spec.evaluate(masks).numpy(), model.predict(xm), atol=1e-9,
                                   err_msg=type(model).__name__)
    labels = np.digitize(y, np.quantile(y, [0.5]))
    forest = RandomForestClassifier(n_estimators=4, max_depth=3, random_state=0).fit(x, labels)
    spec = tree_ensemble_to_fourier(forest, n)
    np.testing.assert_allclose(spec.evaluate(masks).numpy(), forest.predict_proba(xm), atol=1e-9)
    gbc = GradientBoostingClassifier(n_estimators=5, max_depth=2, random_state=0).fit(x, labels)
    spec = tree_ensemble_to_fourier(gbc, n)
    np.testing.assert_allclose(spec.evaluate(masks).numpy(), gbc.decision_function(xm),
                               atol=1e-9)


def test_xgboost_readout() -> None:
    xgb = pytest.importorskip("xgboost")
    n = 6
    x, y = _binary_data(n, 200, 6)
    model = xgb.XGBRegressor(n_estimators=10, max_depth=3, n_jobs=1).fit(x, y)
    masks = all_masks(n)
    spec = tree_ensemble_to_fourier(model, n)
    expected = model.predict(masks.double().numpy(), output_margin=True)
    # XGBoost accumulates in float32
    np.testing.assert_allclose(spec.evaluate(masks).numpy(), expected, atol=1e-5)
    ens = parse_tree_ensemble(model)
    np.testing.assert_allclose(ens.predict(masks.double().numpy())[:, 0], expected, atol=1e-5)


@pytest.mark.parametrize("general_route", [False, True])
def test_categorical_splits_readout_equals_predict_on_all_masks(
    general_route: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 0/1 inputs declared categorical: a mask bit is category 0 or 1 at those splits; both the
    # leaf read-out (the 0/1 fast path) and the node expansion
    import torchspex.decoders.trees as trees

    if general_route:
        monkeypatch.setattr(trees, "_LEAF_KEY_FEATURES", 0)
    n = 6
    x, y = _binary_data(n, 400, 8)
    masks = all_masks(n)
    booster = lgb.train(
        {"objective": "regression", "verbose": -1, "num_leaves": 8, "min_data_in_leaf": 3,
         "min_data_per_group": 3, "cat_smooth": 1.0, "num_threads": 1},
        lgb.Dataset(x, y, categorical_feature=[0, 1, 3]),
        num_boost_round=10,
    )
    assert (parse_tree_ensemble(booster).category >= 0).any()
    spec = tree_ensemble_to_fourier(booster, n)
    expected = booster.predict(masks.double().numpy(), raw_score=True)
    np.testing.assert_allclose(spec.evaluate(masks).numpy(), expected, rtol=0, atol=1e-9)
    xgb = pytest.importorskip("xgboost")
    types = ["c", "c", "q", "c", "q", "q"]
    model = xgb.XGBRegressor(n_estimators=10, max_depth=3, n_jobs=1, enable_categorical=True,
                             feature_types=types).fit(x, y)
    assert (parse_tree_ensemble(model).category >= 0).any()
    spec = tree_ensemble_to_fourier(model, n)
    data = xgb.DMatrix(masks.double().numpy(), feature_types=types, enable_categorical=True)
    expected = model.get_booster().predict(data, output_margin=True)
    np.testing.assert_allclose(spec.evaluate(masks).numpy(), expected, atol=1e-5)  # float32


def test_errors() -> None:
    with pytest.raises(TypeError, match="`model` must be"):
        tree_ensemble_to_fourier(object(), 3)
    x, y = _binary_data(5, 100, 7)
    booster = lgb.train({"objective": "regression", "verbose": -1, "num_threads": 1},
                        lgb.Dataset(x, y), num_boost_round=2)
    with pytest.raises(ValueError, match="`n_features` must equal"):
        tree_ensemble_to_fourier(booster, 6)


def test_constant_trees_and_empty_constant_first() -> None:
    x = np.zeros((50, 3))
    y = np.full(50, 2.5)
    booster = lgb.train({"objective": "regression", "verbose": -1, "num_threads": 1},
                        lgb.Dataset(x, y), num_boost_round=3)
    spec = tree_ensemble_to_fourier(booster, 3)
    assert spec.sets() == [()]
    assert spec.coefficients.tolist() == pytest.approx([2.5])
    torch.testing.assert_close(spec.evaluate(all_masks(3)),
                               torch.full((8,), 2.5, dtype=torch.float64))


@pytest.mark.parametrize("n", [4, 7, 24])
def test_leaf_readout_equals_the_node_expansion(n: int, monkeypatch: pytest.MonkeyPatch) -> None:
    # two exact routes for 0/1 routing: the leaves fixing the same bits as one table,
    # Walsh-Hadamard transformed (n <= 31; summed densely up to 20 features, by sorting above),
    # or, past its table cap, taken to the Fourier basis one feature at a time; and every
    # internal node expanded into its 2^k terms (the general route); same terms, same
    # coefficients on every route
    from torchspex.decoders import trees

    rng = np.random.default_rng(n)
    for _ in range(10):
        ens = _random_complete_tree(rng, n, 6, base=0.25)
        routes = ens.goes_left(np.stack([np.ones(n), np.zeros(n)]))
        idx_node, coef_node = trees.tree_spectrum(ens, routes[:, :1],
                                                  routes[:, 1:].astype(np.float64), n)
        for table_cap, dense in ((1 << 22, 20), (1 << 22, 0), (0, 20)):
            monkeypatch.setattr(trees, "_LEAF_TABLE_ENTRIES", table_cap)
            monkeypatch.setattr(trees, "_DENSE_FEATURES", dense)
            idx_leaf, coef_leaf = trees._binary_leaf_spectrum(ens, routes[:, 0], routes[:, 1], n)
            assert torch.equal(idx_leaf, idx_node), (table_cap, dense)
            torch.testing.assert_close(coef_leaf, coef_node, atol=1e-13, rtol=0)


def test_leaf_readout_of_a_booster_over_many_features_equals_predict() -> None:
    # 24 features: the leaf read-out (sums by sorting) where the node expansion was used before;
    # a 3-class booster (three outputs) on the same route
    from torchspex.decoders import trees

    n = 24
    x, y = _binary_data(n, 600, 11)
    rng = np.random.default_rng(3)
    masks = torch.from_numpy(rng.random((400, n)) < 0.5)
    booster = lgb.train({"objective": "regression", "verbose": -1, "num_leaves": 16,
                         "num_threads": 1, "min_data_in_leaf": 3},
                        lgb.Dataset(x, y), num_boost_round=30)  # fmt: skip
    labels = np.digitize(y, np.quantile(y, [0.33, 0.66]))
    multi = lgb.train({"objective": "multiclass", "num_class": 3, "verbose": -1,
                       "num_leaves": 8, "num_threads": 1, "min_data_in_leaf": 3},
                      lgb.Dataset(x, labels), num_boost_round=10)  # fmt: skip
    for model in (booster, multi):
        assert n <= trees._LEAF_KEY_FEATURES
        spec = tree_ensemble_to_fourier(model, n)
        expected = model.predict(masks.double().numpy(), raw_score=True)
        np.testing.assert_allclose(spec.evaluate(masks).numpy(), expected, rtol=0, atol=1e-9)
        ens = parse_tree_ensemble(model)
        routes = ens.goes_left(np.stack([np.ones(n), np.zeros(n)]))
        idx_node, coef_node = trees.tree_spectrum(ens, routes[:, :1],
                                                  routes[:, 1:].astype(np.float64), n)
        assert torch.equal(spec.indices, idx_node)
        torch.testing.assert_close(spec.coefficients.reshape(coef_node.shape), coef_node,
                                   atol=1e-12, rtol=0)
    # a small tree of many outputs over 20 features: summed by sorting (no 2^20 x 40 array)
    from sklearn.tree import DecisionTreeClassifier

    x20, y20 = _binary_data(20, 800, 12)
    classes = np.digitize(y20, np.quantile(y20, np.linspace(0, 1, 41)[1:-1]))
    tree = DecisionTreeClassifier(max_depth=3, random_state=0).fit(x20, classes)
    masks20 = torch.from_numpy(rng.random((300, 20)) < 0.5)
    spec = tree_ensemble_to_fourier(tree, 20)
    np.testing.assert_allclose(spec.evaluate(masks20).numpy(),
                               tree.predict_proba(masks20.double().numpy()), atol=1e-12)
    ens = parse_tree_ensemble(booster)
    with pytest.raises(ValueError, match="at most 31 features"):
        trees._binary_leaf_spectrum(ens, np.ones(len(ens.feature), dtype=bool),
                                    np.zeros(len(ens.feature), dtype=bool), 32)


def test_routing_columns_copy_only_the_features_split_on() -> None:
    """Rows made ready for routing copy only the features some split reads (the others stay
    zeros): the routing equals the rows', a sub-router takes its parent's columns, and columns
    made without a feature a model splits on are refused."""
    from sklearn.tree import DecisionTreeRegressor

    from torchspex.decoders._tree_parsers import parse_tree_ensemble
    from torchspex.decoders.treeshap import _router

    rng = np.random.default_rng(5)
    x = rng.normal(size=(200, 40))
    y = np.where(x[:, 3] > 0, x[:, 17], -x[:, 29])
    ens = parse_tree_ensemble(DecisionTreeRegressor(max_depth=3, random_state=0).fit(x, y))
    used = ens.used_features
    assert 0 < used.size < 40
    x[::5, 0] = np.nan  # a feature no split reads: not searched for NaN, not copied
    cols = ens.columns(x)
    assert cols.filled is not None and np.flatnonzero(cols.filled).tolist() == used.tolist()
    assert not cols.values[~cols.filled].any() and not cols.nan.any()
    np.testing.assert_array_equal(ens.goes_left(cols), ens.goes_left(x))
    internal = np.flatnonzero(ens.left >= 0)
    sub = _router(ens, internal[:2].copy())
    np.testing.assert_array_equal(sub.goes_left(cols[10:90]), ens.goes_left(x)[internal[:2], 10:90])
    narrow = sub.columns(x)
    if sub.used_features.size < used.size:
        with pytest.raises(ValueError, match="without some feature"):
            ens.goes_left(narrow)


@pytest.mark.parametrize("library", ["lightgbm", "lightgbm-zero", "xgboost", "sklearn"])
def test_routing_by_feature_comparisons_equals_the_full_rule(library: str) -> None:
    """goes_left compares numeric splits feature by feature (a column against all of its
    thresholds); that equals the trainer's rule in full (_goes_left_full) at every node, for
    rows exactly at thresholds, one ulp either side, +-inf, zeros and NaN (which take the full
    rule)."""
    from sklearn.ensemble import RandomForestRegressor

    from torchspex.decoders._tree_parsers import RoutingColumns, parse_tree_ensemble
    from torchspex.decoders.treeshap import _router

    rng = np.random.default_rng(3)
    x = rng.normal(size=(300, 5)).round(1)  # repeated values: many rows sit on thresholds
    x[rng.random(x.shape) < 0.1] = 0.0
    y = x[:, 0] * x[:, 1] + np.sin(x[:, 2]) + (x[:, 3] > 0.2)
    if library.startswith("lightgbm"):
        import lightgbm as lgb

        params = {"verbose": -1, "n_jobs": 1, "n_estimators": 20, "num_leaves": 15,
                  "zero_as_missing": library == "lightgbm-zero"}  # fmt: skip
        train = x.copy()
        train[rng.random(x.shape) < 0.05] = np.nan
        model = lgb.LGBMRegressor(**params).fit(train, y)
    elif library == "xgboost":
        import xgboost as xgb

        model = xgb.XGBRegressor(n_estimators=20, max_depth=4, n_jobs=1).fit(x, y)
    else:
        model = RandomForestRegressor(n_estimators=10, max_depth=5, random_state=0).fit(x, y)
    ens = parse_tree_ensemble(model)
    internal = np.flatnonzero(ens.left >= 0)
    thr = ens.threshold[internal]
    rows = np.tile(x[:40], (4, 1))
    for j, (f, t) in enumerate(zip(ens.feature[internal][:40], thr[:40])):
        rows[j, f] = t
        rows[40 + j, f] = np.nextafter(t, np.inf)
        rows[80 + j, f] = np.nextafter(t, -np.inf)
    rows[120:130, 1] = np.inf
    rows[130:140, 2] = -np.inf
    with_nan = rows.copy()
    with_nan[::7, 4] = np.nan
    for data in (rows, with_nan):
        full = data.astype(np.float32).astype(np.float64) if ens.float32_inputs else data
        got = ens.goes_left(data)
        assert not got[ens.left < 0].any()
        np.testing.assert_array_equal(got[internal], ens._goes_left_full(full.T, internal))
        # a router of internal nodes only, in an order that is not by feature: every node
        # compared at once, then put back in node order
        sub = _router(ens, internal[::-1].copy())
        np.testing.assert_array_equal(sub.goes_left(data), got[internal[::-1]])
        # rows made ready once (RoutingColumns), then routed by slices of them: the same
        cols = ens.columns(data)
        assert cols.shape == data.shape and cols.float32 == ens.float32_inputs
        np.testing.assert_array_equal(ens.goes_left(cols), got)
        np.testing.assert_array_equal(sub.goes_left(cols[50:130]), got[internal[::-1], 50:130])
        # a slice keeps the whole rows' NaN features (the full rule there, though its rows
        # hold none: the same routing as the rows compared by feature)
        assert cols[1:7].nan.tolist() == np.isnan(data).any(axis=0).tolist()
        assert not np.isnan(data[1:7]).any()
        np.testing.assert_array_equal(ens.goes_left(cols[1:7]), ens.goes_left(data[1:7]))
    other = RoutingColumns(cols.values, cols.nan, not cols.float32)
    with pytest.raises(ValueError, match="another precision"):
        ens.goes_left(other)
    with pytest.raises(TypeError, match="slice"):
        cols[3]


@pytest.mark.parametrize("strict", [False, True])
def test_rank_by_grid_equals_binary_search(strict: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """TreeEnsemble.rank through its grids gives np.searchsorted's ranks (side "right" for
    strict splits, "left" else) for values on, one ulp either side of and between thresholds,
    +-inf and huge values, on thresholds that are evenly spread, clustered (several per cell),
    a single one, one cell apart and crowded past RANK_GRID_CROWD (binary search in that
    cell)."""
    from torchspex.decoders import _tree_parsers as tp

    monkeypatch.setattr(tp, "RANK_GRID_ROWS", 0)
    rng = np.random.default_rng(5)
    features = [
        np.linspace(-3.0, 3.0, 25),
        np.concatenate([[-1e3], np.linspace(0.0, 1e-3, 3), [1e3]]),  # clustered: 3 in a cell
        np.array([0.5]),
        np.array([1.0, np.nextafter(1.0, 2.0)]),
        np.concatenate([np.linspace(0.0, 1e-9, 40), [0.5, 1.0]]),  # crowded: binary search
        np.array([-1e300, 1e300]),
        np.array([-1e308, 0.0, 1e308]),  # a span past the float range: binary search
    ]
    n = len(features)
    feature = np.concatenate([np.full(c.size, f) for f, c in enumerate(features)])
    threshold = np.concatenate(features)
    nodes = feature.size
    ens = tp.TreeEnsemble(
        feature=feature.astype(np.int64), threshold=threshold,
        left=np.zeros(nodes, dtype=np.int64), right=np.zeros(nodes, dtype=np.int64),
        value=np.zeros((nodes, 1)), cover=np.ones(nodes),
        default_left=np.zeros(nodes, dtype=bool), missing=np.full(nodes, 2, dtype=np.int8),
        roots=np.zeros(1, dtype=np.int64), base=np.zeros(1), n_features=n, strict=strict,
    )  # fmt: skip
    side = "right" if strict else "left"
    for f, c in enumerate(features):
        near = np.concatenate([c, np.nextafter(c, np.inf), np.nextafter(c, -np.inf)])
        with np.errstate(over="ignore"):  # values past the float range: infinities
            v = np.concatenate([near, rng.normal(size=1000) * np.abs(c).max(),
                                rng.uniform(c[0], c[-1], 200) if np.isfinite(c[-1] - c[0]) else [],
                                rng.uniform(0.0, 2e-9, 50) if f == 4 else [],
                                [np.inf, -np.inf, 1e308, -1e308, 0.0, -0.0]])  # fmt: skip
        np.testing.assert_array_equal(ens.rank(v, f), np.searchsorted(c, v, side=side))
    grids = ens._rank_grids
    assert grids[0] is not None and grids[2] is not None and grids[3] is not None
    assert grids[1] is not None and len(grids[1][3]) >= 2  # several thresholds in a cell
    assert grids[4] is not None and grids[4][4] is not None and grids[4][4].sum() == 1
    assert grids[6] is None
    # fewer values to rank than a grid's cells: binary search, the grid not built
    fresh = dataclasses.replace(ens)
    v = np.linspace(-3.0, 3.0, 100)
    np.testing.assert_array_equal(fresh.rank(v, 0), np.searchsorted(features[0], v, side=side))
    assert 0 not in fresh._rank_grids


@pytest.mark.parametrize(
    ("leaves", "rounds", "best"), [(4, 3, 0), (32, 400, 0), (32, 400, 250)]
)
def test_lightgbm_text_is_the_wrappers_serialized_once(
    leaves: int, rounds: int, best: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The text the parser reads is ``Booster.model_to_string()`` without the line the wrapper
    appends, up to the booster's best iteration, also where the first guess of its size is
    short (retried once at the size LightGBM reports) or where the text exceeds the wrapper's
    1 MiB first buffer (400 trees of 32 leaves)."""
    from torchspex.decoders import _tree_parsers as tp

    rng = np.random.default_rng(3)
    x = (rng.random((2000, 12)) < 0.5).astype(np.float64)
    y = np.sin(x @ rng.standard_normal(12)) + x[:, 0] * x[:, 1] * x[:, 2]
    params = {"objective": "regression", "verbosity": -1, "num_threads": 1,
              "num_leaves": leaves, "min_data_in_leaf": 5}  # fmt: skip
    booster = lgb.train(params, lgb.Dataset(x, y), num_boost_round=rounds)
    booster.best_iteration = best
    wrapper = booster.model_to_string()
    text = tp._lightgbm_text(booster)
    assert wrapper == text + "\npandas_categorical:null\n"
    assert text.count("\nTree=") == (best or rounds)
    monkeypatch.setattr(tp, "_LGB_TREE_BYTES", 1)
    monkeypatch.setattr(tp, "_LGB_LEAF_BYTES", 0)
    assert tp._lightgbm_text(booster) == text


def test_lightgbm_integer_fields_parse_as_integers_or_fall_back() -> None:
    """Integer fields read through the integer parser give the float parser's values; a field
    whose text is not all integers falls back to the float parser (and an int field whose
    values are not integral still raises)."""
    from torchspex.decoders import _tree_parsers as tp

    fields = {"a": ["1 -2 3", "40 0"], "b": ["1 2.5", "3"], "c": ["1 1e+06", "-0"],
              "d": ["1 2", "3.5"]}  # fmt: skip
    got = tp._lgb_column(fields, "a", np.int64, 5, True)
    assert got.dtype == np.int64 and got.tolist() == [1, -2, 3, 40, 0]
    counts = tp._lgb_column(fields, "a", np.float64, 5, True)
    assert counts.dtype == np.float64 and counts.tolist() == [1.0, -2.0, 3.0, 40.0, 0.0]
    assert tp._lgb_column(fields, "b", np.float64, 3, True).tolist() == [1.0, 2.5, 3.0]
    assert tp._lgb_column(fields, "c", np.int64, 3, True).tolist() == [1, 1_000_000, 0]
    with pytest.raises(ValueError, match="field 'd'"):
        tp._lgb_column(fields, "d", np.int64, 3, True)
    with pytest.raises(ValueError, match="field 'a'"):
        tp._lgb_column(fields, "a", np.int64, 4, True)


def test_lightgbm_repeated_thresholds_parse_each_token_once() -> None:
    """A field of a few repeated numbers (a 0/1-mask proxy's thresholds) read token by distinct
    token gives the plain reader's doubles, bit for bit; varied numbers, a wrong count or an
    unreadable token go the plain way (which raises where the text is bad)."""
    from torchspex.decoders import _tree_parsers as tp

    thr = "1.0000000180025095e-35"
    fields = {"t": [" ".join([thr] * 30 + ["0.5", thr]), " ".join([thr] * 40 + ["-0"])],
              "v": [" ".join(str(0.1 * i + 1e-17 * i) for i in range(300))],
              "bad": [" ".join(["x1"] * 40)]}  # fmt: skip
    plain = tp._lgb_column(fields, "t", np.float64, 73)
    assert tp._lgb_repeated(" ".join(fields["t"]), 73) is not None
    fast = tp._lgb_column(fields, "t", np.float64, 73, repeats=True)
    assert fast.dtype == np.float64 and fast.tobytes() == plain.tobytes()
    assert tp._lgb_column(fields, "t", np.float32, 73, repeats=True).dtype == np.float32
    assert tp._lgb_repeated(" ".join(fields["t"]), 72) is None
    assert tp._lgb_repeated(" ".join(fields["v"]), 300) is None
    assert tp._lgb_repeated(" ".join(fields["bad"]), 40) is None
    np.testing.assert_array_equal(tp._lgb_column(fields, "v", np.float64, 300, repeats=True),
                                  tp._lgb_column(fields, "v", np.float64, 300))
    with pytest.raises(ValueError, match="field 'bad'"):
        tp._lgb_column(fields, "bad", np.float64, 40, repeats=True)
