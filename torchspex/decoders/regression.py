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

What the cross-validation costs: every prefix of the ranked support comes from one Cholesky
factor per fold and penalty (:func:`_prefix_solutions`); the penalties are walked from the
middle of their ladder while the error falls, not all scored (:func:`_penalty_walk`); up to
20 features the fold normal equations are gathers from a Walsh-Hadamard transform of each
fold's mask histogram, not products over the rows (:func:`_walsh_normals`); and from
:data:`DEEP_ROWS` samples the proxy grows depth-8 trees only, at learning rate
:data:`DEEP_RATE` (not 0.1) for fewer rounds, and parts of :data:`CV_SINGLE_FROM` terms or
more are cross-validated on :data:`LARGE_PART_FOLDS` folds, not 5.

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

from torchspex.decoders import _linalg, _proxy
from torchspex.decoders._budgets import regression_n_samples as suggest_n_samples
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
from torchspex.fourier._sets import coalesce, normalize_indices, row_keys, set_sizes
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

#: Cross-validation walks the ladder of ``_PENALTIES`` from its middle (:func:`_penalty_walk`)
#: instead of scoring all of it.
PENALTY_WALK = True
#: Relative ridge penalties tried on the discovered (non first-order) terms. Two of them,
#: ``(0, 1e-2)``, cut the decode 10-30% (4,096 calls: the MLP 9.4 -> 6.4 s) but raised the SV
#: error 2-10% on MiniLM and the digits CNN over 2x2 patches at most budgets (6 seeds,
#: ``benchmarks/decode_variants.py low,low+pens2``, results/decode_variants_pens2.json): kept.
_PENALTIES = (0.0, 1e-4, 1e-3, 1e-2, 1e-1)
#: ... and on the always-kept terms (order 1, the constant) when there are few rows per term.
_FIXED_PENALTIES = (0.0, 1e-3, 1e-2, 1e-1, 1.0)
#: ... and on the first-order terms of the correction to a cross-fitted proxy, up to nearly
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
#: 4,096 calls. This rate, depth 8 alone and :data:`LARGE_PART_FOLDS` against the previous 0.1
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
#: Parts of at least this many terms score their cross-validation settings in float32 (the
#: Cholesky factors, the prefix solutions and the held-out predictions; the errors are summed
#: in float64), with a ridge floor of ``CV_SINGLE_RIDGE`` (relative to the mean diagonal)
#: instead of 1e-9, which float32 cannot resolve. The choice only ranks settings; the fits
#: after it are float64. At 2,048 and 4,096 calls (3 seeds, MLP, MiniLM, the CNN over 2x2
#: patches; ``python benchmarks/decode_variants.py low,low+cv64 --budgets 1024,2048,4096``,
#: results/decode_variants_cv32.json) every SV and k-SII pair error was unchanged to five
#: digits and the decode took 12-22% less; below 512 terms (1,024 calls) nothing changes.
CV_SINGLE_FROM = 512
CV_SINGLE_RIDGE = 1e-6
#: ... and are cross-validated on this many folds, not 5 (unless ``n_folds`` is given): the
#: Cholesky factors per fold and penalty are the decode's largest cost there. Against 5 folds
#: (16 seeds, 2,048 and 4,096 calls, ``python benchmarks/decode_variants.py low,low+f5
#: --budgets 2048,4096 --seeds 16``, results/decode_variants_large_part_folds.json): SV
#: errors -5% to +1%, k-SII pair errors +4% to +13%, decode -17% to -22%.
LARGE_PART_FOLDS = 3
#: Cross-validation folds otherwise (the ``n_folds`` option's default).
N_FOLDS = 5
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
AVG_TOL = 2.0
#: The settings averaged share the best one's penalties (they are its prefixes, from one
#: Cholesky factor), instead of coming from every penalty (one float64 factor each). Against
#: every penalty (12 seeds, 128-4,096 calls, LightGBM on diabetes, the MLP on wine, MiniLM, the
#: CNN over 2x2 patches: ``python benchmarks/decode_variants.py low,low+allpens --seeds 12``,
#: results/decode_variants_one_penalty.json): SV error -6% to +1.5% (lower in 13 of 17 cells
#: that are not exact; 4,096 calls -2%, -3%, +0.2%), pairs unchanged (the even part is not
#: averaged), decode -5% to -7% at 4,096 calls and level below; the planted n = 64 games (6
#: seeds, 512-4,096 calls, ``_n64.json``) within 2.3% and exact at 4,096 calls.
AVERAGE_ONE_PENALTY = True
#: Numbers of discovered terms tried by cross-validation (steps of about sqrt(2)).
_PREFIXES = tuple(sorted({round(2 ** (i / 2)) for i in range(0, 30)}))


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
        _, keys = torch.unique(both, dim=0, return_inverse=True)
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
def _solve_batched(
    gram: Tensor, rhs: Tensor, penalty: Tensor, c: Tensor | None, d: Tensor | None
) -> Tensor:
    """``argmin b'Gb - 2 b'r + sum_j penalty_j b_j^2`` subject to ``c b = d``, batched.

    ``gram [F, s, s] = A'WA`` and ``rhs [F, s, o] = A'Wy`` of ``F`` weighted least-squares
    problems (the folds), ``penalty [P, s]`` relative ridge penalties (scaled by the mean
    diagonal of each Gram matrix); returns ``[P, F, s, o]``. Solved through the KKT system; a
    tiny ridge on every column keeps it regular when there are more terms than samples (the
    minimum-norm solution in the limit).
    """
    n_f, s = gram.shape[0], gram.shape[1]
    scale = torch.diagonal(gram, dim1=1, dim2=2).mean(dim=1).clamp(min=1e-300)  # [F]
    r = 0 if c is None else c.shape[0]
    kkt = torch.zeros(penalty.shape[0], n_f, s + r, s + r, dtype=torch.float64)
    kkt[:, :, :s, :s] = gram.unsqueeze(0)
    diag = (penalty + 1e-9).unsqueeze(1) * scale.view(1, -1, 1)  # [P, F, s]
    kkt[:, :, range(s), range(s)] += diag
    b = rhs.unsqueeze(0).expand(penalty.shape[0], -1, -1, -1)
    if r:
        assert c is not None and d is not None
        kkt[:, :, :s, s:] = c.T
        kkt[:, :, s:, :s] = c
        b = torch.cat([b, d.expand(penalty.shape[0], n_f, -1, -1)], dim=2)
    return torch.linalg.solve(kkt, b)[:, :, :s]


