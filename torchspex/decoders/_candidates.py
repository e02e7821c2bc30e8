"""The regression's candidate terms: what each part of the fit may add beyond its fixed terms.

The steps, in the order the fit takes them:

- **Proxy terms** (:func:`_proxy_terms`): LightGBM proxies fitted to the samples (settings by
  the number of rows: depths 3 and 5, depth 5 alone from :data:`MID_ROWS`, depth-8 trees of
  :data:`DEEP_LEAVES` leaves from :data:`DEEP_ROWS`), read exactly into the Fourier basis
  (:func:`~torchspex.decoders.trees.tree_ensemble_to_fourier`); a term's score is its squared
  coefficient, averaged over :func:`proxy_bags` proxies. Only the terms that can reach a fit go
  on (:func:`_strongest_terms`).
- **Triple screens** (:func:`_screened_triples`): triples whose characters correlate with the
  odd part's residual beyond the universal threshold join the candidates (trees miss pure
  parities); after the odd fit a second screen against its residual may refit it
  (:func:`_rescreened_odd`).
- **Ranking** (:func:`_ranked_candidates`): per part, every pair (or triple) where the budget
  allows first, then the proxy's terms by score.

``regression`` runs them; :mod:`._part_fit` fits each part on a prefix of the ranking.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor

from torchspex.decoders import _proxy
from torchspex.decoders._proxy import draw_seed, fit_proxy, holdout_rows, proxy_configs
from torchspex.decoders.refit import walsh_design
from torchspex.fourier import SparseSpectrum
from torchspex.fourier._sets import (
    coalesce,
    normalize_indices,
    row_keys,
    set_sizes,
    support_to_indices,
    unique_rows,
)

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
#: ``SCREEN_FLOPS`` (the screen costs about ``p n^3 / 3`` multiply-adds, once each triple's
#: estimate is made only for ``i < j < k``: 55 ms at n = 128 and 1,024 pairs, one thread, where
#: every ordered triple took 210 ms; the bound was set at that older cost).
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
#: Proxies averaged to rank the candidate terms (:func:`proxy_bags`): below ``DEEP_ROWS``
#: samples, and from there on; one proxy from ``BAG_FEATURES`` features on.
PROXY_BAGS = 5
DEEP_PROXY_BAGS = 3
BAG_FEATURES = 128


def proxy_bags(n_rows: int, n_features: int, effort: str = "high") -> int:
    """How many LightGBM proxies rank the candidate terms: one at ``effort="low"`` (the
    default of the decoders; ``"minimal"`` fits none, so never asks); at ``"high"``
    :data:`PROXY_BAGS` below :data:`DEEP_ROWS` samples, :data:`DEEP_PROXY_BAGS` from there on,
    and one from :data:`BAG_FEATURES` features on.

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
    if effort != "high" or n_features >= BAG_FEATURES:
        return 1
    return PROXY_BAGS if n_rows < DEEP_ROWS else DEEP_PROXY_BAGS


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


