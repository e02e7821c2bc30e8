"""Transforms of sparse spectra: evaluation, fast Walsh-Hadamard, basis and index changes.

Conventions (fixed across torchspex), for masks ``x`` in ``{0,1}^n`` with 1 = feature kept:

* Fourier: ``f(x) = sum_K F[K] (-1)^{|K & x|}``, so ``F[()] = E_uniform[f]``.
* Möbius: ``f(x) = sum_{S subset of x} a[S]``, so ``a[()] = f(all removed)``.
* ``a[S] = (-2)^{|S|} sum_{K ⊇ S} F[K]`` and ``F[K] = (-1)^{|K|} sum_{S ⊇ K} a[S] / 2^{|S|}``.

Sparse spectra are converted term by term (each term spreads to its subsets); small ``n`` with
dense spectra goes through ``2^n`` vectors and ``O(n 2^n)`` butterflies instead. The kernels
(dense vectors, the Walsh-Hadamard transform, the change of basis) live in
:mod:`torchspex.fourier._basis`, below the generalized values and the ELC that this module
dispatches to; their public names are re-exported here.
"""

from __future__ import annotations

import torch
from torch import Tensor

from torchspex.fourier._basis import (
    _check_basis,
    _expand,
    _popcount,
    _superset_sum,
    _use_dense,
    dense_to_spectrum,
    fourier_to_moebius,
    fwht,
    moebius_to_fourier,
    spectrum_to_dense,
)
from torchspex.fourier.elc import egalitarian_least_core
from torchspex.fourier.generalized import generalized_index
from torchspex.fourier.indices import (
    FIRST_ORDER,
    GENERALIZED,
    NONLINEAR,
    canonical_index,
    fourier_weights,
    moebius_weights,
)
from torchspex.fourier.spectrum import DeferredSpectrum, SparseSpectrum

__all__ = [
    "dense_to_spectrum",
    "evaluate",
    "fourier_to_index",
    "fourier_to_moebius",
    "fwht",
    "moebius_to_fourier",
    "moebius_to_index",
    "spectrum_to_dense",
]

def evaluate(spectrum: SparseSpectrum, masks: Tensor, chunk_size: int | None = None) -> Tensor:
    """Evaluates a Fourier or Möbius spectrum on masks ``bool [m, n]`` -> ``[m, *out]``.

    The functional form of :meth:`SparseSpectrum.evaluate` (the container owns the kernel, so
    ``spectrum.py`` needs nothing from this module).
    """
    return spectrum.evaluate(masks, chunk_size=chunk_size)


def _default_order(index: str, max_order: int | None, n: int) -> int:
    if index in FIRST_ORDER:
        return 1
    return n if max_order is None else max_order


def fourier_to_index(
    spectrum: SparseSpectrum,
    index: str,
    max_order: int | None = None,
    dense: bool | None = None,
) -> SparseSpectrum:
    """Converts a Fourier spectrum to an interaction index (terms up to ``max_order``).

    ``max_order=None`` means no cap (all orders); SV and BV are first order by definition.
    The empty set holds each index's own value at ``T = ()`` (as shapiq's ``ExactComputer``):
    ``f(0)`` for Moebius, STII, FSII, k-SII and SV; ``E_uniform[f]`` for Fourier, BII and BV;
    the FBII intercept for FBII; ``sum_S a(S) / (|S| + 1)`` for SII (at ``max_order=1`` SII is
    the Shapley value, ``()`` = ``f(0)``, as shapiq's); ``f(0)`` for Co-Moebius,
    CHII, kADD-SHAP and the generalized values (SGV, BGV, CHGV, IGV, EGV, JointSV: one value
    per coalition up to ``max_order``, :mod:`torchspex.fourier.generalized`); none for ELC
    (one value per player, :mod:`torchspex.fourier.elc`).

    Example:
        >>> spec = SparseSpectrum.from_sets([(), (0,), (0, 1)], [1.0, -0.5, 0.25], 2)
        >>> fourier_to_index(spec, "SV").to_dict()  # SV of feature 1 is 0 (not listed)
        {(): 0.75, (0,): 1.0}
    """
    _check_basis(spectrum, "Fourier")
    index = canonical_index(index)
    n = spectrum.n_features
    order = _default_order(index, max_order, n)
    spectrum = index_source(spectrum, index, order)
    if index == "Fourier":
        return spectrum.prune(max_order=order)
    if index in GENERALIZED or index in NONLINEAR:
        return _other_index(spectrum, index, order, dense)
    weights = _weights_for(index, order)
    # No term is larger than max_size, and every index capped at l >= max_size equals the
    # index capped at max_size (e.g. FSII_l is then the exact Möbius fit): cap the tables there.
    order = max(1, min(order, spectrum.max_size))
    if _use_dense(spectrum, order, dense):
        return _dense_index(spectrum, weights, order).replace(basis=index)
    table = fourier_weights(weights, order, max(spectrum.max_size, order))
    idx, coef = _expand(spectrum, table, order)
    return SparseSpectrum(idx, coef, n, index)