def _solve_refined(
    gram: Tensor, rhs: Tensor, penalty: Tensor, c: Tensor | None, d: Tensor | None,
    steps: int = 3,
) -> Tensor:
    """:func:`_solve_batched` for one problem (``gram [s, s]``, ``rhs [s, o]``, ``penalty
    [s]``), then iterative refinement against the system without the tiny regularizing ridge,
    so an exact fit stays exact to round-off (the ridge alone leaves a bias of about 1e-9).
    Directions the rows do not determine keep the minimum-norm choice: the residual never has
    a component there."""
    s = gram.shape[0]
    r = 0 if c is None else c.shape[0]
    scale = torch.diagonal(gram).mean().clamp(min=1e-300)
    exact = gram + torch.diag(penalty * scale)
    kkt = torch.zeros(s + r, s + r, dtype=torch.float64)
    kkt[:s, :s] = exact + 1e-9 * scale * torch.eye(s, dtype=torch.float64)
    b = rhs
    if c is not None:
        assert d is not None
        kkt[:s, s:], kkt[s:, :s] = c.T, c
        b = torch.cat([rhs, d])
    lu, pivots = _linalg.lu_factor(kkt)
    coef = _linalg.lu_solve(lu, pivots, b)[:s]
    for _ in range(steps):
        resid = rhs - exact @ coef
        if c is not None:  # the constraint holds; the correction keeps it (C step = 0)
            resid = torch.cat([resid, torch.zeros(r, rhs.shape[1], dtype=torch.float64)])
        coef = coef + _linalg.lu_solve(lu, pivots, resid)[:s]
    return coef


def _fold_normals(
    a: Tensor, aw: Tensor, y: Tensor, fold: Tensor, n_folds: int
) -> tuple[Tensor, Tensor, Tensor, list[Tensor], list[Tensor]]:
    """``(fold, A'WA, A'Wy, grams, rhss)``: the normal equations of the design ``a`` (``aw =
    W a``) and each fold's training share of them (``A'WA`` and ``A'Wy`` without the fold's
    rows). The full matrices are the sums of the folds' own shares, so the training shares
    cost no second product over every row."""
    grams, rhss = [], []
    for f in range(n_folds):
        test = fold == f
        grams.append(a[test].T @ aw[test])
        rhss.append(aw[test].T @ y[test])
    gram, rhs = grams[0].clone(), rhss[0].clone()
    for g, r in zip(grams[1:], rhss[1:]):
        gram += g
        rhs += r
    for f in range(n_folds):  # in place: the fold's own share becomes the rest's
        torch.sub(gram, grams[f], out=grams[f])
        torch.sub(rhs, rhss[f], out=rhss[f])
    return fold, gram, rhs, grams, rhss


def _averaged_fit(
    gram: Tensor, rhs: Tensor, c: Tensor | None, d: Tensor | None,
    settings: list[tuple[int, float, float]], n_fixed: int, steps: int = 3,
) -> Tensor:
    """The mean of the fits of ``settings`` ``(columns, penalty, fixed penalty)``, each as
    :func:`_solve_refined` gives it, ``[max columns, o]``.

    Settings of one penalty share a float64 Cholesky factor of their largest leading block
    (with the tiny ridge) and take every prefix from it (:func:`_prefix_solutions`); each is
    then refined against its system without the ridge. Where that factor fails, the settings
    go through the KKT system (:func:`_solve_refined`)."""
    cols, o = max(t[0] for t in settings), rhs.shape[1]
    coef = torch.zeros(cols, o, dtype=torch.float64)
    # the penalties are relative to the mean diagonal of each prefix: one in a Walsh design
    # (every column's squared norm is sum(w)), so its settings of one penalty share a factor
    diag = torch.diagonal(gram).clamp(min=0.0).cumsum(0)
    groups: list[tuple[float, float, float, list[int]]] = []
    for k, pen, fixed_pen in sorted(settings, reverse=True):
        scale = max(float(diag[k - 1]) / k, 1e-300)
        group = next((gr for gr in groups if gr[:2] == (pen, fixed_pen)
                      and abs(gr[2] - scale) <= 1e-12 * gr[2]), None)  # fmt: skip
        if group is None:
            groups.append((pen, fixed_pen, scale, [k]))
        else:
            group[3].append(k)
    for pen, fixed_pen, scale, ks in groups:
        s = max(ks)
        penalty = torch.full((s,), pen, dtype=torch.float64)
        penalty[:n_fixed] = fixed_pen
        exact = gram[:s, :s] + torch.diag(penalty * scale)
        c_s = None if c is None else c[:, :s]
        chol, bad = _linalg.ShiftedCholesky(exact.unsqueeze(0))(
            torch.full((1, s), 1e-9 * float(scale), dtype=torch.float64))
        if bool(bad.any()):
            for k in ks:
                coef[:k] += _solve_refined(gram[:k, :k], rhs[:k], penalty[:k],
                                           None if c is None else c[:, :k], d) / len(settings)
            continue
        fits = _prefix_solutions(chol, rhs[:s].unsqueeze(0), c_s, d, ks)[0]  # [s, G, o]
        # every setting refined at once against the system without the ridge, on its prefix
        cut = torch.zeros(s, len(ks), 1, dtype=torch.float64)
        for g, k in enumerate(ks):
            cut[:k, g] = 1.0
        for _ in range(steps):
            resid = (rhs[:s].unsqueeze(1) - torch.einsum("ij,jgo->igo", exact, fits)) * cut
            fits = fits + _prefix_corrections(chol, resid, c_s, ks)
        for g, k in enumerate(ks):
            coef[:k] += fits[:k, g] / len(settings)
    return coef


