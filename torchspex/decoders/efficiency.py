"""Exact corners: a learned function that equals the model at all-kept and all-removed.

Every Shapley-type index is *efficient*: the Shapley values of a set function ``g`` sum to
``g(N) - g(∅)``, and the ``()`` entry of SV, k-SII, STII and FSII is ``g(∅)``. For the learned
surrogate to give the model's efficiency gap and baseline, it must be exact at the two corners.
In the Walsh basis (``g(x) = sum_K F[K] (-1)^{|K ∩ x|}``) these are two linear equalities,

    ``g(∅) = sum_K F[K]``  and  ``g(N) = sum_K (-1)^{|K|} F[K]``,

i.e. one on the even-order and one on the odd-order coefficients:
``sum_{|K| even} F[K] = (f(∅) + f(N)) / 2`` and ``sum_{|K| odd} F[K] = (f(∅) - f(N)) / 2``.

:func:`enforce_corners` moves a fitted spectrum onto these constraints with the smallest change
measured on the samples the fit saw (the constrained least-squares correction
``Δ = G⁻¹Cᵀ (C G⁻¹ Cᵀ)⁻¹ (d - C β)`` with ``G`` the design's Gram matrix), so a fit that already
holds them is left as it is, and an unconstrained least-squares fit becomes the constrained one.
"""

from __future__ import annotations

import torch
from torch import Tensor

from torchspex.decoders.refit import walsh_design
from torchspex.fourier import SparseSpectrum
from torchspex.fourier._sets import coalesce, normalize_indices, set_sizes

__all__ = ["corner_rows", "enforce_corners", "with_first_order"]


def corner_rows(indices: Tensor) -> Tensor:
    """The constraint rows ``C float64 [2, s]``: ``g(∅) = C[0] @ F``, ``g(N) = C[1] @ F``.

    Example:
        >>> corner_rows(torch.tensor([[-1, -1], [0, -1], [0, 1]]))
        tensor([[ 1.,  1.,  1.],
                [ 1., -1.,  1.]], dtype=torch.float64)
    """
    sizes = set_sizes(indices).to(torch.float64)
    return torch.stack([torch.ones_like(sizes), 1.0 - 2.0 * (sizes % 2)])


def with_first_order(spectrum: SparseSpectrum) -> SparseSpectrum:
    """The spectrum with the constant and every order-1 term present (zero where new).

    The two corner constraints need an even and an odd term to act on; the constant and the
    order-1 terms are the natural ones (they carry the baseline and the first-order values).
    """
    n = spectrum.n_features
    width = max(1, spectrum.indices.shape[1])
    extra = torch.full((n + 1, width), -1, dtype=torch.long)
    extra[1:, 0] = torch.arange(n)
    indices = torch.nn.functional.pad(spectrum.indices, (0, width - spectrum.indices.shape[1]),
                                      value=-1)  # fmt: skip
    zeros = torch.zeros(n + 1, *spectrum.out_shape, dtype=spectrum.coefficients.dtype)
    idx, coef = coalesce(
        normalize_indices(torch.cat([indices, extra])),
        torch.cat([spectrum.coefficients, zeros]),
        n,
    )
    return SparseSpectrum(idx, coef, n, spectrum.basis)


def enforce_corners(
    spectrum: SparseSpectrum,
    masks: Tensor,
    f_empty: Tensor,
    f_full: Tensor,
    weights: Tensor | None = None,
) -> SparseSpectrum:
    """The closest spectrum (on ``masks``) that equals ``f_empty`` at ∅ and ``f_full`` at N.

    Args:
        spectrum: a Fourier spectrum, coefficients ``[s, *out]``.
        masks: ``bool [m, n]`` the samples the fit saw (they define "closest": the correction
            minimises the change of the fitted values on them, in the weighted sum of squares).
        f_empty: ``[*out]`` the value with every feature removed.
        f_full: ``[*out]`` the value with every feature kept.
        weights: ``float64 [m]`` sample weights (``None``: equal; non-finite weights, e.g. the
            corners' own, are ignored).

    Returns:
        A Fourier :class:`SparseSpectrum` on the same support plus the constant and order-1
        terms, exact at both corners to round-off.

    Example:
        >>> spec = SparseSpectrum.from_sets([(), (0,)], [1.0, 0.5], 3)
        >>> masks = torch.tensor([[1, 0, 0], [0, 1, 0], [1, 1, 1], [0, 0, 0]]).bool()
        >>> fixed = enforce_corners(spec, masks, torch.tensor(1.5), torch.tensor(2.0))
        >>> ends = torch.tensor([[0, 0, 0], [1, 1, 1]]).bool()
        >>> [round(v, 12) for v in fixed.evaluate(ends).tolist()]
        [1.5, 2.0]
    """
    spectrum = with_first_order(spectrum)
    coef = spectrum.coefficients.double()
    out_shape = coef.shape[1:]
    beta = coef.reshape(coef.shape[0], -1)
    c = corner_rows(spectrum.indices)
    target = torch.stack([torch.as_tensor(f_empty, dtype=torch.float64).reshape(-1),
                          torch.as_tensor(f_full, dtype=torch.float64).reshape(-1)])  # fmt: skip
    gap = target - c @ beta  # [2, o]
    scale = float(target.abs().max()) if target.numel() else 0.0
    if float(gap.abs().max()) <= 1e-13 * max(scale, 1.0):
        return spectrum
    a = walsh_design(masks.bool(), spectrum.indices, spectrum.n_features)
    w = torch.ones(a.shape[0], dtype=torch.float64) if weights is None else weights.double()
    w = torch.where(torch.isfinite(w), w, torch.zeros_like(w))
    if float(w.sum()) > 0:
        w = w / w.mean()
    s = a.shape[1]
    # a ridge keeps G = A'WA + ridge I invertible where the samples do not pin every term
    diag_mean = float((w.unsqueeze(1) * a * a).sum(dim=0).mean()) if s else 1.0
    ridge = 1e-8 * diag_mean + 1e-12
    if s <= a.shape[0]:
        gram = a.T @ (w.unsqueeze(1) * a) + ridge * torch.eye(s, dtype=torch.float64)
        g_inv_ct = torch.linalg.solve(gram, c.T)  # [s, 2]
    else:
        # more terms than samples (a large ProxySPEX or tree spectrum): the s x s system
        # through the m x m one (Woodbury: ridge G^-1 = I - B'(ridge I + BB')^-1 B, B = W^½A;
        # delta below is unchanged by a scale of G^-1, so the 1 / ridge is left out)
        b = w.sqrt().unsqueeze(1) * a
        inner_m = b @ b.T + ridge * torch.eye(b.shape[0], dtype=torch.float64)
        g_inv_ct = c.T - b.T @ torch.linalg.solve(inner_m, b @ c.T)
    inner = c @ g_inv_ct  # [2, 2]
    delta = g_inv_ct @ torch.linalg.solve(inner, gap)  # [s, o]
    fixed = (beta + delta).reshape(s, *out_shape)
    return SparseSpectrum(spectrum.indices, fixed, spectrum.n_features, spectrum.basis)
