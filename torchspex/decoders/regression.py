"""Index-aware regression: the Shapley (or uniform) design, a discovered support, an exact fit.

The decoder behind ``method="regression"`` (and most of ``method="auto"``). It follows the index
the user asks for:

- **Shapley family** (SV, SII, k-SII, STII, FSII and the other Shapley-weighted indices): the
  masks are paired coalitions drawn by size with the Shapley kernel's weights
  (:func:`~torchspex.sampling.coalitions.paired_coalitions`), the empty and full masks always
  included. The fit is a weighted least-squares regression with those weights, constrained to be
  exact at all-kept and all-removed, so the Shapley values add up to ``f(N) - f(∅)`` to
  round-off and the baseline is the evaluated ``f(∅)``. With paired samples the regression
  splits exactly into an *odd* part, fitted to ``(f(S) - f(N∖S)) / 2`` on the odd-order terms
  (the only part the Shapley values depend on; Fumagalli et al., "OddSHAP", ICML 2026), and an
  *even* part, fitted to ``(f(S) + f(N∖S)) / 2`` on the even-order terms (the part the pair
  indices depend on). Each has its own support and its own cross-validated settings.
- **Banzhaf family and Fourier / Moebius** (BV, BII, FBII): uniform masks, unweighted, as
  ProxySPEX samples.

The support: every order-1 term and the constant always; every pair where the budget allows;
higher-order terms read exactly off LightGBM proxies fitted to the same samples (the ProxySPEX
read-out, :func:`~torchspex.decoders.trees.tree_ensemble_to_fourier`), ranked by the proxies'
squared coefficients averaged over several proxies, each trained on a different four fifths of
the rows (:func:`proxy_bags`). How many of the ranked terms enter and how strongly they are
shrunk is chosen by k-fold cross-validation over the pairs, on the samples already paid for (no
extra calls); the odd part averages the fits of its best few settings (:data:`ODD_AVERAGE`). With
the kernel weights and the first-order terms in the basis, the fitted Shapley values are a
consistent estimate whatever the support (the weighted projection onto a larger space,
projected on the linear functions, is the projection onto the linear functions); a richer
support makes the residual, and with it the sampling error, smaller (PolySHAP, Fumagalli et
al. 2026).

What the cross-validation costs (each part's fit is :mod:`._part_fit`): every prefix of the
ranked support comes from one Cholesky factor per fold and penalty
(``_part_fit._prefix_solutions``); the penalties are walked from the middle of their ladder
while the error falls, not all scored (``_part_fit._penalty_walk``); up to 20 features the fold
normal equations may be gathers from a Walsh-Hadamard transform of each fold's mask histogram,
not products over the rows (``_part_fit._walsh_normals``, where that costs less); and from
:data:`DEEP_ROWS` samples the proxy grows depth-8 trees only, at learning rate
:data:`DEEP_RATE` (not 0.1) for fewer rounds, and parts of ``_part_fit.CV_SINGLE_FROM`` terms or
more are cross-validated on ``_part_fit.LARGE_PART_FOLDS`` folds, not 5.

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
from noise, the fitted pairs are worse than answering zero, and the factor goes to zero; where
the fit is exact it is 1. The sandwich sees the noise of the chosen terms' coefficients, not
that of choosing them: with fewer pairs than features the noise comes from a jackknife that
refits the even part, proxy included, without each fold; below :data:`SLOPE_PAIRS` pairs per
feature the factor is also capped by the calibration slope of those refits' out-of-fold
predictions (:func:`_even_refits`). Only the even part is shrunk, so the Shapley values (odd part),
efficiency and the value at ∅ are untouched. Shrinking the odd part toward the equal split
was measured and dropped (SV error 0.58 -> 0.65 on a planted n = 64 game at 256 calls).

``max_order`` caps what is reported, never the fit.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor

from torchspex.decoders import _proxy
from torchspex.decoders._budgets import regression_n_samples as suggest_n_samples
from torchspex.decoders._part_fit import N_FOLDS, fit_part
from torchspex.decoders._proxy import draw_seed, fit_proxy, holdout_rows, proxy_configs
from torchspex.decoders._shrink import (
    JACKKNIFE_FOLDS,
    even_pairs,
    jackknife_stein_factor,
    scale_even,
    stein_factor,
)
from torchspex.decoders.base import BudgetTooSmallError, Evaluator
from torchspex.decoders.efficiency import corner_rows
from torchspex.decoders.refit import walsh_design
from torchspex.fourier import DeferredSpectrum, SparseSpectrum
from torchspex.fourier._sets import (
    coalesce,
    normalize_indices,
    row_keys,
    set_sizes,
    unique_rows,
)
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
#: Decode effort levels (:func:`proxy_bags`): ``"low"`` (default) one LightGBM proxy ranks
#: the candidate terms; ``"high"`` averages several, for models slow enough that the lower
#: error per call is worth the decode seconds.
EFFORTS = ("low", "high")

#: Penalties on the first-order terms of the correction to a cross-fitted proxy (the
#: discovered terms take those of :mod:`._part_fit`), up to nearly
#: none (the proxy's own Shapley values): planted hierarchical n = 64 / 256 at 512 calls, SV
#: error 0.67 -> 0.65 / 0.85 -> 0.73; the digits CNN over 64 pixels at 256, 0.53 -> 0.52
_OFFSET_FIXED_PENALTIES = (0.0, 1e-2, 1e-1, 1.0, 10.0, 100.0, 1000.0)
#: From this many samples on, the proxy tries trees of depth ``DEEP_DEPTHS`` instead of the
#: default ``(3, 5)``: depth 8 for the high-order terms such rows can carry, and no depth 3,
#: which never won there (4,096 calls, validation R^2 of depth 3 / 5 / 8: MLP on wine
#: 0.972 / 0.995 / 0.998, MiniLM 0.996 / 0.999 / 0.998, digits CNN over 2x2 patches
#: 0.956 / 0.983 / 0.991) and took a quarter of the proxy's seconds.
DEEP_ROWS = 2048
#: Depth 8 alone: it beat depth 5 in 12 of 12 races (``python benchmarks/proxy_race.py``,
#: results/proxy_race.json: 4,096 calls, 4 seeds each of the MLP on wine, MiniLM and the
#: digits CNN over 2x2 patches), so racing depth 5 for
#: :data:`~torchspex.decoders._proxy.RACE_ROUNDS` rounds only cost time.
DEEP_DEPTHS = (8,)
#: The deep proxy's learning rate, and its most rounds at the same rate x rounds as the smaller
#: proxies' (0.1 x :data:`PROXY_ROUNDS`); at 0.1 it ran to its 1,000-round cap in every fit at
#: 4,096 calls. This rate, depth 8 alone and ``_part_fit.LARGE_PART_FOLDS`` against the previous 0.1
#: / depths 5 and 8 / 5 folds (16 seeds, ``python benchmarks/decode_variants.py
#: low+lr0.1+drounds1000+dd58+f5,low,low+lr0.2+drounds500 --budgets 2048,4096 --seeds 16``,
#: results/decode_variants_deep_rate.json), SV error at 4,096 / 2,048 calls: the MLP on wine
#: 0.00063 -> 0.00064 / 0.00263 -> 0.00281, MiniLM 0.00137 -> 0.00131 / 0.00364 -> 0.00332,
#: the digits CNN over 2x2 patches 0.00672 -> 0.00677 / 0.0148 -> 0.0158; k-SII pairs -1% to
#: +12%; decode 0.86-0.94 -> 0.59-0.66 s at 4,096 calls, 0.32-0.53 -> 0.23-0.36 s at 2,048.
#: 0.2 was faster still (a further -10% to -14%) with errors within 7% on those games, but
#: lost the planted hierarchical game at n = 64: exact at 4,096 calls in 3 of 4 seeds, against
#: 4 of 4 at 0.15 and before (at 2,048 calls 0.076 before, 0.098 at 0.15, 0.103 at 0.2; 4
#: seeds, the same command with ``--games "hierarchical (n=64"``,
#: results/decode_variants_deep_rate_n64.json).
DEEP_RATE = 0.15
#: ... each grown to at most this many leaves (LightGBM grows leaf-wise: the depth-8 trees
#: reach depth 8 where the rows ask for it, at the cost of a depth-5 tree). Against trees of
#: every leaf their depth allows (3 seeds; results/decode_variants_deep_leaves*.json, where
#: ``low`` is the old rule and ``low+d5L32`` this one; ``python benchmarks/decode_variants.py
#: low,low+leaves256 --budgets 2048,4096`` repeats it): decode -4% to -26%; SV / k-SII pair
#: error MiniLM at 2,048 / 4,096 calls -8% / -5% and -9% / -47%, the CNN over 2x2 patches -1%
#: / -9% and -12% / -8%, the MLP +1% / -5% (6 seeds at 4,096) and -4% / 0%, the CNN over 64
#: pixels at 4,000 +2%; the planted n = 64 games at 4,000 stay exact.
DEEP_LEAVES = 32
#: From this many samples to ``DEEP_ROWS`` the proxy tries depth 5 only, not 3 and 5: depth 3
#: won 0 of 36 fits at 1,024 and 1,536 samples on the MLP, MiniLM and the CNN over 2x2 patches
#: (6 seeds; 1 of 18 at 768), so its fit only cost time; on the planted n = 64 games it won
#: 4-5 of 6, yet depth 5 alone left the errors equal or lower (4 seeds, ``python
#: benchmarks/decode_variants.py low,low+mid35 --budgets 1024,1536``,
#: results/decode_variants_mid5.json, where ``low+mid5`` was this rule and ``low`` the old:
#: decode -7% to -30%, SV and k-SII pair errors identical but the hierarchical game at 1,024
#: calls, 0.360 / 0.716 -> 0.358 / 0.693).
MID_ROWS = 1024
MID_DEPTHS = (5,)
#: Below ``DEEP_ROWS`` samples a boosting round of the proxy counts as an improvement only
#: when it lowers the held-out error by more than this fraction of the held-out variance
#: (early stopping's ``min_delta``): without it the proxies of near-exact fits ran to the
#: 1,000-round cap for gains of 1e-6 (LightGBM on diabetes). 4 seeds, 128-4,096 calls
#: (``benchmarks/decode_variants.py low,low+mg1e-4``, results/decode_variants_min_gain.json):
#: decode LightGBM on diabetes 0.08-0.22 -> 0.05-0.09 s, the MLP and MiniLM at 1,024 calls
#: 0.37 / 0.33 -> 0.29 / 0.23 s; SV error -14% to +3% everywhere below 2,048 samples but
#: LightGBM at 256 calls (0.00096 -> 0.00135, 3.5x below the best peer's); at 4,096 calls it
#: raised the MLP's error 37%, so from ``DEEP_ROWS`` on rounds count as before.
PROXY_MIN_GAIN = 1e-4
#: Most boosting rounds of a proxy. A cap of 500 or 300 (6 seeds, 2,048 and 4,096 calls,
#: ``python benchmarks/decode_variants.py low,low+rounds500,low+rounds300``,
#: results/decode_variants_rounds.json) cut the 4,096-call decode 20-35% but raised the MLP's
#: SV error there 15-20% (0.00061 -> 0.00070 / 0.00073) and the k-SII pair errors 2-16%
#: (MiniLM and the CNN level on SV): not adopted.
PROXY_ROUNDS = 1000
#: ... and of the deep proxy (:data:`DEEP_RATE`, from :data:`DEEP_ROWS` samples), which ran to
#: its cap on the MLP, MiniLM and the CNN over 2x2 patches at 4,096 calls. 400 rounds instead
#: of 667 (the same rate x rounds as ``PROXY_ROUNDS``), 4-6 seeds at 2,048 and 4,096 calls
#: (``python benchmarks/decode_variants.py low,low+drounds400,low+drounds500``,
#: results/decode_variants_deep_rounds.json, ``_planted.json``): SV error -5% to +1%, k-SII
#: pairs -2% to +14%, the planted games at n = 64 and 256 unchanged (exact where they were);
#: decode -10% to -25%.
DEEP_ROUNDS = 400
#: Rounds without a held-out gain after which a proxy stops boosting (was 30). 10 seeds at
#: 128-1,024 calls (``python benchmarks/decode_variants.py low,low+pat30 --budgets
#: 128,256,512,1024 --seeds 10``, results/decode_variants_patience.json): decode -4% to -21%,
#: SV error within 2% but MiniLM at 512 calls (0.0157 -> 0.0140) and LightGBM on diabetes at 256
#: (0.00135 -> 0.00161, against OddSHAP's 0.0047); 15 cost that cell +49%. At 2,048 / 4,096
#: calls (6 seeds) and on the CNN over 64 pixels nothing moved; the planted sparse n = 64 game at
#: 512 calls 0.363 -> 0.382 for -44% decode (4 seeds, a script patching the value).
PROXY_PATIENCE = 20
#: Triples screened by their correlation with the odd part's residual join the candidates
#: (:func:`_screened_triples`; when not every triple is a candidate already). A/B against
#: none (``benchmarks/decode_variants.py low,low+screen``, results/decode_variants_screen_*.json;
#: 3 seeds on the exact-table games at 128-1,024 calls, 2 on the n = 64 games at 512-4,096):
#: the planted sparse game at n = 64 and 1,024 calls exact (0.20 before; SPEX alone is exact
#: there), MiniLM at 128 calls -11%, the CNN over 2x2 patches -4% to -10% at 256-1,024, the
#: CNN over 64 pixels -1% to -3%; LightGBM at 128 calls +7%; everything else within 1%. Before
#: the universal threshold in the screen, the MLP was 6-10% worse at 256-1,024 calls.
SCREEN_TRIPLES = True
#: ... from at most this many pairs, and only while ``n^3`` times those pairs stays below
#: ``SCREEN_FLOPS`` (the screen costs about ``2 p n^3`` flops: 0.1-0.3 s at the bound).
SCREEN_ROWS = 1024
SCREEN_FLOPS = 1 << 31
#: After the odd part's fit, the triples are screened again against its residual
#: (:func:`_rescreened_odd`); where the triples outside its support carry ``RESCREEN_SHARE``
#: or more of the residual's energy they rank first and the odd part is refitted on the same
#: folds, kept where it cross-validates better. A planted triple that the first screen misses
#: (the other planted triples' signal hides it) is then the residual's whole signal: 4 seeds
#: (``python benchmarks/decode_variants.py low,low+rescreen --budgets 512,1024,2048 --games
#: "sparse (n=64,hierarchical (n=64,pixels"``, results/decode_variants_rescreen.json): the
#: planted sparse game at n = 64 and 1,024 calls 0.0286 -> exact, every other cell's errors
#: identical, decode +0-7%; the exact-table games at 128-1,024 calls identical errors
#: (``_small.json``). The share separates (``info["odd"]["rescreen"]`` read over 4 seeds at
#: every budget above): on the model
#: games, the CNN over pixels and the planted hierarchical game the new triples carried at most
#: 0.25 of the residual (MiniLM at 256 calls), where a planted triple was missed 0.39-4.1 (the
#: benchmark's sparse game 1.9; others in ``test_the_odd_part_rescreens_the_triples_it_missed``);
#: so 0.3 (those runs, made at 0.5, refit nowhere else). Refitting with no share test:
#: hierarchical n = 64 at 2,048 calls -11% SV error for +29% decode, the CNN over pixels +14%
#: decode for +0.3%; not adopted.
RESCREEN_TRIPLES = True
RESCREEN_SHARE = 0.3
#: ... and only where the screen costs at most this: at n = 128 (planted sparse and
#: hierarchical, 1,024 and 2,048 calls, 4 seeds, ``_n128.json``) the second screen added up to
#: 19% to the decode and changed nothing.
RESCREEN_FLOPS = SCREEN_FLOPS // 4
#: Most terms per part of the fit at ``effort="low"`` (else ``3 p / 4`` for ``p`` pairs): at
#: 4,096 calls (2,047 pairs, 1,535 terms) 1,024 kept the SV error within 1% on the MLP on wine,
#: MiniLM and the digits CNN over 2x2 patches (4 seeds) and cut the decode 35-40%; 768 cut it
#: 55% but raised MiniLM's error 14%, 512 the CNN's 80%
#: (``benchmarks/decode_variants.py low,low+mt512,low+mt768,low+mt1024 --budgets 4096``,
#: results/decode_variants_max_terms.json). Since then (deep proxies of 32 leaves, one penalty
#: averaged) 768 costs less: with :data:`DEEP_ROUNDS` 400, 6 seeds at 4,096 calls (``python
#: benchmarks/decode_variants.py low,low+drounds400+cap768``,
#: results/decode_variants_rounds400_cap768.json) SV error MLP 0.00061 -> 0.00062, MiniLM
#: 0.00132 -> 0.00131, CNN 0.0067 -> 0.0070 (+4.5%), k-SII pairs +1% / +23% / +1%, decode
#: 0.67-0.82 -> 0.43-0.49 s; 2,048 calls (767 terms at most either way) SV -3% to +2%. Capping
#: the even part alone (768 / 512, the odd part at 1,024) saved less for pair errors up to
#: +28% (a knob since removed, ``ecap``: results/decode_variants_even_terms.json). The cap
#: counts the discovered terms: a part holds at most ``n`` more (the odd part's first-order
#: terms). Counted with them (768 in all), the planted hierarchical game at n = 256 and 4,096
#: calls went 0.0245 -> 0.0384 (4 seeds; 512 slots left for its discovered terms; ``python
#: benchmarks/decode_variants.py low,low+cap1024 --budgets 4096 --games "hierarchical (n=256"``,
#: results/decode_variants_cap_n256.json).
MAX_TERMS_LOW = 768
#: Proxies averaged to rank the candidate terms (:func:`proxy_bags`): below ``DEEP_ROWS``
#: samples, and from there on; one proxy from ``BAG_FEATURES`` features on.
PROXY_BAGS = 5
DEEP_PROXY_BAGS = 3
BAG_FEATURES = 128
#: How many settings (terms x ridge) the odd part (the Shapley values) averages, instead of
#: keeping the best one: the fits of the best settings whose cross-validated error is within
#: ``AVG_TOL`` times the best one's (the tolerance keeps an exact fit alone: without it,
#: LightGBM on diabetes at 512 calls went from 1e-15 to 5e-7). Full benchmark, 24 seeds for the
#: model games and 12 for the planted ones, SV error, best setting -> average of up to 8: the
#: MLP on wine 2-8% lower at every budget (1,024 calls 0.0102 -> 0.0094), MiniLM 3-7% lower,
#: the digits CNN over 2x2 patches 6% lower at 4,096 calls and 3-4% higher at 128 and 256,
#: LightGBM and the planted games within 1% but for sparse n = 64 at 1,024 calls
#: (0.0204 -> 0.0215, still 12x below the best peer); pairs within 1%. Every fit meets the
#: corner constraint, so an average does too (efficiency holds); the even part is never
#: averaged.
ODD_AVERAGE = 8


def proxy_bags(n_rows: int, n_features: int, effort: str = "high") -> int:
    """How many LightGBM proxies rank the candidate terms: one at ``effort="low"`` (the
    default of the decoders); at ``"high"`` :data:`PROXY_BAGS` below :data:`DEEP_ROWS`
    samples, :data:`DEEP_PROXY_BAGS` from there on, and one from :data:`BAG_FEATURES`
    features on.

    Why one by default: the decode's seconds are mostly the proxies' (LightGBM training and
    read-out), so five proxies cost 3-5x the decode of one. With today's decoder the gain of
    five is 0-14% of SV error below 1,024 calls and none at 1,024 on the model games, except
    LightGBM on diabetes, whose errors are already 2-6x below every peer's (12 seeds, one
    proxy -> five, ``/tmp/ab/ab.py new,bags1`` in the issue-28 note: the MLP on wine at 128 /
    256 / 512 / 1,024 calls 0.091 / 0.043 / 0.022 / 0.0090 -> 0.083 / 0.038 / 0.021 / 0.0089,
    MiniLM 0.052 / 0.031 / 0.018 / 0.0072 -> 0.051 / 0.027 / 0.016 / 0.0073, LightGBM at 128 /
    256 0.012 / 0.0016 -> 0.0075 / 0.0008; decode 0.05-0.76 s -> 0.3-2.1 s). A call that costs
    more than a few milliseconds (an LLM on a CPU) pays for ``effort="high"``.

    The measurements behind the ``"high"`` settings (an older decoder):

    One proxy trained on four fifths of a few hundred rows ranks the terms noisily: over the
    true top 100 odd terms of the digits CNN over 2x2 patches at 1,024 calls, one proxy's top
    100 held 53, five proxies' averaged scores 58. Averaging the scores of proxies trained on
    different four fifths steadies the ranking (12 seeds, SV error, one proxy -> five: the
    digits CNN over 2x2 patches at 256 / 512 / 1,024 calls 0.150 / 0.067 / 0.037 -> 0.136 /
    0.061 / 0.032, LightGBM on diabetes at 128 / 256 0.0128 / 0.0017 -> 0.0084 / 0.0008,
    the MLP on wine at 128 / 256 0.103 / 0.046 -> 0.082 / 0.042, MiniLM at 512 0.0175 ->
    0.0165; 6 seeds, planted hierarchical n = 64 at 1,024 calls 0.36 -> 0.33). From
    ``DEEP_ROWS`` on, three proxies did as well as five for about 60% of the time (6 seeds at
    4,096 calls, one / three / five proxies: the MLP 0.00072 / 0.00060 / 0.00058, MiniLM
    0.0015 / 0.0013 / 0.0013, the digits CNN 0.0072 / 0.0072 / 0.0068). At 256 features
    five proxies left the Shapley values level for 2.5-3.6x the time (4 seeds at 512 / 1,024
    calls, planted sparse 0.556 / 0.376 -> 0.558 / 0.373, hierarchical 0.701 / 0.489 ->
    0.695 / 0.506). The uniform design (Banzhaf family) gains too (8 seeds, BV error at 256 /
    1,024 calls, one proxy -> five: the MLP 0.107 / 0.019 -> 0.091 / 0.016, the digits CNN
    over 2x2 patches 0.102 / 0.029 -> 0.090 / 0.028, MiniLM 0.040 / 0.010 -> 0.037 / 0.009).

    Example:
        >>> proxy_bags(1024, 16, "low"), proxy_bags(1024, 16), proxy_bags(4096, 16)
        (1, 5, 3)
    """
    if effort == "low" or n_features >= BAG_FEATURES:
        return 1
    return PROXY_BAGS if n_rows < DEEP_ROWS else DEEP_PROXY_BAGS


def default_max_terms(n_features: int, n_pairs: int, effort: str = "low") -> int:
    """Most terms per part of the fit: three quarters of the pairs (at least ``n + 1``), at
    most ``n`` + :data:`MAX_TERMS_LOW` at ``effort="low"`` (the ``n`` first-order terms the odd
    part always holds, and as many discovered terms as the cap).

    Example:
        >>> [default_max_terms(13, 511), default_max_terms(13, 2047)]
        [383, 781]
        >>> default_max_terms(256, 2047), default_max_terms(13, 2047, effort="high")
        (1024, 1535)
    """
    most = max(n_features + 1, (3 * n_pairs) // 4)
    return min(most, n_features + MAX_TERMS_LOW) if effort == "low" else most


def index_family(index: str | None) -> str:
    """``"banzhaf"`` for the uniform-mask indices, ``"shapley"`` for the rest (and ``None``).

    Example:
        >>> index_family("FBII"), index_family("k-SII"), index_family(None)
        ('banzhaf', 'shapley', 'shapley')
    """
    return "banzhaf" if index in BANZHAF_FAMILY else "shapley"


#: The proxy offset is tried below this many pairs per feature: it was kept only there
#: (planted games at n = 64 and 256 up to 1,024 calls), and at 4,096 calls it took 4x the time
#: (MLP on wine 9 -> 36 s) for the same result.
CROSS_FIT_PAIRS = 4
#: Fewest trees of each cross-fitted proxy. Early stopping on a fifth of a few hundred rows
#: stops the main proxy after tens of trees; refitted with at least this many, the offset
#: did better (4 seeds, SV error: planted n = 64 sparse at 128 calls 0.78 -> 0.76,
#: hierarchical at 512 0.66 -> 0.62; the digits CNN over pixels at 128 0.78 -> 0.77). 50 did
#: as well as 100 for less time (``python benchmarks/decode_variants.py low,low+cft100``, 4-6
#: seeds, results/decode_variants_cross_fit_trees_*.json, where ``low+cft50`` was this value:
#: SV error within 1% but planted hierarchical n = 64 at 256 calls, 0.765 -> 0.738; decode
#: 0-13% shorter on the CNN over 2x2 patches at 128 calls and the n = 64 games at 256 / 512).
CROSS_FIT_TREES = 50
#: Below this many pairs per feature, the noise of the even part's James-Stein shrinkage comes
#: from a jackknife of the whole even fit, proxy included (:func:`_even_refits`),
#: instead of the sandwich around the chosen terms: with fewer pairs than features, choosing
#: the terms is most of the noise and the sandwich misses it (planted n = 64 at 128 calls,
#: k-SII pair error 1.01 / 1.11 -> 1.00 / 1.00 sparse / hierarchical, 4 seeds).
JACKKNIFE_PAIRS = 1
#: Below this many pairs per feature, the James-Stein factor is capped by the calibration slope
#: of refits that choose their own terms (:func:`_even_refits`): with few pairs per feature the
#: terms chosen fit some of the noise, which the sandwich around them does not see (6 seeds,
#: k-SII pair error: planted hierarchical n = 64 at 256 calls 1.06 -> 1.02, the digits CNN
#: over 2x2 patches at 128 calls 1.44 -> 1.34; the MLP, MiniLM and LightGBM level).
SLOPE_PAIRS = 4
#: From this many features on, the odd part around the cross-fitted proxy is kept wherever it
#: is tried, not only where its cross-validated fit of the odd part beats the plain fit's:
#: the two fits' errors on the samples do not rank their Shapley values there (6 seeds, SV
#: error chosen by that comparison -> always around the proxy: planted n = 64 sparse at
#: 128 / 256 calls 0.78 / 0.57 -> 0.71 / 0.53, hierarchical at 128-512 0.93 / 0.77 / 0.59 ->
#: 0.89 / 0.74 / 0.57; n = 256 sparse at 256 0.74 -> 0.69, hierarchical at 1,024 0.57 ->
#: 0.47; the digits CNN over 64 pixels at 256 0.57 -> 0.50, at 512 0.32 -> 0.33). Below it
#: the comparison chose well (MLP on wine at 64 / 96 calls 0.18 / 0.13 against 0.23 / 0.15
#: always around the proxy, LightGBM on diabetes at 64 calls 0.030 against 0.052). Letting the
#: comparison choose from 3 pairs per feature on was measured and not adopted (4 seeds, SV
#: error; the decode_variants knob offp3, since removed; results/decode_variants_offset_pairs
#: _512.json and _1024.json): planted sparse n = 64 / 128 at 512 / 1,024 calls 0.343 / 0.279
#: -> 0.314 / 0.180, the digits CNN over 64 pixels at 512 0.334 -> 0.321, but planted
#: hierarchical n = 64 / 128 0.598 / 0.440 -> 0.622 / 0.477.
OFFSET_FEATURES = 32

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
    folds = options.get("n_folds", N_FOLDS)
    if isinstance(folds, bool) or not isinstance(folds, int) or folds < 2:
        raise ValueError(f"`n_folds` must be an int >= 2; got {folds!r}.")


# ----------------------------------------------------------------------------- support
def _first_order_rows(n: int, width: int) -> Tensor:
    rows = torch.full((n + 1, width), -1, dtype=torch.long)
    rows[1:, 0] = torch.arange(n)
    return rows


def _sets_of_order(n: int, width: int, order: int = 2) -> Tensor:
    """Every set of ``order`` features (default: pairs), rows ``int64 [C(n, order), width]``."""
    sets = torch.combinations(torch.arange(n), order)
    rows = torch.full((sets.shape[0], width), -1, dtype=torch.long)
    rows[:, :order] = sets
    return rows


def _stack_rows(rows: list[Tensor]) -> Tensor:
    """Set rows ``int64 [k_i, d_i]`` (``-1`` padded) stacked at one width, ``[sum k_i, d]``."""
    width = max(1, *[r.shape[1] for r in rows])
    return torch.cat([torch.nn.functional.pad(r, (0, width - r.shape[1]), value=-1)
                      for r in rows])  # fmt: skip


def _union_terms(rows: list[Tensor], values: list[Tensor], n: int) -> tuple[Tensor, Tensor]:
    """The union of term sets ``rows`` (``int64 [k_i, d_i]``, ``-1`` padded) with their
    ``values`` (``[k_i]`` or ``[k_i, o]``) summed where a term repeats (:func:`coalesce`)."""
    idx = _stack_rows(rows)
    flat = [v.unsqueeze(1) if v.dim() == 1 else v for v in values]
    out_idx, out = coalesce(normalize_indices(idx), torch.cat(flat), n)
    return out_idx, (out.squeeze(1) if values[0].dim() == 1 else out)


def _screened_triples(
    x: Tensor, y: Tensor, w: Tensor, n: int, keep: int
) -> tuple[Tensor, Tensor]:
    """At most ``keep`` triples whose Walsh characters correlate with the odd part's residual
    after a least-squares fit of the first-order terms beyond the universal threshold, best
    first, ``(rows int64 [k, 3], score [k])``.

    Tree proxies miss pure parity interactions (a split on one of their features gains
    nothing by itself); this screen sees them. ``x bool [p, n]`` pair rows, ``y [p, o]`` the
    odd part, ``w [p]`` weights. A triple's score is its squared coefficient estimate
    ``(sum_p w r z_i z_j z_k / sum_p w)^2`` summed over outputs, on the proxy's scale; every
    triple at once from the tensor ``sum_p (w r)_p z_p (x) z_p (x) z_p`` (``p n^3`` flops).
    """
    z = walsh_design(x, _first_order_rows(n, 1)[1:], n)  # [p, n], +-1
    gram = z.T @ (w.unsqueeze(1) * z)
    scale = torch.diagonal(gram).mean().clamp(min=1e-300)
    b = torch.linalg.solve(gram + 1e-9 * scale * torch.eye(n, dtype=torch.float64),
                           z.T @ (w.unsqueeze(1) * y))  # fmt: skip
    r = w.unsqueeze(1) * (y - z @ b) / w.sum()  # [p, o]
    combos = torch.combinations(torch.arange(n), 3)  # [C, 3], i < j < k
    score = torch.zeros(combos.shape[0], dtype=torch.float64)
    signal = torch.zeros(combos.shape[0], dtype=torch.float64)
    for o in range(y.shape[1]):
        # t[a, b, c] = sum_p r_p z_pa z_pb z_pc, one feature a at a time
        t = torch.stack([z.T @ ((r[:, o] * z[:, a]).unsqueeze(1) * z) for a in range(n)])
        est = t[combos[:, 0], combos[:, 1], combos[:, 2]]
        score += est**2
        # the estimate's variance were the triple absent: sum_p r_p^2
        signal += est**2 / r[:, o].pow(2).sum().clamp(min=1e-300)
    # only what stands out of the largest of C(n, 3) null estimates (the universal threshold
    # sqrt(2 log N) of Donoho and Johnstone, per output)
    strong = torch.nonzero(signal > 2.0 * y.shape[1] * math.log(combos.shape[0])).squeeze(1)
    top = strong[torch.argsort(score[strong], descending=True)[:keep]]
    return combos[top], score[top]


def _proxy_terms(
    masks: Tensor, flat: Tensor, generator: torch.Generator, effort: str = "low"
) -> tuple[Tensor, Tensor, dict[str, Any]]:
    """Terms of LightGBM proxies fitted to the samples, ``(indices, score [s], info)``.

    :func:`proxy_bags` proxies per output, each early-stopped on its own random fifth of the
    rows (so each is trained on a different four fifths); a term's score is its squared
    coefficient averaged over the proxies and summed over outputs. ``info`` is the first
    proxy's (its depth, rate and trees are the settings the cross-fitted proxies reuse), with
    ``bags`` added."""
    from torchspex.decoders.trees import tree_ensemble_to_fourier

    n, m = masks.shape[1], masks.shape[0]
    x = masks.numpy().astype(np.float32)
    # deep trees too once the rows can carry them: their high-order terms are the candidates
    # that matter at large budgets (MLP on wine at 4,096 calls: SV error 0.0011 -> 0.00066,
    # k-SII pairs 0.017 -> 0.0038)
    configs: list[tuple[int, float] | tuple[int, float, int]]
    if m < DEEP_ROWS:
        configs = list(proxy_configs(None if m < MID_ROWS else MID_DEPTHS, 0.1))
        rounds, min_gain, race = PROXY_ROUNDS, PROXY_MIN_GAIN, None
    else:
        configs = [(d, r, DEEP_LEAVES) for d, r in proxy_configs(DEEP_DEPTHS, DEEP_RATE)]
        rounds, min_gain, race = DEEP_ROUNDS, 0.0, _proxy.RACE_ROUNDS
    rows, scores, infos = [], [], []
    bags = proxy_bags(m, n, effort)
    for bag in range(bags):
        valid = holdout_rows(m, 0.2, generator)
        for j in range(flat.shape[1]):
            y = flat[:, j].numpy()
            if float(np.var(y)) == 0.0:
                continue
            booster, info = fit_proxy(x, y, valid, configs, rounds, PROXY_PATIENCE,
                                      draw_seed(generator), min_gain, race)  # fmt: skip
            idx, score = _term_scores(tree_ensemble_to_fourier(booster, n))
            rows.append(idx)
            scores.append(score / bags)
            if bag == 0:
                infos.append({**info, "bags": bags})
    if not rows:
        return torch.zeros(0, 1, dtype=torch.long), torch.zeros(0, dtype=torch.float64), {}
    idx, score = _union_terms(rows, scores, n)
    return idx, score, (infos[0] if len(infos) == 1 else {"per_output": infos})


def _term_scores(spec: SparseSpectrum) -> tuple[Tensor, Tensor]:
    """``(indices, score)`` of a proxy's spectrum: a term's score is its squared coefficient,
    summed over outputs."""
    return spec.indices, spec.coefficients.double().reshape(spec.n_terms, -1).pow(2).sum(dim=1)


def _refit_terms(
    masks: Tensor, y: Tensor, fit: dict[str, Any], n: int, generator: torch.Generator
) -> tuple[Tensor, Tensor]:
    """``(indices, score)`` of one LightGBM proxy refitted on ``(masks, y)`` with the setting
    an earlier :func:`_proxy_terms` chose (``fit``: depth, rate, trees; no early stopping, no
    held-out rows): a term's score is its squared coefficient."""
    from torchspex.decoders._proxy import refit_proxy
    from torchspex.decoders.trees import tree_ensemble_to_fourier

    booster = refit_proxy(masks.numpy().astype(np.float32), y.numpy(), fit["max_depth"],
                          fit["learning_rate"], fit["n_trees"], draw_seed(generator),
                          fit.get("num_leaves"))  # fmt: skip
    return _term_scores(tree_ensemble_to_fourier(booster, n))


