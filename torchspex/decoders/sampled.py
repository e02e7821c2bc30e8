"""SPEX and ProxySPEX made exact at the corners (all features removed, all kept).

Every sampled method's result is exact at the two corners, which are evaluated as part of the
budget, so the Shapley values of the result add up to ``f(N) - f(∅)`` and its baseline is the
evaluated ``f(∅)`` (:func:`~torchspex.decoders.efficiency.enforce_corners`).
"""

from __future__ import annotations

import warnings
from typing import Any

import torch

from torchspex.decoders.base import Evaluator
from torchspex.fourier import SparseSpectrum

__all__ = ["N_CORNERS", "decode_with_corners"]

#: Masks every sampled method spends on the two corners (all removed, all kept), which make the
#: learned function exact there (efficiency and the baseline; see ``decoders/efficiency.py``).
N_CORNERS = 2


def decode_with_corners(
    method: str,
    evaluator: Evaluator,
    n_features: int,
    *,
    n_samples: int | None = None,
    max_order: int | None = None,
    generator: torch.Generator | None = None,
    **options: Any,
) -> tuple[SparseSpectrum, dict[str, Any]]:
    """SPEX (on ``n_samples - 2`` masks) or ProxySPEX, then exact at the corners.

    The two corners are evaluated (unless the decoder already did) and the spectrum is moved
    onto them with the smallest change in mean square over uniform masks, spread over its terms,
    the constant, the order-1 terms and the pairs
    (:func:`~torchspex.decoders.efficiency.enforce_corners`); an exact recovery is unchanged.
    """
    from torchspex.decoders.base import BudgetTooSmallError
    from torchspex.decoders.efficiency import enforce_corners
    from torchspex.decoders.exhaustive import covers_every_mask

    # ProxySPEX's uniform masks include both corners already; SPEX's design has only ∅
    reserve = 0 if method == "proxyspex" else N_CORNERS
    budget = None if n_samples is None else n_samples - reserve
    if covers_every_mask(n_features, n_samples):
        budget = n_samples  # every mask (the corners too): the decoder returns the exact spectrum
    if method == "spex":
        from torchspex.decoders.spex import decode_spex as decoder
    else:
        from torchspex.decoders.proxyspex import decode_proxyspex as decoder
    try:
        if budget is not None and budget < 1:
            raise BudgetTooSmallError(f"n_samples={n_samples} leaves no masks to decode.", 1)
        spectrum, info = decoder(evaluator, n_features, n_samples=budget, max_order=max_order,
                                 generator=generator, **options)  # fmt: skip
    except BudgetTooSmallError as err:
        minimum = err.minimum + reserve
        exact = ""
        if covers_every_mask(n_features, minimum) and minimum > 1 << n_features:
            minimum = 1 << n_features  # every mask, which gives the exact spectrum
            exact = f" (all 2^{n_features} masks: the exact spectrum)"
        raise BudgetTooSmallError(
            f"method={method!r} needs n_samples >= {minimum}{exact} for {n_features} features; "
            f"got {n_samples}. Raise `n_samples`, or use method='auto' or 'regression', which "
            f"work from n + 2 = {n_features + 2} calls.",
            minimum,
        ) from err
    if info.get("exact") or info.get("method") == "exhaustive":
        return spectrum, info
    n = n_features
    ends = torch.stack([torch.zeros(n, dtype=torch.bool), torch.ones(n, dtype=torch.bool)])
    corner_values = evaluator(ends)
    finite = torch.isfinite(corner_values.reshape(2, -1)).all()
    if not bool(finite):  # only reachable with nonfinite="drop"
        warnings.warn(
            "`value_function` returned NaN or inf with every feature removed or every feature "
            "kept, so the learned function cannot be made exact there: its Shapley values need "
            "not add up to f(N) - f(∅) (info['corners_exact'] = False).",
            stacklevel=4,
        )
        return spectrum, {**info, "corners_exact": False}
    # SPEX's and ProxySPEX's masks are uniform-like: the least change over uniform masks
    fixed = enforce_corners(spectrum, corner_values[0], corner_values[1])
    info = {**info, "corners_exact": True}
    if n_samples is None and "n_samples_default" in info:
        # the default budget was the decoder's own; the corner it lacked came on top
        info["n_samples"] = info["n_samples_default"] = evaluator.n_evaluations
    return fixed, info
