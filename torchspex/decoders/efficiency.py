"""Exact corners: a learned function that equals the model at all-kept and all-removed.

Every Shapley-type index is *efficient*: the Shapley values of a set function ``g`` sum to
``g(N) - g(∅)``, and the ``()`` entry of SV, k-SII, STII and FSII is ``g(∅)``. For the learned
surrogate to give the model's efficiency gap and baseline, it must be exact at the two corners.
In the Walsh basis (``g(x) = sum_K F[K] (-1)^{|K ∩ x|}``) these are two linear equalities,

    ``g(∅) = sum_K F[K]``  and  ``g(N) = sum_K (-1)^{|K|} F[K]``,

i.e. one on the even-order and one on the odd-order coefficients:
``sum_{|K| even} F[K] = (f(∅) + f(N)) / 2`` and ``sum_{|K| odd} F[K] = (f(∅) - f(N)) / 2``.

:func:`enforce_corners` moves a fitted spectrum onto these constraints with the smallest change
of the function over uniform random masks (its mean square there is the sum of the squared
coefficient changes, by Parseval), spread over the spectrum's terms, the constant, every order-1
term and the pairs: each even term moves by the even gap over the number of even terms, each
odd term by the odd gap over the number of odd terms. The corners are two of ``2^n`` masks; a
sampled fit (SPEX, ProxySPEX: uniform-like masks) usually misses them by far more than its
error in the bulk (MiniLM over a 100-word review: ``f(∅) = 0.069``, ProxySPEX's fit 0.42), and
a correction that lands on few terms moves the bulk with it: the least-squares change on the
fit's own samples (the rule before this one) spread the even gap over the constant and a few
pairs and took that fit's held-out R^2 on uniform masks from 0.83 to 0.04. Spread over the
``n (n - 1) / 2`` pairs, the even correction is the symmetric function ``sum_{i<j} chi_i chi_j``
(quadratic in the number of features kept: the whole gap at both corners, ``-1 / (n - 1)`` of
it in the middle); the odd one is linear in that number.
"""

from __future__ import annotations

import torch
from torch import Tensor

from torchspex.decoders.refit import walsh_design
from torchspex.fourier import SparseSpectrum
from torchspex.fourier._sets import coalesce, normalize_indices, set_sizes

__all__ = ["EXACT_HELDOUT", "corner_pairs", "corner_rows", "enforce_corners", "with_first_order"]

#: A fit counts as exact where its error, in squared deviations over each output's variance, is
#: at most this per value: the values reproduced to about 1e-10 of their spread, far above
#: float64 round-off (a noiseless planted game decoded exactly gives ~1e-31 per value) and far
#: below any fit's error on a real model. SPEX's certificate on the hybrid's held-out design
#: (:mod:`~torchspex.decoders.auto`: the regression is then not fitted) and the regression's
#: check that the odd part is linear both read it.
EXACT_HELDOUT = 1e-20


def corner_rows(indices: Tensor) -> Tensor:
    """The constraint rows ``C float64 [2, s]``: ``g(∅) = C[0] @ F``, ``g(N) = C[1] @ F``.

    Example:
        >>> corner_rows(torch.tensor([[-1, -1], [0, -1], [0, 1]]))
        tensor([[ 1.,  1.,  1.],
                [ 1., -1.,  1.]], dtype=torch.float64)
    """
    sizes = set_sizes(indices).to(torch.float64)
    return torch.stack([torch.ones_like(sizes), 1.0 - 2.0 * (sizes % 2)])


#: Most pairs the corner correction spreads the even gap over: all of them up to n = 512
#: features; beyond, the pairs of features at most ``CORNER_PAIRS // n`` apart in index order (its
#: mean square on uniform masks is the squared gap over the number of even terms either way).
CORNER_PAIRS = 1 << 17


def _with_rows(spectrum: SparseSpectrum, rows: Tensor) -> SparseSpectrum:
    """The spectrum with the set rows ``rows [r, d]`` (normalized) present, zero where new."""
    width = max(1, spectrum.indices.shape[1], rows.shape[1])
    pad = torch.nn.functional.pad
    indices = pad(spectrum.indices, (0, width - spectrum.indices.shape[1]), value=-1)
    extra = pad(rows, (0, width - rows.shape[1]), value=-1)
    zeros = torch.zeros(rows.shape[0], *spectrum.out_shape, dtype=spectrum.coefficients.dtype)
    n = spectrum.n_features
    idx, coef = coalesce(normalize_indices(torch.cat([indices, extra])),
                         torch.cat([spectrum.coefficients, zeros]), n)  # fmt: skip
    return SparseSpectrum(idx, coef, n, spectrum.basis)


