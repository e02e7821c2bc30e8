"""James-Stein shrinkage of the pair indices with a delete-a-fold jackknife noise estimate.

The pair indices of a sampled spectrum (k-SII / SII order 2) come from its even terms of order
>= 2 alone (an odd term's share of a pair averages out under every complement-symmetric
weighting), so they can be shrunk toward zero without touching the Shapley values, which come
from the odd terms alone. The factor is the positive-part James-Stein one,
``max(0, 1 - tr V / ||v||^2)`` per output, with ``V`` the jackknife covariance
``(K - 1) / K sum_k (v_(k) - v_.)(v_(k) - v_.)'`` of ``K`` refits of the whole decoder, each
without one fold of the samples: the choice of terms is refitted too, so its noise, which a
sandwich around the chosen terms misses, counts. ProxySPEX (``shrink=True``) and the
regression with fewer pairs than features use it.
"""

from __future__ import annotations

import torch
from torch import Tensor

from torchspex.decoders.efficiency import corner_rows, enforce_corners
from torchspex.fourier import SparseSpectrum, fourier_to_index
from torchspex.fourier._sets import coalesce, normalize_indices, set_sizes

__all__ = [
    "JACKKNIFE_FOLDS",
    "even_pairs",
    "jackknife_stein_factor",
    "scale_even",
    "stein_factor",
]

#: Folds (refits) of the jackknife.
JACKKNIFE_FOLDS = 5
#: :func:`scale_even` spreads the change at the corners over the constant, the even terms and
#: every pair instead of the constant alone, which moved the function's level over every mask
#: of middle size: the default's held-out R^2 on uniform masks, digits CNN over 64 pixels at
#: 500 / 1,000 / 2,000 calls, 0.626 / 0.760 / 0.748 -> 0.716 / 0.831 / 0.845 (2 seeds,
#: ``benchmarks/large_n.py``); k-SII pair errors of the exact-table games within 1%
#: (``python benchmarks/decode_variants.py low,low+constshrink``,
#: results/decode_variants_spread_shrink.json).
SPREAD_CHANGE = True


def even_pairs(spectrum: SparseSpectrum) -> tuple[Tensor, Tensor]:
    """The k-SII pairs of the even terms of order >= 2 of ``spectrum``: ``(keys [q], values
    [q, o])`` with ``keys = i * n + j`` for the pair ``i < j``."""
    n = spectrum.n_features
    sizes = set_sizes(spectrum.indices)
    even = (sizes >= 2) & (sizes % 2 == 0)
    coef = spectrum.coefficients.double().reshape(spectrum.n_terms, -1)
    if not bool(even.any()):
        return torch.zeros(0, dtype=torch.long), coef[:0]
    view = fourier_to_index(SparseSpectrum(spectrum.indices[even], coef[even], n), "k-SII", 2)
    pairs = view.orders == 2
    ij = view.indices[pairs][:, :2]
    values = view.coefficients.double().reshape(view.n_terms, -1)[pairs]
    return ij[:, 0] * n + ij[:, 1], values


def stein_factor(trace: Tensor, norm: Tensor) -> Tensor:
    """The positive-part James-Stein factor ``max(0, 1 - trace / norm)`` per output (``1``
    where ``norm`` is 0: nothing to shrink), from the trace of the estimates' covariance and
    their squared norm."""
    factor = torch.where(norm > 0, 1.0 - trace / norm.clamp(min=1e-300), torch.ones_like(norm))
    return factor.clamp(0.0, 1.0)


def jackknife_stein_factor(
    full: tuple[Tensor, Tensor], folds: list[tuple[Tensor, Tensor]]
) -> Tensor:
    """The factor ``[o]`` for the pairs ``full`` (:func:`even_pairs` of the fit on every
    sample) from the pairs of the fold refits ``folds`` (a pair a fit lacks is 0 there)."""
    keys, v = full
    k = len(folds)
    union, where = torch.unique(torch.cat([keys, *[f[0] for f in folds]]), return_inverse=True)
    stack = torch.zeros(k, union.shape[0], v.shape[1], dtype=torch.float64)
    start = keys.shape[0]
    for f, (kf, vf) in enumerate(folds):
        stack[f, where[start:start + kf.shape[0]]] = vf
        start += kf.shape[0]
    trace = (k - 1) / k * (stack - stack.mean(dim=0)).pow(2).sum(dim=(0, 1))
    return stein_factor(trace, v.pow(2).sum(dim=0))


def scale_even(spectrum: SparseSpectrum, factor: Tensor) -> SparseSpectrum:
    """``spectrum`` with its even terms of order >= 2 scaled by ``factor [o]`` and the change
    at ∅ (an even term has one value at ∅ and at N) taken back so that the values at both
    corners and the odd terms stay as they were. The spectrum must hold the constant term.

    With :data:`SPREAD_CHANGE` the change is spread with the least change over uniform masks
    (:func:`~torchspex.decoders.efficiency.enforce_corners`: equally over the constant, the
    even terms and every pair, which adds the pairs); else the constant takes it all."""
    sizes = set_sizes(spectrum.indices)
    even = (sizes >= 2) & (sizes % 2 == 0)
    const = (sizes == 0).nonzero().squeeze(1)
    if const.numel() != 1:
        raise ValueError("scale_even needs a spectrum that holds the constant term once.")
    coef = spectrum.coefficients.double().reshape(spectrum.n_terms, -1).clone()
    if SPREAD_CHANGE and spectrum.n_features >= 2:
        # the even terms alone: scaling them moves both corners alike, so the move back is
        # even too and the odd terms stay as they were (an odd shortfall would be round-off,
        # spread as order-1 terms of 1e-18)
        keep = sizes % 2 == 0
        part = coef[keep]
        ends = corner_rows(spectrum.indices[keep]) @ part  # the corners before the scaling
        part[even[keep]] = part[even[keep]] * factor
        scaled = SparseSpectrum(spectrum.indices[keep], part, spectrum.n_features, spectrum.basis)
        moved = enforce_corners(scaled, ends[0], ends[1])
        back = set_sizes(moved.indices) % 2 == 0
        rows = [moved.indices[back], spectrum.indices[~keep]]
        width = max(r.shape[1] for r in rows)
        rows = [torch.nn.functional.pad(r, (0, width - r.shape[1]), value=-1) for r in rows]
        idx, out = coalesce(normalize_indices(torch.cat(rows)),
                            torch.cat([moved.coefficients[back], coef[~keep]]),
                            spectrum.n_features)  # fmt: skip
        return SparseSpectrum(idx, out.reshape(idx.shape[0], *spectrum.coefficients.shape[1:]),
                              spectrum.n_features, spectrum.basis)  # fmt: skip
    coef[const[0]] -= (coef[even] * (factor - 1.0)).sum(dim=0)
    coef[even] = coef[even] * factor
    return SparseSpectrum(spectrum.indices, coef.reshape(spectrum.coefficients.shape),
                          spectrum.n_features, spectrum.basis)  # fmt: skip
