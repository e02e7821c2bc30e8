"""Default budgets and designs of the decoders, below every decoder that reads them.

:func:`~torchspex.decoders.base.planned_evaluations` sizes a progress bar from the defaults of
SPEX and the regression, and :func:`~torchspex.decoders.exhaustive.check_exhaustive` quotes
ProxySPEX's minimum; the decoders themselves import these names from here (and re-export
them), so no decoder module imports another one upwards.
"""

from __future__ import annotations

__all__ = [
    "DEFAULT_B",
    "DEFAULT_DEGREE",
    "MIN_DEFAULT_DEGREE",
    "PROXYSPEX_MIN_SAMPLES",
    "default_degree",
    "regression_n_samples",
]

#: ``b`` of the reference implementation's default design (torchspex's default budget is
#: :func:`~torchspex.sampling.default_n_samples` instead; kept for comparison).
DEFAULT_B = 8
#: Degree parameter ``t`` used when neither ``max_order`` nor ``degree_parameter`` is given.
DEFAULT_DEGREE = 5
#: Smallest default ``t`` for a given ``max_order``: one order above pairwise interactions.
MIN_DEFAULT_DEGREE = 3

#: Fewest samples ProxySPEX accepts (below it the proxy has nothing to learn from).
PROXYSPEX_MIN_SAMPLES = 64


def default_degree(max_order: int | None) -> int:
    """The BCH degree parameter ``t`` used when ``degree_parameter`` is not given.

    ``t`` is the order up to which a singleton's index is always decodable (a term of order
    ``|k|`` tolerates ``t - |k|`` flipped signs), and every unit of ``t`` costs about
    ``log2 n`` delays per bin, i.e. fewer bins for the same budget. So ``t = max(3, max_order)``:
    the order of interest (as spectralexplain), but never below 3, because the learned function
    must still hold the order-3 terms that pairwise indices aggregate (with ``t = max_order = 2``
    a game with order-3 terms came out with held-out R^2 near 0.77). Without ``max_order`` the
    orders are unknown and ``t = 5`` (shapiq's default). A budget too small for ``t`` lowers it
    down to 2 (see :func:`~torchspex.sampling.degree_for_budget`). The previous default
    ``max(5, max_order)`` cost 1.3-1.6x the calls on order-3 games.

    Example:
        >>> default_degree(None), default_degree(1), default_degree(2), default_degree(7)
        (5, 3, 3, 7)
    """
    return DEFAULT_DEGREE if max_order is None else max(MIN_DEFAULT_DEGREE, max_order)


def regression_n_samples(n_features: int) -> int:
    """The regression's (and ``method="auto"``'s) default budget: ``20 n`` calls, at least
    256, capped at ``2^n``; :func:`torchspex.decoders.regression.suggest_n_samples`.

    Example:
        >>> regression_n_samples(40), regression_n_samples(6)
        (800, 64)
    """
    budget = max(256, 20 * n_features)
    return budget if n_features >= 62 else min(budget, 1 << n_features)