def _walsh_normals(
    x: Tensor, support: Tensor, w: Tensor, y: Tensor, fold: Tensor, n_folds: int, n: int,
    fold_dtype: torch.dtype = torch.float64,
) -> tuple[Tensor, Tensor, Tensor, list[Tensor] | Tensor, list[Tensor]]:
    """:func:`_fold_normals` of the Walsh design of ``support`` at the rows ``x bool [p, n]``
    without forming products over the rows: a Walsh design's Gram entry is a character sum,
    ``(A'WA)_jk = sum_i w_i chi_{K_j xor K_k}(x_i)``, and ``(A'Wy)_j = sum_i w_i y_i
    chi_{K_j}(x_i)``, so one Walsh-Hadamard transform of each fold's weighted histogram over
    the ``2^n`` masks gives every entry (``n 2^n`` operations per fold instead of ``s^2 p /
    F``); the matrices are gathers from it. Equal to the products up to round-off.

    ``fold_dtype=torch.float32``: the folds' training Gram matrices come as one float32 tensor
    ``[F, s, s]`` (what a cross-validation in float32 factors), each entry its float64 value
    rounded once, gathered from a float32 table (half the memory traffic of a float64
    gather and no second copy; measured on the MLP on wine at 4,096 calls with parts of 1,032
    terms: 4 of the 6 gathers of 1,032^2 entries per part)."""
    from torchspex.fourier._basis import fwht

    o, s = y.shape[1], support.shape[0]
    bit = torch.ones(1, dtype=torch.long) << torch.arange(n)
    row = (x.long() * bit).sum(dim=1)  # [p] each row's mask as an integer
    key = torch.where(support >= 0, bit[support.clamp(min=0)], 0).sum(dim=1)  # [s]
    both = (key.unsqueeze(1) ^ key.unsqueeze(0)).reshape(-1)  # [s * s]
    weighted = torch.cat([w.unsqueeze(1), w.unsqueeze(1) * y], dim=1)  # [p, 1 + o]
    folds = []
    total = torch.zeros(1 << n, 1 + o, dtype=torch.float64)
    for f in range(n_folds):
        test = fold == f
        hist = torch.zeros(1 << n, 1 + o, dtype=torch.float64).index_add_(0, row[test],
                                                                          weighted[test])
        folds.append(fwht(hist))  # [2^n, 1 + o]: every character's weighted sums over the fold
        total += folds[-1]

    def gather(sums: Tensor) -> Tensor:  # index_select: 5x a fancy index
        return sums[:, 0].contiguous().index_select(0, both).view(s, s)

    rest = [total - sums for sums in folds]  # every character's sums without the fold
    gram, rhs, rhss = gather(total), total[key, 1:], [r[key, 1:] for r in rest]
    if fold_dtype == torch.float64:
        return fold, gram, rhs, [gather(r) for r in rest], rhss
    grams = torch.empty(n_folds, s, s, dtype=fold_dtype)
    for f, r in enumerate(rest):
        torch.index_select(r[:, 0].to(fold_dtype), 0, both, out=grams[f].view(-1))
    return fold, gram, rhs, grams, rhss


#: Up to this many features the fold normal equations may come from :func:`_walsh_normals`
#: (:func:`_walsh_normals_pay`); the ``2^n`` table then holds at most 8 MiB per column.
WALSH_NORMALS_FEATURES = 20
#: The cost rule of :func:`_walsh_normals_pay`, in units of one multiply-add of the row
#: products: a transform step over the ``2^n`` table costs ``WALSH_STEP_COST`` (twice that
#: past 2^16 masks, where the table leaves the cache) and a gathered entry ``GATHER_COST``.
#: Set from ``python benchmarks/walsh_normals.py`` (results/walsh_normals.json: the row
#: products 0.06-0.09 ns per multiply-add, a transform step ~2 ns, ~4 ns at n = 18-20, a
#: gather 2-4 ns); the rule picks the faster way at all 11 sizes there, where the old one
#: (``n 2^n <= s p``) took the products at n = 16 on 1,023 rows and 781 terms (the digits
#: CNN over 2x2 patches at 2,048 calls: 38 against 10 ms).
WALSH_STEP_COST, GATHER_COST = 32, 50


def _walsh_normals_pay(n: int, s: int, p: int, n_folds: int) -> bool:
    """Whether :func:`_walsh_normals` costs less than the row products (``s`` terms, ``p``
    rows, ``n_folds`` folds): ``F n 2^n`` transform steps and ``F s^2`` gathers against
    ``s^2 p`` multiply-adds (:data:`WALSH_STEP_COST`)."""
    if n > WALSH_NORMALS_FEATURES:
        return False
    step = WALSH_STEP_COST * (1 if n <= 16 else 2)
    return n_folds * ((n << n) * step + s * s * GATHER_COST) <= s * s * p