def _rows_in(rows: Tensor, among: Tensor, n: int) -> Tensor:
    """``bool [len(rows)]``: which normalized set rows are also rows of ``among``."""
    both = _stack_rows([rows, among])
    keys = row_keys(both, n)
    if keys is None:  # too wide for one integer key: compare rows through a unique over both
        _, keys = unique_rows(both)
    return torch.isin(keys[: rows.shape[0]], keys[rows.shape[0]:])


def _strongest_terms(idx: Tensor, score: Tensor, keep: int) -> tuple[Tensor, Tensor]:
    """The proxy terms ``(idx, score)`` that can be among a part's first ``keep`` candidates
    (:func:`_ranked_candidates`): every term of order 3 or less (the pairs or the triples may
    all be candidates, ranked by their scores) and, per parity, the ``keep`` best of the
    higher orders in the ranking's own order (score, then order, then the given order)."""
    sizes = set_sizes(idx)
    chosen = sizes <= 3
    for parity in (0, 1):
        rows = ((sizes > 3) & (sizes % 2 == parity)).nonzero().squeeze(1)
        if rows.numel() > keep:
            best = np.lexsort((sizes[rows].numpy(), -score[rows].numpy()))[:keep]
            rows = rows[torch.from_numpy(best)]
        chosen[rows] = True
    return idx[chosen], score[chosen]


