"""The egalitarian least core (ELC) of the learned function, by linear programming.

For the normalized game ``v'(S) = v(S) - v(empty)`` (Yan and Procaccia 2021):

1. the least-core subsidy ``e* = min e`` subject to ``x(S) + e >= v'(S)`` for every proper
   nonempty ``S``, ``x(N) = v'(N)`` and ``e >= 0`` — a linear program, solved with SciPy's HiGHS;
2. the egalitarian least core: the point of that least core with the smallest Euclidean norm,
   ``min ||x||_2`` subject to ``x(S) >= v'(S) - e*`` and ``x(N) = v'(N)`` — a least-distance
   program, solved exactly (active set, finite) as a nonnegative least-squares problem
   (Lawson and Hanson 1974, ch. 23).

Both need every coalition's value, which the spectrum gives exactly (one ``2^n`` Walsh-Hadamard
transform): the result is the ELC of the learned function, for ``n <= MAX_ELC_FEATURES``.

shapiq 1.8's ``ExactComputer("ELC")`` minimizes ``||x||_2 + e`` in one SLSQP run (tolerance
about ``1e-6``), which can pay more than the least core's subsidy for a smaller norm; where the
least core is a single point or ``e* = 0`` with no gain from more subsidy, both agree.
``objective="shapiq"`` solves shapiq's objective exactly instead.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from torchspex.fourier._basis import fwht, moebius_to_fourier, spectrum_to_dense
from torchspex.fourier.spectrum import SparseSpectrum, check_set_function

__all__ = ["MAX_ELC_FEATURES", "egalitarian_least_core"]

#: Largest ``n`` for which the ELC is computed (``2^n - 2`` core constraints).
MAX_ELC_FEATURES = 16
_TOL = 1e-10


def _game_values(spectrum: SparseSpectrum) -> Tensor:
    """Every coalition's value, ``float64 [2^n, o]`` (bit ``i`` of the row = feature ``i``)."""
    if spectrum.basis == "Moebius":
        spectrum = moebius_to_fourier(spectrum)
    dense = spectrum_to_dense(spectrum.to(torch.float64))
    values = fwht(dense.reshape(dense.shape[0], -1).cpu(), dim=0)
    return values


def _least_distance(
    members: np.ndarray, v: np.ndarray, masks: np.ndarray, subsidy: float
) -> np.ndarray:
    """``argmin ||x||`` s.t. ``x(S) >= v(S) - subsidy`` (proper ``S``), ``x(N) = v(N)``.

    As NNLS ``min ||E u - f||, u >= 0`` with ``E = [G^T; h^T]``, ``f = e_{n+1}`` for the rows
    ``G x >= h``; then ``x = -r[:n] / r[n]`` for ``r = E u - f`` (Lawson and Hanson, ch. 23).
    """
    from scipy.optimize import nnls

    n = members.shape[1]
    slack = 1e-12  # keeps the least core nonempty against the LP's round-off
    g = np.vstack([members, np.ones((1, n)), -np.ones((1, n))])
    h = np.concatenate([v[masks] - subsidy - slack, [v[-1] - slack, -v[-1] - slack]])
    e = np.vstack([g.T, h[None, :]])
    f = np.zeros(n + 1)
    f[-1] = 1.0
    u, _ = nnls(e, f, maxiter=50 * (len(h) + 2))
    r = e @ u - f
    if abs(r[-1]) < 1e-14:  # pragma: no cover - infeasible, cannot happen after the LP
        raise RuntimeError("the least core is empty; the linear program's subsidy is too small.")
    x = -r[:n] / r[-1]
    return x + (v[-1] - x.sum()) / n  # efficiency exactly (moves x by at most the slack)


def _joint_minimum(
    members: np.ndarray, v: np.ndarray, masks: np.ndarray, low: float
) -> tuple[np.ndarray, float]:
    """shapiq's objective: ``min ||x||_2 + e`` over ``e >= low`` (golden section; convex)."""
    n = members.shape[1]
    uniform = np.full(n, v[-1] / n)  # feasible, and the smallest efficient norm, for e >= high
    high = max(low, float((v[masks] - members @ uniform).max()))

    def cost(e: float) -> float:
        return e + float(np.linalg.norm(_least_distance(members, v, masks, e)))

    a, b = low, high
    ratio = (np.sqrt(5.0) - 1) / 2
    c, d = b - ratio * (b - a), a + ratio * (b - a)
    fc, fd = cost(c), cost(d)
    while b - a > 1e-12 * max(1.0, high):
        if fc <= fd:
            b, d, fd = d, c, fc
            c = b - ratio * (b - a)
            fc = cost(c)
        else:
            a, c, fc = c, d, fd
            d = a + ratio * (b - a)
            fd = cost(d)
    best = min((low, (a + b) / 2, high), key=cost)
    return _least_distance(members, v, masks, best), best


