"""Adapters to Captum's visualization: first-order values as image maps and text records.

Captum draws attributions, one value per input element; these adapters turn a result's
first-order values (``result.first_order(index)``) into what the functions of
``captum.attr.visualization`` take: ``visualize_image_attr`` wants a NumPy ``[H, W, C]`` map,
``visualize_text`` a list of ``VisualizationDataRecord``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from torchspex.viz._common import as_numpy, scalar_result
from torchspex.viz.views import feature_positions, image_hwc

if TYPE_CHECKING:
    from torchspex.interactions import Interactions

__all__ = ["to_image_attr", "to_visualization_record", "visualize_image"]


def to_image_attr(
    result: Interactions, feature_mask: Tensor | np.ndarray, index: str = "SV"
) -> np.ndarray:
    """First-order values spread over the pixels of each feature, as Captum's ``[H, W, C]``.

    Args:
        result: a result over image regions, scalar values.
        feature_mask: region ids ``[H, W]``, ``[C, H, W]`` or ``[1, C, H, W]`` (Captum's
            layout; leading size-1 dims are dropped); ids are the result's feature ids.
        index: first-order index (``"SV"``, ``"BV"``, or any index at order 1).

    Returns:
        ``float64 [H, W, C]`` NumPy array (``C = 1`` for a 2-D mask), ready for
        ``captum.attr.visualization.visualize_image_attr``.

    Example:
        >>> from torchspex import Interactions, SparseSpectrum
        >>> spec = SparseSpectrum.from_sets([(0,), (1,)], [-0.5, 1.0], 2)
        >>> to_image_attr(Interactions(spec), torch.tensor([[0, 1], [1, 1]]))[..., 0]
        array([[ 1., -2.],
               [-2., -2.]])
    """
    scalar_result(result, "result")
    mask = as_numpy(feature_mask)
    while mask.ndim > 3 and mask.shape[0] == 1:
        mask = mask[0]
    if mask.ndim == 2:
        mask = mask[None]
    if mask.ndim != 3:
        raise ValueError(
            f"`feature_mask` must be [H, W], [C, H, W] or [1, C, H, W]; got {np.shape(mask)}."
        )
    values = result.first_order(index).numpy()
    return np.moveaxis(values[feature_positions(result, mask)], 0, -1)


def visualize_image(
    result: Interactions,
    image: Tensor | np.ndarray,
    feature_mask: Tensor | np.ndarray,
    index: str = "SV",
    method: str = "blended_heat_map",
    sign: str = "all",
    **kwargs: Any,
) -> tuple[Any, Any]:
    """Captum's ``visualize_image_attr`` on the result's first-order values (no pyplot state).

    Args:
        result: a result over image regions.
        image: ``[C, H, W]`` tensor or ``[H, W, C]`` array (see :func:`~torchspex.viz.image_hwc`).
        feature_mask: region ids, as for :func:`to_image_attr`.
        index: first-order index.
        method: passed to ``visualize_image_attr``.
        sign: passed to ``visualize_image_attr``.
        **kwargs: passed to ``visualize_image_attr``.

    Returns:
        ``(fig, ax)`` from Captum.
    """
    from captum.attr import visualization

    attr = to_image_attr(result, feature_mask, index)
    picture = image_hwc(image)
    if picture.ndim == 2:
        picture = picture[..., None]
    return visualization.visualize_image_attr(
        attr, picture, method=method, sign=sign, use_pyplot=False, **kwargs
    )


def to_visualization_record(
    result: Interactions,
    words: Sequence[str] | None = None,
    index: str = "SV",
    pred_prob: float = 0.0,
    pred_class: Any = 0,
    true_class: Any = 0,
    attr_class: Any = 0,
    normalize: bool = True,
) -> Any:
    """A ``captum.attr.visualization.VisualizationDataRecord`` of the first-order values.

    Args:
        result: a result with one feature per word, scalar values.
        words: the tokens shown (default: the feature names).
        index: first-order index.
        pred_prob, pred_class, true_class, attr_class: shown by ``visualize_text``.
        normalize: divide by the largest magnitude, since Captum clips colours to ``[-1, 1]``.

    Returns:
        ``VisualizationDataRecord``; ``attr_score`` is the sum of the (unnormalized) values.
    """
    from captum.attr import visualization

    scalar_result(result, "result")
    words = list(result.feature_names if words is None else words)
    if len(words) != result.n_features:
        raise ValueError(f"`words` must have {result.n_features} entries; got {len(words)}.")
    values = result.first_order(index)
    shown = values
    if normalize and bool(values.abs().max() > 0):
        shown = values / values.abs().max()
    return visualization.VisualizationDataRecord(
        shown.to(torch.float64), float(pred_prob), pred_class, true_class, attr_class,
        float(values.sum()), words, 0.0,
    )