@functools.lru_cache(maxsize=4)
def _triples(n: int) -> tuple[Tensor, list[int]]:
    """Every triple of ``n`` features, ``int64 [C(n, 3), 3]`` with ``i < j < k`` in
    lexicographic order (``torch.combinations``'), and where each first feature's rows start
    (``n - 1`` offsets). Built per first feature from the upper triangle of the rest (``torch.
    combinations`` took 30 ms at n = 100; the screen asks twice per decode)."""
    blocks, starts = [], [0]
    for i in range(max(0, n - 2)):
        upper = torch.triu_indices(n - i - 1, n - i - 1, 1) + (i + 1)
        blocks.append(torch.cat([torch.full((1, upper.shape[1]), i), upper]).T)
        starts.append(starts[-1] + upper.shape[1])
    combos = torch.cat(blocks) if blocks else torch.zeros(0, 3, dtype=torch.long)
    return combos, starts


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
    triple from ``sum_p (w r)_p z_pi z_pj z_pk``, one matrix product per first feature ``i``
    over the features after it (about ``p n^3 / 3`` multiply-adds).
    """
    z = walsh_design(x, _first_order_rows(n, 1)[1:], n)  # [p, n], +-1
    gram = z.T @ (w.unsqueeze(1) * z)
    scale = torch.diagonal(gram).mean().clamp(min=1e-300)
    b = torch.linalg.solve(gram + 1e-9 * scale * torch.eye(n, dtype=torch.float64),
                           z.T @ (w.unsqueeze(1) * y))  # fmt: skip
    r = w.unsqueeze(1) * (y - z @ b) / w.sum()  # [p, o]
    combos, starts = _triples(n)  # [C, 3], i < j < k in lexicographic order
    score = torch.zeros(combos.shape[0], dtype=torch.float64)
    signal = torch.zeros(combos.shape[0], dtype=torch.float64)
    for o in range(y.shape[1]):
        # est[i, j, k] = sum_p r_p z_pi z_pj z_pk, one first feature i at a time, over the
        # features after it only (a third of the flops of every ordered triple)
        est = torch.empty(combos.shape[0], dtype=torch.float64)
        for i in range(n - 2):
            rest = z[:, i + 1 :]
            t = rest.T @ ((r[:, o] * z[:, i]).unsqueeze(1) * rest)
            upper = torch.triu_indices(n - i - 1, n - i - 1, 1)
            est[starts[i] : starts[i + 1]] = t[upper[0], upper[1]]
        score += est**2
        # the estimate's variance were the triple absent: sum_p r_p^2
        signal += est**2 / r[:, o].pow(2).sum().clamp(min=1e-300)
    # only what stands out of the largest of C(n, 3) null estimates (the universal threshold
    # sqrt(2 log N) of Donoho and Johnstone, per output)
    strong = torch.nonzero(signal > 2.0 * y.shape[1] * math.log(combos.shape[0])).squeeze(1)
    top = strong[torch.argsort(score[strong], descending=True)[:keep]]
    return combos[top], score[top]


#: ``effort="minimal"`` screens every odd Walsh character of order 5 or more against the odd
#: part's residual (:func:`walsh_screen`) up to this many features (a transform over the
#: ``2^n`` masks): the terms a LightGBM proxy would otherwise supply at large budgets (the
#: games measured stop at 16).
WALSH_SCREEN_FEATURES = 16
#: ... once the pairs number at least this many times the first-order terms and triples the
#: screen's residual is fitted on (an underdetermined fit leaves no residual to screen). 6
#: seeds, SV error without / with, ``effort="minimal"`` (/tmp scripts): the MLP on wine at
#: 2,048 / 4,096 calls 0.0057 / 0.0023 -> 0.0033 / 0.0008, MiniLM 0.0040 / 0.0016 -> 0.0027 /
#: 0.0013, the CNN over 2x2 patches at 4,096 0.0145 -> 0.0077; a prototype that also screened
#: where that fit was underdetermined did nothing reliable there (the CNN at 2,048, 3 seeds:
#: 0.025 -> 0.027). In place of the default's LightGBM proxy (its odd part's candidates) the
#: screen was level over 6 seeds at 1,280-4,096 calls at best (0.73-1.72x the default's
#: error; 1.06-1.33x at 4,096), so the default keeps its proxy.
WALSH_SCREEN_ROWS = 2
#: ... and keeps the strongest characters, this share of the pairs (candidates; the fit's
#: cross-validation chooses among them).
WALSH_SCREEN_SHARE = 0.25
#: Values per transform of the screen (outputs are taken in chunks of ``_CHUNK_VALUES / 2^n``).
_CHUNK_VALUES = 1 << 22


def walsh_screen(masks: Tensor, flat: Tensor, n: int) -> tuple[Tensor, Tensor] | None:
    """Characters that correlate with the residual of a low-order fit of each part, ``(rows
    [k, d], score [k])``, or ``None`` where no screen runs: odd characters of order 5 or more
    (from :data:`WALSH_SCREEN_ROWS` times as many pairs as first-order terms and triples) and
    even ones of order 4 or more (from that many times the constant and the pairs;
    :data:`WALSH_SCREEN_EVEN`), at most :data:`WALSH_SCREEN_FEATURES` features.

    ``masks [2 + 2p, n]`` the paired design (the corners, then each coalition and its
    complement), ``flat [2 + 2p, o]`` its values. The odd part ``(f(S) - f(N - S)) / 2`` is
    fitted by least squares on every first-order term and triple (the even part ``(f(S) +
    f(N - S)) / 2`` on the constant and every pair); the residual's correlation with every
    character, ``mean_p r_p chi_K(S_p)``, comes from one Walsh-Hadamard transform of the
    residual summed by mask (``n 2^n`` additions), and a character's score is that correlation
    squared (a coefficient estimate's square, the proxies' scale), summed over outputs.
    Unweighted (the screen ranks; the fits weigh). The strongest :data:`WALSH_SCREEN_SHARE` of
    the pairs are kept per part (at most)."""
    p = (masks.shape[0] - 2) // 2
    if n > WALSH_SCREEN_FEATURES or n < 4:
        return None
    x = masks[2 : 2 + 2 * p : 2]
    y_s, y_c = flat[2 : 2 + 2 * p : 2].double(), flat[3 : 3 + 2 * p : 2].double()
    found = []
    low_odd = torch.cat([_first_order_rows(n, 3)[1:], _triples(n)[0]])
    if n >= 5 and p >= WALSH_SCREEN_ROWS * low_odd.shape[0]:
        found.append(_screen_part(x, (y_s - y_c) / 2, low_odd, n, p, 1, 5))
    if WALSH_SCREEN_EVEN:
        low_even = torch.cat([_first_order_rows(n, 2)[:1], _sets_of_order(n, 2)])
        if p >= WALSH_SCREEN_ROWS * low_even.shape[0]:
            found.append(_screen_part(x, (y_s + y_c) / 2, low_even, n, p, 0, 4))
    if not found:
        return None
    if len(found) == 1:
        return found[0]
    return _union_terms([f[0] for f in found], [f[1] for f in found], n)


#: The even part screened too: characters of even order 4 or more against the residual of the
#: constant and every pair, from twice as many pairs as those terms (the terms a proxy's
#: deeper splits supply to the pairs' fit). 4 seeds, k-SII pair error of ``effort="minimal"``
#: without / with (``python benchmarks/decode_variants.py minimal+noevenscreen,minimal,low
#: --budgets 512,1024,2048,4096 --games MLP,MiniLM,2x2 --seeds 4``, the default's in
#: brackets; results/decode_variants_even_screen.json, run before the screen was the default of
#: ``"minimal"``: there ``minimal`` is without it and ``minimal+evenscreen`` with it): the MLP on
#: wine at 1,024 / 2,048 / 4,096 calls 0.143 / 0.118 / 0.109 -> 0.053 /
#: 0.025 / 0.0084 (0.047 / 0.018 / 0.0039), MiniLM 0.153 / 0.119 / 0.108 -> 0.063 / 0.035 /
#: 0.015 (0.069 / 0.036 / 0.019), the CNN over 2x2 patches 0.78 / 0.74 / 0.65 -> 0.62 / 0.40 /
#: 0.23 (0.62 / 0.33 / 0.14); at 512 calls 0.21 -> 0.15 (MLP, MiniLM), the CNN's 1.00 -> 1.03
#: (no better than zero either way); Shapley values unchanged, the pairs' seconds +0.01-0.1 s.
WALSH_SCREEN_EVEN = True


def _screen_part(x: Tensor, y: Tensor, low: Tensor, n: int, p: int, parity: int,
                 min_order: int) -> tuple[Tensor, Tensor]:  # fmt: skip
    """:func:`walsh_screen` of one part: ``y [p, o]`` its values at the pairs' first members
    ``x``, fitted on ``low``; the characters of ``parity`` and order ``min_order`` or more."""
    from torchspex.fourier._basis import _popcount, fwht

    z = walsh_design(x, low, n)
    resid = y - z @ torch.linalg.lstsq(z, y).solution
    key = (x.long() << torch.arange(n)).sum(dim=1)
    score = torch.zeros(1 << n, dtype=torch.float64)  # [2^n]
    step = max(1, _CHUNK_VALUES >> n)  # outputs per transform: bounded memory for any count
    for o in range(0, y.shape[1], step):
        part = resid[:, o : o + step]
        sums = torch.zeros(1 << n, part.shape[1], dtype=torch.float64).index_add_(0, key, part)
        score += (fwht(sums) / p).pow(2).sum(dim=1)
    order = _popcount(n)  # each character's order
    score[(order < min_order) | (order % 2 != parity)] = -1.0
    keep = min(max(1, int(WALSH_SCREEN_SHARE * p)), int((score >= 0).sum()))
    top = torch.topk(score, keep).indices
    return support_to_indices(((top.unsqueeze(1) >> torch.arange(n)) & 1).bool()), score[top]


def _proxy_terms(
    masks: Tensor, flat: Tensor, generator: torch.Generator, effort: str = "low",
    pools: dict[int, _proxy.ProxyRows] | None = None,
) -> tuple[Tensor, Tensor, dict[str, Any]]:
    """Terms of LightGBM proxies fitted to the samples, ``(indices, score [s], info)``.

    :func:`proxy_bags` proxies per output, each early-stopped on its own random fifth of the
    rows (so each is trained on a different four fifths); a term's score is its squared
    coefficient averaged over the proxies and summed over outputs. ``info`` is the first
    proxy's (its depth, rate and trees are the settings the cross-fitted proxies reuse), with
    ``bags`` added. ``pools``: output ``j``'s rows binned once (:class:`~torchspex.decoders.
    _proxy.ProxyRows`), filled here where missing, so later proxies on the same samples (the
    cross-fit, the even part's refits) reuse them."""
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
    pools = {} if pools is None else pools  # each output binned once, for every bag
    for bag in range(bags):
        valid = holdout_rows(m, 0.2, generator)
        for j in range(flat.shape[1]):
            y = flat[:, j].numpy()
            if float(np.var(y)) == 0.0:
                continue
            pool = pools.setdefault(j, _proxy.ProxyRows(x, y))
            booster, info = fit_proxy(x, y, valid, configs, rounds, PROXY_PATIENCE,
                                      draw_seed(generator), min_gain, race, pool)  # fmt: skip
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
    masks: Tensor, y: Tensor, fit: dict[str, Any], n: int, generator: torch.Generator,
    rows: tuple[_proxy.ProxyRows, np.ndarray] | None = None,
) -> tuple[Tensor, Tensor]:
    """``(indices, score)`` of one LightGBM proxy refitted on ``(masks, y)`` with the setting
    an earlier :func:`_proxy_terms` chose (``fit``: depth, rate, trees; no early stopping, no
    held-out rows): a term's score is its squared coefficient. ``rows``: the same rows as a
    subset of binned ones (:class:`~torchspex.decoders._proxy.ProxyRows`, ``(pool, used)``)."""
    from torchspex.decoders._proxy import refit_proxy
    from torchspex.decoders.trees import tree_ensemble_to_fourier

    # the binned rows, where given, are the ones read (no copy of the masks then)
    x = masks.numpy().astype(np.float32) if rows is None else rows[0].x
    y_np = y.numpy() if rows is None else rows[0].y
    booster = refit_proxy(x, y_np, fit["max_depth"], fit["learning_rate"], fit["n_trees"],
                          draw_seed(generator), fit.get("num_leaves"), rows)  # fmt: skip
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



def screen_rows(n: int, p: int) -> Tensor | None:
    """The pair rows the triple screen reads (at most :data:`SCREEN_ROWS`, evenly spaced), or
    ``None`` where it does not run: fewer than 3 features, fewer than ``2 n`` pairs, or a screen
    above :data:`SCREEN_FLOPS` (``n^3`` times its rows)."""
    flops = n**3 * min(p, SCREEN_ROWS)
    if not (SCREEN_TRIPLES and n >= 3 and 2 * n <= p and flops <= SCREEN_FLOPS):
        return None
    return torch.linspace(0, p - 1, min(p, SCREEN_ROWS)).round().long()


def odd_pool(
    x: Tensor, odd_y: Tensor, w: Tensor, proxy: tuple[Tensor, Tensor], n: int, at: Tensor | None
) -> tuple[Tensor, Tensor]:
    """The odd part's pool of candidates ``(rows, score)``: the proxy's terms, joined by the
    triples the screen finds on the rows ``at`` (:func:`screen_rows`; ``None``: no screen) with
    their scores on the proxy's scale (squared coefficients)."""
    if at is None:
        return proxy
    p = x.shape[0]
    rows, score = _screened_triples(x[at], odd_y[at], w[at], n, max(1, p // 8))
    return _union_terms([proxy[0], rows], [proxy[1], score], n)


def rescreen_runs(n: int, p: int) -> bool:
    """Whether the odd part's second screen (:func:`_rescreened_odd`) runs where the first did:
    :data:`RESCREEN_TRIPLES`, and a screen of at most :data:`RESCREEN_FLOPS`."""
    return RESCREEN_TRIPLES and n**3 * min(p, SCREEN_ROWS) <= RESCREEN_FLOPS


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
