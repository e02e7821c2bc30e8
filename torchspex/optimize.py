"""Exact optimization of a learned spectrum over masks: which features to keep or remove.

The learned Fourier spectrum is a sparse polynomial in the mask,
``f(x) = sum_K F[K] (-1)^{|K & x|}``, so "which mask maximizes (or minimizes) the surrogate"
under cardinality and fixed-feature constraints is a small integer program. Small ``n`` is
solved by brute force over all ``2^n`` masks (one fast Walsh-Hadamard transform); larger ``n``
through SciPy's MILP interface to HiGHS, so no commercial licence is needed (spectralexplain's
``ExactSolver`` needs Gurobi).

Formulation (the compact *parity* formulation). Binary ``x_i`` (1 = feature kept) and, for
every term ``K`` with ``|K| >= 2``, a variable ``z_K`` for the parity ``x(K) mod 2``; the
objective ``sum_K F[K] (1 - 2 z_K)`` is linear. Each parity is tied to ``x`` by the facets of
the parity polytope of ``K`` (the convex hull of ``{(x_K, z): z = x(K) mod 2}``), and only the
side the objective pushes against is needed: ``z_K >= sum_{T} x - sum_{K - T} x - |T| + 1``
for odd ``T ⊆ K`` when ``z_K`` should be small, ``z_K <= |T| - sum_T x + sum_{K - T} x`` for
even ``T`` when it should be large. That is ``2^{|K|-1}`` rows per term and one variable,
against the Möbius linearization's ``2^{|K|}`` product variables per Fourier term; its LP
relaxation is the tightest possible for each term on its own. Terms above order
:data:`HULL_MAX_ORDER` use ``x(K) = 2 w_K + z_K`` with an integer ``w_K`` instead.

References:
    Kang et al., "SPEX: Scaling Feature Interaction Explanations for LLMs" (ICML 2025), whose
    ``ExactSolver`` optimizes the Möbius form with Gurobi. Jeroslow (1975) and Yannakakis
    (1991) for the parity polytope. Huangfu and Hall (2018) for HiGHS.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from torchspex.decoders.base import Evaluator, ValueFunction
from torchspex.fourier import SparseSpectrum, fwht, moebius_to_fourier, spectrum_to_dense
from torchspex.fourier.spectrum import check_set_function

__all__ = ["HULL_MAX_ORDER", "MAX_BRUTE_FORCE_FEATURES", "OptimizationResult", "optimize"]

#: ``method="auto"`` enumerates all masks up to this many features.
MAX_BRUTE_FORCE_FEATURES = 16
#: Terms up to this order get the parity-polytope rows; larger ones an integer parity variable.
HULL_MAX_ORDER = 6
_METHODS = ("auto", "brute_force", "milp")
_MAX_DENSE = 22


@dataclass(frozen=True)
class OptimizationResult:
    """The best mask found for a spectrum.

    Attributes:
        mask: ``bool [n_features]``, True = feature kept.
        value: the surrogate (the spectrum) at ``mask``.
        true_value: the value function at ``mask`` when one was given, else ``None``.
        kept: ids of the kept features.
        removed: ids of the removed features.
        optimal: True when the optimum is proven (always for brute force; for the MILP unless
            ``time_limit`` stopped it).
        method: ``"brute_force"`` or ``"milp"``.
        info: solver facts (``seconds``, and for the MILP ``n_variables``, ``n_constraints``,
            ``mip_gap``, ``status``).
    """

    mask: Tensor
    value: float
    true_value: float | None
    kept: tuple[Hashable, ...]
    removed: tuple[Hashable, ...]
    optimal: bool
    method: str
    info: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        true = "None" if self.true_value is None else f"{self.true_value:.6g}"
        return (
            f"OptimizationResult(value={self.value:.6g}, true_value={true}, "
            f"n_kept={len(self.kept)}, removed={list(self.removed)[:10]}"
            f"{'...' if len(self.removed) > 10 else ''}, optimal={self.optimal}, "
            f"method={self.method!r})"
        )


def _check_count(name: str, value: int | None, n: int) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"`{name}` must be an int or None; got {type(value).__name__}.")
    if not 0 <= value <= n:
        raise ValueError(f"`{name}` must be between 0 and n_features={n}; got {value}.")
    return int(value)


def _check_fixed(fixed: Mapping[int, bool] | None, n: int) -> tuple[Tensor, Tensor]:
    """``(is_fixed bool [n], fixed_value bool [n])`` from ``{feature position: kept}``."""
    is_fixed = torch.zeros(n, dtype=torch.bool)
    value = torch.zeros(n, dtype=torch.bool)
    if fixed is None:
        return is_fixed, value
    if not isinstance(fixed, Mapping):
        raise TypeError(
            f"`fixed` must be a mapping {{feature: bool}}; got {type(fixed).__name__}."
        )
    for key, kept in fixed.items():
        if isinstance(key, bool) or not isinstance(key, (int, np.integer)) or not 0 <= key < n:
            raise ValueError(f"`fixed` keys must be feature positions in [0, {n}); got {key!r}.")
        if not isinstance(kept, (bool, np.bool_)):
            raise TypeError(
                f"`fixed` values must be bools (True = keep, False = remove); got {kept!r} "
                f"for feature {key!r}."
            )
        is_fixed[int(key)] = True
        value[int(key)] = bool(kept)
    return is_fixed, value


def _count_range(
    n: int, n_kept: int | None, max_kept: int | None, min_kept: int | None,
    is_fixed: Tensor, fixed_value: Tensor,
) -> tuple[int, int]:
    """The feasible range ``[lo, hi]`` of the number of kept features; raises when empty."""
    n_true = int((is_fixed & fixed_value).sum())
    n_false = int((is_fixed & ~fixed_value).sum())
    lo, hi = n_true, n - n_false
    for bound_lo, bound_hi in ((n_kept, n_kept), (min_kept, None), (None, max_kept)):
        if bound_lo is not None:
            lo = max(lo, bound_lo)
        if bound_hi is not None:
            hi = min(hi, bound_hi)
    if lo > hi:
        raise ValueError(
            "no mask satisfies the constraints: "
            f"n_kept={n_kept}, min_kept={min_kept}, max_kept={max_kept}, with {n_true} features "
            f"fixed kept and {n_false} fixed removed out of {n} features (the number kept "
            f"must lie in [{lo}, {hi}], which is empty); relax the count bounds or `fixed`."
        )
    return lo, hi


def _fourier_scalar(spectrum: SparseSpectrum) -> SparseSpectrum:
    check_set_function(spectrum)
    if spectrum.basis == "Moebius":
        spectrum = moebius_to_fourier(spectrum)
    if spectrum.out_shape != ():
        raise ValueError(
            "`spectrum` must have one scalar coefficient per term to be optimized; got "
            f"coefficients of shape {tuple(spectrum.coefficients.shape)}. Select one output "
            "first, e.g. `result.select(0).optimize(...)`."
        )
    return spectrum.to(torch.float64).coalesce()


def _brute_force(
    spectrum: SparseSpectrum, maximize: bool, lo: int, hi: int,
    is_fixed: Tensor, fixed_value: Tensor,
) -> tuple[Tensor, dict[str, Any]]:
    n = spectrum.n_features
    values = fwht(spectrum_to_dense(spectrum))  # f at every mask, bit i = feature i
    codes = torch.arange(1 << n)
    bits = (codes.unsqueeze(1) >> torch.arange(n)) & 1  # [2^n, n]
    count = bits.sum(dim=1)
    ok = (count >= lo) & (count <= hi)
    if bool(is_fixed.any()):
        want = fixed_value[is_fixed].long()
        ok &= (bits[:, is_fixed] == want).all(dim=1)
    score = values if maximize else -values
    score = torch.where(ok, score, torch.tensor(-torch.inf, dtype=score.dtype))
    best = int(torch.argmax(score))
    return bits[best].bool(), {"n_masks": int(ok.sum())}


def _parity_rows(order: int, odd: bool) -> tuple[np.ndarray, np.ndarray]:
    """Facet patterns of the parity polytope: signs ``[r, order]`` and ``|T|`` ``[r]``."""
    codes = np.arange(1 << order)
    pattern = (codes[:, None] >> np.arange(order)) & 1
    size = pattern.sum(axis=1)
    keep = (size % 2 == 1) if odd else (size % 2 == 0)
    return (2 * pattern[keep] - 1).astype(np.float64), size[keep].astype(np.float64)


@dataclass
class _Program:
    """A MILP in blocks: variable blocks (objective, integrality, bounds) and the COO entries of
    the constraint rows, appended in the order the variables and rows are numbered."""

    n_vars: int
    c_parts: list[np.ndarray]
    integrality: list[np.ndarray]
    lower: list[np.ndarray]
    upper: list[np.ndarray]
    rows: list[np.ndarray] = field(default_factory=list)
    cols: list[np.ndarray] = field(default_factory=list)
    vals: list[np.ndarray] = field(default_factory=list)
    row_lo: list[np.ndarray] = field(default_factory=list)
    row_hi: list[np.ndarray] = field(default_factory=list)
    n_rows: int = 0


def _parity_program(
    spectrum: SparseSpectrum, sign: float
) -> tuple[_Program, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The variables ``x`` (one per feature) and ``z_K`` (one per term of order >= 2) with the
    linear objective of ``sign * f``; also ``(idx, coef, orders, high)`` of the terms."""
    n = spectrum.n_features
    idx = spectrum.indices.detach().cpu().numpy()
    if idx.shape[1] == 0:
        idx = np.full((idx.shape[0], 1), -1, dtype=np.int64)
    coef = spectrum.coefficients.detach().cpu().numpy()
    orders = (idx >= 0).sum(axis=1)
    # linear objective (to maximize sign * f): f = sum F + sum_i -2 F_i x_i + sum_K -2 F_K z_K
    c_x = np.zeros(n)
    single = (orders == 1) & (coef != 0)
    np.add.at(c_x, idx[single, 0], -2.0 * coef[single])
    high = np.nonzero((orders >= 2) & (coef != 0))[0]
    n_z = high.shape[0]
    program = _Program(
        n_vars=n + n_z, c_parts=[c_x, -2.0 * coef[high]],
        integrality=[np.ones(n), np.zeros(n_z)],
        lower=[np.zeros(n), np.zeros(n_z)], upper=[np.ones(n), np.ones(n_z)],
    )
    return program, idx, coef, orders, high


