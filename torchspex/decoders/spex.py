"""SPEX: sparse Fourier transform by aliasing, BCH-coded delays and peeling.

Kang et al., "SPEX: Scaling Feature Interaction Explanations for LLMs", ICML 2025 (after
the sparse-graph-code transforms of Li, Bradley, Ramchandran and of Erginbas et al.).

The value function is queried on the masks of a :class:`~torchspex.sampling.SPEXPlan`. One
Walsh-Hadamard transform per (group, delay) turns them into bins: bin ``j`` of group ``c`` holds
``U[p] = sum_{k: M_c^T k = j} F(k) (-1)^{<d_p, k>}``. A bin with one term (a *singleton*) shows
the BCH parity bits of its index in the signs of ``U``; decoding them gives ``k``, which is
accepted when it lands in this very bin and explains the bin's energy; it is then subtracted
(*peeled*) from its bins in every group, which turns more bins into singletons.

Everything is batched: each round examines all changed bins at once (one batched hard BCH
decode, Chase soft decoding only for the bins it could not place), and peels all accepted
terms with one scatter. The noise level is estimated from the bins themselves (a low quantile
of the energy no single term explains), so pure-noise bins are not decoded and faint
candidates are not accepted. Finally the coefficients of the recovered support (the empty set
always included) are refitted by least squares on every collected sample, which removes the
bias that peeling leaves under noise (the reference implementation skips this step).
"""

from __future__ import annotations

import time
import warnings
from typing import Any

import numpy as np
import torch
from scipy.stats import chi2
from torch import Tensor

from torchspex.decoders._budgets import (
    DEFAULT_B,
    DEFAULT_DEGREE,
    MIN_DEFAULT_DEGREE,
    default_degree,
)
from torchspex.decoders.base import BudgetTooSmallError, Evaluator
from torchspex.decoders.exhaustive import covers_every_mask, decode_every_mask
from torchspex.fourier import SparseSpectrum, fwht
from torchspex.sampling.plan import (
    DEFAULT_N_GROUPS,
    MAX_B,
    SPEXPlan,
    default_n_samples,
    degree_for_budget,
    plan_for_budget,
)
from torchspex.sampling.plan import n_delays as plan_n_delays

__all__ = [
    "DEFAULT_B",
    "DEFAULT_DEGREE",
    "MIN_DEFAULT_DEGREE",
    "SPEX_OPTIONS",
    "decode_spex",
    "default_degree",
]

#: Rounds of uniform draws that fill the budget (later rounds replace repeated masks).
_UNIFORM_TRIES = 4
#: Budget share below which ``info["unspent_reason"]`` says why the rest was not spent.
_SPEND_TARGET = 0.9

SPEX_OPTIONS: tuple[str, ...] = (
    "b",
    "chase_depth",
    "decoder_type",
    "degree_parameter",
    "max_iter",
    "n_chase_patterns",
    "n_groups",
    "noise_quantile",
    "refit",
    "res_energy_cutoff",
)

# tail probabilities of the noise tests
_ZERO_TON_ALPHA = 1e-3
_SIGNIFICANCE_ALPHA = 1e-3
# relative floor of the noise variance (float64 round-off of the transforms)
_NOISE_FLOOR = 1e-24
# decoded bins needed before their residuals alone may set the noise level
_MIN_DECODED_FOR_NOISE = 3
# rounds without a new term before peeling stops (further rounds only refine values)
_PATIENCE = 10
# most mask bits generated per evaluator call
_CHUNK_BITS = 1 << 24


