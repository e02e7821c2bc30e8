"""The odd part fitted around a cross-fitted proxy (the regression's proxy offset).

With few pairs per feature a sparse regression cannot pin the odd part (the Shapley values)
alone. One LightGBM proxy per fold, each refitted with the main proxy's setting on the pairs of
the other folds, predicts only the pairs it did not see (cross-fitting, as shapiq's ProxySHAP
does with ``k_folds > 1``); the odd part is fitted to the residual of those predictions and the
proxies' exact odd spectrum is added back (:func:`_with_proxy_offset`). It is tried below
:data:`CROSS_FIT_PAIRS` pairs per feature (:func:`offset_tried`) and kept from
:data:`OFFSET_FEATURES` features on, below that where it cross-validates better. The fold
proxies are read into spectra only when asked for (:class:`_FoldProxies`); the even part's
jackknife reuses them (:mod:`._even`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from torchspex.decoders._candidates import _term_scores, _union_terms
from torchspex.decoders._part_fit import fit_part
from torchspex.decoders._proxy import ProxyRows, draw_seed, refit_proxy
from torchspex.fourier import SparseSpectrum
from torchspex.fourier._sets import set_sizes

#: Penalties on the first-order terms of the correction to a cross-fitted proxy (the
#: discovered terms take those of :mod:`._part_fit`), up to nearly
#: none (the proxy's own Shapley values): planted hierarchical n = 64 / 256 at 512 calls, SV
#: error 0.67 -> 0.65 / 0.85 -> 0.73; the digits CNN over 64 pixels at 256, 0.53 -> 0.52
_OFFSET_FIXED_PENALTIES = (0.0, 1e-2, 1e-1, 1.0, 10.0, 100.0, 1000.0)
#: The proxy offset is tried below this many pairs per feature: it was kept only there
#: (planted games at n = 64 and 256 up to 1,024 calls), and at 4,096 calls it took 4x the time
#: (MLP on wine 9 -> 36 s) for the same result. No threshold suits every real model: the digits
#: CNN over 64 pixels does better without the offset from 3 pairs per feature (``python
#: benchmarks/decode_variants.py low,low+nocf --budgets 256,384,500 --games pixels --seeds 4``:
#: SV error 0.493 / 0.463 / 0.346 with it, 0.598 / 0.445 / 0.328 without; ``low,low+cfp6``
#: at 640 / 768 calls 0.260 / 0.218 -> 0.306 / 0.270), MiniLM over a 100-word review better
#: with it at 5 (1,000 calls 0.234 -> 0.188, a /tmp script); scaling the offset by 0.5 or 0.75
#: found no better middle on the CNN, and neither the two fits' cross-validated errors nor the
#: proxy's held-out R^2 told the cases apart.
CROSS_FIT_PAIRS = 4
#: Fewest trees of each cross-fitted proxy. Early stopping on a fifth of a few hundred rows
#: stops the main proxy after tens of trees; refitted with at least this many, the offset
#: did better (4 seeds, SV error: planted n = 64 sparse at 128 calls 0.78 -> 0.76,
#: hierarchical at 512 0.66 -> 0.62; the digits CNN over pixels at 128 0.78 -> 0.77). 50 did
#: as well as 100 for less time (``python benchmarks/decode_variants.py low,low+cft100``, 4-6
#: seeds, results/decode_variants_cross_fit_trees_*.json, where ``low+cft50`` was this value:
#: SV error within 1% but planted hierarchical n = 64 at 256 calls, 0.765 -> 0.738; decode
#: 0-13% shorter on the CNN over 2x2 patches at 128 calls and the n = 64 games at 256 / 512).
CROSS_FIT_TREES = 50
#: From this many features on, the odd part around the cross-fitted proxy is kept wherever it
#: is tried, not only where its cross-validated fit of the odd part beats the plain fit's:
#: the two fits' errors on the samples do not rank their Shapley values there (6 seeds, SV
#: error chosen by that comparison -> always around the proxy: planted n = 64 sparse at
#: 128 / 256 calls 0.78 / 0.57 -> 0.71 / 0.53, hierarchical at 128-512 0.93 / 0.77 / 0.59 ->
#: 0.89 / 0.74 / 0.57; n = 256 sparse at 256 0.74 -> 0.69, hierarchical at 1,024 0.57 ->
#: 0.47; the digits CNN over 64 pixels at 256 0.57 -> 0.50, at 512 0.32 -> 0.33). Below it
#: the comparison chose well (MLP on wine at 64 / 96 calls 0.18 / 0.13 against 0.23 / 0.15
#: always around the proxy, LightGBM on diabetes at 64 calls 0.030 against 0.052). Letting the
#: comparison choose from 3 pairs per feature on was measured and not adopted (4 seeds, SV
#: error; the decode_variants knob offp3, since removed; results/decode_variants_offset_pairs
#: _512.json and _1024.json): planted sparse n = 64 / 128 at 512 / 1,024 calls 0.343 / 0.279
#: -> 0.314 / 0.180, the digits CNN over 64 pixels at 512 0.334 -> 0.321, but planted
#: hierarchical n = 64 / 128 0.598 / 0.440 -> 0.622 / 0.477.
OFFSET_FEATURES = 32
#: At ``effort="high"``, from :data:`OFFSET_FEATURES` features on and from ``AVERAGE_FROM`` to
#: ``AVERAGE_BELOW`` pairs per feature, the odd part is the mean of the plain fit and the fit around
#: the cross-fitted proxy (the mean is then shifted onto the corners; the Shapley values are the
#: mean of theirs and that shift's), where the two split by model: the digits CNN over 64 pixels was
#: better without the offset from 3 pairs per feature, MiniLM over a 100-word review with it up to
#: 7.5 at least. SV error plain / around the proxy / their mean, on the same designs (/tmp scripts,
#: 4 seeds for the CNN, 3 for MiniLM against a 2 x 9,898-call reference): the CNN at 384 / 500 / 640
#: / 768 / 1,024 calls 0.445 / 0.463 / 0.425, 0.328 / 0.346 / 0.312, 0.260 / 0.306 / 0.266, 0.218 /
#: 0.270 / 0.224, 0.180 / 0.226 / 0.188 (at 256 calls, 2 pairs per feature, the proxy's alone was
#: best: 0.598 / 0.493 / 0.511); MiniLM at 1,000 / 1,500 calls 0.234 / 0.198 / 0.190 and 0.159 /
#: 0.140 / 0.126 (the mean best in 3 of 3 seeds each; at 500 calls the proxy's 0.227, the mean
#: 0.237). Not the default: both fits cost 2-4.5x the decode of the plain one on the CNN at
#: 640-1,024 calls (0.10-0.15 -> 0.32-0.66 s, where its error rose 0-3%), worth it where a model
#: call costs more than a few milliseconds.
AVERAGE_FROM, AVERAGE_BELOW = 3, 8


def offset_tried(
    proxy_fit: dict[str, Any] | None, n_outputs: int, p: int, n: int, n_folds: int,
    options: dict[str, Any],
) -> bool:
    """Whether the odd part is fitted around a cross-fitted proxy: a proxy setting was chosen
    (``proxy_fit`` with its depth), one output, at least two pairs per fold, fewer than
    :data:`CROSS_FIT_PAIRS` pairs per feature (:data:`AVERAGE_BELOW` where the fits are
    averaged, :func:`averaged`), and the ``cross_fit`` option on."""
    limit = AVERAGE_BELOW if _averages(n, options.get("effort", "low")) else CROSS_FIT_PAIRS
    return (proxy_fit is not None and "max_depth" in proxy_fit and n_outputs == 1
            and 2 * n_folds <= p < limit * n
            and bool(options.get("cross_fit", True)))  # fmt: skip


def _averages(n: int, effort: str) -> bool:
    """Whether the two odd fits are averaged at some budget (``effort="high"``, from
    :data:`OFFSET_FEATURES` features on)."""
    return effort == "high" and n >= OFFSET_FEATURES


def averaged(n: int, p: int, effort: str) -> bool:
    """Whether the odd part, where the offset is tried, is the mean of the plain fit and the
    fit around the proxy (``effort="high"``, :data:`AVERAGE_FROM`)."""
    return _averages(n, effort) and p >= AVERAGE_FROM * n


def always_kept(n: int, p: int, effort: str) -> bool:
    """Whether the offset, where tried, is kept alone whatever the comparison with the plain
    fit says (from :data:`OFFSET_FEATURES` features on, unless averaged; the plain fit is then
    not made)."""
    return n >= OFFSET_FEATURES and not averaged(n, p, effort)


def _at_empty(support: Tensor) -> Tensor:
    """The row ``C [1, s]`` of the value at ∅: every Walsh character is 1 there."""
    return torch.ones(1, support.shape[0], dtype=torch.float64)


def _odd_part(spectrum: SparseSpectrum) -> SparseSpectrum:
    """The odd-order terms of a spectrum (the part ``(f(S) - f(N∖S)) / 2``)."""
    odd = set_sizes(spectrum.indices) % 2 == 1
    return SparseSpectrum(spectrum.indices[odd], spectrum.coefficients[odd], spectrum.n_features)


class _FoldProxies:
    """The fold proxies of a cross-fit, read into Fourier spectra only when asked for.

    Item ``f`` is fold proxy ``f``'s ``(indices, score)`` (:func:`_term_scores`), which the
    even part's jackknife reuses (:func:`_even_refits`); :meth:`mean` is the mean of their
    spectra, which the odd part adds back where the offset is kept. Reading a booster's
    spectrum costs about as much as fitting it; where the offset is not kept and only the
    Shapley values are read (the even part deferred), nothing is read at all."""

    def __init__(self, boosters: list[Any], n: int) -> None:
        self._boosters = boosters
        self._n = n
        self._spectra: list[SparseSpectrum | None] = [None] * len(boosters)

    def __len__(self) -> int:
        return len(self._boosters)

    def spectrum(self, f: int) -> SparseSpectrum:
        """Fold proxy ``f``'s exact Fourier spectrum (read once)."""
        from torchspex.decoders.trees import tree_ensemble_to_fourier

        spec = self._spectra[f]
        if spec is None:
            spec = self._spectra[f] = tree_ensemble_to_fourier(self._boosters[f], self._n)
        return spec

    def __getitem__(self, f: int) -> tuple[Tensor, Tensor]:
        return _term_scores(self.spectrum(f))

    def mean(self) -> SparseSpectrum:
        """The mean of the fold proxies' spectra."""
        k = len(self)
        specs = [self.spectrum(f) for f in range(k)]
        idx, coef = _union_terms([sp.indices for sp in specs],
                                 [sp.coefficients.double().reshape(-1, 1) / k for sp in specs],
                                 self._n)  # fmt: skip
        return SparseSpectrum(idx, coef, self._n)


