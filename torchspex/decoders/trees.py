"""Exact Fourier spectra of tree ensembles (LightGBM, scikit-learn, XGBoost).

For a mask ``m`` (True = feature kept) a node splitting on feature ``i`` passes a row down to a
child ``c`` with weight ``g_c(m_i) = m_i k_c + (1 - m_i) w_c``, where ``k_c = 1`` when ``c`` is
the child the *kept* value takes and ``w_c`` is the weight the *removal rule* gives ``c``
(``1[c`` is the baseline's child``]`` for interventional masking, ``cover_c / cover_node`` for
path-dependent masking). With ``chi_i = (-1)^{m_i}``,

.. math:: g_c = \\frac{k_c + w_c}{2} + \\frac{w_c - k_c}{2}\\,\\chi_i ,

so a leaf contributes its value times the product of these factors along its path. Factors on
the same feature are multiplied first (``chi_i^2 = 1``, so a feature split twice on a path is
exact), factors independent of ``m_i`` fold into a scalar, and the product over the remaining
``k`` distinct features expands into ``2^k`` Fourier terms. All leaves of all trees (and all
explained rows) are expanded at once, grouped by ``k``, and summed with one ``coalesce``.

For one 0/1 baseline (:func:`tree_ensemble_to_fourier`, the proxies of ProxySPEX and of the
regression decoder) over up to :data:`_LEAF_KEY_FEATURES` features a leaf is its value times
an indicator of the bits its path fixes; the leaves fixing the same set of bits are one table
over those bits' values, whose Walsh-Hadamard transform is their Fourier terms
(:func:`_binary_leaf_spectrum`; tables too large for that go to the Fourier basis one feature
at a time, merging equal terms after each, which never expands a deep leaf into its ``2^k``
terms on its own).

References:
    Gorji et al., "Amortized SHAP values via sparse Fourier function approximation" (2024);
    Butler et al., "ProxySPEX" (NeurIPS 2025); Lundberg et al., "From local explanations to
    global understanding with explainable AI for trees" (2020) for path-dependent masking.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from torchspex.decoders._tree_parsers import TreeEnsemble, parse_tree_ensemble
from torchspex.fourier import SparseSpectrum
from torchspex.fourier._sets import coalesce, row_keys, support_to_indices

__all__ = ["TreeEnsemble", "parse_tree_ensemble", "tree_ensemble_to_fourier", "tree_spectrum"]

#: Largest number of distinct features on one root-to-leaf path (2^k terms per leaf).
MAX_PATH_FEATURES = 20
#: Elements of one expansion chunk (terms x columns).
_CHUNK = 1 << 22
_PAD = torch.iinfo(torch.int64).max


def _depths_and_paths(ens: TreeEnsemble) -> tuple[np.ndarray, np.ndarray]:
    """Depth ``[N]`` of every node, and for internal nodes the path ``[V, D]`` of nodes from
    the node itself up to (excluding) the root, ``-1`` padded; row ``v`` of the path lists the
    edges ``parent(u) -> u`` above internal node ``v``."""
    n = len(ens.feature)
    parent = np.full(n, -1, dtype=np.int64)
    internal = np.nonzero(ens.left >= 0)[0]
    parent[ens.left[internal]] = internal
    parent[ens.right[internal]] = internal
    cols = []
    cur = internal
    while True:
        up = np.where(cur >= 0, parent[np.maximum(cur, 0)], -1)
        on_path = up >= 0
        if not on_path.any():
            break
        cols.append(np.where(on_path, cur, -1))
        cur = up
    path = np.stack(cols, axis=1) if cols else np.zeros((len(internal), 0), dtype=np.int64)
    depth = np.zeros(n, dtype=np.int64)
    depth[internal] = (path >= 0).sum(axis=1)
    leaves = ens.left < 0
    has_parent = parent >= 0
    depth[leaves & has_parent] = depth[parent[leaves & has_parent]] + 1
    return depth, path


def _edge_factors(
    ens: TreeEnsemble, kept_left: np.ndarray, removed_left: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per node ``u`` (as a child of ``p``): split feature of ``p`` and ``A[u], B[u]`` ``[N, C]``.

    ``kept_left [N, C]`` says whether the kept value goes left at each node; ``removed_left
    [N, C]`` is the weight of the left child under the removal rule.
    """
    n = len(ens.feature)
    internal = np.nonzero(ens.left >= 0)[0]
    cols = max(kept_left.shape[1], removed_left.shape[1])
    k = np.zeros((n, cols))
    w = np.zeros((n, cols))
    kl = np.broadcast_to(kept_left[internal].astype(np.float64), (len(internal), cols))
    wl = np.broadcast_to(removed_left[internal].astype(np.float64), (len(internal), cols))
    k[ens.left[internal]] = kl
    k[ens.right[internal]] = 1.0 - kl
    w[ens.left[internal]] = wl
    w[ens.right[internal]] = 1.0 - wl
    feat = np.full(n, -1, dtype=np.int64)
    feat[ens.left[internal]] = ens.feature[internal]
    feat[ens.right[internal]] = ens.feature[internal]
    return feat, (k + w) / 2, (w - k) / 2


