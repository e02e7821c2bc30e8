"""Generalized values: the worth a coalition adds as one block, read from the spectrum.

A generalized value gives every coalition ``T`` (``1 <= |T| <= max_order``) a weighted sum of
the marginal contributions of ``T`` as a block (Marichal 2000; Marichal et al. 2007):

.. math:: GV(T) = \\sum_{S \\subseteq N \\setminus T} p_T(|S|)\\, (v(S \\cup T) - v(S)).

It is not an interaction among ``T``'s members: ``GV({i, j})`` is the value of ``i`` and ``j``
moved together. In Möbius form, with ``p = |R \\ T|`` and ``t = |T|``,

.. math:: GV(T) = \\sum_{R \\cap T \\neq \\emptyset} \\omega(p, t)\\, a(R),

* SGV (Shapley): ``omega = 1 / (p + 1)``; BGV (Banzhaf): ``omega = 2^{-p}``;
* CHGV (chaining): ``omega = t / (t + p)``;
* IGV (internal): ``omega = [p = 0]``, so ``IGV(T) = v(T) - v(empty)``;
* EGV (external): ``omega = 1``, so ``EGV(T) = v(N) - v(N \\ T)``;
* JointSV (Harris et al. 2022): ``omega = sum_j C(n - t - p, j) q_{p+j}`` with the joint Shapley
  coalition weights ``q`` (they depend on ``n`` and on the order cap ``l``, and make
  ``sum_{|T| <= l}`` of the values efficient).

``omega`` depends on ``T`` only through ``R ∩ T`` and ``t``, so by Möbius inversion over
``R ∩ T``, for every size ``t``

.. math:: GV(T) = \\sum_{\\emptyset \\neq V \\subseteq T} B_t(V), \\qquad
    B_t(V) = \\sum_{R \\supseteq V} m_t(|R|, |V|)\\, a(R),\\quad
    m_t(k, v) = \\sum_{u=1}^{v} \\binom{v}{u} (-1)^{v-u} \\omega(k - u, t).

``B_t`` is a superset expansion of the spectrum with an exact rational weight table, like every
interaction index, and ``GV`` on the coalitions of size ``t`` is ``B_t`` read as Möbius
coefficients and evaluated there. The values are not sparse (every coalition that meets a term
has one), so listing all coalitions up to ``max_order`` is ``sum_t C(n, t)`` values;
:func:`generalized_values` evaluates chosen coalitions instead.

The ``()`` entry is ``f(empty)`` (shapiq 1.8's ``ExactComputer``, whose ``InteractionValues``
sets ``()`` to the baseline for these indices).
"""

from __future__ import annotations

from fractions import Fraction
from functools import lru_cache
from math import comb

import torch
from torch import Tensor

from torchspex.fourier._basis import (
    _expand,
    _popcount,
    _subset_sum,
    _superset_sum,
    dense_to_spectrum,
    spectrum_to_dense,
)
from torchspex.fourier._sets import row_keys, subsets
from torchspex.fourier.indices import GENERALIZED, canonical_index
from torchspex.fourier.spectrum import SparseSpectrum, check_set_function

__all__ = ["MAX_LISTED_COALITIONS", "generalized_index", "generalized_values"]

#: Most coalitions a full listing may hold (``sum_{t <= max_order} C(n, t)``).
MAX_LISTED_COALITIONS = 1 << 22
#: Largest ``n`` for which the listing goes through dense ``2^n`` vectors.
_DENSE_FEATURES = 16


@lru_cache(maxsize=64)
def _joint_sv_weights(n: int, order: int) -> tuple[Fraction, ...]:
    """Joint Shapley coalition weights ``q_0 .. q_{n-1}`` (Harris et al. 2022, recursion (6))."""
    q = [Fraction(0)] * n
    q[0] = Fraction(1, sum(comb(n, s) for s in range(1, order + 1)))
    for r in range(1, n):
        den = sum(comb(n - r, s) for s in range(1, min(order, n - r) + 1))
        num = sum((comb(r, s) * q[s] for s in range(max(r - order, 0), r)), Fraction(0))
        q[r] = num / den
    return tuple(q)


