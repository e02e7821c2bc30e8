"""BCH codes: parameters, construction, exhaustive error correction, Chase decoding."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from torchspex.sampling.bch import (
    PRIMITIVE_POLYNOMIALS,
    BCHCode,
    bch_parameters,
)


def all_error_patterns(length: int, t: int) -> np.ndarray:
    rows = []
    for weight in range(t + 1):
        for pos in itertools.combinations(range(length), weight):
            row = np.zeros(length, dtype=bool)
            row[list(pos)] = True
            rows.append(row)
    return np.stack(rows)


def positions_to_bits(positions: np.ndarray, length: int) -> np.ndarray:
    out = np.zeros((positions.shape[0], length), dtype=bool)
    rows, cols = np.nonzero(positions >= 0)
    out[rows, positions[rows, cols]] = True
    return out


def poly_mod(a: int, p: int) -> int:
    deg = p.bit_length() - 1
    while a.bit_length() - 1 >= deg:
        a ^= p << (a.bit_length() - 1 - deg)
    return a


def poly_mulmod(a: int, b: int, p: int) -> int:
    out = 0
    while b:
        if b & 1:
            out ^= a
        b >>= 1
        a = poly_mod(a << 1, p)
    return poly_mod(out, p)


def x_power(e: int, p: int) -> int:
    result, base = 1, 2  # the polynomial x
    while e:
        if e & 1:
            result = poly_mulmod(result, base, p)
        base = poly_mulmod(base, base, p)
        e >>= 1
    return result


def prime_factors(v: int) -> list[int]:
    out, f = [], 2
    while f * f <= v:
        if v % f == 0:
            out.append(f)
            while v % f == 0:
                v //= f
        f += 1
    return out + ([v] if v > 1 else [])


# P(n, t) = nc - kc + 1 from the research notes' table (computed with the reference code).
@pytest.mark.parametrize(
    ("n", "t", "p"),
    [(8, 2, 11), (4, 3, 11), (16, 4, 25), (16, 5, 28), (64, 2, 15), (128, 2, 17), (100, 5, 41),
     (500, 3, 31), (500, 6, 61), (1000, 5, 56), (1000, 6, 67), (1000, 2, 21)],
)
def test_parameters_match_reference_table(n, t, p):
    m, nc, kc = bch_parameters(n, t)
    assert nc == 2**m - 1
    assert kc >= n
    assert nc - kc + 1 == p


def test_parameter_errors():
    with pytest.raises(ValueError, match="`t` must be an int >= 1"):
        bch_parameters(10, 0)
    with pytest.raises(ValueError, match="`n_features` must be an int >= 1"):
        bch_parameters(0, 2)
    with pytest.raises(ValueError, match="lower `t`"):
        bch_parameters(2**20, 40)


@pytest.mark.parametrize("m", range(2, 21))
def test_primitive_polynomials_are_primitive(m):
    p = PRIMITIVE_POLYNOMIALS[m]
    order = 2**m - 1
    assert p.bit_length() - 1 == m
    assert x_power(order, p) == 1
    for q in prime_factors(order):
        assert x_power(order // q, p) != 1


@pytest.mark.parametrize(("n", "t"), [(8, 2), (30, 3), (100, 5), (1000, 4)])
def test_generator_has_designed_roots(n, t):
    code = BCHCode(n, t)
    g = code.generator_polynomial
    coeffs = np.array([(g >> d) & 1 for d in range(g.bit_length())])
    for i in range(1, 2 * t + 1):  # g(α^i) = 0
        terms = code._exp[(i * np.nonzero(coeffs)[0]) % code.nc]
        assert np.bitwise_xor.reduce(terms) == 0
    # codewords: parity check of [message, parity] is zero
    rng = np.random.default_rng(0)
    msg = rng.random((20, n)) < 0.5
    words = np.concatenate([msg, code.encode(msg)], axis=1)
    assert not code.syndromes(words).any()


@pytest.mark.parametrize(("n", "t"), [(8, 2), (8, 3), (6, 4)])
def test_corrects_every_error_pattern_up_to_t(n, t):
    code = BCHCode(n, t)
    rng = np.random.default_rng(n * 10 + t)
    patterns = all_error_patterns(code.length, t)
    msg = rng.random((patterns.shape[0], n)) < 0.5
    codewords = np.concatenate([msg, code.encode(msg)], axis=1)
    ok, positions, n_errors = code.decode(codewords ^ patterns)
    assert ok.all()
    np.testing.assert_array_equal(positions_to_bits(positions, code.length), patterns)
    np.testing.assert_array_equal(n_errors, patterns.sum(axis=1))


@pytest.mark.parametrize(("n", "t"), [(10, 3), (12, 2)])
def test_decode_parity_recovers_every_sparse_message(n, t):
    """``[0, H k ^ e]`` decodes to ``k`` whenever ``|k| + |e| <= t`` (exhaustive)."""
    code = BCHCode(n, t)
    feats, flips = [], []
    for order in range(t + 1):
        for k in itertools.combinations(range(n), order):
            for e in all_error_patterns(code.n_parity, t - order):
                feats.append(list(k) + [-1] * (t - order))
                flips.append(e)
    feats_arr, flips_arr = np.array(feats), np.stack(flips)
    res = code.decode_parity(code.parity_of_features(feats_arr) ^ flips_arr)
    assert res.ok.all()
    np.testing.assert_array_equal(res.features, feats_arr)
    np.testing.assert_array_equal(res.n_errors, (feats_arr >= 0).sum(1) + flips_arr.sum(1))


def test_beyond_t_never_returns_a_wrong_distance_claim():
    """Whatever a decode returns is a codeword within distance t of the received word."""
    code = BCHCode(40, 4)
    rng = np.random.default_rng(1)
    words = rng.random((3000, code.length)) < 0.08
    ok, positions, n_errors = code.decode(words)
    corrected = words ^ positions_to_bits(positions, code.length)
    assert not code.syndromes(corrected[ok]).any()
    assert (n_errors[ok] <= code.t).all()
    assert (n_errors[~ok] == -1).all()


def test_parity_of_features_matches_encode():
    code = BCHCode(50, 3)
    rng = np.random.default_rng(2)
    feats = np.full((100, 3), -1)
    for i in range(100):
        size = rng.integers(0, 4)
        feats[i, :size] = np.sort(rng.choice(50, size, replace=False))
    dense = np.zeros((100, 50), dtype=bool)
    rows, cols = np.nonzero(feats >= 0)
    dense[rows, feats[rows, cols]] = True
    np.testing.assert_array_equal(code.parity_of_features(feats), code.encode(dense))


def test_chase_fixes_errors_on_least_reliable_bits():
    """t + 2 flipped signs, all on the least reliable positions: hard fails, Chase recovers."""
    t = 2
    code = BCHCode(30, t)
    rng = np.random.default_rng(3)
    w = 50
    feats = np.stack([np.sort(rng.choice(30, t, replace=False)) for _ in range(w)])
    bits = code.parity_of_features(feats)
    soft = np.where(bits, -1.0, 1.0) * (2.0 + rng.random(bits.shape))
    flip = np.stack([rng.choice(code.n_parity, t + 2, replace=False) for _ in range(w)])
    rows = np.arange(w)[:, None]
    soft[rows, flip] = -0.1 * np.sign(soft[rows, flip])  # wrong sign, low reliability
    hard = code.decode_parity(soft < 0)
    assert not (hard.ok & (hard.features == feats).all(1)).any()
    cand = code.chase_decode(soft, depth=2 * t + 2, n_patterns=1 << (2 * t + 2))
    hit = np.zeros(w, dtype=bool)
    hit[cand.word[(cand.features == feats[cand.word]).all(1)]] = True
    assert hit.all()


def test_chase_complement_position_flips_every_bit():
    """A wrong reference sign (all parity bits complemented) is undone by the virtual flip."""
    code = BCHCode(40, 3)
    feats = np.array([[2, 7, 30]])
    bits = code.parity_of_features(feats)
    soft = np.where(bits, 1.0, -1.0)  # every sign inverted
    hard = code.decode_parity(soft < 0)
    assert not (hard.ok[0] and (hard.features[0] == feats[0]).all())
    cand = code.chase_decode(soft, depth=3, complement_reliability=np.array([0.01]))
    assert (cand.features == feats).all(1).any()


def gf_power(i: int, m: int) -> int:
    """α^i in GF(2^m) with the module's primitive polynomial (plain repeated multiplication)."""
    return x_power(i, PRIMITIVE_POLYNOMIALS[m])


