"""Dense factorizations, kept off the matrix sizes where the CPU LAPACK is slow.

MKL (torch's CPU LAPACK) factors a matrix whose side is a multiple of 128 more slowly than one
8 rows larger: one thread, five float64 Cholesky factors at 1,024 take 0.15 s against 0.05 s at
1,032; at 512, 1,536 and 2,048 the ratio is 2.2-2.9x, at 768 and 1,280 1.7-1.8x, at 384, 640
and 1,152 1.3-1.6x; at 960 (a multiple of 64 only) 1.2x, at 1,000 none. LU factors lose up to
1.35x, float32 Cholesky factors 1.2-3.4x (3.4x at 1,024; ``python
benchmarks/linalg_sizes.py``, ``benchmarks/results/linalg_sizes.json``). The regression
decoder's default once capped a part at 1,024 terms, exactly such a size. Sides that are not
multiples of 8 lose too, less: float32 Cholesky factors of three matrices at 525, 703, 781, 831
and 1,001 took 1.15-1.32x the time at the next multiple of 8, float64 1.0-1.18x (padding at 362,
383 and 511 gained nothing or lost up to 7%). A symmetric or square matrix is therefore factored
inside the smallest larger one whose side is a multiple of 8 and not of 128 (:func:`nice_side`;
``ALIGN``), with an identity block in the corner: the factor's leading block is the factor of
the matrix itself (the blocks never mix: the Cholesky factor of a block diagonal matrix is block
diagonal, and partial pivoting never picks a row that is zero in the pivot column), so only
round-off, not the result, can change.
"""

from __future__ import annotations

import torch
from torch import Tensor

#: pad sides that are multiples of this (the slow sizes above) ...
PAD_MULTIPLE = 128
#: ... by this many rows (``+ 8`` was as fast as ``+ 1`` or a little faster at most sides)
PAD = 8
#: smaller matrices are cheap whatever their side
PAD_FROM = 256
#: pad every side up to :func:`nice_side` (a multiple of 8), not only the multiples of 128
#: (``False``: those by :data:`PAD`). Measured in the regression decoder (3 seeds, the MLP,
#: MiniLM and the CNN over 2x2 patches at 1,024-4,096 calls: ``python
#: benchmarks/decode_variants.py low,low+noalign --budgets 1024,2048,4096``,
#: results/decode_variants_align.json): every error unchanged, decode -1% to -9% (one cell +2%).
ALIGN = True


def nice_side(k: int) -> int:
    """The smallest side ``>= k`` that is a multiple of 8 and not of :data:`PAD_MULTIPLE`.

    Example:
        >>> [nice_side(k) for k in (250, 257, 525, 528, 1024)]
        [264, 264, 528, 528, 1032]
    """
    side = -(-k // 8) * 8
    return side + PAD if side % PAD_MULTIPLE == 0 else side


def _padded(mat: Tensor) -> Tensor | None:
    """``mat [..., s, s]`` inside ``[..., S, S]`` (``S = nice_side(s)``) with the identity in the
    corner, or ``None`` where its side is not a slow one (or it is not on the CPU)."""
    s = mat.shape[-1]
    side = nice_side(s) if ALIGN else s + PAD if s % PAD_MULTIPLE == 0 else s
    if mat.device.type != "cpu" or s < PAD_FROM or side == s:
        return None
    out = mat.new_zeros(*mat.shape[:-2], side, side)
    out[..., :s, :s] = mat
    out[..., range(s, side), range(s, side)] = 1.0
    return out


class ShiftedCholesky:
    """Lower Cholesky factors of ``mat + diag(shift)`` for many shifts of one batch ``mat [...,
    s, s]`` (ridge penalties on the same normal equations).

    ``mat`` is padded once (see the module docstring) and every call reuses one work buffer
    (torch's ``out=`` for the factor measured slower: one more copy). The factor may
    be :data:`PAD` rows larger than ``mat``: solve with :func:`solve_triangular`, which pads
    the right side and cuts the answer (slicing the factor instead costs a strided copy in
    every solve).
    """

    def __init__(self, mat: Tensor) -> None:
        self.side = mat.shape[-1]
        padded = _padded(mat)
        self.base = mat.clone() if padded is None else padded
        self.work = torch.empty_like(self.base)

    def __call__(self, shift: Tensor) -> tuple[Tensor, Tensor]:
        """``(factor, info)`` as :func:`torch.linalg.cholesky_ex` gives them, of ``mat +
        diag(shift)``, ``shift [..., s]``."""
        self.work.copy_(self.base)
        self.work.diagonal(dim1=-2, dim2=-1)[..., : self.side].add_(shift)
        return torch.linalg.cholesky_ex(self.work)


def _pad_rows(rhs: Tensor, rows: int) -> Tensor:
    extra = rows - rhs.shape[-2]
    return torch.nn.functional.pad(rhs, (0, 0, 0, extra)) if extra else rhs


def solve_triangular(chol: Tensor, rhs: Tensor, upper: bool) -> Tensor:
    """``L^{-1} rhs`` (``upper=False``) or ``L'^{-1} rhs`` (``upper=True``) for a factor ``L``
    from :func:`cholesky_ex`; ``rhs [..., s, k]`` with ``s`` the side of the matrix factored."""
    s = rhs.shape[-2]
    tri = chol.mT if upper else chol
    out = torch.linalg.solve_triangular(tri, _pad_rows(rhs, chol.shape[-1]), upper=upper)
    return out[..., :s, :]


def cholesky(mat: Tensor) -> Tensor:
    """The lower Cholesky factor of a symmetric positive definite ``mat [s, s]``, perhaps of
    the padded matrix (solve with :func:`solve_triangular`); raises where it is not positive
    definite, as :func:`torch.linalg.cholesky` does."""
    big = _padded(mat)
    return torch.linalg.cholesky(mat if big is None else big)


def spd_inverse(mat: Tensor) -> Tensor:
    """The inverse of a symmetric positive definite ``mat [s, s]`` from its Cholesky factor;
    raises where it is not positive definite, as :func:`torch.linalg.cholesky` does."""
    s = mat.shape[-1]
    return torch.cholesky_inverse(cholesky(mat))[..., :s, :s]


def lu_factor(mat: Tensor) -> tuple[Tensor, Tensor]:
    """:func:`torch.linalg.lu_factor` of ``mat [s, s]``, possibly of the padded matrix: solve
    with :func:`lu_solve`."""
    big = _padded(mat)
    return torch.linalg.lu_factor(mat if big is None else big)


def lu_solve(lu: Tensor, pivots: Tensor, rhs: Tensor) -> Tensor:
    """``mat^{-1} rhs`` for ``(lu, pivots)`` from :func:`lu_factor`; ``rhs [s, k]``."""
    s = rhs.shape[-2]
    return torch.linalg.lu_solve(lu, pivots, _pad_rows(rhs, lu.shape[-1]))[..., :s, :]