def _subtree_constants(ens: TreeEnsemble, depth: np.ndarray, a: np.ndarray) -> np.ndarray:
    """``const[v]``: the subtree's ``F(∅)`` (sum of leaf values times ``prod A``), ``[N, C, O]``."""
    const = np.broadcast_to(ens.value[:, None, :], (len(depth), a.shape[1], ens.n_outputs)).copy()
    internal = ens.left >= 0
    for d in range(int(depth.max(initial=0)), -1, -1):
        nodes = np.nonzero(internal & (depth == d))[0]
        if nodes.size == 0:
            continue
        lc, rc = ens.left[nodes], ens.right[nodes]
        const[nodes] = a[lc][..., None] * const[lc] + a[rc][..., None] * const[rc]
    return const


def _patterns(k: int) -> Tensor:
    """Ascending positions of the set bits of each ``p < 2^k``, padded with ``k``: ``[2^k, k]``."""
    p = torch.arange(1 << k).unsqueeze(1)
    bits = ((p >> torch.arange(k)) & 1).bool()
    pos = torch.where(bits, torch.arange(k), k)
    return pos.sort(dim=1).values


def _expand_chunk(
    feat: Tensor, a: Tensor, b: Tensor, own: Tensor, weight: Tensor, width: int
) -> tuple[Tensor, Tensor]:
    """Expands nodes with ``k`` free path features (``feat [r, k]``) and a fixed one ``own [r]``.

    ``a, b [r, k, C]``, ``weight [r, C, O]`` -> ``(indices [r 2^k, width] sorted rows,
    coefficients [r 2^k, C, O])``.
    """
    r, k = feat.shape
    coef = torch.ones(r, 1, a.shape[2], dtype=a.dtype)
    for j in range(k):  # term p holds B_j iff bit j of p is set
        coef = torch.cat([coef * a[:, j : j + 1], coef * b[:, j : j + 1]], dim=1)
    src = torch.cat([feat, torch.full((r, 1), -1, dtype=torch.long)], dim=1)
    sets = src[:, _patterns(k)]  # [r, 2^k, k]
    parts = [sets, own[:, None, None].expand(r, 1 << k, 1)]
    if width > k + 1:
        parts.append(torch.full((r, 1 << k, width - k - 1), -1, dtype=torch.long))
    sets = torch.cat(parts, dim=2)[..., :width].reshape(r << k, width)
    sets = torch.where(sets < 0, _PAD, sets).sort(dim=1).values
    sets = torch.where(sets == _PAD, -1, sets)
    coef = coef.unsqueeze(-1) * weight[:, None]
    return sets, coef.reshape(r << k, *coef.shape[2:])


