"""Brute-force definitions of every interaction index over all 2^n masks (test oracle).

Games are NumPy vectors ``f[x]`` over bitmask positions ``x`` (bit ``i`` = feature ``i`` kept).
Each index is computed from its textbook definition (discrete derivatives, weighted least
squares), independently of torchspex's Möbius/Fourier weight tables.
"""

from __future__ import annotations

import itertools
from math import comb, factorial

import numpy as np
from scipy.special import bernoulli


def popcount(n: int) -> np.ndarray:
    x = np.arange(1 << n)
    return np.array([bin(v).count("1") for v in x])


def bits(s: tuple[int, ...]) -> int:
    return sum(1 << i for i in s)


def derivative(f: np.ndarray, n: int, t: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Δ_T f(S) for every S disjoint from T -> (S bitmasks, values)."""
    tb = bits(t)
    s_all = np.arange(1 << n)
    s = s_all[(s_all & tb) == 0]
    out = np.zeros(len(s))
    for r in range(len(t) + 1):
        for sub in itertools.combinations(t, r):
            out += (-1) ** (len(t) - r) * f[s | bits(sub)]
    return s, out


def moebius(f: np.ndarray, n: int, t: tuple[int, ...]) -> float:
    tb = bits(t)
    total = 0.0
    for r in range(len(t) + 1):
        for sub in itertools.combinations(t, r):
            total += (-1) ** (len(t) - r) * f[bits(sub)]
    del tb
    return total


def sets_up_to(n: int, order: int) -> list[tuple[int, ...]]:
    return [s for k in range(order + 1) for s in itertools.combinations(range(n), k)]


def sii(f: np.ndarray, n: int, order: int) -> dict:
    pc = popcount(n)
    out = {}
    for t in sets_up_to(n, order):
        k = len(t)
        s, d = derivative(f, n, t)
        ss = pc[s]
        w = np.array([factorial(n - x - k) * factorial(x) / factorial(n - k + 1) for x in ss])
        out[t] = float(w @ d)
    if order == 1:  # shapiq's convention: SII at order 1 is the Shapley value, f(0) at ()
        out[()] = float(f[0])
    return out


def bii(f: np.ndarray, n: int, order: int) -> dict:
    out = {}
    for t in sets_up_to(n, order):
        _, d = derivative(f, n, t)
        out[t] = float(d.sum() / 2 ** (n - len(t)))
    return out


def stii(f: np.ndarray, n: int, order: int) -> dict:
    pc = popcount(n)
    out = {}
    for t in sets_up_to(n, order):
        if len(t) < order:
            out[t] = moebius(f, n, t)
        else:
            s, d = derivative(f, n, t)
            w = np.array([1 / comb(n - 1, x) for x in pc[s]])
            out[t] = float(order / n * (w @ d))
    return out


def ksii(f: np.ndarray, n: int, order: int) -> dict:
    s_vals = sii(f, n, order)
    b = bernoulli(order + 1)
    out = {(): float(f[0])}
    for t in sets_up_to(n, order):
        if not t:
            continue
        total = 0.0
        for s in sets_up_to(n, order):
            if set(t) <= set(s) and s:
                total += b[len(s) - len(t)] * s_vals[s]
        out[t] = total
    return out


def _basis(n: int, sets: list[tuple[int, ...]]) -> np.ndarray:
    x = np.arange(1 << n)
    return np.stack([((x & bits(s)) == bits(s)).astype(float) for s in sets], axis=1)


def fbii(f: np.ndarray, n: int, order: int) -> dict:
    sets = sets_up_to(n, order)
    a = _basis(n, sets)
    coef = np.linalg.lstsq(a, f, rcond=None)[0]
    return dict(zip(sets, coef.tolist()))


def fsii(f: np.ndarray, n: int, order: int) -> dict:
    """Shapley-kernel weighted least squares with f(0) and f(N) matched exactly (KKT system)."""
    sets = sets_up_to(n, order)
    a = _basis(n, sets)
    pc = popcount(n)
    inner = (pc > 0) & (pc < n)
    w = np.zeros(1 << n)
    w[inner] = [(n - 1) / (comb(n, k) * k * (n - k)) for k in pc[inner]]
    cons = np.where(~inner)[0]
    ata = a[inner].T @ (w[inner, None] * a[inner])
    atb = a[inner].T @ (w[inner] * f[inner])
    c = a[cons]
    kkt = np.block([[2 * ata, c.T], [c, np.zeros((len(cons), len(cons)))]])
    rhs = np.concatenate([2 * atb, f[cons]])
    sol = np.linalg.lstsq(kkt, rhs, rcond=None)[0]
    return dict(zip(sets, sol[: len(sets)].tolist()))


def sv(f: np.ndarray, n: int) -> dict:
    pc = popcount(n)
    out = {(): float(f[0])}
    for i in range(n):
        s, d = derivative(f, n, (i,))
        w = np.array([factorial(x) * factorial(n - x - 1) / factorial(n) for x in pc[s]])
        out[(i,)] = float(w @ d)
    return out


def bv(f: np.ndarray, n: int) -> dict:
    return bii(f, n, 1)


def moebius_all(f: np.ndarray, n: int, order: int) -> dict:
    return {t: moebius(f, n, t) for t in sets_up_to(n, order)}


def fourier_all(f: np.ndarray, n: int, order: int) -> dict:
    x = np.arange(1 << n)
    out = {}
    for t in sets_up_to(n, order):
        parity = np.array([bin(v & bits(t)).count("1") % 2 for v in x])
        out[t] = float(((1 - 2 * parity) * f).mean())
    return out


def index(f: np.ndarray, n: int, name: str, order: int) -> dict:
    """Every index by its definition; keys are sorted feature tuples, () included."""
    table = {
        "SII": sii,
        "BII": bii,
        "STII": stii,
        "k-SII": ksii,
        "FBII": fbii,
        "FSII": fsii,
        "Moebius": moebius_all,
        "Fourier": fourier_all,
    }
    if name == "SV":
        return sv(f, n)
    if name == "BV":
        return bv(f, n)
    return table[name](f, n, order)