def eval_binary_poly_at(poly: int, x: int, m: int) -> int:
    p, acc, power = PRIMITIVE_POLYNOMIALS[m], 0, 1
    for d in range(poly.bit_length()):
        if (poly >> d) & 1:
            acc ^= power
        power = poly_mulmod(power, x, p)
    return acc


@pytest.mark.parametrize(("n", "t"), [(8, 2), (20, 3), (37, 4)])
def test_parity_matrix_against_brute_force_construction(n, t):
    """g from minimal polynomials found by exhaustive search; parity by long division.

    (The same matrices as the reference ``sparse-transform`` delays; that comparison runs in
    ``benchmarks/spex_vs_reference.py`` because galois needs minutes to build its codes.)
    """
    code = BCHCode(n, t)
    m, nc = code.m, code.nc
    g, covered = 1, set()
    for i in range(1, 2 * t + 1):
        if i in covered:
            continue
        coset, e = set(), i
        while e not in coset:
            coset.add(e)
            e = 2 * e % nc
        covered |= coset
        root = gf_power(i, m)
        deg = len(coset)
        minimal = [
            q for q in range(1 << deg, 1 << (deg + 1)) if eval_binary_poly_at(q, root, m) == 0
        ]
        assert len(minimal) == 1
        prod, a, b = 0, g, minimal[0]
        while b:
            if b & 1:
                prod ^= a
            a, b = a << 1, b >> 1
        g = prod
    assert g == code.generator_polynomial
    r = code.n_parity
    expected = np.zeros((r, n), dtype=bool)
    for i in range(n):
        rem = poly_mod(1 << (r + n - 1 - i), g)
        expected[:, i] = [(rem >> (r - 1 - q)) & 1 for q in range(r)]
    np.testing.assert_array_equal(code.parity_matrix, expected)


def test_input_shape_errors():
    code = BCHCode(8, 2)
    with pytest.raises(ValueError, match="must have shape"):
        code.decode(np.zeros((2, 5), dtype=bool))
    with pytest.raises(ValueError, match="must have shape"):
        code.decode_parity(np.zeros((2, 3), dtype=bool))
