"""One part of the regression decoder: a cross-validated, constrained, weighted ridge fit.

A part is the odd or the even half of a paired Shapley design (or a uniform design's fit):
fixed terms (order 1, or the constant) plus a prefix of ranked candidate terms. Its steps:
the normal equations once per fold (:func:`_fold_normals`, or from Walsh sums where that is
cheaper, :func:`_walsh_normals`); cross-validation of every prefix of the candidates at each
ridge penalty from one Cholesky factor per fold (:func:`_cross_validate`, the penalties walked
from the middle of their ladder, :func:`_penalty_walk`); the fit of the best settings, averaged
(:func:`_averaged_fit`); and the spread of its coefficients for the shrinkage
(:func:`_coefficient_spread`). :func:`fit_part` runs them; ``regression`` decides what the
parts are.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from torchspex.decoders import _linalg
from torchspex.decoders.refit import walsh_design

#: Cross-validation walks the ladder of ``_PENALTIES`` from its middle (:func:`_penalty_walk`)
#: instead of scoring all of it.
PENALTY_WALK = True
#: ... and walks the ladder of penalties on the always-kept terms (``fixed_pens``, e.g. the
#: first-order terms of the correction to a cross-fitted proxy, seven of them) the same way,
#: each step a walk over ``_PENALTIES``: over 33 cross-validations of the odd part around the
#: proxy (the digits CNN over 64 pixels at 128-500 calls, the planted n = 128 games at 256-1,000,
#: GPT-2 over 327 words at 1,000; 4 seeds; a /tmp script recording every fixed penalty's best
#: error) the walk found the best fixed penalty in all 33, scoring 113 of their 231 (the best
#: was 1 / 10 / 100 / 1,000 in 10 / 9 / 4 / 10 of them).
FIXED_PENALTY_WALK = True
#: Relative ridge penalties tried on the discovered (non first-order) terms. Two of them,
#: ``(0, 1e-2)``, cut the decode 10-30% (4,096 calls: the MLP 9.4 -> 6.4 s) but raised the SV
#: error 2-10% on MiniLM and the digits CNN over 2x2 patches at most budgets (6 seeds,
#: ``benchmarks/decode_variants.py low,low+pens2``, results/decode_variants_pens2.json): kept.
_PENALTIES = (0.0, 1e-4, 1e-3, 1e-2, 1e-1)
#: ... and on the always-kept terms (order 1, the constant) when there are few rows per term.
_FIXED_PENALTIES = (0.0, 1e-3, 1e-2, 1e-1, 1.0)
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
#: Settings within this factor of the best cross-validated error are averaged (up to
#: ``regression.ODD_AVERAGE`` of them; the tolerance keeps an exact fit alone).
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

    def at_fixed(j: int, _first: bool = False) -> list[tuple[float, int, float, float]]:
        """Every setting scored at fixed penalty ``j``, in the order of the full grid (ties go
        to the lower penalty, then fewer terms)."""
        fp = fixed_pens[j]
        # the penalty acts on discovered terms only: the fit without any (k = 0) is scored
        # with the first penalty tried
        if PENALTY_WALK:

            def at(i: int, first: bool) -> list[tuple[float, int, float, float]]:
                return score(fp, _PENALTIES[i], [k for k in grid if k or first])

            by_pen = _penalty_walk(at, len(_PENALTIES))
        else:
            by_pen = {i: score(fp, pen, [k for k in grid if k or not pen])
                      for i, pen in enumerate(_PENALTIES) if pen or 0 in grid}  # fmt: skip
        out = [t for i in sorted(by_pen) for t in by_pen[i] if t[1] == 0]
        return out + [t for i in sorted(by_pen) for t in by_pen[i] if t[1] != 0]

    # the fixed penalties are walked as the penalties are (FIXED_PENALTY_WALK)
    if FIXED_PENALTY_WALK and PENALTY_WALK and len(fixed_pens) > 2:
        by_fixed = _penalty_walk(at_fixed, len(fixed_pens))
    else:
        by_fixed = {j: at_fixed(j) for j in range(len(fixed_pens))}
    scored = [t for j in sorted(by_fixed) for t in by_fixed[j]]
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


def fit_part(
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
    ``strata = (label [p], fraction [p])`` from ``regression._size_strata``; ``gram``: ``A'WA`` when
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