def _cross_validate(
    a: Tensor, aw: Tensor | None, y: Tensor, w: Tensor, scale: Tensor, c: Tensor | None,
    d: Tensor | None, n_fixed: int, grid: list[int], fixed_pens: tuple[float, ...],
    n_folds: int, generator: torch.Generator, keep: int = 1,
    normal: tuple[Tensor, Tensor, Tensor, list[Tensor] | Tensor, list[Tensor]] | None = None,
) -> list[tuple[float, int, float, float]]:
    """The ``keep`` settings ``(cv error, terms, penalty, fixed penalty)`` with the lowest
    ``n_folds``-fold error, best first: after the best, those within :data:`AVG_TOL` times its
    error, at its penalties (:data:`AVERAGE_ONE_PENALTY`).

    Every prefix of the support is scored from one Cholesky factor per fold and penalty
    (:func:`_prefix_solutions`). ``normal``: :func:`_fold_normals` when the caller has them
    (else the folds are drawn from ``generator`` here).
    """
    p, s = a.shape
    if normal is None:
        aw = w.unsqueeze(1) * a if aw is None else aw
        normal = _fold_normals(a, aw, y, torch.randperm(p, generator=generator) % n_folds,
                               n_folds)  # fmt: skip
    fold, _, _, train_grams, train_rhss = normal
    # large parts score their settings in float32 (see CV_SINGLE_FROM); the fallback below
    # and every fit after the choice stay in float64
    single = s >= CV_SINGLE_FROM
    dtype = torch.float32 if single else torch.float64
    if isinstance(train_grams, Tensor) and train_grams.dtype == dtype:
        gram_f = train_grams  # [F, s, s]: A'WA without fold f (from _walsh_normals)
    else:
        gram_f = torch.empty(n_folds, s, s, dtype=dtype)
        for f, train_gram in enumerate(train_grams):
            gram_f[f] = train_gram
    rhs_f = torch.stack(train_rhss)  # [F, s, o]
    tests = [(a[fold == f], y[fold == f], w[fold == f]) for f in range(n_folds)]
    # every column of a Walsh design has squared norm sum(w): the mean diagonal of any prefix
    diag_scale = torch.diagonal(gram_f, dim1=1, dim2=2).double().mean(dim=1).clamp(min=1e-300)
    rhs_exact, c_exact, d_exact = rhs_f, c, d  # the float64 KKT fallback's
    floor = CV_SINGLE_RIDGE if single else 1e-9
    if single:
        rhs_f = rhs_f.float()
        c, d = (None, None) if c is None or d is None else (c.float(), d.float())
        tests = [(a_t.float(), y_t.float(), w_t) for a_t, y_t, w_t in tests]
    factor = _linalg.ShiftedCholesky(gram_f)

    def score(fp: float, pen: float, ks: list[int]) -> list[tuple[float, int, float, float]]:
        if not ks:
            return []
        cols = [n_fixed + k for k in ks]
        penalty = torch.full((s,), pen + floor, dtype=torch.float64)
        penalty[:n_fixed] = fp + floor
        chol, bad = factor((penalty * diag_scale.unsqueeze(1)).to(gram_f.dtype))
        if bool(bad.any()):  # not numerically positive definite: the KKT system per prefix
            if isinstance(train_grams, Tensor) and train_grams.dtype != torch.float64:
                # the folds' float64 matrices, not kept by _walsh_normals in float32
                exact = torch.stack(_fold_normals(a, w.unsqueeze(1) * a, y, fold, n_folds)[3])
            else:
                exact = torch.stack(list(train_grams))
            coef = _kkt_prefixes(exact, rhs_exact, c_exact, d_exact, cols, n_fixed, fp,
                                 pen).to(gram_f.dtype)  # fmt: skip
        else:
            coef = _prefix_solutions(chol, rhs_f, c, d, cols)  # [F, s, G, o]
        err = torch.zeros(len(ks), dtype=torch.float64)
        for f, (a_t, y_t, w_t) in enumerate(tests):
            resid = y_t.unsqueeze(1) - torch.einsum("ts,sgo->tgo", a_t, coef[f])
            err += ((w_t.view(-1, 1, 1) * resid.double()**2).sum(dim=0) / scale).sum(dim=1)
        # no discovered terms: every penalty on them is the unpenalized fit
        return [(e, k, pen if k else 0.0, fp) for k, e in zip(ks, err.tolist())]

    scored: list[tuple[float, int, float, float]] = []
    for fp in fixed_pens:
        # the penalty acts on discovered terms only: the fit without any (k = 0) is scored
        # with the first penalty tried
        if PENALTY_WALK:

            def at(i: int, first: bool, fp: float = fp) -> list[tuple[float, int, float, float]]:
                return score(fp, _PENALTIES[i], [k for k in grid if k or first])

            by_pen = _penalty_walk(at, len(_PENALTIES))
        else:
            by_pen = {i: score(fp, pen, [k for k in grid if k or not pen])
                      for i, pen in enumerate(_PENALTIES) if pen or 0 in grid}  # fmt: skip
        # in the order of the full grid (ties go to the lower penalty, then fewer terms)
        for i in sorted(by_pen):
            scored.extend(t for t in by_pen[i] if t[1] == 0)
        for i in sorted(by_pen):
            scored.extend(t for t in by_pen[i] if t[1] != 0)
    best: tuple[float, int, float, float] | None = None
    for t in scored:
        if best is None or t[0] < best[0] * (1 - 1e-9):
            best = t
    assert best is not None
    if keep == 1:
        return [best]
    rest = sorted((t for t in scored if t is not best and t[0] <= AVG_TOL * best[0]
                   and (t[2:] == best[2:] or not AVERAGE_ONE_PENALTY)),
                  key=lambda t: t[0])  # fmt: skip
    return [best, *rest[: keep - 1]]


