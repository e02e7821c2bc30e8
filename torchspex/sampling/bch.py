"""Binary BCH codes for SPEX group testing: construction and batched decoding.

SPEX (Kang et al., ICML 2025) reads the index ``k`` of a singleton bin off the signs of its
delayed observations, which are the parity bits ``H k`` of a shortened binary BCH code. Decoding
the received word ``[0_n, h]`` returns ``k`` exactly when ``|k| + #(flipped parity bits) <= t``.

This module builds the narrow-sense primitive BCH code of designed distance ``2t + 1`` over
``GF(2^m)`` (the smallest ``m`` whose dimension covers ``n`` message bits; the same search and the
same systematic layout as ``sparse-transform``, so the delay matrices agree bit for bit), and
decodes *many words at once*: syndromes from byte lookup tables, Berlekamp-Massey vectorized over
words with ``GF(2^m)`` log/antilog tables, closed-form roots for one or two errors and a chunked
Chien search beyond. Chase soft decoding flips the least reliable bits and is meant to run only on
the words hard decoding could not place.

Layout of a (shortened) word, ``n + r`` bits with ``r = nc - kc`` parity bits: message bit ``i``
(feature ``i``) is the coefficient of ``x^{r + n - 1 - i}`` and parity bit ``q`` that of
``x^{r - 1 - q}``; ``parity(k) = x^{r} k(x) mod g(x)``.

References:
    Kang, Butler, Agarwal, Erginbas, Pedarsani, Ramchandran, Yu. "SPEX: Scaling Feature
    Interaction Explanations for LLMs", ICML 2025. Berlekamp (1968); Massey (1969);
    Chase, "A class of algorithms for decoding block codes with channel measurement
    information", IEEE Trans. Inf. Theory, 1972.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property, lru_cache

import numpy as np

__all__ = [
    "PRIMITIVE_POLYNOMIALS",
    "BCHCode",
    "ChaseCandidates",
    "DecodeResult",
    "bch_code",
    "bch_parameters",
]

#: Primitive polynomials of ``GF(2^m)``, ``m = 2..20``, as integer bitmasks (bit ``d`` = coefficient
#: of ``x^d``): MATLAB's default table, which ``galois`` (and hence the reference
#: ``sparse-transform``) uses for BCH codes, so the delay matrices match the reference's.
PRIMITIVE_POLYNOMIALS: dict[int, int] = {
    2: 7, 3: 11, 4: 19, 5: 37, 6: 67, 7: 137, 8: 285, 9: 529, 10: 1033, 11: 2053, 12: 4179,
    13: 8219, 14: 17475, 15: 32771, 16: 69643, 17: 131081, 18: 262183, 19: 524327, 20: 1048585,
}

#: Largest field degree supported (codes of length up to ``2^20 - 1``).
MAX_FIELD_DEGREE = 20

_CHUNK_ELEMENTS = 1 << 22


def _cyclotomic_union(m: int, t: int) -> list[list[int]]:
    """Distinct cyclotomic cosets ``{i 2^j mod (2^m - 1)}`` covering ``i = 1 .. 2t``."""
    nc = (1 << m) - 1
    seen: set[int] = set()
    cosets = []
    for i in range(1, 2 * t + 1):
        e = i % nc
        if e in seen:
            continue
        coset = []
        while e not in coset:
            coset.append(e)
            e = (2 * e) % nc
        seen.update(coset)
        cosets.append(coset)
    return cosets


@lru_cache(maxsize=128)
def bch_parameters(n_features: int, t: int) -> tuple[int, int, int]:
    """Smallest primitive narrow-sense binary BCH code correcting ``t`` errors with ``kc >= n``.

    Args:
        n_features: message length ``n`` (number of features).
        t: designed error-correction capability (designed distance ``2t + 1``).

    Returns:
        ``(m, nc, kc)``: field degree, code length ``2^m - 1`` and dimension. The shortened code
        has ``nc - kc`` parity bits.

    Raises:
        ValueError: if ``t < 1``, ``n_features < 1`` or no code with ``m <= 20`` fits.

    Example:
        >>> bch_parameters(1000, 5)
        (11, 2047, 1992)
    """
    if isinstance(t, bool) or not isinstance(t, int) or t < 1:
        raise ValueError(f"`t` must be an int >= 1; got {t!r}.")
    if isinstance(n_features, bool) or not isinstance(n_features, int) or n_features < 1:
        raise ValueError(f"`n_features` must be an int >= 1; got {n_features!r}.")
    m = max(2, math.ceil(math.log2(2 * t + 2)))
    while m <= MAX_FIELD_DEGREE:
        nc = (1 << m) - 1
        kc = nc - sum(len(c) for c in _cyclotomic_union(m, t))
        if kc >= n_features:
            return m, nc, kc
        m += 1
    raise ValueError(
        f"no binary BCH code of length <= 2^{MAX_FIELD_DEGREE} - 1 corrects t={t} errors on "
        f"n_features={n_features} message bits; lower `t` (degree_parameter) or group features."
    )


def _clmul(a: int, b: int) -> int:
    """Carry-less product of two GF(2) polynomials given as bitmasks."""
    out = 0
    while b:
        if b & 1:
            out ^= a
        a <<= 1
        b >>= 1
    return out


@dataclass(frozen=True)
class DecodeResult:
    """Hard-decision decoding of ``W`` words.

    Attributes:
        ok: ``bool [W]``: a codeword within distance ``t`` was found.
        features: ``int64 [W, t]``: message positions in error (for a SPEX word ``[0, h]``: the
            features of ``k``), ascending, ``-1`` padded; all ``-1`` where ``ok`` is False.
        n_errors: ``int64 [W]``: corrected bits (message and parity); ``-1`` where not ``ok``.
    """

    ok: np.ndarray
    features: np.ndarray
    n_errors: np.ndarray


@dataclass(frozen=True)
class ChaseCandidates:
    """Successful decodes of Chase test patterns, ``K`` of them in all.

    Attributes:
        word: ``int64 [K]``: the input word each candidate belongs to.
        features: ``int64 [K, t]``: message positions of the candidate (``-1`` padded).
        n_errors: ``int64 [K]``: bits corrected by the hard decoder for that test pattern.
        cost: ``float64 [K]``: summed reliability of the bits the test pattern flipped.
    """

    word: np.ndarray
    features: np.ndarray
    n_errors: np.ndarray
    cost: np.ndarray


class BCHCode:
    """A shortened binary BCH code with ``n`` message bits correcting ``t`` errors.

    Args:
        n_features: message length ``n``.
        t: designed error-correction capability.

    Attributes:
        n_features: ``n``.
        t: ``t``.
        m, nc, kc: field degree, full code length and dimension (see :func:`bch_parameters`).
        n_parity: ``r = nc - kc`` parity bits.

    Example:
        >>> code = BCHCode(8, 2)
        >>> code.n_parity
        10
        >>> k = np.zeros((1, 8), dtype=bool); k[0, [1, 6]] = True
        >>> code.decode_parity(code.encode(k)).features   # |k| = 2 <= t: recovered
        array([[1, 6]])
    """

    def __init__(self, n_features: int, t: int) -> None:
        self.n_features = n_features
        self.t = t
        self.m, self.nc, self.kc = bch_parameters(n_features, t)
        self.n_parity = self.nc - self.kc
        self.primitive_polynomial = PRIMITIVE_POLYNOMIALS[self.m]
        nc = self.nc
        # exp has period nc on [0, 2nc) and zeros beyond; log(0) = 2nc, so a product with a zero
        # factor lands in the zero tail and needs no branch.
        exp = np.zeros(4 * nc + 1, dtype=np.int64)
        x = 1
        for i in range(nc):
            exp[i] = x
            x <<= 1
            if x >> self.m:
                x ^= self.primitive_polynomial
        exp[nc : 2 * nc] = exp[:nc]
        log = np.full(nc + 1, 2 * nc, dtype=np.int64)
        log[exp[:nc]] = np.arange(nc)
        self._exp, self._log = exp, log
        # positions of the shortened word and their polynomial degrees
        self.length = n_features + self.n_parity
        self._degree = np.arange(self.length - 1, -1, -1, dtype=np.int64)

    def __repr__(self) -> str:
        return (
            f"BCHCode(n_features={self.n_features}, t={self.t}, nc={self.nc}, kc={self.kc}, "
            f"n_parity={self.n_parity})"
        )

    # ------------------------------------------------------------------ field helpers
    def _mul(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return self._exp[self._log[a] + self._log[b]]

    def _inv(self, a: np.ndarray) -> np.ndarray:
        return np.where(a == 0, 0, self._exp[(self.nc - self._log[a]) % self.nc])

    # ------------------------------------------------------------------ construction
    @cached_property
    def generator_polynomial(self) -> int:
        """``g(x)`` as a bitmask: the product of the minimal polynomials of ``α^1 .. α^{2t}``."""
        g = 1
        for coset in _cyclotomic_union(self.m, self.t):
            poly = np.array([1], dtype=np.int64)  # coefficients in GF(2^m), ascending degree
            for e in coset:
                root = self._exp[e]
                # poly * (x + root)
                shifted = np.concatenate([[0], poly])
                scaled = np.concatenate([self._mul(poly, np.full_like(poly, root)), [0]])
                poly = shifted ^ scaled
            assert np.all(poly <= 1), "minimal polynomial must have binary coefficients"
            g = _clmul(g, int(sum(int(c) << d for d, c in enumerate(poly))))
        assert g.bit_length() - 1 == self.n_parity
        return g

    @cached_property
    def parity_matrix(self) -> np.ndarray:
        """``H``: ``bool [n_parity, n_features]``; column ``i``: parity bits of feature ``i``."""
        r, g = self.n_parity, self.generator_polynomial
        rem = g ^ (1 << r)  # x^r mod g
        rems = []
        for _ in range(self.n_features):  # degrees r, r+1, ..., r+n-1
            rems.append(rem)
            rem <<= 1
            if rem >> r:
                rem ^= g
        n_bytes = max(1, (r + 7) // 8)
        raw = b"".join(v.to_bytes(n_bytes, "little") for v in reversed(rems))  # feature 0 first
        bits = np.unpackbits(
            np.frombuffer(raw, dtype=np.uint8).reshape(self.n_features, n_bytes),
            axis=1, bitorder="little",
        )[:, :r]
        # parity bit q is the coefficient of x^(r-1-q)
        return np.ascontiguousarray(bits[:, ::-1].T.astype(bool))

    def encode(self, messages: np.ndarray) -> np.ndarray:
        """Parity bits ``H k mod 2`` of messages ``bool [W, n]`` -> ``bool [W, n_parity]``."""
        messages = np.asarray(messages, dtype=bool)
        h = self.parity_matrix.astype(np.int64)
        return ((messages.astype(np.int64) @ h.T) & 1).astype(bool)

    def parity_of_features(self, features: np.ndarray) -> np.ndarray:
        """Parity bits of sparse messages given as feature rows ``int64 [W, d]`` (``-1`` padded)."""
        features = np.asarray(features, dtype=np.int64)
        table = np.concatenate(
            [self.parity_matrix.T, np.zeros((1, self.n_parity), dtype=bool)]
        )  # [n + 1, r]; row n is the padding
        rows = table[np.where(features < 0, self.n_features, features)]  # [W, d, r]
        return np.bitwise_xor.reduce(rows, axis=1) if features.shape[1] else np.zeros(
            (features.shape[0], self.n_parity), dtype=bool)

    # ------------------------------------------------------------------ decoding
    def _byte_tables(self, degrees: np.ndarray) -> np.ndarray:
        """``[n_bytes, 256, 2t]``: syndromes of every byte value of bits at ``degrees``."""
        two_t = 2 * self.t
        j = np.arange(1, two_t + 1, dtype=np.int64)
        per_pos = self._exp[np.outer(degrees, j) % self.nc]  # [len, 2t]
        n_bytes = (len(degrees) + 7) // 8
        per_pos = np.concatenate(
            [per_pos, np.zeros((n_bytes * 8 - len(degrees), two_t), dtype=np.int64)]
        ).reshape(n_bytes, 8, two_t)
        bits = ((np.arange(256)[:, None] >> np.arange(8)) & 1).astype(bool)  # [256, 8], little
        table = np.zeros((n_bytes, 256, two_t), dtype=np.int64)
        for b in range(8):
            table ^= np.where(bits[None, :, b, None], per_pos[:, None, b, :], 0)
        return table

    @cached_property
    def _word_tables(self) -> np.ndarray:
        return self._byte_tables(self._degree)

    @cached_property
    def _parity_tables(self) -> np.ndarray:
        return self._byte_tables(self._degree[self.n_features :])

    @cached_property
    def _position_syndromes(self) -> np.ndarray:
        """``[length + 1, 2t]``: syndromes of a single error at each position (last row: none)."""
        table = self._exp[np.outer(self._degree, np.arange(1, 2 * self.t + 1)) % self.nc]
        return np.concatenate([table, np.zeros((1, 2 * self.t), dtype=np.int64)])

    @cached_property
    def _position_of_log(self) -> np.ndarray:
        """Field logarithm ``deg`` -> word position (``-1`` for shortened positions)."""
        out = np.full(2 * self.nc + 1, -1, dtype=np.int64)  # log(0) = 2nc maps to -1
        out[self._degree] = np.arange(self.length)
        return out

    @staticmethod
    def _lookup(tables: np.ndarray, bits: np.ndarray) -> np.ndarray:
        packed = np.packbits(bits, axis=1, bitorder="little")
        out = np.zeros((packed.shape[0], tables.shape[2]), dtype=np.int64)
        for b in range(packed.shape[1]):
            out ^= tables[b, packed[:, b]]
        return out

    def syndromes(self, words: np.ndarray) -> np.ndarray:
        """Syndromes ``S_j = r(α^j)``, ``j = 1..2t``, of words ``bool [W, n + r]``: ``[W, 2t]``."""
        return self._lookup(self._word_tables, np.asarray(words, dtype=bool))

    def _berlekamp_massey(self, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Error locators ``Λ`` ``[W, 2t + 2]`` (ascending) and lengths ``L`` of binary words.

        Berlekamp's simplification for binary codes: the discrepancy of every second step is
        zero (``S_{2j} = S_j^2``), so only ``t`` steps are computed.
        """
        w, two_t = s.shape
        width = two_t + 2
        lam = np.zeros((w, width), dtype=np.int64)
        lam[:, 0] = 1
        prev = np.zeros_like(lam)  # x^m B(x), kept shifted
        prev[:, 1] = 1
        length = np.zeros(w, dtype=np.int64)
        b_disc = np.ones(w, dtype=np.int64)
        for r in range(0, two_t, 2):
            d = s[:, r].copy()
            for i in range(1, min(r, width - 1) + 1):
                d ^= self._mul(lam[:, i], s[:, r - i])
            nz = d != 0
            coef = self._mul(d, self._inv(b_disc))
            new_lam = lam ^ self._mul(coef[:, None], prev)
            grow = nz & (2 * length <= r)
            shift_src = np.where(grow[:, None], lam, prev)
            prev = np.zeros_like(prev)
            prev[:, 2:] = shift_src[:, :-2]  # this step's shift and the zero step's shift
            lam = np.where(nz[:, None], new_lam, lam)
            length = np.where(grow, r + 1 - length, length)
            b_disc = np.where(grow, d, b_disc)
        return lam, length

    def _splits(self, lam: np.ndarray, length: int) -> np.ndarray:
        """Whether ``Λ`` (degree ``length``) has ``length`` distinct roots in ``GF(2^m)``.

        Tests ``z^{2^m} = z mod σ(z)`` for the monic reversal ``σ`` of ``Λ``: ``m`` squarings
        of a degree ``< L`` polynomial, far cheaper than a Chien search.
        """
        w = lam.shape[0]
        exp, log = self._exp, self._log
        log_sigma = log[lam[:, length::-1][:, :length]]  # σ_j = Λ_{L-j}, j < L (σ_L = 1)
        rem = np.zeros((w, length), dtype=np.int64)
        rem[:, 1] = 1
        for _ in range(self.m):
            sq = np.zeros((w, 2 * length - 1), dtype=np.int64)
            sq[:, ::2] = exp[2 * log[rem]]
            for d in range(2 * length - 2, length - 1, -1):
                sq[:, d - length : d] ^= exp[log[sq[:, d, None]] + log_sigma]
            rem = sq[:, :length]
        target = np.zeros(length, dtype=np.int64)
        target[1] = 1
        return (rem == target).all(axis=1)

    def _roots(self, lam: np.ndarray, length: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Error positions ``int64 [W, t]`` (``-1`` padded) and success flags for locators."""
        w = lam.shape[0]
        t = self.t
        positions = np.full((w, t), -1, dtype=np.int64)
        position_of = self._position_of_log
        nz_cols = lam != 0
        deg = lam.shape[1] - 1 - np.argmax(nz_cols[:, ::-1], axis=1)
        ok = (deg == length) & (length <= t)
        found = np.zeros(w, dtype=np.int64)
        # one error: Λ = 1 + Λ1 x, X = Λ1
        one = np.nonzero(ok & (length == 1))[0]
        if one.size:
            pos = position_of[self._log[lam[one, 1]]]
            positions[one, 0] = pos
            found[one] = pos >= 0
        # two errors: X1 + X2 = Λ1, X1 X2 = Λ2; X = Λ1 y with y^2 + y = Λ2 / Λ1^2
        two = np.nonzero(ok & (length == 2))[0]
        if two.size:
            l1, l2 = lam[two, 1], lam[two, 2]
            c = self._mul(l2, self._inv(self._mul(l1, l1)))
            y, has = self._quadratic_table
            x1 = self._mul(l1, y[c])
            x2 = x1 ^ l1
            p1 = np.where(has[c] & (x1 != 0), position_of[self._log[x1]], -1)
            p2 = np.where(has[c] & (x2 != 0), position_of[self._log[x2]], -1)
            good = (p1 >= 0) & (p2 >= 0) & (l1 != 0)
            positions[two, 0] = np.where(good, np.minimum(p1, p2), -1)
            positions[two, 1] = np.where(good, np.maximum(p1, p2), -1)
            found[two] = np.where(good, 2, 0)
        for big in range(3, t + 1):
            rows = np.nonzero(ok & (length == big))[0]
            if not rows.size:
                continue
            rows = rows[self._splits(lam[rows], big)]
            if rows.size:
                pos_many, cnt = self._chien(lam[rows, : t + 1])
                positions[rows] = pos_many
                found[rows] = cnt
        ok &= (found == length) | (length == 0)
        positions[~ok] = -1
        return positions, ok

    @cached_property
    def _quadratic_table(self) -> tuple[np.ndarray, np.ndarray]:
        """``y[c]`` with ``y^2 + y = c`` (one of the two roots) and whether a root exists."""
        ys = np.arange(self.nc + 1, dtype=np.int64)
        c = self._mul(ys, ys) ^ ys
        y = np.zeros(self.nc + 1, dtype=np.int64)
        has = np.zeros(self.nc + 1, dtype=bool)
        y[c] = ys
        has[c] = True
        return y, has

    @cached_property
    def _chien_tables(self) -> tuple[np.ndarray, np.ndarray]:
        """``int32`` antilog table and ``-i deg mod nc`` for every coefficient and position."""
        neg = (-np.outer(np.arange(self.t + 1), self._degree)) % self.nc  # [t+1, length]
        return self._exp.astype(np.int32), neg.astype(np.int32)

    def _chien(self, lam: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Chien search over the word positions for locators ``[w, t + 1]``."""
        w, t = lam.shape[0], self.t
        exp, neg = self._chien_tables
        positions = np.full((w, t), -1, dtype=np.int64)
        count = np.zeros(w, dtype=np.int64)
        # Λ(X^-1) at X = α^deg is sum_i Λ_i α^{-i deg}; log(0) = 2nc indexes the zero tail
        log_lam = self._log[lam].astype(np.int32)
        chunk = max(1, _CHUNK_ELEMENTS // max(1, (t + 1) * self.length))
        for start in range(0, w, chunk):
            logs = log_lam[start : start + chunk]
            val = exp[logs[:, 0, None] + neg[0]]
            for i in range(1, t + 1):
                val ^= exp[logs[:, i, None] + neg[i]]
            is_root = val == 0  # [c, length]
            cnt = is_root.sum(axis=1)
            count[start : start + chunk] = cnt
            rows, cols = np.nonzero(is_root & (cnt <= t)[:, None])
            rank = np.arange(rows.size) - np.searchsorted(rows, rows)
            positions[start + rows, rank] = cols
        return positions, count

    def _decode_syndromes(self, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        lam, length = self._berlekamp_massey(s)
        positions, ok = self._roots(lam, length)
        # verify: the error pattern reproduces the syndromes (guards degenerate locators)
        table = self._position_syndromes
        err_syn = np.bitwise_xor.reduce(
            table[np.where(positions < 0, self.length, positions)], axis=1
        )
        ok &= (err_syn == s).all(axis=1)
        positions[~ok] = -1
        n_errors = np.where(ok, (positions >= 0).sum(axis=1), -1)
        return ok, _sort_padded(positions), n_errors

    def decode(self, words: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Hard-decision decoding of full shortened words.

        Args:
            words: ``bool [W, n + n_parity]`` received words (message bits first).

        Returns:
            ``(ok bool [W], error_positions int64 [W, t] (-1 padded), n_errors int64 [W])``;
            the decoded codeword is ``words`` with the bits at ``error_positions`` flipped.
        """
        words = np.asarray(words, dtype=bool)
        if words.ndim != 2 or words.shape[1] != self.length:
            raise ValueError(
                f"`words` must have shape [W, {self.length}]; got {tuple(words.shape)}."
            )
        return self._decode_syndromes(self.syndromes(words))

    def decode_parity(self, parity: np.ndarray) -> DecodeResult:
        """Decodes SPEX words ``[0_n, parity]``: the message part of the error is ``k``.

        Args:
            parity: ``bool [W, n_parity]`` hard parity bits (bit ``q`` is 1 when the ``q``-th
                delayed observation has the opposite sign of the undelayed one).

        Returns:
            :class:`DecodeResult`.
        """
        parity = np.asarray(parity, dtype=bool)
        if parity.ndim != 2 or parity.shape[1] != self.n_parity:
            raise ValueError(
                f"`parity` must have shape [W, {self.n_parity}]; got {tuple(parity.shape)}."
            )
        ok, pos, n_errors = self._decode_syndromes(self._lookup(self._parity_tables, parity))
        feats = _sort_padded(np.where(pos < self.n_features, pos, -1))
        return DecodeResult(ok, feats, n_errors)

    def chase_decode(
        self,
        soft: np.ndarray,
        *,
        depth: int | None = None,
        n_patterns: int | None = None,
        complement_reliability: np.ndarray | None = None,
    ) -> ChaseCandidates:
        """Chase-II soft decoding of SPEX words: flip the least reliable bits, decode each.

        Args:
            soft: ``float [W, n_parity]`` soft parity values; positive means bit 0, the
                magnitude is the reliability.
            depth: number of least reliable positions to consider (default ``min(2t, 12)``).
            n_patterns: test patterns per word, the ones with the smallest summed reliability,
                the empty pattern included (default ``depth (depth + 1) / 2 + 1``).
            complement_reliability: ``float [W]``, optional reliability of a virtual position
                whose flip complements every parity bit (SPEX: the sign of the undelayed
                observation, against which all other signs are read).

        Returns:
            :class:`ChaseCandidates`: every successful decode (the caller picks per word).
        """
        soft = np.asarray(soft, dtype=np.float64)
        w, r = soft.shape
        hard = soft < 0
        rel = np.abs(soft)
        if complement_reliability is not None:
            rel = np.concatenate([rel, np.abs(np.asarray(complement_reliability))[:, None]], 1)
        n_pos = rel.shape[1]
        if depth is None:
            depth = min(2 * self.t, 12)
        depth = max(0, min(depth, n_pos, 16))
        if n_patterns is None:
            n_patterns = depth * (depth + 1) // 2 + 1
        n_patterns = max(1, min(n_patterns, 1 << depth))
        order = np.argsort(rel, axis=1, kind="stable")[:, :depth]  # [W, d]
        sorted_rel = np.take_along_axis(rel, order, axis=1)
        subsets = _subset_matrix(depth)  # [2^d, d] bool, row 0 empty
        cost = sorted_rel @ subsets.T.astype(np.float64)  # [W, 2^d]
        if n_patterns < subsets.shape[0]:
            pick = np.argpartition(cost, n_patterns - 1, axis=1)[:, :n_patterns]
        else:
            pick = np.broadcast_to(np.arange(subsets.shape[0]), (w, subsets.shape[0]))
        pat = subsets[pick]  # [W, Q, d]
        q = pat.shape[1]
        flips = np.zeros((w, q, n_pos), dtype=bool)
        np.put_along_axis(
            flips, np.broadcast_to(order[:, None, :], (w, q, depth)), pat, axis=2
        )
        words = hard[:, None, :] ^ flips[:, :, :r]
        if complement_reliability is not None:
            words ^= flips[:, :, r:]
        res = self.decode_parity(words.reshape(w * q, r))
        good = np.nonzero(res.ok)[0]
        return ChaseCandidates(
            word=good // q,
            features=res.features[good],
            n_errors=res.n_errors[good],
            cost=np.take_along_axis(cost, pick, axis=1).reshape(-1)[good],
        )


@lru_cache(maxsize=16)
def bch_code(n_features: int, t: int) -> BCHCode:
    """A cached :class:`BCHCode` (its tables are reused across plans)."""
    return BCHCode(n_features, t)


@lru_cache(maxsize=32)
def _subset_matrix(depth: int) -> np.ndarray:
    """All ``2^depth`` subsets of ``depth`` positions as bool rows (row ``s``: bits of ``s``)."""
    s = np.arange(1 << depth)
    out = ((s[:, None] >> np.arange(depth)) & 1).astype(bool)
    out.setflags(write=False)
    return out


def _sort_padded(rows: np.ndarray) -> np.ndarray:
    """Sorts each row ascending with the ``-1`` padding last."""
    big = np.iinfo(np.int64).max
    out = np.sort(np.where(rows < 0, big, rows), axis=1)
    return np.where(out == big, -1, out)
