"""One entry point for every decoding method."""

from __future__ import annotations

from typing import Any

import torch

from torchspex.decoders.base import Evaluator, check_nonfinite
from torchspex.decoders.exhaustive import check_exhaustive, decode_exhaustive
from torchspex.fourier import SparseSpectrum

__all__ = ["METHODS", "check_method", "decode"]

METHODS: tuple[str, ...] = ("spex", "proxyspex", "exhaustive")


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
    **options: Any,
) -> tuple[SparseSpectrum, dict[str, Any]]:
    """Learns the Fourier spectrum of ``evaluator``'s value function with ``method``.

    Validation of the budget happens before the first evaluation.

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
    if method == "spex":
        from torchspex.decoders.spex import decode_spex

        return decode_spex(
            evaluator,
            n_features,
            n_samples=n_samples,
            max_order=max_order,
            generator=generator,
            **options,
        )
    from torchspex.decoders.proxyspex import decode_proxyspex

    return decode_proxyspex(
        evaluator,
        n_features,
        n_samples=n_samples,
        max_order=max_order,
        generator=generator,
        **options,
    )
