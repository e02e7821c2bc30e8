"""ProxySPEX: a LightGBM proxy fitted to random masks, read out exactly as Fourier terms.

Butler et al., "ProxySPEX: Inference-Efficient Interpretability via Sparse Feature Interactions
in LLMs" (NeurIPS 2025). Interactions in real models are *hierarchical* (a strong high-order
term comes with its subsets), which gradient-boosted trees capture from few samples. The steps:

1. Query ``n_samples`` distinct uniform masks (the empty and full masks included).
2. Hold out ``validation_fraction`` of them and fit LightGBM to the rest. Instead of the
   reference's 5-fold grid (60 fits of up to 5,000 trees), each candidate depth (and learning
   rate) is trained once, single-threaded, on one binned dataset, with early stopping on the
   held-out rows; the best model is cut at its best iteration.
3. Read the ensemble's exact Fourier spectrum
   (:func:`~torchspex.decoders.trees.tree_ensemble_to_fourier`).
4. Keep the strongest terms (:func:`truncate_by_energy`): ranked by squared coefficient (the
   constant excluded), the smallest prefix whose energy reaches a level ``e`` of the total, at
   most ``max_terms``; the empty set is always kept. The reference fixes ``e = 0.95``, which
   by construction leaves about 5% of the variance unexplained; here each level of ``energy``
   (default 0.9, 0.95, 0.99, 0.999) is refitted on the training rows and scored on the
   held-out rows, and the best level wins (``energy=0.95`` gives the reference's rule).
5. Refit the chosen terms on all samples: ridge with a leave-one-out cross-validated penalty
   and an unpenalized intercept (:func:`~torchspex.decoders.refit.refit`).

``max_order`` caps neither the tree depth nor the spectrum: nothing is cut from the fit (the
result's view applies ``max_order`` to what it reports), and the corners
(:mod:`~torchspex.decoders.sampled`) keep the learned function exact at ∅ and N.
Several outputs get one proxy each; their supports are merged and refitted jointly.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from torchspex.decoders._budgets import PROXYSPEX_MIN_SAMPLES as MIN_SAMPLES
from torchspex.decoders._proxy import (
    as_tuple,
    draw_seed,
    fit_proxy,
    holdout_rows,
    proxy_configs,
)
from torchspex.decoders._shrink import (
    JACKKNIFE_FOLDS,
    even_pairs,
    jackknife_stein_factor,
    scale_even,
)
from torchspex.decoders.base import BudgetTooSmallError, Evaluator
from torchspex.decoders.exhaustive import covers_every_mask, decode_every_mask
from torchspex.fourier import SparseSpectrum
from torchspex.fourier._sets import coalesce, normalize_indices
from torchspex.sampling.uniform import uniform_masks

__all__ = [
    "ENERGY_LEVELS",
    "MIN_SAMPLES",
    "decode_proxyspex",
    "suggest_n_samples",
    "truncate_by_energy",
]

#: Default energy levels tried; the one with the best held-out fit is kept.
ENERGY_LEVELS = (0.9, 0.95, 0.99, 0.999)

_OPTIONS = (
    "energy",
    "max_terms",
    "max_depth",
    "learning_rate",
    "max_rounds",
    "early_stopping_rounds",
    "validation_fraction",
    "refit",
    "shrink",
)


def suggest_n_samples(n_features: int) -> int:
    """A budget that usually suffices for hierarchical functions: ``40 n`` (at least 500).

    Capped at ``2^n`` (every mask).

    Example:
        >>> suggest_n_samples(100), suggest_n_samples(5)
        (4000, 32)
    """
    budget = max(500, 40 * n_features)
    return budget if n_features >= 62 else min(budget, 1 << n_features)


def truncate_by_energy(
    coefficients: Tensor, sizes: Tensor, energy: float = 0.95, max_terms: int | None = None
) -> Tensor:
    """Which terms hold ``energy`` of the non-constant spectrum's energy.

    Terms are ranked by squared coefficient (summed over outputs); the smallest prefix whose
    cumulative energy reaches ``energy`` of the total is kept (at most ``max_terms`` of the
    non-constant terms, when given), plus every constant term. All-zero terms are never kept.

    Args:
        coefficients: ``float [s, *out]``.
        sizes: ``int64 [s]`` order of each term (0 = constant).
        energy: fraction in ``(0, 1]``.
        max_terms: cap on the number of non-constant terms kept.

    Returns:
        ``bool [s]`` keep mask.

    Example:
        >>> coef = torch.tensor([5.0, 3.0, 1.0, 0.1])
        >>> truncate_by_energy(coef, torch.tensor([0, 1, 1, 2]), 0.95).tolist()
        [True, True, True, False]
    """
    flat = coefficients.reshape(coefficients.shape[0], -1)
    power = (flat.double() ** 2).sum(dim=1)
    const = sizes == 0
    power = torch.where(const, 0.0, power)
    keep = const.clone()
    total = float(power.sum())
    if total <= 0.0:
        return keep
    order = torch.argsort(power, descending=True, stable=True)
    share = torch.cumsum(power[order], dim=0) / total
    count = int(torch.searchsorted(share, torch.tensor([energy], dtype=share.dtype))) + 1
    count = min(count, int((power > 0).sum()))
    if max_terms is not None:
        count = min(count, max_terms)
    keep[order[:count]] = True
    return keep


def _check_options(options: dict[str, Any]) -> None:
    unknown = sorted(set(options) - set(_OPTIONS))
    if unknown:
        raise TypeError(
            f"method='proxyspex' got unknown options {unknown}; valid options are {_OPTIONS}."
        )


def _check_budget(n_features: int, n_samples: int | None) -> int:
    if n_samples is None:
        suggested = suggest_n_samples(n_features)
        why = ("every mask, exact" if n_features < 62 and suggested >= 1 << n_features
               else "about 40 per feature")  # fmt: skip
        raise ValueError(
            "method='proxyspex' needs a budget: `n_samples` must be an int; got None. Pass e.g. "
            f"n_samples={suggested} ({why})."
        )
    minimum = MIN_SAMPLES if n_features >= 62 else min(MIN_SAMPLES, 1 << n_features)
    if n_samples < minimum:
        raise BudgetTooSmallError(
            f"method='proxyspex' needs n_samples >= {minimum}; got {n_samples}. Raise "
            f"`n_samples` (e.g. to {suggest_n_samples(n_features)}).",
            minimum,
        )
    return n_samples


def decode_proxyspex(
    evaluator: Evaluator,
    n_features: int,
    *,
    n_samples: int | None = None,
    max_order: int | None = None,
    generator: torch.Generator | None = None,
    **options: Any,
) -> tuple[SparseSpectrum, dict[str, Any]]:
    """Learns a sparse Fourier spectrum with ProxySPEX (Butler et al., 2025).

    When ``n_samples >= 2^n`` (and ``n <= 20``) every mask is evaluated and the exact spectrum
    is returned instead, every order included (``max_order`` caps the report, not the
    spectrum), since nothing is left to estimate (``info["exact"]``, ``info["exact_reason"]``;
    :func:`~torchspex.decoders.exhaustive.decode_every_mask`).

    Args:
        evaluator: the value function behind an :class:`~torchspex.decoders.base.Evaluator`.
        n_features: number of features ``n``.
        n_samples: number of distinct masks to evaluate (required, ``>= 64`` or ``2^n``).
        max_order: cap on the interaction order the result reports (the fit is not capped).
        generator: randomness for the masks, the validation split and LightGBM's seed
            (``None``: seed 0).
        **options: ``energy`` (a fraction of the proxy's non-constant energy to keep, or
            several, chosen on the held-out rows; default :data:`ENERGY_LEVELS`),
            ``max_terms`` (most non-constant terms kept per output, default
            ``n_samples // 2``), ``max_depth`` (int or candidates; default ``{3, 5}``),
            ``learning_rate`` (float or candidates, default 0.1),
            ``max_rounds`` (most trees, default 1000), ``early_stopping_rounds`` (default 30),
            ``validation_fraction`` (held-out share, default 0.2), ``refit`` (``"ridge"``
            default, ``"ols"``, or ``None`` to keep the proxy's own coefficients), ``shrink``
            (``False`` default; ``True``: the even part of order >= 2, which carries the
            pair indices but not the Shapley values, is shrunk toward zero by a James-Stein
            factor whose noise estimate is a delete-a-fold jackknife over
            :data:`~torchspex.decoders._shrink.JACKKNIFE_FOLDS` refits on the same samples: no extra
            calls).

    Returns:
        ``(spectrum, info)``: a Fourier :class:`~torchspex.fourier.SparseSpectrum` with
        coefficients ``float64 [s, *out]``, and diagnostics (chosen depth, learning rate and
        number of trees per output, held-out R^2 of the proxy and of each energy level, terms
        read out and kept, seconds spent).

    Raises:
        ValueError: if ``n_samples`` is None, or an option is out of range.
        BudgetTooSmallError: if ``n_samples`` is below the minimum (before any evaluation).
        TypeError: for an unknown option.

    Example:
        >>> f = lambda m: (3.0 * m[:, 0] * m[:, 1] + m[:, 2]).double()
        >>> ev = Evaluator(f, 30, n_samples=400)
        >>> spec, info = decode_proxyspex(ev, 30, n_samples=400)
        >>> {k: round(v, 6) for k, v in spec.to_dict().items()}
        {(): 1.25, (0,): -0.75, (1,): -0.75, (2,): -0.5, (0, 1): 0.75}
    """
    settings = _read_options(options, n_features, n_samples, max_order)
    if generator is None:
        generator = torch.Generator().manual_seed(0)
    n = n_features
    dropping = getattr(evaluator, "nonfinite", "raise") == "drop"
    if covers_every_mask(n, settings.n_samples) and not dropping:
        return decode_every_mask(evaluator, n, settings.n_samples, "proxyspex")

    start = time.perf_counter()
    masks = uniform_masks(n, settings.n_samples, generator)
    values = evaluator(masks)
    t_eval = time.perf_counter() - start
    n_dropped = 0
    if dropping:
        masks, values, n_dropped = _drop_nonfinite(masks, values)
    spectrum, fit = _fit_spectrum(masks, values, settings, generator)
    shrinkage = None
    if settings.shrink:
        spectrum, shrinkage = _shrink_even(spectrum, masks, values, settings, generator)
    m = masks.shape[0]
    info = {
        "method": "proxyspex",
        "n_samples": m,
        **fit,
        "n_terms_kept": spectrum.n_terms,
        "n_dropped": n_dropped,
        "seconds": {"evaluate": t_eval, **fit["seconds"]},
    }
    if shrinkage is not None:
        info["shrinkage"] = shrinkage
    return spectrum, info


def _fit_spectrum(
    masks: Tensor, values: Tensor, settings: _Settings, generator: torch.Generator
) -> tuple[SparseSpectrum, dict[str, Any]]:
    """Steps 2-5 on evaluated ``(masks, values [m, *out])``: the spectrum and its facts."""
    n, m = masks.shape[1], masks.shape[0]
    max_terms = max(1, m // 2) if settings.max_terms is None else settings.max_terms
    flat = values.reshape(m, -1)
    valid = holdout_rows(m, settings.fraction, generator)

    start = time.perf_counter()
    spectra, proxies = _fit_proxies(masks, flat, valid, settings, generator)
    t_proxy = time.perf_counter() - start

    start = time.perf_counter()
    supports = [_union_support(spectra, level, max_terms) for level in settings.energies]
    choice, scores = _choose_energy(supports, masks, flat, valid, settings)
    indices, proxy_coef = supports[choice]
    coefficients = _coefficients(settings.refit, masks, flat, indices, proxy_coef, n)
    coefficients = coefficients.reshape(indices.shape[0], *values.shape[1:])
    t_refit = time.perf_counter() - start
    fit = {
        "proxy": proxies if len(proxies) > 1 else proxies[0],
        "n_terms_read": max(spec.n_terms for spec in spectra),
        "energy": settings.energies[choice],
        "validation_r2_by_energy": {e: 1.0 - v for e, v in zip(settings.energies, scores)},
        "seconds": {"proxy": t_proxy, "truncate_refit": t_refit},
    }
    return SparseSpectrum(indices, coefficients, n, "Fourier"), fit


def _shrink_even(
    spectrum: SparseSpectrum, masks: Tensor, values: Tensor, settings: _Settings,
    generator: torch.Generator,
) -> tuple[SparseSpectrum, list[float]]:
    """``shrink=True``: the pair indices shrunk by the jackknife James-Stein factor of
    :mod:`~torchspex.decoders._shrink` over its ``JACKKNIFE_FOLDS`` refits of steps 2-5 (the
    support search included); the corners and the odd part (the Shapley values) unchanged."""
    m = masks.shape[0]
    fold = torch.randperm(m, generator=generator) % JACKKNIFE_FOLDS
    refits = []
    for f in range(JACKKNIFE_FOLDS):
        keep = fold != f
        spec_f, _ = _fit_spectrum(masks[keep], values[keep], settings, generator)
        refits.append(even_pairs(spec_f))
    factor = jackknife_stein_factor(even_pairs(spectrum), refits)
    return scale_even(spectrum, factor), factor.tolist()


@dataclass(frozen=True)
class _Settings:
    """ProxySPEX's options, checked (:func:`_read_options`)."""

    n_samples: int
    energies: tuple[float, ...]
    max_rounds: int
    patience: int
    fraction: float
    refit: str | None
    configs: list[tuple[int, float]]
    max_terms: int | None
    shrink: bool = False


def _read_options(
    options: dict[str, Any], n_features: int, n_samples: int | None, max_order: int | None
) -> _Settings:
    """Checks every option and the budget before any evaluation (raises on the first bad one)."""
    _check_options(options)
    energies = tuple(sorted({float(e) for e in as_tuple(
        "energy", options.get("energy", ENERGY_LEVELS), float, 1e-9, 1.0)}))
    max_rounds = as_tuple("max_rounds", options.get("max_rounds", 1000), int, 1)[0]
    patience = as_tuple(
        "early_stopping_rounds", options.get("early_stopping_rounds", 30), int, 1
    )[0]
    fraction = float(as_tuple("validation_fraction", options.get("validation_fraction", 0.2),
                              float, 0.05, 0.5)[0])
    refit_method = options.get("refit", "ridge")
    if refit_method not in ("ridge", "ols", None):
        raise ValueError(f"`refit` must be one of ('ridge', 'ols', None); got {refit_method!r}.")
    configs = proxy_configs(options.get("max_depth"), options.get("learning_rate", 0.1))
    n_samples = _check_budget(n_features, n_samples)
    max_terms = options.get("max_terms")
    if max_terms is not None:
        max_terms = as_tuple("max_terms", max_terms, int, 1)[0]
    shrink = options.get("shrink", False)
    if not isinstance(shrink, bool):
        raise ValueError(f"`shrink` must be True or False; got {shrink!r}.")
    return _Settings(n_samples, energies, max_rounds, patience, fraction, refit_method, configs,
                     max_terms, shrink)  # fmt: skip


def _fit_proxies(
    masks: Tensor, flat: Tensor, valid: np.ndarray, settings: _Settings,
    generator: torch.Generator,
) -> tuple[list[SparseSpectrum], list[dict[str, Any]]]:
    """One proxy per output column of ``flat [m, o]``: its whole Fourier spectrum (of order at
    most its depth) and its fit's facts."""
    from torchspex.decoders.trees import tree_ensemble_to_fourier

    x = masks.numpy().astype(np.float32)
    spectra, proxies = [], []
    for j in range(flat.shape[1]):
        booster, proxy_info = fit_proxy(
            x, flat[:, j].numpy(), valid, settings.configs, settings.max_rounds,
            settings.patience, draw_seed(generator),
        )
        spectra.append(tree_ensemble_to_fourier(booster, masks.shape[1]))
        proxies.append(proxy_info)
    return spectra, proxies


def _choose_energy(
    supports: list[tuple[Tensor, Tensor]], masks: Tensor, flat: Tensor, valid: np.ndarray,
    settings: _Settings,
) -> tuple[int, list[float]]:
    """The energy level whose support, refitted on the training rows, predicts the held-out
    rows best (ties: the smaller support); with its held-out errors (relative MSE per level)."""
    if len(settings.energies) == 1:
        return 0, []
    n = masks.shape[1]
    scores: list[float] = []
    train = torch.from_numpy(~valid)
    held = torch.from_numpy(valid)
    scale = flat[held].var(dim=0, correction=0).clamp(min=1e-300)
    for i, (indices, proxy_coef) in enumerate(supports):
        if i and indices.shape == supports[i - 1][0].shape:  # nested: same size, same terms
            scores.append(scores[-1])
            continue
        coef = _coefficients(settings.refit, masks[train], flat[train], indices, proxy_coef, n)
        pred = SparseSpectrum(indices, coef, n).evaluate(masks[held])
        scores.append(float((((pred - flat[held]) ** 2).mean(dim=0) / scale).mean()))
    choice = min(range(len(settings.energies)),
                 key=lambda i: (scores[i], supports[i][0].shape[0]))  # fmt: skip
    return choice, scores


#: Fewest finite masks ``nonfinite="drop"`` may leave for the fit.
_MIN_FINITE = 10


def _drop_nonfinite(masks: Tensor, values: Tensor) -> tuple[Tensor, Tensor, int]:
    """Masks and values without the rows whose value is NaN or inf (with a warning)."""
    finite = torch.isfinite(values.reshape(values.shape[0], -1)).all(dim=1)
    n_dropped = int((~finite).sum())
    if not n_dropped:
        return masks, values, 0
    example = torch.nonzero(masks[~finite][0]).squeeze(1).tolist()
    if int(finite.sum()) < _MIN_FINITE:
        raise ValueError(
            f"`value_function` returned NaN or inf for {n_dropped} of {masks.shape[0]} masks "
            f"(e.g. the mask keeping features {example}); fewer than {_MIN_FINITE} finite "
            "values are left to fit. Fix the model or value function."
        )
    warnings.warn(
        f"`value_function` returned NaN or inf for {n_dropped} of {masks.shape[0]} masks (e.g. "
        f"the mask keeping features {example}); nonfinite='drop' left them out of the fit "
        "(info['n_dropped']).",
        stacklevel=4,
    )
    return masks[finite], values[finite], n_dropped


def _union_support(
    spectra: list[SparseSpectrum], energy: float, max_terms: int
) -> tuple[Tensor, Tensor]:
    """Union of each output's top terms (and the empty set), with the proxies' coefficients.

    Returns ``(indices int64 [s, d], coefficients float64 [s, o])``; column ``j`` holds proxy
    ``j``'s coefficient on each kept term (0 where proxy ``j`` did not keep it).
    """
    n, n_out = spectra[0].n_features, len(spectra)
    rows, coefs = [], []
    for j, spec in enumerate(spectra):
        keep = truncate_by_energy(spec.coefficients, spec.orders, energy, max_terms)
        coef = torch.zeros(int(keep.sum()), n_out, dtype=torch.float64)
        coef[:, j] = spec.coefficients[keep].double()
        rows.append(spec.indices[keep])
        coefs.append(coef)
    width = max(r.shape[1] for r in rows)
    rows = [torch.nn.functional.pad(r, (0, width - r.shape[1]), value=-1) for r in rows]
    rows.append(torch.full((1, width), -1, dtype=torch.long))
    coefs.append(torch.zeros(1, n_out, dtype=torch.float64))
    return coalesce(normalize_indices(torch.cat(rows)), torch.cat(coefs), n)


def _coefficients(
    method: str | None, masks: Tensor, values: Tensor, indices: Tensor, proxy: Tensor, n: int
) -> Tensor:
    """Refitted (``"ridge"``/``"ols"``) or proxy (``None``) coefficients ``float64 [s, o]``."""
    if method is None:
        return proxy
    from torchspex.decoders.refit import refit

    return refit(masks, values, indices, n, method=method)
