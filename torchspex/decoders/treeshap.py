"""Exact Shapley values and pair / triple interactions of tree ensembles, batched over rows.

A leaf of a tree, as a function of the set ``S`` of kept features, is its value times a product
over the *distinct* features ``j`` on its root-to-leaf path (splits on one feature merged by
multiplying their factors):

.. math:: w(S) = \\prod_j \\big(o_j\\,[j \\in S] + z_j\\,[j \\notin S]\\big),

where ``o_j in {0, 1}`` says whether the explained row follows every edge on ``j`` and ``z_j``
is the weight the removal rule gives those edges: the product of their cover shares
(path-dependent masking, as TreeSHAP) or whether a baseline row follows them (interventional
masking, averaged over the background rows). The Shapley value and the Shapley interaction
index (SII) of a pair of such a product game are

.. math:: \\phi_i = (o_i - z_i) \\int_0^1 \\prod_{j \\ne i} \\big(z_j (1 - t) + o_j t\\big)\\,dt ,
    \\qquad
    I_{ik} = (o_i - z_i)(o_k - z_k) \\int_0^1 \\prod_{j \\ne i, k} (z_j (1 - t) + o_j t)\\,dt ,

since ``int_0^1 t^s (1 - t)^(d-1-s) dt = s! (d-1-s)! / d!`` are the Shapley weights (and one
degree lower the SII weights); the integrands have degree at most ``d - 1``, so Gauss-Legendre
quadrature with ``ceil(d / 2)`` nodes is exact. For 0/1 weights (interventional masking) the
same integrals are closed-form Beta values. A row enters a leaf's values only through its
*decision pattern*: the ``d`` bits ``o_j``, read for all rows at once top-down through every
tree (a few integer operations per node and row). Leaves with few path features get a table
of their values for all ``2^d`` patterns, built once and shared by every row (one gather per
row and leaf); deep leaves get one where the rows' distinct patterns there pay for it (built
at first use), else their values are computed once per distinct pattern of the leaf among the
rows' routing classes. Interventional tables come from
each leaf's histogram of background patterns by a superset-sum transform, so the per-row cost
does not grow with the background. k-SII of order 2 follows from the Shapley values and SII:
``k-SII_i = phi_i - sum_k I_ik / 2``, ``k-SII_ik = I_ik``. The SII of a triple is the same
integral with three factors divided out, ``prod_{j in T} (o_j - z_j) int_0^1 prod_{j not in T}
(...) dt``, and k-SII of order 3 adds the Bernoulli terms of the triples (``-I_ijl / 2`` to each
pair, ``+I_ijl / 6`` to each member).

References:
    Lundberg et al., "From local explanations to global understanding with explainable AI for
    trees" (Nature Machine Intelligence 2020): TreeSHAP, path-dependent and interventional.
    Yu et al., "Linear TreeShap" (NeurIPS 2022): the leaf polynomial along the path.
    Yang, "Fast TreeSHAP" (2021), and Woodelf (the ``woodelf-explainer`` package, 2025-26):
    per-leaf tables over decision patterns. Quadrature-TreeSHAP (shapiq >= 1.7, 2026): the
    Shapley weights as Beta integrals, evaluated by Gauss-Legendre quadrature.
    Grabisch and Roubens (1999): the Shapley interaction index; Bordt and von Luxburg (2023):
    k-SII.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
from torch import Tensor

from torchspex.decoders._tree_parsers import (
    _MISSING_ZERO,
    RoutingColumns,
    TreeEnsemble,
    parse_tree_ensemble,
)
from torchspex.fourier._sets import unique_rows

__all__ = ["TreePaths", "decision_patterns", "tree_paths", "tree_shapley_values"]

#: Distinct features on one root-to-leaf path a decision pattern (an int64 bitmask) can hold.
MAX_PATH_FEATURES = 62
#: Elements of one working tensor (bounds memory: rows are processed in chunks).
_CHUNK = 1 << 22
#: Pattern-table entries kept at once (shared by all rows); larger leaves go row by row.
_TABLE_BUDGET = 1 << 24
#: Internal nodes a tree may have for its rows to be grouped by one int64 routing key (bits 0
#: to 62); the rows of larger trees are taken one by one.
_KEY_BITS = 63


@dataclass(frozen=True, eq=False)
class TreePaths:
    """The root-to-leaf paths of an ensemble, with repeated features merged (row independent).

    Attributes:
        router: the ensemble restricted to its ``V`` internal nodes (its ``goes_left`` routes
            rows at the splits only).
        levels: top-down, two entries per tree depth (splits on a feature new on the path,
            then splits on a repeated one): ``(new, parent, split, left, right, slot)``,
            ``new`` a bool, the rest ``int64 [E]``: node ids of the parents and their children,
            ``split`` the parent's position among the internal nodes, ``slot`` the position of
            the parent's split feature among the distinct features of the path (its bit in the
            decision pattern).
        leaf: ``int64 [L]`` node ids of the leaves with at least one path feature and a
            non-zero value, ordered by ``n_slots``.
        n_slots: ``int64 [L]`` distinct features ``d`` on each leaf's path.
        feature: ``int64 [L, D]`` the feature in each slot (``-1`` padding).
        zero_fraction: ``float64 [L, D]`` the product of the cover shares of the edges on each
            slot's feature (``1`` padding): the path-dependent weight of removing it.
        value: ``float64 [L, O]`` leaf values.
        sibling: ``int64 [L]`` for a left leaf whose sibling is a leaf with the same path
            features (the parent's feature new on the path), the sibling's position; ``-1``
            elsewhere. Their pattern tables merge into one (one gather per row for both).
        expected: ``float64 [O]`` the path-dependent value with every feature removed (the
            cover-weighted mean of the leaves plus the ensemble's ``base``).
        leaf_tree: ``int64 [L]`` the tree of each leaf.
        mask, need: ``int64 [L, D]`` a tree's *routing key* of a row has bit ``b`` set iff the
            row goes left at the tree's ``b``-th internal node; the row follows every edge on
            slot ``j``'s feature iff ``key & mask[j] == need[j]`` (for trees of at most 63
            internal nodes, else 0).
        split_tree: ``int64 [V]`` the tree of each internal node; ``split_bit``: ``int64 [V]``
            its bit in the tree's routing key.
        tree_splits: ``int64 [T]`` internal nodes of each tree.
        n_nodes: nodes ``N`` of the ensemble.
        n_features: input features ``n``.
    """

    router: TreeEnsemble
    levels: list[tuple[bool, Tensor, Tensor, Tensor, Tensor, Tensor]]
    leaf: Tensor
    n_slots: Tensor
    feature: Tensor
    zero_fraction: Tensor
    value: Tensor
    sibling: Tensor
    expected: Tensor
    leaf_tree: Tensor
    mask: Tensor
    need: Tensor
    split_tree: Tensor
    split_bit: Tensor
    tree_splits: Tensor
    n_nodes: int
    n_features: int

    @property
    def n_outputs(self) -> int:
        """Model outputs ``O``."""
        return int(self.value.shape[1])

    @property
    def n_trees(self) -> int:
        """Trees ``T``."""
        return int(self.tree_splits.numel())

    @property
    def pattern_dtype(self) -> torch.dtype:
        """The narrowest integer type that holds every decision pattern."""
        width = int(self.n_slots.max()) if self.n_slots.numel() else 0
        return torch.int32 if width <= 30 else torch.int64


def _router(ens: TreeEnsemble, internal: np.ndarray) -> TreeEnsemble:
    """``ens`` restricted to the nodes ``internal`` (children ids are meaningless there)."""
    sub = {"feature", "threshold", "left", "right", "value", "cover", "default_left", "missing",
           "category"}
    fields = {f.name: getattr(ens, f.name) for f in dataclasses.fields(ens)}
    fields = {k: (v[internal] if k in sub else v) for k, v in fields.items()}
    fields["left"] = np.zeros(len(internal), dtype=np.int64)  # all internal: never a leaf
    fields["right"] = fields["left"]
    return TreeEnsemble(**fields)


def tree_paths(ensemble: TreeEnsemble) -> TreePaths:
    """Walks every tree top-down once and records its leaves' merged paths.

    Raises:
        ValueError: if a path has more than 62 distinct features.
    """
    ens = ensemble
    n_nodes = len(ens.feature)
    internal = ens.left >= 0
    split_pos = np.cumsum(internal) - 1
    lc, rc = np.where(internal, ens.left, 0), np.where(internal, ens.right, 0)
    total = ens.cover[lc] + ens.cover[rc]
    share = np.divide(ens.cover[lc], total, out=np.full(n_nodes, 0.5), where=total > 0)
    n_trees = len(ens.roots)
    nodes = ens.roots.astype(np.int64)
    tree = np.arange(n_trees, dtype=np.int64)
    node_tree = np.zeros(n_nodes, dtype=np.int64)
    feats = np.full((len(nodes), 1), -1, dtype=np.int64)  # features in slot order
    zeros = np.ones((len(nodes), 1))
    masks = np.zeros((len(nodes), 1), dtype=np.int64)
    needs = np.zeros((len(nodes), 1), dtype=np.int64)
    count = np.zeros(len(nodes), dtype=np.int64)
    levels = []
    leaf_parts: list[tuple[np.ndarray, ...]] = []
    both = np.concatenate
    while len(nodes):
        node_tree[nodes] = tree
        is_int = internal[nodes]
        done = ~is_int
        if done.any():
            leaf_parts.append((nodes[done], count[done], feats[done], zeros[done], tree[done],
                               masks[done], needs[done]))  # fmt: skip
        nodes, feats, zeros, count = nodes[is_int], feats[is_int], zeros[is_int], count[is_int]
        tree, masks, needs = tree[is_int], masks[is_int], needs[is_int]
        if not len(nodes):
            break
        f = ens.feature[nodes]
        hit = feats == f[:, None]
        seen = hit.any(axis=1)
        slot = np.where(seen, hit.argmax(axis=1), count)
        if int(slot.max()) >= MAX_PATH_FEATURES:
            raise ValueError(
                f"a root-to-leaf path splits on more than {MAX_PATH_FEATURES} distinct features, "
                "which the exact Shapley route does not support; limit the tree depth."
            )
        count = count + ~seen
        if int(count.max()) > feats.shape[1]:
            width = feats.shape[1] + 1
            feats, zeros = _widen(feats, width, -1), _widen(zeros, width, 1.0)
            masks, needs = _widen(masks, width, 0), _widen(needs, width, 0)
        rows = np.arange(len(nodes))
        feats = feats.copy()
        feats[rows, slot] = f
        left_zeros, right_zeros = zeros.copy(), zeros.copy()
        left_zeros[rows, slot] *= share[nodes]
        right_zeros[rows, slot] *= 1.0 - share[nodes]
        # the node's bit in its tree's routing key (set where the row goes left)
        local = split_pos[nodes] - split_pos[ens.roots[tree]]
        bit = np.where(local < _KEY_BITS, np.left_shift(1, np.minimum(local, _KEY_BITS - 1)), 0)
        masks = masks.copy()
        masks[rows, slot] |= bit
        left_needs, right_needs = needs.copy(), needs
        left_needs[rows, slot] |= bit
        for new in (True, False):
            sel = seen != new
            if sel.any():
                v = nodes[sel]
                levels.append((new, *(torch.from_numpy(a) for a in (
                    v, split_pos[v], ens.left[v], ens.right[v], slot[sel]))))  # fmt: skip
        nodes = both([ens.left[nodes], ens.right[nodes]])
        feats = both([feats, feats])
        zeros = both([left_zeros, right_zeros])
        count = both([count, count])
        tree = both([tree, tree])
        masks = both([masks, masks])
        needs = both([left_needs, right_needs])

    def stack(k: int, fill: float | int) -> np.ndarray:
        width = max(p[k].shape[1] for p in leaf_parts)
        return both([_widen(p[k], width, fill) for p in leaf_parts])

    leaf = both([p[0] for p in leaf_parts])
    n_slots = both([p[1] for p in leaf_parts])
    feature, zero, mask, need = stack(2, -1), stack(3, 1.0), stack(5, 0), stack(6, 0)
    leaf_tree = both([p[4] for p in leaf_parts])
    value = ens.value[leaf]
    expected = (value * zero.prod(axis=1, keepdims=True)).sum(axis=0) + ens.base
    keep = np.nonzero((n_slots > 0) & (value != 0).any(axis=1))[0]
    keep = keep[np.argsort(n_slots[keep], kind="stable")]  # groups of equal d are contiguous
    width = int(n_slots[keep].max(initial=0))
    split_ids = np.nonzero(internal)[0]
    split_tree = node_tree[split_ids]
    tree_splits = np.bincount(split_tree, minlength=n_trees)
    first = np.concatenate([[0], np.cumsum(tree_splits)[:-1]])
    order = np.argsort(split_tree, kind="stable")  # nodes of one tree in id order
    split_bit = np.empty_like(split_tree)
    split_bit[order] = np.arange(len(split_ids)) - first[split_tree[order]]
    assert (split_bit == split_pos[split_ids] - split_pos[ens.roots[split_tree]]).all()

    def cut(a: np.ndarray) -> Tensor:
        return torch.from_numpy(np.ascontiguousarray(a[keep, :width]))

    return TreePaths(
        router=_router(ens, split_ids),
        levels=levels,  # type: ignore[arg-type]
        leaf=torch.from_numpy(leaf[keep]),
        n_slots=torch.from_numpy(n_slots[keep]),
        feature=cut(feature),
        zero_fraction=cut(zero),
        value=torch.from_numpy(np.ascontiguousarray(value[keep])),
        sibling=torch.from_numpy(_siblings(ens, leaf[keep], levels)),
        expected=torch.from_numpy(np.asarray(expected, dtype=np.float64)),
        leaf_tree=torch.from_numpy(leaf_tree[keep]),
        mask=cut(mask),
        need=cut(need),
        split_tree=torch.from_numpy(split_tree),
        split_bit=torch.from_numpy(split_bit),
        tree_splits=torch.from_numpy(tree_splits),
        n_nodes=n_nodes,
        n_features=ens.n_features,
    )


def _widen(a: np.ndarray, width: int, fill: float | int) -> np.ndarray:
    """``a [r, w]`` padded on the right with ``fill`` to ``[r, width]`` (``np.pad`` costs
    about 40 us of Python a call; ``tree_paths`` makes a hundred)."""
    if a.shape[1] == width:
        return a
    out = np.full((a.shape[0], width), fill, dtype=a.dtype)
    out[:, : a.shape[1]] = a
    return out


def _siblings(ens: TreeEnsemble, leaf: np.ndarray, levels: list) -> np.ndarray:
    """For each leaf, the position in ``leaf`` of its right sibling where the two can share one
    pattern table (both are leaves, the left one here, and their parent's split feature is new
    on the path: their patterns differ exactly in that last bit), else ``-1``."""
    n_nodes = len(ens.feature)
    new = np.zeros(n_nodes, dtype=bool)
    parent = np.full(n_nodes, -1, dtype=np.int64)
    for is_new, par, _, left, right, _ in levels:
        for child in (left.numpy(), right.numpy()):
            new[child] = is_new
            parent[child] = par.numpy()
    pos = np.full(n_nodes, -1, dtype=np.int64)
    pos[leaf] = np.arange(len(leaf))
    par = parent[leaf]
    is_left = (par >= 0) & (ens.left[np.maximum(par, 0)] == leaf)
    right = np.where(is_left, ens.right[np.maximum(par, 0)], 0)
    return np.where(is_left & new[leaf] & (pos[right] >= 0), pos[right], -1)


def decision_patterns(paths: TreePaths, x: np.ndarray | RoutingColumns) -> Tensor:
    """Each row's decision pattern at every node: ``int32 / int64 [N, R]``.

    Bit ``j`` of node ``u``'s pattern is set iff the row ``x [R, n]`` follows every edge above
    ``u`` that splits on the path's ``j``-th distinct feature (the trainer's routing, missing
    values included).
    """
    goes_left = torch.from_numpy(np.ascontiguousarray(paths.router.goes_left(x)))  # [V, R]
    dtype = paths.pattern_dtype
    pat = torch.zeros(paths.n_nodes, goes_left.shape[1], dtype=dtype)
    for new, parent, split, left, right, slot in paths.levels:
        above = pat[parent]
        one = (1 << slot.to(dtype))[:, None]
        bit = goes_left[split].to(dtype) << slot.to(dtype)[:, None]  # set where it goes left
        if new:  # the new bit says which way the row went
            pat[left] = above | bit
            pat[right] = above | (bit ^ one)
        else:  # the feature's bit stays set only where the row follows this edge too
            pat[left] = above & (bit | ~one)
            pat[right] = above & ~bit
    return pat


# ---------------------------------------------------------------------------- leaf values
# Every function below returns, for leaves with d path features, their value-free Shapley
# values and (order 2) Shapley interaction indices: ``[L, M, d]`` or ``[L, M, d + d(d-1)/2]``
# (pairs ``(j, k)``, ``j < k``, in the order of :func:`_pairs`), for M patterns or rows; order
# 3 appends the triples of :func:`_triples` (``_width`` values in all). The interventional
# tables over all patterns are slot-major, ``[L, width, 2^d]``.
@lru_cache(maxsize=128)
def _quadrature(d: int) -> tuple[Tensor, Tensor]:
    """Gauss-Legendre nodes and weights on ``[0, 1]`` exact for degree ``d - 1`` (cached: not
    to be modified)."""
    t, w = np.polynomial.legendre.leggauss(max(1, -(-d // 2)))
    return torch.from_numpy((t + 1) / 2), torch.from_numpy(w / 2)


def _pairs(d: int) -> tuple[Tensor, Tensor]:
    """Slot pairs ``(j, k)``, ``j < k``, row by row: two ``int64 [d (d - 1) / 2]``."""
    j, k = torch.triu_indices(d, d, offset=1)
    return j, k


@lru_cache(maxsize=64)
def _triples(d: int) -> tuple[Tensor, Tensor, Tensor]:
    """Slot triples ``(i, j, l)``, ``i < j < l``, in lexicographic order: three ``int64
    [d (d - 1) (d - 2) / 6]`` (cached: not to be modified)."""
    if d < 3:
        empty = torch.zeros(0, dtype=torch.int64)
        return empty, empty, empty
    t = torch.combinations(torch.arange(d), 3)
    return t[:, 0], t[:, 1], t[:, 2]


def _pair_position(d: int, j: Tensor, k: Tensor) -> Tensor:
    """The position of slot pair ``(j, k)``, ``j < k``, in :func:`_pairs` ``(d)``."""
    return j * (2 * d - j - 1) // 2 + (k - j - 1)


def _width(d: int, order: int) -> int:
    """Values per leaf and pattern: ``d`` Shapley values, then ``d (d-1) / 2`` pair indices
    (order >= 2), then ``d (d-1) (d-2) / 6`` triple indices (order 3)."""
    width = d
    if order >= 2:
        width += d * (d - 1) // 2
    if order >= 3:
        width += d * (d - 1) * (d - 2) // 6
    return width


def _bits(keys: Tensor, d: int) -> Tensor:
    """``float64 [..., d]``: bit ``j`` of each pattern."""
    return ((keys[..., None] >> torch.arange(d)) & 1).double()


def _path_dependent_values(z: Tensor, bits: Tensor, g: Tensor, t: Tensor, order: int) -> Tensor:
    """Shapley values (and pair indices) of the leaf games from the quadrature products.

    ``z [L, d]`` zero fractions, ``bits [L or 1, M, d]`` the patterns' ``o_j``, ``g [L, M, Q]``
    the quadrature weights times ``prod_j (z_j (1 - t) + o_j t)``. Dividing that product by
    feature ``j``'s own factor and multiplying by ``o_j - z_j`` gives ``r_j = -1 / (1 - t)``
    where ``o_j = 0`` and ``(1 - z_j) / (z_j (1 - t) + t)`` where ``o_j = 1``; the Shapley value
    is ``sum_q g r_j`` and the Shapley interaction index of a pair ``sum_q g r_j r_k`` (its
    weights ``s! (d-2-s)! / (d-1)!`` are the same Beta integrals, one degree lower).
    """
    c = -1.0 / (1.0 - t)  # [Q]
    gap = (1.0 - z)[..., None] / (z[..., None] * (1.0 - t) + t) - c  # [L, d, Q]
    sv = (g @ c)[..., None] + bits * (g @ gap.transpose(1, 2))
    if order == 1:
        return sv
    # sum_q g (c + o_j gap_j)(c + o_k gap_k): the products not involving the pattern's bits
    # are batched matrix products over the patterns; picking slots j and k for every pair is
    # a product with the pairs' 0/1 incidence matrix (a gather along the last dimension is
    # several times slower), and o_j o_k = max(o_j + o_k - 1, 0) for bits
    d = z.shape[1]
    j, k = _pairs(d)
    pairs = _incidence(d, 2)  # [d, P]
    cross = bits * ((g * c) @ gap.transpose(1, 2))  # [L, M, d]: o_j sum_q g c gap_j
    both = (bits @ pairs - 1.0).clamp_(min=0.0)  # [L or 1, M, P]: o_j o_k
    sii = g @ (gap[:, j] * gap[:, k]).transpose(1, 2)  # [L, M, P]
    sii *= both
    sii += cross @ pairs
    sii += (g @ (c * c))[..., None]
    if order == 2:
        return torch.cat([sv, sii], dim=2)
    # triples: sum_q g (c + o_i gap_i)(c + o_j gap_j)(c + o_l gap_l), expanded the same way
    # (one degree lower again: the integrand has degree d - 3); per pair (j, k): o_j o_k sum_q
    # g c gap_j gap_k plus half of each member's term and a third of the constant, so that a
    # triple's value is the sum over its three pairs plus the term of all three
    i3, j3, l3 = _triples(d)
    one = bits * ((g * (c * c)) @ gap.transpose(1, 2))  # [L, M, d]
    two = (g * c) @ (gap[:, j] * gap[:, k]).transpose(1, 2)
    two *= both
    two += (one @ pairs) / 2
    two += (g @ (c * c * c))[..., None] / 3
    sii3 = g @ (gap[:, i3] * gap[:, j3] * gap[:, l3]).transpose(1, 2)  # [L, M, T]
    sii3 *= (bits @ _incidence(d, 3) - 2.0).clamp_(min=0.0)  # o_i o_j o_l
    sii3 += two @ _triple_pairs(d)
    return torch.cat([sv, sii, sii3], dim=2)


@lru_cache(maxsize=64)
def _incidence(d: int, size: int) -> Tensor:
    """``float64 [d, C(d, size)]``: 1 where slot ``j`` is in the pair (``size=2``, in the
    order of :func:`_pairs`) or triple (``size=3``, :func:`_triples`) (cached)."""
    sets = torch.stack(_pairs(d)) if size == 2 else torch.stack(_triples(d))
    out = torch.zeros(d, sets.shape[1], dtype=torch.float64)
    for row in sets:
        out[row, torch.arange(sets.shape[1])] = 1.0
    return out


@lru_cache(maxsize=64)
def _triple_pairs(d: int) -> Tensor:
    """``float64 [P, T]``: 1 where the pair (:func:`_pairs`) lies in the triple
    (:func:`_triples`), three per triple (cached)."""
    i3, j3, l3 = _triples(d)
    out = torch.zeros(d * (d - 1) // 2, i3.numel(), dtype=torch.float64)
    cols = torch.arange(i3.numel())
    for a, b in ((i3, j3), (i3, l3), (j3, l3)):
        out[_pair_position(d, a, b), cols] = 1.0
    return out


def _path_dependent_table(z: Tensor, order: int) -> Tensor:
    """Values for all ``2^d`` patterns: ``[L, 2^d, width]``."""
    n_leaves, d = z.shape
    t, w = _quadrature(d)
    g = w.expand(n_leaves, 1, -1)
    off = z[..., None] * (1.0 - t)  # [L, d, Q] factor where the row leaves the path
    for j in range(d):  # pattern p holds o_j = bit j of p
        g = torch.cat([g * off[:, j : j + 1], g * (off[:, j : j + 1] + t)], dim=1)
    return _path_dependent_values(z, _bits(torch.arange(1 << d), d)[None], g, t, order)


def _path_dependent_rows(z: Tensor, keys: Tensor, order: int) -> Tensor:
    """Values for rows with patterns ``keys [L, R]``: ``[L, R, width]``."""
    d = z.shape[1]
    t, w = _quadrature(d)
    bits = _bits(keys, d)  # [L, R, d]
    # prod_j (z_j (1 - t) + o_j t) = exp(sum_j log off_j + bits @ (log on_j - log off_j)): one
    # batched matrix product; a zero cover share (off = 0) is kept apart as a count of the
    # row's zero factors, so that no infinity enters
    off = z[..., None] * (1.0 - t)  # [L, d, Q]
    on = off + t
    zero = off == 0
    log_off = torch.where(zero, 0.0, off.clamp(min=1e-300).log())
    g = torch.exp(log_off.sum(dim=1)[:, None] + bits @ (on.log() - log_off))  # [L, R, Q]
    if bool(zero.any()):
        g = g * ((1.0 - bits) @ zero.double() == 0)  # a row leaving a zero-share edge
    return _path_dependent_values(z, bits, g * w, t, order)


@lru_cache(maxsize=32)
def _popcount_table(d: int) -> Tensor:
    return _popcount(torch.arange(1 << d))


def _count_bits(x: Tensor, d: int) -> Tensor:
    """Set bits of patterns ``x < 2^d`` (a table lookup for small ``d``)."""
    return _popcount_table(d)[x] if d <= 16 else _popcount(x)


def _popcount(x: Tensor) -> Tensor:
    """Set bits of non-negative ``int64`` values."""
    x = x - ((x >> 1) & 0x5555555555555555)
    x = (x & 0x3333333333333333) + ((x >> 2) & 0x3333333333333333)
    x = (x + (x >> 4)) & 0x0F0F0F0F0F0F0F0F
    x = x + (x >> 8)
    x = x + (x >> 16)
    x = x + (x >> 32)
    return x & 0x7F


def _gamma(a: int, b: int) -> float:
    """``a! b! / (a + b + 1)!``, the Beta integral ``int_0^1 t^a (1 - t)^b dt``."""
    return 1.0 / ((a + b + 1) * math.comb(a + b, a))


def _count_bits32(x: Tensor, d: int) -> Tensor:
    """:func:`_count_bits` of ``int64`` patterns, in ``int32``."""
    return _popcount_table32(d).take(x) if d <= 16 else _popcount(x).int()


@lru_cache(maxsize=32)
def _popcount_table32(d: int) -> Tensor:
    return _popcount_table(d).int()


@lru_cache(maxsize=128)
def _flat_weights(d: int, order: int) -> dict[str, Tensor]:
    """:func:`_weights` flattened (``[a (d + 1) + b]``) with a 0 appended at ``(d + 1)^2``."""
    zero = torch.zeros(1, dtype=torch.float64)
    return {name: torch.cat([w.reshape(-1), zero]) for name, w in _weights(d, order).items()}


@lru_cache(maxsize=128)
def _weights(d: int, order: int) -> dict[str, Tensor]:
    """Values of the 0/1 game ``[A subset of S, S disjoint from B]`` by ``(|A|, |B|) = (a, b)``.

    ``"in"``: the Shapley value of each member of ``A``, ``(a-1)! b! / (a+b)!``; ``"out"``: of
    each member of ``B``, ``-a! (b-1)! / (a+b)!``; order 2 adds the Shapley interaction index of
    two members of ``A`` (``"in_in"``, ``(a-2)! b! / (a+b-1)!``), one of each (``"in_out"``,
    ``-(a-1)! (b-1)! / (a+b-1)!``) and two of ``B`` (``"out_out"``, ``a! (b-2)! / (a+b-1)!``).
    Order 3 adds the index of three members, ``k`` of them in ``A`` (``"in3"``, ``"in2"``,
    ``"in1"``, ``"in0"``): ``(-1)^(3-k) (a-k)! (b-3+k)! / (a+b-2)!``. In general a set ``T``
    inside ``A`` and ``B`` has the index ``(-1)^|T & B| |A - T|! |B - T|! / (|A - T| + |B - T|
    + 1)!``. ``float64 [d + 1, d + 1]`` each, 0 where undefined (cached: not to be modified).
    """
    names = {"in": (1, 0), "out": (0, 1)}
    if order >= 2:
        names.update(in_in=(2, 0), in_out=(1, 1), out_out=(0, 2))
    if order >= 3:
        names.update(in3=(3, 0), in2=(2, 1), in1=(1, 2), in0=(0, 3))
    out = {name: torch.zeros(d + 1, d + 1, dtype=torch.float64) for name in names}
    for name, (k_in, k_out) in names.items():
        for a in range(k_in, d + 1):
            for b in range(k_out, d + 1 - a):
                out[name][a, b] = (-1) ** k_out * _gamma(a - k_in, b - k_out)
    return out


def _interventional_table(bkeys: Tensor, d: int, order: int) -> Tensor:
    """Values for all ``2^d`` patterns from background patterns ``bkeys [L, M]``, slot-major:
    ``[L, width, 2^d]``.

    Background pattern ``b`` and explained pattern ``p`` give the 0/1 game with ``A = p - b``
    and ``B`` the complement of ``p`` when ``b`` covers that complement (else the zero game).
    ``count[p, a]``, the background rows covering ``~p`` with ``a`` zero bits (so ``|A| = a``),
    is a superset-sum transform of each leaf's background histogram split by zero bits. A
    feature ``j in p`` must be in ``A``, i.e. not in ``b``: those rows number
    ``count[p, a] - count[p - j, a]`` (two features: inclusion-exclusion over four counts).
    """
    n_leaves, m = bkeys.shape
    size = 1 << d
    zeros = d - _count_bits(bkeys, d)
    hist = torch.zeros(n_leaves, d + 1, size, dtype=torch.float64)
    flat = (torch.arange(n_leaves)[:, None] * (d + 1) + zeros) * size + bkeys
    ones = torch.full((flat.numel(),), 1.0 / m, dtype=torch.float64)
    hist.view(-1).index_add_(0, flat.reshape(-1), ones)
    for j in range(d):  # superset sums: entry c collects every b containing c
        view = hist.view(n_leaves, d + 1, size >> (j + 1), 2, 1 << j)
        view[:, :, :, 0] += view[:, :, :, 1]
    p = torch.arange(size)
    count = hist.flip(2)  # [L, a, 2^d]: count[:, a, p] = hist[:, a, full ^ p]
    n_out = d - _count_bits(p, d)  # |B|
    w = _weights(d, order)
    totals: dict[tuple[str, int], Tensor] = {}  # order 3 asks for some several times

    def total(name: str, shift: int) -> Tensor:
        """``[L, 2^d]``: ``sum_a count[a, p] w[a, |B(p)| - shift]`` (0 where negative), one
        contiguous multiply-add per ``a`` (against a product over the ``[L, 2^d, a]`` gathered
        transpose and a sum: 9.4 -> 3.3 ms for 8 leaves of 13 slots, 2.4 -> 0.9 ms for 40 of
        10; equal to 1e-16)."""
        if (name, shift) in totals:
            return totals[name, shift]
        col = n_out - shift
        wt = w[name][:, col.clamp(min=0)] * (col >= 0)  # [a, 2^d]
        out = torch.zeros(n_leaves, size, dtype=torch.float64)
        for a in range(d + 1):
            out.addcmul_(count[:, a], wt[a])
        totals[name, shift] = out
        return out

    bits = _bits(p, d).bool()  # [2^d, d]
    flip = 1 << torch.arange(d)
    # the values are built slot-major ([L, d or P, 2^d]): a pattern with a bit flipped is a
    # flip of a reshaped view (no gather), and a pair's row is a block of contiguous entries
    bits_t = bits.T  # [d, 2^d]
    sv = torch.where(bits_t, total("in", 0)[:, None] - _flipped(total("in", 1), d),
                     total("out", 0)[:, None])  # fmt: skip
    if order == 1:
        return sv
    one, two = _pairs(d)
    bj, bk = bits_t[one], bits_t[two]  # [P, 2^d]
    in_in1 = _flipped(total("in_in", 1), d)  # [L, d, 2^d]
    in_in = (total("in_in", 0)[:, None] - in_in1.index_select(1, one)
             - in_in1.index_select(1, two) + _flipped_pairs(total("in_in", 2), d))  # fmt: skip
    io1 = _flipped(total("in_out", 1), d)
    in_out = total("in_out", 0)[:, None] - torch.where(bj, io1.index_select(1, one),
                                                       io1.index_select(1, two))  # fmt: skip
    out_out = total("out_out", 0)[:, None].expand(-1, one.numel(), -1)
    sii = torch.where(bj & bk, in_in, torch.where(bj | bk, in_out, out_out))
    if order == 2:
        return torch.cat([sv, sii], dim=1)
    # a triple T with k = |T & p| members in p: inclusion-exclusion over the subsets U of
    # those members, sum_U (-1)^|U| total(k, |U|)[p - U]; the k of each (pattern, triple)
    # picks its row of the stacked totals
    i3, j3, l3 = _triples(d)
    members = torch.stack([bits[:, i3], bits[:, j3], bits[:, l3]])  # [3, 2^d, T]
    k = members.sum(dim=0)  # [2^d, T]
    flips = torch.stack([flip[i3], flip[j3], flip[l3]])  # [3, T]
    names = ("in0", "in1", "in2", "in3")
    sii3 = torch.zeros(n_leaves, size, i3.numel(), dtype=torch.float64)
    for u in range(8):
        chosen = [m for m in range(3) if u >> m & 1]
        inside = torch.ones_like(k, dtype=torch.bool)
        q = p[:, None].expand_as(k)
        for m in chosen:
            inside = inside & members[m]
            q = q ^ flips[m]
        shift = len(chosen)
        stacked = torch.stack([total(name, shift) if kk >= shift else torch.zeros(n_leaves, size,
                               dtype=torch.float64) for kk, name in enumerate(names)], dim=1)
        term = stacked.reshape(n_leaves, 4 * size)[:, (k * size + q).reshape(-1)]
        term = term.view(n_leaves, size, -1) * inside
        if shift % 2:
            sii3 -= term
        else:
            sii3 += term
    return torch.cat([sv, sii, sii3.transpose(1, 2)], dim=1)


def _flipped(t: Tensor, d: int) -> Tensor:
    """``[L, d, 2^d]``: entry ``[:, j, p]`` is ``t[:, p ^ 2^j]`` for ``t [L, 2^d]``."""
    n = t.shape[0]
    out = torch.empty(n, d, 1 << d, dtype=t.dtype)
    for j in range(d):
        shape = (n, 1 << (d - 1 - j), 2, 1 << j)
        out[:, j].view(shape).copy_(t.view(shape).flip(2))
    return out


def _flipped_pairs(t: Tensor, d: int) -> Tensor:
    """``[L, P, 2^d]``: entry ``[:, pair (j, k), p]`` is ``t[:, p ^ 2^j ^ 2^k]`` (pairs in the
    order of :func:`_pairs`)."""
    n = t.shape[0]
    once = _flipped(t, d)
    out = torch.empty(n, d * (d - 1) // 2, 1 << d, dtype=t.dtype)
    for k in range(1, d):  # the pairs (j, k), j < k: flip bit k of the rows flipped at j
        shape = (n, k, 1 << (d - 1 - k), 2, 1 << k)
        at = _pair_position(d, torch.arange(k), torch.full((k,), k))
        out.index_copy_(1, at, once[:, :k].reshape(shape).flip(3).reshape(n, k, -1))
    return out


def _distinct(keys: Tensor, fill: int) -> tuple[Tensor, Tensor]:
    """Each row's distinct values of ``keys [L, R]``, in increasing order and padded with
    ``fill``: ``(distinct [L, V], at [L, R])``, ``V`` the most distinct values of a row and
    ``keys == distinct.gather(1, at)``."""
    n_leaves, m = keys.shape
    ordered, order = _sort_rows(keys)
    new = torch.ones_like(ordered, dtype=torch.bool)
    new[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
    rank = new.cumsum(dim=1) - 1  # [L, R]: each sorted entry's place among the distinct ones
    width = int(rank[:, -1].max()) + 1 if m and n_leaves else 0
    distinct = torch.full((n_leaves, width), fill, dtype=keys.dtype)
    distinct.scatter_(1, rank, ordered)
    at = torch.empty_like(rank)
    at.scatter_(1, order, rank)
    return distinct, at


def _distinct_patterns(keys: Tensor, d: int, fill: int = 0) -> tuple[Tensor, Tensor]:
    """:func:`_distinct` of patterns ``keys [L, R]`` below ``2^d``: through a ``[L, 2^d]``
    map of the patterns seen where that is smaller than a sort's work (the same result)."""
    n_leaves, m = keys.shape
    if (1 << d) > SEEN_MAP * max(m, 1):
        return _distinct(keys, fill)
    seen = torch.zeros(n_leaves, 1 << d, dtype=torch.bool)
    seen.scatter_(1, keys, True)
    rank = seen.cumsum(dim=1) - 1  # [L, 2^d]: each seen pattern's place among the distinct
    width = int(rank[:, -1].max()) + 1 if n_leaves and m else 0
    distinct = torch.full((n_leaves, width), fill, dtype=keys.dtype)
    leaf, pattern = seen.nonzero(as_tuple=True)
    distinct[leaf, rank[leaf, pattern]] = pattern
    return distinct, rank.gather(1, keys)