def _penalty_walk(
    score: Callable[[int, bool], list[tuple[float, int, float, float]]], n_penalties: int
) -> dict[int, list[tuple[float, int, float, float]]]:
    """The penalties cross-validation scores: a walk over their ladder instead of all of it.

    ``score(i, first)`` scores every prefix at penalty ``i`` (``first``: the first call, which
    also scores the fit without discovered terms). The walk starts at the middle penalty and
    the next larger one, then goes on in the direction whose best error fell, one step at a
    time, until the best error stops falling: it finds the best penalty wherever the best
    error over the prefixes is unimodal along the ladder, as it was in all 36 parts measured
    (the MLP on wine, MiniLM, the digits CNN over 2x2 patches, 512-4,096 calls, 2 seeds:
    ``python benchmarks/cv_penalty_profile.py``, results/cv_penalty_profile.json; 110
    penalties scored instead of 180), with 3 factors per fold instead of 5 where the best is
    one of the three upper penalties. Returns ``{penalty index: scored}``."""
    got: dict[int, list[tuple[float, int, float, float]]] = {}

    def best(i: int) -> float:
        if i not in got:
            got[i] = score(i, not got)
        return min((t[0] for t in got[i]), default=math.inf)

    at = n_penalties // 2
    if at + 1 < n_penalties and best(at + 1) < best(at):
        at, step = at + 1, 1
    else:
        step = -1
    while 0 <= at + step < n_penalties and best(at + step) < best(at):
        at += step
    return got


def _prefix_solutions(
    chol: Tensor, rhs: Tensor, c: Tensor | None, d: Tensor | None, cols: list[int]
) -> Tensor:
    """The constrained solutions on the leading ``cols`` columns, all from one factor.

    ``chol`` lower Cholesky factors of ``H = G + D [F, s, s]`` (``D`` diagonal) from
    :class:`_linalg.ShiftedCholesky` (perhaps padded), ``rhs [F, s, o]``; returns ``[F, s,
    len(cols), o]``, solution ``g`` zero past ``cols[g]``: ``argmin b'Hb - 2 b'r`` subject to
    ``C b = d`` on that prefix. The leading block of the factor is the factor of the leading
    block, and the leading part of a forward substitution depends only on it; an
    upper-triangular system whose right side is zero past ``k`` has its solution zero past
    ``k``. So one forward and one batched backward substitution give every prefix; the
    equality enters through its Schur complement, accumulated over the prefix.
    """
    n_f, s, o = rhs.shape
    fwd = rhs if c is None else torch.cat([rhs, c.T.expand(n_f, -1, -1)], dim=2)
    fwd = _linalg.solve_triangular(chol, fwd, upper=False)
    z = fwd[..., :o]
    cut = torch.zeros(s, len(cols), dtype=rhs.dtype)
    for g, k in enumerate(cols):
        cut[:k, g] = 1.0
    zk = z.unsqueeze(2) * cut.view(1, s, -1, 1)  # [F, s, G, o]
    if c is not None:
        assert d is not None
        u = fwd[..., o:]  # [F, s, r]
        uu = torch.cumsum(u.unsqueeze(3) * u.unsqueeze(2), dim=1)  # [F, s, r, r]
        uz = torch.cumsum(u.unsqueeze(3) * z.unsqueeze(2), dim=1)  # [F, s, r, o]
        at = torch.tensor([k - 1 for k in cols])
        lam = torch.linalg.solve(uu[:, at], uz[:, at] - d)  # [F, G, r, o]
        zk = zk - torch.einsum("fsr,fgro->fsgo", u, lam) * cut.view(1, s, -1, 1)
    back = _linalg.solve_triangular(chol, zk.reshape(n_f, s, -1), upper=True)
    return back.reshape(n_f, s, len(cols), o)


def _prefix_corrections(chol: Tensor, resid: Tensor, c: Tensor | None, cols: list[int]) -> Tensor:
    """The constrained solutions of ``H x = resid[:, g]`` on the leading ``cols[g]`` columns
    with ``C x = 0`` there, every ``g`` at once (:func:`_prefix_solutions` with one right side
    per prefix: the refinement steps of :func:`_averaged_fit`). ``chol`` the factor of ``H``
    ``[1, s', s']`` (perhaps padded), ``resid [s, G, o]`` zero past each prefix; returns
    ``[s, G, o]``, zero past each prefix."""
    s, n_g, o = resid.shape
    flat = resid.reshape(s, n_g * o)
    fwd = flat if c is None else torch.cat([flat, c.T], dim=1)
    fwd = _linalg.solve_triangular(chol[0], fwd, upper=False)
    z = fwd[:, : n_g * o].reshape(s, n_g, o)
    cut = torch.zeros(s, n_g, 1, dtype=resid.dtype)
    for g, k in enumerate(cols):
        cut[:k, g] = 1.0
    z = z * cut
    if c is not None:
        u = fwd[:, n_g * o :]  # [s, r]
        uu = torch.cumsum(u.unsqueeze(2) * u.unsqueeze(1), dim=0)  # [s, r, r]
        uz = torch.cumsum(torch.einsum("sr,sgo->sgro", u, z), dim=0)  # [s, G, r, o]
        at = torch.tensor([k - 1 for k in cols])
        lam = torch.linalg.solve(uu[at], uz[at, torch.arange(n_g)])  # [G, r, o]
        z = z - torch.einsum("sr,gro->sgo", u, lam) * cut
    back = _linalg.solve_triangular(chol[0], z.reshape(s, n_g * o), upper=True)
    return back.reshape(s, n_g, o)


def _kkt_prefixes(
    gram: Tensor, rhs: Tensor, c: Tensor | None, d: Tensor | None, cols: list[int],
    n_fixed: int, fixed_pen: float, pen: float,
) -> Tensor:
    """:func:`_prefix_solutions` through the KKT system of each prefix (the fallback when the
    penalized Gram matrix is not numerically positive definite)."""
    n_f, s, o = rhs.shape
    out = torch.zeros(n_f, s, len(cols), o, dtype=torch.float64)
    for g, k in enumerate(cols):
        pens = torch.full((1, k), pen, dtype=torch.float64)
        pens[0, :n_fixed] = fixed_pen
        out[:, :k, g] = _solve_batched(gram[:, :k, :k], rhs[:, :k], pens,
                                       None if c is None else c[:, :k], d)[0]  # fmt: skip
    return out