def _solve_one(values: np.ndarray, n: int, objective: str) -> tuple[np.ndarray, float]:
    """ELC and subsidy of one game, ``values[mask]`` with ``values[0] = v(empty)``."""
    from scipy.optimize import linprog

    v = values - values[0]
    total = float(v[-1])
    if n == 1:
        return np.array([total]), 0.0
    scale = float(np.abs(v).max()) or 1.0
    v = v / scale
    masks = np.arange(1, (1 << n) - 1)
    members = ((masks[:, None] >> np.arange(n)) & 1).astype(float)  # [m, n]
    m = members.shape[0]
    # 1. least-core subsidy: min e  s.t.  -x(S) - e <= -v(S),  x(N) = v(N),  e >= 0.
    a_ub = -np.hstack([members, np.ones((m, 1))])
    a_eq = np.hstack([np.ones((1, n)), np.zeros((1, 1))])
    cost = np.zeros(n + 1)
    cost[-1] = 1.0
    lp = linprog(
        cost,
        A_ub=a_ub,
        b_ub=-v[masks],
        A_eq=a_eq,
        b_eq=[v[-1]],
        bounds=[(None, None)] * n + [(0, None)],
        method="highs",
        options={"primal_feasibility_tolerance": _TOL, "dual_feasibility_tolerance": _TOL},
    )
    if lp.status != 0:  # pragma: no cover - the LP is always feasible and bounded
        raise RuntimeError(f"the least-core linear program failed: {lp.message}")
    subsidy = max(float(lp.x[-1]), 0.0)
    if objective == "shapiq":
        x, subsidy = _joint_minimum(members, v, masks, subsidy)
    else:  # 2. least distance: the min-norm point of the least core
        x = _least_distance(members, v, masks, subsidy)
    return x * scale, subsidy * scale


def egalitarian_least_core(
    spectrum: SparseSpectrum, objective: str = "least-core"
) -> tuple[SparseSpectrum, Tensor]:
    """The egalitarian least core of the spectrum's set function, and its subsidy.

    Args:
        spectrum: a Fourier or Möbius spectrum, coefficients ``[s, *out]``; one linear program
            per output.
        objective: ``"least-core"`` (default; Yan and Procaccia: the least-core subsidy, then
            the minimum-norm point of that least core) or ``"shapiq"`` (shapiq 1.8's
            ``ExactComputer("ELC")`` objective ``min ||x||_2 + e`` over ``(x, e)`` jointly,
            solved exactly: a convex 1-D search over ``e`` of least-distance problems), whose
            subsidy can exceed the least core's.

    Returns:
        ``(values, subsidy)``: ``values`` with basis ``"ELC"`` holds one entry ``(i,)`` per
        player (no ``()`` entry: shapiq's ELC has ``min_order=1`` and baseline 0), with
        ``sum_i x_i = f(N) - f(empty)``; ``subsidy`` ``[*out]`` is the least-core ``e*``.

    Raises:
        ValueError: for ``n_features > MAX_ELC_FEATURES`` (``2^n`` coalition constraints).

    Example:
        >>> spec = SparseSpectrum.from_sets([(0,), (0, 1)], [1.0, 2.0], 2, basis="Moebius")
        >>> values, subsidy = egalitarian_least_core(spec)  # core: x0 >= 1, x1 >= 0, sum 3
        >>> [round(x, 6) for x in values.coefficients.tolist()], float(subsidy)
        ([1.5, 1.5], 0.0)
    """
    check_set_function(spectrum)
    if objective not in ("least-core", "shapiq"):
        raise ValueError(f"`objective` must be 'least-core' or 'shapiq'; got {objective!r}.")
    n = spectrum.n_features
    if n > MAX_ELC_FEATURES:
        raise ValueError(
            f"the egalitarian least core needs every coalition's value (2^n - 2 constraints); "
            f"it is computed for n_features <= {MAX_ELC_FEATURES}, got {n}."
        )
    out_shape = spectrum.out_shape
    dtype, device = spectrum.coefficients.dtype, spectrum.coefficients.device
    n_out = math.prod(out_shape)
    if n == 0:
        return (
            SparseSpectrum.zeros(0, out_shape, "ELC", dtype),
            torch.zeros(out_shape, dtype=dtype, device=device),
        )
    values = _game_values(spectrum).numpy()
    x = np.zeros((n, n_out))
    subsidy = np.zeros(n_out)
    for j in range(n_out):
        x[:, j], subsidy[j] = _solve_one(values[:, j], n, objective)
    idx = torch.arange(n, dtype=torch.long)[:, None]
    coef = torch.as_tensor(x, dtype=dtype, device=device).reshape(n, *out_shape)
    result = SparseSpectrum(idx, coef, n, "ELC")
    return result, torch.as_tensor(subsidy, dtype=dtype, device=device).reshape(out_shape)
