"""shapiq's and shap's formats: the code behind :mod:`torchspex.interop` and the result's
``to_shapiq`` / ``from_shapiq`` / ``to_shap``.

It sits below the result type: it reads a result through its public attributes only and never
builds one (``Interactions.from_shapiq`` does, from :func:`shapiq_fields`), so
``torchspex/interactions.py`` imports it and nothing here imports the result back. The public
home of these functions, with the conventions, is :mod:`torchspex.interop`.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from torchspex.fourier import SparseSpectrum, canonical_index, fourier_to_index
from torchspex.fourier._sets import coalesce, normalize_indices, subsets
from torchspex.fourier.indices import (
    FIRST_ORDER,
    GENERALIZED,
    ORDER_DEPENDENT,
    moebius_weights,
)
from torchspex.fourier.transforms import fourier_to_moebius, moebius_to_fourier

if TYPE_CHECKING:
    from torchspex.interactions import Interactions

__all__ = ["SHAPIQ_18_INDICES", "SHAPIQ_INDICES", "shapiq_fields", "to_shap", "to_shapiq"]

#: Indices that both torchspex and shapiq define (same spelling, same values).
SHAPIQ_INDICES = ("Moebius", "SII", "k-SII", "BII", "STII", "FSII", "FBII", "SV", "BV")
#: shapiq 1.8's other ``ExactComputer`` indices, also carried by :func:`to_shapiq` and
#: :func:`shapiq_fields` (same spelling, same values and ``()`` entry as ``ExactComputer``);
#: shapiq >= 1.4 knows all but ``"Fourier"`` (shapiq >= 1.8).
SHAPIQ_18_INDICES = (
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
    "Fourier",
)
#: shapiq's order-1 names (``get_index_from_computation_index``): the index generalizes SV/BV.
_ORDER1_NAME = {
    **dict.fromkeys(("SII", "k-SII", "STII", "FSII", "CHII", "kADD-SHAP", "SGV", "CHGV"), "SV"),
    "JointSV": "SV",
    **dict.fromkeys(("BII", "FBII", "BGV"), "BV"),
}
#: Largest linear system :func:`shapiq_fields` solves for a generalized value (values, unknowns).
_MAX_GV_SOLVE = 4096


def _import(name: str) -> Any:
    try:
        return __import__(name)
    except ImportError as err:  # pragma: no cover - exercised only without the package
        raise ImportError(
            f"this needs the optional package {name!r}: `pip install {name}` "
            '(or `pip install "torchspex[test]"`).'
        ) from err


def _scalar_result(result: Interactions, what: str) -> None:
    if result.out_shape != ():
        raise ValueError(
            f"`{what}` needs a result with one scalar value per interaction; this one has "
            f"outputs of shape {result.out_shape}. Select one first, e.g. "
            f"`result.select(0).{what}()`."
        )


def _shapiq_index(index: str, shapiq: Any = None) -> str:
    with contextlib.suppress(ValueError):  # an unknown name gets the message below
        index = canonical_index(index)
    known: tuple[str, ...] = SHAPIQ_INDICES + SHAPIQ_18_INDICES
    version = ""
    if shapiq is not None:  # exporting: the installed shapiq must know the name
        from shapiq.game_theory.indices import is_index_valid

        known = tuple(name for name in known if is_index_valid(name))
        version = f" (shapiq {getattr(shapiq, '__version__', None) or 'installed'})"
    if index not in known:
        newer = "; 'Fourier' needs shapiq >= 1.8" if index == "Fourier" else ""
        raise ValueError(
            f"`index` must be one shapiq also defines{version}, one of {known}; got "
            f"{index!r}{newer}. Use result.to_index('Moebius') for the spectrum in a "
            "shapiq-readable basis."
        )
    return index


def to_shapiq(
    result: Interactions, index: str | None = None, max_order: int | None = None
) -> Any:
    """The interactions as a ``shapiq.InteractionValues`` object.

    Args:
        result: a result with scalar values (use ``result.select(i)`` for one output).
        index: the shapiq index to export (default: the result's own view).
        max_order: order cap (default: the result's ``max_order``; when that is ``None``, the
            largest order present, which gives the same values).

    Returns:
        ``shapiq.InteractionValues`` holding ``()``, every player's first-order value (0
        included, so shapiq's graph plots show every player) and every nonzero interaction;
        ``estimation_budget`` is the number of model evaluations. At order 1 shapiq calls
        SII, k-SII, STII, FSII, CHII, kADD-SHAP, SGV, CHGV and JointSV "SV" and BII, FBII and
        BGV "BV"; those are exported under that name with the values and ``()`` entry of
        shapiq 1.8's ``ExactComputer(index, 1)``: the SV view (``()`` = ``f(empty)``), the BV
        view (``()`` = ``E_uniform[f]``), FBII's own order-1 view (``()`` and baseline = the
        FBII intercept) and, for BGV, the BV singletons with ``()`` = 0. ELC has one entry per
        player, no ``()``, ``min_order=1`` and baseline 0 (as shapiq's).

    Raises:
        ValueError: for a multi-output result or an index the installed shapiq does not define
            (Fourier before shapiq 1.8).

    Example:
        >>> from torchspex import Interactions, SparseSpectrum
        >>> spec = SparseSpectrum.from_sets([(), (0, 1)], [1.0, 1.0], 2)
        >>> iv = to_shapiq(Interactions(spec, index="Moebius"))
        >>> iv[(0, 1)], iv.baseline_value
        (4.0, 2.0)
    """
    shapiq = _import("shapiq")
    _scalar_result(result, "to_shapiq")
    index = _shapiq_index(result.index if index is None else index, shapiq)
    order = result.max_order if max_order is None else max_order
    view = result if (index, order) == (result.index, result.max_order) else result.to_index(
        index, order
    )
    values = view.values
    if index == "ELC":
        return _elc_to_shapiq(shapiq, result, values)
    top = view.max_order if view.max_order is not None else max(values.max_size, 1)
    source = index
    if top == 1 and index in _ORDER1_NAME:  # shapiq renames these at order 1
        index = _ORDER1_NAME[index]
        if source == "BGV":  # ExactComputer("BGV", 1): the BV singletons, () = 0
            values = values.replace(coefficients=values.coefficients * (values.orders > 0))
        elif source != "FBII":  # FBII keeps its own order-1 view: () = the intercept
            values = result.to_index(index).values
    # Every player gets its first-order entry (0 when absent): shapiq's graph plots (network,
    # SI graph) draw a node only for players with one, and drop the edges of the others.
    interactions: dict[tuple[int, ...], float] = {(): 0.0}
    if top >= 1:
        interactions.update(((i,), 0.0) for i in range(result.n_features))
    interactions.update(zip(values.sets(), values.coefficients.tolist()))
    empty = interactions[()]
    n_evaluations = result.n_evaluations
    iv = shapiq.InteractionValues(
        interactions,
        index=index,
        max_order=int(top),
        n_players=result.n_features,
        min_order=0,
        interaction_lookup={key: i for i, key in enumerate(interactions)},
        estimated=result.method != "exhaustive",
        estimation_budget=n_evaluations if n_evaluations else None,
        baseline_value=float(result.baseline_value) if index == "SII" else empty,
    )
    # As shapiq's ExactComputer: the baseline is f(empty) for every index but FBII (there it is
    # the () entry, at order 1 too), also where () differs (SII, BII, BV, Fourier, BGV at
    # order 1), which the constructor cannot express.
    if source != "FBII":
        iv.baseline_value = float(result.baseline_value)
    return iv


def _elc_to_shapiq(shapiq: Any, result: Interactions, values: SparseSpectrum) -> Any:
    """ELC as shapiq's ``ExactComputer("ELC")``: one value per player, min_order 1, baseline 0."""
    interactions: dict[tuple[int, ...], float] = {(i,): 0.0 for i in range(result.n_features)}
    interactions.update(zip(values.sets(), values.coefficients.tolist()))
    n_evaluations = result.n_evaluations
    return shapiq.InteractionValues(
        interactions,
        index="ELC",
        max_order=1,
        n_players=result.n_features,
        min_order=1,
        interaction_lookup={key: i for i, key in enumerate(interactions)},
        estimated=result.method != "exhaustive",
        estimation_budget=n_evaluations if n_evaluations else None,
        baseline_value=0.0,
    )


def _solve_degree_game(values: SparseSpectrum, index: str, order: int) -> SparseSpectrum:
    """Möbius coefficients ``a`` (degree ``<= order``) with ``index(a) == values`` exactly.

    ``I(T) = sum_{S ⊇ T, |S| <= order} w(|S|, |T|) a(S)`` with ``w(t, t) = 1``, solved from the
    top order down: ``a(T) = I(T) - sum_{S ⊋ T} w(|S|, |T|) a(S)``.
    """
    n = values.n_features
    table = moebius_weights(index, order, order)
    sizes = values.orders
    out_idx = torch.zeros(0, order, dtype=torch.long)
    out_coef = torch.zeros(0, dtype=torch.float64)
    for t in range(order, -1, -1):
        level = sizes == t
        idx_t = values.indices[level]
        idx_t = torch.nn.functional.pad(idx_t, (0, order - idx_t.shape[1]), value=-1)
        coef_t = values.coefficients[level]
        if out_idx.shape[0] and bool(table[t + 1 :, t].ne(0).any()):
            sub, parent, _ = subsets(out_idx, max_size=t, min_size=t)
            parent_size = (out_idx[parent] >= 0).sum(dim=1)
            weight = table[parent_size, t]
            sub = torch.nn.functional.pad(sub, (0, order - sub.shape[1]), value=-1)
            idx_t = torch.cat([idx_t, sub])
            coef_t = torch.cat([coef_t, -weight * out_coef[parent]])
        if idx_t.shape[0]:
            idx_t, coef_t = coalesce(idx_t, coef_t, n)
            out_idx = torch.cat([out_idx, idx_t])
            out_coef = torch.cat([out_coef, coef_t])
    return SparseSpectrum(normalize_indices(out_idx), out_coef, n, "Moebius").coalesce()


def _solve_generalized_game(values: SparseSpectrum, index: str, order: int) -> SparseSpectrum:
    """Möbius ``a`` whose generalized values up to ``order`` are ``values``.

    A dense linear system over the ``m = sum_{t <= order} C(n, t)`` coalitions, built by
    converting Möbius basis games at once (one output each), solved for its minimum-norm
    solution: first among games of degree ``<= order``, and when none of those has the values
    (they came from a game of higher degree), among all games. ``a(())`` is the ``()`` entry
    (shapiq's convention: ``f(empty)``).
    """
    from torchspex.fourier.generalized import generalized_index

    n = values.n_features
    rows = [c for t in range(1, order + 1) for c in itertools.combinations(range(n), t)]
    m = len(rows)
    position = {row: i for i, row in enumerate(rows)}
    target = torch.zeros(m, dtype=torch.float64)
    empty = torch.zeros((), dtype=torch.float64)
    for row, value in zip(values.sets(), values.coefficients.tolist()):
        if row:
            target[position[row]] = value
        else:
            empty = torch.tensor(value, dtype=torch.float64)
    tol = 1e-9 * max(float(target.abs().max()) if m else 0.0, 1.0)
    for degree in dict.fromkeys((order, n)):
        unknowns = [c for t in range(1, degree + 1) for c in itertools.combinations(range(n), t)]
        if max(m, len(unknowns)) > _MAX_GV_SOLVE:
            raise ValueError(
                f"reading {index} values back means solving for {len(unknowns)} Möbius "
                f"coefficients from {m} values (at most {_MAX_GV_SOLVE}); lower max_order or "
                "use fewer players."
            )
        eye = torch.eye(len(unknowns), dtype=torch.float64)
        basis = SparseSpectrum.from_sets(unknowns, eye, n, "Moebius")
        listed = generalized_index(basis, index, order)  # row T, column j: GV(T) of game j
        matrix = torch.zeros(m, len(unknowns), dtype=torch.float64)
        for row, coef in zip(listed.sets(), listed.coefficients):
            if row:
                matrix[position[row]] = coef
        # Several games can share the values (SGV({i, j}) = SGV({i}) + SGV({j}) for a pair
        # game): the minimum-norm one.
        solution = torch.linalg.lstsq(matrix, target[:, None], driver="gelsd").solution[:, 0]
        if torch.allclose(matrix @ solution, target, rtol=0.0, atol=tol):
            coef = torch.cat([empty[None], solution])
            return SparseSpectrum.from_sets([(), *unknowns], coef, n, "Moebius")
    raise ValueError(f"no game has these {index} values.")  # pragma: no cover


def shapiq_fields(iv: Any) -> dict[str, Any]:
    """The constructor arguments of the result that reproduces a ``shapiq.InteractionValues``.

    The spectrum is the unique game of degree ``<= iv.max_order`` whose ``iv.index`` values at
    order ``iv.max_order`` are ``iv``'s (see :func:`torchspex.interop.from_shapiq`).

    Args:
        iv: ``shapiq.InteractionValues`` in one of :data:`SHAPIQ_INDICES` or
            :data:`SHAPIQ_18_INDICES`.

    Returns:
        ``{"spectrum", "index", "max_order", "n_evaluations"}`` for
        :class:`~torchspex.Interactions`.

    Raises:
        TypeError: if ``iv`` is not a ``shapiq.InteractionValues``.
        ValueError: for an index torchspex does not define, or interactions above the order of
            an order-dependent index.
    """
    for attr in ("interactions", "index", "max_order", "n_players", "baseline_value"):
        if not hasattr(iv, attr):
            raise TypeError(
                f"`iv` must be a shapiq.InteractionValues; got {type(iv).__name__} "
                f"(no `{attr}`)."
            )
    index = _shapiq_index(iv.index)
    n = int(iv.n_players)
    items = {tuple(sorted(int(i) for i in k)): float(v) for k, v in iv.interactions.items()}
    bad = [k for k in items if any(not 0 <= i < n for i in k)]
    if bad:
        raise ValueError(f"`iv` has interactions {bad[:3]} outside players 0..{n - 1}.")
    largest = max((len(k) for k in items), default=0)
    order = 1 if index in FIRST_ORDER else int(iv.max_order)
    if largest > order:
        if index in ORDER_DEPENDENT or index in FIRST_ORDER:
            raise ValueError(
                f"`iv` holds {index} interactions of order {largest} above its max_order={order}."
            )
        order = largest
    order = max(min(order, n), 1) if n else 0
    known_empty = () in items or index == "FBII"
    if index == "FBII":  # shapiq's FBII baseline is the () entry (the intercept)
        items.setdefault((), float(iv.baseline_value))
    if index == "ELC":  # shapiq's ELC has no () and baseline 0
        items.pop((), None)
        known_empty = False
    sets = list(items)
    values = SparseSpectrum.from_sets(sets, [items[k] for k in sets], n, index)
    if index == "Fourier":  # the listed coefficients are a game's (degree <= order) spectrum
        moebius = fourier_to_moebius(values.replace(basis="Fourier"))
    elif index == "ELC":  # the additive game a({i}) = x_i has ELC x
        moebius = values.prune(max_order=1).replace(basis="Moebius")
    elif index in GENERALIZED:
        moebius = _solve_generalized_game(values, index, order)
    else:
        table_index = "SV" if index == "SII" and order == 1 else index
        moebius = _solve_degree_game(values, table_index, order)
    if not known_empty:  # baseline_value is f(empty) = a(())
        keep = moebius.orders > 0
        moebius = SparseSpectrum(
            torch.cat([torch.full((1, moebius.indices.shape[1]), -1), moebius.indices[keep]]),
            torch.cat([torch.tensor([float(iv.baseline_value)]), moebius.coefficients[keep]]),
            n,
            "Moebius",
        ).coalesce()
    spectrum = moebius_to_fourier(moebius).prune(atol=0.0)
    budget = getattr(iv, "estimation_budget", None)
    return {
        "spectrum": spectrum,
        "index": index,
        "max_order": None if index in FIRST_ORDER else order,
        "n_evaluations": int(budget) if budget else 0,
    }


def to_shap(
    result: Interactions, index: str = "SV", data: Sequence[Any] | np.ndarray | None = None
) -> Any:
    """First-order values as a 1-D ``shap.Explanation`` (for ``shap.plots.waterfall``, ``bar``).

    Args:
        result: a result with scalar values.
        index: first-order index (``"SV"``, ``"BV"``, or any index capped at order 1).
        data: the explained feature values or words, shown by shap's plots.

    Returns:
        ``shap.Explanation`` with ``values`` ``float64 [n_features]``, ``base_values`` the
        index's empty-set value (for SV ``f(empty)``, so ``base + sum(values) = f(all kept)``)
        and the result's ``feature_names``.

    Example:
        >>> from torchspex import Interactions, SparseSpectrum
        >>> spec = SparseSpectrum.from_sets([(), (0,), (1,)], [1.0, 0.5, 0.25], 2)
        >>> e = to_shap(Interactions(spec))   # f(empty) = 1.75, f(all) = 0.25
        >>> e.values.tolist(), e.base_values
        ([-1.0, -0.5], 1.75)
    """
    shap = _import("shap")
    _scalar_result(result, "to_shap")
    view = fourier_to_index(result.spectrum, index, 1)
    empty = view.orders == 0
    base = float(view.coefficients[empty].sum()) if bool(empty.any()) else 0.0
    values = result.first_order(index).numpy()
    if data is not None:
        data = np.asarray(data)
        if data.shape != (result.n_features,):
            raise ValueError(
                f"`data` must hold one entry per feature, shape ({result.n_features},); got "
                f"{data.shape}."
            )
    return shap.Explanation(
        values=values, base_values=base, data=data, feature_names=list(result.feature_names)
    )