def _fit_part(
    x: Tensor,
    y: Tensor,
    w: Tensor,
    fixed: Tensor,
    ranked: Tensor,
    constraint: tuple[Any, Tensor] | None,
    n: int,
    n_folds: int | None,
    generator: torch.Generator,
    max_terms: int,
    breaks: tuple[int, ...] = (),
    strata: tuple[Tensor, Tensor] | None = None,
    fixed_pens: tuple[float, ...] | None = None,
    average: int = 1,
    project: Callable[[Tensor], Tensor] | None = None,
) -> tuple[Tensor, Tensor, dict[str, Any], Tensor | None]:
    """Cross-validated constrained weighted ridge on ``fixed`` plus a prefix of ``ranked``.

    ``x bool [p, n]`` rows (one per pair), ``y [p, o]``, ``w [p]``; ``constraint`` is
    ``(rows, d)``: ``rows(support) -> C [r, s]`` and ``d [r, o]`` the equalities ``C b = d``
    (e.g. the values at the corners), or ``None``. The candidate
    prefixes and penalties are scored by ``n_folds``-fold cross-validation (weighted squared
    error, each output scaled by its variance); every fold's Gram matrix is computed once and
    each candidate is a leading sub-block of it (``n_folds=None``: :data:`N_FOLDS`, or
    :data:`LARGE_PART_FOLDS` for a part of :data:`CV_SINGLE_FROM` terms or more). Returns
    ``(indices, coefficients [s, o], info, spread)`` (``spread``: :func:`_coefficient_spread`
    when ``strata`` is given, of the values ``project(indices) [r, s]`` maps the coefficients
    to).
    """
    p = x.shape[0]
    limit = max(0, min(ranked.shape[0], max_terms - fixed.shape[0]))
    grid = sorted({0, *[k for k in _PREFIXES if k < limit], *[b for b in breaks if b < limit],
                   limit})  # fmt: skip
    support = torch.cat([fixed, ranked[:limit]])
    if n_folds is None:
        n_folds = LARGE_PART_FOLDS if support.shape[0] >= CV_SINGLE_FROM else N_FOLDS
    a = walsh_design(x, support, n)
    n_fixed = fixed.shape[0]
    c = d = None
    if constraint is not None:
        c = constraint[0](support)
        d = constraint[1].reshape(c.shape[0], -1)
    scale = y.var(dim=0, correction=0).clamp(min=1e-300)
    # penalties on the discovered terms; on the fixed ones too when the rows barely pin them
    if fixed_pens is None:
        fixed_pens = (0.0,) if p >= 3 * n_fixed else _FIXED_PENALTIES
    # the normal equations once, as the sum of the folds' shares: every setting below is a
    # leading block of them
    if p >= n_folds:
        fold = torch.randperm(p, generator=generator) % n_folds
        if _walsh_normals_pay(n, support.shape[0], p, n_folds):
            single = support.shape[0] >= CV_SINGLE_FROM  # (what _cross_validate factors)
            normal = _walsh_normals(x, support, w, y, fold, n_folds, n,
                                    torch.float32 if single else torch.float64)
        else:
            normal = _fold_normals(a, w.unsqueeze(1) * a, y, fold, n_folds)
        gram, rhs = normal[1], normal[2]
        top = _cross_validate(a, None, y, w, scale, c, d, n_fixed, grid, fixed_pens, n_folds,
                              generator, average, normal)  # fmt: skip
    else:
        aw = w.unsqueeze(1) * a
        gram, rhs = a.T @ aw, aw.T @ y
        top = [(math.nan, limit, _PENALTIES[-1], fixed_pens[-1])]
    folds = p >= n_folds
    cv_error, _, pen, fixed_pen = top[0]
    # the fit of every kept setting, averaged on the union of their prefixes
    cols = n_fixed + max(t[1] for t in top)
    coef = _averaged_fit(gram, rhs, c, d, [(n_fixed + t[1], t[2], t[3]) for t in top], n_fixed)
    info = {"n_terms": cols, "n_discovered": cols - n_fixed, "penalty": pen,
            "fixed_penalty": fixed_pen, "n_candidates": limit,
            "cv_error": cv_error if folds else math.nan, "n_folds": n_folds}  # fmt: skip
    if len(top) > 1:
        info["averaged"] = len(top)
    penalty = torch.zeros(1, cols, dtype=torch.float64)
    penalty[:, :n_fixed] = fixed_pen
    penalty[:, n_fixed:] = pen
    c_cols = None if c is None else c[:, :cols]
    spread = None
    if strata is not None and folds:
        spread = _coefficient_spread(a[:, :cols], w, y - a[:, :cols] @ coef, penalty[0], c_cols,
                                     strata, gram[:cols, :cols],
                                     None if project is None else project(support[:cols]))
    return support[:cols], coef, info, spread


