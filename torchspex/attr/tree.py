"""Exact interactions of tree ensembles, read off the trees (no model calls).

For one explained row ``x`` a tree ensemble, as a function of which features are kept, is a
polynomial of degree at most the tree depth; :mod:`torchspex.decoders.trees` reads its Fourier
spectrum off the trees exactly, and every interaction index follows by the usual conversions.
Shapley values, and k-SII of order 2 or 3, have a faster exact route that never expands
the spectrum (:mod:`torchspex.decoders.treeshap`); :class:`TreeInteraction` takes it for those
requests and returns a :class:`TreeShapleyInteractions`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from torchspex.decoders.trees import TreeEnsemble, parse_tree_ensemble, tree_spectrum
from torchspex.decoders.treeshap import TreePaths, tree_paths, tree_shapley_values
from torchspex.fourier import SparseSpectrum, canonical_index, moebius_to_fourier
from torchspex.fourier._sets import coalesce
from torchspex.fourier.transforms import index_source
from torchspex.interactions import _ZERO_TOL, Interactions, _check_order

__all__ = ["TreeInteraction", "TreeShapleyInteractions"]

MASKINGS = ("path_dependent", "interventional")
#: Explained-row x background-row pairs expanded at once (bounds memory).
_PAIRS_PER_CHUNK = 4096
#: Indices whose values up to order 1 are the Shapley values (empty set included).
_SHAPLEY_ORDER_1 = frozenset({"SV", "SII", "k-SII", "STII", "FSII"})
#: Indices the order-2 Shapley route gives exactly up to order 2: k-SII (its pairs are the
#: Shapley interaction indices, its singletons the Shapley values minus half their pairs).
#: SII's pairs are the same, but its empty-set value depends on every order: full spectrum.
#: The same holds at order 3 (k-SII from the Shapley values and the pairs' and triples' SII).
_SHAPLEY_ORDER_2 = frozenset({"k-SII"})


def _shapley_order(index: str, max_order: int | None) -> int | None:
    """The order of the Shapley route that serves ``(index, max_order)`` exactly, or None."""
    if index == "SV" or (index in _SHAPLEY_ORDER_1 and max_order == 1):
        return 1
    if index in _SHAPLEY_ORDER_2 and max_order in (2, 3):
        return max_order
    return None


class TreeShapleyInteractions(Interactions):
    """A result of the Shapley route: exact Shapley values (and order-2 k-SII).

    Its spectrum is not the trees' own game but the simplest game with the same values: the
    additive game ``f(empty) + sum_{i in S} phi_i`` (``info["exact_order"] == 1``), or for an
    order-2 (order-3) request the game of degree 2 (3) whose Moebius coefficients are the
    model's k-SII values of that order (``info["exact_order"]``). All keep ``baseline_value``
    (every feature removed) and ``full_value`` (the model's output) exact. Reads it answers
    exactly: ``SV``; ``SII``, ``k-SII``, ``STII`` and ``FSII`` at ``max_order=1``; for order 2
    (3) also ``k-SII`` at ``max_order=2`` (3), not at another order (the k-SII of order 2 of
    the order-3 game are not the model's). Any other index, and :meth:`predict` of masks, raise
    ``ValueError``: ask :class:`TreeInteraction` for that index, or pass
    ``full_spectrum=True``, which reads the trees' whole Fourier spectrum.
    """

    #: Set by :class:`TreeInteraction`: ``(baseline, order3)``, the value with every feature
    #: removed ``[*out]`` and, for order 3, the k-SII values as a spectrum ``[s, *out]`` with
    #: the Shapley values ``[n, *out]``. With them :attr:`values` and :meth:`first_order` read
    #: the trees' own values instead of converting the spectrum back (``-2 F(i)`` and ``4
    #: F(ij)`` are the Shapley values and pair indices exactly). One thread, best of 7: k-SII
    #: order 2 values of 100,000 rows of ``benchmarks/tree_vs_shapiq.py``'s LightGBM diabetes
    #: booster 101 -> 42 ms (with the norms of :meth:`SparseSpectrum.prune`), the Shapley values
    #: of 100,000 rows of its XGBoost classifier 11 -> 2 ms, of 100 rows 0.5 -> 0.01 ms; its
    #: k-SII cells took 0.50-0.83x the seconds before (``results/tree_vs_shapiq_idle.json``). A
    #: derived result (:meth:`select`, :meth:`to_index`) converts as any other.
    _exact: tuple[Tensor, tuple[SparseSpectrum, Tensor] | None] | None = None

    def _exact_order(self) -> int:
        return int(self.info.get("exact_order", 1))

    def _exact_view(self, baseline: Tensor) -> SparseSpectrum:
        """The values in the result's own index and order, ``[s, *out]``, from the spectrum
        :class:`TreeInteraction` built (sets: ∅, every feature, then the pairs)."""
        spec, n = self.spectrum, self.n_features
        coef = spec.coefficients
        out = torch.empty_like(coef)  # written in place: one pass over the values
        out[0] = baseline
        torch.mul(coef[1 : n + 1], -2.0, out=out[1 : n + 1])  # the Shapley values
        if self._exact_order() == 2:  # k-SII: m(i) = SV_i - sum_k SII_ik / 2, m(ik) = SII_ik
            pairs, pair = spec.indices[n + 1 :], out[n + 1 :]
            torch.mul(coef[n + 1 :], 4.0, out=pair)
            for col in range(2):
                out[1 : n + 1].index_add_(0, pairs[:, col], pair, alpha=-0.5)
        return SparseSpectrum(spec.indices, out, n, self.index)

    @property
    def values(self) -> SparseSpectrum:
        """The interactions in ``index`` up to ``max_order`` (see :class:`Interactions`), from
        the trees' own values; sets whose values are all zero dropped, as there."""
        if self._values is None and self._exact is not None:
            baseline, order3 = self._exact
            # orders 1 and 2: a fresh view, kept uncopied where no set is dropped
            view = self._exact_view(baseline) if order3 is None else order3[0]
            source = index_source(self.spectrum, self.index, self.max_order)
            self._values = view.prune(atol=_ZERO_TOL * self._scale(source),
                                      copy=order3 is not None)  # fmt: skip
        return super().values

    def _check_read(self, index: str, max_order: int | None) -> None:
        name = canonical_index(index)
        order = _shapley_order(name, max_order)
        exact = self._exact_order()
        if order is None or order not in (1, exact):
            what = "Shapley values" if exact == 1 else f"k-SII of order {exact}"
            raise ValueError(
                f"this TreeInteraction result holds the exact {what} only (the fast Shapley "
                f"route), not {name} at max_order={max_order}; call attribute(..., "
                f"index={name!r}, max_order={max_order}) for it, or pass full_spectrum=True "
                "for the trees' whole spectrum."
            )

    def to_index(self, index: str, max_order: int | None = None) -> Interactions:
        """The values in another index; only the indices the result holds exactly (see the
        class docstring), else ``ValueError``."""
        self._check_read(index, max_order)
        return super().to_index(index, max_order)

    def first_order(self, index: str = "SV") -> Tensor:
        """First-order values ``[*out, n_features]``; ``SV`` (or another Shapley-family index
        at order 1); Banzhaf values and other indices raise ``ValueError``."""
        self._check_read(index, 1)
        if self._exact is not None:
            self._check_design(index)
            order3 = self._exact[1]
            if order3 is not None:
                return order3[1].clone().movedim(0, -1)
            return (self.spectrum.coefficients[1 : self.n_features + 1] * -2.0).movedim(0, -1)
        return super().first_order(index)

    def select(self, *output: int) -> Interactions:
        """The values of one output (one row of the batch, or one class); same class."""
        chosen = super().select(*output)
        return self._derive(type(self), chosen.spectrum, self.index, self.max_order)

    def predict(self, masks: Tensor) -> Tensor:
        """Not available: the result holds index values, not the trees' game.

        Raises:
            ValueError: always; use ``TreeInteraction(...).attribute(..., full_spectrum=True)``
                or ``TreeInteraction.fourier`` for the value of every mask.
        """
        raise ValueError(
            "this TreeInteraction result holds Shapley values only, not the trees' value of "
            "each mask; pass full_spectrum=True to attribute() (or call fourier()) for that."
        )


def _model_feature_names(model: Any) -> list[str] | None:
    """The column names the model was fitted on, or None where it recorded none (scikit-learn
    and XGBoost's ``feature_names_in_``, LightGBM's ``feature_name_`` / ``feature_name()``
    unless they are its defaults ``Column_0, Column_1, ...``, an XGBoost ``Booster``'s
    ``feature_names``)."""
    names = getattr(model, "feature_names_in_", None)
    if names is None:
        names = getattr(model, "feature_name_", None)
    if names is None:
        getter = getattr(model, "feature_name", None)
        names = getter() if callable(getter) else None
    if names is None and type(model).__name__ == "Booster":
        names = getattr(model, "feature_names", None)
    if names is None:
        return None
    names = [str(c) for c in names]
    if all(n == f"Column_{i}" for i, n in enumerate(names)):  # LightGBM's unnamed columns
        return None
    return names


def _same_name(name: str) -> str:
    """A column name as LightGBM stores it (it replaces whitespace by underscores), so that a
    DataFrame's own names match the model's either way."""
    return re.sub(r"\s", "_", name)


def _model_order(value: Any, name: str, names: list[str] | None) -> list[Any] | None:
    """A DataFrame's columns (its own labels) in the order the model was fitted on (``names``,
    compared as :func:`_same_name`), or None (not a DataFrame, or a model without names); a
    ``ValueError`` where they are other names (the values would be read by position and
    labelled by name)."""
    columns = getattr(value, "columns", None)
    if columns is None or names is None or not hasattr(value, "loc"):
        return None
    have = {_same_name(str(c)): c for c in columns}
    want = [_same_name(c) for c in names]
    if len(have) == len(columns) and sorted(have) == sorted(want):
        return [have[c] for c in want]
    missing = [c for c, key in zip(names, want) if key not in have]
    unknown = [str(c) for key, c in have.items() if key not in set(want)]
    raise ValueError(
        f"`{name}` has columns {[str(c) for c in columns]}, but the model was fitted on "
        f"{names} (missing: {missing}, not in the model: {unknown}); pass the model's columns "
        "(any order) or a NumPy array in the model's column order."
    )


def _lightgbm_categories(model: Any) -> list[list[Any]] | None:
    """The categories of each pandas categorical column a LightGBM model was fitted on, in
    column order (``pandas_categorical``), or None (not LightGBM, or no such column)."""
    booster = getattr(model, "booster_", model)
    cats = getattr(booster, "pandas_categorical", None)
    return cats if isinstance(cats, list) and cats else None


def _category_codes(
    frame: Any, name: str, model: Any, ensemble: Any = None
) -> np.ndarray | None:
    """A DataFrame with categorical columns as ``float64`` rows of the codes the trees split
    on (a missing value NaN), or None where it has none.

    LightGBM codes a column by its categories at fitting time (``pandas_categorical``): each
    value is looked up there, whatever order the frame's own categories are in. XGBoost codes
    by the frame's categories (and from 3.1 maps them to its fitting ones): the frame's codes
    are read and checked against the model's own predictions afterwards
    (:func:`_check_xgboost_codes`). Other models, and text columns, raise.
    """
    dtypes = getattr(frame, "dtypes", None)
    if dtypes is None or not hasattr(frame, "iloc"):
        return None
    import pandas as pd  # type: ignore[import-untyped]

    categorical = [i for i, d in enumerate(dtypes) if isinstance(d, pd.CategoricalDtype)]
    text = [str(frame.columns[i]) for i, d in enumerate(dtypes)
            if not isinstance(d, pd.CategoricalDtype)
            and (pd.api.types.is_object_dtype(d) or pd.api.types.is_string_dtype(d))]  # fmt: skip
    if text:
        raise ValueError(
            f"`{name}` has text columns {text}: trees split on numbers. Pass them as a pandas "
            "categorical column (for a model fitted on one) or as the codes the model was "
            "fitted on."
        )
    if not categorical:
        return None
    source = _model_source(model)
    if source not in ("lightgbm", "xgboost"):
        raise ValueError(
            f"`{name}` has categorical columns {[str(frame.columns[i]) for i in categorical]}; "
            "for this model pass the numbers it was fitted on (categorical columns are read "
            "for LightGBM and XGBoost models)."
        )
    out = np.empty(frame.shape, dtype=np.float64)
    fitted = _lightgbm_categories(model) if source == "lightgbm" else None
    if fitted is not None and len(fitted) != len(categorical):
        raise ValueError(
            f"`{name}` has {len(categorical)} categorical columns; the model was fitted on "
            f"{len(fitted)}."
        )
    for j in range(frame.shape[1]):
        column = frame.iloc[:, j]
        if j in categorical:
            cats = None if fitted is None else fitted[categorical.index(j)]
            codes = np.asarray(
                column.cat.codes if cats is None else pd.Categorical(column, categories=cats).codes,
                dtype=np.float64,
            )  # fmt: skip
            codes[codes < 0] = np.nan  # missing (or, for LightGBM, a category never fitted)
            out[:, j] = codes
        else:
            out[:, j] = np.asarray(column, dtype=np.float64)
    if source == "xgboost" and ensemble is not None:
        _check_xgboost_codes(model, ensemble, frame, out, name)
    return out


#: Rows of a categorical frame checked against XGBoost's own predictions.
_CHECKED_ROWS = 256


def _check_xgboost_codes(model: Any, ensemble: Any, frame: Any, codes: np.ndarray,
                         name: str) -> None:  # fmt: skip
    """Raises where the trees on the frame's category codes do not give XGBoost's own margins
    (the frame's categories are not the ones the model was fitted on)."""
    import xgboost

    head, rows = frame.iloc[:_CHECKED_ROWS], codes[:_CHECKED_ROWS]
    if hasattr(model, "get_booster"):
        margin = model.predict(head, output_margin=True)
    else:
        margin = model.predict(xgboost.DMatrix(head, enable_categorical=True), output_margin=True)
    margin = np.asarray(margin, dtype=np.float64).reshape(rows.shape[0], -1)
    ours = ensemble.predict(rows).reshape(margin.shape)
    scale = 1.0 + float(np.abs(margin).max(initial=0.0))
    if not np.allclose(ours, margin, rtol=0.0, atol=1e-4 * scale):
        raise ValueError(
            f"`{name}`'s categorical columns are coded differently from the data the model was "
            "fitted on (its categories differ, e.g. a subset or another order), so its trees "
            "would read other categories. Give those columns the fitting data's categories "
            "(`column.cat.set_categories(...)`) or pass the codes the model was fitted on."
        )


def _model_source(model: Any) -> str:
    module = type(getattr(model, "booster_", model)).__module__
    return module.split(".")[0]


def _as_rows(
    value: Any, name: str, n_features: int, names: list[str] | None = None, model: Any = None,
    ensemble: Any = None,
) -> np.ndarray:
    """``value`` as ``float64 [r, n_features]`` (a 1-D row becomes ``[1, n]``); a DataFrame's
    columns in the order of the model's ``names`` (:func:`_model_order`), its categorical
    columns as the codes the trees split on (:func:`_category_codes`)."""
    order = _model_order(value, name, names)
    if order is not None:
        value = value[order]
    codes = _category_codes(value, name, model, ensemble)
    if codes is not None:
        value = codes
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[None]
    if arr.ndim != 2 or arr.shape[1] != n_features:
        raise ValueError(
            f"`{name}` must have shape [rows, {n_features}] (the model's number of features); "
            f"got {tuple(np.shape(value))}."
        )
    return arr


class TreeInteraction:
    """Exact interactions of a tree ensemble for a batch of rows (TreeSHAP-IQ's job, any index).

    Two ways to remove a feature:

    * ``"path_dependent"`` (default, as TreeSHAP and shapiq's ``TreeExplainer``): at a split on a
      removed feature the row follows both children, weighted by their training cover.
    * ``"interventional"``: a removed feature takes its value from a baseline row; with a
      background set of ``M`` rows the value function is the mean over the ``M`` baselines
      (shap's interventional ``TreeExplainer``).

    The value explained is the model's raw output: the margin / log-odds of boosted
    classifiers (LightGBM, XGBoost, scikit-learn gradient boosting, as shapiq and shap), the
    class probabilities of scikit-learn tree and forest classifiers, the prediction of
    regressors. Models with several outputs (multi-class) give one column per output unless
    ``target`` selects one.

    Args:
        model: a fitted LightGBM ``Booster`` / ``LGBMRegressor`` / ``LGBMClassifier``; a
            scikit-learn ``DecisionTree*``, ``ExtraTree*``, ``RandomForest*``, ``ExtraTrees*``,
            ``GradientBoosting*`` or ``HistGradientBoosting*`` model; an XGBoost model.
        masking: ``"path_dependent"`` or ``"interventional"``.
        background: ``[M, n_features]`` baseline rows for interventional masking (averaged);
            a single row ``[n_features]`` is one baseline. ``attribute(baselines=...)``
            overrides it per call.

    Example:
        >>> from sklearn.tree import DecisionTreeRegressor
        >>> x = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
        >>> tree = DecisionTreeRegressor().fit(x, [0.0, 0.0, 0.0, 4.0])
        >>> explainer = TreeInteraction(tree, "interventional", background=[0.0, 0.0])
        >>> result = explainer.attribute(x[3], index="k-SII", max_order=2)  # f = 4 x0 x1
        >>> result[(0, 1)], result.first_order("SV").tolist()
        (4.0, [2.0, 2.0])
    """

    def __init__(
        self,
        model: Any,
        masking: str = "path_dependent",
        background: Any = None,
    ) -> None:
        if masking not in MASKINGS:
            raise ValueError(f"`masking` must be one of {MASKINGS}; got {masking!r}.")
        if masking == "path_dependent" and background is not None:
            raise ValueError(
                "`background` is only used by masking='interventional'; drop it or set "
                "masking='interventional'."
            )
        self.model = model
        self.masking = masking
        self.background = background
        self._ensemble: TreeEnsemble | None = None
        self._paths: TreePaths | None = None

    @property
    def ensemble(self) -> TreeEnsemble:
        """The model's trees in flat arrays (parsed on first use)."""
        if self._ensemble is None:
            self._ensemble = parse_tree_ensemble(self.model)
        return self._ensemble

    @property
    def paths(self) -> TreePaths:
        """The trees' root-to-leaf paths for the Shapley route (built on first use)."""
        if self._paths is None:
            self._paths = tree_paths(self.ensemble)
        return self._paths

    def _baselines(self, baselines: Any) -> np.ndarray | None:
        """The interventional baseline rows ``[M, n]`` (None for path-dependent masking)."""
        n = self.ensemble.n_features
        if self.masking == "path_dependent":
            if baselines is not None:
                raise ValueError(
                    "`baselines` is only used by masking='interventional'; drop it or construct "
                    "TreeInteraction(model, masking='interventional')."
                )
            return None
        if baselines is None:
            baselines = self.background
        if baselines is None:
            raise ValueError(
                "masking='interventional' needs baseline rows: pass `background=` to "
                "TreeInteraction or `baselines=` to attribute()."
            )
        return _as_rows(baselines, "baselines", n, _model_feature_names(self.model), self.model,
                        self.ensemble)

    def fourier(
        self, inputs: Any, baselines: Any = None, show_progress: bool = False
    ) -> SparseSpectrum:
        """The exact Fourier spectrum of every row's value function.

        Args:
            inputs: ``[B, n_features]`` (or one row ``[n_features]``) NumPy array or tensor.
            baselines: interventional baseline rows ``[M, n_features]`` (default: the
                constructor's ``background``).
            show_progress: show a tqdm bar over the rows (they are then read in about 50
                chunks; the result is the same).

        Returns:
            ``SparseSpectrum`` with coefficients ``float64 [s, B, O]`` (``O`` model outputs).
        """
        ens = self.ensemble
        n = ens.n_features
        rows = _as_rows(inputs, "inputs", n, _model_feature_names(self.model), self.model,
                        self.ensemble)
        base_rows = self._baselines(baselines)
        removed = None if base_rows is None else ens.goes_left(base_rows)
        if not show_progress:
            return self._spectrum(ens, ens.goes_left(rows), removed)
        from torchspex.decoders.base import Progress

        bar = Progress("TreeInteraction", rows.shape[0], unit="row")
        step = max(1, -(-rows.shape[0] // 50))
        parts = []
        try:
            for start in range(0, rows.shape[0], step):
                kept = ens.goes_left(rows[start : start + step])
                parts.append(self._spectrum(ens, kept, removed))
                bar.update(parts[-1].coefficients.shape[1])
            bar.finish()
        finally:
            bar.close()
        return _concat_rows(parts, n)

    def _spectrum(
        self, ens: TreeEnsemble, kept: np.ndarray, removed: np.ndarray | None
    ) -> SparseSpectrum:
        if removed is None:
            return self._path_dependent(ens, kept)
        return self._interventional(ens, kept, removed)

    def _path_dependent(self, ens: TreeEnsemble, kept: np.ndarray) -> SparseSpectrum:
        internal = ens.left >= 0
        lc = np.where(internal, ens.left, 0)
        rc = np.where(internal, ens.right, 0)
        total = ens.cover[lc] + ens.cover[rc]
        share = np.divide(ens.cover[lc], total, out=np.full(len(total), 0.5), where=total > 0)
        idx, coef = tree_spectrum(ens, kept, share[:, None], ens.n_features)
        return SparseSpectrum(idx, coef, ens.n_features, "Fourier")

    def _interventional(
        self, ens: TreeEnsemble, kept: np.ndarray, removed: np.ndarray
    ) -> SparseSpectrum:
        n_rows, n_base = kept.shape[1], removed.shape[1]
        per_chunk = max(1, _PAIRS_PER_CHUNK // n_rows)
        parts_idx, parts_coef = [], []
        for start in range(0, n_base, per_chunk):
            rem = removed[:, start : start + per_chunk]  # [N, m]
            m = rem.shape[1]
            kept_pairs = np.repeat(kept, m, axis=1)  # column = row * m + baseline
            rem_pairs = np.tile(rem, (1, n_rows)).astype(np.float64)
            idx, coef = tree_spectrum(ens, kept_pairs, rem_pairs, ens.n_features)
            coef = coef.reshape(coef.shape[0], n_rows, m, -1).sum(dim=2)
            parts_idx.append(idx)
            parts_coef.append(coef)
        width = max(p.shape[1] for p in parts_idx)
        padded = [
            torch.nn.functional.pad(p, (0, width - p.shape[1]), value=-1) for p in parts_idx
        ]
        idx, coef = coalesce(torch.cat(padded), torch.cat(parts_coef), ens.n_features)
        return SparseSpectrum(idx, coef / n_base, ens.n_features, "Fourier")

    def attribute(
        self,
        inputs: Any,
        baselines: Any = None,
        target: int | None = None,
        index: str = "k-SII",
        max_order: int | None = 2,
        feature_names: Sequence[str] | None = None,
        show_progress: bool = False,
        full_spectrum: bool = False,
    ) -> Interactions:
        """Exact interactions for each row of ``inputs``.

        Shapley values (``index="SV"``, or ``SII`` / ``k-SII`` / ``STII`` / ``FSII`` with
        ``max_order=1``) and ``k-SII`` with ``max_order=2`` or ``3`` take the Shapley route:
        exact values computed leaf by leaf from each row's decision pattern
        (:func:`~torchspex.decoders.treeshap.tree_shapley_values`), without the trees' Fourier
        spectrum, returned as a :class:`TreeShapleyInteractions` that answers those reads only.
        Every other request (or ``full_spectrum=True``) reads the whole spectrum, from which
        any index and order follows.

        Args:
            inputs: ``[B, n_features]`` rows to explain (NumPy array or tensor); a single row
                ``[n_features]`` gives coefficients without the batch dimension.
            baselines: interventional baseline rows ``[M, n_features]`` (averaged), overriding
                the constructor's ``background``; not used by path-dependent masking.
            target: which model output to explain (class index for multi-output models);
                ``None`` keeps every output (a trailing dimension when there are several).
            index: the interaction index of the default view (any of
                :data:`torchspex.INDEX_NAMES`; shapiq's spellings).
            max_order: order cap of the default view (``None``: no cap).
            feature_names: display labels, one per feature (default: a pandas DataFrame's
                column names when ``inputs`` is one, else the model's own feature names when it
                records them, else ``"0" .. "n-1"``).
            show_progress: show a tqdm bar over the rows (read in about 50 chunks; for many
                rows, e.g. a whole test set). Off by default.
            full_spectrum: read the trees' whole Fourier spectrum even where the Shapley route
                serves the request (slower; every index, order and ``predict`` then work).

        Returns:
            :class:`~torchspex.Interactions` whose spectrum has coefficients ``float64 [s, B]``
            (``[s, B, O]`` for several outputs; ``[s]`` / ``[s, O]`` for one 1-D row). The
            empty set holds the value with every feature removed. ``n_evaluations`` is 0: the
            model is never called. From the Shapley route a :class:`TreeShapleyInteractions`,
            whose spectrum is the game of degree 1 (2, 3) with the model's exact values.

        Raises:
            ValueError: for inputs of the wrong width, a missing background for
                interventional masking, or an out-of-range ``target``.
        """
        index = canonical_index(index)
        single = np.ndim(inputs.detach().cpu() if isinstance(inputs, torch.Tensor) else inputs) == 1
        max_order = _check_order(max_order, self.ensemble.n_features)
        order = None if full_spectrum else _shapley_order(index, max_order)
        exact: tuple[Tensor, tuple[SparseSpectrum, Tensor] | None] | None = None
        if order is None:
            spectrum = self.fourier(inputs, baselines, show_progress=show_progress)
        else:
            spectrum, baseline, order3 = self._shapley_spectrum(inputs, baselines, order,
                                                                show_progress)  # fmt: skip
            exact = (baseline, order3)
        coef = spectrum.coefficients  # [s, B, O]
        n_out = coef.shape[2]
        if target is not None:
            if isinstance(target, torch.Tensor) and target.numel() == 1 and target.dim() <= 1:
                target = target.item()  # a 0-d or one-element tensor, as SpectralInteraction
            if isinstance(target, (bool, np.bool_)) or not isinstance(target, (int, np.integer)):
                raise TypeError(f"`target` must be an int or None; got {type(target).__name__}.")
            target = int(target)
            if not -n_out <= target < n_out:
                raise ValueError(
                    f"`target` must be in [0, {n_out}) (the model has {n_out} outputs); "
                    f"got {target}."
                )
        pick = target if target is not None else (0 if n_out == 1 else None)

        def chosen(c: Tensor) -> Tensor:  # [k, B, O] -> the output(s) and row(s) asked for
            c = c if pick is None else c[:, :, pick]
            return c[:, 0] if single else c

        spectrum = spectrum.replace(coefficients=chosen(coef).contiguous())
        if feature_names is None:
            feature_names = _feature_names(inputs, self.model, spectrum.n_features)
        info: dict[str, Any] = {"masking": self.masking, "exact": True,
                                "model": self.ensemble.source}
        cls = Interactions
        if order is not None:
            cls = TreeShapleyInteractions
            info["exact_order"] = order
        result = cls(
            spectrum,
            index=index,
            max_order=max_order,
            n_evaluations=0,
            feature_names=feature_names,
            method="tree",
            info=info,
        )
        if exact is not None:
            assert isinstance(result, TreeShapleyInteractions)
            baseline, order3 = exact
            if order3 is not None:  # own copies of what was asked for (the rest is freed)
                coef = chosen(order3[0].coefficients).contiguous()
                order3 = (order3[0].replace(coefficients=coef, basis=result.index),
                          chosen(order3[1]).contiguous())  # fmt: skip
            result._exact = (chosen(baseline.unsqueeze(0))[0], order3)
        return result

    def _shapley_spectrum(
        self, inputs: Any, baselines: Any, order: int, show_progress: bool
    ) -> tuple[SparseSpectrum, Tensor, tuple[SparseSpectrum, Tensor] | None]:
        """``(spectrum, baseline, order3)``: the Fourier spectrum ``[s, B, O]`` of the
        degree-``order`` game with the rows' exact Shapley values (order 2 or 3: k-SII values
        as its Moebius coefficients; orders 1 and 2: sets ∅, every feature, then the pairs),
        the value with every feature removed ``[B, O]``, and for order 3 the k-SII values
        ``[s', B, O]`` with the Shapley values ``[n, B, O]`` (else None)."""
        ens = self.ensemble
        n = ens.n_features
        rows = _as_rows(inputs, "inputs", n, _model_feature_names(self.model), self.model,
                        self.ensemble)
        base_rows = self._baselines(baselines)
        bar = None
        if show_progress:
            from torchspex.decoders.base import Progress

            bar = Progress("TreeInteraction", rows.shape[0], unit="row")
        try:
            values, baseline, pairs, sii = tree_shapley_values(
                ens, rows, base_rows, order, self.paths, None if bar is None else bar.update
            )
            if bar is not None:
                bar.finish()
        finally:
            if bar is not None:
                bar.close()
        n_rows = rows.shape[0]
        empty = baseline.expand(n_rows, -1)  # [B, O]
        if order == 3:
            assert pairs is not None and sii is not None
            moebius = _order3_moebius(values, baseline, pairs, sii, n)
            return (moebius_to_fourier(moebius, dense=False), empty,
                    (moebius, values.permute(1, 0, 2)))
        # Moebius m(empty) = f(empty), m(i) = SV_i - sum_k SII_ik / 2, m(ik) = SII_ik; in the
        # Fourier basis F(K) = (-1)^|K| sum_{T >= K} m(T) / 2^|T|:
        # F(empty) = f(empty) + sum SV / 2 - sum SII / 4, F(i) = -SV_i / 2, F(ik) = SII_ik / 4
        # (written once into the coefficients: the values arrive as views of the explainer's
        # [targets, O, rows] sums)
        n_pairs = 0 if pairs is None else pairs.shape[0]
        coef = torch.empty(1 + n + n_pairs, n_rows, values.shape[2], dtype=values.dtype)
        torch.add(empty, values.sum(dim=1), alpha=0.5, out=coef[0])
        torch.mul(values.permute(1, 0, 2), -0.5, out=coef[1 : 1 + n])
        idx = [torch.full((1, 1), -1, dtype=torch.long), torch.arange(n)[:, None]]
        if pairs is not None and sii is not None:
            coef[0] -= sii.sum(dim=1) / 4
            torch.mul(sii.permute(1, 0, 2), 0.25, out=coef[1 + n :])
            idx = [torch.nn.functional.pad(i, (0, 1), value=-1) for i in idx] + [pairs]
        spectrum = SparseSpectrum(torch.cat(idx), coef, n, "Fourier")
        return spectrum, empty, None


def _order3_moebius(
    values: Tensor, baseline: Tensor, sets: Tensor, sii: Tensor, n: int
) -> SparseSpectrum:
    """The k-SII values of order 3 of the rows ``[s, B, O]`` (the Moebius coefficients of the
    game of degree 3 with those values): from the Shapley values ``values [B, n, O]`` and the
    Shapley interaction indices ``sii [B, P + Q, O]`` of the pairs and triples ``sets [P + Q,
    3]`` (a pair's third entry ``-1``), with the Bernoulli numbers ``1, -1/2, 1/6`` (Bordt and
    von Luxburg 2023): ``k-SII_ijl = SII_ijl``, ``k-SII_ij = SII_ij - sum_l SII_ijl / 2``,
    ``k-SII_i = phi_i - sum_j SII_ij / 2 + sum_{j<l} SII_ijl / 6``."""
    n_rows = values.shape[0]
    triple = sets[:, 2] >= 0
    pair = ~triple
    pair_sets, triple_sets = sets[pair, :2], sets[triple]
    pair_sii, triple_sii = sii[:, pair], sii[:, triple]  # [B, P, O], [B, Q, O]
    # each triple's three pairs among the pairs (every pair inside a path's triple shares it)
    keys = pair_sets[:, 0] * n + pair_sets[:, 1]
    order = torch.argsort(keys)
    ksii_pairs = pair_sii.clone()
    for a, b in ((0, 1), (0, 2), (1, 2)):
        where = order[torch.searchsorted(keys[order], triple_sets[:, a] * n + triple_sets[:, b])]
        ksii_pairs.index_add_(1, where, triple_sii, alpha=-0.5)
    ksii_single = values.clone()
    for col in range(2):
        ksii_single.index_add_(1, pair_sets[:, col], pair_sii, alpha=-0.5)
    for col in range(3):
        ksii_single.index_add_(1, triple_sets[:, col], triple_sii, alpha=1.0 / 6.0)
    idx = torch.cat([torch.full((1, 3), -1, dtype=torch.long),
                     torch.nn.functional.pad(torch.arange(n)[:, None], (0, 2), value=-1),
                     torch.nn.functional.pad(pair_sets, (0, 1), value=-1), triple_sets])
    coef = torch.cat([baseline.expand(n_rows, -1)[None], ksii_single.permute(1, 0, 2),
                      ksii_pairs.permute(1, 0, 2), triple_sii.permute(1, 0, 2)])
    return SparseSpectrum(idx, coef.contiguous(), n, "Moebius")


def _concat_rows(parts: list[SparseSpectrum], n_features: int) -> SparseSpectrum:
    """Spectra of consecutive row chunks (coefficients ``[s_c, B_c, O]``) as one ``[S, B, O]``."""
    width = max(p.indices.shape[1] for p in parts)
    padded = [
        torch.nn.functional.pad(p.indices, (0, width - p.indices.shape[1]), value=-1)
        for p in parts
    ]
    support, inverse = torch.unique(torch.cat(padded), dim=0, return_inverse=True)
    n_rows = sum(p.coefficients.shape[1] for p in parts)
    out_shape = parts[0].coefficients.shape[2:]
    coef = torch.zeros(support.shape[0], n_rows, *out_shape, dtype=torch.float64)
    row = term = 0
    for p in parts:
        s_c, b_c = p.coefficients.shape[:2]
        coef[:, row : row + b_c].index_add_(0, inverse[term : term + s_c], p.coefficients)
        row, term = row + b_c, term + s_c
    return SparseSpectrum(support, coef, n_features, "Fourier").coalesce()


def _feature_names(inputs: Any, model: Any, n_features: int) -> list[str] | None:
    """A DataFrame's column names in the model's order (:func:`_model_order`), else the names
    the model recorded at fit time, else a DataFrame's column names, else None."""
    names = _model_feature_names(model)
    order = _model_order(inputs, "inputs", names)
    if order is not None:
        return [str(c) for c in order]
    if names is not None and len(names) == n_features:
        return names
    columns = getattr(inputs, "columns", None)
    if columns is not None and len(columns) == n_features:
        return [str(c) for c in columns]
    return None
