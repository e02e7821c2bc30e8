"""Set-indexed tensors: rows of feature indices, their keys, and subset enumeration.

A *set row* is a row of an ``int64`` tensor ``[s, d]`` holding the sorted feature indices of one
set, padded with ``-1`` at the end. Every spectrum in torchspex stores its terms this way, so
no operation ever builds a dict keyed by 0/1 tuples or a dense ``[s, n]`` matrix unless asked.
"""

from __future__ import annotations

import itertools
from functools import lru_cache

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "coalesce",
    "indices_to_support",
    "normalize_indices",
    "set_sizes",
    "subsets",
    "support_to_indices",
]

_MAX_KEY = 2**62


def normalize_indices(indices: Tensor) -> Tensor:
    """Sorts each row ascending with ``-1`` padding last and drops all-padding columns.

    Args:
        indices: ``int64 [s, d]`` feature indices, ``-1`` for padding.

    Returns:
        ``int64 [s, d']`` with ``d' = max set size``.
    """
    if indices.dim() != 2:
        raise ValueError(
            f"`indices` must be 2-D [n_terms, width]; got shape {tuple(indices.shape)}."
        )
    indices = indices.long()
    if indices.shape[1] == 0:
        return indices
    big = torch.iinfo(torch.int64).max
    rows = torch.where(indices < 0, torch.full_like(indices, big), indices)
    rows = rows.sort(dim=1).values
    rows = torch.where(rows == big, torch.full_like(rows, -1), rows)
    width = int((rows >= 0).sum(dim=1).max().item()) if rows.shape[0] else 0
    return rows[:, :width].contiguous()


def set_sizes(indices: Tensor) -> Tensor:
    """Returns the size of each set row, ``int64 [s]``."""
    return (indices >= 0).sum(dim=1)


def support_to_indices(support: Tensor) -> Tensor:
    """Converts a bool support ``[s, n]`` into set rows ``int64 [s, d]``."""
    if support.dtype != torch.bool:
        raise TypeError(f"`support` must be a bool tensor; got dtype {support.dtype}.")
    s, n = support.shape
    if s == 0:
        return torch.zeros(0, 0, dtype=torch.long, device=support.device)
    cols = torch.arange(n, device=support.device).expand(s, n)
    rows = torch.where(support, cols, torch.full_like(cols, n))
    width = int(support.sum(dim=1).max().item())
    rows = rows.sort(dim=1).values[:, :width]
    return torch.where(rows == n, torch.full_like(rows, -1), rows)


def indices_to_support(indices: Tensor, n_features: int) -> Tensor:
    """Converts set rows ``int64 [s, d]`` into a bool support ``[s, n_features]``."""
    s = indices.shape[0]
    support = torch.zeros(s, n_features + 1, dtype=torch.bool, device=indices.device)
    cols = torch.where(indices < 0, torch.full_like(indices, n_features), indices)
    support.scatter_(1, cols, True)
    return support[:, :n_features]


def row_keys(indices: Tensor, n_features: int) -> Tensor | None:
    """One ``int64`` key per set row (injective), or ``None`` when keys would overflow."""
    base = n_features + 1
    width = indices.shape[1]
    if base**width >= _MAX_KEY:
        return None
    key = torch.zeros(indices.shape[0], dtype=torch.long, device=indices.device)
    for j in range(width):
        key = key * base + (indices[:, j] + 1)
    return key


def coalesce(indices: Tensor, coefficients: Tensor, n_features: int) -> tuple[Tensor, Tensor]:
    """Merges duplicate set rows by summing their coefficients.

    Args:
        indices: normalized set rows ``int64 [s, d]``.
        coefficients: ``[s, *out]``.
        n_features: number of features ``n``.

    Returns:
        ``(indices [u, d], coefficients [u, *out])`` with unique rows in a canonical order.
    """
    if indices.shape[0] == 0:
        return indices, coefficients
    out_idx, inverse = coalesce_rows(indices, n_features)
    out = torch.zeros(
        (out_idx.shape[0], *coefficients.shape[1:]),
        dtype=coefficients.dtype,
        device=coefficients.device,
    )
    out.index_add_(0, inverse, coefficients)
    return out_idx, out