def _coefficient_spread(
    a: Tensor, w: Tensor, resid: Tensor, penalty: Tensor, c: Tensor | None,
    strata: tuple[Tensor, Tensor], gram: Tensor | None = None, project: Tensor | None = None,
) -> Tensor:
    """A factor ``L [o, s, p]`` of the sampling covariance of the fitted coefficients,
    ``Cov(b_o) ~ L_o L_o'``: the sandwich ``Q V Q`` of the constrained ridge solution
    ``b = Q A'W y + const`` with ``V`` the stratified covariance of the score terms
    ``w_i a_i r_i``, each residual ``r_i`` scaled by ``1 / sqrt(1 - h_ii)`` (HC2).
    ``strata = (label [p], fraction [p])`` from :func:`_size_strata`; ``gram``: ``A'WA`` when
    the caller has it; ``project [r, s]``: the factor ``[o, r, p]`` of ``Cov(project b_o)``
    instead (linear values of the coefficients: ``project Q`` first, so the ``[o, s, p]``
    factor is never formed)."""
    label, fraction = strata
    if gram is None:
        gram = a.T @ (w.unsqueeze(1) * a)
    scale = torch.diagonal(gram).mean().clamp(min=1e-300)
    h = gram + torch.diag((penalty + 1e-9) * scale)
    # from the factor H = L L': no inverse, no [p, s] x [s, s] product (MLP at 4,096 calls:
    # 0.10 -> 0.03 s); Q = H^-1 - H^-1 C' (C H^-1 C')^-1 C H^-1 enters through U = L^-1 C'
    chol = _linalg.cholesky(h)
    # a_i' H^-1 a_i = |L^-1 a_i|^2 per row, in float32: the leverages only scale residuals
    # (relative error ~1e-7; the s x s x p substitution is the sandwich's largest product:
    # MLP on wine at 4,096 calls 50 -> 25 ms)
    lev = _linalg.solve_triangular(chol.float(), a.T.float(), upper=False).pow(2).sum(dim=0)
    lev = lev.double()
    rows_of = torch.eye(h.shape[0], dtype=torch.float64) if project is None else project
    pq = _linalg.solve_triangular(chol, _linalg.solve_triangular(chol, rows_of.T, upper=False),
                                  upper=True).T  # [r, s]: project H^-1, then project Q  # fmt: skip
    if c is not None:
        u = _linalg.solve_triangular(chol, c.T, upper=False)  # [s, k]
        m = u.T @ u  # C H^-1 C'
        h_ct = _linalg.solve_triangular(chol, u, upper=True)  # H^-1 C'
        v = (a @ h_ct).T  # [k, p]: C H^-1 a_i
        lev = lev - (v * torch.linalg.solve(m, v)).sum(dim=0)
        pq = pq - (pq @ c.T) @ torch.linalg.solve(m, h_ct.T)
    # HC2: each residual scaled by 1 / sqrt(1 - leverage) (unbiased under equal variances)
    lev = (w * lev).clamp(0.0, 0.99)
    resid = resid / (1.0 - lev).sqrt().unsqueeze(1)
    z = (w.unsqueeze(1) * a).unsqueeze(0) * resid.T.unsqueeze(2)  # [o, p, s]
    out = torch.zeros(z.shape[0], pq.shape[0], a.shape[0], dtype=torch.float64)
    for h_label in label.unique().tolist():
        if h_label < 0:
            continue
        rows = (label == h_label).nonzero().squeeze(1)
        m = rows.numel()
        if m < 2:
            continue
        zh = z[:, rows]
        zh = zh - zh.mean(dim=1, keepdim=True)
        factor = math.sqrt(m / (m - 1) * max(0.0, 1.0 - float(fraction[rows].mean())))
        out[:, :, rows] = (pq @ zh.mT) * factor  # project Q z
    return out


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
            :data:`LARGE_PART_FOLDS` for a part of :data:`CV_SINGLE_FROM` terms or more),
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


def _cross_fitted_proxy(
    masks: Tensor, flat: Tensor, fold: Tensor, n_folds: int, fit: dict[str, Any], n: int,
    generator: torch.Generator,
) -> tuple[Tensor, SparseSpectrum, list[tuple[Tensor, Tensor]]]:
    """The odd part of a proxy at the pair rows, each from a proxy that did not see the row.

    For each fold, a LightGBM proxy of the chosen setting (``fit``: depth, rate, trees, from
    :func:`_proxy_terms`) is refitted on the corners and the pairs of the other folds and read
    exactly into a Fourier spectrum; each pair row gets the prediction of the proxy that did
    not see it (cross-fitting, as in shapiq's ProxySHAP with ``k_folds > 1``). Returns ``(odd
    [p], spectrum, terms)``: the odd part ``(g(S) - g(N∖S)) / 2`` of those predictions, the mean
    of the fold spectra, and each fold proxy's ``(indices, score)`` as :func:`_refit_terms`
    gives them (the even part's jackknife reuses them: :func:`_even_refits`).
    """
    from torchspex.decoders._proxy import refit_proxy
    from torchspex.decoders.trees import tree_ensemble_to_fourier

    p = fold.shape[0]
    pred = torch.zeros(2 * p, dtype=torch.float64)
    x = masks.numpy().astype(np.float32)
    y = flat[:, 0].numpy()
    specs = []
    for f in range(n_folds):
        out_pairs = (fold == f).nonzero().squeeze(1)
        train = np.ones(masks.shape[0], dtype=bool)
        train[(2 + 2 * out_pairs).numpy()] = False
        train[(3 + 2 * out_pairs).numpy()] = False
        booster = refit_proxy(x[train], y[train], fit["max_depth"], fit["learning_rate"],
                              fit["n_trees"], draw_seed(generator),
                              fit.get("num_leaves"))  # fmt: skip
        spec = tree_ensemble_to_fourier(booster, n)
        specs.append(spec)
        rows = torch.stack([2 + 2 * out_pairs, 3 + 2 * out_pairs], dim=1).reshape(-1)
        # the booster's own prediction: its spectrum is exact on 0/1 masks, and LightGBM sums
        # a few leaves where the spectrum sums every term
        values = torch.from_numpy(np.asarray(booster.predict(x[rows.numpy()]), dtype=np.float64))
        pred[torch.stack([2 * out_pairs, 2 * out_pairs + 1], dim=1).reshape(-1)] = values
    terms = [_term_scores(sp) for sp in specs]
    idx, coef = _union_terms([sp.indices for sp in specs],
                             [sp.coefficients.double().reshape(-1, 1) / n_folds for sp in specs],
                             n)  # fmt: skip
    mean = SparseSpectrum(idx, coef, n)
    return (pred[0::2] - pred[1::2]) / 2, mean, terms


