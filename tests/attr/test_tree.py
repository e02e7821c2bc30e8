"""TreeInteraction: exact tree-ensemble interactions vs brute force, shapiq and shap."""

from __future__ import annotations

import warnings
from functools import cache

import numpy as np
import pytest
import torch

from torchspex import Interactions, TreeInteraction
from torchspex.attr.tree import TreeShapleyInteractions
from torchspex.decoders.exhaustive import all_masks
from torchspex.decoders.trees import parse_tree_ensemble

lgb = pytest.importorskip("lightgbm")
sklearn_datasets = pytest.importorskip("sklearn.datasets")


# ---------------------------------------------------------------------------- models (cached)
@cache
def _data(
    name: str, n_features: int | None = None, binarize: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    loader = {
        "diabetes": sklearn_datasets.load_diabetes,
        "breast_cancer": sklearn_datasets.load_breast_cancer,
    }[name]
    x, y = loader(return_X_y=True)
    if binarize:
        x = (x > np.median(x, axis=0)).astype(np.float64)
    return (x if n_features is None else x[:, :n_features]), y


@cache
def _model(kind: str, data: str, n_features: int | None = None, binarize: bool = False):
    from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

    x, y = _data(data, n_features, binarize)
    classify = data == "breast_cancer"
    if kind == "lightgbm":
        cls = lgb.LGBMClassifier if classify else lgb.LGBMRegressor
        return cls(
            n_estimators=8,
            num_leaves=8,
            max_depth=3,
            min_child_samples=10,
            verbose=-1,
            n_jobs=1,
            random_state=0,
        ).fit(x, y)
    cls = RandomForestClassifier if classify else RandomForestRegressor
    return cls(n_estimators=4, max_depth=4, random_state=0).fit(x, y)


def _raw(model, x: np.ndarray) -> np.ndarray:
    """The model's raw output as the explainer defines it, ``[m, O]``."""
    if type(model).__module__.startswith("lightgbm"):
        out = model.predict(x, raw_score=True)
    elif hasattr(model, "predict_proba"):
        out = model.predict_proba(x)
    else:
        out = model.predict(x)
    return np.asarray(out, dtype=np.float64).reshape(len(x), -1)


def _cover_weighted(model, row: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Path-dependent value of every mask by the textbook top-down recursion, ``[m, O]``."""
    ens = parse_tree_ensemble(model)
    internal = ens.left >= 0
    goes_left = ens.goes_left(row[None])[:, 0]
    weight = np.zeros((len(ens.feature), len(masks)))
    weight[ens.roots] = 1.0
    order = list(ens.roots)  # breadth-first: parents before children
    for node in order:
        if internal[node]:
            order.extend([ens.left[node], ens.right[node]])
    for node in order:
        if not internal[node]:
            continue
        lc, rc = ens.left[node], ens.right[node]
        share = ens.cover[lc] / (ens.cover[lc] + ens.cover[rc])
        kept = masks[:, ens.feature[node]]
        weight[lc] = weight[node] * np.where(kept, float(goes_left[node]), share)
        weight[rc] = weight[node] * np.where(kept, float(not goes_left[node]), 1 - share)
    leaf = ~internal
    return weight[leaf].T @ ens.value[leaf] + ens.base


# ---------------------------------------------------------------------------- brute force
@pytest.mark.parametrize("kind", ["lightgbm", "forest"])
def test_interventional_equals_all_masks(kind: str) -> None:
    model = _model(kind, "diabetes", 6)
    x, _ = _data("diabetes", 6)
    rows, background = x[:2], x[10:13]
    masks = all_masks(6)
    explainer = TreeInteraction(model, "interventional", background=background)
    result = explainer.attribute(rows, full_spectrum=True)
    got = result.predict(masks)  # [64, 2]
    m = masks.numpy()
    for b, row in enumerate(rows):
        hybrid = np.where(m[:, None, :], row, background[None])  # [64, M, n]
        want = _raw(model, hybrid.reshape(-1, 6)).reshape(64, len(background)).mean(axis=1)
        np.testing.assert_allclose(got[:, b].numpy(), want, rtol=0, atol=1e-9)


@pytest.mark.parametrize("kind", ["lightgbm", "forest"])
def test_path_dependent_equals_cover_weighted_recursion(kind: str) -> None:
    model = _model(kind, "breast_cancer", 7)
    x, _ = _data("breast_cancer", 7)
    masks = all_masks(7)
    result = TreeInteraction(model).attribute(x[:2], full_spectrum=True)
    got = result.predict(masks)  # [128, 2] or [128, 2, 2]
    for b in range(2):
        want = _cover_weighted(model, x[b], masks.numpy())
        want = want[:, 0] if want.shape[1] == 1 else want
        np.testing.assert_allclose(got[:, b].numpy(), want, rtol=0, atol=1e-9)
    # all kept = the model's prediction, exactly
    full = _raw(model, x[:2])
    full = full[:, 0] if full.shape[1] == 1 else full
    np.testing.assert_allclose(got[-1].numpy(), full, atol=1e-9)


def test_path_dependent_single_row_and_batch_composition() -> None:
    model = _model("lightgbm", "diabetes", None)
    x, _ = _data("diabetes")
    explainer = TreeInteraction(model)
    batch = explainer.attribute(torch.from_numpy(x[:3]), index="FSII", max_order=2)
    alone = explainer.attribute(x[1], index="FSII", max_order=2)
    assert alone.spectrum.coefficients.dim() == 1
    assert alone.n_evaluations == 0
    d_batch = batch.select(1).to_dict()
    d_alone = alone.to_dict()
    assert d_batch.keys() == d_alone.keys()
    np.testing.assert_allclose([d_batch[k] for k in d_alone], list(d_alone.values()), atol=1e-12)


# ---------------------------------------------------------------------------- shapiq / shap
def _compare(ours: Interactions, iv, atol: float = 1e-6) -> None:
    d = ours.to_dict()
    want = {k: v for k, v in iv.dict_values.items() if len(k) > 0}
    got = {k: v for k, v in d.items() if len(k) > 0}
    for key in set(want) | set(got):
        assert got.get(key, 0.0) == pytest.approx(want.get(key, 0.0), abs=atol), key
    assert ours.baseline_value == pytest.approx(iv.baseline_value, abs=atol)


# shapiq 1.4.1's TreeExplainer computes SV, SII and k-SII at any order (STII/FSII/BV raise
# there beyond order 1: those are checked against shapiq's ExactComputer below). It is exact
# only when no feature repeats on a root-to-leaf path: on a depth-3 scikit-learn tree over the
# raw diabetes data (feature 2 split twice on a path) its Shapley values differ from shap's and
# from its own ExactComputer by up to 80, while ours equal both to 1e-12. So TreeExplainer is
# compared on models trained on median-binarized features (a 0/1 feature is never split twice),
# and models on the raw features are compared with ExactComputer and shap.
@pytest.mark.parametrize(
    "data", [pytest.param("breast_cancer", marks=pytest.mark.slow), "diabetes"]
)
@pytest.mark.parametrize("kind", ["lightgbm", "forest"])
def test_path_dependent_equals_shapiq_tree_explainer(kind: str, data: str) -> None:
    shapiq = pytest.importorskip("shapiq")
    model = _model(kind, data, binarize=True)
    x, _ = _data(data, binarize=True)
    rows = x[:2]
    explainer = TreeInteraction(model)
    # shapiq explains class 1 of scikit-learn classifiers (probabilities) by default
    target = 1 if (kind == "forest" and data == "breast_cancer") else None
    cases = [("SV", 1), ("STII", 1), ("FSII", 1)] + [
        (index, order) for index in ("SII", "k-SII") for order in (1, 2, 3)
    ]
    for index, order in cases:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            reference = shapiq.TreeExplainer(model, max_order=order, index=index, min_order=0)
        ours = explainer.attribute(rows, index=index, max_order=order, target=target)
        for b, row in enumerate(rows):
            _compare(ours.select(b), reference.explain(row))


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["lightgbm", "forest"])
@pytest.mark.parametrize("data", ["breast_cancer", "diabetes"])
def test_path_dependent_equals_shapiq_exact_computer(kind: str, data: str) -> None:
    shapiq = pytest.importorskip("shapiq")
    n = 8
    model = _model(kind, data, n)
    x, _ = _data(data, n)
    row = x[3]
    target = 1 if (kind == "forest" and data == "breast_cancer") else 0

    def game(coalitions: np.ndarray) -> np.ndarray:
        return _cover_weighted(model, row, np.asarray(coalitions, dtype=bool))[:, target]

    exact = shapiq.ExactComputer(game, n_players=n)
    explainer = TreeInteraction(model)
    for index in ("k-SII", "SII", "STII", "FSII", "BV"):
        for order in (1, 2, 3) if index != "BV" else (1,):
            ours = explainer.attribute(row, index=index, max_order=order, target=target)
            iv = exact(index=index, order=order)
            d, want = ours.to_dict(), iv.dict_values
            for key in set(want) | set(d):
                if key == ():
                    continue
                assert d.get(key, 0.0) == pytest.approx(want.get(key, 0.0), abs=1e-6), (
                    index,
                    order,
                    key,
                )


@pytest.mark.parametrize("kind", ["lightgbm", "forest"])
def test_first_order_equals_shap_tree_explainer(kind: str) -> None:
    shap = pytest.importorskip("shap")
    model = _model(kind, "diabetes")
    x, _ = _data("diabetes")
    rows = x[:4]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = shap.TreeExplainer(model, feature_perturbation="tree_path_dependent")
        want = reference.shap_values(rows)
    got = TreeInteraction(model).attribute(rows, index="SV").first_order("SV")  # [B, n]
    np.testing.assert_allclose(got.numpy(), want, atol=1e-6)
    base = np.asarray(reference.expected_value).reshape(-1)[0]
    assert float(TreeInteraction(model).attribute(rows[0]).baseline_value) == pytest.approx(
        base, abs=1e-6
    )


# ---------------------------------------------------------------------------- Shapley route
def _assert_same_values(fast: Interactions, full: Interactions) -> None:
    a, b = fast.to_dict(), full.to_dict()
    scale = max(float(np.abs(np.asarray(v)).max()) for v in b.values())
    for key in set(a) | set(b):
        np.testing.assert_allclose(np.asarray(a.get(key, 0.0)), np.asarray(b.get(key, 0.0)),
                                   rtol=0, atol=1e-9 * scale, err_msg=str(key))
    torch.testing.assert_close(torch.as_tensor(fast.baseline_value),
                               torch.as_tensor(full.baseline_value), rtol=0, atol=1e-9 * scale)
    torch.testing.assert_close(torch.as_tensor(fast.full_value),
                               torch.as_tensor(full.full_value), rtol=0, atol=1e-9 * scale)


@pytest.mark.parametrize("masking", ["path_dependent", "interventional"])
@pytest.mark.parametrize("kind", ["lightgbm", "forest"])
def test_shapley_route_equals_full_spectrum(kind: str, masking: str) -> None:
    model = _model(kind, "breast_cancer", 8)
    x, _ = _data("breast_cancer", 8)
    kwargs = {"background": x[20:30]} if masking == "interventional" else {}
    explainer = TreeInteraction(model, masking, **kwargs)
    cases = [("SV", None), ("k-SII", 1), ("SII", 1), ("STII", 1), ("FSII", 1), ("k-SII", 2),
             ("k-SII", 3)]
    for index, order in cases:
        for rows in (x[:4], x[5]):  # a batch and a single row
            fast = explainer.attribute(rows, index=index, max_order=order)
            full = explainer.attribute(rows, index=index, max_order=order, full_spectrum=True)
            assert isinstance(fast, TreeShapleyInteractions), (index, order)
            assert type(full) is Interactions
            assert fast.out_shape == full.out_shape
            _assert_same_values(fast, full)
    # several outputs: one target, or all of them
    for target in (None, 1) if kind == "forest" else (None,):
        fast = explainer.attribute(x[:3], index="SV", target=target)
        full = explainer.attribute(x[:3], index="SV", target=target, full_spectrum=True)
        _assert_same_values(fast, full)


@pytest.mark.parametrize("masking", ["path_dependent", "interventional"])
def test_shapley_route_reads_its_values_as_its_spectrum_converts(masking: str) -> None:
    """``values`` and ``first_order`` of the Shapley route come from the trees' own values, not
    from converting the spectrum back: the same sets in the same order, the same basis, the
    same unused features dropped, the same values (to round-off), for every output choice."""
    model = _model("forest", "breast_cancer", 8)  # two outputs
    x, _ = _data("breast_cancer", 8)
    kwargs = {"background": x[20:30]} if masking == "interventional" else {}
    explainer = TreeInteraction(model, masking, **kwargs)
    for index, order in (("SV", None), ("STII", 1), ("k-SII", 2), ("k-SII", 3)):
        for rows, target in ((x[:4], None), (x[:4], 1), (x[5], 0)):
            fast = explainer.attribute(rows, index=index, max_order=order, target=target)
            assert fast._exact is not None
            plain = Interactions(fast.spectrum, index=fast.index, max_order=fast.max_order)
            got, want = fast.values, plain.values
            assert torch.equal(got.indices, want.indices) and got.basis == want.basis
            scale = float(want.coefficients.abs().max())
            torch.testing.assert_close(got.coefficients, want.coefficients, rtol=0,
                                       atol=1e-12 * scale)  # fmt: skip
            torch.testing.assert_close(fast.first_order("SV"), plain.first_order("SV"), rtol=0,
                                       atol=1e-12 * scale)  # fmt: skip
    # a feature no tree splits on (constant) is dropped from the values as the conversion
    # drops it, and its Shapley value is 0
    x, y = _data("diabetes", 5)
    x = np.c_[x, np.ones(len(x))]
    model = lgb.LGBMRegressor(n_estimators=5, num_leaves=4, verbose=-1, n_jobs=1).fit(x, y)
    fast = TreeInteraction(model).attribute(x[:3], index="SV")
    plain = Interactions(fast.spectrum, index="SV")
    assert torch.equal(fast.values.indices, plain.values.indices)
    assert 5 not in fast.values.indices.flatten().tolist()
    assert torch.equal(fast.first_order("SV")[:, 5], torch.zeros(3, dtype=torch.float64))


def test_shapley_route_answers_only_what_it_holds() -> None:
    model = _model("lightgbm", "diabetes", 6)
    x, _ = _data("diabetes", 6)
    explainer = TreeInteraction(model)
    sv = explainer.attribute(x[:3], index="SV")
    assert sv.info["exact_order"] == 1 and sv.n_evaluations == 0
    torch.testing.assert_close(sv.to_index("k-SII", 1).first_order("SV"), sv.first_order())
    one = sv.select(1)
    assert isinstance(one, TreeShapleyInteractions)
    torch.testing.assert_close(one.first_order("SV"), sv.first_order("SV")[1])
    for read in (lambda: sv.to_index("BV"), lambda: sv.first_order("BV"),
                 lambda: sv.to_index("k-SII", 2), lambda: one.to_index("Moebius")):
        with pytest.raises(ValueError, match="holds the exact Shapley values only"):
            read()
    with pytest.raises(ValueError, match="full_spectrum=True"):
        sv.predict(all_masks(6))
    pairs = explainer.attribute(x[:3])  # the default: k-SII up to order 2
    assert isinstance(pairs, TreeShapleyInteractions) and pairs.info["exact_order"] == 2
    torch.testing.assert_close(pairs.first_order("SV"), sv.first_order("SV"))
    with pytest.raises(ValueError, match="holds the exact k-SII of order 2 only"):
        pairs.to_index("STII", 2)
    # order 3: k-SII from the Shapley values and the pairs' and triples' SII
    for masking, background in (("path_dependent", None), ("interventional", x[:20])):
        tree = TreeInteraction(model, masking, background=background)
        fast = tree.attribute(x[:3], index="k-SII", max_order=3)
        full = tree.attribute(x[:3], index="k-SII", max_order=3, full_spectrum=True)
        assert isinstance(fast, TreeShapleyInteractions) and fast.info["exact_order"] == 3
        got = {s: np.asarray(v) for s, v in fast.values.to_dict().items()}
        want = {s: np.asarray(v) for s, v in full.values.to_dict().items()}
        assert any(len(s) == 3 and np.abs(v).max() > 1e-6 for s, v in want.items())
        scale = max(np.abs(v).max() for v in want.values())
        for s in set(got) | set(want):
            np.testing.assert_allclose(got.get(s, np.zeros(3)), want.get(s, np.zeros(3)),
                                       rtol=0, atol=1e-9 * scale, err_msg=str(s))  # fmt: skip
        torch.testing.assert_close(fast.first_order("SV"), full.first_order("SV"))
        fast.first_order("SV").add_(100.0)  # the caller's own tensor, not the result's
        torch.testing.assert_close(fast.first_order("SV"), full.first_order("SV"))
        # its k-SII of order 2 are not the model's: refused, not wrong
        with pytest.raises(ValueError, match="holds the exact k-SII of order 3 only"):
            fast.to_index("k-SII", 2)
    # SII's empty-set value depends on every order, Banzhaf on other weights: full spectrum
    for index, order in (("SII", 2), ("BV", 1), ("k-SII", 4), ("FSII", 2)):
        assert type(explainer.attribute(x[:3], index=index, max_order=order)) is Interactions


# ---------------------------------------------------------------------------- API
def test_outputs_and_targets() -> None:
    model = _model("forest", "breast_cancer", 5)
    x, _ = _data("breast_cancer", 5)
    result = TreeInteraction(model).attribute(x[:3], full_spectrum=True)
    assert result.out_shape == (3, 2)  # rows x classes (probabilities)
    one = TreeInteraction(model).attribute(x[:3], target=1, full_spectrum=True)
    assert one.out_shape == (3,)
    torch.testing.assert_close(one.spectrum.coefficients, result.spectrum.coefficients[:, :, 1])
    # probabilities of the two classes sum to one for every mask
    total = result.predict(all_masks(5)).sum(dim=-1)
    torch.testing.assert_close(total, torch.ones_like(total))


def test_errors() -> None:
    model = _model("lightgbm", "diabetes", 6)
    x, _ = _data("diabetes", 6)
    with pytest.raises(ValueError, match="`masking` must be one of"):
        TreeInteraction(model, masking="tree")
    with pytest.raises(ValueError, match="needs baseline rows"):
        TreeInteraction(model, "interventional").attribute(x[:1])
    with pytest.raises(ValueError, match="only used by masking='interventional'"):
        TreeInteraction(model).attribute(x[:1], baselines=x[:2])
    with pytest.raises(ValueError, match=r"`inputs` must have shape \[rows, 6\]"):
        TreeInteraction(model).attribute(x[:1, :4])
    with pytest.raises(ValueError, match="`target` must be in"):
        TreeInteraction(model).attribute(x[:1], target=3)
    with pytest.raises(ValueError, match="`index` must be one of"):
        TreeInteraction(model).attribute(x[:1], index="Shapley")
    with pytest.raises(TypeError, match="`model` must be"):
        TreeInteraction(object()).attribute(x[:1])


def test_feature_names_from_dataframe_model_or_argument() -> None:
    pytest.importorskip("pandas")
    x, y = sklearn_datasets.load_diabetes(return_X_y=True, as_frame=True)
    model = lgb.LGBMRegressor(n_estimators=5, num_leaves=4, verbose=-1, n_jobs=1).fit(x, y)
    explainer = TreeInteraction(model)
    assert explainer.attribute(x.iloc[:2]).feature_names == list(x.columns)
    assert explainer.attribute(x.iloc[:2].to_numpy()).feature_names == list(x.columns)
    names = [f"f{i}" for i in range(10)]
    assert explainer.attribute(x.iloc[:1], feature_names=names).feature_names == names
    unnamed = lgb.LGBMRegressor(n_estimators=5, num_leaves=4, verbose=-1, n_jobs=1)
    unnamed.fit(x.to_numpy(), y)
    assert TreeInteraction(unnamed).attribute(x.iloc[:1].to_numpy()).feature_names[:2] == [
        "0", "1"
    ]


@pytest.mark.parametrize("kind", ["sklearn", "lightgbm", "xgboost", "lgb.Booster"])
def test_dataframe_columns_are_read_by_the_models_names(kind) -> None:
    # columns in another order are put in the model's order (they used to be read by position
    # and labelled by name: a value under the wrong feature); other names raise
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(0)
    x = pd.DataFrame(rng.normal(size=(200, 5)), columns=list("abcde"))
    y = 2 * x["a"] + x["b"] * x["c"] - x["e"]
    if kind == "sklearn":
        from sklearn.ensemble import RandomForestRegressor

        model = RandomForestRegressor(10, max_depth=4, random_state=0).fit(x, y)
    elif kind == "lightgbm":
        model = lgb.LGBMRegressor(n_estimators=10, verbose=-1, n_jobs=1).fit(x, y)
    elif kind == "xgboost":
        xgb = pytest.importorskip("xgboost")
        model = xgb.XGBRegressor(n_estimators=10, max_depth=3, n_jobs=1).fit(x, y)
    else:
        model = lgb.train({"verbose": -1, "num_threads": 1}, lgb.Dataset(x, y), 10)
    for masking in ("path_dependent", "interventional"):
        explainer = TreeInteraction(model, masking,
                                    **({"background": x.iloc[:20]} if masking != "path_dependent"
                                       else {}))  # fmt: skip
        base = explainer.attribute(x.iloc[:3], index="k-SII")
        shuffled = explainer.attribute(x[list("ecadb")].iloc[:3], index="k-SII")
        assert shuffled.feature_names == base.feature_names == list("abcde")
        torch.testing.assert_close(shuffled.spectrum.coefficients, base.spectrum.coefficients)
        array = explainer.attribute(x.iloc[:3].to_numpy(), index="k-SII")
        torch.testing.assert_close(array.spectrum.coefficients, base.spectrum.coefficients)
        with pytest.raises(ValueError, match=r"missing: \['a', 'b', 'c', 'd', 'e'\]"):
            explainer.attribute(x.iloc[:3].set_axis(list("vwxyz"), axis=1))
    background = TreeInteraction(model, "interventional", background=x[list("dcbae")].iloc[:20])
    torch.testing.assert_close(background.attribute(x.iloc[:3]).spectrum.coefficients,
                               explainer.attribute(x.iloc[:3]).spectrum.coefficients)


def test_dataframe_columns_match_lightgbm_names_with_whitespace() -> None:
    # LightGBM stores "mean radius" as "mean_radius": the frame's own names still match, and
    # they are the labels shown
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(1)
    x = pd.DataFrame(rng.normal(size=(200, 3)), columns=["mean radius", "area", "worst area"])
    model = lgb.LGBMRegressor(n_estimators=10, verbose=-1, n_jobs=1).fit(x, x.sum(axis=1))
    base = TreeInteraction(model).attribute(x.iloc[:2])
    shuffled = TreeInteraction(model).attribute(x[["worst area", "mean radius", "area"]].iloc[:2])
    assert base.feature_names == shuffled.feature_names == ["mean radius", "area", "worst area"]
    torch.testing.assert_close(shuffled.spectrum.coefficients, base.spectrum.coefficients)


def test_unfitted_models_say_not_fitted():
    import lightgbm

    for model in (lightgbm.LGBMClassifier(), lightgbm.LGBMRegressor()):
        with pytest.raises(ValueError, match=r"\(LGBM\w+\) is not fitted; call fit first"):
            TreeInteraction(model).attribute(np.ones((1, 3)))


@pytest.mark.parametrize("masking", ["path_dependent", "interventional"])
def test_show_progress_over_rows_gives_the_same_result(masking, capsys):
    from sklearn.tree import DecisionTreeRegressor

    rng = np.random.default_rng(3)
    data = rng.normal(size=(60, 4))
    tree = DecisionTreeRegressor(max_depth=3, random_state=0).fit(data, data[:, 0] * data[:, 1])
    kwargs = {"background": data[:5]} if masking == "interventional" else {}
    explainer = TreeInteraction(tree, masking, **kwargs)
    plain = explainer.attribute(data, index="k-SII")
    shown = explainer.attribute(data, index="k-SII", show_progress=True)
    err = capsys.readouterr().err
    assert "TreeInteraction" in err and "100%" in err and "60/60" in err
    assert plain.to_dict().keys() == shown.to_dict().keys()
    for key, value in plain.to_dict().items():
        np.testing.assert_allclose(shown.to_dict()[key], value, atol=1e-12)


def _categorical_frame():
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(0)
    n = 400
    frame = pd.DataFrame({"a": rng.normal(size=n),
                          "c": pd.Categorical(rng.choice([10, 20, 30, 40], size=n)),
                          "d": pd.Categorical(rng.choice(["x", "y", "z"], size=n))})  # fmt: skip
    y = (frame.a + 3.0 * (frame.c.astype(int) == 30) - 2.0 * (frame.c.astype(int) == 10)
         + (frame.d == "y"))  # fmt: skip
    return pd, frame, y.to_numpy()


@pytest.mark.parametrize("masking", ["path_dependent", "interventional"])
def test_pandas_categorical_columns_are_read_as_the_models_codes(masking: str) -> None:
    # a categorical column was read as its category values (10, 20, ...), not the codes the
    # trees split on: LightGBM's row 1 gave -0.096 where the model predicts 1.892
    lgb = pytest.importorskip("lightgbm")
    xgb = pytest.importorskip("xgboost")
    pd, frame, y = _categorical_frame()
    models = {
        "lightgbm": lgb.LGBMRegressor(n_estimators=10, verbose=-1).fit(frame, y),
        "xgboost": xgb.XGBRegressor(n_estimators=10, max_depth=3, enable_categorical=True,
                                    tree_method="hist").fit(frame, y),
    }  # fmt: skip
    rows = frame.iloc[:8]
    # LightGBM maps values through its fitting categories: another order, or a subset, works
    subset = frame[frame.c.astype(int).isin([20, 30])].iloc[:6]
    remade = pd.DataFrame({"a": subset.a.to_numpy(), "d": subset.d.astype(str).to_numpy(),
                           "c": pd.Categorical(subset.c.astype(int).to_numpy())})  # fmt: skip
    remade["d"] = remade["d"].astype("category")
    for name, model in models.items():
        background = frame.iloc[:40] if masking == "interventional" else None
        explainer = TreeInteraction(model, masking=masking, background=background)
        for data in ([rows, remade] if name == "lightgbm" else [rows]):
            result = explainer.attribute(data, index="SV")  # columns read by name
            ordered = data[["a", "c", "d"]]  # LightGBM's own predict reads them by position
            if name == "lightgbm":
                raw = model.predict(ordered, raw_score=True)
            else:
                raw = model.predict(ordered, output_margin=True)
            total = result.first_order("SV").numpy().sum(1) + np.asarray(result.baseline_value)
            np.testing.assert_allclose(total, raw, atol=1e-5 if name == "xgboost" else 1e-12)
    # XGBoost codes by the frame's categories: other ones are refused, not misread
    with pytest.raises(ValueError, match="coded differently"):
        TreeInteraction(models["xgboost"]).attribute(remade[["a", "c", "d"]], index="SV")


def test_categorical_and_text_columns_other_models_and_numpy_targets() -> None:
    pytest.importorskip("sklearn")
    from sklearn.ensemble import RandomForestClassifier

    _, frame, y = _categorical_frame()
    codes = frame.assign(c=frame.c.cat.codes, d=frame.d.cat.codes)
    forest = RandomForestClassifier(n_estimators=5, max_depth=3, random_state=0)
    forest.fit(codes, y > 0.5)
    with pytest.raises(ValueError, match="categorical columns"):
        TreeInteraction(forest).attribute(frame.iloc[:3], index="SV")
    with pytest.raises(ValueError, match="text columns"):
        TreeInteraction(forest).attribute(codes.assign(d=frame.d.astype(str)).iloc[:3])
    plain = TreeInteraction(forest).attribute(codes.iloc[:3], index="SV", target=1)
    for target in (np.int64(1), torch.tensor(1)):  # were refused as "not an int"
        same = TreeInteraction(forest).attribute(codes.iloc[:3], index="SV", target=target)
        assert torch.equal(same.first_order("SV"), plain.first_order("SV"))
