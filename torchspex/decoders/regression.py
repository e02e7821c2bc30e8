"""Index-aware regression: the Shapley (or uniform) design, a discovered support, an exact fit.

The decoder behind ``method="regression"`` (and most of ``method="auto"``). It follows the index
the user asks for:

- **Shapley family** (SV, SII, k-SII, STII, FSII and the other Shapley-weighted indices): the
  masks are paired coalitions drawn by size with the Shapley kernel's weights
  (:func:`~torchspex.sampling.coalitions.paired_coalitions`), the empty and full masks always
  included. The fit is a weighted least-squares regression with those weights, made exact at
  all-kept and all-removed (the even part by a constraint of its fit, the odd part by one equal
  shift of its first-order terms after a fit free at the corners, :data:`ODD_CORNER_SHIFT`), so
  the Shapley values add up to ``f(N) - f(∅)`` to round-off and the baseline is the evaluated
  ``f(∅)``. With paired samples the regression
  splits exactly into an *odd* part, fitted to ``(f(S) - f(N∖S)) / 2`` on the odd-order terms
  (the only part the Shapley values depend on; Fumagalli et al., "OddSHAP", ICML 2026), and an
  *even* part, fitted to ``(f(S) + f(N∖S)) / 2`` on the even-order terms (the part the pair
  indices depend on). Each has its own support and its own cross-validated settings.
- **Banzhaf family and Fourier / Moebius** (BV, BII, FBII): uniform masks, unweighted, as
  ProxySPEX samples.

The support: every order-1 term and the constant always; every pair where the budget allows;
higher-order terms read exactly off LightGBM proxies fitted to the same samples (the ProxySPEX
read-out, :func:`~torchspex.decoders.trees.tree_ensemble_to_fourier`), ranked by the proxies'
squared coefficients averaged over several proxies, each trained on a different four fifths of the
rows (:func:`~torchspex.decoders._candidates.proxy_bags`). How many of the ranked terms enter and
how strongly they are shrunk is chosen by k-fold cross-validation over the pairs, on the samples
already paid for (no extra calls); the odd part averages the fits of its best few settings
(:data:`ODD_AVERAGE`). With the kernel weights and the first-order terms in the basis, the fitted
Shapley values are a consistent estimate whatever the support (the weighted projection onto a larger
space, projected on the linear functions, is the projection onto the linear functions); a richer
support makes the residual, and with it the sampling error, smaller (PolySHAP, Fumagalli et al.
2026).

What the cross-validation costs (each part's fit is :mod:`._part_fit`): every prefix of the ranked
support comes from one Cholesky factor per fold and penalty (``_part_fit._prefix_solutions``); the
penalties are walked from the middle of their ladder while the error falls, not all scored
(``_part_fit._penalty_walk``); up to 20 features the fold normal equations may be gathers from a
Walsh-Hadamard transform of each fold's mask histogram, not products over the rows
(``_part_fit._walsh_normals``, where that costs less); and from
:data:`~torchspex.decoders._candidates.DEEP_ROWS` samples the proxy grows depth-8 trees only, at
learning rate :data:`~torchspex.decoders._candidates.DEEP_RATE` (not 0.1) for fewer rounds, and
parts of ``_part_fit.CV_SINGLE_FROM`` terms or more are cross-validated on
``_part_fit.LARGE_PART_FOLDS`` folds, not 5.

With a proxy (one output), the odd part is fitted twice: to ``(f(S) - f(N∖S)) / 2`` as above,
and to its residual after a *cross-fitted* proxy (one LightGBM per fold, each predicting only
the pairs it did not see; the proxy's exact odd spectrum is added back). The fit with the lower
cross-validated error is kept (``info["odd"]["proxy_offset"]``). The proxy carries what a sparse
regression from few rows cannot: at 256 features and 512 calls the planted sparse game's SV
error drops from 0.72 to 0.59, at 1,024 calls from 0.49 to 0.35 (3 seeds); where the plain
fit is as good, the cross-validation keeps it (the model games at n <= 16).

The pair indices (k-SII, SII, and the even part's other read-outs) are then shrunk toward zero
by a positive-part James-Stein factor ``max(0, 1 - tr(Cov) / ||pairs||^2)`` (``shrink=True``):
``Cov`` is the sampling covariance of the fitted pairs, a stratified HC2 sandwich over the size
classes the design sampled (enumerated classes add nothing). Where the rows cannot tell the pairs
from noise, the fitted pairs are worse than answering zero, and the factor goes to zero; where the
fit is exact it is 1. The sandwich sees the noise of the chosen terms' coefficients, not that of
choosing them: with fewer pairs than features the noise comes from a jackknife that refits the even
part, proxy included, without each fold; below :data:`~torchspex.decoders._even.SLOPE_PAIRS` pairs
per feature the factor is also capped by the calibration slope of those refits' out-of-fold
predictions (:func:`~torchspex.decoders._even._even_refits`). Only the even part is shrunk, so the
Shapley values (odd part), efficiency and the value at ∅ are untouched. Shrinking the odd part
toward the equal split was measured and dropped (SV error 0.58 -> 0.65 on a planted n = 64 game at
256 calls).

The steps and where they live: the design (:func:`design`, here); the candidate terms, the
proxies' terms, the triple screens and the ranking (:mod:`._candidates`); each part's
cross-validated constrained fit (:mod:`._part_fit`); the odd part around a cross-fitted proxy
(:mod:`._offset`); the even part's shrinkage and the noise it is measured against
(:mod:`._even`, :mod:`._shrink`). This module decides which of them run and puts the parts
together (:func:`fit_regression`).

``max_order`` caps what is reported, never the fit.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from torchspex.decoders import _candidates as cand
from torchspex.decoders import _offset
from torchspex.decoders._budgets import regression_n_samples as suggest_n_samples
from torchspex.decoders._candidates import (
    _first_order_rows,
    _proxy_terms,
    _ranked_candidates,
    _rescreened_odd,
    _sets_of_order,
    _strongest_terms,
    _union_terms,
    walsh_screen,
)
from torchspex.decoders._even import _index_map, _size_strata, shrunk_even
from torchspex.decoders._offset import _at_empty, _with_proxy_offset
from torchspex.decoders._part_fit import N_FOLDS, fit_part
from torchspex.decoders._proxy import ProxyRows, draw_seed
from torchspex.decoders.base import BudgetTooSmallError, Evaluator
from torchspex.decoders.efficiency import EXACT_HELDOUT, corner_rows
from torchspex.fourier import DeferredSpectrum, SparseSpectrum
from torchspex.fourier.indices import canonical_index
from torchspex.sampling.coalitions import SIZE_RULES, paired_coalitions
from torchspex.sampling.uniform import uniform_masks

__all__ = [
    "BANZHAF_FAMILY",
    "decode_regression",
    "index_family",
    "suggest_n_samples",
]

#: Indices whose estimation follows uniform masks (the Banzhaf / Fourier view); every other
#: index is Shapley-weighted.
BANZHAF_FAMILY = frozenset({"BV", "BII", "FBII", "Fourier", "Moebius", "Co-Moebius", "BGV"})

_OPTIONS = ("sizes", "proxy", "n_folds", "max_terms", "pairs", "shrink", "cross_fit", "effort")
#: Decode effort levels (:func:`~torchspex.decoders._candidates.proxy_bags`): ``"low"`` (default)
#: one LightGBM proxy ranks the candidate terms; ``"high"`` averages several, for models slow enough
#: that the lower error per call is worth the decode seconds; ``"minimal"`` fits no proxy at all
#: (the candidates are the pairs and triples the budget allows, the triples screened against
#: the residual and, up to 16 features, the characters a Walsh screen of each part's residual
#: finds, :func:`~torchspex.decoders._candidates.walsh_screen`; ``proxy=False``), for models so
#: fast that more calls buy more than the proxy's seconds.
EFFORTS = ("minimal", "low", "high")

#: Most terms per part of the fit at ``effort="low"`` (else ``3 p / 4`` for ``p`` pairs): at 4,096
#: calls (2,047 pairs, 1,535 terms) 1,024 kept the SV error within 1% on the MLP on wine, MiniLM and
#: the digits CNN over 2x2 patches (4 seeds) and cut the decode 35-40%; 768 cut it 55% but raised
#: MiniLM's error 14%, 512 the CNN's 80% (``benchmarks/decode_variants.py
#: low,low+mt512,low+mt768,low+mt1024 --budgets 4096``, results/decode_variants_max_terms.json).
#: Since then (deep proxies of 32 leaves, one penalty averaged) 768 costs less: with
#: :data:`~torchspex.decoders._candidates.DEEP_ROUNDS` 400, 6 seeds at 4,096 calls (``python
#: benchmarks/decode_variants.py low,low+drounds400+cap768``,
#: results/decode_variants_rounds400_cap768.json) SV error MLP 0.00061 -> 0.00062, MiniLM 0.00132 ->
#: 0.00131, CNN 0.0067 -> 0.0070 (+4.5%), k-SII pairs +1% / +23% / +1%, decode 0.67-0.82 ->
#: 0.43-0.49 s; 2,048 calls (767 terms at most either way) SV -3% to +2%. Capping the even part
#: alone (768 / 512, the odd part at 1,024) saved less for pair errors up to +28% (a knob since
#: removed, ``ecap``: results/decode_variants_even_terms.json). The cap counts the discovered terms:
#: a part holds at most ``n`` more (the odd part's first-order terms). Counted with them (768 in
#: all), the planted hierarchical game at n = 256 and 4,096 calls went 0.0245 -> 0.0384 (4 seeds;
#: 512 slots left for its discovered terms; ``python benchmarks/decode_variants.py low,low+cap1024
#: --budgets 4096 --games "hierarchical (n=256"``, results/decode_variants_cap_n256.json).
MAX_TERMS_LOW = 768
#: How many settings (terms x ridge) the odd part (the Shapley values) averages, instead of
#: keeping the best one: the fits of the best settings whose cross-validated error is within
#: ``AVG_TOL`` times the best one's (the tolerance keeps an exact fit alone: without it,
#: LightGBM on diabetes at 512 calls went from 1e-15 to 5e-7). Full benchmark, 24 seeds for the
#: model games and 12 for the planted ones, SV error, best setting -> average of up to 8: the
#: MLP on wine 2-8% lower at every budget (1,024 calls 0.0102 -> 0.0094), MiniLM 3-7% lower,
#: the digits CNN over 2x2 patches 6% lower at 4,096 calls and 3-4% higher at 128 and 256,
#: LightGBM and the planted games within 1% but for sparse n = 64 at 1,024 calls
#: (0.0204 -> 0.0215, still 12x below the best peer); pairs within 1%. The average meets the
#: corners as every fit does (:data:`ODD_CORNER_SHIFT`: after the averaging), so efficiency
#: holds; the even part is never averaged.
ODD_AVERAGE = 8
#: The odd part is fitted free at the corners and then meets them by one equal shift of every
#: first-order coefficient (:func:`_meet_corner`), instead of holding the corner pair as a
#: constraint of the fit. What the sparse terms cannot explain at the corners (a value at ∅ off
#: every trend of the small coalitions: MiniLM over sentences scores 0.03 with no sentence and 0.27
#: on average with one) is then read as a deviation concentrated on the corner pair, whose Shapley
#: value is the same for every feature; the constraint instead pushed it into the weakly pinned
#: higher-order terms, which spread it unevenly. A game that is sparse but for such a spike is then
#: exact where the samples pin its terms (``tests/decoders/test_regression.py``; the recorded gap:
#: ``info["odd"]["corner_shift"]``). SV error, constraint -> shift, on recorded values replayed
#: (``python benchmarks/decode_variants.py low,low+oddcon``; /tmp replays of the large-n games'
#: recorded values): MiniLM over sentences (n = 28) at 250 / 500 calls 0.368 / 0.197 -> 0.259 /
#: 0.136 (4 seeds, every seed lower), MiniLM over 100 words at 500 / 1,000 calls 0.228 / 0.228 ->
#: 0.228 / 0.201 (4 seeds), over 300 words (n = 327, one seed) 0.886 / 0.680 -> 0.845 / 0.631; with
#: the model's own calls and the peers in the run (``python benchmarks/large_n.py --games
#: sentences``, 3 seeds, results/large_n_sentences.json) 0.374 / 0.198 -> 0.264 / 0.139 against
#: RegressionMSR's 0.296 / 0.178; the exact-table games (6 seeds, 128-4,096 calls) within -12% / +4%
#: (MiniLM -4% to -12% from 1,024 calls, +2-4% below; MLP within +3%), the digits CNN over 64 pixels
#: and the planted n = 64 / 128 games (6 seeds, 256-4,096) within -2% / +4%, exact where they were
#: (results/decode_variants_odd_corner*.json).
ODD_CORNER_SHIFT = True


def default_max_terms(n_features: int, n_pairs: int, effort: str = "low") -> int:
    """Most terms per part of the fit: three quarters of the pairs (at least ``n + 1``), at
    most ``n`` + :data:`MAX_TERMS_LOW` at ``effort="low"`` and ``"minimal"`` (the ``n``
    first-order terms the odd part always holds, and as many discovered terms as the cap).

    Example:
        >>> [default_max_terms(13, 511), default_max_terms(13, 2047)]
        [383, 781]
        >>> default_max_terms(256, 2047), default_max_terms(13, 2047, effort="high")
        (1024, 1535)
    """
    most = max(n_features + 1, (3 * n_pairs) // 4)
    return most if effort == "high" else min(most, n_features + MAX_TERMS_LOW)


def index_family(index: str | None) -> str:
    """``"banzhaf"`` for the uniform-mask indices, ``"shapley"`` for the rest (and ``None``).

    Example:
        >>> index_family("FBII"), index_family("k-SII"), index_family(None)
        ('banzhaf', 'shapley', 'shapley')
    """
    return "banzhaf" if index in BANZHAF_FAMILY else "shapley"



#: From this many features on, the Shapley design draws coalition sizes uniformly.
LEVERAGE_FEATURES = 32
#: ... and below it, from this many calls per feature on.
LEVERAGE_CALLS_PER_FEATURE = 64


def default_sizes(n_features: int, n_samples: int) -> str:
    """The size rule of the Shapley design: ``"leverage"`` (uniform over sizes) from
    :data:`LEVERAGE_FEATURES` features or :data:`LEVERAGE_CALLS_PER_FEATURE` calls per feature
    on; ``"mix"`` (half the Shapley kernel's proportions, half uniform) for fewer features on
    smaller budgets.

    The kernel puts most of the budget on the smallest and largest coalitions. With many
    features, or with budgets that already cover those, uniform sizes (leverage-score
    sampling, Musco & Witter, ICLR 2025; OddSHAP's design) did better: at n = 64 at every
    budget measured (SV error 0.54 against 0.85 for the kernel at 256 calls on the digits CNN
    over pixels, 0.36 against 0.49 at 1,024 on a planted hierarchical game), at n = 13-16 from
    64 calls per feature (24 seeds at 1,024 calls: the digits CNN over 2x2 patches 0.0358
    against the mixture's 0.0390, MiniLM 0.0085 against 0.0086 and pairs 0.071 against 0.078,
    the MLP on wine 0.0099 against 0.0099; 6 seeds at 2,048: 0.0165 / 0.0033 / 0.0028 against
    0.0175 / 0.0035 / 0.0034). Below that the mixture was the best rule over the three model
    games at 128-512 calls (the digits CNN over 2x2 patches 0.24 / 0.15 / 0.056 against the
    kernel's 0.38 / 0.17 / 0.085; the MLP and MiniLM level;
    ``benchmarks/accuracy_vs_sampling.py``).

    Example:
        >>> default_sizes(14, 512), default_sizes(14, 1024), default_sizes(64, 128)
        ('mix', 'leverage', 'leverage')
    """
    if n_features >= LEVERAGE_FEATURES or n_samples >= LEVERAGE_CALLS_PER_FEATURE * n_features:
        return "leverage"
    return "mix"


def minimum_samples(n_features: int) -> int:
    """Fewest calls the regression accepts: ``n + 2`` (the corners and ``n / 2`` pairs), or
    ``2^n`` when that is smaller.

    Example:
        >>> minimum_samples(10), minimum_samples(2)
        (12, 4)
    """
    return n_features + 2 if n_features >= 62 else min(n_features + 2, 1 << n_features)


def _check_options(options: dict[str, Any]) -> None:
    unknown = sorted(set(options) - set(_OPTIONS))
    if unknown:
        raise TypeError(
            f"method='regression' got unknown options {unknown}; valid options are {_OPTIONS}."
        )
    sizes = options.get("sizes")
    if sizes is not None and sizes not in SIZE_RULES:
        raise ValueError(f"`sizes` must be one of {SIZE_RULES}; got {sizes!r}.")
    for flag in ("proxy", "shrink", "cross_fit"):
        if options.get(flag, True) not in (True, False):
            raise ValueError(f"`{flag}` must be True or False; got {options[flag]!r}.")
    effort = options.get("effort", "low")
    if effort not in EFFORTS:
        raise ValueError(f"`effort` must be one of {EFFORTS}; got {effort!r}.")
    if effort == "minimal" and options.get("proxy", False):
        raise ValueError("effort='minimal' fits no LightGBM proxy; drop proxy=True or choose "
                         "effort='low'.")
    folds = options.get("n_folds", N_FOLDS)
    if isinstance(folds, bool) or not isinstance(folds, int) or folds < 2:
        raise ValueError(f"`n_folds` must be an int >= 2; got {folds!r}.")
    terms = options.get("max_terms")
    if terms is not None and (isinstance(terms, bool) or not isinstance(terms, int) or terms < 1):
        raise ValueError(f"`max_terms` must be a positive int or None; got {terms!r}.")
    if options.get("pairs") is not None and not isinstance(options["pairs"], bool):
        raise ValueError(f"`pairs` must be True, False or None; got {options['pairs']!r}.")


# ----------------------------------------------------------------------------- decoder
def decode_regression(
    evaluator: Evaluator,
    n_features: int,
    *,
    n_samples: int | None = None,
    max_order: int | None = None,
    generator: torch.Generator | None = None,
    index: str | None = None,
    **options: Any,
) -> tuple[SparseSpectrum, dict[str, Any]]:
    """Learns a Fourier spectrum by index-aware weighted regression on a discovered support.

    Args:
        evaluator: the value function behind an :class:`~torchspex.decoders.base.Evaluator`.
        n_features: number of features ``n``.
        n_samples: distinct masks to evaluate, ``>= n + 2`` (``None``: :func:`suggest_n_samples`).
        max_order: the order reported; the fit is not capped by it.
        generator: randomness for the masks, the folds and the proxy (``None``: seed 0).
        index: the index that will be reported; its family picks the design and the weights
            (:func:`index_family`; ``None`` means the Shapley family).
        **options: ``sizes``: how coalition sizes are drawn for the Shapley family (``None``,
            default: :func:`default_sizes`; ``"kernel"``: in proportion to the Shapley kernel's
            mass; ``"leverage"``: uniformly; ``"sqrt"``: the kernel's square root; ``"mix"``:
            half kernel, half uniform), ``proxy`` (``True``: rank higher-order terms with a
            LightGBM proxy; needs lightgbm, used when it is installed), ``pairs`` (``None``:
            every pair ranks first among the even candidates when there are at most as many
            pairs as samples and all of them fit in ``max_terms``, else the pairs rank by the
            proxy like the other terms; ``True`` / ``False`` force it), ``n_folds``
            (cross-validation folds; default 5, and
            ``_part_fit.LARGE_PART_FOLDS`` for a part of ``_part_fit.CV_SINGLE_FROM`` terms or
            more), ``max_terms`` (most terms per part, default :func:`default_max_terms`),
            ``shrink`` (``True``, default: the James-Stein shrinkage of the even part, its noise
            from a sandwich or, with fewer pairs than features, a jackknife, and below
            :data:`~torchspex.decoders._even.SLOPE_PAIRS` pairs per feature the factor capped by the
            calibration slope of refits, ``info["even"]["calibration_slope"]``; Shapley family),
            ``cross_fit`` (``True``, default: also fit the odd part to the residual of a
            cross-fitted proxy, and keep it from :data:`~torchspex.decoders._offset.OFFSET_FEATURES`
            features on or where it cross-validates better; one output, fewer than
            :data:`~torchspex.decoders._offset.CROSS_FIT_PAIRS` pairs per feature), ``effort``
            (``"low"``, default: one LightGBM proxy ranks the candidates; ``"high"``: several,
            averaged, :func:`~torchspex.decoders._candidates.proxy_bags`, and from 32 features,
            between 3 and 8 pairs per feature, the odd part the mean of the plain fit and the
            fit around the cross-fitted proxy, :data:`~torchspex.decoders._offset.AVERAGE_FROM`;
            ``"minimal"``: no proxy at all, the default of ``proxy`` then ``False``; up to 16
            features a Walsh screen of each part's residual after a low-order fit proposes
            the odd characters of order 5+ and the even ones of order 4+ in the proxy's place,
            :func:`~torchspex.decoders._candidates.walsh_screen`, their number in
            ``info["walsh_screen"]``).

    Returns:
        ``(spectrum, info)``: a Fourier spectrum exact at ∅ and N (Shapley family), and what
        was chosen (design, terms per part, penalties, proxy fit, seconds).

    Raises:
        BudgetTooSmallError: if ``n_samples < n + 2`` (before any evaluation).
        TypeError / ValueError: for unknown or bad options.

    Example:
        >>> f = lambda m: (3.0 * m[:, 0] * m[:, 1] + m[:, 2]).double()
        >>> ev = Evaluator(f, 8, n_samples=60)
        >>> spec, info = decode_regression(ev, 8, n_samples=60, index="SV")
        >>> from torchspex.fourier import fourier_to_index
        >>> sv = fourier_to_index(spec, "SV", 1).to_dict()
        >>> [round(sv[(i,)], 6) for i in range(3)]
        [1.5, 1.5, 1.0]
    """
    _check_options(options)
    n = n_features
    if n_samples is None:
        n_samples = suggest_n_samples(n)
    minimum = minimum_samples(n)
    if n_samples < minimum:
        raise BudgetTooSmallError(
            f"method='regression' needs n_samples >= {minimum} for {n} features (the two "
            f"corners and about n / 2 paired coalitions); got {n_samples}.",
            minimum,
        )
    if generator is None:
        generator = torch.Generator().manual_seed(0)
    family = index_family(index)
    start = time.perf_counter()
    if n <= 20 and n_samples >= 1 << n:
        from torchspex.decoders.exhaustive import decode_exhaustive

        spectrum, info = decode_exhaustive(evaluator, n)
        return spectrum, {**info, "method": "exhaustive", "family": family}
    options = {**options, "sizes": options.get("sizes") or default_sizes(n, n_samples)}
    masks, weights = design(n, n_samples, generator, family, options["sizes"])
    values = evaluator(masks)
    t_eval = time.perf_counter() - start
    # Shapley values alone need only the odd part: the even part waits until it is read
    defer = family == "shapley" and index is not None and canonical_index(index) == "SV"
    spectrum, info = fit_regression(masks, weights, values, n, generator, family, options,
                                    defer_even=defer)  # fmt: skip
    info["seconds"]["evaluate"] = t_eval
    return spectrum, info


def design(
    n: int, n_samples: int, generator: torch.Generator, family: str, sizes: str | None = None
) -> tuple[Tensor, Tensor]:
    """The masks of an index family, ``(masks bool [m, n], weights float64 [m])``.

    Shapley family: :func:`~torchspex.sampling.coalitions.paired_coalitions`; Banzhaf family:
    distinct uniform masks (equal weights). Rows 0 and 1 are the corners (weight ``inf``).
    """
    if family == "shapley":
        return paired_coalitions(n, n_samples, generator, sizes or default_sizes(n, n_samples))
    masks = uniform_masks(n, n_samples, generator)
    weights = torch.ones(masks.shape[0], dtype=torch.float64)
    weights[:2] = math.inf
    return masks, weights


def fit_regression(
    masks: Tensor,
    weights: Tensor,
    values: Tensor,
    n: int,
    generator: torch.Generator,
    family: str = "shapley",
    options: dict[str, Any] | None = None,
    prior: Tensor | None = None,
    proxy_data: tuple[Tensor, Tensor] | None = None,
    defer_even: bool = False,
) -> tuple[SparseSpectrum, dict[str, Any]]:
    """The regression fit on evaluated masks of :func:`design`.

    Args:
        masks, weights: from :func:`design` (rows 0 and 1 the corners).
        values: ``[m, *out]`` their values.
        n: number of features.
        generator: randomness of the proxy and the folds.
        family: ``"shapley"`` (paired rows, odd/even fits, exact corners) or ``"banzhaf"``.
        options: the decoder options (see :func:`decode_regression`); ``sizes`` names the
            size rule :func:`design` used (the Shapley family; reported in ``info["design"]``).
        prior: set rows ``int64 [k, d]`` ranked before every other candidate (e.g. the terms
            SPEX peeled), in their given order.
        proxy_data: ``(masks, values)`` to fit the proxy on instead of ``(masks, values)``
            (e.g. with extra samples of another design).
        defer_even: (Shapley family) fit the even part only when the spectrum's terms are
            first read, not for its Shapley values: a :class:`~torchspex.fourier.DeferredSpectrum`
            (:func:`_deferred_even`); what the Shapley values need is fitted here.

    Returns:
        ``(spectrum, info)``; ``info["cv_error"]`` is the cross-validated error of the fit
        (weighted squared error over the pairs, each part and output scaled by its variance);
        the odd part's is that of its fit free at the corners, before the shift onto them
        (:data:`ODD_CORNER_SHIFT`; ``info["odd"]["corner_shift"]``: the gap it closed).
    """
    options = options or {}
    if family == "shapley" and options.get("sizes") is None:
        raise ValueError("fit_regression of the Shapley family needs options['sizes'], the "
                         "size rule its design used.")
    flat = values.reshape(values.shape[0], -1)
    start = time.perf_counter()
    use_proxy = bool(options.get("proxy", options.get("effort", "low") != "minimal"))
    px_masks, px_values = proxy_data if proxy_data is not None else (masks, flat)
    px_flat = px_values.reshape(px_values.shape[0], -1)
    use_proxy = use_proxy and px_masks.shape[0] >= 32
    proxy_info: dict[str, Any] = {}
    proxy_idx = torch.zeros(0, 1, dtype=torch.long)
    proxy_score = torch.zeros(0, dtype=torch.float64)
    # the samples binned once per output for every LightGBM proxy fitted to them (the proxy,
    # the odd part's cross-fit, the even part's refits): ProxyRows
    pools: dict[int, ProxyRows] = {}
    if use_proxy:
        try:
            proxy_idx, proxy_score, proxy_info = _proxy_terms(
                px_masks, px_flat, generator, options.get("effort", "low"),
                pools if proxy_data is None else None)
        except ImportError:
            use_proxy = False
    elif (options.get("effort") == "minimal" and family == "shapley" and proxy_data is None
          and (prior is None or not prior.shape[0])):  # fmt: skip
        # no proxy: the characters (odd of order 5+, even of order 4+) that the residuals of
        # low-order fits point at stand in for the proxy's terms, where the screen runs
        # (walsh_screen)
        screened = walsh_screen(masks, flat, n)
        if screened is not None:
            proxy_idx, proxy_score = screened
            proxy_info = {"walsh_screen": int(proxy_idx.shape[0])}
    # only the terms that can reach a fit go on: deep proxies over many features have
    # hundreds of thousands (CNN over 64 pixels at 8,000 calls: ranking them took 1.5 s)
    proxy_idx, proxy_score = _strongest_terms(
        proxy_idx, proxy_score, options.get("max_terms") or max(n + 1, (3 * masks.shape[0]) // 4))
    if prior is not None and prior.shape[0]:
        # prior terms outrank every proxy term, in their given order
        top = float(proxy_score.max()) if proxy_score.numel() else 0.0
        rank = torch.arange(prior.shape[0], 0, -1, dtype=torch.float64)
        proxy_idx, proxy_score = _union_terms([prior, proxy_idx],
                                              [(top + 1.0) * (1.0 + rank), proxy_score], n)
    t_proxy = time.perf_counter() - start
    start = time.perf_counter()
    if family == "shapley":
        own = use_proxy and proxy_data is None and (prior is None or not prior.shape[0])
        spectrum, fit_info = _fit_paired(masks, weights, flat, proxy_idx, proxy_score, n,
                                         generator, options, proxy_info if use_proxy else None,
                                         own, defer_even, pools.get(0))  # fmt: skip
    else:
        spectrum, fit_info = _fit_uniform(masks, flat, proxy_idx, proxy_score, n, generator,
                                          options)  # fmt: skip

    def shaped(spec: SparseSpectrum) -> SparseSpectrum:
        coef = spec.coefficients.reshape(spec.n_terms, *values.shape[1:])
        return SparseSpectrum(spec.indices, coef, n, "Fourier")

    spectrum = spectrum.then(shaped) if isinstance(spectrum, DeferredSpectrum) else shaped(spectrum)
    info = {
        "method": "regression",
        "family": family,
        "design": f"paired {options['sizes']}" if family == "shapley" else "uniform",
        "n_samples": int(masks.shape[0]),
        "proxy": proxy_info if use_proxy else None,
        "walsh_screen": proxy_info.get("walsh_screen") if not use_proxy else None,
        "effort": options.get("effort", "low"),
        **fit_info,
        "seconds": {"proxy": t_proxy, "fit": time.perf_counter() - start},
    }
    return spectrum, info


def paired_error(spectrum: SparseSpectrum, masks: Tensor, weights: Tensor, values: Tensor) -> float:
    """The error of ``spectrum`` on a paired design, on the scale of ``info["cv_error"]``.

    For a spectrum that did not see these samples this is a held-out error, comparable with the
    cross-validated error of :func:`fit_regression` on the same samples. Both score a fit before
    it is made exact at the corners (the hybrid scores SPEX's spectrum before
    :func:`~torchspex.decoders.efficiency.enforce_corners`; the regression's odd part is scored
    free at the corners, :data:`ODD_CORNER_SHIFT`).
    """
    flat = values.reshape(values.shape[0], -1).double()
    pred = spectrum.evaluate(masks).reshape(masks.shape[0], -1).double()
    w = weights[2::2] * 2.0
    w = w / w.mean()
    total = 0.0
    for sign in (-1.0, 1.0):  # odd, even part
        y = (flat[2::2] + sign * flat[3::2]) / 2
        g = (pred[2::2] + sign * pred[3::2]) / 2
        scale = y.var(dim=0, correction=0).clamp(min=1e-300)
        total += float(((w.unsqueeze(1) * (y - g) ** 2).sum(dim=0) / scale).sum())
    return total


def _pairs_wanted(options: dict[str, Any], n: int, n_rows: int, max_terms: int) -> bool:
    """Whether every pair ranks first among the even part's candidates (``pairs`` option, or
    by default: where there are at least as many rows as pairs and the pairs fit in the part's
    ``max_terms``). Where they do not fit, forcing them first put the pairs in the proxy's
    order with the rest in index order (a pair the proxy never used scores 0) and left every
    higher-order term out: the digits CNN over 64 pixels at 8,000 calls (2,016 pairs, 832
    terms) kept 65-92 even terms and its strongest pairs' k-SII error was 1.08, 0.38 with the
    pairs ranked by the proxy like every other term (held-out R^2 on uniform masks 0.826 ->
    0.914); the planted hierarchical n = 64 game at 4,096 calls went from 0.235 to exact, the
    digits CNN over 2x2 patches at 256 calls (120 pairs, 95 terms) from 1.22 to 1.02 (3, 2
    and 4 seeds; the Shapley values are the odd part's and do not move)."""
    pairs = options.get("pairs")
    if pairs is None:
        count = n * (n - 1) // 2
        return count <= n_rows and count < max_terms
    return bool(pairs)


def _fit_paired(
    masks: Tensor, weights: Tensor, flat: Tensor, proxy_idx: Tensor, proxy_score: Tensor,
    n: int, generator: torch.Generator, options: dict[str, Any],
    proxy_fit: dict[str, Any] | None = None, own_proxy: bool = False, defer_even: bool = False,
    pool: ProxyRows | None = None,
) -> tuple[SparseSpectrum, dict[str, Any]]:
    """The odd and the even regressions over the pairs ``(S, N∖S)`` of a paired design.

    ``defer_even``: return a :class:`~torchspex.fourier.DeferredSpectrum` whose even part is
    fitted when first read (:func:`_deferred_even`).

    ``own_proxy``: the proxy behind ``proxy_idx`` was fitted on these samples alone (the
    refits of the even part, for its jackknife and its calibration slope, then refit it per
    fold). ``pool``: these samples (the first output) as the proxy binned them
    (:class:`~torchspex.decoders._proxy.ProxyRows`), reused by the later proxies.

    With a proxy setting (``proxy_fit``, one output) the odd part is also fitted to the residual of
    a cross-fitted proxy (:func:`~torchspex.decoders._offset._with_proxy_offset`), and the fit with
    the lower cross-validated error is kept."""
    f_empty, f_full = flat[0], flat[1]
    x = masks[2::2]
    y_s, y_c = flat[2::2], flat[3::2]
    w = weights[2::2] * 2.0  # both members of a pair
    w = w / w.mean() if w.numel() else w
    odd_y, even_y = (y_s - y_c) / 2, (y_s + y_c) / 2
    p = x.shape[0]
    n_folds = options.get("n_folds", N_FOLDS)
    part_folds = options.get("n_folds")  # None: by the part's size (fit_part)
    max_terms = options.get("max_terms") or default_max_terms(n, p, options.get("effort", "low"))
    first = _first_order_rows(n, 1)
    # every triple first among the odd candidates when the pairs are plenty for them (the
    # order-3 terms are the next odd order after the always-kept first-order terms)
    triples = [_sets_of_order(n, 3, 3)] if n >= 3 and math.comb(n, 3) <= p // 2 else []
    # the triples the screen finds join the proxy's terms where not every triple is in
    at = cand.screen_rows(n, p) if not triples else None
    odd_idx, odd_score = cand.odd_pool(x, odd_y, w, (proxy_idx, proxy_score), n, at)
    odd_fixed, odd_ranked, n_triples = _ranked_candidates(first[1:], triples, odd_idx,
                                                          odd_score, n, 1)  # fmt: skip
    extra = [_sets_of_order(n, 2)] if _pairs_wanted(options, n, p, max_terms) and n >= 2 else []
    even_fixed, even_ranked, n_pairs = _ranked_candidates(first[:1], extra, proxy_idx,
                                                          proxy_score, n, 0)  # fmt: skip
    info: dict[str, Any] = {"n_pairs": p}
    if p == 0:
        # only the corners: the linear function through them, split equally
        odd_idx, odd_coef = odd_fixed, ((f_empty - f_full) / 2 / n).expand(n, -1).clone()
        even_idx, even_coef = even_fixed, ((f_empty + f_full) / 2).reshape(1, -1)
    else:
        odd_target = (f_empty - f_full) / 2
        odd_constraint = None if ODD_CORNER_SHIFT else (_at_empty, odd_target)
        offset = _offset.offset_tried(proxy_fit, flat.shape[1], p, n, n_folds, options)
        plain = None
        effort = options.get("effort", "low")
        if (offset and _offset.always_kept(n, p, effort)
                and _odd_part_is_linear(x, odd_y, w, (f_empty - f_full) / 2, n)):  # fmt: skip
            # the first-order terms alone reproduce every pair: no fit around a proxy can
            # beat that, and the plain fit (made now) is exact
            offset = False
            info["odd_linear"] = True
        if not offset or not _offset.always_kept(n, p, effort):  # else no plain fit (dropped)
            folds_state = generator.get_state()
            plain = fit_part(x, odd_y, w, odd_fixed, odd_ranked, odd_constraint, n, part_folds,
                             generator, max_terms, (n_triples,) if triples else (),
                             average=ODD_AVERAGE)[:3]  # fmt: skip
            if at is not None and cand.rescreen_runs(n, p):
                # a second screen against the fitted odd part's residual
                def refit(ranked: Tensor) -> tuple[Tensor, Tensor, dict[str, Any]]:
                    return fit_part(x, odd_y, w, odd_fixed, ranked, odd_constraint, n,
                                     part_folds, torch.Generator().set_state(folds_state),
                                     max_terms, (), average=ODD_AVERAGE)[:3]  # fmt: skip

                plain = _rescreened_odd(x[at], odd_y[at], w[at], plain, odd_fixed,
                                        (odd_idx, odd_score), refit, n, p)  # fmt: skip
            odd_idx, odd_coef, info["odd"] = plain
        # the even part draws from a generator of its own, seeded by one draw here: the odd
        # part (the Shapley values) and the even part are the same whether the even part is
        # fitted now or deferred (:func:`_deferred_even`), and its folds are not the offset's
        even_seed = draw_seed(generator)
        fold_proxies = None
        if offset:
            assert proxy_fit is not None
            odd_idx, odd_coef, info["odd"], fold_proxies = _with_proxy_offset(
                masks, flat, x, odd_y, w, odd_fixed, odd_ranked, odd_constraint, n, n_folds,
                generator, max_terms, (n_triples,) if triples else (), proxy_fit, plain,
                effort, pool,
            )
        if odd_constraint is None:
            odd_coef, info["odd"]["corner_shift"] = _meet_corner(odd_idx, odd_coef, odd_target)
        strata = _size_strata(x) if options.get("shrink", True) else None

        def fit_even() -> tuple[Tensor, Tensor, dict[str, Any]]:
            gen = torch.Generator().manual_seed(even_seed)
            even_idx, even_coef, even_info, even_spread = fit_part(
                x, even_y, w, even_fixed, even_ranked, (_at_empty, (f_empty + f_full) / 2), n,
                part_folds, gen, max_terms, (n_pairs,), strata,
                project=lambda support: _index_map(support, n, "k-SII", 2),
            )
            if even_spread is None:
                return even_idx, even_coef, even_info
            return shrunk_even(SparseSpectrum(even_idx, even_coef, n), even_info, even_spread,
                               masks, flat, w, extra, (proxy_idx, proxy_score), own_proxy,
                               n_folds, gen, max_terms, options.get("effort", "low"),
                               proxy_fit, fold_proxies, pool)  # fmt: skip

        if defer_even:
            return _deferred_even(odd_idx, odd_coef, (f_empty + f_full) / 2, fit_even, info, n)
        even_idx, even_coef, info["even"] = fit_even()
    info["cv_error"] = info["odd"]["cv_error"] + info["even"]["cv_error"] if p else math.nan
    idx, coef = _union_terms([even_idx, odd_idx], [even_coef, odd_coef], n)
    return SparseSpectrum(idx, coef, n), info


def _meet_corner(idx: Tensor, coef: Tensor, target: Tensor) -> tuple[Tensor, list[float]]:
    """The odd part ``(idx, coef [s, o])`` with every first-order coefficient shifted by one
    amount, so that its value at ∅ (the sum of its coefficients: every Walsh character is 1
    there) is ``target [o]``, and at N its negative; and the gap ``g`` it closed, per output.
    The shift is the odd part of a deviation ``g (1[S = ∅] - 1[S = N])`` and moves every
    Shapley value by ``-2 g / n``, as that deviation's: the corners and efficiency hold
    exactly. The first-order rows are always in the support (the fits' fixed terms)."""
    first = (idx >= 0).sum(dim=1) == 1
    gap = target.reshape(1, -1).to(coef.dtype) - coef.sum(dim=0, keepdim=True)
    out = coef.clone()
    out[first] += gap / int(first.sum())
    return out, gap.reshape(-1).tolist()


def _odd_part_is_linear(x: Tensor, odd_y: Tensor, w: Tensor, at_empty: Tensor, n: int) -> bool:
    """Whether the odd part of the samples is exactly a linear function of the features:
    more pairs than features, and the first-order terms alone reproduce every pair's odd value
    to round-off (the weighted squared residual at most
    :data:`~torchspex.decoders.efficiency.EXACT_HELDOUT` of the values' weighted variance,
    SPEX's certificate), fitted as the odd part is: free at the corners
    (:data:`ODD_CORNER_SHIFT`; a linear game with a spike at ∅ passes) or held to the odd part's
    value at ∅, ``at_empty``. A sum of the features, a linear model: their Shapley values are
    then exact by the plain fit, where a fit around a cross-fitted proxy (shrunk toward the
    proxy) is not. Draws nothing."""
    from torchspex.decoders._part_fit import _solve_refined

    p = x.shape[0]
    if p <= n:
        return False
    design = 1.0 - 2.0 * x.double()  # [p, n]: the first-order Walsh characters
    weighted = design * w.unsqueeze(1)
    gram, rhs = design.T @ weighted, weighted.T @ odd_y
    c, d = ((None, None) if ODD_CORNER_SHIFT
            else (torch.ones(1, n, dtype=torch.float64), at_empty.reshape(1, -1)))  # fmt: skip
    coef = _solve_refined(gram, rhs, torch.zeros(n, dtype=torch.float64), c, d)
    resid = odd_y - design @ coef
    spread = odd_y - (w.unsqueeze(1) * odd_y).sum(0) / w.sum()
    energy = float((w.unsqueeze(1) * spread**2).sum())
    return energy > 0 and float((w.unsqueeze(1) * resid**2).sum()) <= EXACT_HELDOUT * energy


def _deferred_even(
    odd_idx: Tensor, odd_coef: Tensor, even_at_empty: Tensor,
    fit_even: Callable[[], tuple[Tensor, Tensor, dict[str, Any]]], info: dict[str, Any], n: int,
) -> tuple[SparseSpectrum, dict[str, Any]]:
    """The paired fit with its even part deferred: a spectrum whose known part is the odd part
    plus the constant ``(f(∅) + f(N)) / 2`` (the even part's value at ∅, which its fit holds
    exactly), so its Shapley values and its values at ∅ and N are final; ``fit_even()`` runs
    when anything else is read. Until then ``info["even"]`` is ``{"deferred": True}`` and
    ``info["cv_error"]`` NaN; the fit then fills ``info["even"]`` in place (with its seconds,
    ``info["even"]["seconds"]``), so copies of ``info`` see it too."""
    info["even"] = {"deferred": True}
    info["cv_error"] = math.nan
    constant = _first_order_rows(n, 1)[:1]
    at_empty = even_at_empty.reshape(1, -1).to(odd_coef.dtype)
    known_idx, known_coef = _union_terms([constant, odd_idx], [at_empty, odd_coef], n)

    def complete() -> SparseSpectrum:
        start = time.perf_counter()
        even_idx, even_coef, even_info = fit_even()
        info["even"].update(even_info, seconds=time.perf_counter() - start)
        idx, coef = _union_terms([even_idx, odd_idx], [even_coef, odd_coef], n)
        return SparseSpectrum(idx, coef, n)

    return DeferredSpectrum(SparseSpectrum(known_idx, known_coef, n), complete), info


def _fit_uniform(
    masks: Tensor, flat: Tensor, proxy_idx: Tensor, proxy_score: Tensor, n: int,
    generator: torch.Generator, options: dict[str, Any],
) -> tuple[SparseSpectrum, dict[str, Any]]:
    """One unweighted regression over uniform masks (the Banzhaf view), exact at the corners
    (rows 0 and 1), which are constraints rather than samples."""
    corners = flat[:2]
    masks, flat = masks[2:], flat[2:]
    m = masks.shape[0]
    first = _first_order_rows(n, 1)
    max_terms = options.get("max_terms") or max(n + 1, (3 * m) // 4)
    wanted = _pairs_wanted(options, n, m // 2, max_terms)
    extra = [_sets_of_order(n, 2)] if wanted and n >= 2 else []
    fixed, ranked, n_pairs = _ranked_candidates(first, extra, proxy_idx, proxy_score, n, None)
    w = torch.ones(m, dtype=torch.float64)
    idx, coef, info, _ = fit_part(masks, flat, w, fixed, ranked, (corner_rows, corners), n,
                                   options.get("n_folds", N_FOLDS), generator, max_terms,
                                   (n_pairs,))  # fmt: skip
    return SparseSpectrum(idx, coef, n), {"fit": info, "cv_error": info["cv_error"]}