def index_source(
    spectrum: SparseSpectrum, index: str, max_order: int | None = None
) -> SparseSpectrum:
    """The part of a Fourier ``spectrum`` that :func:`fourier_to_index` reads for ``index``
    up to ``max_order``: for the Shapley values, its odd-order terms and one constant holding
    the rest at ∅ (every Shapley value is a sum of odd terms; a
    :class:`~torchspex.fourier.DeferredSpectrum` gives its known part, so nothing deferred is
    computed and the values are the same deferred or not); else the spectrum itself."""
    index = canonical_index(index)
    order = _default_order(index, max_order, spectrum.n_features)
    if _weights_for(index, order) != "SV":
        return spectrum
    return spectrum.known if isinstance(spectrum, DeferredSpectrum) else _odd_and_empty(spectrum)


def _odd_and_empty(spectrum: SparseSpectrum) -> SparseSpectrum:
    """The odd-order terms of ``spectrum`` and one constant holding its even-order terms' sum
    (so the value at ∅ is kept): every Shapley value of the spectrum, computed as they are
    for the known part of a :class:`~torchspex.fourier.DeferredSpectrum`."""
    orders = spectrum.orders
    odd = orders % 2 == 1
    if bool((orders[~odd] == 0).all()) and int((~odd).sum()) <= 1:
        return spectrum  # already of that form
    coef = spectrum.coefficients
    constant = coef[~odd].sum(dim=0, keepdim=True)
    empty = torch.full((1, spectrum.indices.shape[1]), -1, dtype=torch.long,
                       device=spectrum.indices.device)  # fmt: skip
    return SparseSpectrum(torch.cat([empty, spectrum.indices[odd]]),
                          torch.cat([constant, coef[odd]]), spectrum.n_features)


def _other_index(
    spectrum: SparseSpectrum, index: str, order: int, dense: bool | None = None
) -> SparseSpectrum:
    """Generalized values (per coalition) and the ELC (not linear), in their own modules."""
    if index in GENERALIZED:
        return generalized_index(spectrum, index, order, dense=dense)
    return egalitarian_least_core(spectrum)[0]


def _weights_for(index: str, order: int) -> str:
    # SII capped at order 1 is the Shapley value, empty-set term included (shapiq's convention).
    return "SV" if index == "SII" and order == 1 else index


def _dense_index(spectrum: SparseSpectrum, index: str, order: int) -> SparseSpectrum:
    n = spectrum.n_features
    f_dense = spectrum_to_dense(spectrum)
    sizes = _popcount(n, f_dense.device)
    table = fourier_weights(index, order, max(n, order)).to(f_dense.device, f_dense.dtype)
    out = torch.zeros_like(f_dense)
    shape = (-1, *([1] * (f_dense.dim() - 1)))
    for t in range(order + 1):
        col = table[:, t]
        if not bool(col.ne(0).any()):
            continue
        g = _superset_sum(f_dense * col[sizes].reshape(shape), n)
        at_t = (sizes == t).reshape(shape)
        out = torch.where(at_t, g, out)
    return dense_to_spectrum(out, n, index, keep=sizes <= order)


def moebius_to_index(
    spectrum: SparseSpectrum, index: str, max_order: int | None = None
) -> SparseSpectrum:
    """Converts Möbius coefficients to an interaction index.

    .. math:: I(T) = \\sum_{S \\supseteq T} w(|S|, |T|)\\, a(S)

    Example:
        >>> spec = SparseSpectrum.from_sets([(0, 1)], [1.0], 2, basis="Moebius")
        >>> moebius_to_index(spec, "SV").to_dict()
        {(0,): 0.5, (1,): 0.5}
    """
    _check_basis(spectrum, "Moebius")
    index = canonical_index(index)
    n = spectrum.n_features
    if index == "Fourier":
        return moebius_to_fourier(spectrum).prune(max_order=max_order)
    order = _default_order(index, max_order, n)
    if index in GENERALIZED or index in NONLINEAR:
        return _other_index(spectrum, index, order)
    weights = _weights_for(index, order)
    order = max(1, min(order, spectrum.max_size))
    table = moebius_weights(weights, order, max(spectrum.max_size, order))
    idx, coef = _expand(spectrum, table, order)
    return SparseSpectrum(idx, coef, n, index)