def _ranked_candidates(
    fixed: Tensor, extra: list[Tensor], proxy_idx: Tensor, proxy_score: Tensor, n: int,
    parity: int | None,
) -> tuple[Tensor, Tensor, int]:
    """``(fixed rows, ranked candidate rows, n_first)`` of one parity (``None``: both).

    The candidates are the ``extra`` rows of one order (every pair, or every triple; the first
    ``n_first`` candidates, ranked among themselves by the proxy's score) followed by the
    proxy's other terms by score (terms the proxy lacks rank last)."""
    width = max([1, fixed.shape[1], proxy_idx.shape[1], *[e.shape[1] for e in extra]])

    def pad(rows: Tensor) -> Tensor:
        return torch.nn.functional.pad(rows, (0, width - rows.shape[1]), value=-1)

    sizes = set_sizes(proxy_idx)
    keep = sizes >= 2
    if parity is not None:
        keep &= sizes % 2 == parity
    pool = [pad(proxy_idx[keep])] + [pad(e) for e in extra]
    score = [proxy_score[keep]] + [torch.zeros(e.shape[0], dtype=torch.float64) for e in extra]
    # coalesce sums scores of duplicates: a proxy term also in `extra` keeps its proxy score
    idx, sc = coalesce(normalize_indices(torch.cat(pool)), torch.cat(score).unsqueeze(1), n)
    sc = sc.squeeze(1)
    # the fixed rows are never candidates
    fixed = normalize_indices(pad(fixed)) if fixed.shape[0] else pad(fixed)
    if fixed.shape[0] and idx.shape[0]:
        cand = ~_rows_in(normalize_indices(pad(idx)), fixed, n)
        idx, sc = idx[cand], sc[cand]
    sizes = set_sizes(idx)
    # rank: the `extra` low-order terms (every pair) first, then by the proxy's score; ties
    # (terms the proxy never used) by lower order
    tier_order = set_sizes(extra[0][:1]).item() if extra and extra[0].shape[0] else 2
    tier = (sizes != tier_order).long() if extra else torch.zeros_like(sizes)
    order = np.lexsort((sizes.numpy(), -sc.numpy(), tier.numpy()))
    n_first = int((tier == 0).sum()) if extra else 0
    return pad(fixed), pad(idx[torch.from_numpy(order)]), n_first