def _with_proxy_offset(
    masks: Tensor, flat: Tensor, x: Tensor, odd_y: Tensor, w: Tensor, fixed: Tensor,
    ranked: Tensor, constraint: tuple[Any, Tensor], n: int, n_folds: int,
    generator: torch.Generator, max_terms: int, breaks: tuple[int, ...], proxy_fit: dict[str, Any],
    plain: tuple[Tensor, Tensor, dict[str, Any]],
) -> tuple[Tensor, Tensor, dict[str, Any], tuple[Tensor, list[tuple[Tensor, Tensor]]]]:
    """The odd fit on the residual of a cross-fitted proxy (:func:`_cross_fitted_proxy`), if
    its cross-validated error is below the plain fit's (``plain``) or there are at least
    :data:`OFFSET_FEATURES` features; the proxy's odd part is then added to the fitted
    correction. The fourth element is ``(fold [p], terms)``: the pairs' folds and each fold
    proxy's ``(indices, score)``, whichever fit is kept."""
    fold = torch.randperm(x.shape[0], generator=generator) % n_folds
    # at least CROSS_FIT_TREES trees: the early stop on a fifth of few rows stops early
    proxy_fit = {**proxy_fit, "n_trees": max(proxy_fit["n_trees"], CROSS_FIT_TREES)}
    column, mean, terms = _cross_fitted_proxy(masks, flat, fold, n_folds, proxy_fit, n,
                                              generator)  # fmt: skip
    proxy_odd = _odd_part(mean)
    at_empty = proxy_odd.coefficients.double().sum()
    y = odd_y - column.unsqueeze(1)
    shifted = (constraint[0], constraint[1] - at_empty)
    # the correction's first-order terms may be shrunk toward zero (the proxy alone, its
    # efficiency gap split equally) as far as cross-validation asks
    idx, coef, info, _ = _fit_part(x, y, w, fixed, ranked, shifted, n, n_folds, generator,
                                   max_terms, breaks,
                                   fixed_pens=_OFFSET_FIXED_PENALTIES)  # fmt: skip
    # the two errors on one scale (each part's error is scaled by its own variance)
    plain_error = plain[2]["cv_error"] * float(odd_y.var(correction=0))
    offset_error = info["cv_error"] * float(y.var(correction=0))
    # from OFFSET_FEATURES features on the offset is kept whatever the comparison says
    if not offset_error < plain_error and n < OFFSET_FEATURES:
        return plain[0], plain[1], {**plain[2], "proxy_offset": False,
                                    "offset_cv_error": info["cv_error"]}, (fold, terms)  # fmt: skip
    idx, coef = _union_terms([idx, proxy_odd.indices],
                             [coef, proxy_odd.coefficients.double().reshape(-1, 1)], n)
    info = {**info, "cv_error": offset_error / float(odd_y.var(correction=0)),
            "proxy_offset": True, "plain_cv_error": plain[2]["cv_error"]}  # fmt: skip
    return idx, coef, info, (fold, terms)


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
    part_folds = options.get("n_folds")  # None: by the part's size (_fit_part)
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
        folds_state = generator.get_state()
        odd_idx, odd_coef, info["odd"], _ = _fit_part(
            x, odd_y, w, odd_fixed, odd_ranked, odd_constraint, n, part_folds, generator,
            max_terms, (n_triples,) if triples else (), average=ODD_AVERAGE,
        )
        rescreen = n**3 * min(p, SCREEN_ROWS) <= RESCREEN_FLOPS
        if RESCREEN_TRIPLES and SCREEN_TRIPLES and not triples and screen and rescreen:
            # a second screen against the fitted odd part's residual (RESCREEN_TRIPLES)
            def refit(ranked: Tensor) -> tuple[Tensor, Tensor, dict[str, Any]]:
                return _fit_part(x, odd_y, w, odd_fixed, ranked, odd_constraint, n, part_folds,
                                 torch.Generator().set_state(folds_state), max_terms, (),
                                 average=ODD_AVERAGE)[:3]  # fmt: skip

            odd_idx, odd_coef, info["odd"] = _rescreened_odd(
                x[at], odd_y[at], w[at], (odd_idx, odd_coef, info["odd"]), odd_fixed,
                (odd_idx_all, odd_score_all), refit, n, p)  # fmt: skip
        # the even part draws from a generator of its own, seeded by one draw here: the odd
        # part (the Shapley values) and the even part are the same whether the even part is
        # fitted now or deferred (:func:`_deferred_even`), and its folds are not the offset's
        even_seed = draw_seed(generator)
        fold_proxies = None
        if (proxy_fit is not None and "max_depth" in proxy_fit and flat.shape[1] == 1
                and 2 * n_folds <= p < CROSS_FIT_PAIRS * n
                and options.get("cross_fit", True)):  # fmt: skip
            odd_idx, odd_coef, info["odd"], fold_proxies = _with_proxy_offset(
                masks, flat, x, odd_y, w, odd_fixed, odd_ranked, odd_constraint, n, n_folds,
                generator, max_terms, (n_triples,) if triples else (), proxy_fit,
                (odd_idx, odd_coef, info["odd"]),
            )
        strata = _size_strata(x) if options.get("shrink", True) else None

        def fit_even() -> tuple[Tensor, Tensor, dict[str, Any]]:
            gen = torch.Generator().manual_seed(even_seed)
            even_idx, even_coef, even_info, even_spread = _fit_part(
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
    fold_proxies: tuple[Tensor, list[tuple[Tensor, Tensor]]] | None = None,
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
        support, coef, _, _ = _fit_part(masks[first], y, w[kept], fixed, ranked,
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
    factor of those values' covariance: :func:`_coefficient_spread` projected by
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
    idx, coef, info, _ = _fit_part(masks, flat, w, fixed, ranked, (corner_rows, corners), n,
                                   options.get("n_folds", N_FOLDS), generator, max_terms,
                                   (n_pairs,))  # fmt: skip
    return SparseSpectrum(idx, coef, n), {"fit": info, "cv_error": info["cv_error"]}