#: :func:`_distinct_patterns` maps the patterns seen where ``2^d`` is at most this many times
#: the rows (a sort of short rows costs about 40 ns an entry, the map a few per pattern).
SEEN_MAP = 8


def _distinct_backgrounds(bkeys: Tensor, d: int) -> tuple[Tensor, Tensor]:
    """Each leaf's distinct background patterns and their shares of the ``M`` rows: ``(keys
    [L, M'], share [L, M'])``, ``M'`` the most distinct patterns of a leaf (padding: the
    pattern of every bit, share 0)."""
    n_leaves, m = bkeys.shape
    keys, at = _distinct_patterns(bkeys, d, (1 << d) - 1)
    count = torch.zeros(n_leaves, keys.shape[1], dtype=torch.float64)
    count.scatter_add_(1, at, torch.ones(n_leaves, m, dtype=torch.float64))
    return keys, count / m


#: The interventional rows' values sum over each leaf's distinct background patterns,
#: weighted by their counts, where those number at most this share of the background rows
#: (else over the rows themselves). One thread, best of 2, 100 background rows, share 0 (never)
#: / 0.5 / 0.75 / 1 (always): the LightGBM breast-cancer booster's k-SII order 2 on 100 rows
#: 0.46 / 0.45 / 0.41 / 0.42 s, its Shapley values 0.12 / 0.13 / 0.11 / 0.10 s (on 10,000
#: rows 0.67 / 0.65 / 0.66 / 0.67 s); the diabetes booster, the forest and XGBoost on 10,000
#: rows level; in place, k-SII order 2 of the breast-cancer booster on 10,000 rows 3.72 ->
#: 2.88 s. The values move by round-off only (2e-16 of the largest).
DISTINCT_BACKGROUNDS = 0.75