# ----------------------------------------------------------------------------- the fit


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
            every pair is a candidate when there are at most as many pairs as samples; ``True``
            / ``False`` force it), ``n_folds`` (cross-validation folds; default 5, and
            ``_part_fit.LARGE_PART_FOLDS`` for a part of ``_part_fit.CV_SINGLE_FROM`` terms or
            more),
            ``max_terms`` (most terms per part, default :func:`default_max_terms`), ``shrink``
            (``True``, default: the James-Stein shrinkage of the even part, its noise from a
            sandwich or, with fewer pairs than features, a jackknife, and below
            :data:`SLOPE_PAIRS` pairs per feature the factor capped by the calibration slope of
            refits, ``info["even"]["calibration_slope"]``; Shapley family),
            ``cross_fit`` (``True``, default: also fit the odd part to the residual of a
            cross-fitted proxy, and keep it from :data:`OFFSET_FEATURES` features on or where
            it cross-validates better; one output, fewer than :data:`CROSS_FIT_PAIRS` pairs
            per feature), ``effort`` (``"low"``, default: one LightGBM proxy ranks the
            candidates; ``"high"``: several, averaged, :func:`proxy_bags`).

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
        (weighted squared error over the pairs, each part and output scaled by its variance).
    """
    options = options or {}
    if family == "shapley" and options.get("sizes") is None:
        raise ValueError("fit_regression of the Shapley family needs options['sizes'], the "
                         "size rule its design used.")
    flat = values.reshape(values.shape[0], -1)
    start = time.perf_counter()
    use_proxy = bool(options.get("proxy", True))
    px_masks, px_values = proxy_data if proxy_data is not None else (masks, flat)
    px_flat = px_values.reshape(px_values.shape[0], -1)
    use_proxy = use_proxy and px_masks.shape[0] >= 32
    proxy_info: dict[str, Any] = {}
    proxy_idx = torch.zeros(0, 1, dtype=torch.long)
    proxy_score = torch.zeros(0, dtype=torch.float64)
    if use_proxy:
        try:
            proxy_idx, proxy_score, proxy_info = _proxy_terms(
                px_masks, px_flat, generator, options.get("effort", "low"))
        except ImportError:
            use_proxy = False
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
                                         own, defer_even)  # fmt: skip
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
        "effort": options.get("effort", "low"),
        **fit_info,
        "seconds": {"proxy": t_proxy, "fit": time.perf_counter() - start},
    }
    return spectrum, info


def paired_error(spectrum: SparseSpectrum, masks: Tensor, weights: Tensor, values: Tensor) -> float:
    """The error of ``spectrum`` on a paired design, on the scale of ``info["cv_error"]``.

    For a spectrum that did not see these samples this is a held-out error, comparable with the
    cross-validated error of :func:`fit_regression` on the same samples.
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


