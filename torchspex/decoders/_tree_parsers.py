"""Flat arrays for tree ensembles from LightGBM, scikit-learn and XGBoost.

Every supported model is read into one :class:`TreeEnsemble`: all nodes of all trees in flat
NumPy arrays, with the routing rule of the library that trained it, so that
``TreeEnsemble.predict`` reproduces the model's raw output (margin / log-odds for boosted
classifiers, class probabilities for scikit-learn trees and forests). Categorical splits
(LightGBM ``categorical_feature``, XGBoost ``enable_categorical``) are read as per-node category
bitsets routed by the trainer's rule.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any, Literal

import numpy as np

__all__ = ["RoutingColumns", "TreeEnsemble", "parse_tree_ensemble"]

#: LightGBM treats ``|x| <= kZeroThreshold`` (a float32 1e-35) as zero for missing-type Zero.
_LGB_ZERO = float(np.float32(1e-35))
_MISSING_NONE, _MISSING_ZERO, _MISSING_NAN = 0, 1, 2


#: Cells per threshold of :meth:`TreeEnsemble.rank`'s grids, and the most thresholds one cell
#: may hold (beyond, the feature's ranks come from ``np.searchsorted``).
RANK_GRID_CELLS = 16
RANK_GRID_CROWD = 4
#: ... used from this many values at once (fewer: ``np.searchsorted``). One thread, every
#: feature of ``benchmarks/tree_vs_shapiq.py``'s four models, contiguous columns, a grid's
#: one-off build (0.5-1.5 ms per model) included: the grids were level with
#: ``np.searchsorted`` at 2,048 values (0.63 / 1.94 / 1.54 / 1.43 ms against 0.66 / 2.02 / 0.82
#: / 1.07) and ahead at 4,096 on three of four (0.71 / 2.29 / 1.80 / 1.92 against 1.28 / 3.93
#: / 1.52 / 2.09); built once, they cost 0.2-0.6 of the search per value after.
RANK_GRID_ROWS = 4096

#: A feature's rank grid: ``(lo, scale, base, within, spill)`` (:meth:`TreeEnsemble._rank_grids`).
_RankGrid = tuple[float, float, np.ndarray, list[np.ndarray], "np.ndarray | None"]


def _no_categories() -> np.ndarray:
    return np.zeros(0, dtype=np.int64)


@dataclass(frozen=True, eq=False)
class RoutingColumns:
    """Rows made ready for :meth:`TreeEnsemble.goes_left` once (:meth:`TreeEnsemble.columns`):
    their values feature by feature (``float64 [n_features, R]``, each feature's values
    contiguous) in the model's precision, and which features hold a NaN in some row. Indexed
    by a slice of rows (``cols[a:b]``, a view) and shaped ``(R, n_features)`` like the rows,
    so that the routers' callers take it where they took rows. The explainers route every
    chunk of rows several times (each step of each tree block, the background, the key tables'
    ranks): XGBoost's 100,000 rows spent 16 ms rounding them to float32, 10 ms looking for NaN
    and 17 ms gathering their columns per explanation, once per router step.

    Args:
        values: ``float64 [n_features, R]``.
        nan: ``bool [n_features]`` (a slice keeps its rows' superset: a feature marked here
            takes the full rule, which is exact with or without NaN).
        float32: the values are rounded to ``float32`` (an ensemble that compares
            ``float32(x)`` needs them so).
        filled: ``bool [n_features]``, the features whose values were copied (the others
            hold zeros: no split reads them), or ``None`` for all.
    """

    values: np.ndarray
    nan: np.ndarray
    float32: bool
    filled: np.ndarray | None = None  # bool [n_features]: the features copied (None: all)

    @property
    def shape(self) -> tuple[int, int]:
        """``(R, n_features)``, as the rows'."""
        return self.values.shape[1], self.values.shape[0]

    def __getitem__(self, rows: slice) -> RoutingColumns:
        if not isinstance(rows, slice):
            raise TypeError("RoutingColumns are indexed by a slice of rows")
        return RoutingColumns(self.values[:, rows], self.nan, self.float32, self.filled)