def _cross_fitted_proxy(
    masks: Tensor, flat: Tensor, fold: Tensor, n_folds: int, fit: dict[str, Any], n: int,
    generator: torch.Generator, pool: ProxyRows | None = None,
) -> tuple[Tensor, Tensor, _FoldProxies]:
    """The odd part of a proxy at the pair rows, each from a proxy that did not see the row.

    For each fold, a LightGBM proxy of the chosen setting (``fit``: depth, rate, trees, from
    :func:`_proxy_terms`) is refitted on the corners and the pairs of the other folds; each
    pair row gets the prediction of the proxy that did not see it (cross-fitting, as in
    shapiq's ProxySHAP with ``k_folds > 1``). Returns ``(odd [p], at_empty, proxies)``: the odd
    part ``(g(S) - g(N∖S)) / 2`` of those predictions, the fold proxies' mean odd part at ∅,
    ``(g(∅) - g(N)) / 2`` from their predictions at the corners, and the fold proxies
    (:class:`_FoldProxies`: their spectra are read when asked for). ``pool``: ``masks`` and
    ``flat[:, 0]`` already binned (:class:`~torchspex.decoders._proxy.ProxyRows`; ``None``:
    binned here).
    """
    p = fold.shape[0]
    pred = torch.zeros(2 * p, dtype=torch.float64)
    x = masks.numpy().astype(np.float32)
    y = flat[:, 0].numpy()
    pool = ProxyRows(x, y) if pool is None else pool  # binned once; each fold a subset
    boosters = []
    at_empty = 0.0
    for f in range(n_folds):
        out_pairs = (fold == f).nonzero().squeeze(1)
        train = np.ones(masks.shape[0], dtype=bool)
        train[(2 + 2 * out_pairs).numpy()] = False
        train[(3 + 2 * out_pairs).numpy()] = False
        booster = refit_proxy(x, y, fit["max_depth"], fit["learning_rate"], fit["n_trees"],
                              draw_seed(generator), fit.get("num_leaves"),
                              (pool, np.flatnonzero(train)))  # fmt: skip
        boosters.append(booster)
        rows = torch.stack([2 + 2 * out_pairs, 3 + 2 * out_pairs], dim=1).reshape(-1)
        # the booster's own prediction: its spectrum is exact on 0/1 masks, and LightGBM sums
        # a few leaves where the spectrum sums every term; rows 0 and 1 are the corners
        at = np.concatenate([[0, 1], rows.numpy()])
        values = np.asarray(booster.predict(x[at]), dtype=np.float64)
        at_empty += (values[0] - values[1]) / 2 / n_folds
        pred[torch.stack([2 * out_pairs, 2 * out_pairs + 1], dim=1).reshape(-1)] = (
            torch.from_numpy(values[2:]))
    return (pred[0::2] - pred[1::2]) / 2, torch.tensor(at_empty, dtype=torch.float64), \
        _FoldProxies(boosters, n)