def _pairs_wanted(options: dict[str, Any], n: int, n_rows: int) -> bool:
    pairs = options.get("pairs")
    if pairs is None:
        return n * (n - 1) // 2 <= n_rows
    return bool(pairs)


def _at_empty(support: Tensor) -> Tensor:
    """The row ``C [1, s]`` of the value at ∅: every Walsh character is 1 there."""
    return torch.ones(1, support.shape[0], dtype=torch.float64)


def _odd_part(spectrum: SparseSpectrum) -> SparseSpectrum:
    """The odd-order terms of a spectrum (the part ``(f(S) - f(N∖S)) / 2``)."""
    odd = set_sizes(spectrum.indices) % 2 == 1
    return SparseSpectrum(spectrum.indices[odd], spectrum.coefficients[odd], spectrum.n_features)


class _FoldProxies:
    """The fold proxies of a cross-fit, read into Fourier spectra only when asked for.

    Item ``f`` is fold proxy ``f``'s ``(indices, score)`` (:func:`_term_scores`), which the
    even part's jackknife reuses (:func:`_even_refits`); :meth:`mean` is the mean of their
    spectra, which the odd part adds back where the offset is kept. Reading a booster's
    spectrum costs about as much as fitting it; where the offset is not kept and only the
    Shapley values are read (the even part deferred), nothing is read at all."""

    def __init__(self, boosters: list[Any], n: int) -> None:
        self._boosters = boosters
        self._n = n
        self._spectra: list[SparseSpectrum | None] = [None] * len(boosters)

    def __len__(self) -> int:
        return len(self._boosters)

    def spectrum(self, f: int) -> SparseSpectrum:
        """Fold proxy ``f``'s exact Fourier spectrum (read once)."""
        from torchspex.decoders.trees import tree_ensemble_to_fourier

        spec = self._spectra[f]
        if spec is None:
            spec = self._spectra[f] = tree_ensemble_to_fourier(self._boosters[f], self._n)
        return spec

    def __getitem__(self, f: int) -> tuple[Tensor, Tensor]:
        return _term_scores(self.spectrum(f))

    def mean(self) -> SparseSpectrum:
        """The mean of the fold proxies' spectra."""
        k = len(self)
        specs = [self.spectrum(f) for f in range(k)]
        idx, coef = _union_terms([sp.indices for sp in specs],
                                 [sp.coefficients.double().reshape(-1, 1) / k for sp in specs],
                                 self._n)  # fmt: skip
        return SparseSpectrum(idx, coef, self._n)