def _sum_terms(
    chunks: list[tuple[Tensor, Tensor]], n_features: int, width: int
) -> tuple[Tensor, Tensor]:
    """Sums duplicate terms over all chunks; canonical order (size, then lexicographic)."""
    base = n_features + 1
    if width == 0 or base**width >= 2**62:
        idx, coef = coalesce(torch.cat([c[0] for c in chunks]), torch.cat([c[1] for c in chunks]),
                             n_features)
        return idx, coef
    parts = [row_keys(c[0], n_features) for c in chunks]
    assert all(k is not None for k in parts)  # width is below the overflow bound (above)
    keys = torch.cat([k for k in parts if k is not None])
    coef = torch.cat([c[1] for c in chunks])
    uniq, inverse = torch.unique(keys, sorted=True, return_inverse=True)
    out = torch.zeros((uniq.shape[0], *coef.shape[1:]), dtype=coef.dtype)
    out.index_add_(0, inverse, coef)
    power = base ** torch.arange(width - 1, -1, -1)
    idx = (uniq[:, None] // power) % base - 1
    order = torch.argsort((idx >= 0).sum(dim=1), stable=True)
    return idx[order], out[order]


def tree_spectrum(
    ensemble: TreeEnsemble, kept_left: np.ndarray, removed_left: np.ndarray, n_features: int
) -> tuple[Tensor, Tensor]:
    """Fourier spectrum of a tree ensemble under a general keep/remove routing.

    With ``const[v]`` the subtree's constant term (``F(∅)`` of the subtree below ``v``), the
    ensemble equals ``sum_trees const[root] + sum_v w_v chi_{f_v} prod_{edges above v}
    (A + B chi)`` over internal nodes ``v``, ``w_v = B_left (const[left] - const[right])``.
    So every internal node expands into ``2^k`` terms (``k`` distinct features above it).

    Args:
        ensemble: the parsed trees.
        kept_left: ``bool [N, C]``: at each node, whether the kept (explained) value goes left,
            for each of ``C`` columns (explained rows, or row/baseline pairs).
        removed_left: ``float64 [N, C]`` or ``[N, 1]``: weight of the left child when the split
            feature is removed (0/1 for a baseline row, cover share for path-dependent).
        n_features: number of features ``n``.

    Returns:
        ``(indices int64 [s, d], coefficients float64 [s, C, O])``, coalesced, in canonical
        order; the ensemble's ``base`` is included in the empty set (always the first term).
    """
    ens = ensemble
    depth, path = _depths_and_paths(ens)
    feat_of, a_of, b_of = _edge_factors(ens, kept_left, removed_left)
    cols, n_out = a_of.shape[1], ens.n_outputs
    const = _subtree_constants(ens, depth, a_of)
    internal = np.nonzero(ens.left >= 0)[0]
    lc, rc = ens.left[internal], ens.right[internal]
    weight_np = b_of[lc][..., None] * (const[lc] - const[rc])  # [V, C, O]
    empty = const[ens.roots].sum(axis=0) + ens.base  # [C, O]
    # nodes whose split does not depend on the mask (w_v == 0) contribute nothing
    live_np = (weight_np != 0).reshape(len(internal), cols * n_out).any(axis=1)
    internal, path, weight_np = internal[live_np], path[live_np], weight_np[live_np]
    weight = torch.from_numpy(weight_np)
    # the fixed factor chi_{f_v} is one more factor (A, B) = (0, 1) on the node's own feature
    full = np.concatenate([path, np.full((len(internal), 1), -2)], axis=1)
    valid = torch.from_numpy(full != -1)
    safe = np.maximum(full, 0)
    feat = torch.from_numpy(np.where(full >= 0, feat_of[safe], -1))
    feat[:, -1] = torch.from_numpy(ens.feature[internal])
    a = torch.from_numpy(a_of[safe])
    b = torch.from_numpy(b_of[safe])
    a[:, -1], b[:, -1] = 0.0, 1.0
    a = a.masked_fill(~valid.unsqueeze(-1), 1.0)  # [V, D + 1, C]
    b = b.masked_fill(~valid.unsqueeze(-1), 0.0)
    feat = torch.where(valid, feat, _PAD)
    feat, a, b = _sort_levels(feat, a, b)
    # merge factors on the same feature: (a0 + b0 chi)(a1 + b1 chi), chi^2 = 1
    for j in range(1, feat.shape[1]):
        dup = (feat[:, j] == feat[:, j - 1]) & (feat[:, j] != _PAD)
        if not bool(dup.any()):
            continue
        a0, b0 = a[:, j - 1].clone(), b[:, j - 1].clone()
        a1, b1 = a[:, j].clone(), b[:, j].clone()
        d = dup.unsqueeze(-1)
        a[:, j] = torch.where(d, a0 * a1 + b0 * b1, a1)
        b[:, j] = torch.where(d, a0 * b1 + b0 * a1, b1)
        a[:, j - 1] = torch.where(d, 1.0, a0)
        b[:, j - 1] = torch.where(d, 0.0, b0)
        feat[:, j - 1] = torch.where(dup, _PAD, feat[:, j - 1])
    # factors independent of the mask (b == 0) fold into the weight; pure chi factors (a == 0)
    # are fixed members of every term of the node
    inert = (b == 0).all(dim=-1) | (feat == _PAD)
    fixed = ((a == 0).all(dim=-1) & ~inert)
    factor = torch.where(inert.unsqueeze(-1), a, torch.where(fixed.unsqueeze(-1), b, 1.0))
    weight = weight * factor.prod(dim=1).unsqueeze(-1)
    # only the node's own (possibly merged) factor can be a pure chi: an edge factor g(m) has
    # g(0), g(1) >= 0, so a == 0 forces b == 0 there
    assert not bool((fixed.sum(dim=1) > 1).any())
    own = torch.where(fixed, feat, _PAD).min(dim=1).values
    own = torch.where(own == _PAD, -1, own)
    free = ~inert & ~fixed
    feat = torch.where(free, feat, _PAD)
    feat, a, b = _sort_levels(feat, a, b)
    sizes = free.sum(dim=1)
    live = weight.flatten(1).ne(0).any(dim=1)
    width = int((sizes + (own >= 0))[live].max()) if bool(live.any()) else 0
    if width > MAX_PATH_FEATURES:
        raise ValueError(
            f"a node depends on {width} distinct features, i.e. 2^{width} Fourier terms; the "
            f"exact read-out supports at most {MAX_PATH_FEATURES}. Limit the tree depth "
            "(e.g. max_depth) or explain fewer features."
        )
    chunks = [(torch.full((1, width), -1, dtype=torch.long), torch.from_numpy(empty)[None])]
    for k in torch.unique(sizes[live]).tolist():
        rows = torch.nonzero(live & (sizes == k)).squeeze(1)
        step = max(1, _CHUNK // ((1 << k) * cols * n_out))
        for start in range(0, rows.shape[0], step):
            sel = rows[start : start + step]
            idx, coef = _expand_chunk(feat[sel, :k], a[sel, :k], b[sel, :k], own[sel],
                                      weight[sel], width)
            keep = coef.flatten(1).ne(0).any(dim=1)
            chunks.append((idx[keep], coef[keep]))
    idx, coef = _sum_terms(chunks, n_features, width)
    keep = coef.flatten(1).ne(0).any(dim=1)
    keep[0] = True  # the constant term stays (first in canonical order)
    idx = idx[keep]  # rows are sorted with -1 padding last: trim unused columns
    used = int((idx >= 0).sum(dim=1).max()) if idx.shape[1] else 0
    return idx[:, :used].contiguous(), coef[keep]


#: The leaf read-out (:func:`_binary_leaf_spectrum`) up to this many features, the node
#: expansion (:func:`tree_spectrum`) above: its feature-by-feature fallback keys a term by two
#: masks of ``n`` bits in one int64. The leaf read-out was the faster one at every size up to
#: there (``python benchmarks/tree_readout.py``, results/tree_readout.json: LightGBM boosters on
#: 0/1 masks, depth 8 with 32 / 256 leaves and depth 6 with 64, leaf / expansion ms, one
#: thread): n = 14: 12 / 123, 20 / 482, 8 / 139; n = 20: 34 / 133, 65 / 352, 28 / 99; n = 30:
#: 82 / 99, 277 / 435, 68 / 105. (The feature-by-feature merge it replaced lost from about 20
#: features on: 100 / 95 at n = 20, 241 / 103 at n = 30.)
_LEAF_KEY_FEATURES = 31


def _binary_leaf_masks(
    ens: TreeEnsemble, kept_left: np.ndarray, removed_left: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every reachable leaf as ``(fixed int64 [L], kept int64 [L], value [L, O])`` for 0/1
    routing.

    Bit ``f`` of ``fixed`` says the leaf's path fixes mask bit ``m_f``, bit ``f`` of ``kept``
    to which value (1: kept); features the path never reads are free. Built top-down, one tree
    level at a time; a leaf whose path needs both values of one bit is unreachable and dropped.
    """
    node = ens.roots.copy()
    fixed = np.zeros(node.shape, dtype=np.int64)
    kept = np.zeros(node.shape, dtype=np.int64)
    out_fixed, out_kept, values = [], [], []
    while node.size:
        leaf = ens.left[node] < 0
        out_fixed.append(fixed[leaf])
        out_kept.append(kept[leaf])
        values.append(ens.value[node[leaf]])
        node, fixed, kept = node[~leaf], fixed[~leaf], kept[~leaf]
        if not node.size:
            break
        bit = np.left_shift(1, ens.feature[node])
        is_fixed = (fixed & bit) != 0
        is_kept = (kept & bit) != 0
        kept_l, removed_l = kept_left[node], removed_left[node]
        children, child_fixed, child_kept = [], [], []
        for child, m1, m0 in ((ens.left[node], kept_l, removed_l),
                              (ens.right[node], ~kept_l, ~removed_l)):  # fmt: skip
            # the child is reached for m_f = 1 (m1), for m_f = 0 (m0), or both
            both = m1 & m0
            ok = both | ((m1 | m0) & (~is_fixed | (is_kept == m1)))
            fix = ~both & ~is_fixed  # the path fixes m_f here, to m1
            children.append(child[ok])
            child_fixed.append((fixed | np.where(fix, bit, 0))[ok])
            child_kept.append((kept | np.where(fix & m1, bit, 0))[ok])
        node = np.concatenate(children)
        fixed, kept = np.concatenate(child_fixed), np.concatenate(child_kept)
    return np.concatenate(out_fixed), np.concatenate(out_kept), np.concatenate(values)


#: The leaf read-out's tables (:func:`_binary_leaf_spectrum`): at most this many values
#: (``2^|R|`` for every distinct set ``R`` of bits a leaf fixes, times the outputs) before it
#: takes the bits one feature at a time instead (:func:`_leaf_spectrum_by_feature`), whose work
#: is bounded by the spectrum it builds rather than by ``2^depth`` per leaf (deep trees). The
#: proxies' depth-8 trees of 32 leaves stay far below: 400 of them over 13-14 features fix
#: 2,560-3,652 distinct sets, 148,466-237,184 entries (the regression's proxies of the MLP on
#: wine and MiniLM at 2,048 calls).
_LEAF_TABLE_ENTRIES = 1 << 22
#: Up to this many features the leaf read-out sums its terms in a dense array over all ``2^n``
#: sets (8 MiB per output at 20) where that array has at most ``_DENSE_SPREAD`` entries per
#: term summed into it (and at most ``_LEAF_TABLE_ENTRIES`` values over all outputs), else by
#: sorting the terms' masks: a small tree over 20 features, or a 64-class one, would otherwise
#: pay for (and allocate) the whole array. Dense / sorted ms by ``2^n`` per term (a /tmp
#: script, one thread; the regression's proxies and single sklearn trees): 0.06 (the MLP's
#: 2,048-call proxy) 8.5 / 11.1; 6.7-21 level (1.2 / 1.3, 0.7 / 0.7, 2.1 / 2.1); 62 (a depth-8
#: tree over 20 features) 13.7 / 4.0; 21,845 (depth 4) 11.9 / 0.9.
_DENSE_FEATURES = 20
_DENSE_SPREAD = 4


def _binary_leaf_spectrum(
    ens: TreeEnsemble, kept_left: np.ndarray, removed_left: np.ndarray, n_features: int
) -> tuple[Tensor, Tensor]:
    """:func:`tree_spectrum` for one column of 0/1 routing (a baseline row), from the leaves.

    A leaf is ``value * prod_{f in R} 1[m_f = b_f]`` over the bits ``R`` its path fixes, and
    ``1[m_f = 1] = (1 - chi_f) / 2``, ``1[m_f = 0] = (1 + chi_f) / 2``: its coefficient on
    ``chi_S`` is ``value 2^-|R| (-1)^{|S & b|}`` for every ``S`` within ``R``, none elsewhere.
    Leaves that fix the same ``R`` are one table over the ``2^|R|`` values of those bits, and
    that table's Walsh-Hadamard transform (``|R| 2^|R|`` additions) is every coefficient they
    give at once; the tables of all sets of one size are transformed as one batch and summed
    into a dense array over the ``2^n`` sets where that array is not much larger than the
    terms (:data:`_DENSE_SPREAD`), else by sorting their masks. The regression's
    proxies at 2,048 calls (400 depth-8 trees over 13-14 features): 18.5 / 25.3 -> 7.6 / 10.1
    ms (the MLP on wine / MiniLM; coefficients equal to 1.4e-15 of the largest) against the
    feature-by-feature merge this replaced (:func:`_leaf_spectrum_by_feature`, still used past
    :data:`_LEAF_TABLE_ENTRIES`).
    """
    if n_features > _LEAF_KEY_FEATURES:
        raise ValueError(f"the leaf read-out takes at most {_LEAF_KEY_FEATURES} features; "
                         f"got {n_features}: use tree_spectrum.")  # fmt: skip
    fixed_np, kept_np, value_np = _binary_leaf_masks(ens, kept_left, removed_left)
    n_out = value_np.shape[1]
    fixed = torch.from_numpy(fixed_np)
    sets, group = torch.unique(fixed, return_inverse=True)  # the distinct R, each leaf's
    bits = (sets.unsqueeze(1) >> torch.arange(n_features)) & 1  # [G, n]
    size = bits.sum(dim=1)
    entries = int((torch.ones_like(size) << size).sum())  # every table's 2^|R| terms
    if entries * n_out > _LEAF_TABLE_ENTRIES:
        return _leaf_spectrum_by_feature(fixed_np, kept_np, value_np, ens.base, n_features)
    # each R's bit positions, ascending (the first |R| columns)
    pos = torch.where(bits.bool(), torch.arange(n_features), n_features).sort(dim=1).values
    kept = torch.from_numpy(kept_np)
    value = torch.from_numpy(np.ascontiguousarray(value_np, dtype=np.float64))
    # a dense array over all 2^n sets where it is not much larger than the terms summed into it
    dense = (n_features <= _DENSE_FEATURES and (1 << n_features) <= _DENSE_SPREAD * entries
             and (1 << n_features) * n_out <= _LEAF_TABLE_ENTRIES)  # fmt: skip
    sums = torch.zeros(1 << n_features if dense else 0, n_out, dtype=torch.float64)
    parts: list[tuple[Tensor, Tensor]] = []  # (sets, coefficients) past _DENSE_FEATURES
    leaf_size = size[group]
    for k in torch.unique(size).tolist():
        in_k = size == k
        n_k = int(in_k.sum())
        local = torch.full_like(size, -1)
        local[in_k] = torch.arange(n_k)
        on = leaf_size == k
        rows, pos_k = local[group[on]], pos[in_k, :k]  # [L_k], [G_k, k]
        shifts = torch.arange(k)
        # each leaf's fixed values as a k-bit pattern over its R's positions
        pattern = (((kept[on].unsqueeze(1) >> pos_k[rows]) & 1) << shifts).sum(dim=1)
        width = 1 << k
        table = torch.zeros(n_k * width, n_out, dtype=torch.float64)
        table.index_add_(0, rows * width + pattern, value[on])
        # Walsh-Hadamard transform of every table over its k bits (in place), then the 2^-k
        for j in range(k):
            pairs = table.view(n_k, width >> (j + 1), 2, 1 << j, n_out)
            low, high = pairs[:, :, 0], pairs[:, :, 1]
            total = low + high
            torch.sub(low, high, out=high)
            low.copy_(total)
        table.mul_(0.5**k)
        # subset s of the k bits -> the set S as a mask over all n features: bit j of s
        # stands for feature pos_k[:, j] (integers below 2^31: exact in float64)
        subset = ((torch.arange(width).unsqueeze(1) >> shifts) & 1).double()  # [2^k, k]
        target = (subset @ (torch.ones(1, dtype=torch.long) << pos_k).T.double()).long()
        if dense:
            sums.index_add_(0, target.T.reshape(-1), table)
        else:
            parts.append((target.T.reshape(-1), table))
    if dense:
        masks = torch.arange(1 << n_features)
    else:  # the empty set (k = 0 or every table's s = 0) is the smallest mask: first
        masks, inverse = torch.unique(torch.cat([t for t, _ in parts]), return_inverse=True)
        sums = torch.zeros(masks.shape[0], n_out, dtype=torch.float64)
        sums.index_add_(0, inverse, torch.cat([c for _, c in parts]))
    sums[0] += torch.from_numpy(np.asarray(ens.base, dtype=np.float64))  # the empty set
    keep = sums.ne(0).any(dim=1)
    keep[0] = True
    return _sets_of_masks(masks[keep], sums[keep], n_features)


def _sets_of_masks(masks: Tensor, coef: Tensor, n_features: int) -> tuple[Tensor, Tensor]:
    """Sets given as bit masks ``int64 [s]`` (distinct) -> ``(indices, coefficients [s, 1,
    O])`` in :func:`~torchspex.fourier._sets.coalesce`'s canonical order."""
    bits = ((masks.unsqueeze(1) >> torch.arange(n_features)) & 1).bool()
    idx, coef = coalesce(support_to_indices(bits), coef, n_features)  # all rows already unique
    return idx, coef.unsqueeze(1)


def _leaf_spectrum_by_feature(
    fixed_np: np.ndarray, kept_np: np.ndarray, value_np: np.ndarray, base: np.ndarray,
    n_features: int,
) -> tuple[Tensor, Tensor]:
    """:func:`_binary_leaf_spectrum` one feature at a time, for leaves fixing many bits.

    Leaves that fix the same bits to the same values are summed first, then the sum is taken
    to the Fourier basis one feature at a time, merging equal terms after each, so no leaf is
    ever expanded into its ``2^|R|`` terms on its own. A term is a pair of masks: ``(free,
    in)``, the features still free (not yet taken to the Fourier basis) and, of the others,
    those in the term's set.
    """
    fixed, kept = torch.from_numpy(fixed_np), torch.from_numpy(kept_np)
    coef = torch.from_numpy(np.ascontiguousarray(value_np, dtype=np.float64))
    # (fixed, kept) as one key: kept bits above the fixed ones
    keys = fixed | (kept << n_features)
    keys, inverse = torch.unique(keys, return_inverse=True)
    coef = torch.zeros(keys.shape[0], coef.shape[1], dtype=coef.dtype).index_add_(0, inverse, coef)
    low = (1 << n_features) - 1
    for f in range(n_features):
        bit = 1 << f
        is_fixed = (keys & bit) != 0
        if not bool(is_fixed.any()):
            continue
        # a fixed bit f becomes f not in S (c / 2) and f in S (+c / 2 for b = 0, -c / 2 for
        # b = 1): clear it from the fixed part; the kept part's bit f now means "f in S"
        k_fixed = keys[is_fixed] & ~bit
        b = (k_fixed >> (n_features + f)) & 1
        c = coef[is_fixed] / 2
        out_keys = torch.cat([keys[~is_fixed], k_fixed & ~(bit << n_features),
                              k_fixed | (bit << n_features)])  # fmt: skip
        sign = (1 - 2 * b).to(c.dtype).unsqueeze(1)
        out_coef = torch.cat([coef[~is_fixed], c, c * sign])
        keys, inverse = torch.unique(out_keys, return_inverse=True)
        coef = torch.zeros(keys.shape[0], coef.shape[1], dtype=coef.dtype)
        coef.index_add_(0, inverse, out_coef)
    # every bit now taken: the kept part is the set S
    masks = keys >> n_features
    assert not bool((keys & low).any())
    zero = masks == 0
    if not bool(zero.any()):
        masks = torch.cat([torch.zeros(1, dtype=torch.long), masks])
        coef = torch.cat([torch.zeros(1, coef.shape[1], dtype=coef.dtype), coef])
    coef[0] += torch.from_numpy(np.asarray(base, dtype=np.float64))  # mask 0 sorts first
    keep = coef.ne(0).any(dim=1)
    keep[0] = True
    return _sets_of_masks(masks[keep], coef[keep], n_features)


def _sort_levels(feat: Tensor, a: Tensor, b: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    order = feat.argsort(dim=1, stable=True)
    ex = order.unsqueeze(-1).expand_as(a)
    return feat.gather(1, order), a.gather(1, ex), b.gather(1, ex)


def _check_n_features(ens: TreeEnsemble, n_features: int | None) -> int:
    if n_features is None:
        return ens.n_features
    if isinstance(n_features, bool) or not isinstance(n_features, int):
        raise TypeError(f"`n_features` must be an int or None; got {type(n_features).__name__}.")
    if n_features != ens.n_features:
        raise ValueError(
            f"`n_features` must equal the number of features the model was trained on "
            f"({ens.n_features}); got {n_features}."
        )
    return n_features


def tree_ensemble_to_fourier(model: Any, n_features: int | None = None) -> SparseSpectrum:
    """Exact Fourier spectrum of a tree ensemble trained on 0/1 inputs, with the mask as input.

    The returned spectrum ``F`` satisfies ``F.evaluate(masks) == raw_predict(masks.float())``
    for every mask (up to float64 round-off), where ``raw_predict`` is the model's raw score:
    ``Booster.predict(raw_score=True)`` for LightGBM (shrinkage and boost-from-average
    included), ``decision_function`` for scikit-learn gradient boosting, ``predict_proba`` for
    scikit-learn tree/forest classifiers, ``predict(output_margin=True)`` for XGBoost. Any
    threshold is allowed (a mask bit ``x_i`` is routed as the trainer would route the value
    ``0.0`` or ``1.0``; at a categorical split, category 0 or 1), and a feature may be split
    several times on one path.

    Args:
        model: a fitted LightGBM ``Booster`` / ``LGBMRegressor`` / ``LGBMClassifier``, a
            scikit-learn tree, forest or (hist) gradient boosting model, an XGBoost model, or a
            :class:`TreeEnsemble`.
        n_features: number of features (mask width); default: the model's input width.

    Returns:
        ``SparseSpectrum`` in the Fourier basis with coefficients ``float64 [s]`` (one output)
        or ``[s, O]`` (multi-class models); the order of every term is at most the tree depth.

    Raises:
        TypeError: for an unsupported model.
        ValueError: if ``n_features`` differs from the model's input width, for linear trees,
            or for categorical splits of scikit-learn's HistGradientBoosting.

    Example:
        >>> from sklearn.tree import DecisionTreeRegressor
        >>> x = torch.tensor([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=torch.float64)
        >>> tree = DecisionTreeRegressor().fit(x.numpy(), [0.0, 0.0, 0.0, 4.0])
        >>> tree_ensemble_to_fourier(tree).to_dict()   # 4 x0 x1 = 1 - chi0 - chi1 + chi0 chi1
        {(): 1.0, (0,): -1.0, (1,): -1.0, (0, 1): 1.0}
    """
    ens = parse_tree_ensemble(model)
    n = _check_n_features(ens, n_features)
    rows = np.stack([np.ones(n), np.zeros(n)])
    routes = ens.goes_left(rows)  # [N, 2]: x_i = 1 (kept) and x_i = 0 (removed)
    if n <= _LEAF_KEY_FEATURES:
        idx, coef = _binary_leaf_spectrum(ens, routes[:, 0], routes[:, 1], n)
    else:
        idx, coef = tree_spectrum(ens, routes[:, :1], routes[:, 1:].astype(np.float64), n)
    coef = coef[:, 0]
    if coef.shape[1] == 1:
        coef = coef[:, 0]
    return SparseSpectrum(idx, coef, n, "Fourier")
