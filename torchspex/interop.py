"""Hand results to shapiq and shap, and read shapiq's interaction values back.

* :func:`to_shapiq` -> ``shapiq.InteractionValues`` (sparse: only the nonzero interactions,
  with an explicit ``interaction_lookup``, so ``n = 1000`` features stays instant).
* :func:`from_shapiq` -> :class:`~torchspex.Interactions`. shapiq stores index values, not a
  spectrum, and index values capped at order ``l`` do not determine the game. torchspex
  returns the unique game ``g`` of degree ``<= l`` (Möbius coefficients only on sets of at most
  ``l`` features) whose values in ``iv.index`` at order ``l`` are exactly ``iv``'s values. For
  every interaction index the map from such a ``g`` to its values is unitriangular, so ``g``
  exists and is unique. For Moebius, k-SII, STII, FSII and FBII, ``g``'s Möbius coefficients
  are the values themselves: ``g`` is the order-``l`` surrogate the values describe. For a
  generalized value (SGV, BGV, CHGV, IGV, EGV, JointSV) ``g`` solves a small dense linear
  system; for Fourier ``g`` is the listed coefficients; for ELC (which does not determine a
  game) ``g`` is the additive game with ``a({i}) = x_i``, whose ELC is ``x``. Other indices and
  plots then view ``g``.
* :func:`to_shap` -> a 1-D ``shap.Explanation`` of first-order values.

shapiq and shap are optional: ``pip install shapiq shap`` (both are in ``torchspex[test]``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torchspex._formats import SHAPIQ_18_INDICES, SHAPIQ_INDICES, to_shap, to_shapiq
from torchspex.interactions import Interactions

__all__ = ["SHAPIQ_18_INDICES", "SHAPIQ_INDICES", "from_shapiq", "to_shap", "to_shapiq"]


def from_shapiq(iv: Any, feature_names: Sequence[str] | None = None) -> Interactions:
    """A result whose ``iv.index`` view reproduces a ``shapiq.InteractionValues`` exactly.

    The result's spectrum is the unique game of degree ``<= iv.max_order`` whose ``iv.index``
    values at order ``iv.max_order`` are ``iv``'s (module docstring); for a Moebius ``iv`` it is
    the game ``iv`` describes. When ``()`` is missing, ``iv.baseline_value`` is read as
    ``f(empty)``, except for FBII where it is the ``()`` entry (shapiq's ``ExactComputer``
    conventions).

    Args:
        iv: ``shapiq.InteractionValues`` in one of :data:`SHAPIQ_INDICES` or
            :data:`SHAPIQ_18_INDICES`.
        feature_names: display labels for the players.

    Returns:
        :class:`~torchspex.Interactions` with ``index=iv.index`` and ``max_order=iv.max_order``;
        ``n_evaluations`` is ``iv.estimation_budget`` (0 when unknown).

    Raises:
        TypeError: if ``iv`` is not a ``shapiq.InteractionValues``.
        ValueError: for an index torchspex does not define, or interactions above the order of
            an order-dependent index.

    Example:
        >>> import shapiq
        >>> iv = shapiq.InteractionValues({(): 1.0, (0,): 0.5, (0, 1): 2.0}, index="k-SII",
        ...     max_order=2, n_players=3, min_order=0, baseline_value=1.0)
        >>> from_shapiq(iv).to_index("k-SII", 2).to_dict()
        {(): 1.0, (0,): 0.5, (0, 1): 2.0}
    """
    return Interactions.from_shapiq(iv, feature_names)