def _hull_rows(
    program: _Program, k: int, feats: np.ndarray, z: np.ndarray, low_side: np.ndarray
) -> None:
    """Parity-polytope facets of the order-``k`` terms ``feats [t, k]`` with parities ``z``:
    odd ``T`` bound ``z_K`` below where the objective wants it small (``low_side``), even
    ``T`` bound it above elsewhere."""
    for odd, z_sign, members in ((True, -1.0, low_side), (False, 1.0, ~low_side)):
        if not members.any():
            continue
        signs, size = _parity_rows(k, odd)  # [r, k], [r]
        t, r = int(members.sum()), signs.shape[0]
        row_id = program.n_rows + np.arange(t * r).reshape(t, r)
        program.rows += [np.repeat(row_id[..., None], k, axis=2).ravel(), row_id.ravel()]
        program.cols += [np.broadcast_to(feats[members][:, None, :], (t, r, k)).ravel(),
                         np.repeat(z[members], r)]
        program.vals += [np.broadcast_to(signs, (t, r, k)).ravel(), np.full(t * r, z_sign)]
        program.row_lo.append(np.full(t * r, -np.inf))
        program.row_hi.append(np.tile(size - 1.0 if odd else size, t))
        program.n_rows += t * r


def _integer_parity_rows(program: _Program, k: int, feats: np.ndarray, z: np.ndarray) -> None:
    """``x(K) - 2 w_K - z_K = 0`` with a new integer ``w_K`` per order-``k`` term."""
    t = feats.shape[0]
    w = program.n_vars + np.arange(t)
    program.n_vars += t
    program.c_parts.append(np.zeros(t))
    program.integrality.append(np.ones(t))
    program.lower.append(np.zeros(t))
    program.upper.append(np.full(t, float(k // 2)))
    row_id = program.n_rows + np.arange(t)
    program.rows += [np.repeat(row_id, k), row_id, row_id]
    program.cols += [feats.ravel(), z, w]
    program.vals += [np.ones(t * k), np.full(t, -1.0), np.full(t, -2.0)]
    program.row_lo.append(np.zeros(t))
    program.row_hi.append(np.zeros(t))
    program.n_rows += t


def _cardinality_row(program: _Program, n: int, lo: int, hi: int) -> None:
    """``lo <= sum_i x_i <= hi``, when it constrains anything."""
    if lo > 0 or hi < n:
        program.rows.append(np.full(n, program.n_rows))
        program.cols.append(np.arange(n))
        program.vals.append(np.ones(n))
        program.row_lo.append(np.array([float(lo)]))
        program.row_hi.append(np.array([float(hi)]))
        program.n_rows += 1


def _solve(
    program: _Program, n: int, sign: float, is_fixed: Tensor, fixed_value: Tensor,
    time_limit: float | None,
) -> tuple[Tensor, bool, dict[str, Any]]:
    """Runs HiGHS on ``program`` (fixed features as equal bounds); the mask of ``x``."""
    import scipy.sparse as sparse
    from scipy.optimize import Bounds, LinearConstraint, milp

    lb, ub = np.concatenate(program.lower), np.concatenate(program.upper)
    fixed_pos = is_fixed.numpy()
    lb[:n][fixed_pos] = ub[:n][fixed_pos] = fixed_value.numpy()[fixed_pos].astype(np.float64)
    constraints = []
    if program.n_rows:
        matrix = sparse.csr_array(
            (np.concatenate(program.vals),
             (np.concatenate(program.rows), np.concatenate(program.cols))),
            shape=(program.n_rows, program.n_vars),
        )
        constraints.append(LinearConstraint(
            matrix, np.concatenate(program.row_lo), np.concatenate(program.row_hi)))
    # HiGHS's presolve once returned a non-optimal mask as proven optimal here (n = 8, one
    # term each of order 7 and 8 under a count constraint: value 1.6484 where 1.6542 exists;
    # right without presolve). Off: the optimum of optimize_bench.py's four scenarios
    # (n = 500, 2,000 terms) took 0.06-0.10 s without it against 0.08-0.11 s with it.
    options: dict[str, Any] = {"mip_rel_gap": 0.0, "presolve": False}
    if time_limit is not None:
        options["time_limit"] = float(time_limit)
    res = milp(
        -sign * np.concatenate(program.c_parts), constraints=constraints,
        integrality=np.concatenate(program.integrality), bounds=Bounds(lb, ub), options=options,
    )
    info = {
        "n_variables": program.n_vars, "n_constraints": program.n_rows,
        "status": int(res.status),
        "mip_gap": None if getattr(res, "mip_gap", None) is None else float(res.mip_gap),
        "message": res.message,
    }
    if res.x is None:
        raise RuntimeError(
            f"the MILP solver found no solution (status {res.status}: {res.message}); "
            "raise `time_limit` or relax the constraints."
        )
    optimal = res.status == 0
    if not optimal:
        warnings.warn(
            f"the MILP solver stopped before proving optimality ({res.message}); the mask is "
            f"the best found (relative gap {info['mip_gap']}). Raise `time_limit` for the "
            "exact optimum.",
            stacklevel=4,
        )
    return torch.from_numpy(res.x[:n] > 0.5), optimal, info


def _milp(
    spectrum: SparseSpectrum, maximize: bool, lo: int, hi: int,
    is_fixed: Tensor, fixed_value: Tensor, time_limit: float | None,
) -> tuple[Tensor, bool, dict[str, Any]]:
    """The parity formulation (module docstring) solved by HiGHS: variables and objective, the
    rows tying each term's parity to ``x`` (by order), the cardinality row, the solve."""
    sign = 1.0 if maximize else -1.0
    program, idx, coef, orders, high = _parity_program(spectrum, sign)
    z_of = np.arange(high.shape[0]) + spectrum.n_features
    for k in np.unique(orders[high]).tolist():
        sel = orders[high] == k
        terms, z = high[sel], z_of[sel]
        feats = idx[terms, :k]  # [t, k]
        if k <= HULL_MAX_ORDER:
            _hull_rows(program, k, feats, z, coef[terms] * sign > 0)
        else:
            _integer_parity_rows(program, k, feats, z)
    _cardinality_row(program, spectrum.n_features, lo, hi)
    return _solve(program, spectrum.n_features, sign, is_fixed, fixed_value, time_limit)


def optimize(
    spectrum: SparseSpectrum,
    maximize: bool = True,
    n_kept: int | None = None,
    max_kept: int | None = None,
    min_kept: int | None = None,
    fixed: Mapping[int, bool] | None = None,
    value_function: ValueFunction | None = None,
    *,
    method: str = "auto",
    time_limit: float | None = None,
    feature_ids: Sequence[Hashable] | None = None,
    mask_format: str = "torch",
) -> OptimizationResult:
    """The mask that maximizes (or minimizes) a sparse spectrum, exactly.

    Args:
        spectrum: a Fourier (or Möbius) spectrum with scalar coefficients ``[s]``.
        maximize: maximize (True) or minimize (False) the surrogate.
        n_kept: keep exactly this many features.
        max_kept: keep at most this many features.
        min_kept: keep at least this many features.
        fixed: ``{feature position: kept}``, features whose state is forced.
        value_function: ``masks bool [m, n] -> values [m]``; when given, it is called once on
            the optimal mask and its value is reported as ``true_value``.
        method: ``"brute_force"`` (all ``2^n`` masks, ``n <= 22``), ``"milp"`` (HiGHS through
            ``scipy.optimize.milp``) or ``"auto"`` (brute force up to
            :data:`MAX_BRUTE_FORCE_FEATURES` features).
        time_limit: seconds the MILP may run (``None``: until proven optimal). When it stops
            early, the best mask found is returned with ``optimal=False`` and a warning.
        feature_ids: ids to report in ``kept`` / ``removed`` (default ``0 .. n-1``).
        mask_format: ``"torch"`` or ``"numpy"``: what ``value_function`` receives.

    Returns:
        :class:`OptimizationResult` with the mask, the surrogate value there and, when a value
        function was given, the true value. Ties are broken arbitrarily but deterministically.

    Raises:
        ValueError: when no mask satisfies the constraints, for a multi-output spectrum, an
            unknown method, or brute force asked for too many features.
        TypeError: for arguments of the wrong type.

    Example:
        >>> spec = SparseSpectrum.from_sets([(), (0,), (1, 2)], [1.0, -0.5, 0.25], 3)
        >>> best = optimize(spec, maximize=True, max_kept=1)
        >>> best.kept, best.value
        ((0,), 1.75)
    """
    spectrum = _fourier_scalar(spectrum)
    n = spectrum.n_features
    if not isinstance(maximize, (bool, np.bool_)):
        raise TypeError(f"`maximize` must be a bool; got {type(maximize).__name__}.")
    if method not in _METHODS:
        raise ValueError(f"`method` must be one of {_METHODS}; got {method!r}.")
    if time_limit is not None and not (
        isinstance(time_limit, (int, float)) and not isinstance(time_limit, bool)
        and time_limit > 0
    ):  # fmt: skip
        raise ValueError(f"`time_limit` must be a positive number of seconds; got {time_limit!r}.")
    ids = tuple(range(n)) if feature_ids is None else tuple(feature_ids)
    if len(ids) != n:
        raise ValueError(f"`feature_ids` must have {n} entries; got {len(ids)}.")
    n_kept = _check_count("n_kept", n_kept, n)
    max_kept = _check_count("max_kept", max_kept, n)
    min_kept = _check_count("min_kept", min_kept, n)
    is_fixed, fixed_value = _check_fixed(fixed, n)
    lo, hi = _count_range(n, n_kept, max_kept, min_kept, is_fixed, fixed_value)
    if method == "auto" or n == 0:  # no feature: the one mask, the constant
        method = "brute_force" if n <= MAX_BRUTE_FORCE_FEATURES else "milp"
    if method == "brute_force" and n > _MAX_DENSE:
        raise ValueError(
            f"`method='brute_force'` enumerates 2^n masks and needs n_features <= {_MAX_DENSE}; "
            f"got {n}. Use method='milp'."
        )
    start = time.perf_counter()
    if method == "brute_force":
        mask, info = _brute_force(spectrum, bool(maximize), lo, hi, is_fixed, fixed_value)
        optimal = True
    else:
        mask, optimal, info = _milp(
            spectrum, bool(maximize), lo, hi, is_fixed, fixed_value, time_limit
        )
    info["seconds"] = time.perf_counter() - start
    value = float(spectrum.evaluate(mask.unsqueeze(0))[0].detach())
    true_value = None
    if value_function is not None:
        evaluator = Evaluator(value_function, n, mask_format=mask_format)
        out = evaluator(mask.unsqueeze(0))[0]
        if out.numel() != 1:
            raise ValueError(
                "`value_function` must return one value per mask to compare with the optimized "
                f"surrogate; got {tuple(out.shape)} values per mask. Wrap it to return the "
                "output that was optimized."
            )
        true_value = float(out.reshape(()))
    return OptimizationResult(
        mask=mask,
        value=value,
        true_value=true_value,
        kept=tuple(ids[i] for i in torch.nonzero(mask).squeeze(1).tolist()),
        removed=tuple(ids[i] for i in torch.nonzero(~mask).squeeze(1).tolist()),
        optimal=optimal,
        method=method,
        info=info,
    )
