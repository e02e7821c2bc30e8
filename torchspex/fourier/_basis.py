"""The kernels under every conversion: dense vectors, the fast Walsh-Hadamard transform, the
term-by-term expansion and the change of basis between Fourier and Möbius.

Conventions as :mod:`torchspex.fourier.transforms` (which re-exports the public names): for
masks ``x`` in ``{0,1}^n`` with 1 = feature kept, ``f(x) = sum_K F[K] (-1)^{|K & x|}`` and
``f(x) = sum_{S subset of x} a[S]``. They sit below the index conversions so that the
generalized values (:mod:`~torchspex.fourier.generalized`) and the egalitarian least core
(:mod:`~torchspex.fourier.elc`), which ``fourier_to_index`` dispatches to, can use them
without importing ``transforms`` back.
"""

from __future__ import annotations

from math import comb

import torch
from torch import Tensor

from torchspex.fourier._sets import coalesce, coalesce_rows, subsets
from torchspex.fourier.indices import fourier_weights
from torchspex.fourier.spectrum import SparseSpectrum

__all__ = [
    "MAX_DENSE_FEATURES",
    "dense_to_spectrum",
    "fourier_to_moebius",
    "fwht",
    "moebius_to_fourier",
    "spectrum_to_dense",
]

#: Largest ``n`` for which dense ``2^n`` conversions are used.
MAX_DENSE_FEATURES = 22


