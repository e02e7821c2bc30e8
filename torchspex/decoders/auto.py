"""``method="auto"``: the design and the decoder chosen from n, the budget and the index.

The rules, each recorded in ``info["auto"]`` with its reason:

1. **Every mask fits the budget** (``n <= 20``, ``n_samples >= 2^n``): all ``2^n`` masks, the
   exact spectrum (nothing is left to estimate).
2. **Many features** (``n >= SPEX_FEATURES``) **and a budget SPEX can decode with**: a hybrid.
   SPEX (sparse-graph codes, the one decoder that scales to thousands of features) spends
   ``SPEX_SHARE`` of the budget (when that fits SPEX's minimum); the rest goes to
   the index's own design (paired coalitions by size, or uniform masks for the Banzhaf
   family), which serves twice: as held-out data that scores SPEX's spectrum, and as the
   samples of the regression (:func:`~torchspex.decoders.regression.fit_regression`) with
   SPEX's terms ranked first among its candidates. Whichever has the lower error on those
   samples (SPEX's held-out error against the regression's cross-validated error: no extra
   calls) is returned, exact at the corners. Where SPEX reproduces every held-out value to
   round-off (its certificate, :data:`EXACT_HELDOUT`), the regression is not fitted.
3. **Otherwise** (few features, or a budget below SPEX's minimum): the index-aware regression on
   the index's own design; any budget from ``n + 2`` calls works.
4. **Fewer calls than** ``n + 2`` (many features, a small budget; from
   :data:`~torchspex.decoders._budgets.PROXYSPEX_MIN_SAMPLES` calls, LightGBM installed): the
   Shapley family still gets the regression on paired coalitions, its odd part fitted around
   a cross-fitted LightGBM proxy (fewer pairs than features: the proxy is what pins it) and
   its pairs shrunk by a jackknife James-Stein factor (capped by the calibration slope of the
   same refits); the Banzhaf family gets ProxySPEX on
   uniform masks, its pairs shrunk by the jackknife factor (``shrink=True``). Both are exact at the
   corners. With fewer calls than features every estimator is near useless (the planted
   n = 256 games at 256 calls, 6 seeds: SV error 0.74 / 0.85 sparse / hierarchical, against
   0.78 / 1.03 for ProxySPEX and 0.70 / 0.87 for the best 2026 estimator; k-SII pair error
   1.00 / 1.00, against 1.24 / 1.10 for ProxySPEX unshrunk); the answer still adds up.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import torch

from torchspex.decoders._budgets import PROXYSPEX_MIN_SAMPLES
from torchspex.decoders.base import BudgetTooSmallError, Evaluator
from torchspex.decoders.efficiency import EXACT_HELDOUT, enforce_corners
from torchspex.decoders.regression import (
    EFFORTS,
    decode_regression,
    default_sizes,
    design,
    fit_regression,
    index_family,
    minimum_samples,
    paired_error,
    suggest_n_samples,
)
from torchspex.decoders.sampled import decode_with_corners
from torchspex.fourier import SparseSpectrum

__all__ = ["EXACT_HELDOUT", "SPEX_FEATURES", "SPEX_SHARE", "decode_auto", "default_n_samples"]

#: From this many features on, auto lets SPEX look for the support. Below it the regression
#: on the whole budget did better than SPEX's share plus a smaller design wherever SPEX failed
#: to decode (planted hierarchical games at n = 64 and 256, the digits CNN over 64 pixels:
#: SV error 0.36 against 0.88 at n = 64 and 1,024 calls, 0.023 against 0.12 at n = 256 and
#: 4,096), and the regression's own proxy candidates recover sparse games there too.
#: Re-measured with the hybrid from 32 features (``benchmarks/auto_vs_parts.py``, 2 seeds,
#: results/auto_vs_parts.json): it wins where SPEX decodes on its share (planted sparse n = 64
#: at 1,024 calls: exact against 0.20) and loses everywhere else it runs (planted
#: hierarchical n = 64 / 256 at 1,024 calls 0.55 / 0.70 against 0.36 / 0.47, n = 256 at 4,096
#: 0.25 against 0.023; the digits CNN over 64 pixels 0.39 / 0.11 against 0.19 / 0.075 at
#: 1,024 / 4,096), so the threshold stays.
SPEX_FEATURES = 400
#: Share of the budget SPEX spends in the hybrid.
SPEX_SHARE = 0.6
#: Fewest masks the index's own design gets in the hybrid (beyond the corners).
_MIN_REST = 32

_warned_default: set[int] = set()


def default_n_samples(n_features: int) -> int:
    """The budget ``method="auto"`` spends when ``n_samples=None``: ``20 n`` (at least 256),
    capped at ``2^n``.

    Example:
        >>> default_n_samples(10), default_n_samples(100)
        (256, 2000)
    """
    return suggest_n_samples(n_features)


def decode_auto(
    evaluator: Evaluator,
    n_features: int,
    *,
    n_samples: int | None = None,
    max_order: int | None = None,
    generator: torch.Generator | None = None,
    index: str | None = None,
    **options: Any,
) -> tuple[SparseSpectrum, dict[str, Any]]:
    """Chooses and runs a decoder for the index, the number of features and the budget.

    Args:
        evaluator: the value function behind an :class:`~torchspex.decoders.base.Evaluator`.
        n_features: number of features ``n``.
        n_samples: most distinct masks to evaluate, ``>= n + 2`` (or ``>= 64`` with LightGBM
            installed: rule 4); ``None``:
            :func:`default_n_samples`, with a warning naming the count.
        max_order: the order reported (never caps the fit).
        generator: randomness (``None``: seed 0).
        index: the index to be reported (its family picks the design).
        **options: ``effort`` (``"low"``, default, ``"high"`` or ``"minimal"``: how much the
            regression spends on ranking candidate terms,
            :func:`~torchspex.decoders._candidates.proxy_bags`; ``"high"`` lowers the error per
            call by up to about 15% for 3-5x the decode seconds, and from 32 features averages
            the odd part's fits with and without the cross-fitted proxy between 3 and 8 pairs
            per feature, about 20% at 1,000-1,500 calls on MiniLM over 100 words; worth it when
            a model call costs more than a few milliseconds; ``"minimal"`` fits no LightGBM
            proxy (a Walsh screen of the residuals proposes the higher-order terms up to 16
            features), 2.7-7.7x less decode for 0.8-3.3x the error per call on the benchmark's
            exact-table games, worth it when a call costs less than about 0.1 ms); any other
            decoder option: auto hands them to the one method they belong to (e.g. ``b`` or
            ``degree_parameter`` -> SPEX) and records that as its choice.

    Returns:
        ``(spectrum, info)``; ``info["auto"]`` holds the choice, the reason and, for the
        hybrid, both errors compared.

    Raises:
        BudgetTooSmallError: if ``n_samples < n + 2`` and rule 4 cannot run.
        TypeError: for options no single method takes.

    Example:
        >>> f = lambda m: (3.0 * m[:, 0] * m[:, 1] + m[:, 2]).double()
        >>> spec, info = decode_auto(Evaluator(f, 12, n_samples=100), 12, n_samples=100)
        >>> info["auto"]["choice"]
        'regression'
    """
    n = n_features
    effort = options.pop("effort", "low")
    if effort not in EFFORTS:
        raise ValueError(f"`effort` must be one of {EFFORTS}; got {effort!r}.")
    if options:
        method = _method_of_options(options)
        if method == "regression":
            spectrum, info = decode_regression(evaluator, n, n_samples=n_samples,
                                               max_order=max_order, generator=generator,
                                               index=index, effort=effort,
                                               **options)  # fmt: skip
        else:
            if effort != "low":  # an auto / regression setting the chosen method has no use for
                raise TypeError(
                    f"`effort` is a setting of method='auto' / 'regression', but the options "
                    f"{sorted(options)} belong to method={method!r}, which does not take it; "
                    "drop one of them."
                )
            spectrum, info = decode_with_corners(method, evaluator, n, n_samples=n_samples,
                                                 max_order=max_order, generator=generator,
                                                 **options)  # fmt: skip
        reason = f"decoder options {sorted(options)} belong to method={method!r}"
        return spectrum, {**info, "auto": {"choice": method, "reason": reason}}
    if generator is None:
        generator = torch.Generator().manual_seed(0)
    if n_samples is None:
        n_samples = default_n_samples(n)
        if n not in _warned_default:
            _warned_default.add(n)
            rule = ("every mask, exact" if n_samples >= 2**n
                    else "20 per feature, at least 256")  # fmt: skip
            warnings.warn(
                f"n_samples=None: method='auto' will evaluate up to {n_samples} masks for {n} "
                f"features ({rule}); pass `n_samples` to choose.",
                stacklevel=4,
            )
    minimum = minimum_samples(n)
    family = index_family(index)
    if n_samples < minimum:
        if n_samples >= PROXYSPEX_MIN_SAMPLES and _has_lightgbm() and effort != "minimal":
            return _below_minimum(evaluator, n, n_samples, max_order, generator, family,
                                  effort)  # fmt: skip
        below = ("at effort='minimal', which fits no LightGBM proxy (below that, auto fits "
                 "one: effort='low')" if effort == "minimal"
                 else f"from {PROXYSPEX_MIN_SAMPLES} with LightGBM installed")  # fmt: skip
        raise BudgetTooSmallError(
            f"method='auto' needs n_samples >= {minimum} for {n} features (the two corners "
            f"and n / 2 paired coalitions; {below}); got {n_samples}.",
            minimum,
        )
    if n <= 20 and n_samples >= 1 << n:
        from torchspex.decoders.exhaustive import decode_exhaustive

        spectrum, info = decode_exhaustive(evaluator, n)
        reason = f"n_samples={n_samples} covers all 2^{n} = {1 << n} masks: exact"
        return spectrum, {**info, "auto": {"choice": "exhaustive", "reason": reason}}
    if n >= SPEX_FEATURES:
        hybrid = _hybrid(evaluator, n, n_samples, max_order, generator, family, effort)
        if hybrid is not None:
            return hybrid
        reason = (
            f"n = {n} >= {SPEX_FEATURES}, but n_samples={n_samples} is below what SPEX needs "
            f"at a {SPEX_SHARE:.0%} share; regression on the {family} design"
        )
    else:
        reason = f"n = {n} < {SPEX_FEATURES}: regression on the {family} design"
    spectrum, info = decode_regression(evaluator, n, n_samples=n_samples, max_order=max_order,
                                       generator=generator, index=index,
                                       effort=effort)  # fmt: skip
    return spectrum, {**info, "auto": {"choice": "regression", "reason": reason}}


def _below_minimum(
    evaluator: Evaluator, n: int, n_samples: int, max_order: int | None,
    generator: torch.Generator, family: str, effort: str = "low",
) -> tuple[SparseSpectrum, dict[str, Any]]:
    """Rule 4 (fewer calls than ``n + 2``, LightGBM installed)."""
    minimum = minimum_samples(n)
    if family == "shapley":
        sizes = default_sizes(n, n_samples)
        masks, weights = design(n, n_samples, generator, family, sizes)
        values = evaluator(masks)
        spectrum, info = fit_regression(masks, weights, values, n, generator, family,
                                        {"sizes": sizes, "effort": effort})  # fmt: skip
        reason = (
            f"n_samples={n_samples} is below n + 2 = {minimum}: regression on paired "
            "coalitions around a cross-fitted LightGBM proxy (fewer pairs than features), "
            "exact at the corners, the pairs shrunk by a jackknife James-Stein factor capped "
            "by the calibration slope of the same refits"
        )
        return spectrum, {**info, "auto": {"choice": "regression", "reason": reason}}
    spectrum, info = decode_with_corners(
        "proxyspex", evaluator, n, n_samples=n_samples, max_order=max_order,
        generator=generator, shrink=True,
    )
    reason = (
        f"n_samples={n_samples} is below the regression's n + 2 = {minimum}: ProxySPEX "
        "(uniform masks, the Banzhaf design, a LightGBM proxy), exact at the corners, the "
        "pairs shrunk by a jackknife James-Stein factor"
    )
    return spectrum, {**info, "auto": {"choice": "proxyspex", "reason": reason}}


def _has_lightgbm() -> bool:
    import importlib.util

    return importlib.util.find_spec("lightgbm") is not None


def _method_of_options(options: dict[str, Any]) -> str:
    """The one method whose options these are (auto hands them to it)."""
    from torchspex.decoders.proxyspex import _OPTIONS as PROXYSPEX_OPTIONS
    from torchspex.decoders.regression import _OPTIONS as REGRESSION_OPTIONS
    from torchspex.decoders.spex import SPEX_OPTIONS

    owners = {name: set(opts) for name, opts in (("spex", SPEX_OPTIONS),
              ("proxyspex", PROXYSPEX_OPTIONS), ("regression", REGRESSION_OPTIONS))}  # fmt: skip
    fits = [name for name, opts in owners.items() if set(options) <= opts]
    if len(fits) == 1:
        return fits[0]
    known = sorted(set().union(*owners.values()))
    if fits:
        raise TypeError(
            f"method='auto' got decoder options {sorted(options)} that several methods take "
            f"({fits}); choose the method yourself."
        )
    raise TypeError(
        f"method='auto' got decoder options {sorted(options)} that no single method takes "
        "together; choose the method yourself (method='spex', 'proxyspex' or 'regression'). "
        f"Options known: {known}."
    )


def _hybrid(
    evaluator: Evaluator,
    n: int,
    n_samples: int,
    max_order: int | None,
    generator: torch.Generator,
    family: str,
    effort: str = "low",
) -> tuple[SparseSpectrum, dict[str, Any]] | None:
    """SPEX on a share of the budget, the index's design on the rest, the better one kept.

    ``None`` (before any evaluation) when SPEX cannot run on its share.
    """
    from torchspex.decoders.spex import decode_spex

    spex_budget = int(SPEX_SHARE * n_samples)
    if n_samples - spex_budget < _MIN_REST + 2:
        return None
    # SPEX must fit its share: at its bare minimum it rarely decodes, and the regression on the
    # whole budget does better than SPEX's samples plus a small design (measured: planted
    # n = 64 at 512 calls, SV error 0.89 for SPEX-at-minimum + design against 0.40)
    try:
        spex_spec, spex_info = decode_spex(evaluator, n, n_samples=spex_budget,
                                           max_order=max_order, generator=generator)  # fmt: skip
    except BudgetTooSmallError:  # raised before any evaluation
        return None
    spex_masks, spex_values = evaluator.masks, evaluator.values
    # the index's own design on what is left (masks SPEX already has cost nothing again)
    left = n_samples - evaluator.n_evaluations
    sizes = default_sizes(n, max(2, left))
    masks, weights = design(n, max(2, left), generator, family, sizes)
    values = evaluator(masks)
    proxy_data = (torch.cat([spex_masks, masks]), torch.cat([spex_values, values]))
    support = spex_spec.prune(atol=0.0)
    order = torch.argsort(support.coefficients.reshape(support.n_terms, -1).abs().sum(dim=1),
                          descending=True)  # fmt: skip
    prior = support.indices[order]
    if family == "shapley":
        spex_error = paired_error(spex_spec, masks, weights, values)
    else:
        pred = spex_spec.evaluate(masks[2:]).reshape(masks.shape[0] - 2, -1)
        flat = values[2:].reshape(masks.shape[0] - 2, -1)
        scale = flat.var(dim=0, correction=0).clamp(min=1e-300)
        spex_error = float((((pred - flat) ** 2).sum(dim=0) / scale).sum())
    # SPEX's certificate: where its spectrum reproduces every held-out value of the design
    # to round-off, no fit can do better on them, and the regression is not fitted
    certified = spex_error <= EXACT_HELDOUT * max(1, masks.shape[0] - 2)
    reg_spec: SparseSpectrum | None = None
    reg_info: dict[str, Any] = {}
    if not certified:
        reg_spec, reg_info = fit_regression(masks, weights, values, n, generator, family,
                                            {"sizes": sizes, "effort": effort}, prior=prior,
                                            proxy_data=proxy_data)  # fmt: skip
    reg_error = reg_info.get("cv_error", math.nan)
    use_spex = certified or not math.isfinite(reg_error) or spex_error <= reg_error
    choice = {
        "spex_error": spex_error,
        "regression_cv_error": reg_error,
        "n_spex_samples": int(spex_masks.shape[0]),
        "n_design_samples": int(masks.shape[0]),
        "spex_certified": certified,
    }
    if use_spex:
        all_masks = torch.cat([spex_masks, masks])
        # least squares on the samples: the Shapley design samples the sizes next to the
        # corners most, so they say where the correction belongs
        spectrum = enforce_corners(spex_spec, values[0], values[1], all_masks)
        if certified:
            reason = (f"n = {n} >= {SPEX_FEATURES}: SPEX on {spex_budget} calls reproduces the "
                      f"{masks.shape[0] - 2} held-out values of the {family} design to "
                      f"round-off (error {spex_error:.3g}); the regression is not fitted")
        else:
            reason = (f"n = {n} >= {SPEX_FEATURES}: SPEX on {spex_budget} calls; its held-out "
                      f"error on the {family} design ({spex_error:.3g}) <= the regression's "
                      f"CV error ({reg_error:.3g})")  # fmt: skip
        info = {**spex_info, "method": "spex", "corners_exact": True}
    else:
        assert reg_spec is not None
        spectrum = reg_spec
        reason = (f"n = {n} >= {SPEX_FEATURES}: regression on the {family} design with SPEX's "
                  f"{prior.shape[0]} terms as candidates; its CV error ({reg_error:.3g}) < "
                  f"SPEX's held-out error ({spex_error:.3g})")  # fmt: skip
        info = {**reg_info, "spex": spex_info}
    info["auto"] = {"choice": "spex" if use_spex else "spex+regression", "reason": reason,
                    **choice}  # fmt: skip
    return spectrum, info