def corner_pairs(n: int, most: int = CORNER_PAIRS) -> Tensor:
    """The pairs :func:`enforce_corners` spreads the even gap over, ``int64 [p, 2]``: every pair
    of ``n`` features, or where there are more than ``most``, those at most ``most // n``
    apart in index order.

    Example:
        >>> corner_pairs(3).tolist(), corner_pairs(6, most=6).tolist()
        ([[0, 1], [0, 2], [1, 2]], [[0, 1], [1, 2], [2, 3], [3, 4], [4, 5]])
    """
    i, j = torch.triu_indices(n, n, offset=1)
    if n * (n - 1) // 2 > most:
        near = (j - i) <= max(1, most // n)
        i, j = i[near], j[near]
    return torch.stack([i, j], dim=1)


def with_first_order(spectrum: SparseSpectrum) -> SparseSpectrum:
    """The spectrum with the constant and every order-1 term present (zero where new).

    The two corner constraints need an even and an odd term to act on; the constant and the
    order-1 terms are the natural ones (they carry the baseline and the first-order values).
    """
    n = spectrum.n_features
    extra = torch.full((n + 1, 1), -1, dtype=torch.long)
    extra[1:, 0] = torch.arange(n)
    return _with_rows(spectrum, extra)


def enforce_corners(
    spectrum: SparseSpectrum,
    f_empty: Tensor,
    f_full: Tensor,
    masks: Tensor | None = None,
    weights: Tensor | None = None,
) -> SparseSpectrum:
    """The spectrum moved onto ``f_empty`` at ∅ and ``f_full`` at N with the smallest change
    in mean square over uniform random masks (see the module docstring), or on ``masks``.

    Args:
        spectrum: a Fourier spectrum, coefficients ``[s, *out]``.
        f_empty: ``[*out]`` the value with every feature removed.
        f_full: ``[*out]`` the value with every feature kept.
        masks: ``bool [m, n]``: measure the change on these samples instead (weighted sum of
            squares of the fitted values' change, the spectrum's own support only): for a fit
            whose samples sit where the corners pull (the Shapley kernel's design, which
            samples the sizes next to them most).
        weights: ``float64 [m]`` weights of ``masks`` (``None``: equal; non-finite weights,
            e.g. the corners' own, are ignored).

    Returns:
        A Fourier :class:`SparseSpectrum` with the constant and order-1 terms present, exact at
        both corners to round-off: unchanged otherwise where it already was; else on its own
        support plus those terms and :func:`corner_pairs`, every even term moved by the even
        gap over their number, every odd one by the odd gap over theirs (with ``masks``: on
        its own support plus those terms, by the least-squares step).

    Example:
        >>> spec = SparseSpectrum.from_sets([(), (0,)], [1.0, 0.5], 3)
        >>> fixed = enforce_corners(spec, torch.tensor(1.5), torch.tensor(2.0))
        >>> ends = torch.tensor([[0, 0, 0], [1, 1, 1]]).bool()
        >>> [round(v, 12) for v in fixed.evaluate(ends).tolist()]
        [1.5, 2.0]
    """
    spectrum = with_first_order(spectrum)
    coef = spectrum.coefficients.double()
    beta = coef.reshape(coef.shape[0], -1)
    c = corner_rows(spectrum.indices)
    target = torch.stack([torch.as_tensor(f_empty, dtype=torch.float64).reshape(-1),
                          torch.as_tensor(f_full, dtype=torch.float64).reshape(-1)])  # fmt: skip
    gap = target - c @ beta  # [2, o]
    scale = float(target.abs().max()) if target.numel() else 0.0
    if float(gap.abs().max()) <= 1e-13 * max(scale, 1.0):
        return spectrum
    if masks is not None:
        return _least_squares_move(spectrum, gap, masks, weights)
    n = spectrum.n_features
    if n >= 2:
        spectrum = _with_rows(spectrum, corner_pairs(n))
    coef = spectrum.coefficients.double()
    beta = coef.reshape(coef.shape[0], -1)
    odd = (set_sizes(spectrum.indices) % 2).bool()
    # gap[0] = even + odd shortfall at ∅, gap[1] = even - odd at N
    gaps = ((gap[0] + gap[1]) / 2, (gap[0] - gap[1]) / 2)  # the even and the odd shortfall
    delta = torch.zeros_like(beta)
    for part, shortfall in ((~odd, gaps[0]), (odd, gaps[1])):
        delta[part] = shortfall / int(part.sum())
    fixed = (beta + delta).reshape(spectrum.n_terms, *coef.shape[1:])
    return SparseSpectrum(spectrum.indices, fixed, n, spectrum.basis)


def _least_squares_move(
    spectrum: SparseSpectrum, gap: Tensor, masks: Tensor, weights: Tensor | None
) -> SparseSpectrum:
    """The corner correction with the least weighted change of the fitted values on ``masks``
    (the constrained least-squares step ``G^-1 C' (C G^-1 C')^-1 gap`` on the spectrum's own
    support, ``G`` the design's Gram matrix)."""
    c = corner_rows(spectrum.indices)
    coef = spectrum.coefficients.double()
    out_shape = coef.shape[1:]
    beta = coef.reshape(coef.shape[0], -1)
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