def _interventional_rows(bkeys: Tensor, keys: Tensor, d: int, order: int) -> Tensor:
    """Values for rows ``keys [L, R]`` from background patterns ``bkeys [L, M]``.

    A row and a background row give the 0/1 game of :func:`_weights` where the background row
    fails only slots the row meets (else nothing), with ``|A|`` the slots the background row
    fails and ``|B|`` those the row fails: each pair's weights come from one flat index into
    the weight tables, ``|A| (d + 1) + |B|`` (an outer sum of the background rows' and the
    rows' counts) or an appended zero for the pairs that give nothing, in ``int32``; the
    background rows' shares weigh the small right-hand factors (``[L, M, d]``), not the ``[L,
    R, M]`` weights. One thread, the 65 calls of the LightGBM breast-cancer booster's
    interventional Shapley values on 10,000 rows (4 leaves, 418 patterns, 100 background rows,
    depth 11), in one process: 0.13-0.15 s with a mask of the valid pairs times each table
    gathered by ``[a, |B|]`` (``a`` the popcount of the row's pattern and the background
    row's failed slots), 0.085-0.106 s with the flat index from that popcount, 0.094 s (the
    same run: 0.134 s with the popcount) with the counts' outer sum; the same values to
    1.4e-16."""
    m = bkeys.shape[1]
    full = (1 << d) - 1
    distinct, share = _distinct_backgrounds(bkeys, d)
    if distinct.shape[1] > DISTINCT_BACKGROUNDS * m:  # over the rows themselves
        distinct, share = bkeys, torch.full(bkeys.shape, 1.0 / m, dtype=torch.float64)
    fails = (full ^ distinct)[:, None, :]  # [L, 1, M']: the slots each background row fails
    valid = (keys[..., None] & fails) == fails  # [L, R, M']: all of them met by the row
    at = (_count_bits32(fails, d) * (d + 1)) + (d - _count_bits32(keys, d))[..., None]
    at = torch.where(valid, at, (d + 1) ** 2)
    shape, at = at.shape, at.view(-1)
    weights = _flat_weights(d, order)

    def w(name: str) -> Tensor:  # [L, R, M'] the pairs' weights
        return weights[name].index_select(0, at).view(shape)

    sh = share[..., None]  # [L, M', 1]
    free = 1.0 - _bits(distinct, d)  # [L, M', d]: the feature is in A when the row has it
    row_bits = _bits(keys, d)  # [L, R, d]
    bits = row_bits.bool()
    sv = torch.where(bits, w("in") @ (free * sh), w("out") @ sh)
    if order == 1:
        return sv
    # slots are picked for every pair by products with 0/1 matrices (exact: one term each;
    # a gather along the last dimension is several times slower); for bits o_j o_k = max(o_j
    # + o_k - 1, 0)
    j, k = _pairs(d)
    first, second = _pick(d, j), _pick(d, k)  # [d, P]
    bj, bk = (row_bits @ first).bool(), (row_bits @ second).bool()  # [L, R, P]
    free2 = (free @ _incidence(d, 2) - 1.0).clamp_(min=0.0)  # [L, M', P]: both free
    in_in = w("in_in") @ (free2 * sh)
    single = w("in_out") @ (free * sh)  # [L, R, d]
    in_out = torch.where(bj, single @ first, single @ second)
    out_out = w("out_out") @ sh
    sii = torch.where(bj & bk, in_in, torch.where(bj | bk, in_out, out_out))
    if order == 2:
        return torch.cat([sv, sii], dim=2)
    # a triple with all of its members in the row's pattern needs all three free in the
    # background row; with two, those two (the pair left when the third is dropped); one,
    # that one
    i3, j3, l3 = _triples(d)
    p_i, p_j, p_l = _pick(d, i3), _pick(d, j3), _pick(d, l3)  # [d, T]
    bi, bj3, bl = (row_bits @ p_i).bool(), (row_bits @ p_j).bool(), (row_bits @ p_l).bool()
    all3 = w("in3") @ ((free @ _incidence(d, 3) - 2.0).clamp_(min=0.0) * sh)
    two = w("in2") @ (free2 * sh)  # [L, R, P]
    # the pair left: (i, j) where l is out, (i, l) where j is, else (j, l)
    two = torch.where(~bl, two @ _pick_pairs(d, 0), torch.where(
        ~bj3, two @ _pick_pairs(d, 1), two @ _pick_pairs(d, 2)))  # fmt: skip
    one = w("in1") @ (free * sh)  # [L, R, d]
    one = torch.where(bi, one @ p_i, torch.where(bj3, one @ p_j, one @ p_l))
    none = w("in0") @ sh
    count = bi.long() + bj3.long() + bl.long()
    sii3 = torch.where(count == 3, all3, torch.where(count == 2, two,
                                                     torch.where(count == 1, one, none)))
    return torch.cat([sv, sii, sii3], dim=2)


