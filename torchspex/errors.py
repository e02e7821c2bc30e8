"""The package's own exception types.

They sit below every other module (this one imports nothing from torchspex), so the layer that
first detects a problem can raise it: the SPEX query plan in :mod:`torchspex.sampling` refuses a
budget as the decoders do.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

__all__ = ["BudgetTooSmallError", "did_you_mean"]


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


def did_you_mean(name: object, choices: Iterable[str] | Mapping[str, str]) -> str:
    """`` Did you mean 'x'?`` for a misspelled ``name`` (case-insensitive), else ``""``.

    ``choices`` is a list of valid names or a mapping ``{spelling: name to suggest}`` (aliases).

    Example:
        >>> did_you_mean("proxispex", ["spex", "proxyspex"])
        " Did you mean 'proxyspex'?"
        >>> did_you_mean("shapely", {"shapley": "SV", "SV": "SV"})
        " Did you mean 'SV'?"
        >>> did_you_mean(3, ["SV"])
        ''
    """
    import difflib

    if not isinstance(name, str):
        return ""
    table = dict(choices) if isinstance(choices, Mapping) else {c: c for c in choices}
    lower: dict[str, str] = {}
    for spelling, target in table.items():
        lower.setdefault(spelling.lower(), target)
    close = difflib.get_close_matches(name.lower(), list(lower), n=1, cutoff=0.6)
    return f" Did you mean {lower[close[0]]!r}?" if close else ""