def unique_rows(rows: Tensor) -> tuple[Tensor, Tensor]:
    """``torch.unique(rows, dim=0, return_inverse=True)`` for ``int64 [N, k]`` rows on the CPU,
    by one lexicographic sort (the same rows in the same order; 3-7x faster from 10,000 rows:
    250,000 rows of 8 columns 1.16 -> 0.36 s)."""
    if rows.shape[1] == 0 or rows.shape[0] == 0:  # every row the same (or none)
        m = min(rows.shape[0], 1)
        return rows[:m], torch.zeros(rows.shape[0], dtype=torch.long, device=rows.device)
    if rows.device.type != "cpu":
        out, inverse = torch.unique(rows, dim=0, return_inverse=True)
        return out, inverse
    a = rows.numpy()
    order = np.lexsort(a.T[::-1])
    ranked = a[order]
    new = np.ones(len(a), dtype=bool)
    new[1:] = (ranked[1:] != ranked[:-1]).any(axis=1)
    inverse = np.empty(len(a), dtype=np.int64)
    inverse[order] = np.cumsum(new) - 1
    return torch.from_numpy(ranked[new]), torch.from_numpy(inverse)


def coalesce_rows(indices: Tensor, n_features: int) -> tuple[Tensor, Tensor]:
    """The unique rows of ``indices [s, d]`` in :func:`coalesce`'s canonical order, and each
    row's position among them (``int64 [s]``)."""
    keys = row_keys(indices, n_features)
    if keys is not None:
        uniq, inverse = torch.unique(keys, return_inverse=True)
        first = torch.empty_like(uniq).scatter_(
            0, inverse, torch.arange(keys.shape[0], device=keys.device)
        )
        out_idx = indices[first]
    else:
        out_idx, inverse = unique_rows(indices)
    # canonical order: by set size, then lexicographically
    order = torch.argsort(set_sizes(out_idx), stable=True)
    rank = torch.empty_like(order).scatter_(
        0, order, torch.arange(order.shape[0], device=order.device)
    )
    return out_idx[order], rank[inverse]


@lru_cache(maxsize=256)
def _patterns(size: int, max_subset: int) -> tuple[tuple[int, ...], ...]:
    pats: list[tuple[int, ...]] = []
    for t in range(min(size, max_subset) + 1):
        pats.extend(itertools.combinations(range(size), t))
    return tuple(pats)


def subsets(
    indices: Tensor, max_size: int | None = None, min_size: int = 0
) -> tuple[Tensor, Tensor, Tensor]:
    """Enumerates the subsets of every set row, vectorized per row size.

    Args:
        indices: normalized set rows ``int64 [s, d]``.
        max_size: largest subset size to enumerate (``None``: all).
        min_size: smallest subset size to enumerate.

    Returns:
        ``(sub_indices [N, d'], parent [N], sub_sizes [N])``: each subset as a normalized set
        row, the row it came from, and its size.
    """
    sizes = set_sizes(indices)
    device = indices.device
    cap = indices.shape[1] if max_size is None else min(max_size, indices.shape[1])
    width = max(cap, 0)
    out_idx, out_parent, out_size = [], [], []
    for k in torch.unique(sizes).tolist():
        rows = torch.nonzero(sizes == k).squeeze(1)
        pats = [p for p in _patterns(k, cap) if len(p) >= min_size]
        if not pats:
            continue
        # pattern matrix [P, width] of positions into the row (k means "padding").
        pat = torch.full((len(pats), max(width, 1)), k, dtype=torch.long, device=device)
        for i, p in enumerate(pats):
            if p:
                pat[i, : len(p)] = torch.tensor(p, dtype=torch.long, device=device)
        psize = torch.tensor([len(p) for p in pats], dtype=torch.long, device=device)
        src = torch.cat(
            [
                indices[rows, :k],
                torch.full((rows.shape[0], 1), -1, dtype=torch.long, device=device),
            ],
            dim=1,
        )  # [r, k+1], last column is padding
        sub = src[:, pat]  # [r, P, width]
        out_idx.append(sub.reshape(-1, pat.shape[1])[:, :width])
        out_parent.append(rows.repeat_interleave(len(pats)))
        out_size.append(psize.repeat(rows.shape[0]))
    if not out_idx:
        empty = torch.zeros(0, dtype=torch.long, device=device)
        return torch.zeros(0, width, dtype=torch.long, device=device), empty, empty
    return torch.cat(out_idx), torch.cat(out_parent), torch.cat(out_size)