@dataclass(frozen=True, eq=False)
class TreeEnsemble:
    """All nodes of a tree ensemble in flat arrays (``N`` nodes over ``T`` trees).

    Attributes:
        feature: ``int64 [N]`` split feature, ``-1`` at leaves.
        threshold: ``float64 [N]`` split threshold.
        left, right: ``int64 [N]`` global child ids, ``-1`` at leaves.
        value: ``float64 [N, O]`` leaf values (already scaled: shrinkage, forest averaging).
        cover: ``float64 [N]`` training cover (samples or hessian) used by path-dependent masking.
        default_left: ``bool [N]`` where missing values go.
        missing: ``int8 [N]`` LightGBM missing type (0 none: NaN -> 0; 1 zero; 2 NaN); other
            libraries use 2 (NaN follows ``default_left``).
        roots: ``int64 [T]`` root node of each tree.
        base: ``float64 [O]`` constant added to the sum of the trees.
        n_features: number of input features the model expects.
        strict: a row goes left iff ``x < threshold`` (XGBoost); else iff ``x <= threshold``.
        float32_inputs: compare ``float32(x)`` (scikit-learn trees, XGBoost).
        source: a short description of the parsed model.
        category: ``int64 [N]`` for a categorical split, its row of ``category_bits``; ``-1``
            at numeric splits and leaves (the default: no categorical splits).
        category_bits: ``uint32 [C, W]`` the categories a categorical split sends left: bit
            ``c % 32`` of word ``c // 32`` for category ``c < 32 W``.
        category_other_left: ``bool [C]`` where a categorical split sends a value outside its
            bitset (a negative or infinite value, a category ``>= 32 W``). NaN follows
            ``default_left``; ``missing`` is 2 at categorical splits.
        category_truncates: a value's category is ``int(x)`` with the sign tested after the
            cast, so ``-0.5`` is category 0 (LightGBM); else every ``x < 0`` is outside
            (XGBoost).
    """

    feature: np.ndarray
    threshold: np.ndarray
    left: np.ndarray
    right: np.ndarray
    value: np.ndarray
    cover: np.ndarray
    default_left: np.ndarray
    missing: np.ndarray
    roots: np.ndarray
    base: np.ndarray
    n_features: int
    strict: bool = False
    float32_inputs: bool = False
    source: str = ""
    category: np.ndarray = field(default_factory=_no_categories)
    category_bits: np.ndarray = field(default_factory=lambda: np.zeros((0, 1), dtype=np.uint32))
    category_other_left: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    category_truncates: bool = False

    def __post_init__(self) -> None:
        if self.category.size == 0 and self.feature.size:  # no categorical splits
            object.__setattr__(self, "category", np.full(len(self.feature), -1, dtype=np.int64))

    @property
    def n_outputs(self) -> int:
        """Number of model outputs ``O``."""
        return self.value.shape[1]

    @property
    def is_leaf(self) -> np.ndarray:
        """``bool [N]``."""
        return self.left < 0

    @cached_property
    def used_features(self) -> np.ndarray:
        """The features some split reads (``int64``, increasing)."""
        return np.unique(self.feature[~self.is_leaf])

    def columns(self, x: np.ndarray) -> RoutingColumns:
        """Rows ``x`` (``float [R, n_features]``) made ready for :meth:`goes_left`: the
        features some split reads (:attr:`used_features`; the others stay zeros, which cost no
        memory until written) transposed once, rounded once to ``float32`` where the model
        compares so, searched once for NaN."""
        x = np.asarray(x)
        dtype = np.float32 if self.float32_inputs else np.float64
        used = self.used_features
        if used.size == x.shape[1]:
            values = np.ascontiguousarray(x.T, dtype=dtype).astype(np.float64, copy=False)
            return RoutingColumns(values, np.asarray(np.isnan(values).any(axis=1)),
                                  self.float32_inputs)  # fmt: skip
        values = np.zeros((x.shape[1], x.shape[0]))
        values[used] = np.ascontiguousarray(x[:, used].T, dtype=dtype)
        nan = np.zeros(x.shape[1], dtype=bool)
        nan[used] = np.isnan(values[used]).any(axis=1)
        filled = np.zeros(x.shape[1], dtype=bool)
        filled[used] = True
        return RoutingColumns(values, nan, self.float32_inputs, filled)

    def goes_left(self, x: np.ndarray | RoutingColumns) -> np.ndarray:
        """Routing of rows ``x`` (``float [R, n_features]``, or :class:`RoutingColumns` from
        :meth:`columns`) at every node: ``bool [N, R]``.

        Leaves get ``False``. Implements the trainer's rule, missing values and categorical
        splits included. Numeric splits on features without NaN in ``x`` (and not of LightGBM's
        missing type Zero) are compared feature by feature: each feature's column (contiguous)
        against all of its splits' thresholds at once (:meth:`_compare_numeric`); every other
        split takes the rule in full.
        """
        cols = x if isinstance(x, RoutingColumns) else self.columns(x)
        if cols.float32 != self.float32_inputs:
            raise ValueError("the rows were made ready for a model of another precision")
        if cols.filled is not None and not cols.filled[self.used_features].all():
            raise ValueError("the rows were made ready without some feature this model splits on")
        values = cols.values
        internal = ~self.is_leaf
        feat = np.where(internal, self.feature, 0)
        full = internal & ((self.category >= 0) | (self.missing == _MISSING_ZERO)
                           | cols.nan[feat])  # fmt: skip
        fast = np.flatnonzero(internal & ~full)
        if fast.size == len(self.feature):  # every node compared: no scatter into ``out``
            out, at = self._compare_numeric(values, fast)
            if not bool((at == fast).all()):  # back to node order
                back = np.empty_like(at)
                back[at] = np.arange(at.size)
                out = out[back]
        else:
            out = np.zeros((len(self.feature), values.shape[1]), dtype=bool)
        if fast.size and fast.size < len(self.feature):
            block, at = self._compare_numeric(values, fast)
            out[at] = block
        slow = np.flatnonzero(full)
        if slow.size:
            out[slow] = self._goes_left_full(values, slow)
        return out

    def _compare_numeric(
        self, values: np.ndarray, nodes: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(bool [len(nodes), R], nodes')``: ``x < threshold`` (strict) or ``x <= threshold``
        at the numeric ``nodes`` taken in the order ``nodes'`` (by feature), the rows' values
        ``float64 [n_features, R]`` (:class:`RoutingColumns`) in the model's precision without
        NaN at their features. One broadcast comparison of each feature's contiguous column
        with its thresholds writes their rows. One thread, a
        4,500-row chunk: XGBoost's 291 splits 1.45 -> 0.43 ms, the LightGBM breast-cancer
        booster's 2,747 splits 5.0 -> 2.8 ms against each row's rank among the feature's
        thresholds compared with the split's (``int16`` ranks gathered per node; the same
        routing)."""
        if not nodes.size:
            return np.zeros((0, values.shape[1]), dtype=bool), nodes
        feat = self.feature[nodes]
        order = np.argsort(feat, kind="stable")
        by_feature = feat[order]
        starts = np.flatnonzero(np.diff(by_feature)) + 1
        bounds = [0, *starts.tolist(), nodes.size]
        threshold = self.threshold[nodes[order], None]
        compare = np.less if self.strict else np.less_equal
        out = np.empty((nodes.size, values.shape[1]), dtype=bool)
        for i in range(len(bounds) - 1):
            a, b = bounds[i], bounds[i + 1]
            compare(values[by_feature[a]], threshold[a:b], out=out[a:b])
        return out, nodes[order]

    def rank(self, v: np.ndarray, f: int) -> np.ndarray:
        """Each value of ``v`` (``float64 [R]``, no NaN, in the model's precision): its rank
        among feature ``f``'s thresholds (:attr:`_cuts`), the number below it (``<=`` for
        strict splits), as ``np.searchsorted`` gives it, through :attr:`_rank_grids` where
        the feature has one: a value's cell on an even grid over the thresholds' range gives
        the thresholds of lower cells (the grid is monotone in the value), and one comparison
        per threshold sharing its cell the rest. One thread, 100,000 rows, contiguous columns,
        every feature of ``benchmarks/tree_vs_shapiq.py``'s models: the LightGBM boosters 29 ->
        4 ms (diabetes) and 91 -> 16 ms (breast cancer), XGBoost 35 -> 14 ms, the forest 51 ->
        27 ms (the same ranks)."""
        side: Literal["left", "right"] = "right" if self.strict else "left"
        grid = self._rank_grid(f, v.size) if v.size >= RANK_GRID_ROWS else None
        if grid is None:
            return np.searchsorted(self._cuts[1][f], v, side=side)
        lo, scale, base, within, spill = grid
        if scale:
            with np.errstate(over="ignore"):  # huge values: an infinite cell, clipped
                cell = v - lo
                cell *= scale
            np.clip(cell, 0, base.size - 1, out=cell)
            at = cell.astype(np.intp)
        else:  # one threshold: one cell
            at = np.zeros(v.shape, dtype=np.intp)
        out = base[at]
        for c in within:  # the cell's j-th threshold, NaN past its last (never counted)
            out += (v >= c[at]) if self.strict else (v > c[at])
        if spill is not None:  # cells crowded past RANK_GRID_CROWD: binary search
            rows = np.flatnonzero(spill[at])
            if rows.size:
                out[rows] = np.searchsorted(self._cuts[1][f], v[rows], side=side)
        return out

    @cached_property
    def _rank_grids(self) -> dict[int, _RankGrid | None]:
        """Per feature, once :meth:`rank` first needs it: ``(lo, scale, base, within, spill)``
        of an even grid of :data:`RANK_GRID_CELLS` cells per threshold over the feature's
        thresholds, cell ``floor((v - lo) * scale)`` clipped to the grid; ``base [cells]`` the
        thresholds in lower cells; ``within[j] [cells]`` each cell's ``j``-th threshold (NaN
        where it has fewer), up to :data:`RANK_GRID_CROWD`; ``spill bool [cells]`` the cells
        holding more (their values' ranks by binary search), None where there are none. None
        (``np.searchsorted`` throughout) for features with a threshold not finite or whose
        thresholds span past the float range; a grid too large for the values at hand is not
        built (nor cached: a larger call may build it). Read by the key tables' ranks
        (``treeshap._KeyTables.ranks``); :meth:`goes_left` compares values directly."""
        return {}

    def _rank_grid(self, f: int, n_values: int) -> _RankGrid | None:
        """Feature ``f``'s grid, built at first use where its cells number at most the
        ``n_values`` to rank or ``4 x RANK_GRID_ROWS`` (a grid costs 13-45 bytes a cell:
        thresholds by the 100,000 in a deep forest keep to binary search, not to a grid of
        gigabytes)."""
        grids = self._rank_grids
        if f in grids:
            return grids[f]
        c = self._cuts[1][f]
        cells = RANK_GRID_CELLS * c.size if c.size > 1 else 1
        if cells > max(n_values, 4 * RANK_GRID_ROWS):  # not cached: a larger call may build it
            return None
        grids[f] = None
        if not c.size or not np.isfinite(c).all():
            return None
        with np.errstate(over="ignore"):
            lo, span = float(c[0]), float(c[-1] - c[0])
        scale = (cells - 1) / span if span > 0 else 0.0
        if not (np.isfinite(span) and np.isfinite(scale)):  # thresholds past the float range
            return None
        at = np.clip((c - lo) * scale, 0, cells - 1).astype(np.intp)
        count = np.bincount(at, minlength=cells)
        base = (np.cumsum(count) - count).astype(np.int32)
        within = []
        for j in range(min(int(count.max()), RANK_GRID_CROWD)):
            arr = np.full(cells, np.nan)
            has = count > j
            arr[has] = c[base[has] + j]
            within.append(arr)
        spill = count > RANK_GRID_CROWD
        grids[f] = (lo, scale, base, within, spill if spill.any() else None)
        return grids[f]

    @cached_property
    def _cuts(self) -> tuple[np.ndarray, list[np.ndarray]]:
        """``(rank [N], cuts)``: per feature the sorted distinct thresholds of its numeric
        splits, per numeric split its threshold's position among them (``-1`` elsewhere)."""
        at = np.flatnonzero((~self.is_leaf) & (self.category < 0))
        feat, thr = self.feature[at], self.threshold[at]
        order = np.lexsort((thr, feat))
        feat, thr, at = feat[order], thr[order], at[order]
        new = np.ones(at.size, dtype=bool)
        new[1:] = (feat[1:] != feat[:-1]) | (thr[1:] != thr[:-1])
        distinct = np.cumsum(new) - 1  # position among all distinct (feature, threshold)
        first = np.searchsorted(feat[new], np.arange(self.n_features))  # per feature
        rank = np.full(len(self.feature), -1, dtype=np.int64)
        rank[at] = distinct - first[feat]
        bounds = np.append(first, int(new.sum()))
        uniq = thr[new]
        cuts = [uniq[bounds[f] : bounds[f + 1]] for f in range(self.n_features)]
        return rank, cuts

    def _goes_left_full(self, values: np.ndarray, nodes: np.ndarray) -> np.ndarray:
        """:meth:`goes_left` at the internal ``nodes`` by the full rule (the rows' values
        ``float64 [n_features, R]`` in the model's precision): ``bool [len(nodes), R]``."""
        vals = values[self.feature[nodes]]  # [V, R]
        thr = self.threshold[nodes, None]
        nan = np.isnan(vals)
        missing = self.missing[nodes, None]
        vals = np.where(nan & (missing != _MISSING_NAN), 0.0, vals)
        use_default = ((missing == _MISSING_ZERO) & (np.abs(vals) <= _LGB_ZERO)) | (
            (missing == _MISSING_NAN) & nan
        )
        with np.errstate(invalid="ignore"):
            cmp = vals < thr if self.strict else vals <= thr
        category = self.category[nodes]
        at = np.flatnonzero(category >= 0)
        if at.size:
            cmp[at] = self._category_left(vals[at], category[at])
        return np.where(use_default, self.default_left[nodes, None], cmp)

    def _category_left(self, vals: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Categorical routing of ``vals`` (``float64 [C', R]``) at splits using the bitset
        ``rows`` (``int64 [C']``): ``bool [C', R]``; NaN is left to the caller."""
        bits = self.category_bits[rows]  # [C', W]
        with np.errstate(invalid="ignore"):
            code = np.trunc(vals)
            inside = (code >= 0) if self.category_truncates else (vals >= 0)
            inside &= code < 32 * bits.shape[1]  # False for NaN and inf
        code = np.where(inside, code, 0).astype(np.int64)
        word = np.take_along_axis(bits, code >> 5, axis=1)
        member = ((word >> (code & 31).astype(np.uint32)) & 1).astype(bool)
        return np.where(inside, member, self.category_other_left[rows][:, None])

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Raw model output for rows ``x`` (``float [R, n_features]``) -> ``float64 [R, O]``."""
        left = self.goes_left(x)
        rows = np.arange(left.shape[1])
        node = np.repeat(self.roots[:, None], left.shape[1], axis=1)  # [T, R]
        while True:
            internal = self.left[node] >= 0
            if not internal.any():
                break
            nxt = np.where(left[node, rows], self.left[node], self.right[node])
            node = np.where(internal, nxt, node)
        return self.value[node].sum(axis=0) + self.base


def _concat(trees: list[dict[str, np.ndarray]], n_outputs: int, **meta: Any) -> TreeEnsemble:
    """Joins per-tree arrays (local ids) into one ensemble (global ids)."""
    sizes = np.array([len(t["feature"]) for t in trees], dtype=np.int64)
    return _assemble({k: np.concatenate([t[k] for t in trees]) for k in trees[0]}, sizes,
                     n_outputs, **meta)  # fmt: skip


def _assemble(arr: dict[str, np.ndarray], sizes: np.ndarray, n_outputs: int,
              **meta: Any) -> TreeEnsemble:  # fmt: skip
    """One ensemble from the trees' arrays laid end to end (``sizes [T]`` nodes per tree;
    children as ids local to their tree, ``-1`` at leaves)."""
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    start = np.repeat(offsets[:-1], sizes)  # each node's tree's first id
    for k in ("left", "right"):
        arr[k] = np.where(arr[k] >= 0, arr[k] + start, -1)
    n = int(offsets[-1])
    value = arr["value"].reshape(n, n_outputs).astype(np.float64)
    feature = np.where(arr["left"] >= 0, arr["feature"], -1).astype(np.int64)
    return TreeEnsemble(
        feature=feature,
        threshold=arr["threshold"].astype(np.float64),
        left=arr["left"].astype(np.int64),
        right=arr["right"].astype(np.int64),
        value=np.where(arr["left"][:, None] >= 0, 0.0, value),
        cover=arr["cover"].astype(np.float64),
        default_left=arr["default_left"].astype(bool),
        missing=arr["missing"].astype(np.int8),
        roots=offsets[:-1].astype(np.int64),
        **meta,
    )


# ---------------------------------------------------------------------------- LightGBM
def _lgb_column(
    fields: dict[str, list[str]], key: str, dtype: type, count: int, integral: bool = False,
    repeats: bool = False,
) -> np.ndarray:
    """The field ``key`` of every tree that has it, concatenated: ``count`` entries
    (``integral``: LightGBM writes the field as integers; ``repeats``: its numbers may be a few
    values written again and again).

    NumPy's text reader (``np.fromstring`` with a separator) parses the numbers in C with the
    same correctly rounded conversion as ``float()``; a Python list of strings took 10x as long
    (cProfile of the regression decoder, MLP on wine at 1,024 calls: 0.53 s of 8.5 s).
    """
    lines = fields.get(key, [])
    text = " ".join(lines)
    if repeats and not integral and lines:
        repeated = _lgb_repeated(text, count)
        if repeated is not None:
            return repeated if dtype is np.float64 else _lgb_column(fields, key, dtype, count)
    if integral and lines:
        # integer fields (nodes, features, decision bits, counts) parse 8x faster as integers
        # (667-tree proxy: 4.5 -> 0.5 ms per field); text that is not all integers (numpy
        # raises on the first token it cannot read to its end) takes the float path below
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", DeprecationWarning)  # numpy < 2.3 only warned
                ints = np.fromstring(text, dtype=np.int64, sep=" ")
            if ints.size == count:
                return ints if dtype is not np.float64 else ints.astype(np.float64)
        except (ValueError, DeprecationWarning):
            pass
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", DeprecationWarning)
            flat = np.fromstring(text, dtype=np.float64, sep=" ") if lines else np.zeros(0)
    except (ValueError, DeprecationWarning):
        flat = np.zeros(0)  # reported below, naming the field
    if flat.size != count:
        raise ValueError(f"could not read LightGBM field {key!r} from the model string.")
    if dtype is np.float64:
        return flat
    out: np.ndarray = flat.astype(dtype)
    if not np.array_equal(out, flat):
        raise ValueError(f"could not read LightGBM field {key!r} from the model string.")
    return out


def _lgb_repeated(text: str, count: int) -> np.ndarray | None:
    """``count`` numbers of ``text`` (space-separated) that repeat a few distinct tokens, each
    token read once (the same C reader as :func:`_lgb_column`, so the same doubles); ``None``
    where they are not that repetitive (judged on the first 256) or not ``count``.

    A proxy's trees on 0/1 masks split every feature at one threshold, so this field is one
    token written at every split: 12,400 of them parsed in 1 ms instead of 5 (the regression's
    deep proxy at 2,048 calls)."""
    if len(set(text[:8192].split()[:256])) > 16:
        return None
    tokens = text.split()
    if len(tokens) != count:
        return None
    distinct = dict.fromkeys(tokens)
    if len(distinct) * 8 > count:
        return None
    try:  # a token numpy cannot read to its end raises (numpy < 2.3 only warned)
        with warnings.catch_warnings():
            warnings.simplefilter("error", DeprecationWarning)
            values = np.fromstring(" ".join(distinct), dtype=np.float64, sep=" ")
    except (ValueError, DeprecationWarning):
        return None
    if values.size != len(distinct):
        return None
    code = {token: i for i, token in enumerate(distinct)}
    return values[np.fromiter(map(code.__getitem__, tokens), dtype=np.int64, count=count)]


#: First guess of a LightGBM text model's size: bytes per tree plus bytes per leaf (a 667-tree
#: booster of 32-leaf trees on 13 binary features wrote 97 bytes per leaf).
_LGB_TREE_BYTES, _LGB_LEAF_BYTES = 1024, 128


def _lightgbm_text(booster: Any) -> str:
    """The trees of ``booster`` (up to its best iteration) as LightGBM's text model, serialized
    once.

    ``Booster.model_to_string`` serializes into a 1 MiB buffer and, when the text is longer,
    serializes it all again into a buffer of the right size: the regression's deep proxy (667
    trees, 2 MB of text) paid 38 ms where one pass takes 18. Here the buffer is sized from the
    trees and their leaves first (again only where that guess is short). The text is the
    wrapper's without the ``pandas_categorical`` line it appends; where LightGBM's C entry point
    is not where this expects it, the wrapper's method is used.
    """
    import ctypes

    try:
        from lightgbm.basic import _LIB, _safe_call

        handle = booster._handle
    except (ImportError, AttributeError):  # pragma: no cover - another LightGBM layout
        return str(booster.model_to_string())
    leaves = int(booster.params.get("num_leaves", 31)) if hasattr(booster, "params") else 31
    size = (1 << 16) + booster.num_trees() * (_LGB_TREE_BYTES + _LGB_LEAF_BYTES * max(leaves, 2))
    written = ctypes.c_int64(0)
    for _ in range(2):
        buffer = ctypes.create_string_buffer(size)
        _safe_call(_LIB.LGBM_BoosterSaveModelToString(
            handle, ctypes.c_int(0), ctypes.c_int(booster.best_iteration), ctypes.c_int(0),
            ctypes.c_int64(size), ctypes.byref(written),
            ctypes.c_char_p(ctypes.addressof(buffer))))  # fmt: skip
        if written.value <= size:
            return buffer.raw[: written.value - 1].decode("utf-8")
        size = written.value
    raise RuntimeError("LightGBM wrote more text than it announced.")  # pragma: no cover


def _parse_lightgbm(booster: Any) -> TreeEnsemble:
    """All trees of a LightGBM booster (up to its best iteration) in flat arrays.

    LightGBM has no array export of its trees: the text model (:func:`_lightgbm_text`) is read
    once, field by field over all trees at a time, and the node arrays are laid out with array
    arithmetic (tree ``t``: its ``n_i`` internal nodes, then its ``n_l = n_i + 1`` leaves).
    """
    text = _lightgbm_text(booster)
    head, _, rest = text.partition("\nTree=")
    header: dict[str, str] = {}
    for line in head.splitlines():
        key, sep, val = line.partition("=")
        if sep:
            header[key] = val
    body = "Tree=" + rest.split("end of trees")[0]
    fields: dict[str, list[str]] = {}
    for line in body.splitlines():
        key, sep, val = line.partition("=")
        if sep:
            fields.setdefault(key, []).append(val)
    if any(v != "0" for v in fields.get("is_linear", [])):
        raise ValueError("`model` uses linear trees (linear_tree=True), which are not supported.")
    n_class = int(header.get("num_tree_per_iteration", header.get("num_class", "1")))
    n_features = int(header["max_feature_idx"]) + 1
    n_leaves = np.array(fields.get("num_leaves", []), dtype=np.int64)
    if n_leaves.size == 0:
        raise ValueError("`model` has no trees; fit it first.")
    n_int = n_leaves - 1
    total_int, total_leaves = int(n_int.sum()), int(n_leaves.sum())
    col = {key: _lgb_column(fields, key, dtype, total_int, key != "threshold",
                            key == "threshold")
           for key, dtype in (("split_feature", np.int64), ("threshold", np.float64),
                              ("decision_type", np.int64), ("left_child", np.int64),
                              ("right_child", np.int64), ("internal_count", np.float64))}
    leaf_value = _lgb_column(fields, "leaf_value", np.float64, total_leaves)
    leaf_count = _lgb_column(fields, "leaf_count", np.float64, total_leaves, True)
    dec = col["decision_type"]
    n_trees = n_leaves.size
    scale = 1.0 / (n_trees // n_class) if "average_output" in header else 1.0
    size = n_int + n_leaves
    roots = np.concatenate([[0], np.cumsum(size)[:-1]]).astype(np.int64)
    n_nodes = int(size.sum())
    # global ids: tree t's internal node j is roots[t] + j, its leaf l is roots[t] + n_i[t] + l
    tree_i = np.repeat(np.arange(n_trees), n_int)
    tree_l = np.repeat(np.arange(n_trees), n_leaves)
    first_i = np.concatenate([[0], np.cumsum(n_int)[:-1]])
    first_l = np.concatenate([[0], np.cumsum(n_leaves)[:-1]])
    internal = roots[tree_i] + np.arange(total_int) - first_i[tree_i]
    leaves = roots[tree_l] + n_int[tree_l] + np.arange(total_leaves) - first_l[tree_l]

    def child(c: np.ndarray) -> np.ndarray:  # LightGBM: c >= 0 an internal node, ~c a leaf
        return roots[tree_i] + np.where(c >= 0, c, n_int[tree_i] + (~c))

    feature = np.full(n_nodes, -1, dtype=np.int64)
    threshold = np.zeros(n_nodes)
    left = np.full(n_nodes, -1, dtype=np.int64)
    right = np.full(n_nodes, -1, dtype=np.int64)
    cover = np.zeros(n_nodes)
    default_left = np.zeros(n_nodes, dtype=bool)
    missing = np.zeros(n_nodes, dtype=np.int8)
    value = np.zeros((n_nodes, n_class))
    feature[internal] = col["split_feature"]
    threshold[internal] = col["threshold"]
    left[internal] = child(col["left_child"])
    right[internal] = child(col["right_child"])
    cover[internal] = col["internal_count"]
    cover[leaves] = leaf_count
    categorical = (dec & 1) > 0
    # LightGBM sends NaN right at a categorical split whatever its missing type
    default_left[internal] = ((dec & 2) > 0) & ~categorical
    missing[internal] = np.where(categorical, _MISSING_NAN, (dec >> 2) & 3)
    value[leaves, tree_l % n_class] = leaf_value * scale
    category = np.full(n_nodes, -1, dtype=np.int64)
    bits, other = _lgb_categories(fields, n_trees)
    if categorical.any():
        # a categorical split's threshold is its bitset's index among its tree's bitsets
        n_cat = np.array(fields["num_cat"], dtype=np.int64)
        first_cat = np.concatenate([[0], np.cumsum(n_cat)[:-1]])
        cat_id = first_cat[tree_i] + col["threshold"].astype(np.int64)
        category[internal[categorical]] = cat_id[categorical]
    return TreeEnsemble(
        feature=feature, threshold=threshold, left=left, right=right, value=value,
        cover=cover, default_left=default_left, missing=missing, roots=roots,
        base=np.zeros(n_class), n_features=n_features, source="lightgbm",
        category=category, category_bits=bits, category_other_left=other,
        category_truncates=True,
    )  # fmt: skip


def _lgb_categories(fields: dict[str, list[str]], n_trees: int) -> tuple[np.ndarray, np.ndarray]:
    """The category bitsets of all trees: ``uint32 [C, W]`` (rows in tree order) and where
    values outside them go (``bool [C]``, all right).

    A tree with ``k`` categorical splits writes ``cat_boundaries`` (``k + 1`` offsets into its
    words) and ``cat_threshold`` (its bitsets' ``uint32`` words, one after another).
    """
    n_cat = np.array(fields.get("num_cat", ["0"] * n_trees), dtype=np.int64)
    has = n_cat > 0
    total = int(n_cat.sum())
    if total == 0:
        return np.zeros((0, 1), dtype=np.uint32), np.zeros(0, dtype=bool)
    bounds = _lgb_column(fields, "cat_boundaries", np.int64, int((n_cat[has] + 1).sum()))
    last = np.cumsum(n_cat[has] + 1) - 1  # each categorical tree's last offset in `bounds`
    words = _lgb_column(fields, "cat_threshold", np.int64, int(bounds[last].sum()))
    word_start = np.concatenate([[0], np.cumsum(bounds[last])[:-1]])  # per categorical tree
    tree = np.repeat(np.arange(has.sum()), n_cat[has])  # [C]
    pos = np.arange(total) - np.repeat(np.cumsum(n_cat[has]) - n_cat[has], n_cat[has])
    at = last[tree] - n_cat[has][tree] + pos  # the split's first offset in `bounds`
    lo, size = bounds[at], bounds[at + 1] - bounds[at]
    width = max(int(size.max()), 1)
    idx = (word_start[tree] + lo)[:, None] + np.arange(width)
    inside = np.arange(width) < size[:, None]
    bits = np.where(inside, words[np.where(inside, idx, 0)], 0).astype(np.uint32)
    return bits, np.zeros(total, dtype=bool)


# ---------------------------------------------------------------------------- scikit-learn
def _sk_tree(tree: Any, scale: float, classifier: bool, n_outputs: int,
             column: int | None = None) -> dict[str, np.ndarray]:
    t = tree.tree_
    value = np.asarray(t.value, dtype=np.float64)  # [N, n_outputs, n_classes]
    if classifier:
        value = value[:, 0, :]
        value = value / value.sum(axis=1, keepdims=True)
    else:
        value = value[:, :, 0]
    value = value * scale
    if column is not None:  # one boosting tree feeding one output column
        full = np.zeros((value.shape[0], n_outputs))
        full[:, column] = value[:, 0]
        value = full
    n = t.node_count
    return {
        "feature": np.asarray(t.feature, dtype=np.int64),
        "threshold": np.asarray(t.threshold, dtype=np.float64),
        "left": np.asarray(t.children_left, dtype=np.int64),
        "right": np.asarray(t.children_right, dtype=np.int64),
        "value": value,
        "cover": np.asarray(t.weighted_n_node_samples, dtype=np.float64),
        # scikit-learn >= 1.3 routes NaN by `missing_go_to_left`; older trees have none.
        "default_left": np.asarray(getattr(t, "missing_go_to_left", np.zeros(n)), dtype=bool),
        "missing": np.full(n, _MISSING_NAN),
    }


def _parse_sklearn(model: Any) -> TreeEnsemble:
    from sklearn.base import is_classifier

    name = type(model).__name__
    classifier = bool(is_classifier(model))
    n_features = int(model.n_features_in_)
    meta = {"n_features": n_features, "float32_inputs": True, "source": f"sklearn.{name}"}
    if hasattr(model, "tree_"):
        n_out = len(model.classes_) if classifier else model.tree_.n_outputs
        if classifier and model.n_outputs_ > 1:
            raise ValueError("multi-output classification trees are not supported.")
        tree = _sk_tree(model, 1.0, classifier, n_out)
        return _concat([tree], n_out, base=np.zeros(n_out), **meta)
    if name.startswith(("RandomForest", "ExtraTrees")):
        est = model.estimators_
        if classifier and model.n_outputs_ > 1:
            raise ValueError("multi-output classification forests are not supported.")
        n_out = len(model.classes_) if classifier else model.n_outputs_
        trees = [_sk_tree(e, 1.0 / len(est), classifier, n_out) for e in est]
        return _concat(trees, n_out, base=np.zeros(n_out), **meta)
    if name.startswith("GradientBoosting"):
        stages = model.estimators_  # [n_stages, K]
        n_out = stages.shape[1]
        trees = [
            _sk_tree(stages[i, k], model.learning_rate, False, n_out, column=k)
            for i in range(stages.shape[0])
            for k in range(n_out)
        ]
        ens = _concat(trees, n_out, base=np.zeros(n_out), **meta)
        return _with_empirical_base(ens, model)
    if name.startswith("HistGradientBoosting"):
        return _parse_sklearn_hist(model, n_features)
    raise TypeError(_unsupported(model))


def _parse_sklearn_hist(model: Any, n_features: int) -> TreeEnsemble:
    # declared categorical features are ordinal-encoded and moved to the first columns before
    # the trees see them: the trees' features and categories are not the inputs'
    if getattr(model, "_preprocessor", None) is not None or any(
        p.nodes["is_categorical"].any() for it in model._predictors for p in it
    ):
        raise ValueError(
            "`model` has categorical features, which are not supported for scikit-learn's "
            "HistGradientBoosting (they are for LightGBM and XGBoost); train with "
            "categorical_features=None."
        )
    predictors = model._predictors  # list over iterations of lists over outputs
    n_out = len(predictors[0])
    trees = []
    for it in predictors:
        for k, pred in enumerate(it):
            nodes = pred.nodes
            leaf = nodes["is_leaf"].astype(bool)
            value = np.zeros((len(nodes), n_out))
            value[:, k] = nodes["value"]
            trees.append(
                {
                    "feature": np.asarray(nodes["feature_idx"], dtype=np.int64),
                    "threshold": np.asarray(nodes["num_threshold"], dtype=np.float64),
                    "left": np.where(leaf, -1, nodes["left"].astype(np.int64)),
                    "right": np.where(leaf, -1, nodes["right"].astype(np.int64)),
                    "value": value,
                    "cover": np.asarray(nodes["count"], dtype=np.float64),
                    "default_left": np.asarray(nodes["missing_go_to_left"], dtype=bool),
                    "missing": np.full(len(nodes), _MISSING_NAN),
                }
            )
    base = np.asarray(model._baseline_prediction, dtype=np.float64).reshape(-1)
    base = np.broadcast_to(base, (n_out,)).copy()
    return _concat(trees, n_out, base=base, n_features=n_features,
                   source=f"sklearn.{type(model).__name__}")


def _raw_output(model: Any, x: np.ndarray) -> np.ndarray:
    if hasattr(model, "decision_function"):
        out = model.decision_function(x)
    else:
        out = model.predict(x)
    return np.asarray(out, dtype=np.float64).reshape(x.shape[0], -1)


def _with_empirical_base(ens: TreeEnsemble, model: Any) -> TreeEnsemble:
    """Sets ``base`` to the model's raw output minus the trees' sum (the init estimator)."""
    x = np.zeros((1, ens.n_features))
    base = (_raw_output(model, x) - ens.predict(x))[0]
    return replace(ens, base=base)


# ---------------------------------------------------------------------------- XGBoost
def _parse_xgboost(booster: Any) -> TreeEnsemble:
    import xgboost

    cfg = json.loads(booster.save_raw("json"))
    learner = cfg["learner"]
    gb = learner["gradient_booster"]
    if gb["name"] != "gbtree":
        raise ValueError(f"only XGBoost 'gbtree' boosters are supported; got {gb['name']!r}.")
    model = gb["model"]
    info = model["tree_info"]
    n_out = max(int(learner["learner_model_param"].get("num_class", "0")), 1)
    n_out = max(n_out, max(info) + 1 if info else 1)
    trees = model["trees"]
    if not trees:
        raise ValueError("`model` has no trees; fit it first.")
    # every field of every tree in one list, then one array (a few hundred small arrays and
    # their concatenation cost more than the parse of the JSON itself)
    sizes = np.array([len(tree["left_children"]) for tree in trees], dtype=np.int64)

    def column(key: str, dtype: Any) -> np.ndarray:
        flat: list[Any] = []
        for tree in trees:
            flat.extend(tree[key])
        return np.asarray(flat, dtype=dtype)

    left = column("left_children", np.int64)
    cond = column("split_conditions", np.float64)
    leaf = left < 0
    value = np.zeros((len(left), n_out))
    value[np.arange(len(left)), np.repeat(np.asarray(info, dtype=np.int64), sizes)] = np.where(
        leaf, cond, 0.0)
    cat_nodes: list[np.ndarray] = []  # global ids of the categorical splits
    cat_sets: list[list[int]] = []  # the categories each sends right
    for offset, tree in zip(np.cumsum(sizes) - sizes, trees):
        if tree.get("categories_nodes"):
            flat = tree["categories"]
            starts, counts = tree["categories_segments"], tree["categories_sizes"]
            cat_nodes.append(np.asarray(tree["categories_nodes"], dtype=np.int64) + offset)
            cat_sets.extend(flat[int(a) : int(a) + int(b)] for a, b in zip(starts, counts))
    arrays = {
        "feature": column("split_indices", np.int64),
        "threshold": cond.astype(np.float32).astype(np.float64),
        "left": left,
        "right": column("right_children", np.int64),
        "value": value,
        "cover": column("sum_hessian", np.float64),
        "default_left": column("default_left", bool),
        "missing": np.full(len(left), _MISSING_NAN),
    }
    n_features = int(learner["learner_model_param"]["num_feature"])
    categories = _xgb_categories(cat_nodes, cat_sets, int(sizes.sum()))
    ens = _assemble(arrays, sizes, n_out, base=np.zeros(n_out), n_features=n_features,
                    strict=True, float32_inputs=True, source="xgboost", **categories)
    x = np.zeros((1, n_features), dtype=np.float32)
    if hasattr(booster, "inplace_predict"):  # no DMatrix: 0.47 -> 0.18 ms
        raw = booster.inplace_predict(x, predict_type="margin")
    else:
        raw = booster.predict(xgboost.DMatrix(x), output_margin=True)
    base = (np.asarray(raw, dtype=np.float64).reshape(1, -1) - ens.predict(x))[0]
    return replace(ens, base=base)


def _xgb_categories(nodes: list[np.ndarray], sets: list[list[int]], n_nodes: int) -> dict[str, Any]:
    """Category fields of :class:`TreeEnsemble` for XGBoost's categorical splits.

    XGBoost sends the listed categories right and every other value left (unlisted
    categories, negative values and categories past the bitset); NaN takes the default child.
    The stored bitset is therefore the complement of the listed set.
    """
    if not nodes:
        return {}
    width = max(max((max(c) for c in sets if c), default=0) // 32 + 1, 1)
    right = np.zeros((len(sets), 32 * width), dtype=bool)
    rows = np.repeat(np.arange(len(sets)), [len(c) for c in sets])
    right[rows, np.concatenate([np.asarray(c, dtype=np.int64) for c in sets])] = True
    weight = np.left_shift(np.uint64(1), np.arange(32, dtype=np.uint64))
    bits = (~right).reshape(len(sets), width, 32).astype(np.uint64) @ weight
    category = np.full(n_nodes, -1, dtype=np.int64)
    category[np.concatenate(nodes)] = np.arange(len(sets))
    return {"category": category, "category_bits": bits.astype(np.uint32),
            "category_other_left": np.ones(len(sets), dtype=bool)}


# ---------------------------------------------------------------------------- dispatch
def _unsupported(model: Any) -> str:
    return (
        "`model` must be a fitted LightGBM Booster/LGBMModel, a scikit-learn decision tree, "
        "random forest, extra trees, (hist) gradient boosting model, or an XGBoost "
        f"Booster/XGBModel; got {type(model).__module__}.{type(model).__name__}."
    )


def parse_tree_ensemble(model: Any) -> TreeEnsemble:
    """Reads a fitted tree ensemble into a :class:`TreeEnsemble`.

    Raises:
        TypeError: for an unsupported model type.
        ValueError: for unsupported tree features (linear trees, categorical splits of
            scikit-learn's HistGradientBoosting).
    """
    if isinstance(model, TreeEnsemble):
        return model
    module = type(model).__module__.split(".")[0]
    if module == "lightgbm":
        if hasattr(type(model), "booster_") and not getattr(model, "fitted_", False):
            raise ValueError(f"`model` ({type(model).__name__}) is not fitted; call fit first.")
        booster = getattr(model, "booster_", model)
        if not hasattr(booster, "model_to_string"):
            raise TypeError(_unsupported(model))
        return _parse_lightgbm(booster)
    if module == "sklearn":
        if not hasattr(model, "n_features_in_"):
            raise ValueError(f"`model` ({type(model).__name__}) is not fitted; call fit first.")
        return _parse_sklearn(model)
    if module == "xgboost":
        try:
            booster = model.get_booster() if hasattr(model, "get_booster") else model
        except Exception as err:  # xgboost's NotFittedError
            if "fit" not in str(err):
                raise
            raise ValueError(
                f"`model` ({type(model).__name__}) is not fitted; call fit first."
            ) from err
        return _parse_xgboost(booster)
    raise TypeError(_unsupported(model))