def _omega(index: str, p: int, t: int, n: int, order: int) -> Fraction:
    """Weight of ``a(R)`` in ``GV(T)`` for ``|R \\ T| = p``, ``|T| = t``, ``R ∩ T`` nonempty."""
    if index == "SGV":
        return Fraction(1, p + 1)
    if index == "BGV":
        return Fraction(1, 2**p)
    if index == "CHGV":
        return Fraction(t, t + p)
    if index == "IGV":
        return Fraction(int(p == 0))
    if index == "EGV":
        return Fraction(1)
    if index == "JointSV":
        if p > n - t:  # no such R; any value works (it cancels in the inversion)
            return Fraction(0)
        q = _joint_sv_weights(n, order)
        return sum((comb(n - t - p, j) * q[p + j] for j in range(n - t - p + 1)), Fraction(0))
    raise AssertionError(index)


def _depends_on_size(index: str) -> bool:
    """Whether ``omega`` depends on ``t`` (then each coalition size has its own table)."""
    return index in ("CHGV", "JointSV")


@lru_cache(maxsize=256)
def _tables(
    index: str, t: int, n: int, order: int, max_size: int
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Flat ``m_t[k, v]`` (Möbius) and ``M_t[k, v]`` (Fourier), ``k <= max_size``, ``v <= t``."""
    omega = [_omega(index, p, t, n, order) for p in range(max_size + 1)]
    m = [
        [
            sum(
                (comb(v, u) * (-1) ** (v - u) * omega[k - u] for u in range(1, v + 1)),
                Fraction(0),
            )
            if 1 <= v <= k
            else Fraction(0)
            for v in range(t + 1)
        ]
        for k in range(max_size + 1)
    ]
    big = [
        [
            sum((comb(k - v, s - v) * m[s][v] * (-2) ** s for s in range(v, k + 1)), Fraction(0))
            for v in range(t + 1)
        ]
        for k in range(max_size + 1)
    ]
    return (
        tuple(float(x) for row in m for x in row),
        tuple(float(x) for row in big for x in row),
    )


def _table(index: str, t: int, n: int, order: int, k_max: int, basis: str) -> Tensor:
    """Weight table ``[k_max + 1, t + 1]`` from a ``basis`` spectrum to ``B_t``."""
    key_n, key_order = (n, order) if index == "JointSV" else (0, 0)  # only JointSV needs them
    moebius, fourier = _tables(index, t, key_n, key_order, k_max)
    flat = fourier if basis == "Fourier" else moebius
    return torch.tensor(flat, dtype=torch.float64).reshape(k_max + 1, t + 1)


def _block_terms(spectrum: SparseSpectrum, index: str, t: int, order: int) -> SparseSpectrum:
    """``B_t`` as Möbius coefficients on sets of size ``1..t`` (GV on size ``t`` = its value)."""
    table = _table(index, t, spectrum.n_features, order, spectrum.max_size, spectrum.basis)
    idx, coef = _expand(spectrum, table, t, min_order=1)
    return SparseSpectrum(idx, coef, spectrum.n_features, "Moebius")


def _empty_value(spectrum: SparseSpectrum) -> Tensor:
    """``f(empty)``: ``sum_K F(K)`` (Fourier) or ``a(())`` (Möbius), shape ``out``."""
    if spectrum.basis == "Fourier":
        return spectrum.coefficients.sum(dim=0)
    empty = spectrum.orders == 0
    return spectrum.coefficients[empty].sum(dim=0)


def _check(spectrum: SparseSpectrum, index: str) -> str:
    check_set_function(spectrum)
    index = canonical_index(index)
    if index not in GENERALIZED:
        raise ValueError(f"`index` must be a generalized value, one of {sorted(GENERALIZED)}; "
                         f"got {index!r}.")
    return index


def check_listing(index: str, max_order: int | None, n: int) -> None:
    """Raises where listing ``index`` for every coalition of size <= ``max_order`` (all sizes
    for ``None``) of ``n`` features means more than :data:`MAX_LISTED_COALITIONS` values (above
    ``_DENSE_FEATURES`` features; below, the dense route lists every coalition). The explain
    entry points call it before the first model call."""
    order = _order(max_order, n) if n else 0
    count = sum(comb(n, t) for t in range(1, order + 1))
    if n > _DENSE_FEATURES and count > MAX_LISTED_COALITIONS:
        raise ValueError(
            f"listing {index} for every coalition of size <= {order} of {n} features means "
            f"{count} values (more than {MAX_LISTED_COALITIONS}); lower `max_order`, or evaluate "
            "chosen coalitions with torchspex.fourier.generalized_values(spectrum, index, masks)."
        )


def _order(max_order: int | None, n: int) -> int:
    if max_order is None:
        return n
    if isinstance(max_order, bool) or not isinstance(max_order, int):
        raise TypeError(f"`max_order` must be an int or None; got {type(max_order).__name__}.")
    if max_order < 1:
        raise ValueError(f"`max_order` must be >= 1; got {max_order}.")
    return min(max_order, n)  # no coalition is larger than n


def generalized_values(
    spectrum: SparseSpectrum, index: str, coalitions: Tensor, max_order: int | None = None
) -> Tensor:
    """Generalized values of chosen coalitions.

    Args:
        spectrum: a Fourier or Möbius spectrum, coefficients ``[s, *out]``.
        index: one of ``"SGV"``, ``"BGV"``, ``"CHGV"``, ``"IGV"``, ``"EGV"``, ``"JointSV"``.
        coalitions: ``bool [m, n_features]``, True = member of the coalition ``T``.
        max_order: the order cap ``l`` (JointSV's weights depend on it; every coalition must
            then have ``|T| <= l``). Ignored by the other indices. Default ``n_features``.
            JointSV's exact rational weights grow with ``l`` and ``n``: at ``l = n`` they took
            0.24 / 4.1 / 38 s at n = 100 / 200 / 300 (one thread, cached after), against 0.01 s
            at ``l = 2``; pass the order you mean.

    Returns:
        ``[m, *out]`` values (``f(empty)`` for the empty coalition, shapiq's ``()`` entry).

    Raises:
        ValueError: for another index, a wrong mask width, or a JointSV coalition above
            ``max_order``.

    Example:
        >>> spec = SparseSpectrum.from_sets([(0, 1)], [1.0], 3, basis="Moebius")
        >>> generalized_values(spec, "SGV", torch.tensor([[True, False, False],
        ...                                               [True, True, False]]))
        tensor([0.5000, 1.0000], dtype=torch.float64)
    """
    index = _check(spectrum, index)
    n = spectrum.n_features
    order = _order(max_order, n)
    masks = torch.as_tensor(coalitions)
    if masks.dim() != 2 or masks.shape[1] != n:
        raise ValueError(f"`coalitions` must have shape [m, {n}]; got {tuple(masks.shape)}.")
    masks = masks.bool().to(spectrum.coefficients.device)
    sizes = masks.sum(dim=1)
    coef = spectrum.coefficients
    out = torch.zeros((masks.shape[0], *spectrum.out_shape), dtype=coef.dtype, device=coef.device)
    if index == "JointSV" and masks.shape[0] and int(sizes.max()) > order:
        raise ValueError(
            f"JointSV is defined for coalitions of size <= max_order={order}; got one of size "
            f"{int(sizes.max())}."
        )
    out[sizes == 0] = _empty_value(spectrum).to(out.dtype)
    present = torch.unique(sizes[sizes > 0]).tolist()
    shared = None
    for t in present:
        if _depends_on_size(index):
            blocks = _block_terms(spectrum, index, t, order)
        else:  # one table for every size: expand once, up to the largest size asked
            if shared is None:
                shared = _block_terms(spectrum, index, max(present), order)
            blocks = shared
        rows = sizes == t
        out[rows] = blocks.evaluate(masks[rows]).to(out.dtype)
    return out


def generalized_index(
    spectrum: SparseSpectrum, index: str, max_order: int | None = None, dense: bool | None = None
) -> SparseSpectrum:
    """Every coalition's generalized value up to ``max_order``, as a set-indexed spectrum.

    Args:
        spectrum: a Fourier or Möbius spectrum, coefficients ``[s, *out]``.
        index: one of ``"SGV"``, ``"BGV"``, ``"CHGV"``, ``"IGV"``, ``"EGV"``, ``"JointSV"``.
        max_order: largest coalition size listed (default ``n_features``, as shapiq).
        dense: force (True) or forbid (False) the dense ``2^n`` path; default: dense for
            ``n <= 16``.

    Returns:
        :class:`SparseSpectrum` with basis ``index``: ``()`` holds ``f(empty)``, and every
        coalition ``1 <= |T| <= max_order`` with a nonzero value is listed.

    Raises:
        ValueError: when the listing would exceed :data:`MAX_LISTED_COALITIONS` coalitions
            (evaluate chosen ones with :func:`generalized_values`).

    Example:
        >>> spec = SparseSpectrum.from_sets([(0, 1)], [1.0], 2, basis="Moebius")
        >>> generalized_index(spec, "SGV").to_dict()  # () = f(empty) = 0
        {(): 0.0, (0,): 0.5, (1,): 0.5, (0, 1): 1.0}
    """
    index = _check(spectrum, index)
    n = spectrum.n_features
    order = _order(max_order, n) if n else 0
    use_dense = n <= _DENSE_FEATURES if dense is None else bool(dense) and n <= 22
    if not use_dense:
        check_listing(index, max_order, n)
    empty = _empty_value(spectrum).unsqueeze(0)
    width = max(order, 1)
    idx_parts = [torch.full((1, width), -1, dtype=torch.long)]
    coef_parts = [empty]
    if order:
        lister = _dense_listing if use_dense else _sparse_listing
        idx, coef = lister(spectrum, index, order)
        idx_parts.append(torch.nn.functional.pad(idx, (0, width - idx.shape[1]), value=-1))
        coef_parts.append(coef)
    idx = torch.cat(idx_parts).cpu()
    coef = torch.cat(coef_parts)
    flat = coef.reshape(coef.shape[0], -1)
    keep = flat.ne(0).any(dim=1) if flat.shape[1] else torch.ones(coef.shape[0], dtype=torch.bool)
    keep[0] = True
    keep = keep.cpu()
    idx = idx[keep]  # rows are ascending with -1 padding last already
    width = int((idx >= 0).sum(dim=1).max()) if idx.shape[0] else 0
    return SparseSpectrum(idx[:, :width].contiguous(), coef[keep.to(coef.device)], n, index)


def _combinations(n: int, t: int) -> Tensor:
    """All ``t``-subsets of ``range(n)``, ascending rows in lexicographic order, ``[C(n,t), t]``."""
    if t == 1:
        return torch.arange(n)[:, None]
    if t == 2:
        return torch.triu_indices(n, n, 1).T.contiguous()
    return torch.combinations(torch.arange(n), t)


def _rank(rows: Tensor, n: int, binom: Tensor) -> Tensor:
    """Position of each ascending row ``[r, t]`` in ``torch.combinations(arange(n), t)``."""
    t = rows.shape[1]
    # lexicographic rank = C(n, t) - 1 - sum_i C(n - 1 - c_i, t - i)
    later = binom[n - 1 - rows, torch.arange(t, 0, -1, device=rows.device)].sum(dim=1)
    return binom[n, t] - 1 - later


def _sparse_listing(
    spectrum: SparseSpectrum, index: str, order: int
) -> tuple[Tensor, Tensor]:
    n = spectrum.n_features
    out_shape = spectrum.out_shape
    dev = spectrum.coefficients.device
    binom = torch.tensor(
        [[comb(a, b) for b in range(order + 1)] for a in range(n + 1)], dtype=torch.long
    )
    idx_out, coef_out = [], []
    shared = None
    for t in range(1, order + 1):
        if _depends_on_size(index):
            blocks = _block_terms(spectrum, index, t, order)
        else:  # one expansion serves every size (a size-t coalition has subsets of size <= t)
            if shared is None:
                shared = _block_terms(spectrum, index, order, order)
            blocks = shared
        coalitions = _combinations(n, t)
        values = torch.zeros(
            (coalitions.shape[0], *out_shape), dtype=spectrum.coefficients.dtype, device=dev
        )
        sizes = blocks.orders
        for u in range(1, t + 1):  # GV(T) = sum over T's subsets V of B_t(V), by |V| = u
            level = sizes == u
            if not bool(level.any()):
                continue
            b_idx, b_coef = blocks.indices[level][:, :u], blocks.coefficients[level]
            if u == 1:  # singletons: a dense per-feature vector, gathered
                single = torch.zeros((n, *out_shape), dtype=values.dtype, device=dev)
                single.index_add_(0, b_idx[:, 0].to(dev), b_coef)
                values += single[coalitions.to(dev)].sum(dim=1)
            elif u == t:  # the coalition itself: its position in the listing
                values.index_add_(0, _rank(b_idx, n, binom).to(dev), b_coef)
            else:  # proper subsets of size u: keyed look-up
                sub, parent, _ = subsets(coalitions, max_size=u, min_size=u)
                b_keys, s_keys = row_keys(b_idx, n), row_keys(sub, n)
                if b_keys is None or s_keys is None:  # pragma: no cover - (n+1)^u >= 2^62
                    raise ValueError(f"coalitions of size {u} of {n} features are too many.")
                b_sorted, perm = torch.sort(b_keys)
                pos = torch.searchsorted(b_sorted, s_keys).clamp(max=b_sorted.shape[0] - 1)
                hit = b_sorted[pos] == s_keys
                values.index_add_(0, parent[hit].to(dev), b_coef[perm[pos[hit]].to(dev)])
        idx_out.append(torch.nn.functional.pad(coalitions, (0, order - t), value=-1))
        coef_out.append(values)
    return torch.cat(idx_out), torch.cat(coef_out)


def _dense_listing(spectrum: SparseSpectrum, index: str, order: int) -> tuple[Tensor, Tensor]:
    n = spectrum.n_features
    c_dense = spectrum_to_dense(spectrum)
    sizes = _popcount(n, c_dense.device)
    shape = (-1, *([1] * (c_dense.dim() - 1)))
    out = torch.zeros_like(c_dense)
    # One table for every size when omega does not depend on t (then B up to `order` serves
    # all sizes at once: a coalition of size t only has subsets of size <= t).
    sizes_t = range(1, order + 1) if _depends_on_size(index) else [order]
    for t in sizes_t:
        table = _table(index, t, n, order, n, spectrum.basis).to(c_dense.device, c_dense.dtype)
        blocks = torch.zeros_like(c_dense)
        for v in range(1, t + 1):
            col = table[:, v]
            if not bool(col.ne(0).any()):
                continue
            g = _superset_sum(c_dense * col[sizes].reshape(shape), n)
            blocks = torch.where((sizes == v).reshape(shape), g, blocks)
        # GV(T) sums B_t over T's subsets (the Möbius evaluation at T).
        gv = _subset_sum(blocks, n)
        at = (sizes == t) if _depends_on_size(index) else (sizes >= 1) & (sizes <= order)
        out = torch.where(at.reshape(shape), gv, out)
    keep = (sizes >= 1) & (sizes <= order)
    listed = dense_to_spectrum(out, n, "Moebius", keep=keep)
    return listed.indices, listed.coefficients