def _with_proxy_offset(
    masks: Tensor, flat: Tensor, x: Tensor, odd_y: Tensor, w: Tensor, fixed: Tensor,
    ranked: Tensor, constraint: tuple[Any, Tensor] | None, n: int, n_folds: int,
    generator: torch.Generator, max_terms: int, breaks: tuple[int, ...], proxy_fit: dict[str, Any],
    plain: tuple[Tensor, Tensor, dict[str, Any]] | None, effort: str = "low",
    pool: ProxyRows | None = None,
) -> tuple[Tensor, Tensor, dict[str, Any], tuple[Tensor, _FoldProxies]]:
    """The odd fit on the residual of a cross-fitted proxy (:func:`_cross_fitted_proxy`), if
    its cross-validated error is below the plain fit's (``plain``) or there are at least
    :data:`OFFSET_FEATURES` features (there the plain fit is not made: ``plain=None``), or the
    mean of the two fits where :func:`averaged` (``effort``; ``proxy_offset`` is then
    ``"averaged"`` in the info); the
    proxy's odd part is then added to the fitted correction. The fourth element is ``(fold
    [p], proxies)``: the pairs' folds and the fold proxies (:class:`_FoldProxies`), whichever
    fit is kept. ``pool``: the samples' rows already binned (:func:`_cross_fitted_proxy`).
    ``constraint``: the odd part's value at ∅ the fit holds (less the proxies' there), or
    ``None``: free at the corners (the caller shifts the result onto them,
    ``regression.ODD_CORNER_SHIFT``)."""
    fold = torch.randperm(x.shape[0], generator=generator) % n_folds
    # at least CROSS_FIT_TREES trees: the early stop on a fifth of few rows stops early
    proxy_fit = {**proxy_fit, "n_trees": max(proxy_fit["n_trees"], CROSS_FIT_TREES)}
    column, at_empty, proxies = _cross_fitted_proxy(masks, flat, fold, n_folds, proxy_fit, n,
                                                    generator, pool)  # fmt: skip
    y = odd_y - column.unsqueeze(1)
    shifted = None if constraint is None else (constraint[0], constraint[1] - at_empty)
    # the correction's first-order terms may be shrunk toward zero (the proxy alone, its
    # efficiency gap split equally) as far as cross-validation asks
    idx, coef, info, _ = fit_part(x, y, w, fixed, ranked, shifted, n, n_folds, generator,
                                   max_terms, breaks,
                                   fixed_pens=_OFFSET_FIXED_PENALTIES)  # fmt: skip
    # the two errors on one scale (each part's error is scaled by its own variance)
    offset_error = info["cv_error"] * float(y.var(correction=0))
    average = plain is not None and averaged(n, x.shape[0], effort)
    # from OFFSET_FEATURES features on the offset is kept whatever the comparison says
    if plain is not None and not average and not offset_error < plain[2]["cv_error"] * float(
            odd_y.var(correction=0)):  # fmt: skip
        kept = {**plain[2], "proxy_offset": False, "offset_cv_error": info["cv_error"]}
        return plain[0], plain[1], kept, (fold, proxies)
    proxy_odd = _odd_part(proxies.mean())
    idx, coef = _union_terms([idx, proxy_odd.indices],
                             [coef, proxy_odd.coefficients.double().reshape(-1, 1)], n)
    info = {**info, "cv_error": offset_error / float(odd_y.var(correction=0)),
            "proxy_offset": True}  # fmt: skip
    if plain is not None:
        info["plain_cv_error"] = plain[2]["cv_error"]
    if average:
        assert plain is not None
        # the mean of the two fits (AVERAGE_FROM): each meets the corner constraint, or
        # neither is held to it and the caller shifts the mean onto the corners
        idx, coef = _union_terms([plain[0], idx], [plain[1] / 2, coef / 2], n)
        info = {**plain[2], "proxy_offset": "averaged", "offset_cv_error": info["cv_error"]}
    return idx, coef, info, (fold, proxies)