def _check_options(options: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(options) - set(SPEX_OPTIONS))
    if unknown:
        raise TypeError(
            f"method='spex' got unknown option(s) {unknown}; valid options are {SPEX_OPTIONS}."
        )
    out = dict(options)
    decoder_type = out.get("decoder_type", "soft")
    if decoder_type not in ("soft", "hard"):
        raise ValueError(f"`decoder_type` must be one of ('soft', 'hard'); got {decoder_type!r}.")
    refit = out.get("refit", "ols")
    if refit is False:
        refit = None
    if refit not in ("ols", "ridge", None):
        raise ValueError(f"`refit` must be one of ('ols', 'ridge', None); got {refit!r}.")
    out["refit"] = refit
    for name, low in (("degree_parameter", 1), ("b", 1), ("n_groups", 1), ("max_iter", 1),
                      ("chase_depth", 0), ("n_chase_patterns", 1)):
        value = out.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                  or value < low):
            raise ValueError(f"`{name}` must be an int >= {low} or None; got {value!r}.")
    if out.get("b") is not None and out["b"] > MAX_B:
        raise ValueError(f"`b` must be <= {MAX_B}; got {out['b']}.")
    for name, default in (("res_energy_cutoff", 0.9), ("noise_quantile", 0.25)):
        value = out.get(name, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
            raise ValueError(f"`{name}` must be a number in (0, 1); got {value!r}.")
        out[name] = float(value)
    return out


def decode_spex(
    evaluator: Evaluator,
    n_features: int,
    *,
    n_samples: int | None = None,
    max_order: int | None = None,
    generator: torch.Generator | None = None,
    **options: Any,
) -> tuple[SparseSpectrum, dict[str, Any]]:
    """Learns a sparse Fourier spectrum with SPEX.

    Args:
        evaluator: the value function behind an :class:`~torchspex.decoders.Evaluator`.
        n_features: number of features ``n``.
        n_samples: most distinct masks to evaluate. The budget is spent: the design takes as
            many bins as fit (three groups, then the smallest enlarged, two large groups and a
            small one, or smaller groups added, see :func:`~torchspex.sampling.fill_budget`),
            and the masks left over are uniform random
            samples for the final refit (``info["budget_spent"]``; when under 90%,
            ``info["unspent_reason"]`` says why). ``None``: the default budget
            :func:`~torchspex.sampling.default_n_samples` (about one bin per feature, e.g.
            4,100 calls at n = 100, 28,672 at n = 1000 for ``t = 5``), with a warning naming it
            (or the ``b`` option's design, without one). When ``2^n`` is at most the budget,
            every mask is evaluated and the exact spectrum is returned instead, with a warning
            and ``info["exact"] = True``.
        max_order: the order of interest; it sets the default degree parameter
            ``max(3, max_order)`` (:func:`default_degree`). Terms of higher order that peeling
            recovers are kept: they
            are part of the learned function, and order-capped indices (STII, FSII, SII)
            aggregate them; the cap is applied when an index is reported.
        generator: source of the random subsampling matrices (``None``: seed 0).
        **options: ``degree_parameter`` (BCH ``t``; default :func:`default_degree`, lowered to
            fit a budget), ``b`` (log2 bins per group: a fixed design of equal groups; with a
            budget it must fit), ``n_groups`` (default 3, plus up to 3 smaller groups that fill
            the budget; given, exactly that many), ``decoder_type`` (``"soft"``: Chase
            decoding where hard decoding fails, default; ``"hard"``), ``chase_depth`` (least
            reliable signs flipped, default ``min(2t, 12)``), ``n_chase_patterns`` (test
            patterns per bin, default ``depth (depth + 1) / 2 + 1``), ``res_energy_cutoff``
            (largest share of a bin's energy a singleton may leave unexplained, default 0.9),
            ``noise_quantile`` (quantile of the per-bin unexplained energy used to estimate the
            noise, default 0.25), ``max_iter`` (peeling rounds, default 100), ``refit``
            (``"ols"`` default, ``"ridge"``, or ``None`` to keep the peeled values).

    Returns:
        ``(spectrum, info)``: the Fourier spectrum (coefficients ``float64 [s, *out]``, the
        empty set always present) and diagnostics: ``b`` (of the largest group), ``group_b``
        (of each group), ``degree_parameter``, ``n_groups``, ``n_delays``, ``n_queries`` (masks in
        the design, repeats included), ``n_uniform`` (uniform masks added for the refit),
        ``n_samples`` (the budget, the default one included), ``budget_spent`` (its share
        evaluated), ``n_evaluations``,
        ``n_iterations``, ``n_peeled``, ``noise_sd`` (estimated noise of one evaluation),
        ``decode_seconds`` (transforms, peeling and refit; ``peel_seconds`` and
        ``refit_seconds`` split it), ``exact``.

    Raises:
        BudgetTooSmallError: before any evaluation, if ``n_samples`` is below the smallest
            design (the error carries that minimum).
        TypeError: for an unknown option.
        ValueError: for an invalid option value.

    Example:
        >>> from torchspex.decoders import Evaluator
        >>> f = lambda x: 1.0 + 2.0 * (1 - 2 * ((x[:, 3] ^ x[:, 17]).double()))
        >>> spec, info = decode_spex(Evaluator(f, 40), 40, n_samples=2000,
        ...                          generator=torch.Generator().manual_seed(0))
        >>> {k: round(v, 6) for k, v in spec.prune(atol=1e-9).to_dict().items()}
        {(): 1.0, (3, 17): 2.0}
    """
    opts = _check_options(options)
    if generator is None:  # never the global RNG: None means seed 0, as torchspex.explain
        generator = torch.Generator().manual_seed(0)
    budget, t = _budget_and_degree(n_features, n_samples, max_order, opts)
    exhaustive = _exhaustive_if_it_fits(evaluator, n_features, n_samples, budget, t, opts)
    if exhaustive is not None:
        return exhaustive
    if n_samples is None and opts.get("b") is None:
        _warn_default_budget(budget, n_features, t)
    plan = _make_plan(n_features, n_samples, budget, t, opts, generator)
    groups = _query_design(evaluator, plan)
    n_design = evaluator.n_evaluations
    n_uniform, unspent = _query_uniform(evaluator, budget, n_features, opts["refit"], generator)
    start_time = time.perf_counter()
    peeled, rounds, noise_var = _peel(_bins_from_queries(groups, plan), plan, opts)
    peel_seconds = time.perf_counter() - start_time
    spectrum = _fit_support(evaluator, peeled, plan, opts["refit"], tuple(groups[0].shape[1:]))
    decode_seconds = time.perf_counter() - start_time
    spent = None
    if budget is not None:
        spent = evaluator.n_evaluations / budget
        if spent < _SPEND_TARGET and unspent is None:
            unspent = (f"{budget - evaluator.n_evaluations} calls unspent: uniform masks "
                       "repeated design masks (small n_features)" if opts.get("b") is None else
                       f"the `b` option fixes the design at {plan.n_queries} queries")
    info = {
        "method": "spex",
        "exact": False,
        "b": plan.b,
        "group_b": plan.group_b,
        "degree_parameter": plan.t,
        "n_groups": plan.n_groups,
        "n_delays": plan.n_delays,
        "n_bins": plan.total_bins,
        "n_queries": plan.n_queries,
        "n_design_evaluations": n_design,
        "n_uniform": n_uniform,
        "n_samples": budget,
        "budget_spent": spent,
        "n_evaluations": evaluator.n_evaluations,
        "n_iterations": rounds,
        "n_peeled": len(np.unique(peeled[0], axis=0)),
        "noise_sd": float(np.sqrt(noise_var)),
        "decoder_type": opts.get("decoder_type", "soft"),
        "refit": opts["refit"],
        "bch": {"n": plan.code.nc, "k": plan.code.kc, "t": plan.t},
        "decode_seconds": decode_seconds,
        "peel_seconds": peel_seconds,
        "refit_seconds": decode_seconds - peel_seconds,
    }
    if unspent is not None:
        info["unspent_reason"] = unspent
    if n_samples is None and opts.get("b") is None:
        info["n_samples_default"] = budget
    return spectrum, info


# ------------------------------------------------------------------ the steps of decode_spex
def _n_groups(opts: dict[str, Any]) -> int:
    return int(opts.get("n_groups") or DEFAULT_N_GROUPS)


def _budget_and_degree(n_features: int, n_samples: int | None, max_order: int | None,
                       opts: dict[str, Any]) -> tuple[int | None, int]:
    """The budget (``None`` only for the ``b`` option's design without ``n_samples``) and ``t``.

    A budget that covers every mask needs no design (:func:`_exhaustive_if_it_fits`), even
    one below the smallest design (e.g. ``2^8 = 256`` masks, where that design needs 264).

    Raises:
        BudgetTooSmallError: before any evaluation, when ``n_samples`` fits no design and does
            not cover every mask.
    """
    n_groups = _n_groups(opts)
    t = opts.get("degree_parameter")
    if t is None:
        t = default_degree(max_order)
        if n_samples is not None and opts.get("b") is None:
            t = degree_for_budget(n_features, n_samples, t, n_groups)
    if n_samples is not None:
        if not covers_every_mask(n_features, n_samples):
            plan_for_budget(n_features, n_samples, t, n_groups)  # raises BudgetTooSmallError
        return n_samples, t
    if opts.get("b") is None:
        return default_n_samples(n_features, t), t
    return None, t


def _exhaustive_if_it_fits(
    evaluator: Evaluator, n_features: int, n_samples: int | None, budget: int | None, t: int,
    opts: dict[str, Any],
) -> tuple[SparseSpectrum, dict[str, Any]] | None:
    """Every mask and the exact spectrum, every order kept, when ``2^n`` fits the budget (with
    a warning; :func:`~torchspex.decoders.exhaustive.decode_every_mask`)."""
    reference = budget
    if reference is None:  # the `b` option's design
        reference = _n_groups(opts) * plan_n_delays(n_features, t) << int(opts["b"])
    if not covers_every_mask(n_features, reference):
        return None
    warnings.warn(
        f"n_features={n_features}: all 2^{n_features} = {1 << n_features} masks fit in "
        f"{'n_samples' if n_samples is not None else 'the default SPEX budget'} "
        f"({reference}); evaluating every mask and returning the exact spectrum "
        "instead of SPEX.",
        stacklevel=4,
    )
    return decode_every_mask(evaluator, n_features, reference, "spex")


def _warn_default_budget(budget: int | None, n_features: int, t: int) -> None:
    warnings.warn(
        f"method='spex' without `n_samples`: using the default budget of {budget} calls "
        f"of the value function for n_features={n_features} (about one bin per feature, "
        f"degree_parameter t={t}; see torchspex.sampling.default_n_samples), and one more, "
        "the all-kept mask, where the result is made exact at the corners. Pass `n_samples` "
        "to choose the number of calls.",
        UserWarning,
        stacklevel=3,
    )


def _make_plan(n_features: int, n_samples: int | None, budget: int | None, t: int,
               opts: dict[str, Any], generator: torch.Generator) -> SPEXPlan:
    """The ``b`` option's design (refused when its distinct masks exceed ``n_samples``), or the
    design that fills ``budget``."""
    n_groups = _n_groups(opts)
    b_opt = opts.get("b")
    if b_opt is None:
        assert budget is not None  # set by _budget_and_degree without the `b` option
        max_groups = n_groups if opts.get("n_groups") else None
        return SPEXPlan.for_budget(n_features, budget, t, n_groups, generator,
                                   max_groups=max_groups)
    plan = SPEXPlan.create(n_features, b_opt, t, n_groups, generator)
    if n_samples is not None and plan.n_queries > n_samples:
        distinct = plan.count_distinct()
        if distinct > n_samples:
            raise BudgetTooSmallError(
                f"method='spex' with b={b_opt} evaluates {distinct} distinct masks; got "
                f"n_samples={n_samples}. Raise `n_samples` to at least {distinct} or drop "
                "the `b` option to let the budget choose it.",
                distinct,
            )
    return plan


def _query_design(evaluator: Evaluator, plan: SPEXPlan) -> list[Tensor]:
    """The values of every group's masks, ``[P * 2^b_c, *out]`` per group (delay-major), in
    calls of at most ``_CHUNK_BITS`` mask bits."""
    groups = []
    for c, n_bins in enumerate(plan.group_bins):
        delays_per_call = max(1, _CHUNK_BITS // max(1, n_bins * plan.n_features))
        parts = []
        for start in range(0, plan.n_delays, delays_per_call):
            masks = plan.masks(c, slice(start, start + delays_per_call))
            parts.append(evaluator(masks))
        groups.append(torch.cat(parts))
    return groups


def _query_uniform(evaluator: Evaluator, budget: int | None, n_features: int,
                   refit: str | None, generator: torch.Generator) -> tuple[int, str | None]:
    """Spends the rest of the budget on uniform masks for the refit (redrawing masks that
    repeated evaluated ones). Returns the number added and why calls stay unspent (or None)."""
    n_design = evaluator.n_evaluations
    left = 0 if budget is None else budget - n_design
    if left <= 0:
        return 0, None
    if refit is None:
        return 0, (f"{left} calls unspent: no design with more bins fits, and refit=None "
                   "has no use for uniform samples")
    assert budget is not None
    for _ in range(_UNIFORM_TRIES):
        uniform = torch.randint(0, 2, (left, n_features), generator=generator).bool()
        evaluator(uniform)
        left = budget - evaluator.n_evaluations
        if left <= 0:
            break
    return evaluator.n_evaluations - n_design, None


def _bins_from_queries(groups: list[Tensor], plan: SPEXPlan) -> np.ndarray:
    """One Walsh-Hadamard transform per (group, delay): the bins ``[sum_c 2^b_c, P, O]``."""
    return np.concatenate([
        (fwht(g.reshape(plan.n_delays, n_bins, -1), dim=1) / n_bins).permute(1, 0, 2).numpy()
        for g, n_bins in zip(groups, plan.group_bins)
    ])


def _fit_support(evaluator: Evaluator, peeled: tuple[np.ndarray, np.ndarray], plan: SPEXPlan,
                 refit: str | None, out_shape: tuple[int, ...]) -> SparseSpectrum:
    """The spectrum on the peeled support plus the empty set: coefficients refitted on every
    evaluated mask (``refit``), or the peeled values summed per term (``refit=None``)."""
    support = np.unique(np.concatenate([np.full((1, plan.t), -1), peeled[0]]), axis=0)
    indices = torch.from_numpy(support)
    if refit is None:
        coefficients = torch.from_numpy(_sum_by_row(peeled[0], peeled[1], support))
    else:
        from torchspex.decoders.refit import refit as refit_support

        coefficients = refit_support(
            evaluator.masks, evaluator.values.reshape(evaluator.n_evaluations, -1), indices,
            plan.n_features, method=refit,
        )
    return SparseSpectrum(
        indices, coefficients.reshape(-1, *out_shape).to(torch.float64), plan.n_features,
        "Fourier",
    ).coalesce()


def _sum_by_row(rows: np.ndarray, values: np.ndarray, support: np.ndarray) -> np.ndarray:
    """Sums ``values [K, O]`` of ``rows [K, t]`` into the rows of ``support [s, t]``."""
    out = np.zeros((support.shape[0], values.shape[1]))
    if rows.shape[0]:
        both = np.concatenate([support, rows])
        _, inverse = np.unique(both, axis=0, return_inverse=True)
        inverse = inverse.reshape(-1)
        pos = np.full(inverse.max() + 1, -1)
        pos[inverse[: support.shape[0]]] = np.arange(support.shape[0])
        np.add.at(out, pos[inverse[support.shape[0] :]], values)
    return out


class _Bins:
    """Per-bin cache of the best single-term explanation (valid until the bin changes)."""

    def __init__(self, u: np.ndarray, plan: SPEXPlan) -> None:
        w, _, o = u.shape
        self.u = u
        self.plan = plan
        sizes = np.asarray(plan.group_bins, dtype=np.int64)
        self.offsets = plan.bin_offsets.numpy()
        self.group = np.repeat(np.arange(plan.n_groups), sizes)
        self.bin = np.arange(w) - self.offsets[self.group]
        # noise of one evaluation lands in a bin of 2^b_c with variance sigma^2 / 2^b_c
        self.scale = 1.0 / sizes[self.group].astype(np.float64)
        codes = plan.bin_codes.numpy()
        self.codes = np.concatenate([codes, np.zeros((codes.shape[0], 1), dtype=np.int64)], 1)
        self.energy = np.zeros(w)
        self.features = np.full((w, plan.t), -1, dtype=np.int64)
        self.ok = np.zeros(w, dtype=bool)
        self.rho = np.zeros((w, o))
        self.residual = np.zeros(w)
        self.chased = np.zeros(w, dtype=bool)

    def bins_of(self, features: np.ndarray, groups: np.ndarray | None = None) -> np.ndarray:
        """Bins of feature rows ``[K, t]`` in ``groups [K]`` (or all groups: ``[C, K]``)."""
        cols = np.where(features < 0, self.plan.n_features, features)
        codes = self.codes[:, cols] if groups is None else self.codes[groups[:, None], cols]
        return np.bitwise_xor.reduce(codes, axis=-1)

    def signatures(self, features: np.ndarray) -> np.ndarray:
        bits = self.plan.code.parity_of_features(features)
        return np.concatenate([np.ones((bits.shape[0], 1)), 1.0 - 2.0 * bits], axis=1)

    def fit(self, idx: np.ndarray, features: np.ndarray) -> None:
        """Stores candidates ``features [w, t]`` for bins ``idx`` with their fit."""
        sig = self.signatures(features)  # [w, P]
        ub = self.u[idx]
        rho = np.einsum("wp,wpo->wo", sig, ub) / ub.shape[1]
        self.features[idx] = features
        self.ok[idx] = True
        self.rho[idx] = rho
        self.residual[idx] = np.maximum(self.energy[idx] - ub.shape[1] * (rho**2).sum(1), 0.0)

    def examine(self, idx: np.ndarray) -> None:
        """Recomputes energy and the hard-decision candidate of bins ``idx``."""
        ub = self.u[idx]
        self.energy[idx] = (ub**2).sum(axis=(1, 2))
        self.ok[idx] = False
        self.chased[idx] = False
        self.features[idx] = -1
        self.rho[idx] = 0.0
        self.residual[idx] = self.energy[idx]
        soft = self.soft(idx)
        res = self.plan.code.decode_parity(soft < 0)
        good = res.ok & (self.bins_of(res.features, self.group[idx]) == self.bin[idx])
        if good.any():
            self.fit(idx[good], res.features[good])

    def soft(self, idx: np.ndarray) -> np.ndarray:
        """Soft parity values: delayed observations projected on the undelayed one."""
        ub = self.u[idx]
        ref = ub[:, 0, :]
        norm = np.sqrt((ref**2).sum(1))
        return np.einsum("wpo,wo->wp", ub[:, 1:, :], ref) / np.maximum(norm, 1e-300)[:, None]

    def plausible_singletons(self, idx: np.ndarray, limit: float) -> np.ndarray:
        """Bins whose observations could be one term plus noise: ``|U_p|`` nearly constant.

        A singleton has ``||U_p|| = ||ρ||`` for every delay up to noise, so the spread of the
        magnitudes is at most noise-sized; a multiton's magnitudes take several levels. Chase
        decoding (which can only fix flipped signs) is spent on the plausible bins only; the
        others are marked as examined until a peel changes them.
        """
        mag = np.sqrt((self.u[idx] ** 2).sum(axis=2))  # [w, P]
        spread = ((mag - mag.mean(axis=1, keepdims=True)) ** 2).sum(axis=1)
        keep = spread <= limit
        self.chased[idx[~keep]] = True
        return keep

    def chase(self, idx: np.ndarray, depth: int | None, n_patterns: int | None) -> None:
        """Chase decoding of bins ``idx``; keeps the consistent candidate that explains most."""
        self.chased[idx] = True
        ub = self.u[idx]
        cand = self.plan.code.chase_decode(
            self.soft(idx), depth=depth, n_patterns=n_patterns,
            complement_reliability=np.sqrt((ub[:, 0, :] ** 2).sum(1)),
        )
        consistent = self.bins_of(cand.features, self.group[idx[cand.word]]) == self.bin[
            idx[cand.word]]
        word, feats = cand.word[consistent], cand.features[consistent]
        if not word.size:
            return
        sig = self.signatures(feats)
        score = (np.einsum("kp,kpo->ko", sig, ub[word]) ** 2).sum(1)
        order = np.lexsort((-score, word))
        first = order[np.unique(word[order], return_index=True)[1]]
        self.fit(idx[word[first]], feats[first])


def _bins_scale(plan: SPEXPlan) -> np.ndarray:
    """``2^-b_c`` of every bin, ``float64 [sum_c 2^b_c]``."""
    sizes = np.asarray(plan.group_bins, dtype=np.float64)
    return np.repeat(1.0 / sizes, sizes.astype(np.int64))


def _noise_variance(bins: _Bins, n_delays: int, n_out: int, quantile: float,
                    floor: float) -> float:
    """Noise variance of one evaluation from the energy no single term explains, bin by bin.

    Each bin's unexplained energy per degree of freedom is divided by its ``scale`` (the
    variance a unit of evaluation noise has there, ``2^-b_c``); the bins of group ``c`` see
    ``sigma^2 * 2^-b_c``.

    Two low-quantile estimates, the smaller wins: over every bin, and over the bins whose
    decoded candidate lands in them (singletons and pure-noise bins, whose residual is noise).
    The first alone reads colliding terms as noise when most bins are multitons (few bins for
    many terms), and then rejects true singletons on a noiseless game.
    """
    dof = np.where(bins.ok, (n_delays - 1) * n_out, n_delays * n_out)
    scaled = bins.residual / dof / bins.scale
    ref_dof = (n_delays - 1) * n_out
    correction = chi2.ppf(quantile, ref_dof) / ref_dof
    level = float(np.quantile(scaled, quantile)) / correction
    if int(bins.ok.sum()) >= _MIN_DECODED_FOR_NOISE:
        level = min(level, float(np.quantile(scaled[bins.ok], quantile)) / correction)
    return max(level, floor)


def _peel(u: np.ndarray, plan: SPEXPlan, opts: dict[str, Any]
          ) -> tuple[tuple[np.ndarray, np.ndarray], int, float]:
    """Peeling decoder over all bins ``u [sum_c 2^{b_c}, P, O]`` (modified in place).

    Returns:
        ``((features [K, t], values [K, O]), rounds, noise_variance)``: every peel in order.
    """
    w, n_delays, n_out = u.shape
    soft = opts.get("decoder_type", "soft") == "soft"
    cutoff = opts["res_energy_cutoff"]
    floor = _NOISE_FLOOR * max(float(((u**2).mean(axis=(1, 2)) / _bins_scale(plan)).mean()),
                               1e-300)
    zero_factor = chi2.ppf(1 - _ZERO_TON_ALPHA, n_delays * n_out)
    signif_factor = chi2.ppf(1 - _SIGNIFICANCE_ALPHA, n_out)
    spread_factor = chi2.ppf(1 - _ZERO_TON_ALPHA, (n_delays - 1) * n_out)
    bins = _Bins(u, plan)
    dirty = np.ones(w, dtype=bool)
    found_feats, found_vals = [], []
    known: set[bytes] = set()
    since_new = 0
    noise = floor
    rounds = 0
    for _ in range(opts.get("max_iter") or 100):
        rounds += 1
        idx = np.nonzero(dirty)[0]
        if idx.size:
            bins.examine(idx)
        noise = _noise_variance(bins, n_delays, n_out, opts["noise_quantile"], floor)
        nonzero = bins.energy > noise * bins.scale * zero_factor
        if soft:
            todo = np.nonzero(nonzero & ~bins.ok & ~bins.chased)[0]
            todo = todo[bins.plausible_singletons(todo, noise * bins.scale[todo] * spread_factor)]
            if todo.size:
                bins.chase(todo, opts.get("chase_depth"), opts.get("n_chase_patterns"))
                noise = _noise_variance(bins, n_delays, n_out, opts["noise_quantile"], floor)
                nonzero = bins.energy > noise * bins.scale * zero_factor
        explained = n_delays * (bins.rho**2).sum(1)
        accept = (
            bins.ok
            & nonzero
            & (bins.residual < cutoff * bins.energy)
            & (explained > signif_factor * noise * bins.scale)
        )
        acc = np.nonzero(accept)[0]
        if not acc.size:
            break
        feats, inverse = np.unique(bins.features[acc], axis=0, return_inverse=True)
        inverse = inverse.reshape(-1)
        counts = np.bincount(inverse, minlength=feats.shape[0]).astype(np.float64)
        vals = np.zeros((feats.shape[0], n_out))
        np.add.at(vals, inverse, bins.rho[acc])
        vals /= counts[:, None]
        sig = bins.signatures(feats)  # [u, P]
        where = bins.bins_of(feats) + bins.offsets[:, None]  # [C, u]
        delta = vals[:, None, :] * sig[:, :, None]  # [u, P, O]
        for c in range(plan.n_groups):
            np.subtract.at(u, where[c], delta)
        dirty = np.zeros(w, dtype=bool)
        dirty[where.reshape(-1)] = True
        found_feats.append(feats)
        found_vals.append(vals)
        new = {row.tobytes() for row in feats} - known
        known |= new
        since_new = 0 if new else since_new + 1
        if since_new >= _PATIENCE:
            break
    if found_feats:
        peeled = (np.concatenate(found_feats), np.concatenate(found_vals))
    else:
        peeled = (np.zeros((0, plan.t), dtype=np.int64), np.zeros((0, n_out)))
    return peeled, rounds, noise