def _cross_fitted_proxy(
    masks: Tensor, flat: Tensor, fold: Tensor, n_folds: int, fit: dict[str, Any], n: int,
    generator: torch.Generator,
) -> tuple[Tensor, Tensor, _FoldProxies]:
    """The odd part of a proxy at the pair rows, each from a proxy that did not see the row.

    For each fold, a LightGBM proxy of the chosen setting (``fit``: depth, rate, trees, from
    :func:`_proxy_terms`) is refitted on the corners and the pairs of the other folds; each
    pair row gets the prediction of the proxy that did not see it (cross-fitting, as in
    shapiq's ProxySHAP with ``k_folds > 1``). Returns ``(odd [p], at_empty, proxies)``: the odd
    part ``(g(S) - g(N∖S)) / 2`` of those predictions, the fold proxies' mean odd part at ∅,
    ``(g(∅) - g(N)) / 2`` from their predictions at the corners, and the fold proxies
    (:class:`_FoldProxies`: their spectra are read when asked for).
    """
    from torchspex.decoders._proxy import refit_proxy

    p = fold.shape[0]
    pred = torch.zeros(2 * p, dtype=torch.float64)
    x = masks.numpy().astype(np.float32)
    y = flat[:, 0].numpy()
    boosters = []
    at_empty = 0.0
    for f in range(n_folds):
        out_pairs = (fold == f).nonzero().squeeze(1)
        train = np.ones(masks.shape[0], dtype=bool)
        train[(2 + 2 * out_pairs).numpy()] = False
        train[(3 + 2 * out_pairs).numpy()] = False
        booster = refit_proxy(x[train], y[train], fit["max_depth"], fit["learning_rate"],
                              fit["n_trees"], draw_seed(generator),
                              fit.get("num_leaves"))  # fmt: skip
        boosters.append(booster)
        rows = torch.stack([2 + 2 * out_pairs, 3 + 2 * out_pairs], dim=1).reshape(-1)
        # the booster's own prediction: its spectrum is exact on 0/1 masks, and LightGBM sums
        # a few leaves where the spectrum sums every term; rows 0 and 1 are the corners
        at = np.concatenate([[0, 1], rows.numpy()])
        values = np.asarray(booster.predict(x[at]), dtype=np.float64)
        at_empty += (values[0] - values[1]) / 2 / n_folds
        pred[torch.stack([2 * out_pairs, 2 * out_pairs + 1], dim=1).reshape(-1)] = (
            torch.from_numpy(values[2:]))
    return (pred[0::2] - pred[1::2]) / 2, torch.tensor(at_empty, dtype=torch.float64), \
        _FoldProxies(boosters, n)


def _with_proxy_offset(
    masks: Tensor, flat: Tensor, x: Tensor, odd_y: Tensor, w: Tensor, fixed: Tensor,
    ranked: Tensor, constraint: tuple[Any, Tensor], n: int, n_folds: int,
    generator: torch.Generator, max_terms: int, breaks: tuple[int, ...], proxy_fit: dict[str, Any],
    plain: tuple[Tensor, Tensor, dict[str, Any]] | None,
) -> tuple[Tensor, Tensor, dict[str, Any], tuple[Tensor, _FoldProxies]]:
    """The odd fit on the residual of a cross-fitted proxy (:func:`_cross_fitted_proxy`), if
    its cross-validated error is below the plain fit's (``plain``) or there are at least
    :data:`OFFSET_FEATURES` features (there the plain fit is not made: ``plain=None``); the
    proxy's odd part is then added to the fitted correction. The fourth element is ``(fold
    [p], proxies)``: the pairs' folds and the fold proxies (:class:`_FoldProxies`), whichever
    fit is kept."""
    fold = torch.randperm(x.shape[0], generator=generator) % n_folds
    # at least CROSS_FIT_TREES trees: the early stop on a fifth of few rows stops early
    proxy_fit = {**proxy_fit, "n_trees": max(proxy_fit["n_trees"], CROSS_FIT_TREES)}
    column, at_empty, proxies = _cross_fitted_proxy(masks, flat, fold, n_folds, proxy_fit, n,
                                                    generator)  # fmt: skip
    y = odd_y - column.unsqueeze(1)
    shifted = (constraint[0], constraint[1] - at_empty)
    # the correction's first-order terms may be shrunk toward zero (the proxy alone, its
    # efficiency gap split equally) as far as cross-validation asks
    idx, coef, info, _ = fit_part(x, y, w, fixed, ranked, shifted, n, n_folds, generator,
                                   max_terms, breaks,
                                   fixed_pens=_OFFSET_FIXED_PENALTIES)  # fmt: skip
    # the two errors on one scale (each part's error is scaled by its own variance)
    offset_error = info["cv_error"] * float(y.var(correction=0))
    # from OFFSET_FEATURES features on the offset is kept whatever the comparison says
    if plain is not None and not offset_error < plain[2]["cv_error"] * float(odd_y.var(
            correction=0)):  # fmt: skip
        kept = {**plain[2], "proxy_offset": False, "offset_cv_error": info["cv_error"]}
        return plain[0], plain[1], kept, (fold, proxies)
    proxy_odd = _odd_part(proxies.mean())
    idx, coef = _union_terms([idx, proxy_odd.indices],
                             [coef, proxy_odd.coefficients.double().reshape(-1, 1)], n)
    info = {**info, "cv_error": offset_error / float(odd_y.var(correction=0)),
            "proxy_offset": True}  # fmt: skip
    if plain is not None:
        info["plain_cv_error"] = plain[2]["cv_error"]
    return idx, coef, info, (fold, proxies)


