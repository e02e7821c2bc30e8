"""One entry point for every decoding method."""

from __future__ import annotations

from typing import Any

import torch

from torchspex.decoders.base import Evaluator, check_nonfinite
from torchspex.decoders.exhaustive import check_exhaustive, decode_exhaustive
from torchspex.decoders.sampled import N_CORNERS, decode_with_corners
from torchspex.fourier import SparseSpectrum

__all__ = ["METHODS", "N_CORNERS", "check_method", "decode", "decode_with_corners"]

METHODS: tuple[str, ...] = ("auto", "regression", "spex", "proxyspex", "exhaustive")




def check_method(method: str) -> str:
    """Validates a method name."""
    if not isinstance(method, str) or method.lower() not in METHODS:
        from torchspex.errors import did_you_mean

        hint = did_you_mean(method, METHODS)
        raise ValueError(f"`method` must be one of {METHODS}; got {method!r}.{hint}")
    return method.lower()


def decode(
    method: str,
    evaluator: Evaluator,
    n_features: int,
    *,
    n_samples: int | None = None,
    max_order: int | None = None,
    generator: torch.Generator | None = None,
    index: str | None = None,
    **options: Any,
) -> tuple[SparseSpectrum, dict[str, Any]]:
    """Learns the Fourier spectrum of ``evaluator``'s value function with ``method``.

    Validation of the budget happens before the first evaluation. Every sampled method's result
    is exact at the two corners (all features removed / kept), which are evaluated as part of
    the budget: the Shapley values of the result add up to ``f(N) - f(∅)`` and its baseline is
    the evaluated ``f(∅)``. ``index`` (the index that will be reported) steers the design of
    ``"auto"`` and ``"regression"``.

    Returns:
        ``(spectrum, info)``: the Fourier spectrum and decoder diagnostics.
    """
    method = check_method(method)
    check_nonfinite(getattr(evaluator, "nonfinite", "raise"), method)
    if method == "exhaustive":
        if options:
            raise TypeError(f"method='exhaustive' takes no options; got {sorted(options)}.")
        check_exhaustive(n_features, n_samples)
        return decode_exhaustive(evaluator, n_features)
    if method == "auto":
        from torchspex.decoders.auto import decode_auto

        return decode_auto(evaluator, n_features, n_samples=n_samples, max_order=max_order,
                           generator=generator, index=index, **options)  # fmt: skip
    if method == "regression":
        from torchspex.decoders.regression import decode_regression

        return decode_regression(evaluator, n_features, n_samples=n_samples,
                                 max_order=max_order, generator=generator, index=index,
                                 **options)  # fmt: skip
    return decode_with_corners(method, evaluator, n_features, n_samples=n_samples,
                               max_order=max_order, generator=generator, **options)  # fmt: skip
