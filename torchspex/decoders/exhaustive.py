"""Exact spectrum by evaluating all ``2^n`` masks and one fast Walsh-Hadamard transform."""

from __future__ import annotations

import torch

from torchspex.decoders._budgets import PROXYSPEX_MIN_SAMPLES
from torchspex.decoders.base import BudgetTooSmallError, Evaluator
from torchspex.fourier import SparseSpectrum, dense_to_spectrum, fwht

__all__ = [
    "MAX_EXHAUSTIVE_FEATURES",
    "all_masks",
    "covers_every_mask",
    "decode_every_mask",
    "decode_exhaustive",
]

#: Largest number of features the exhaustive method accepts (2^20 ~ 1e6 evaluations).
MAX_EXHAUSTIVE_FEATURES = 20


def all_masks(n_features: int) -> torch.Tensor:
    """Every mask ``bool [2^n, n]``; row ``x`` keeps feature ``i`` iff bit ``i`` of ``x`` is set.

    Example:
        >>> all_masks(2).int()
        tensor([[0, 0],
                [1, 0],
                [0, 1],
                [1, 1]], dtype=torch.int32)
    """
    rows = torch.arange(1 << n_features).unsqueeze(1)
    return ((rows >> torch.arange(n_features)) & 1).bool()


def check_exhaustive(n_features: int, n_samples: int | None) -> None:
    """Raises when ``n_features`` is too large or ``n_samples`` below ``2^n``."""
    if n_features > MAX_EXHAUSTIVE_FEATURES:
        raise ValueError(
            f"method='exhaustive' evaluates all 2^n masks and supports n_features <= "
            f"{MAX_EXHAUSTIVE_FEATURES}; got n_features={n_features}. Use method='spex' or "
            "method='proxyspex' for more features."
        )
    if n_samples is not None and n_samples < (1 << n_features):
        # only advice that works: below 2^n, ProxySPEX needs its minimum (SPEX needs more)
        other = (
            f", or use method='proxyspex' (an estimate from {PROXYSPEX_MIN_SAMPLES} masks)"
            if n_samples >= PROXYSPEX_MIN_SAMPLES
            else ""
        )
        raise BudgetTooSmallError(
            f"method='exhaustive' needs n_samples >= 2^{n_features} = {1 << n_features}; got "
            f"{n_samples}. Raise `n_samples` to at least {1 << n_features}{other}.",
            1 << n_features,
        )


def decode_exhaustive(evaluator: Evaluator, n_features: int) -> tuple[SparseSpectrum, dict]:
    """Evaluates every mask and returns the exact Fourier spectrum (all ``2^n`` terms).

    .. math:: F(K) = 2^{-n} \\sum_x f(x) (-1)^{|K \\cap x|}
    """
    masks = all_masks(n_features)
    values = evaluator(masks)
    coefficients = fwht(values, dim=0) / (1 << n_features)
    keep = torch.ones(1 << n_features, dtype=torch.bool)
    return dense_to_spectrum(coefficients, n_features, "Fourier", keep=keep), {"exact": True}


def covers_every_mask(n_features: int, n_samples: int | None) -> bool:
    """Whether a budget of ``n_samples`` calls holds all ``2^n`` masks (``n <= 20``).

    Then a sampled method has nothing left to estimate: :func:`decode_every_mask` returns the
    exact spectrum with at most ``n_samples`` calls.

    Example:
        >>> covers_every_mask(8, 256), covers_every_mask(8, 255), covers_every_mask(30, 10**12)
        (True, False, False)
    """
    return (
        n_samples is not None
        and n_features <= MAX_EXHAUSTIVE_FEATURES
        and n_samples >= 1 << n_features
    )


def decode_every_mask(
    evaluator: Evaluator, n_features: int, n_samples: int, method: str
) -> tuple[SparseSpectrum, dict]:
    """The exact spectrum of a sampled ``method`` whose budget covers every mask.

    Every order is kept: ``max_order`` caps what a result reports, never the spectrum (a
    spectrum cut at ``max_order`` is no longer exact at the corners, so its Shapley values
    would not add up to ``f(N) - f(∅)``). ``info`` records the method asked for and why.

    Example:
        >>> f = lambda m: (m[:, 0] & m[:, 1] & m[:, 2]).double()
        >>> spec, info = decode_every_mask(Evaluator(f, 3), 3, 8, "spex")
        >>> spec.max_size, info["method"], info["requested_method"], info["n_evaluations"]
        (3, 'exhaustive', 'spex', 8)
    """
    spectrum, info = decode_exhaustive(evaluator, n_features)
    reason = (
        f"a budget of {n_samples} calls covers all 2^{n_features} = {1 << n_features} masks: "
        "every mask evaluated and the exact spectrum returned (every order; max_order caps the "
        "report only)"
    )
    return spectrum, {
        **info,
        "method": "exhaustive",
        "requested_method": method,
        "exact_reason": reason,
        "n_evaluations": evaluator.n_evaluations,
    }