def fwht(values: Tensor, dim: int = 0) -> Tensor:
    """Unnormalized fast Walsh-Hadamard transform along ``dim`` (length ``2^n``).

    Index bit ``i`` of position ``x`` is feature ``i``. ``fwht(fwht(v)) == 2^n * v``.

    Example:
        >>> fwht(torch.tensor([1.0, 0.0, 0.0, 0.0]))
        tensor([1., 1., 1., 1.])
    """
    length = values.shape[dim]
    n = length.bit_length() - 1
    if length < 1 or 1 << n != length:
        raise ValueError(f"`values` must have a power-of-two length along dim {dim}; got {length}.")
    v = values.movedim(dim, 0)
    rest = v.shape[1:]
    v = v.reshape(length, -1).clone()
    h = 1
    while h < length:
        v = v.view(length // (2 * h), 2, h, -1)
        a, b = v[:, 0], v[:, 1]
        v = torch.stack((a + b, a - b), dim=1)
        h *= 2
    return v.reshape(length, *rest).movedim(0, dim)


def _superset_sum(v: Tensor, n: int) -> Tensor:
    """``out[T] = sum_{S ⊇ T} v[S]`` over bitmask positions, along dim 0."""
    v = v.clone()
    for i in range(n):
        w = v.view(-1, 2, 1 << i, *v.shape[1:])
        w[:, 0] += w[:, 1]
    return v


def _subset_sum(v: Tensor, n: int, sign: int = 1) -> Tensor:
    """``out[S] = sum_{T ⊆ S} sign^{|S|-|T|} v[T]`` (zeta / Möbius transform), along dim 0."""
    v = v.clone()
    for i in range(n):
        w = v.view(-1, 2, 1 << i, *v.shape[1:])
        w[:, 1] += sign * w[:, 0]
    return v


def _popcount(n: int, device: torch.device | None = None) -> Tensor:
    x = torch.arange(1 << n, device=device)
    count = torch.zeros_like(x)
    for i in range(n):
        count += (x >> i) & 1
    return count


def spectrum_to_dense(spectrum: SparseSpectrum) -> Tensor:
    """Scatters the terms into a dense ``[2^n, *out]`` vector (bit ``i`` = feature ``i``)."""
    n = spectrum.n_features
    if n > MAX_DENSE_FEATURES:
        raise ValueError(f"dense vectors need n_features <= {MAX_DENSE_FEATURES}; got {n}.")
    weights = torch.where(spectrum.indices >= 0, 1 << spectrum.indices.clamp(min=0), 0)
    pos = (
        weights.sum(dim=1)
        if spectrum.indices.shape[1]
        else torch.zeros(spectrum.n_terms, dtype=torch.long)
    )
    dense = torch.zeros(
        (1 << n, *spectrum.out_shape),
        dtype=spectrum.coefficients.dtype,
        device=spectrum.coefficients.device,
    )
    dense.index_add_(0, pos.to(dense.device), spectrum.coefficients)
    return dense


def dense_to_spectrum(
    dense: Tensor,
    n_features: int,
    basis: str,
    max_order: int | None = None,
    keep: Tensor | None = None,
) -> SparseSpectrum:
    """Gathers a dense ``[2^n, *out]`` vector into a spectrum.

    Keeps positions of size ``<= max_order`` where ``keep`` is True (default: nonzero entries).
    """
    n = n_features
    sizes = _popcount(n, dense.device)
    if keep is None:
        keep = (
            dense.reshape(1 << n, -1).ne(0).any(dim=1)
            if dense[0].numel()
            else torch.ones(1 << n, dtype=torch.bool, device=dense.device)
        )
    if max_order is not None:
        keep = keep & (sizes <= max_order)
    pos = torch.nonzero(keep).squeeze(1)
    bits = ((pos.unsqueeze(1) >> torch.arange(n, device=pos.device)) & 1).bool()
    width = int(sizes[pos].max()) if pos.numel() else 0
    cols = torch.where(bits, torch.arange(n, device=pos.device), n)
    idx = cols.sort(dim=1).values[:, :width]
    idx = torch.where(idx == n, -1, idx)
    return SparseSpectrum(idx.cpu(), dense[pos], n, basis)


#: :func:`_expand` sums over supersets by one sparse matrix product once the coefficients have
#: this many columns (rows of inputs x outputs), instead of a weighted copy of every input row
#: per subset and a scatter. One thread, degree-2 spectra over 30 features and degree-4 ones
#: over 64 features (2,000 terms), k-SII and SV: the copy is faster at 1-16 columns (1.2 against
#: 1.6 ms, 6.3 against 10 ms), the product from 64 (2.9 against 1.7 ms; 512 columns 184
#: against 22 ms; 10,000 columns 333 against 60 ms, SV 165 against 4 ms), equal to round-off.
SPARSE_PRODUCT_COLUMNS = 64


def _expand(
    spectrum: SparseSpectrum, table: Tensor, max_order: int | None, min_order: int = 0
) -> tuple[Tensor, Tensor]:
    """``I(T) = sum_{K ⊇ T} table[|K|, |T|] c(K)`` for ``min_order <= |T| <= max_order``."""
    sub_idx, parent, sub_size = subsets(spectrum.indices, max_order, min_order)
    k = spectrum.orders.to(parent.device)[parent]
    weight = table.to(spectrum.coefficients.device)[k, sub_size].to(spectrum.coefficients.dtype)
    nonzero = weight != 0
    coefficients = spectrum.coefficients
    columns = coefficients[0].numel() if coefficients.shape[0] else 0
    if columns < SPARSE_PRODUCT_COLUMNS or sub_idx.shape[0] == 0:
        coef = coefficients[parent] * weight.reshape(-1, *([1] * len(spectrum.out_shape)))
        return coalesce(sub_idx[nonzero], coef[nonzero], spectrum.n_features)
    # many columns (rows of inputs x outputs): one sparse [terms out, terms in] product, not a
    # weighted copy of every input row per subset
    out_idx, inverse = coalesce_rows(sub_idx[nonzero], spectrum.n_features)
    where = torch.stack([inverse, parent[nonzero].to(inverse.device)])
    matrix = torch.sparse_coo_tensor(where, weight[nonzero], (out_idx.shape[0], len(coefficients)),
                                     check_invariants=False)  # fmt: skip
    out = torch.sparse.mm(matrix.coalesce(), coefficients.reshape(len(coefficients), -1))
    return out_idx, out.reshape(-1, *spectrum.out_shape)


def _expansion_size(spectrum: SparseSpectrum, max_order: int | None) -> int:
    counts = torch.bincount(spectrum.orders, minlength=1).tolist()
    total = 0
    for k, c in enumerate(counts):
        cap = k if max_order is None else min(k, max_order)
        total += c * sum(comb(k, t) for t in range(cap + 1))
    return total


def _use_dense(spectrum: SparseSpectrum, max_order: int | None, dense: bool | None) -> bool:
    if dense is not None:
        return dense and spectrum.n_features <= MAX_DENSE_FEATURES
    n = spectrum.n_features
    if n > MAX_DENSE_FEATURES:
        return False
    return _expansion_size(spectrum, max_order) > 4 * (1 << n)


def _check_basis(spectrum: SparseSpectrum, basis: str) -> None:
    if spectrum.basis != basis:
        raise ValueError(f"expected a {basis!r} spectrum; got basis {spectrum.basis!r}.")


def fourier_to_moebius(spectrum: SparseSpectrum, dense: bool | None = None) -> SparseSpectrum:
    """Converts a Fourier spectrum to Möbius coefficients.

    .. math:: a(S) = (-2)^{|S|} \\sum_{K \\supseteq S} F(K)

    Example:
        >>> spec = SparseSpectrum.from_sets([(), (0,)], [1.0, 0.5], 1)
        >>> fourier_to_moebius(spec).to_dict()   # f(0) = 1.5, f(1) - f(0) = -1
        {(): 1.5, (0,): -1.0}
    """
    _check_basis(spectrum, "Fourier")
    n = spectrum.n_features
    if _use_dense(spectrum, None, dense):
        f_dense = spectrum_to_dense(spectrum)
        a = _superset_sum(f_dense, n)
        sizes = _popcount(n, a.device)
        a = a * ((-2.0) ** sizes).to(a.dtype).reshape(-1, *([1] * (a.dim() - 1)))
        return dense_to_spectrum(a, n, "Moebius")
    table = fourier_weights("Moebius", spectrum.max_size, spectrum.max_size)
    idx, coef = _expand(spectrum, table, None)
    return SparseSpectrum(idx, coef, n, "Moebius")


def moebius_to_fourier(spectrum: SparseSpectrum, dense: bool | None = None) -> SparseSpectrum:
    """Converts Möbius coefficients to a Fourier spectrum.

    .. math:: F(K) = (-1)^{|K|} \\sum_{S \\supseteq K} a(S) / 2^{|S|}

    Example:
        >>> spec = SparseSpectrum.from_sets([(), (0,)], [1.5, -1.0], 1, basis="Moebius")
        >>> moebius_to_fourier(spec).to_dict()
        {(): 1.0, (0,): 0.5}
    """
    _check_basis(spectrum, "Moebius")
    n = spectrum.n_features
    if _use_dense(spectrum, None, dense):
        a = spectrum_to_dense(spectrum)
        sizes = _popcount(n, a.device)
        scale = (0.5**sizes).to(a.dtype).reshape(-1, *([1] * (a.dim() - 1)))
        f_dense = _superset_sum(a * scale, n)
        sign = (1 - 2 * (sizes % 2)).to(a.dtype).reshape(scale.shape)
        return dense_to_spectrum(f_dense * sign, n, "Fourier")
    s_max = spectrum.max_size
    table = torch.zeros(s_max + 1, s_max + 1, dtype=torch.float64)
    for s in range(s_max + 1):
        for k in range(s + 1):
            table[s, k] = (-1) ** k / 2**s
    idx, coef = _expand(spectrum, table, None)
    return SparseSpectrum(idx, coef, n, "Fourier")
