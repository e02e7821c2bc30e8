"""Interaction indices as linear maps of the Fourier / Möbius spectrum.

Every interaction index here is a linear function of the Möbius transform ``a`` (the
generalized values SGV, BGV, CHGV, IGV, EGV and JointSV, one value per coalition, live in
:mod:`torchspex.fourier.generalized`; the egalitarian least core ELC, not linear, in
:mod:`torchspex.fourier.elc`):

.. math:: I(T) = \\sum_{S \\supseteq T} w(|S|, |T|)\\, a(S),

so from the Fourier spectrum ``F`` (``a(S) = (-2)^{|S|} \\sum_{K \\supseteq S} F(K)``)

.. math:: I(T) = \\sum_{K \\supseteq T} W(|K|, |T|)\\, F(K),\\qquad
    W(k, t) = \\sum_{s=t}^{k} \\binom{k-t}{s-t} w(s, t) (-2)^s.

The weight tables ``w`` and ``W`` are computed once in exact rational arithmetic.

References:
    SII: Grabisch and Roubens (1999). k-SII: Bordt and von Luxburg (2023).
    BII: Grabisch et al. (2000). STII: Sundararajan et al. (2020).
    FSII and FBII: Tsai et al. (2023).
    SV: Shapley (1953). BV: Banzhaf (1965). Fourier/Möbius: Kang et al., SPEX (ICML 2025).
    CHII: Marichal and Roubens (1999). Co-Moebius: Grabisch (2016), 2.11.
    kADD-SHAP: Pelegrina et al. (2023).
"""

from __future__ import annotations

from fractions import Fraction
from functools import cache, lru_cache
from math import comb
from typing import Literal, get_args

import torch
from torch import Tensor

__all__ = ["INDEX_NAMES", "IndexName", "canonical_index", "fourier_weights", "moebius_weights"]

IndexName = Literal[
    "Fourier",
    "Moebius",
    "SII",
    "k-SII",
    "BII",
    "STII",
    "FSII",
    "FBII",
    "SV",
    "BV",
    "Co-Moebius",
    "CHII",
    "kADD-SHAP",
    "SGV",
    "BGV",
    "CHGV",
    "IGV",
    "EGV",
    "JointSV",
    "ELC",
]

#: Every index name, canonical spelling (the values of :data:`IndexName`, in its order).
INDEX_NAMES: tuple[str, ...] = get_args(IndexName)

_ALIASES = {
    # shapiq spellings
    **{name: name for name in INDEX_NAMES},
    # spectralexplain's lower-case spellings and common variants
    "fourier": "Fourier",
    "mobius": "Moebius",
    "moebius": "Moebius",
    "Mobius": "Moebius",
    "Möbius": "Moebius",
    "sii": "SII",
    "ksii": "k-SII",
    "k-sii": "k-SII",
    "kSII": "k-SII",
    "bii": "BII",
    "stii": "STII",
    "fsii": "FSII",
    "fbii": "FBII",
    "sv": "SV",
    "bv": "BV",
    "co-moebius": "Co-Moebius",
    "co-mobius": "Co-Moebius",
    "CoMoebius": "Co-Moebius",
    "chii": "CHII",
    "kadd-shap": "kADD-SHAP",
    "kADD": "kADD-SHAP",
    "sgv": "SGV",
    "bgv": "BGV",
    "chgv": "CHGV",
    "igv": "IGV",
    "egv": "EGV",
    "jointsv": "JointSV",
    "joint-sv": "JointSV",
    "elc": "ELC",
}

#: Indices whose definition depends on the order cap ``max_order``.
ORDER_DEPENDENT = frozenset({"k-SII", "STII", "FSII", "FBII", "kADD-SHAP", "JointSV"})
#: Indices that are first order by definition.
FIRST_ORDER = frozenset({"SV", "BV", "ELC"})
#: Generalized values: one value per coalition ``T`` (``1 <= |T| <= max_order``), the worth
#: coalition ``T`` adds as one block, not an interaction among its members (see
#: :mod:`torchspex.fourier.generalized`).
GENERALIZED = frozenset({"SGV", "BGV", "CHGV", "IGV", "EGV", "JointSV"})
#: Indices that are not linear in the game (solved as an optimization problem).
NONLINEAR = frozenset({"ELC"})


def _folded(name: str) -> str:
    """A name with case, ``ö`` / ``oe`` and ``_`` / ``-`` / ``" "`` differences folded away."""
    return name.lower().replace("ö", "oe").replace("_", "-").replace(" ", "-")


#: Every alias by its folded spelling (no two canonical names fold to the same key).
_FOLDED = {_folded(alias): name for alias, name in _ALIASES.items()}