def _fit_paired(
    masks: Tensor, weights: Tensor, flat: Tensor, proxy_idx: Tensor, proxy_score: Tensor,
    n: int, generator: torch.Generator, options: dict[str, Any],
    proxy_fit: dict[str, Any] | None = None, own_proxy: bool = False, defer_even: bool = False,
) -> tuple[SparseSpectrum, dict[str, Any]]:
    """The odd and the even regressions over the pairs ``(S, N∖S)`` of a paired design.

    ``defer_even``: return a :class:`~torchspex.fourier.DeferredSpectrum` whose even part is
    fitted when first read (:func:`_deferred_even`).

    ``own_proxy``: the proxy behind ``proxy_idx`` was fitted on these samples alone (the
    refits of the even part, for its jackknife and its calibration slope, then refit it per
    fold).

    With a proxy setting (``proxy_fit``, one output) the odd part is also fitted to the
    residual of a cross-fitted proxy (:func:`_with_proxy_offset`), and the fit with the lower
    cross-validated error is kept."""
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
    odd_idx, odd_score = proxy_idx, proxy_score
    screen = n >= 3 and 2 * n <= p and n**3 * min(p, SCREEN_ROWS) <= SCREEN_FLOPS
    at = torch.linspace(0, p - 1, min(p, SCREEN_ROWS)).round().long()
    if SCREEN_TRIPLES and not triples and screen:
        # the triples that correlate most with the first-order fit's residual join the
        # proxy's terms (scores on one scale: squared coefficients); at most SCREEN_ROWS
        # pairs, evenly spaced, enter the screen
        rows, score = _screened_triples(x[at], odd_y[at], w[at], n, max(1, p // 8))
        odd_idx, odd_score = _union_terms([proxy_idx, rows], [proxy_score, score], n)
    odd_idx_all, odd_score_all = odd_idx, odd_score
    odd_fixed, odd_ranked, n_triples = _ranked_candidates(first[1:], triples, odd_idx,
                                                          odd_score, n, 1)  # fmt: skip
    extra = [_sets_of_order(n, 2)] if _pairs_wanted(options, n, p) and n >= 2 else []
    even_fixed, even_ranked, n_pairs = _ranked_candidates(first[:1], extra, proxy_idx,
                                                          proxy_score, n, 0)  # fmt: skip
    info: dict[str, Any] = {"n_pairs": p}
    if p == 0:
        # only the corners: the linear function through them, split equally
        odd_idx, odd_coef = odd_fixed, ((f_empty - f_full) / 2 / n).expand(n, -1).clone()
        even_idx, even_coef = even_fixed, ((f_empty + f_full) / 2).reshape(1, -1)
    else:
        odd_constraint = (_at_empty, (f_empty - f_full) / 2)
        offset = (proxy_fit is not None and "max_depth" in proxy_fit and flat.shape[1] == 1
                  and 2 * n_folds <= p < CROSS_FIT_PAIRS * n
                  and options.get("cross_fit", True))  # fmt: skip
        plain = None
        if not offset or n < OFFSET_FEATURES:  # else the offset is kept whatever: no plain fit
            folds_state = generator.get_state()
            plain = fit_part(x, odd_y, w, odd_fixed, odd_ranked, odd_constraint, n, part_folds,
                             generator, max_terms, (n_triples,) if triples else (),
                             average=ODD_AVERAGE)[:3]  # fmt: skip
            rescreen = n**3 * min(p, SCREEN_ROWS) <= RESCREEN_FLOPS
            if RESCREEN_TRIPLES and SCREEN_TRIPLES and not triples and screen and rescreen:
                # a second screen against the fitted odd part's residual (RESCREEN_TRIPLES)
                def refit(ranked: Tensor) -> tuple[Tensor, Tensor, dict[str, Any]]:
                    return fit_part(x, odd_y, w, odd_fixed, ranked, odd_constraint, n,
                                     part_folds, torch.Generator().set_state(folds_state),
                                     max_terms, (), average=ODD_AVERAGE)[:3]  # fmt: skip

                plain = _rescreened_odd(x[at], odd_y[at], w[at], plain, odd_fixed,
                                        (odd_idx_all, odd_score_all), refit, n, p)  # fmt: skip
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
            )
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
            even = SparseSpectrum(even_idx, even_coef, n)
            refits = slope = None
            if p < max(SLOPE_PAIRS, JACKKNIFE_PAIRS) * n:
                refits, slope = _even_refits(masks, flat, w, extra, (proxy_idx, proxy_score),
                                             own_proxy, n, n_folds, gen, max_terms, even,
                                             options.get("effort", "low"), proxy_fit,
                                             fold_proxies)  # fmt: skip
            if refits is not None and p < JACKKNIFE_PAIRS * n:
                factor = jackknife_stein_factor(even_pairs(even), refits)
                even_info["shrinkage_noise"] = "jackknife"
            else:
                factor = _stein_factor(even_idx, even_coef, even_spread, n, "k-SII", 2)
                even_info["shrinkage_noise"] = "sandwich"
            if slope is not None and p < SLOPE_PAIRS * n:
                even_info["stein_factor"] = factor.tolist()
                even_info["calibration_slope"] = slope.tolist()
                factor = torch.minimum(factor, slope)
            scaled = scale_even(even, factor)
            even_info["shrinkage"] = factor.tolist()
            return scaled.indices, scaled.coefficients, even_info

        if defer_even:
            return _deferred_even(odd_idx, odd_coef, (f_empty + f_full) / 2, fit_even, info, n)
        even_idx, even_coef, info["even"] = fit_even()
    info["cv_error"] = info["odd"]["cv_error"] + info["even"]["cv_error"] if p else math.nan
    idx, coef = _union_terms([even_idx, odd_idx], [even_coef, odd_coef], n)
    return SparseSpectrum(idx, coef, n), info


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


def _rescreened_odd(
    xs: Tensor, ys: Tensor, ws: Tensor, fit: tuple[Tensor, Tensor, dict[str, Any]],
    fixed: Tensor, candidates: tuple[Tensor, Tensor],
    refit: Callable[[Tensor], tuple[Tensor, Tensor, dict[str, Any]]], n: int, p: int,
) -> tuple[Tensor, Tensor, dict[str, Any]]:
    """The odd part ``fit = (support, coefficients, info)``, refitted where a second screen of
    the triples (:func:`_screened_triples` on the screen's rows: ``xs``, odd values ``ys``,
    weights ``ws``) against its residual finds triples outside its support that carry
    :data:`RESCREEN_SHARE` or more of the residual's weighted energy (the sum of their squared
    coefficient estimates over it): they rank first, before the first fit's pool
    ``candidates = (rows, scores)``, and ``refit(ranked)`` (on the first fit's folds) is kept
    where it cross-validates better (``fixed``: the rows every fit holds, never candidates).
    ``info["rescreen"]`` records the new triples, their
    share and, where it ran, whether the refit was kept."""
    support, coef, info = fit
    resid = ys - walsh_design(xs, support, n) @ coef
    rows, score = _screened_triples(xs, resid, ws, n, max(1, p // 8))
    fresh = ~_rows_in(normalize_indices(rows), normalize_indices(support), n)
    energy = float(((ws.unsqueeze(1) * resid**2).sum(dim=0) / ws.sum()).sum())
    share = float(score[fresh].sum()) / max(energy, 1e-300)
    record: dict[str, Any] = {"new_triples": int(fresh.sum()), "share": share}
    info = {**info, "rescreen": record}
    if not bool(fresh.any()) or share < RESCREEN_SHARE:
        return support, coef, info
    pool, pool_score = candidates
    top = float(pool_score.max()) if pool_score.numel() else 0.0
    rank = torch.arange(int(fresh.sum()), 0, -1, dtype=torch.float64)
    idx, sc = _union_terms([rows[fresh], pool], [(top + 1.0) * (1.0 + rank), pool_score], n)
    _, ranked, _ = _ranked_candidates(fixed, [], idx, sc, n, 1)
    again = refit(ranked)
    record["refit_kept"] = again[2]["cv_error"] < info["cv_error"]
    if record["refit_kept"]:
        return again[0], again[1], {**again[2], "rescreen": record}
    return support, coef, info


def _size_strata(x: Tensor, least: int = 4) -> tuple[Tensor, Tensor]:
    """Strata of the pair rows ``x [p, n]`` for the sampling variance: their size classes
    ``min(|S|, n - |S|)``, neighbouring classes merged until each stratum has ``least`` rows
    (systematic sampling leaves one or two rows in many classes when ``n`` is large), ``-1``
    for classes enumerated completely (no sampling variance); and each row's share of its
    class that the rows cover (the finite-population correction)."""
    n = x.shape[1]
    k = x.sum(dim=1)
    cls = torch.minimum(k, n - k)
    label = torch.full_like(cls, -1)
    fraction = torch.ones(x.shape[0], dtype=torch.float64)
    stratum, in_stratum = 0, 0
    for s, m in zip(*torch.unique(cls, return_counts=True)):
        total = math.comb(n, int(s)) // (2 if 2 * int(s) == n else 1)
        if int(m) >= total:
            continue
        rows = cls == s
        fraction[rows] = int(m) / total
        label[rows] = stratum
        in_stratum += int(m)
        if in_stratum >= least:
            stratum, in_stratum = stratum + 1, 0
    if 0 < in_stratum < least and stratum > 0:  # a short last stratum joins the one before
        label[label == stratum] = stratum - 1
    return label, fraction


def _even_refits(
    masks: Tensor, flat: Tensor, w: Tensor, extra: list[Tensor],
    ranking: tuple[Tensor, Tensor], own_proxy: bool, n: int, n_folds: int,
    generator: torch.Generator, max_terms: int, even: SparseSpectrum, effort: str = "low",
    proxy_fit: dict[str, Any] | None = None,
    fold_proxies: tuple[Tensor, _FoldProxies] | None = None,
) -> tuple[list[tuple[Tensor, Tensor]], Tensor]:
    """Refits of the even fit without one fold of the pairs each, and what they say about it.

    :data:`~torchspex.decoders._shrink.JACKKNIFE_FOLDS` refits, each on the pairs of the other
    folds, with the proxy refitted on those when it was fitted on these samples
    (``own_proxy``; else the given ``ranking`` of candidates is kept; with one output and
    ``effort="low"`` the refit keeps the setting ``proxy_fit`` chose, depth, rate and trees,
    instead of early-stopping again: :func:`_refit_terms`; ``fold_proxies``, the folds and
    fold proxies of the odd part's cross-fit (:func:`_with_proxy_offset`) when it ran with as
    many folds: those proxies were refitted without the same pairs, so they are reused, not
    fitted again) and the terms and penalty cross-validated again. Returns ``(pairs,
    slope)``: each refit's :func:`~torchspex.decoders._shrink.even_pairs` (for the jackknife
    noise) and the calibration slope ``[o]`` of their out-of-fold predictions, the weighted
    (the pairs' weights) least-squares factor ``c`` in ``y(S) - y(∅) ~ c (g(S) - g(∅))`` over
    the held-out pairs (van Houwelingen's cross-validated shrinkage factor), clamped to
    ``[0, 1]``: how much of the even fit's departure from the constant carries over to pairs
    it did not see. It is 0 where no refit departs from the constant (the fit's pairs are not
    reproduced without any one fold).
    """
    p = (masks.shape[0] - 2) // 2
    if fold_proxies is not None and len(fold_proxies[1]) != JACKKNIFE_FOLDS:
        fold_proxies = None
    if fold_proxies is None:
        fold = torch.randperm(p, generator=generator) % JACKKNIFE_FOLDS
    else:
        fold = fold_proxies[0]
    constant = _first_order_rows(n, 1)[:1]
    at_empty = even.coefficients.double().reshape(even.n_terms, -1).sum(dim=0)
    num = torch.zeros_like(at_empty)
    den = torch.zeros_like(at_empty)
    refits = []
    for f in range(JACKKNIFE_FOLDS):
        kept = (fold != f).nonzero().squeeze(1)
        first, second = 2 + 2 * kept, 3 + 2 * kept  # each kept pair's S and N∖S rows
        idx, score = ranking
        if own_proxy:
            rows = torch.cat([torch.tensor([0, 1]), torch.stack([first, second], 1).reshape(-1)])
            if fold_proxies is not None:
                idx, score = fold_proxies[1][f]
            elif effort == "low" and proxy_fit is not None and "max_depth" in proxy_fit:
                idx, score = _refit_terms(masks[rows], flat[rows, 0], proxy_fit, n, generator)
            else:
                idx, score, _ = _proxy_terms(masks[rows], flat[rows], generator, effort)
        fixed, ranked, n_pairs = _ranked_candidates(constant, extra, idx, score, n, 0)
        y = (flat[first] + flat[second]) / 2
        support, coef, _, _ = fit_part(masks[first], y, w[kept], fixed, ranked,
                                        (_at_empty, at_empty), n, n_folds, generator,
                                        max_terms, (n_pairs,))  # fmt: skip
        refits.append(even_pairs(SparseSpectrum(support, coef, n)))
        held = (fold == f).nonzero().squeeze(1)
        # the refit's departure from its value at ∅ (an even term is chi_T(S) - 1 away)
        sizes = set_sizes(support)
        varying = sizes > 0
        g = (walsh_design(masks[2 + 2 * held], support[varying], n) - 1.0) @ coef[varying]
        y_held = (flat[2 + 2 * held] + flat[3 + 2 * held]) / 2 - at_empty
        num += (w[held].unsqueeze(1) * y_held * g).sum(dim=0)
        den += (w[held].unsqueeze(1) * g * g).sum(dim=0)
    slope = torch.where(den > 0, num / den.clamp(min=1e-300), torch.zeros_like(den))
    return refits, slope.clamp(0.0, 1.0)


def _stein_factor(
    idx: Tensor, coef: Tensor, spread: Tensor, n: int, index: str, order: int
) -> Tensor:
    """Positive-part James-Stein factor ``[o]`` for the ``index`` values of order ``order``
    of ``(idx, coef)`` (the deviation from the shrinkage target): ``max(0, 1 - tr / ||v||^2)``
    with ``tr`` the trace of their sampling covariance, from ``spread`` (``[o, r, p]``, the
    factor of those values' covariance: ``_part_fit._coefficient_spread`` projected by
    :func:`_index_map`)."""
    from torchspex.fourier import fourier_to_index

    view = fourier_to_index(SparseSpectrum(idx, coef, n), index, order)
    norm = view.coefficients[view.orders == order].pow(2).sum(dim=0)  # [o]
    return stein_factor(spread.pow(2).sum(dim=(1, 2)), norm)


def _index_map(idx: Tensor, n: int, index: str, order: int) -> Tensor:
    """``[r, s]``: the linear map from the Fourier coefficients of the terms ``idx [s, d]``
    (sorted rows, ``-1`` padded) to the ``index`` values of the ``r`` sets of order ``order``
    inside them (ascending by set). The value of a set ``P`` is ``sum_{K ⊇ P} W[|K|] F(K)``
    with ``W`` the index's weight table (:func:`~torchspex.fourier.indices.fourier_weights`),
    so the map is a scatter of one weight per (term, subset), not a conversion."""
    from torchspex.fourier.indices import fourier_weights

    s, d = idx.shape
    if d < order or s == 0:
        return torch.zeros(0, s, dtype=torch.float64)
    sizes = set_sizes(idx)
    weight = fourier_weights(index, order, max(int(sizes.max()), order))[:, order]
    sub = idx[:, torch.combinations(torch.arange(d), order)]  # [s, C, order]
    term, which = (sub >= 0).all(dim=-1).nonzero(as_tuple=True)
    key = (sub[term, which] * (n ** torch.arange(order - 1, -1, -1))).sum(dim=1)
    sets, row = torch.unique(key, return_inverse=True)
    out = torch.zeros(sets.numel(), s, dtype=torch.float64)
    out[row, term] = weight[sizes[term]]
    return out


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
    extra = [_sets_of_order(n, 2)] if _pairs_wanted(options, n, m // 2) and n >= 2 else []
    fixed, ranked, n_pairs = _ranked_candidates(first, extra, proxy_idx, proxy_score, n, None)
    w = torch.ones(m, dtype=torch.float64)
    max_terms = options.get("max_terms") or max(n + 1, (3 * m) // 4)
    idx, coef, info, _ = fit_part(masks, flat, w, fixed, ranked, (corner_rows, corners), n,
                                   options.get("n_folds", N_FOLDS), generator, max_terms,
                                   (n_pairs,))  # fmt: skip
    return SparseSpectrum(idx, coef, n), {"fit": info, "cv_error": info["cv_error"]}
