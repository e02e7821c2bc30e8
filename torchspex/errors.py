"""The package's own exception types.

They sit below every other module (this one imports nothing from torchspex), so the layer that
first detects a problem can raise it: the SPEX query plan in :mod:`torchspex.sampling` refuses a
budget as the decoders do.
"""

from __future__ import annotations

__all__ = ["BudgetTooSmallError"]


class BudgetTooSmallError(ValueError):
    """``n_samples`` is below what the method needs; ``minimum`` says what would work.

    Raised before the first model call, so an impossible budget costs nothing.

    Args:
        message: what was asked, the minimum and how to get there.
        minimum: the smallest ``n_samples`` that would work.

    Example:
        >>> err = BudgetTooSmallError("raise `n_samples` to at least 64", minimum=64)
        >>> isinstance(err, ValueError), err.minimum
        (True, 64)
    """

    def __init__(self, message: str, minimum: int) -> None:
        super().__init__(message)
        self.minimum = minimum