def canonical_index(index: str) -> str:
    """Returns the canonical spelling of an index name.

    Accepts shapiq's spellings (``"k-SII"``, ``"Moebius"``, ...), ``"Fourier"`` and
    spectralexplain's lower-case spellings (``"fsii"``, ``"mobius"``), in any case and with
    ``ö`` for ``oe`` (``"K-SII"``, ``"Co-Möbius"``).

    Raises:
        ValueError: for an unknown name; the message lists the valid ones.

    Example:
        >>> canonical_index("fsii"), canonical_index("K-SII"), canonical_index("Co-Möbius")
        ('FSII', 'k-SII', 'Co-Moebius')
    """
    if isinstance(index, str) and index not in _ALIASES and _folded(index) in _FOLDED:
        return _FOLDED[_folded(index)]
    if not isinstance(index, str) or index not in _ALIASES:
        from torchspex.errors import did_you_mean

        words = {"shapley": "SV", "shapley value": "SV", "banzhaf": "BV", "interaction": "k-SII"}
        hint = did_you_mean(index, {**_ALIASES, **words})
        raise ValueError(f"`index` must be one of {INDEX_NAMES}; got {index!r}.{hint}")
    return _ALIASES[index]


@cache
def _bernoulli(m: int) -> Fraction:
    # B_1 = -1/2 convention (as scipy.special.bernoulli and shapiq use).
    if m == 0:
        return Fraction(1)
    terms = (Fraction(comb(m + 1, j)) * _bernoulli(j) for j in range(m))
    return -sum(terms, Fraction(0)) / (m + 1)


def _w(index: str, s: int, t: int, order: int) -> Fraction:
    """Möbius weight ``w(|S|=s, |T|=t)`` of index ``index`` with order cap ``order``."""
    if s < t or t > order:
        return Fraction(0)
    if index in ("Moebius", "Fourier"):
        return Fraction(int(s == t))
    if index == "SII":
        return Fraction(1, s - t + 1)
    if index == "BII":
        return Fraction(1, 2 ** (s - t))
    if index == "SV":
        return Fraction(1, s) if t == 1 else Fraction(int(s == 0 and t == 0))
    if index == "BV":
        return Fraction(1, 2 ** (s - t))
    if index == "STII":
        if t < order:
            return Fraction(int(s == t))
        return Fraction(1, comb(s, order))
    if index == "FBII":
        if s <= order:
            return Fraction(int(s == t))
        return Fraction((-1) ** (order - t) * comb(s - t - 1, order - t), 2 ** (s - t))
    if index == "FSII":
        if s <= order:
            return Fraction(int(s == t))
        return Fraction((-1) ** (order - t) * t * comb(order, t), order + t) * Fraction(
            comb(s - 1, order), comb(s + order - 1, order + t)
        )
    if index == "CHII":  # Marichal and Roubens (1999): |T| / |S|; () = f(empty) as shapiq
        return Fraction(t, s) if t else Fraction(int(s == 0))
    if index == "Co-Moebius":  # sum over supersets; () = f(empty) as shapiq (not f(N))
        return Fraction(1) if t else Fraction(int(s == 0))
    if index == "kADD-SHAP":
        # SII of the order-l Shapley-kernel least-squares fit (whose Möbius is FSII_l).
        if t == 0:
            return Fraction(int(s == 0))
        return sum(
            (
                comb(s - t, r - t) * _w("FSII", s, r, order) / (r - t + 1)
                for r in range(t, min(order, s) + 1)
            ),
            Fraction(0),
        )
    if index == "k-SII":
        if t == 0:
            return Fraction(int(s == 0))
        return sum(
            (
                comb(s - t, r - t) * _bernoulli(r - t) / (s - r + 1)
                for r in range(t, min(order, s) + 1)
            ),
            Fraction(0),
        )
    raise AssertionError(index)


@lru_cache(maxsize=512)
def _tables(index: str, order: int, max_size: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    w = [[_w(index, s, t, order) for t in range(order + 1)] for s in range(max_size + 1)]
    big_w = [
        [
            sum(
                (comb(k - t, s - t) * w[s][t] * (-2) ** s for s in range(t, k + 1)),
                Fraction(0),
            )
            for t in range(order + 1)
        ]
        for k in range(max_size + 1)
    ]
    flat_w = tuple(float(x) for row in w for x in row)
    flat_big = tuple(float(x) for row in big_w for x in row)
    return flat_w, flat_big


def moebius_weights(index: str, max_order: int, max_size: int) -> Tensor:
    """Table ``w[s, t]`` (float64 ``[max_size + 1, max_order + 1]``) mapping Möbius to ``index``."""
    flat, _ = _tables(canonical_index(index), max_order, max_size)
    return torch.tensor(flat, dtype=torch.float64).reshape(max_size + 1, max_order + 1)


def fourier_weights(index: str, max_order: int, max_size: int) -> Tensor:
    """Table ``W[k, t]`` (float64 ``[max_size + 1, max_order + 1]``) mapping Fourier to ``index``.

    Example:
        >>> fourier_weights("BII", 2, 3)[:, 1]  # BII(T) = (-2)^|T| F(T)
        tensor([ 0., -2.,  0.,  0.], dtype=torch.float64)
    """
    _, flat = _tables(canonical_index(index), max_order, max_size)
    return torch.tensor(flat, dtype=torch.float64).reshape(max_size + 1, max_order + 1)
