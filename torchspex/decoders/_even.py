"""The even part's James-Stein shrinkage in the regression: the noise it is measured against.

The pair indices come from the even part alone, so shrinking it toward the constant leaves the
Shapley values untouched (:mod:`._shrink` has the factor and the scaling). What this module
decides is the noise: a stratified sandwich around the chosen terms (:func:`_size_strata`,
:func:`_stein_factor`), or, with fewer pairs than features, a jackknife of refits that choose
their own terms, proxy included (:func:`_even_refits`), whose out-of-fold predictions also give
a calibration slope that caps the factor below :data:`SLOPE_PAIRS` pairs per feature
(:func:`shrunk_even`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor

from torchspex.decoders._candidates import (
    _first_order_rows,
    _proxy_terms,
    _ranked_candidates,
    _refit_terms,
)
from torchspex.decoders._offset import _at_empty, _FoldProxies
from torchspex.decoders._part_fit import fit_part
from torchspex.decoders._proxy import ProxyRows
from torchspex.decoders._shrink import (
    JACKKNIFE_FOLDS,
    even_pairs,
    jackknife_stein_factor,
    scale_even,
    stein_factor,
)
from torchspex.decoders.refit import walsh_design
from torchspex.fourier import SparseSpectrum
from torchspex.fourier._sets import set_sizes

#: Below this many pairs per feature, the noise of the even part's James-Stein shrinkage comes
#: from a jackknife of the whole even fit, proxy included (:func:`_even_refits`),
#: instead of the sandwich around the chosen terms: with fewer pairs than features, choosing
#: the terms is most of the noise and the sandwich misses it (planted n = 64 at 128 calls,
#: k-SII pair error 1.01 / 1.11 -> 1.00 / 1.00 sparse / hierarchical, 4 seeds).
JACKKNIFE_PAIRS = 1
#: Below this many pairs per feature, the James-Stein factor is capped by the calibration slope
#: of refits that choose their own terms (:func:`_even_refits`): with few pairs per feature the
#: terms chosen fit some of the noise, which the sandwich around them does not see (6 seeds,
#: k-SII pair error: planted hierarchical n = 64 at 256 calls 1.06 -> 1.02, the digits CNN
#: over 2x2 patches at 128 calls 1.44 -> 1.34; the MLP, MiniLM and LightGBM level).
SLOPE_PAIRS = 4


def _size_strata(x: Tensor, least: int = 4) -> tuple[Tensor, Tensor]:
    """Strata of the pair rows ``x [p, n]`` for the sampling variance: their size classes
    ``min(|S|, n - |S|)``, neighbouring classes merged until each stratum has ``least`` rows
    (systematic sampling leaves one or two rows in many classes when ``n`` is large), ``-1``
    for classes enumerated completely (no sampling variance); and each row's share of its
    class that the rows cover (the finite-population correction)."""
    n = x.shape[1]
    k = x.sum(dim=1)
    cls = torch.minimum(k, n - k)
    label = torch.full_like(cls, -1)
    fraction = torch.ones(x.shape[0], dtype=torch.float64)
    stratum, in_stratum = 0, 0
    for s, m in zip(*torch.unique(cls, return_counts=True)):
        total = math.comb(n, int(s)) // (2 if 2 * int(s) == n else 1)
        if int(m) >= total:
            continue
        rows = cls == s
        fraction[rows] = int(m) / total
        label[rows] = stratum
        in_stratum += int(m)
        if in_stratum >= least:
            stratum, in_stratum = stratum + 1, 0
    if 0 < in_stratum < least and stratum > 0:  # a short last stratum joins the one before
        label[label == stratum] = stratum - 1
    return label, fraction


def _even_refits(
    masks: Tensor, flat: Tensor, w: Tensor, extra: list[Tensor],
    ranking: tuple[Tensor, Tensor], own_proxy: bool, n: int, n_folds: int,
    generator: torch.Generator, max_terms: int, even: SparseSpectrum, effort: str = "low",
    proxy_fit: dict[str, Any] | None = None,
    fold_proxies: tuple[Tensor, _FoldProxies] | None = None, *, pool: ProxyRows | None = None,
) -> tuple[list[tuple[Tensor, Tensor]], Tensor]:
    """Refits of the even fit without one fold of the pairs each, and what they say about it.

    :data:`~torchspex.decoders._shrink.JACKKNIFE_FOLDS` refits, each on the pairs of the other
    folds, with the proxy refitted on those when it was fitted on these samples
    (``own_proxy``; else the given ``ranking`` of candidates is kept; with one output and
    ``effort="low"`` the refit keeps the setting ``proxy_fit`` chose, depth, rate and trees,
    instead of early-stopping again: :func:`_refit_terms`; ``fold_proxies``, the folds and
    fold proxies of the odd part's cross-fit (:func:`_with_proxy_offset`) when it ran with as
    many folds: those proxies were refitted without the same pairs, so they are reused, not
    fitted again) and the terms and penalty cross-validated again. Returns ``(pairs,
    slope)``: each refit's :func:`~torchspex.decoders._shrink.even_pairs` (for the jackknife
    noise) and the calibration slope ``[o]`` of their out-of-fold predictions, the weighted
    (the pairs' weights) least-squares factor ``c`` in ``y(S) - y(∅) ~ c (g(S) - g(∅))`` over
    the held-out pairs (van Houwelingen's cross-validated shrinkage factor), clamped to
    ``[0, 1]``: how much of the even fit's departure from the constant carries over to pairs
    it did not see. It is 0 where no refit departs from the constant (the fit's pairs are not
    reproduced without any one fold).
    """
    p = (masks.shape[0] - 2) // 2
    if fold_proxies is not None and len(fold_proxies[1]) != JACKKNIFE_FOLDS:
        fold_proxies = None
    if fold_proxies is None:
        fold = torch.randperm(p, generator=generator) % JACKKNIFE_FOLDS
    else:
        fold = fold_proxies[0]
    constant = _first_order_rows(n, 1)[:1]
    at_empty = even.coefficients.double().reshape(even.n_terms, -1).sum(dim=0)
    num = torch.zeros_like(at_empty)
    den = torch.zeros_like(at_empty)
    refits = []
    # pool: the masks and flat[:, 0] binned once for the refitted proxies (ProxyRows), given
    # or made at the first refit
    for f in range(JACKKNIFE_FOLDS):
        kept = (fold != f).nonzero().squeeze(1)
        first, second = 2 + 2 * kept, 3 + 2 * kept  # each kept pair's S and N∖S rows
        idx, score = ranking
        if own_proxy:
            rows = torch.cat([torch.tensor([0, 1]), torch.stack([first, second], 1).reshape(-1)])
            if fold_proxies is not None:
                idx, score = fold_proxies[1][f]
            elif effort != "high" and proxy_fit is not None and "max_depth" in proxy_fit:
                if pool is None:
                    pool = ProxyRows(masks.numpy().astype(np.float32), flat[:, 0].numpy())
                idx, score = _refit_terms(masks[rows], flat[rows, 0], proxy_fit, n, generator,
                                          (pool, rows.numpy()))  # fmt: skip
            else:
                idx, score, _ = _proxy_terms(masks[rows], flat[rows], generator, effort)
        fixed, ranked, n_pairs = _ranked_candidates(constant, extra, idx, score, n, 0)
        y = (flat[first] + flat[second]) / 2
        support, coef, _, _ = fit_part(masks[first], y, w[kept], fixed, ranked,
                                        (_at_empty, at_empty), n, n_folds, generator,
                                        max_terms, (n_pairs,))  # fmt: skip
        refits.append(even_pairs(SparseSpectrum(support, coef, n)))
        held = (fold == f).nonzero().squeeze(1)
        # the refit's departure from its value at ∅ (an even term is chi_T(S) - 1 away)
        sizes = set_sizes(support)
        varying = sizes > 0
        g = (walsh_design(masks[2 + 2 * held], support[varying], n) - 1.0) @ coef[varying]
        y_held = (flat[2 + 2 * held] + flat[3 + 2 * held]) / 2 - at_empty
        num += (w[held].unsqueeze(1) * y_held * g).sum(dim=0)
        den += (w[held].unsqueeze(1) * g * g).sum(dim=0)
    slope = torch.where(den > 0, num / den.clamp(min=1e-300), torch.zeros_like(den))
    return refits, slope.clamp(0.0, 1.0)


def _stein_factor(
    idx: Tensor, coef: Tensor, spread: Tensor, n: int, index: str, order: int
) -> Tensor:
    """Positive-part James-Stein factor ``[o]`` for the ``index`` values of order ``order``
    of ``(idx, coef)`` (the deviation from the shrinkage target): ``max(0, 1 - tr / ||v||^2)``
    with ``tr`` the trace of their sampling covariance, from ``spread`` (``[o, r, p]``, the
    factor of those values' covariance: ``_part_fit._coefficient_spread`` projected by
    :func:`_index_map`)."""
    from torchspex.fourier import fourier_to_index

    view = fourier_to_index(SparseSpectrum(idx, coef, n), index, order)
    norm = view.coefficients[view.orders == order].pow(2).sum(dim=0)  # [o]
    return stein_factor(spread.pow(2).sum(dim=(1, 2)), norm)


def _index_map(idx: Tensor, n: int, index: str, order: int) -> Tensor:
    """``[r, s]``: the linear map from the Fourier coefficients of the terms ``idx [s, d]``
    (sorted rows, ``-1`` padded) to the ``index`` values of the ``r`` sets of order ``order``
    inside them (ascending by set). The value of a set ``P`` is ``sum_{K ⊇ P} W[|K|] F(K)``
    with ``W`` the index's weight table (:func:`~torchspex.fourier.indices.fourier_weights`),
    so the map is a scatter of one weight per (term, subset), not a conversion."""
    from torchspex.fourier.indices import fourier_weights

    s, d = idx.shape
    if d < order or s == 0:
        return torch.zeros(0, s, dtype=torch.float64)
    sizes = set_sizes(idx)
    weight = fourier_weights(index, order, max(int(sizes.max()), order))[:, order]
    sub = idx[:, torch.combinations(torch.arange(d), order)]  # [s, C, order]
    term, which = (sub >= 0).all(dim=-1).nonzero(as_tuple=True)
    key = (sub[term, which] * (n ** torch.arange(order - 1, -1, -1))).sum(dim=1)
    sets, row = torch.unique(key, return_inverse=True)
    out = torch.zeros(sets.numel(), s, dtype=torch.float64)
    out[row, term] = weight[sizes[term]]
    return out


def shrunk_even(
    even: SparseSpectrum, info: dict[str, Any], spread: Tensor, masks: Tensor, flat: Tensor,
    w: Tensor, extra: list[Tensor], ranking: tuple[Tensor, Tensor], own_proxy: bool,
    n_folds: int, generator: torch.Generator, max_terms: int, effort: str,
    proxy_fit: dict[str, Any] | None, fold_proxies: tuple[Tensor, _FoldProxies] | None,
    pool: ProxyRows | None = None,
) -> tuple[Tensor, Tensor, dict[str, Any]]:
    """The even fit ``even`` scaled by its James-Stein factor: ``(indices, coefficients,
    info)``, ``info`` (the fit's) with the factor and where its noise came from.

    The noise: the sandwich ``spread`` (:func:`_stein_factor`) from :data:`JACKKNIFE_PAIRS`
    pairs per feature on, below it the jackknife of :func:`_even_refits`; below
    :data:`SLOPE_PAIRS` pairs per feature the factor is also capped by those refits'
    calibration slope. The other arguments are :func:`_even_refits`' (``generator`` the even
    part's own; ``pool`` the samples binned once, :class:`~torchspex.decoders._proxy.
    ProxyRows`, or ``None``)."""
    n = even.n_features
    p = (masks.shape[0] - 2) // 2
    refits = slope = None
    if p < max(SLOPE_PAIRS, JACKKNIFE_PAIRS) * n:
        refits, slope = _even_refits(masks, flat, w, extra, ranking, own_proxy, n, n_folds,
                                     generator, max_terms, even, effort, proxy_fit,
                                     fold_proxies, pool=pool)  # fmt: skip
    if refits is not None and p < JACKKNIFE_PAIRS * n:
        factor = jackknife_stein_factor(even_pairs(even), refits)
        info["shrinkage_noise"] = "jackknife"
    else:
        factor = _stein_factor(even.indices, even.coefficients, spread, n, "k-SII", 2)
        info["shrinkage_noise"] = "sandwich"
    if slope is not None and p < SLOPE_PAIRS * n:
        info["stein_factor"] = factor.tolist()
        info["calibration_slope"] = slope.tolist()
        factor = torch.minimum(factor, slope)
    scaled = scale_even(even, factor)
    info["shrinkage"] = factor.tolist()
    return scaled.indices, scaled.coefficients, info