@lru_cache(maxsize=256)
def _pick_cached(d: int, slots: tuple[int, ...]) -> Tensor:
    out = torch.zeros(d, len(slots), dtype=torch.float64)
    out[list(slots), range(len(slots))] = 1.0
    return out


def _pick(d: int, slots: Tensor) -> Tensor:
    """``float64 [d, len(slots)]``: column ``c`` is the indicator of slot ``slots[c]``, so that
    ``x @ _pick(d, slots)`` is ``x[..., slots]`` (cached per ``slots``)."""
    return _pick_cached(d, tuple(slots.tolist()))


@lru_cache(maxsize=64)
def _pick_pairs(d: int, which: int) -> Tensor:
    """``float64 [P, T]``: picks of each triple's pair ``(i, j)`` (``which=0``), ``(i, l)``
    (1) or ``(j, l)`` (2) among the pairs of :func:`_pairs` (cached)."""
    i3, j3, l3 = _triples(d)
    a, b = ((i3, j3), (i3, l3), (j3, l3))[which]
    out = torch.zeros(d * (d - 1) // 2, i3.numel(), dtype=torch.float64)
    out[_pair_position(d, a, b), torch.arange(i3.numel())] = 1.0
    return out


# ---------------------------------------------------------------------------- driver
def tree_shapley_values(
    ensemble: object,
    inputs: np.ndarray,
    background: np.ndarray | None = None,
    max_order: int = 1,
    paths: TreePaths | None = None,
    progress: Callable[[int], None] | None = None,
) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:
    """Exact Shapley values (and pair interactions) of every row of ``inputs``.

    Rows are processed in chunks (working memory about ``2^22`` floats whatever the number of
    rows, plus the per-leaf pattern tables, at most ``2^24`` floats, each built once: upfront,
    or for deep leaves at first use where the rows' distinct patterns pay for it).

    Args:
        ensemble: a fitted model :func:`parse_tree_ensemble` reads, or a :class:`TreeEnsemble`.
        inputs: ``float [R, n]`` rows to explain.
        background: ``float [M, n]`` baseline rows for interventional masking (the value
            function averages over them); ``None``: path-dependent masking (cover weights).
        max_order: 1 (Shapley values), 2 (also the Shapley interaction index of every pair
            of features that share a root-to-leaf path; the others are 0) or 3 (also of every
            such triple).
        paths: the ensemble's :func:`tree_paths`, when already computed.
        progress: called with the number of rows after each chunk of rows.

    Returns:
        ``(values, baseline, pairs, sii)``: Shapley values ``float64 [R, n, O]``, the value with
        every feature removed ``float64 [O]`` (``baseline + values.sum(1)`` is each row's raw
        model output), and for ``max_order=2`` the pairs ``int64 [P, 2]`` with their Shapley
        interaction indices ``float64 [R, P, O]`` (``None, None`` for ``max_order=1``); for
        ``max_order=3`` the pairs and then the triples, ``int64 [P + Q, 3]`` (a pair's third
        entry is ``-1``), and their indices ``float64 [R, P + Q, O]``.

    Raises:
        ValueError: for ``max_order`` other than 1, 2 or 3, or a root-to-leaf path that splits on
            more than 62 distinct features.

    Example:
        >>> from sklearn.tree import DecisionTreeRegressor
        >>> x = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
        >>> tree = DecisionTreeRegressor().fit(x, [0.0, 0.0, 0.0, 4.0])
        >>> values, baseline, pairs, sii = tree_shapley_values(tree, x[3:], x[:1], max_order=2)
        >>> values[0, :, 0].tolist(), baseline.tolist(), pairs.tolist(), sii[0, :, 0].tolist()
        ([2.0, 2.0], [0.0], [[0, 1]], [4.0])
    """
    if max_order not in (1, 2, 3):
        raise ValueError(f"`max_order` must be 1, 2 or 3; got {max_order!r}.")
    ens = parse_tree_ensemble(ensemble)
    if paths is None:
        paths = tree_paths(ens)
    x = np.asarray(inputs, dtype=np.float64)
    n_rows, n, n_out = x.shape[0], paths.n_features, paths.n_outputs
    if background is None:
        baseline = paths.expected.clone()
        bpat = None
        work = float(n_rows)
    else:
        bg = np.asarray(background, dtype=np.float64)
        baseline = torch.from_numpy(ens.predict(bg).mean(axis=0))
        step = max(1, _CHUNK // max(1, paths.n_nodes))  # background rows in chunks too
        bpat = torch.cat([decision_patterns(paths, bg[i : i + step])[paths.leaf]
                          for i in range(0, bg.shape[0], step)], dim=1)  # [L, M]
        work = float(n_rows) * bg.shape[0]
    pairs, pair_of = _pair_ids(paths) if max_order >= 2 else (None, None)
    n_targets = n + (0 if pairs is None else pairs.shape[0])
    triples, triple_keys = _triple_ids(paths) if max_order == 3 else (None, None)
    if triples is not None:
        n_targets += triples.shape[0]
    keyed = paths.tree_splits <= _KEY_BITS  # [T]: rows grouped by routing key
    key_tables = None
    if KEY_TABLES and bool(keyed.any()):
        key_tables = _KeyTables.build(paths, keyed, n_rows)
    # rows in chunks whose [trees, rows] keys fit _CHUNK, or (ROW_PASSES) in passes of as
    # many rows as the dense row sums hold in _CHUNK, each pass's trees in blocks whose keys fit
    # (and the chunk's routing columns, float64 [features split on, R], within it too)
    n_used = len(paths.router.used_features)
    step = max(1, _CHUNK // max(1, paths.n_trees, n_used))
    block = paths.n_trees
    if not bool(keyed.all()):
        step = max(1, min(step, _CHUNK // max(1, paths.n_nodes)))
    elif ROW_PASSES and n_rows > step:
        most = max(step, _CHUNK // max(1, n_targets * n_out))
        if key_tables is not None:  # a pass's ranks [F + 1, R]
            most = min(most, _CHUNK // (len(key_tables.features) + 1))
        most = min(most, _CHUNK // max(1, n_used))  # its routing columns
        passes = -(-n_rows // most)
        step = -(-n_rows // passes)  # passes of equal size
        block = max(1, _CHUNK // step)
    pass_rows, n_passes = min(step, n_rows), -(-n_rows // step)
    # leaves grouped by their number d of path features and by whether their tree is keyed,
    # each group's leaves in tree order; a table over all 2^d patterns (built once) where that
    # is cheaper than computing the rows one by one and fits the budget: upfront, or leaf by
    # leaf at first use for deep groups (LAZY_DEPTH), where the rows' distinct patterns say
    groups = []
    used = 0
    for d in torch.unique(paths.n_slots).tolist():
        for by_key in (True, False):
            idx = torch.nonzero((paths.n_slots == d) & (keyed[paths.leaf_tree] == by_key))
            idx = idx.squeeze(1)
            if not idx.numel():
                continue
            idx = idx[torch.argsort(paths.leaf_tree[idx], stable=True)]
            width = _width(d, max_order)
            size = idx.numel() * (1 << d) * width * n_out
            table, lazy = None, None
            if _table_is_cheaper(d, work, bpat is not None) and used + size <= _TABLE_BUDGET:
                used += size
                if LAZY_TABLES and (d > LAZY_DEPTH or ((1 << d) > pass_rows and max_order > 1)):
                    idx, partner = _pair_siblings(paths, idx)
                    row_cost = (torch.ones(idx.numel(), dtype=torch.float64) if bpat is None
                                else _background_cost(bpat[idx], d))  # fmt: skip
                    lazy = _LazyTables(torch.empty(idx.numel(), width * n_out, 1 << d,
                                                   dtype=torch.float64),
                                       torch.zeros(idx.numel(), dtype=torch.bool), row_cost,
                                       n_passes, partner, bpat is not None)  # fmt: skip
                else:
                    table, idx = _merge_siblings(paths, idx, d, _leaf_table(paths, idx, d, bpat,
                                                                             max_order))
            target = paths.feature[idx, :d]
            if pair_of is not None:
                j, k = _pairs(d)
                pair_target = pair_of[target[:, j], target[:, k]]
                if triple_keys is not None:
                    assert triples is not None
                    found = _triple_targets(target, d, triple_keys, n)
                    pair_target = torch.cat([pair_target, found + n_targets
                                             - triples.shape[0]], dim=1)  # fmt: skip
                target = torch.cat([target, pair_target], dim=1)
            groups.append(_Group(d, by_key, idx, paths.leaf_tree[idx], target, table,
                                 lazy=lazy))
    entries = _Entries.build(groups, paths.n_trees, n_targets)
    most = int(paths.tree_splits[keyed].max()) if bool(keyed.any()) else 0
    key_dtype = torch.int32 if most <= 31 and n_rows < 2**31 else torch.int64
    for g in groups:
        g.mask = paths.mask[g.idx, : g.d].to(key_dtype)
        g.need = paths.need[g.idx, : g.d].to(key_dtype)
    key_patterns = _KeyPatterns.build(paths, groups, key_dtype) if KEY_PRODUCT else None
    out_all = torch.zeros(n_targets, n_out, n_rows, dtype=torch.float64)
    # rows by dense tables (a row of every target per class, one index_select per tree) where
    # the trees' entries fill at least 1 / DENSE_SPREAD of the targets, else entry by entry
    dense = n_targets <= DENSE_SPREAD * entries.tree.numel() / max(1, paths.n_trees)
    for start in range(0, n_rows, step):
        rows = paths.router.columns(x[start : start + step])  # routed many times: made ready once
        out = out_all[:, :, start : start + rows.shape[0]]
        flat = torch.zeros(rows.shape[0], n_targets * n_out, dtype=torch.float64) if dense else None
        ranks = key_tables.ranks(paths, rows) if key_tables is not None else None
        for lo in range(0, paths.n_trees, block):
            hi = min(paths.n_trees, lo + block)
            classes = _RowClasses.build(paths, rows, keyed, key_dtype, key_tables, lo, hi,
                                        ranks)  # fmt: skip
            _accumulate(paths, groups, entries, classes, bpat, max_order, out, flat,
                        key_patterns)  # fmt: skip
        if flat is not None:
            out += flat.view(rows.shape[0], n_targets, n_out).permute(1, 2, 0)
        if progress is not None:
            progress(rows.shape[0])
    values = out_all[:n].permute(2, 0, 1)  # views, not copies: the caller lays them out
    if pairs is None:
        return values, baseline, None, None
    if triples is not None:
        pairs = torch.cat([torch.nn.functional.pad(pairs, (0, 1), value=-1), triples])
    return values, baseline, pairs, out_all[n:].permute(2, 0, 1)


#: Where every tree is keyed, rows go in passes as large as the dense row sums allow (``_CHUNK``
#: values) rather than in chunks of ``_CHUNK / trees`` rows, and each pass's trees in blocks
#: whose ``[trees, rows]`` keys fit ``_CHUNK``: a tree's classes are formed over more rows, and
#: distinct keys grow slower than rows (the scikit-learn forest of
#: ``benchmarks/tree_vs_shapiq.py`` on 21,000 / 100,000 rows: 5,200 / 10,000 classes per tree,
#: so five chunks computed 26,000 where one pass computes 10,000). Bitwise the same values where
#: leaves are computed class by class (``DISTINCT_PATTERNS`` and ``LAZY_TABLES`` off; with them,
#: a class's values can round differently with the other classes of its pass, by 1e-16).
#: Measured in place (one thread, Shapley values of 100,000 rows, /tmp script): the forest 8.1
#: -> 5.0 s path-dependent, 8.1 -> 4.9 s interventional; the LightGBM breast-cancer booster
#: 3.2 -> 2.1 s and 2.5 -> 2.2 s; the XGBoost classifier (a few splits a tree, keys as
#: classes) level, 0.24 s.
ROW_PASSES = True


@dataclass
class _Group:
    """Leaves with ``d`` path features (of keyed trees or not), in tree order: positions
    ``idx [L_g]`` in the paths, their trees ``tree [L_g]``, global targets ``target [L_g, W]``
    of their ``W`` values, ``table [L_g, W * O, 2^d]`` or None (row by row); set by
    :class:`_Entries`: ``entry [L_g, W]`` each value's ``(tree, target)`` entry; by the driver:
    ``mask``, ``need`` ``[L_g, d]`` the paths' masks in the routing keys' dtype; by
    :class:`_KeyPatterns`: ``local [L_g]`` each leaf's column in its tree's patterns;
    ``lazy``: the group's tables built at first use (:class:`_LazyTables`), else None."""

    d: int
    keyed: bool
    idx: Tensor
    tree: Tensor
    target: Tensor
    table: Tensor | None
    entry: Tensor | None = None
    mask: Tensor | None = None
    need: Tensor | None = None
    local: Tensor | None = None
    lazy: _LazyTables | None = None


@dataclass
class _LazyTables:
    """A group's pattern tables built leaf by leaf at first use, where the leaf's classes hold
    enough distinct patterns to pay for one (:data:`TABLE_VALUE_COST`): ``table [L_g, W * O,
    2^d]`` (allocated, not filled), ``built [L_g]``, ``background [L_g]`` the background
    rows (or distinct patterns) a row of the leaf costs, ``passes`` the row passes, ``partner
    [L_g]`` the path position of a leaf's right sibling folded into it (its patterns are the
    leaf's with the last bit flipped, its values go to the same entries), else ``-1``."""

    table: Tensor
    built: Tensor
    background: Tensor
    passes: int
    partner: Tensor
    interventional: bool


#: Keyed trees' decision patterns come from one product per block of trees
#: (:class:`_KeyPatterns`) rather than from every leaf's slots one by one ...
KEY_PRODUCT = True
#: ... where the product's multiply-adds (trees x most conditions x most leaves of the block)
#: are at most this many times the block's slots. In place, product against slot by slot
#: (``benchmarks/tree_vs_shapiq.py``'s models, Shapley values of 100,000 rows; the ratio of
#: the two costs in brackets): LightGBM breast cancer (8.7) 20-25% faster, LightGBM diabetes
#: (12) 3-7% faster, the XGBoost classifier (32) level, the forest (32) 2-5% slower.
KEY_PRODUCT_SPREAD = 16


@dataclass
class _KeyPatterns:
    """The decision patterns of every keyed leaf as a linear function of its tree's *key
    conditions* (``key & mask[q] == need[q]``, a 0/1 column per condition): a slot that one
    split decides is that split's bit (or one minus it), a slot on a feature split several
    times on the path is a condition of its own. For a block of trees, ``weight [T_b, L_b,
    Q_b]`` times ``cond [T_b, Q_b, U]`` plus ``bias [T_b, L_b]`` gives every class's pattern
    at every leaf (exact: sums of distinct powers of two, in float32 up to 24 slots).

    ``mask``, ``need`` ``[T, Q]`` (padding: 0 and 0, weight 0); the weights as entries, tree
    by tree: ``tree``, ``leaf``, ``col`` ``[S]`` and ``sign [S]`` (``±2^slot``), the bias as
    ``flip`` ``bool [S]`` (a slot decided by a right turn adds ``2^slot``); per tree its
    ``columns``, keyed ``leaves`` and their ``slots`` ``[T]``; the leaves' columns
    ``_Group.local``."""

    mask: Tensor
    need: Tensor
    tree: Tensor
    leaf: Tensor
    col: Tensor
    sign: Tensor
    flip: Tensor
    columns: Tensor
    leaves: Tensor
    slots: Tensor

    def pays(self, t0: int, t1: int) -> bool:
        """Whether the block has keyed leaves and its product (``T_b`` x its most conditions x
        most leaves multiply-adds) costs at most :data:`KEY_PRODUCT_SPREAD` x its slots
        packed one by one."""
        cols, leaves = int(self.columns[t0:t1].max()), int(self.leaves[t0:t1].max())
        slots = int(self.slots[t0:t1].sum())
        return slots > 0 and (t1 - t0) * cols * leaves <= KEY_PRODUCT_SPREAD * slots

    @staticmethod
    def build(paths: TreePaths, groups: list[_Group], key_dtype: torch.dtype
              ) -> _KeyPatterns | None:
        keyed = [g for g in groups if g.keyed]
        most = max((g.d for g in keyed), default=0)
        if not keyed or most > 52:  # float64 holds the patterns exactly up to 52 slots
            return None
        n_trees = paths.n_trees
        # each keyed leaf's column in its tree: leaves numbered tree by tree
        tree = torch.cat([g.tree for g in keyed])
        order = torch.argsort(tree, stable=True)
        per_tree = torch.bincount(tree, minlength=n_trees)
        first = torch.cumsum(per_tree, 0) - per_tree
        local = torch.empty_like(tree)
        local[order] = torch.arange(tree.numel()) - first[tree[order]]
        at = 0
        for g in keyed:
            g.local = local[at : at + g.tree.numel()]
            at += g.tree.numel()
        # every slot of every keyed leaf: (tree, leaf column, slot, mask, need)
        s_tree, s_leaf, s_slot, s_mask, s_need = [], [], [], [], []
        for g in keyed:
            assert g.local is not None
            d = g.d
            s_tree.append(g.tree[:, None].expand(-1, d).reshape(-1))
            s_leaf.append(g.local[:, None].expand(-1, d).reshape(-1))
            s_slot.append(torch.arange(d).repeat(g.tree.numel()))
            s_mask.append(paths.mask[g.idx, :d].reshape(-1))
            s_need.append(paths.need[g.idx, :d].reshape(-1))
        t, leaf, slot = torch.cat(s_tree), torch.cat(s_leaf), torch.cat(s_slot)
        mask, need = torch.cat(s_mask), torch.cat(s_need)
        power = torch.pow(2.0, slot.to(torch.float64))
        single = (mask & (mask - 1)) == 0  # one split decides the slot
        bit = torch.log2(mask.clamp(min=1).to(torch.float64)).round().long()  # where single
        goes_left = (need & mask) != 0
        # columns: bit b of the key (b < splits of the tree), then the tree's distinct
        # multi-split conditions
        keyed_trees = paths.tree_splits <= _KEY_BITS
        splits = torch.where(keyed_trees, paths.tree_splits, 0)
        col = torch.where(single, bit, 0)
        multi = torch.nonzero(~single).squeeze(1)
        n_multi = torch.zeros(n_trees, dtype=torch.int64)
        m_tree = m_mask = m_need = torch.zeros(0, dtype=torch.int64)
        if multi.numel():
            triple = torch.stack([t[multi], mask[multi], need[multi]], dim=1)
            uniq, inverse = unique_rows(triple)
            m_tree, m_mask, m_need = uniq[:, 0], uniq[:, 1], uniq[:, 2]
            n_multi = torch.bincount(m_tree, minlength=n_trees)
            m_first = torch.cumsum(n_multi, 0) - n_multi
            rank = torch.arange(uniq.shape[0]) - m_first[m_tree]
            col[multi] = splits[t[multi]] + rank[inverse]
        width = int((splits + n_multi).max())
        cmask = torch.zeros(n_trees, max(width, 1), dtype=torch.int64)
        cneed = torch.zeros_like(cmask)
        b_tree = torch.repeat_interleave(torch.arange(n_trees), splits)
        b_bit = torch.arange(b_tree.numel()) - (torch.cumsum(splits, 0) - splits)[b_tree]
        b_bits = torch.ones_like(b_bit) << b_bit
        cmask[b_tree, b_bit] = b_bits
        cneed[b_tree, b_bit] = b_bits
        if m_tree.numel():
            m_col = splits[m_tree] + (torch.arange(m_tree.numel())
                                      - (torch.cumsum(n_multi, 0) - n_multi)[m_tree])
            cmask[m_tree, m_col] = m_mask
            cneed[m_tree, m_col] = m_need
        # a slot decided by one right turn is 1 - bit: weight -2^j and 2^j in the bias
        flip = single & ~goes_left
        sign = torch.where(flip, -power, power)
        by_tree = torch.argsort(t, stable=True)
        return _KeyPatterns(cmask.to(key_dtype), cneed.to(key_dtype), t[by_tree],
                            leaf[by_tree], col[by_tree], sign[by_tree], flip[by_tree],
                            splits + n_multi, per_tree, torch.bincount(t, minlength=n_trees))

    def block(self, key: Tensor, t0: int, t1: int) -> Tensor:
        """``[T_b, L_b, U]`` (float, integral): the patterns of the classes ``key [T_b, U]``
        of trees ``t0 .. t1 - 1`` at each of their leaves' columns (``L_b`` the block's most
        keyed leaves), in pieces of trees of about ``_CHUNK`` conditions."""
        n_cols, n_leaves = int(self.columns[t0:t1].max()), int(self.leaves[t0:t1].max())
        most = int(self.sign.abs().max()) if self.sign.numel() else 1
        dtype = torch.float32 if most < 1 << 24 else torch.float64
        lo, hi = (int(torch.searchsorted(self.tree, v)) for v in (t0, t1))
        rows = (self.tree[lo:hi] - t0, self.leaf[lo:hi], self.col[lo:hi])
        weight = torch.zeros(t1 - t0, n_leaves, n_cols, dtype=dtype)
        weight.index_put_(rows, self.sign[lo:hi].to(dtype), accumulate=True)
        flip = self.flip[lo:hi]
        bias = torch.zeros(t1 - t0, n_leaves, dtype=dtype)
        bias.index_put_((rows[0][flip], rows[1][flip]), self.sign[lo:hi][flip].abs().to(dtype),
                        accumulate=True)  # fmt: skip
        mask, need = self.mask[t0:t1, :n_cols, None], self.need[t0:t1, :n_cols, None]
        pattern = torch.empty(t1 - t0, n_leaves, key.shape[1], dtype=dtype)
        step = max(1, _CHUNK // max(1, n_cols * key.shape[1]))
        for a in range(0, t1 - t0, step):
            b = min(a + step, t1 - t0)
            cond = (key[a:b, None, :] & mask[a:b]) == need[a:b]
            torch.baddbmm(bias[a:b, :, None], weight[a:b], cond.to(dtype), out=pattern[a:b])
        return pattern


@dataclass
class _Entries:
    """The distinct ``(tree, target)`` pairs, tree by tree: ``tree [E]``, ``target [E]``, and
    their number per tree ``per_tree [T]`` (entries of tree ``t`` start at ``first[t]``)."""

    tree: Tensor
    target: Tensor
    per_tree: Tensor
    first: Tensor

    @staticmethod
    def build(groups: list[_Group], n_trees: int, n_targets: int) -> _Entries:
        keys = [(g.tree[:, None] * n_targets + g.target).reshape(-1) for g in groups]
        uniq, inverse = torch.unique(torch.cat(keys) if keys else torch.zeros(0, dtype=torch.int64),
                                     return_inverse=True)  # fmt: skip
        tree, target = uniq // n_targets, uniq % n_targets
        per_tree = torch.bincount(tree, minlength=n_trees)
        first = torch.cat([torch.zeros(1, dtype=torch.int64), per_tree.cumsum(0)])
        at = 0
        for g in groups:
            size = g.target.numel()
            g.entry = inverse[at : at + size].view_as(g.target)
            at += size
        return _Entries(tree, target, per_tree, first)


#: Routing keys from per-feature tables (:class:`_KeyTables`) rather than split by split,
#: where the splits the tables hold number at least ``KEY_TABLE_SPLITS`` per lookup (trees x
#: most features of a tree) and the tables fit ``_CHUNK`` entries. In place (100 trees, 10,000
#: rows, both ways twice; splits per lookup in brackets): the scikit-learn forest on diabetes
#: (4.9) 1.70-1.90 -> 1.64-1.74 s (its keys of 30,000 rows 1.4 -> 0.56 s), LightGBM diabetes
#: (1.6) 0.17-0.18 -> 0.18-0.22 s, LightGBM breast cancer (1.3) 0.63-0.66 -> 0.70-0.77 s, the
#: XGBoost classifier (0.3) 2.5x slower; 2 lies between the measured 1.6 (slower) and 4.9
#: (faster). A lookup (a gather from a table of about 2 million entries and a sum) costs about
#: what two splits' comparisons, shifts and scatter do.
KEY_TABLES = True
KEY_TABLE_SPLITS = 2.0
#: The tables also kept by feature, dense over the trees (``[ranks, T]``, where that fits
#: ``_CHUNK`` entries): a row's keys then add one contiguous row of every tree's entries per
#: feature (a row gather) instead of a gather per (tree, feature) lookup. One thread, 41 trees,
#: 10 features, 100,000 rows: 0.08-0.14 s against the lookups' ~0.24 s. In place, both ways in
#: one process (``benchmarks/tree_vs_shapiq.py``'s models, Shapley values, best of 2): the
#: scikit-learn forest's 100,000 rows 4.8 -> 3.2 s path-dependent, 3.3 -> 2.8 s
#: interventional; the other models and the 100- and 10,000-row cells level (0.87-1.07x;
#: the LightGBM breast-cancer booster, 30 features, 10,000 rows: 0.48-0.59 -> 0.42-0.52 s
#: over 5 runs).
KEY_COLUMNS = True


@dataclass
class _KeyTables:
    """Routing keys by feature: a keyed tree's splits on one numeric feature send a row left
    according to the row's rank among that feature's thresholds alone (``below``, as
    :meth:`TreeEnsemble.rank` gives it), so their bits of the key are a table over
    that rank. A key is then the sum, over the tree's features, of one table entry each
    (``[T, F]`` lookups per row instead of ``[V]`` comparisons, shifts and a scatter).

    ``table [E + 1]``: the tables one after another (a (tree, feature) pair's table has one
    entry per rank, the feature's thresholds plus one), then a 0 that padding and the features
    routed by the rule in full read; ``lookup_feature``, ``lookup_offset`` ``[T, F]``: each
    tree's lookups, their features (ids into ``features``; ``len(features)``: padding) and
    their tables' offsets; ``in_tables`` ``bool [V]`` the splits the tables hold;
    ``full_rule [V']`` the keyed splits they cannot hold (categorical ones, LightGBM's missing
    type Zero), routed by :meth:`TreeEnsemble.goes_left` beside them."""

    features: np.ndarray
    table: Tensor
    lookup_feature: Tensor
    lookup_offset: Tensor
    in_tables: np.ndarray
    full_rule: np.ndarray
    full_router: TreeEnsemble | None  # the router at ``full_rule`` (None: no such split)
    # the same tables by feature, dense over the trees (see KEY_COLUMNS), else None:
    # ``columns [sum of the features' ranks, T]`` (a table feature's rows from ``column_start``
    # on; 0 where a tree does not split on it) and ``uses bool [T, F_tables]``
    columns: Tensor | None = None
    column_start: np.ndarray | None = None
    uses: np.ndarray | None = None

    @staticmethod
    def build(paths: TreePaths, keyed: Tensor, n_rows: int) -> _KeyTables | None:
        """The tables, or None where they would not pay (:data:`KEY_TABLE_SPLITS`; or fewer
        comparisons saved over ``n_rows`` rows than the tables have entries to build) or would
        exceed ``_CHUNK`` entries."""
        router = paths.router
        rank, cuts = router._cuts
        split_keyed = keyed[paths.split_tree].numpy()
        in_tables = (router.category < 0) & (router.missing != _MISSING_ZERO) & split_keyed
        at = np.flatnonzero(in_tables)
        tree = paths.split_tree.numpy()[at]
        feat = router.feature[at]
        n_f = router.n_features
        pair_key, pair_of = np.unique(tree * n_f + feat, return_inverse=True)
        p_tree, p_feat = pair_key // n_f, pair_key % n_f
        per_tree = np.bincount(p_tree, minlength=paths.n_trees)
        width = int(per_tree.max()) if per_tree.size else 0
        sizes = np.array([len(cuts[f]) + 1 for f in p_feat.tolist()], dtype=np.int64)
        lookups = paths.n_trees * width
        if (not at.size or at.size < KEY_TABLE_SPLITS * lookups or int(sizes.sum()) > _CHUNK
                or n_rows * (at.size - lookups) < int(sizes.sum())):  # fmt: skip
            return None
        offset = np.cumsum(sizes) - sizes
        # entry b of a pair: sum of 1 << bit over its splits with b <= rank (left there),
        # as a difference array: + at the segment's start, - after position rank
        diff = np.zeros(int(sizes.sum()) + 1, dtype=np.int64)
        bits = np.left_shift(np.int64(1), paths.split_bit.numpy()[at].astype(np.int64))
        np.add.at(diff, offset[pair_of], bits)
        np.add.at(diff, offset[pair_of] + rank[at] + 1, -bits)
        # every split's + and - fall in its own pair's segment (rank + 1 < its size), so one
        # cumulative sum over all segments is each segment's own (and the last entry is 0)
        table = np.cumsum(diff)
        features, p_local = np.unique(p_feat, return_inverse=True)
        first = np.cumsum(per_tree) - per_tree
        lookup_feature = np.full((paths.n_trees, width), len(features), dtype=np.int64)
        lookup_offset = np.full((paths.n_trees, width), len(table) - 1, dtype=np.int64)
        column = np.arange(len(pair_key)) - first[p_tree]
        lookup_feature[p_tree, column] = p_local
        lookup_offset[p_tree, column] = offset
        full_rule = np.flatnonzero(split_keyed & ~in_tables)
        tables = _KeyTables(features, torch.from_numpy(table), torch.from_numpy(lookup_feature),
                            torch.from_numpy(lookup_offset), in_tables, full_rule,
                            _router(router, full_rule) if full_rule.size else None)
        ranks = np.array([len(cuts[f]) + 1 for f in features.tolist()], dtype=np.int64)
        if KEY_COLUMNS and int(ranks.sum()) * paths.n_trees <= _CHUNK:
            start = np.concatenate([[0], np.cumsum(ranks)])
            columns = np.zeros((int(ranks.sum()), paths.n_trees), dtype=np.int64)
            pair = np.repeat(np.arange(len(pair_key)), sizes)  # each table entry's pair
            within = np.arange(int(sizes.sum())) - offset[pair]
            columns[start[p_local[pair]] + within, p_tree[pair]] = table[:-1]
            uses = np.zeros((paths.n_trees, len(features)), dtype=bool)
            uses[p_tree, p_local] = True
            tables.columns, tables.column_start, tables.uses = (torch.from_numpy(columns),
                                                                start, uses)  # fmt: skip
        return tables

    def ranks(self, paths: TreePaths, x: RoutingColumns) -> Tensor:
        """Each table feature's ranks among its thresholds for the rows ``x``: ``int64 [F + 1,
        R]`` (then a row of zeros that padding and the features with missing values read, with
        the table's last entry, 0; the features with a missing value in some row, ``x.nan``,
        take the full rule)."""
        router = paths.router
        below = torch.zeros(len(self.features) + 1, x.shape[0], dtype=torch.int64)
        for i, f in enumerate(self.features.tolist()):
            if not x.nan[f]:  # each feature's values contiguous
                below[i] = torch.from_numpy(router.rank(x.values[f], f))
        return below

    def keys(self, paths: TreePaths, x: RoutingColumns, below: Tensor, dtype: torch.dtype,
             lo: int, hi: int) -> Tensor:
        """``[hi - lo, R]`` the routing keys of rows ``x`` (ranks ``below`` as :meth:`ranks`
        gives them) in trees ``lo .. hi - 1`` (0 for trees not keyed)."""
        router = paths.router
        nan = x.nan
        n_rows = x.shape[0]
        if self.columns is not None:
            # key[r, t] = sum over the block's features of columns[start + rank of r, t]
            assert self.column_start is not None and self.uses is not None
            first = self.column_start
            used = np.asarray(self.uses[lo:hi].any(axis=0), dtype=bool)
            by_row = torch.zeros(n_rows, hi - lo, dtype=torch.int64)
            buf = torch.empty_like(by_row)
            for i, f in enumerate(self.features.tolist()):
                if used[i] and not nan[f]:
                    part = self.columns[int(first[i]) : int(first[i + 1]), lo:hi]
                    by_row += torch.index_select(part, 0, below[i], out=buf)
            keys = by_row.t()
        else:
            feature, offset = self.lookup_feature[lo:hi], self.lookup_offset[lo:hi]
            off = np.append(nan[self.features], False)[feature.numpy()]
            if off.any():
                where = torch.from_numpy(off)
                feature = torch.where(where, len(self.features), feature)
                offset = torch.where(where, self.table.numel() - 1, offset)
            index = below[feature]  # [T, F, R]
            index += offset[:, :, None]
            keys = self.table.index_select(0, index.view(-1)).view(index.shape).sum(dim=1)
        full, sub = self.full_rule, self.full_router
        if nan.any():
            full = np.union1d(full, np.flatnonzero(self.in_tables & nan[router.feature]))
        split_tree = paths.split_tree.numpy()
        if full.size and (lo > 0 or hi < paths.n_trees):
            full = full[(split_tree[full] >= lo) & (split_tree[full] < hi)]
        if full is not self.full_rule:
            sub = _router(router, full) if full.size else None
        if sub is not None:
            pack = _BitPacker(split_tree[full] - lo, paths.split_bit.numpy()[full], hi - lo)
            step = max(1, (_CHUNK >> 1) // full.size)  # the router's temporaries
            for start in range(0, n_rows, step):
                left = sub.goes_left(x[start : start + step])  # [V', r]
                keys[:, start : start + step] += torch.from_numpy(pack(left, torch.int64))
        return keys.to(dtype)


class _BitPacker:
    """Routing keys from the routing of rows at a set of splits: ``key[t] = sum over t's
    splits v of left[v] << bit[v]`` (``left`` the splits' ``bool [V, R]`` routing, a tree's
    bits distinct), a byte at a time: the rows of ``left`` are laid out once, each split at
    slot ``bit % 8`` of its tree's eight rows for byte ``bit // 8`` (slots without a split stay
    0), and each byte of every tree is one weighted sum over its eight rows (``np.einsum``
    with weights ``2^0 .. 2^7`` in ``uint8``: no carry past 255). One thread, 100 trees of 1-6
    splits, 33,334 rows, the keys allocated by the packer: 23-25 ms for an OR of each bit
    position's rows into the trees' bytes (the previous packer), 7-8 ms this way, bitwise
    equal; an ``index_add`` of the shifted ``[V, R]`` integers had been 3.5-5x slower than
    that OR."""

    _WEIGHTS = (1 << np.arange(8)).astype(np.uint8)

    def __init__(self, tree: np.ndarray, bit: np.ndarray, n_trees: int) -> None:
        self.n_trees = n_trees
        # per byte of the keys: its first row in the layout, the trees with a split there (all
        # trees in order: a plain slice)
        self.segments: list[tuple[int, int, int, np.ndarray | slice]] = []
        byte = bit // 8
        self.slot = np.empty(bit.size, dtype=np.intp)
        first = 0
        for j in np.unique(byte).tolist():
            at = np.flatnonzero(byte == j)
            trees = np.unique(tree[at])
            self.slot[at] = first + np.searchsorted(trees, tree[at]) * 8 + bit[at] % 8
            whole = trees.size == n_trees
            self.segments.append((int(j), first, trees.size, slice(None) if whole else trees))
            first += trees.size * 8
        self.n_slots = first
        self._layout: np.ndarray | None = None  # reused from call to call (zeros outside slots)

    def __call__(self, left: np.ndarray, dtype: torch.dtype, out: np.ndarray | None = None
                 ) -> np.ndarray:  # fmt: skip
        """``[T, R]`` keys (``int32`` or ``int64`` as ``dtype``; 0 for trees without splits),
        written into ``out`` where given (it must hold zeros of that dtype; any strides: a
        slice of the caller's keys, so that no copy follows)."""
        n_rows = left.shape[1]
        np_dtype = np.int32 if dtype == torch.int32 else np.int64
        if out is None:
            out = np.zeros((self.n_trees, n_rows), dtype=np_dtype)
        if self._layout is None or self._layout.shape[1] < n_rows:
            self._layout = np.zeros((self.n_slots, n_rows), dtype=np.uint8)
        layout = self._layout[:, :n_rows]
        layout[self.slot] = left.view(np.uint8)
        for j, first, k, trees in self.segments:
            rows = layout[first : first + 8 * k].reshape(k, 8, n_rows)
            value = np.einsum("tkr,k->tr", rows, self._WEIGHTS)  # uint8 [k, R]
            if j == 0 and isinstance(trees, slice):  # out holds zeros: the byte is the key
                np.copyto(out, value)
            else:
                out[trees] |= np.left_shift(value.astype(np_dtype), 8 * j)
        return out


#: Below this many rows a chunk's classes come from one sort of its trees' keys
#: (:func:`_sort_rows`), from it ``torch.unique`` tree by tree. One thread, 40 trees of keys
#: with about a fifth distinct, 30-bit / 60-bit keys, ms for the per-tree unique against the
#: one sort: 10,000 rows 22 / 7 and 23 / 14, 20,000 rows 46 / 17 and 48 / 30, 40,000 rows 26
#: / 56 and 47 / 68, 100,000 rows 63 / 121 and 118 / 193 (the unique's cost per row falls
#: past 20,000 rows, the sort's rises).
UNIQUE_FROM = 32768
#: Either way a tree's key is its class outright where its splits allow at most ``1 /
#: DIRECT_KEYS`` of the chunk's rows as keys (no sort; every possible key a class). The
#: XGBoost breast-cancer classifier (100 trees, 3 splits on average) on 100,000 rows: 0.56 s
#: with a unique per tree, 0.41 s with keys as classes at 1/64 of the rows, 0.39 s at 1/16,
#: 0.42 s at 1/4; the conservative 1/64 is kept.
DIRECT_KEYS = 64


def _sort_rows(keys: Tensor) -> tuple[Tensor, Tensor]:
    """``keys.sort(dim=1)`` of ``[L, R]`` integers (ties in any order: callers read classes
    of equal keys), by NumPy, whose integer sorts are vectorized: where the keys lie in ``[0,
    2^31)``, each is packed above its column (``key << 32 | column``) and the packed values
    sorted; else an ``argsort``. One thread: 10,000 keys of ~3,000 distinct values, 0.15 ms
    for the classes against 0.50 ms for ``torch.unique``; 100 rows of 10,000 sorted 51 ms by
    torch, 4.9 ms by NumPy (values only); 100 rows of 20,000 62-bit keys 106 ms by torch, 61
    ms by the argsort and a gather."""
    m = keys.shape[1]
    if not keys.numel() or keys.device.type != "cpu":
        return keys.sort(dim=1)
    if int(keys.min()) < 0 or int(keys.max()) >= 1 << 31 or m >= 1 << 32:
        values = keys.numpy()
        order_np = np.argsort(values, axis=1)
        return torch.from_numpy(np.take_along_axis(values, order_np, axis=1)), torch.from_numpy(
            order_np)
    packed = np.left_shift(keys.numpy().astype(np.int64), 32)
    packed |= np.arange(m, dtype=np.int64)
    packed.sort(axis=1)
    order = torch.from_numpy(packed & 0xFFFFFFFF)
    return torch.from_numpy(packed >> 32).to(keys.dtype), order


def _sorted_classes(keys: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``(pos [T, R], key [T, U], count [T])`` of :class:`_RowClasses` by one sort of the
    ``[T, R]`` keys."""
    n_trees, n_rows = keys.shape
    sorted_keys, order = _sort_rows(keys)
    new = torch.ones(n_trees, n_rows, dtype=torch.bool)
    new[:, 1:] = sorted_keys[:, 1:] != sorted_keys[:, :-1]
    cls = new.cumsum(dim=1) - 1  # [T, R] in sorted order: class within the tree
    pos = torch.empty_like(cls).scatter_(1, order, cls)
    count = cls[:, -1] + 1 if n_rows else torch.zeros(n_trees, dtype=torch.int64)
    width = int(count.max()) if n_trees else 0
    key = torch.zeros(n_trees, width, dtype=keys.dtype).scatter_(1, cls, sorted_keys)
    return pos, key, count


@dataclass
class _RowClasses:
    """A chunk of ``R`` rows grouped, tree by tree, by their routing key (the rows of a class
    go the same way at every split of the tree, so they share every leaf's pattern and the
    tree's contribution). The rows of trees too large for a key are classes of their own.

    ``pos [T, R]`` each row's class in its tree (``int64`` where one sort gives every
    tree's classes, else the keys' own ``int32`` / ``int64``); ``key [T, U]`` each class's
    routing key, increasing (``U`` the most classes of a tree; unused columns hold 0); ``count
    [T]`` classes per tree; ``patterns`` the rows' decision patterns at every node where some
    tree is not keyed, else None.
    """

    pos: Tensor
    key: Tensor
    count: Tensor
    patterns: Tensor | None
    lo: int = 0  # the classes are those of trees lo .. lo + len(count) - 1

    @staticmethod
    def build(
        paths: TreePaths,
        rows: RoutingColumns,
        keyed: Tensor,
        dtype: torch.dtype,
        tables: _KeyTables | None = None,
        lo: int = 0,
        hi: int | None = None,
        ranks: Tensor | None = None,
    ) -> _RowClasses:
        """The classes of ``rows`` in trees ``lo .. hi - 1`` (a range only where every tree
        is keyed); ``ranks``: ``tables.ranks(paths, rows)`` when already computed."""
        hi = paths.n_trees if hi is None else hi
        n_rows, n_trees = rows.shape[0], hi - lo
        # each keyed tree's classes: its distinct keys in increasing order (one sort of the
        # trees' keys, or torch.unique tree by tree from UNIQUE_FROM rows), or every key its
        # splits allow when they number at most 1 / DIRECT_KEYS of the rows (the key is the
        # class: no sort); the other trees: a class per row
        splits = paths.tree_splits[lo:hi]
        direct = keyed[lo:hi] & (splits <= (n_rows // DIRECT_KEYS).bit_length() - 1)
        one_sort = not bool(direct.any()) and bool(keyed[lo:hi].all()) and n_rows < UNIQUE_FROM
        keys = torch.zeros(n_trees, n_rows, dtype=dtype)
        block = (paths.split_tree >= lo) & (paths.split_tree < hi)
        sel = keyed[paths.split_tree] & block
        if tables is not None:  # by feature tables (the same keys)
            below = tables.ranks(paths, rows) if ranks is None else ranks
            per_row = hi - lo  # lookups per row (by columns: one per tree)
            if tables.columns is None:
                per_row = tables.lookup_feature[lo:hi].numel()
            step = max(1, _CHUNK // max(1, per_row))
            for a in range(0, n_rows, step):
                b = min(a + step, n_rows)
                keys[:, a:b] = tables.keys(paths, rows[a:b], below[:, a:b], dtype, lo, hi)
        elif bool(sel.any()):
            pack = _BitPacker(paths.split_tree[sel].numpy() - lo, paths.split_bit[sel].numpy(),
                              n_trees)  # fmt: skip
            router = paths.router
            if not bool(sel.all()):
                router = _router(router, np.nonzero(sel.numpy())[0])
            step = max(1, (_CHUNK >> 1) // max(1, int(sel.sum())))  # the router's temporaries
            keys_np = keys.numpy()
            for start in range(0, n_rows, step):
                left = router.goes_left(rows[start : start + step])  # [V, r]
                pack(left, dtype, out=keys_np[:, start : start + step])
        patterns = None
        if not bool(keyed[lo:hi].all()):
            if lo > 0 or hi < paths.n_trees:
                raise ValueError("a range of trees needs every tree keyed")
            patterns = decision_patterns(paths, rows)
            keys[~keyed] = torch.arange(n_rows, dtype=dtype)  # a class per row, in row order
        keyed = keyed[lo:hi]
        if one_sort:
            pos, key, count = _sorted_classes(keys)
            return _RowClasses(pos, key, count, patterns, lo)
        # direct trees' classes are their keys: every row at once, the keys' own tensor in
        # their own dtype (a boolean mask or an index over [T, R] costs 3-10x: XGBoost's
        # 100,000 rows 66-76 ms; no int64 copy of int32 keys either, ~15 ms a chunk there:
        # the dense row sums index by int32, the entry-by-entry ones convert a tree's row at
        # a time), the other trees' rows overwritten once their keys are read
        pos = keys
        count = torch.where(direct, 1 << splits.clamp(max=62), n_rows)
        sort = torch.nonzero(keyed & ~direct).squeeze(1)
        s_key = None
        if sort.numel() and n_rows < UNIQUE_FROM:
            s_pos, s_key, count[sort] = _sorted_classes(keys[sort])
            pos.index_copy_(0, sort, s_pos.to(pos.dtype))
        elif sort.numel():
            uniq = []
            for t in sort.tolist():
                u, pos[t] = torch.unique(keys[t], sorted=True, return_inverse=True)
                uniq.append(u)
            count[sort] = torch.tensor([u.numel() for u in uniq], dtype=torch.int64)
            s_key = torch.zeros(sort.numel(), int(count[sort].max()), dtype=dtype)
            for i, u in enumerate(uniq):
                s_key[i, : u.numel()] = u
        at = torch.nonzero(direct).squeeze(1)
        loose = torch.nonzero(~keyed).squeeze(1)  # keys and classes: the rows in order
        width = int(count.max()) if n_trees else 0  # n_rows where a tree is not keyed
        key = torch.zeros(n_trees, width, dtype=dtype)
        every = torch.arange(width, dtype=dtype)
        key.index_copy_(0, at, torch.where(every < count[at, None], every, 0))
        if loose.numel():  # their keys, rows in order, are their positions too
            key.index_copy_(0, loose, keys.index_select(0, loose))
        if s_key is not None:
            key[sort, : s_key.shape[1]] = s_key
        return _RowClasses(pos, key, count, patterns, lo)


#: The rows take each tree's values from a dense table over every target (one ``index_select``
#: of contiguous rows per tree) when the targets number at most this many times the trees'
#: mean entries, else entry by entry (a gather and an ``index_add`` per entry): one thread,
#: 42,000 rows, 100 trees, float64, a dense row element cost 1.5 ns against 12.6 ns per entry
#: and row, so dense wins up to about 8 targets per entry. In place (both paths in one
#: process, twice each, ``benchmarks/tree_vs_shapiq.py``'s models): k-SII order 2 of the
#: LightGBM diabetes booster on 10,000 rows 0.56-0.59 -> 0.45-0.47 s; Shapley values of the
#: LightGBM and XGBoost breast-cancer models on 100,000 rows and the forest on 10,000 within
#: the machine's noise (the row sums were not the large part there). Lowered from 8 to 4 once
#: the entries' sums stopped copying an ``[entries, rows]`` index (one process, best of 2, 8
#: / 4 / 2): k-SII order 2 of the breast-cancer booster on 10,000 rows 4.65 / 2.47 / 2.55 s
#: path-dependent, 8.37 / 7.03 / 7.40 s interventional, on 100 rows 0.20 / 0.16 / 0.17 s; the
#: forest's on 10,000 rows 4.5 / 4.3 / 4.0 s; the diabetes booster's on 100,000 rows 2.95 /
#: 2.87 / 3.47 s; Shapley values level (LightGBM, XGBoost, the forest on 10,000-30,000 rows).
DENSE_SPREAD = 4
#: Entry-by-entry row sums take a block's entries in one gather and one ``index_add`` (instead
#: of a pair of calls per tree) where its entries times rows (times outputs) stay within this
#: many per tree and within ``_CHUNK``.
#: One thread, best of 3, ``tree_shapley_values`` of the XGBoost breast-cancer classifier (100
#: trees, 3 entries each), per tree / 1,024 / 4,096 / 16,384 / always at once: 100 rows 6.0 /
#: 4.6 / 4.6 / 4.6 / 4.6 ms, 1,000 rows 9.0 / 9.0 / 7.8 / 7.8 / 7.8 ms, 10,000 rows 22.7 / 22.3
#: / 22.1 / 21.7 / 38.4 ms (the ``[entries, rows]`` index then costs more than the calls); the
#: LightGBM boosters and the forest (dense tables) level.
ROWS_AT_ONCE = 4096


def _accumulate(
    paths: TreePaths,
    groups: list[_Group],
    entries: _Entries,
    classes: _RowClasses,
    bpat: Tensor | None,
    order: int,
    out: Tensor,
    flat: Tensor | None,
    key_patterns: _KeyPatterns | None = None,
) -> None:
    """Adds the values of the classes' trees to the chunk's ``out [targets, O, R]``: every
    leaf's values for every class of its tree, summed per ``(tree, target)`` entry and class
    (``acc [E_b, O, U_b]``), then each row's class sums: into ``flat [R, targets * O]`` where
    the caller gives it (dense tables; the caller adds it to ``out`` after the chunk's last
    block of trees, so that every row sums its trees in order), else into ``out`` entry by
    entry. Trees go in blocks that bound ``acc``; ``key_patterns``: the keyed leaves' patterns
    by :class:`_KeyPatterns` (``None``: slot by slot)."""
    n_targets, n_out, n_rows = out.shape
    base = classes.lo  # the classes' trees: base .. end - 1
    end = base + classes.count.numel()
    dense = flat is not None
    t0 = base
    while t0 < end:
        # the block: trees t0 .. t1 - 1, acc [entries, O, most classes] (and the dense tables)
        # within budget
        most = torch.cummax(classes.count[t0 - base :], 0).values
        per_tree = torch.full_like(most, n_targets) if dense else entries.per_tree[t0:end]
        size = torch.cumsum(per_tree, 0) * most * n_out
        t1 = t0 + max(1, int(torch.searchsorted(size, _CHUNK, right=True)))
        width = int(most[t1 - t0 - 1])
        e0, e1 = int(entries.first[t0]), int(entries.first[t1])
        acc = torch.zeros(e1 - e0, n_out, width, dtype=torch.float64)
        patterns = None
        if key_patterns is not None and key_patterns.pays(t0, t1):
            patterns = key_patterns.block(classes.key[t0 - base : t1 - base, :width], t0, t1)
        for g in groups:
            lo = int(torch.searchsorted(g.tree, t0))
            hi = int(torch.searchsorted(g.tree, t1))
            if lo < hi:
                _leaf_classes(paths, g, lo, hi, classes, width, bpat, order, acc, e0,
                              patterns, t0)  # fmt: skip
        pos = classes.pos[t0 - base : t1 - base]  # [T_b, R]
        if flat is not None:
            # flat[r] += table[tree, class of r in the tree] for each tree of the block
            table = torch.zeros(t1 - t0, width, n_targets, n_out, dtype=torch.float64)
            table[entries.tree[e0:e1] - t0, :, entries.target[e0:e1]] = acc.transpose(1, 2)
            table = table.view(t1 - t0, width, n_targets * n_out)
            buf = torch.empty_like(flat)
            for t in range(t1 - t0):
                flat += torch.index_select(table[t], 0, pos[t], out=buf)
            t0 = t1
            continue
        # rows: out[target, :, r] += acc[entry, :, class of r in the entry's tree], tree by
        # tree (the tree's classes of the rows broadcast to its entries, not copied), in
        # pieces of about _CHUNK values
        step = max(1, _CHUNK // max(1, n_rows * n_out))
        if n_rows * (e1 - e0) * n_out <= min(ROWS_AT_ONCE * (t1 - t0), _CHUNK):
            where = pos[entries.tree[e0:e1] - t0][:, None, :].long().expand(-1, n_out, -1)
            out.index_add_(0, entries.target[e0:e1], acc.gather(2, where))
            t0 = t1
            continue
        for t in range(t1 - t0):
            first, last = int(entries.first[t0 + t]) - e0, int(entries.first[t0 + t + 1]) - e0
            at = pos[t].long()  # the tree's classes of the rows (gather takes int64 only)
            for a in range(first, last, step):
                b = min(a + step, last)
                where = at.view(1, 1, -1).expand(b - a, n_out, -1)
                out.index_add_(0, entries.target[e0 + a : e0 + b], acc[a:b].gather(2, where))
        t0 = t1


#: Groups deeper than ``LAZY_DEPTH``, and (orders 2 and 3) those whose ``2^d`` patterns
#: outnumber a pass's rows, build their tables leaf by leaf at first use (:class:`_LazyTables`),
#: where a leaf's classes show enough distinct patterns to pay for one (a right sibling folded
#: into its left one, as upfront); the others upfront. Rows meet few of a deep leaf's patterns
#: (the LightGBM breast-cancer booster's leaves of depth 10 / 13 see 217 / 502 distinct
#: patterns among 10,000 rows). In place, one thread, best of 3, ``LAZY_DEPTH`` 8 / 10 / 12 /
#: none: that booster's interventional Shapley values on 10,000 rows 0.59 / 0.56 / 0.62 / 0.65
#: s, on 100,000 rows 1.92 / 1.82 / 1.79 / 2.01 s, its k-SII order 2 on 10,000 rows 1.60 /
#: 1.61 / 1.62 / 1.65 s; the diabetes booster level. Its k-SII order 2 on 100 rows 0.48 ->
#: 0.32 s with the groups past a pass's rows lazy; for Shapley values those cost 8-37% at 100
#: rows (the forest, the boosters: order-1 tables are cheap, the decisions are not).
LAZY_TABLES = True
LAZY_DEPTH = 10
#: A table's cost per value (pattern times slot) by order, in rows times background patterns
#: computed one by one (:func:`_interventional_rows`): the LightGBM breast-cancer booster of
#: ``benchmarks/tree_vs_shapiq.py``, 16 leaves of each depth 8-14, one thread, the leaves'
#: distinct patterns among 100 and 10,000 rows (``_leaf_table`` against ``_leaf_rows`` on those
#: patterns, best of 3, 2026-12-07): a table value 17-35 ns (orders 1-3),
#: a row and background pattern 25-35 ns at order 1, 87-117 ns at order 2, 228-383 ns at order
#: 3; the ratios 0.5-1.4, 0.22-0.34 and 0.16-0.19.
TABLE_VALUE_COST = {1: 1.0, 2: 0.3, 3: 0.18}
#: The same for path-dependent leaves, against a row's pattern computed by itself (the same
#: booster and leaves): a table value 9-31 ns, a row's pattern 150-600 ns at order 1, 500-1,200
#: ns at order 2, 1,200-5,500 ns at order 3; the ratios 0.02-0.11, 0.008-0.027, 0.005-0.012.
TABLE_VALUE_COST_PATH_DEPENDENT = {1: 0.05, 2: 0.015, 3: 0.007}


def _background_cost(bkeys: Tensor, d: int) -> Tensor:
    """``float64 [L]``: the background patterns a row costs at each leaf of ``bkeys [L, M]``
    (its distinct ones where :func:`_interventional_rows` sums over those)."""
    n_leaves, m = bkeys.shape
    distinct = torch.zeros(n_leaves, dtype=torch.int64)
    per = max(1, _CHUNK // max(1, m << min(d, 3)))  # the leaves' sorts or maps within _CHUNK
    for start in range(0, n_leaves if m else 0, per):
        at = _distinct_patterns(bkeys[start : start + per].long(), d)[1]
        distinct[start : start + per] = at.max(dim=1).values + 1
    return torch.where(distinct <= DISTINCT_BACKGROUNDS * m, distinct, m).double()


def _lazy_leaves(paths: TreePaths, g: _Group, a: int, b: int, keys: Tensor,
                 bpat: Tensor | None, order: int, acc: Tensor, e0: int) -> None:
    """Adds the values of a lazily tabled group's leaves ``a .. b - 1`` for the classes'
    patterns ``keys [l, U]`` to ``acc``: first builds the tables of the leaves whose distinct
    patterns (times the row passes) pay for them, then gathers the built tables' values and
    computes the others once per distinct pattern."""
    lazy = g.lazy
    assert lazy is not None and g.entry is not None
    d, n_vals = g.d, lazy.table.shape[1]
    distinct = at = None
    build = ~lazy.built[a:b]
    if bool(build.any()):  # else every table comes from an earlier pass
        distinct, at = _distinct_patterns(keys, d)  # [l, V], [l, U]
        count = at.max(dim=1).values + 1 if keys.shape[1] else torch.zeros_like(at[:, 0])
        costs = TABLE_VALUE_COST if lazy.interventional else TABLE_VALUE_COST_PATH_DEPENDENT
        table_cost = (1 << d) * g.target.shape[1] * costs[order]
        build &= table_cost <= lazy.passes * count * lazy.background[a:b]
    if bool(build.any()):
        # in pieces of about _CHUNK values: the tables written in place where the piece's
        # leaves are contiguous, the right siblings' (the last bit flipped) added to them
        sel = torch.nonzero(build).squeeze(1) + a
        for leaf in sel.split(max(1, _CHUNK // (n_vals << d))):
            lo, hi = int(leaf[0]), int(leaf[-1]) + 1
            if hi - lo == leaf.numel():
                _leaf_table(paths, g.idx[leaf], d, bpat, order, out=lazy.table[lo:hi])
            else:
                lazy.table[leaf] = _leaf_table(paths, g.idx[leaf], d, bpat, order)
            paired = leaf[lazy.partner[leaf] >= 0]
            if paired.numel():
                right = _leaf_table(paths, lazy.partner[paired], d, bpat, order)
                shape = (paired.numel(), n_vals, 2, 1 << (d - 1))
                lazy.table[paired] += right.view(shape).flip(2).view(right.shape)
        lazy.built[sel] = True
    built = lazy.built[a:b]
    for part, tabled in ((torch.nonzero(built).squeeze(1), True),
                         (torch.nonzero(~built).squeeze(1), False)):
        if not part.numel():
            continue
        if tabled and part.numel() == b - a:
            vals = _gather_patterns(lazy.table[a:b], keys)  # [l, W * O, U]
        elif tabled:  # the built leaves' tables read in place, not copied out
            first = ((part + a) * n_vals)[:, None] + torch.arange(n_vals)  # [l', W * O]
            index = (first[:, :, None] << d) + keys[part][:, None, :]
            vals = lazy.table.view(-1).take(index)  # [l', W * O, U]
        else:
            assert distinct is not None and at is not None
            vals = _distinct_rows(paths, g.idx[part + a], d, distinct[part], at[part], bpat,
                                  order, lazy.partner[part + a])  # fmt: skip
        acc.index_add_(0, g.entry[part + a].reshape(-1) - e0, vals.reshape(-1, *acc.shape[1:]))


def _gather_patterns(table: Tensor, keys: Tensor) -> Tensor:
    """``[l, W * O, U]``: tables ``[l, W * O, 2^d]`` read at each class's pattern ``keys [l,
    U]``."""
    return table.gather(2, keys[:, None, :].expand(-1, table.shape[1], -1))


def _distinct_rows(paths: TreePaths, idx: Tensor, d: int, distinct: Tensor, at: Tensor,
                   bpat: Tensor | None, order: int, partner: Tensor | None = None) -> Tensor:
    """``[l, W * O, U]``: the leaves' values computed once per distinct pattern ``distinct [l,
    V]`` and gathered back to the classes (``at [l, U]``); ``partner``: each leaf's right
    sibling folded into it (its patterns the leaf's with the last bit flipped), or ``-1``."""
    distinct = distinct[:, : int(at.max()) + 1] if at.numel() else distinct[:, :0]
    vals = _leaf_rows(paths, idx, d, distinct, bpat, order)  # [l, V, W, O]
    if partner is not None:
        paired = torch.nonzero(partner >= 0).squeeze(1)
        if paired.numel():  # the right siblings at their patterns
            flipped = distinct[paired] ^ (1 << (d - 1))
            vals[paired] += _leaf_rows(paths, partner[paired], d, flipped, bpat, order)
    vals = vals.flatten(2).transpose(1, 2).contiguous()  # [l, W * O, V]
    return vals.gather(2, at[:, None, :].expand(-1, vals.shape[1], -1))


#: Leaves without a table compute their values once per distinct pattern among the classes
#: (padded to the most distinct patterns of a leaf in the piece) and gather them back, as from
#: a table: a deep leaf sees few of its tree's classes' patterns.
DISTINCT_PATTERNS = True


def _leaf_classes(
    paths: TreePaths,
    g: _Group,
    lo: int,
    hi: int,
    classes: _RowClasses,
    width: int,
    bpat: Tensor | None,
    order: int,
    acc: Tensor,
    e0: int,
    patterns: Tensor | None = None,
    t0: int = 0,
) -> None:
    """Adds the values of the group's leaves ``lo .. hi - 1`` for the first ``width`` classes
    of their trees to ``acc [E_b, O, width]`` (in pieces of about ``_CHUNK`` values);
    ``patterns``: the block's keyed patterns from tree ``t0`` on (:meth:`_KeyPatterns.block`)."""
    d = g.d
    n_vals = g.target.shape[1] * acc.shape[1]  # W * O
    step = max(1, _CHUNK // (width * max(d, n_vals)))
    for a in range(lo, hi, step):
        b = min(a + step, hi)
        if g.keyed and patterns is not None:
            assert g.local is not None
            at = (g.tree[a:b] - t0) * patterns.shape[1] + g.local[a:b]
            keys = patterns.view(-1, width).index_select(0, at).long()  # [l, U]
        elif g.keyed:
            assert g.mask is not None and g.need is not None
            key = classes.key[g.tree[a:b] - classes.lo, :width]  # [l, U]
            keys = _follow_patterns(key, g.mask[a:b], g.need[a:b])
        else:
            assert classes.patterns is not None
            keys = classes.patterns[paths.leaf[g.idx[a:b]]].long()  # [l, R]
            keys = torch.nn.functional.pad(keys, (0, width - keys.shape[1]))
        if g.lazy is not None:
            _lazy_leaves(paths, g, a, b, keys, bpat, order, acc, e0)
            continue
        if g.table is not None:  # [l, W * O, 2^d] gathered at each class's pattern
            vals = _gather_patterns(g.table[a:b], keys)  # [l, W * O, U]
        elif DISTINCT_PATTERNS:  # values once per distinct pattern of a leaf, gathered back
            distinct, at = _distinct_patterns(keys, d)  # [l, V], [l, U]
            vals = _distinct_rows(paths, g.idx[a:b], d, distinct, at, bpat, order)
        else:
            vals = _leaf_rows(paths, g.idx[a:b], d, keys, bpat, order)  # [l, U, W, O]
            vals = vals.flatten(2).transpose(1, 2)
        assert g.entry is not None
        acc.index_add_(0, g.entry[a:b].reshape(-1) - e0, vals.reshape(-1, *acc.shape[1:]))


def _follow_patterns(key: Tensor, mask: Tensor, need: Tensor) -> Tensor:
    """``int64 [l, U]``: bit ``j`` set where ``key [l, U] & mask[:, j] == need[:, j]`` (``mask``,
    ``need`` ``[l, d]``), slot by slot into reused buffers. Against the ``[l, U, d]`` conditions
    packed by a product with the powers of two (one thread, 256 leaves, 4,000 classes, 6
    slots): 39 -> 10 ms; bitwise equal. Up to 8 slots the bits add up in bytes (the 0/1
    conditions read as bytes, no conversion per slot; 256 leaves, 10,000 classes, 6 slots,
    int64 keys: 50-69 -> 21-22 ms)."""
    d = mask.shape[1]
    out = torch.zeros(key.shape, dtype=torch.uint8 if d <= 8 else torch.int64)
    part = torch.empty(key.shape, dtype=key.dtype)
    hit = torch.empty(key.shape, dtype=torch.bool)
    bits = hit.view(torch.uint8) if d <= 8 else hit
    for j in range(d):
        torch.bitwise_and(key, mask[:, j : j + 1], out=part)
        torch.eq(part, need[:, j : j + 1], out=hit)
        out.add_(bits, alpha=1 << j)
    return out.long()


def _pair_siblings(paths: TreePaths, idx: Tensor) -> tuple[Tensor, Tensor]:
    """The group's leaves ``idx`` without the right siblings that :func:`_merge_siblings` folds
    into their left ones, and each kept leaf's right sibling's path position (else ``-1``)."""
    sibling = paths.sibling[idx]
    inside = torch.zeros(paths.leaf.numel(), dtype=torch.bool)
    inside[idx] = True
    partner = torch.where((sibling >= 0) & inside[sibling.clamp(min=0)], sibling, -1)
    right = torch.zeros(paths.leaf.numel(), dtype=torch.bool)
    right[partner[partner >= 0]] = True
    keep = ~right[idx]
    return idx[keep], partner[keep]


def _merge_siblings(paths: TreePaths, idx: Tensor, d: int, table: Tensor) -> tuple[Tensor, Tensor]:
    """Folds each right sibling's table into its left sibling's: ``(table, idx)`` without them
    (``table [L_g, W * O, 2^d]``).

    The right leaf's pattern is the left one's with the last bit (the parent's split feature,
    slot ``d - 1``) flipped, and the two have the same features in the same slots.
    """
    sibling = paths.sibling[idx]
    has = sibling >= 0
    if not bool(has.any()):
        return table, idx
    local = torch.full((paths.leaf.numel(),), -1, dtype=torch.int64)
    local[idx] = torch.arange(idx.numel())
    left, right = torch.nonzero(has).squeeze(1), local[sibling[has]]
    tab = table.view(idx.numel(), table.shape[1], 2, 1 << (d - 1))  # [L_g, W, bit d-1, rest]
    tab[left] += tab[right].flip(2)
    keep = torch.ones(idx.numel(), dtype=torch.bool)
    keep[right] = False
    return table[keep], idx[keep]


def _table_is_cheaper(d: int, work: float, interventional: bool) -> bool:
    """Whether a table over all ``2^d`` patterns costs less than ``work`` rows (or row and
    background pairs) computed one by one: a pattern costs about what a row costs
    (path-dependent, measured), or ``d`` row-background pairs (interventional: one
    superset-sum pass per feature instead of one pass per background row).

    Path-dependent tables up to ``2^d <= work`` (was ``4 work``): in place, best of 2-3, the
    benchmark's LightGBM and forest models at 100 and 10,000 rows, k-SII order 2 of the
    breast-cancer booster on 100 rows 235 -> 179 ms, the forest's on 10,000 rows 2.95 ->
    2.68 s, the other cells level (within 5%). The interventional rule stays: a quarter of it
    was 17% faster on the breast-cancer booster's 100 rows and 4-7% slower on its 10,000."""
    if interventional:
        return (1 << d) * d <= work
    return (1 << d) <= work


def _pair_ids(paths: TreePaths) -> tuple[Tensor, Tensor]:
    """The feature pairs sharing a path, ``int64 [P, 2]``, and ``[n, n]`` ids into them."""
    n = paths.n_features
    keys = []
    for d in torch.unique(paths.n_slots).tolist():
        feat = paths.feature[paths.n_slots == d, :d]
        j, k = _pairs(d)
        a, b = feat[:, j], feat[:, k]
        keys.append((torch.minimum(a, b) * n + torch.maximum(a, b)).reshape(-1))
    uniq = torch.unique(torch.cat(keys)) if keys else torch.zeros(0, dtype=torch.int64)
    pairs = torch.stack([uniq // n, uniq % n], dim=1)
    pair_of = torch.full((n, n), -1, dtype=torch.int64)
    ids = torch.arange(uniq.numel()) + n  # targets after the n single features
    pair_of[pairs[:, 0], pairs[:, 1]] = ids
    pair_of[pairs[:, 1], pairs[:, 0]] = ids
    return pairs, pair_of


def _triple_ids(paths: TreePaths) -> tuple[Tensor, Tensor]:
    """The feature triples sharing a path, ``int64 [Q, 3]`` (increasing within a triple,
    triples in lexicographic order), and their sorted keys ``(i n + j) n + l`` ``[Q]``."""
    n = paths.n_features
    keys = []
    for d in torch.unique(paths.n_slots).tolist():
        feat = paths.feature[paths.n_slots == d, :d]
        if d >= 3:
            keys.append(_triple_keys(feat, d, n).reshape(-1))
    uniq = torch.unique(torch.cat(keys)) if keys else torch.zeros(0, dtype=torch.int64)
    triples = torch.stack([uniq // (n * n), uniq // n % n, uniq % n], dim=1)
    return triples, uniq


def _triple_keys(feat: Tensor, d: int, n: int) -> Tensor:
    """``[L, d (d-1) (d-2) / 6]``: the key ``(i n + j) n + l`` (``i < j < l``) of the features
    in each slot triple of :func:`_triples` of leaves with path features ``feat [L, d]``."""
    i3, j3, l3 = _triples(d)
    sets = torch.stack([feat[:, i3], feat[:, j3], feat[:, l3]], dim=2).sort(dim=2).values
    return (sets[..., 0] * n + sets[..., 1]) * n + sets[..., 2]


def _triple_targets(feat: Tensor, d: int, keys: Tensor, n: int) -> Tensor:
    """Positions in the sorted triple ``keys`` of the leaves' slot triples ``[L, T]``."""
    return torch.searchsorted(keys, _triple_keys(feat, d, n))


def _leaf_table(
    paths: TreePaths, idx: Tensor, d: int, bpat: Tensor | None, order: int,
    out: Tensor | None = None,
) -> Tensor:
    """``[L_g, width * O, 2^d]``: each leaf's value times its table over all patterns, slot-major
    (a class's values are gathered along the patterns); into ``out`` where given."""
    width = _width(d, order)
    n_out = paths.value.shape[1]
    per = max(1, _CHUNK // ((1 << d) * (width + d) * max(d // 2, 1, 0 if bpat is None else d)))
    if out is None:
        out = torch.empty(idx.numel(), width * n_out, 1 << d, dtype=torch.float64)
    view = out.view(idx.numel(), width, n_out, 1 << d)
    for start in range(0, idx.numel(), per):
        sel = idx[start : start + per]
        if bpat is None:
            tab = _path_dependent_table(paths.zero_fraction[sel, :d], order).transpose(1, 2)
        else:
            tab = _interventional_table(bpat[sel].long(), d, order)  # [l, width, 2^d]
        torch.mul(tab[:, :, None, :], paths.value[sel][:, None, :, None],
                  out=view[start : start + sel.numel()])  # fmt: skip
    return out


def _leaf_rows(
    paths: TreePaths, idx: Tensor, d: int, keys: Tensor, bpat: Tensor | None, order: int
) -> Tensor:
    """``[L_g, R_c, width, O]``: the group's leaf values for the rows' patterns."""
    n_rows = keys.shape[1]
    width = _width(d, order)
    cost = (width + d) * max(d // 2, 1) if bpat is None else bpat.shape[1] * (width + d)
    per = max(1, _CHUNK // max(1, n_rows * cost))
    cols = n_rows if n_rows * cost <= _CHUNK else max(1, _CHUNK // cost)  # one leaf's rows
    parts = []
    for start in range(0, idx.numel(), per):
        sel = idx[start : start + per]
        vals = []
        for c in range(0, max(n_rows, 1), cols):
            k = keys[start : start + per, c : c + cols]
            if bpat is None:
                vals.append(_path_dependent_rows(paths.zero_fraction[sel, :d], k, order))
            else:
                vals.append(_interventional_rows(bpat[sel].long(), k, d, order))
        val = torch.cat(vals, dim=1) if len(vals) > 1 else vals[0]
        parts.append(val[..., None] * paths.value[sel][:, None, None, :])
    return torch.cat(parts)
