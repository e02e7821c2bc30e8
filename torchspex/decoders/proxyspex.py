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

``max_order`` caps the tree depth (a depth-``d`` tree has terms of order at most ``d``) and
drops any term above it. Several outputs get one proxy each; their supports are merged and
refitted jointly.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from torchspex.decoders.base import BudgetTooSmallError, Evaluator
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

#: Fewest samples ProxySPEX accepts (below it the proxy has nothing to learn from).
MIN_SAMPLES = 64

_OPTIONS = (
    "energy",
    "max_terms",
    "max_depth",
    "learning_rate",
    "max_rounds",
    "early_stopping_rounds",
    "validation_fraction",
    "refit",
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


def _as_tuple(name: str, value: Any, kind: type, low: float, high: float | None = None) -> tuple:
    values = tuple(value) if isinstance(value, Sequence) else (value,)
    for v in values:
        ok = isinstance(v, (int, float) if kind is float else int) and not isinstance(v, bool)
        if not ok or v < low or (high is not None and v > high):
            bound = f">= {low}" if high is None else f"in [{low}, {high}]"
            raise ValueError(f"`{name}` must be {kind.__name__}s {bound}; got {value!r}.")
    if not values:
        raise ValueError(f"`{name}` must name at least one value; got {value!r}.")
    return values


def _check_budget(n_features: int, n_samples: int | None) -> int:
    if n_samples is None:
        raise ValueError(
            "method='proxyspex' needs a budget: `n_samples` must be an int; got None. Pass e.g. "
            f"n_samples={suggest_n_samples(n_features)} (about 40 per feature)."
        )
    minimum = MIN_SAMPLES if n_features >= 62 else min(MIN_SAMPLES, 1 << n_features)
    if n_samples < minimum:
        raise BudgetTooSmallError(
            f"method='proxyspex' needs n_samples >= {minimum}; got {n_samples}. Raise "
            f"`n_samples` (e.g. to {suggest_n_samples(n_features)}).",
            minimum,
        )
    return n_samples


def _seed(generator: torch.Generator) -> int:
    return int(torch.randint(0, 2**31 - 1, (1,), generator=generator))


def _fit_proxy(
    x: np.ndarray,
    y: np.ndarray,
    valid: np.ndarray,
    configs: list[tuple[int, float]],
    max_rounds: int,
    patience: int,
    seed: int,
) -> tuple[Any, dict[str, Any]]:
    """Early-stopped LightGBM per config on one binned dataset; the best one, cut at its best
    iteration. Only the training rows are used, so the held-out rows stay clean for choosing
    the energy level later."""
    try:
        import lightgbm as lgb
    except ImportError as err:  # pragma: no cover - exercised only without lightgbm
        raise ImportError(
            'method="proxyspex" needs LightGBM: pip install "torchspex[proxyspex]"'
        ) from err
    m = x.shape[0]
    n_train = m - int(valid.sum())
    base = {
        "objective": "regression",
        "verbosity": -1,
        "num_threads": 1,
        "seed": seed,
        "deterministic": True,
        "force_col_wise": True,
        "max_bin": 2,
        "min_data_in_bin": 1,
        "feature_pre_filter": False,
        "min_data_in_leaf": max(1, min(20, n_train // 50)),
        "min_sum_hessian_in_leaf": 0.0,
    }
    data_params = {k: base[k] for k in ("verbosity", "max_bin", "min_data_in_bin",
                                        "feature_pre_filter", "num_threads")}
    train = lgb.Dataset(x[~valid], y[~valid], params=data_params, free_raw_data=False)
    held = lgb.Dataset(
        x[valid], y[valid], params=data_params, reference=train, free_raw_data=False
    )
    train.construct()
    held.construct()
    best: tuple[float, Any, int, float] | None = None
    for depth, rate in configs:
        params = {**base, "max_depth": depth, "num_leaves": max(2, 2**depth),
                  "learning_rate": rate, "metric": "l2"}
        booster = lgb.train(
            params, train, num_boost_round=max_rounds, valid_sets=[held],
            callbacks=[lgb.early_stopping(patience, first_metric_only=True, verbose=False)],
        )
        mse = float(booster.best_score["valid_0"]["l2"])
        if best is None or mse < best[0]:
            best = (mse, booster, depth, rate)
    assert best is not None
    mse, booster, depth, rate = best
    rounds = max(1, booster.best_iteration or booster.current_iteration())
    # keep the trees up to the best validation score only
    booster = lgb.Booster(model_str=booster.model_to_string(num_iteration=rounds))
    variance = float(np.var(y[valid]))
    info = {
        "max_depth": depth,
        "learning_rate": rate,
        "n_trees": rounds,
        "validation_r2": 1.0 - mse / variance if variance > 0 else float("nan"),
        "n_fits": len(configs),
    }
    return booster, info


def _configs(max_order: int | None, max_depth: Any, learning_rate: Any) -> list[tuple[int, float]]:
    if max_depth is None:
        top = 5 if max_order is None else min(5, max_order)
        depths = tuple(sorted({max(1, top - 2), top}))
    else:
        depths = _as_tuple("max_depth", max_depth, int, 1, 20)
        if max_order is not None and max(depths) > max_order:
            raise ValueError(
                f"`max_depth` must be <= max_order={max_order} (a depth-d tree has terms of "
                f"order up to d); got {max_depth!r}. Lower `max_depth` or raise `max_order`."
            )
    rates = _as_tuple("learning_rate", learning_rate, float, 1e-6, 1.0)
    return [(d, float(r)) for d in depths for r in rates]


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
    is returned instead (terms above ``max_order`` dropped), since nothing is left to estimate.

    Args:
        evaluator: the value function behind an :class:`~torchspex.decoders.base.Evaluator`.
        n_features: number of features ``n``.
        n_samples: number of distinct masks to evaluate (required, ``>= 64`` or ``2^n``).
        max_order: cap on the interaction order (and on the tree depth).
        generator: randomness for the masks, the validation split and LightGBM's seed
            (``None``: seed 0).
        **options: ``energy`` (a fraction of the proxy's non-constant energy to keep, or
            several, chosen on the held-out rows; default :data:`ENERGY_LEVELS`),
            ``max_terms`` (most non-constant terms kept per output, default
            ``n_samples // 2``), ``max_depth`` (int or candidates; default ``{t - 2, t}`` with
            ``t = min(5, max_order)``), ``learning_rate`` (float or candidates, default 0.1),
            ``max_rounds`` (most trees, default 1000), ``early_stopping_rounds`` (default 30),
            ``validation_fraction`` (held-out share, default 0.2), ``refit`` (``"ridge"``
            default, ``"ols"``, or ``None`` to keep the proxy's own coefficients).

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
    _check_options(options)
    energies = tuple(sorted({float(e) for e in _as_tuple(
        "energy", options.get("energy", ENERGY_LEVELS), float, 1e-9, 1.0)}))
    max_rounds = _as_tuple("max_rounds", options.get("max_rounds", 1000), int, 1)[0]
    patience = _as_tuple(
        "early_stopping_rounds", options.get("early_stopping_rounds", 30), int, 1
    )[0]
    fraction = float(_as_tuple("validation_fraction", options.get("validation_fraction", 0.2),
                               float, 0.05, 0.5)[0])
    refit_method = options.get("refit", "ridge")
    if refit_method not in ("ridge", "ols", None):
        raise ValueError(f"`refit` must be one of ('ridge', 'ols', None); got {refit_method!r}.")
    configs = _configs(max_order, options.get("max_depth"), options.get("learning_rate", 0.1))
    n_samples = _check_budget(n_features, n_samples)
    max_terms = options.get("max_terms")
    if max_terms is not None:
        max_terms = _as_tuple("max_terms", max_terms, int, 1)[0]
    if generator is None:
        generator = torch.Generator().manual_seed(0)

    n = n_features
    dropping = getattr(evaluator, "nonfinite", "raise") == "drop"
    if n <= 20 and n_samples >= 1 << n and not dropping:
        from torchspex.decoders.exhaustive import decode_exhaustive

        spectrum, info = decode_exhaustive(evaluator, n)
        return spectrum.prune(max_order=max_order), {**info, "method": "exhaustive"}

    start = time.perf_counter()
    masks = uniform_masks(n, n_samples, generator)
    values = evaluator(masks)
    t_eval = time.perf_counter() - start
    n_dropped = 0
    if dropping:
        masks, values, n_dropped = _drop_nonfinite(masks, values)
    m = masks.shape[0]
    if max_terms is None:
        max_terms = max(1, m // 2)
    flat = values.reshape(m, -1)
    n_valid = max(1, round(fraction * m))
    valid = np.zeros(m, dtype=bool)
    valid[torch.randperm(m, generator=generator)[:n_valid].numpy()] = True
    x = masks.numpy().astype(np.float32)

    from torchspex.decoders.trees import tree_ensemble_to_fourier

    start = time.perf_counter()
    n_out = flat.shape[1]
    spectra, proxies = [], []
    for j in range(n_out):
        booster, proxy_info = _fit_proxy(
            x, flat[:, j].numpy(), valid, configs, max_rounds, patience, _seed(generator)
        )
        spectra.append(tree_ensemble_to_fourier(booster, n).prune(max_order=max_order))
        proxies.append(proxy_info)
    t_proxy = time.perf_counter() - start

    start = time.perf_counter()
    supports = [_union_support(spectra, level, max_terms) for level in energies]
    scores: list[float] = []  # held-out error of each energy level's support
    if len(energies) > 1:
        train = torch.from_numpy(~valid)
        held = torch.from_numpy(valid)
        scale = flat[held].var(dim=0, correction=0).clamp(min=1e-300)
        for i, (indices, proxy_coef) in enumerate(supports):
            if i and indices.shape == supports[i - 1][0].shape:  # nested: same size, same terms
                scores.append(scores[-1])
                continue
            coef = _coefficients(refit_method, masks[train], flat[train], indices, proxy_coef, n)
            pred = SparseSpectrum(indices, coef, n).evaluate(masks[held])
            scores.append(float((((pred - flat[held]) ** 2).mean(dim=0) / scale).mean()))
        choice = min(range(len(energies)), key=lambda i: (scores[i], supports[i][0].shape[0]))
    else:
        choice = 0
    indices, proxy_coef = supports[choice]
    coefficients = _coefficients(refit_method, masks, flat, indices, proxy_coef, n)
    coefficients = coefficients.reshape(indices.shape[0], *values.shape[1:])
    t_refit = time.perf_counter() - start
    spectrum = SparseSpectrum(indices, coefficients, n, "Fourier")
    info = {
        "method": "proxyspex",
        "n_samples": m,
        "proxy": proxies if len(proxies) > 1 else proxies[0],
        "n_terms_read": max(spec.n_terms for spec in spectra),
        "energy": energies[choice],
        "validation_r2_by_energy": {e: 1.0 - v for e, v in zip(energies, scores)},
        "n_terms_kept": spectrum.n_terms,
        "n_dropped": n_dropped,
        "seconds": {"evaluate": t_eval, "proxy": t_proxy, "truncate_refit": t_refit},
    }
    return spectrum, info


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
