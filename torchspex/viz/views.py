"""Interactions drawn on the input: words with arcs, image patches with links."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from torch import Tensor

from torchspex.viz._common import (
    CMAP,
    as_numpy,
    figure_axes,
    first_order_values,
    pair_values,
    pyplot,
    scalar_result,
    symmetric_limit,
    view,
)

if TYPE_CHECKING:
    from torchspex.interactions import Interactions

__all__ = ["feature_positions", "image_hwc", "plot_image", "plot_text"]


def _pair_style(values: np.ndarray, limit: float) -> tuple[list[str], np.ndarray]:
    colours = ["#b2182b" if v > 0 else "#2166ac" for v in values]
    widths = 1.0 + 4.0 * np.abs(values) / limit
    return colours, widths


def plot_text(
    result: Interactions,
    words: Sequence[str] | None = None,
    index: str | None = None,
    max_order: int | None = None,
    n_pairs: int = 5,
    line_width: int = 60,
    ax: Any = None,
) -> tuple[Any, Any]:
    """Words coloured by their first-order value, the strongest pairs drawn as arcs.

    Both come from the same view (``index``, ``max_order``): order-1 values colour the words
    (red positive, blue negative), and the ``n_pairs`` largest order-2 values in magnitude are
    arcs between the words (red positive, blue negative, wider when stronger).

    Args:
        result: a result with one feature per word, scalar values.
        words: the words to show (default: the feature names).
        index: interaction index (default: the result's).
        max_order: order cap of the view (default: the result's).
        n_pairs: how many pair arcs to draw.
        line_width: characters per line before wrapping.
        ax: matplotlib axes to draw on.

    Returns:
        ``(fig, ax)``; the words are the axes' text artists, in order.
    """
    scalar_result(result, "result")
    shown = view(result, index, max_order)
    words = list(shown.feature_names if words is None else words)
    if len(words) != shown.n_features:
        raise ValueError(f"`words` must have {shown.n_features} entries; got {len(words)}.")
    first = first_order_values(shown)
    pairs, values = pair_values(shown)
    pairs, values = pairs[:n_pairs], values[:n_pairs]
    limit = symmetric_limit(first, values)
    # lay the words out in character units, wrapping at line_width
    centres, line, column = [], 0, 0
    for word in words:
        width = len(word) + 1
        if column and column + width > line_width:
            line, column = line + 1, 0
        centres.append((column + width / 2.0, -1.6 * line))
        column += width
    n_lines = line + 1
    plt = pyplot()
    fig, ax = figure_axes(ax, (max(0.13 * min(line_width, column + 5) + 1.5, 4.0),
                               1.0 * n_lines + 1.6))
    cmap, norm = plt.get_cmap(CMAP), plt.Normalize(-limit, limit)
    for (x, y), word, value in zip(centres, words, first):
        face = cmap(norm(value))
        dark = 0.299 * face[0] + 0.587 * face[1] + 0.114 * face[2] < 0.5  # white text on dark
        ax.text(x, y, word, ha="center", va="center", family="monospace", fontsize=11,
                color="white" if dark else "black",
                bbox={"facecolor": face, "edgecolor": "none", "boxstyle": "round,pad=0.25"})
    from matplotlib.patches import FancyArrowPatch

    colours, widths = _pair_style(values, limit)
    for (i, j), colour, width in zip(pairs.tolist(), colours, widths):
        (xa, ya), (xb, yb) = centres[i], centres[j]
        ax.add_patch(FancyArrowPatch(
            (xa, ya + 0.45), (xb, yb + 0.45), arrowstyle="-", color=colour, linewidth=width,
            alpha=0.8, connectionstyle="arc3,rad=-0.35" if xa < xb else "arc3,rad=0.35",
        ))
    ax.set_xlim(0, max(line_width if n_lines > 1 else column, 1) + 0.5)
    ax.set_ylim(-1.6 * line - 1.0, 2.2)
    ax.axis("off")
    ax.set_title(f"First-order values and top {len(values)} pairs ({shown.index})")
    fig.colorbar(plt.cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, orientation="horizontal",
                 fraction=0.08, pad=0.02)
    return fig, ax


def image_hwc(image: Tensor | np.ndarray) -> np.ndarray:
    """An image as float ``[H, W, C]`` (or ``[H, W]``) in ``[0, 1]`` for display.

    Torch tensors are read as ``[C, H, W]`` or ``[1, C, H, W]`` (PyTorch's layout), NumPy arrays
    as ``[H, W, C]``; 2-D inputs are grey images. Values outside ``[0, 1]`` are rescaled (integer
    images by 255, others by their range).
    """
    is_torch = isinstance(image, Tensor)
    arr = as_numpy(image)
    if arr.ndim == 4 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim == 3 and is_torch:
        arr = np.moveaxis(arr, 0, -1)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3):
        raise ValueError(
            "`image` must be [C, H, W] / [1, C, H, W] (torch), [H, W, C] (numpy) or [H, W]; "
            f"got shape {tuple(np.shape(image))}."
        )
    if np.issubdtype(arr.dtype, np.integer):
        return arr.astype(np.float64) / 255.0
    arr = arr.astype(np.float64)
    low, high = float(arr.min()), float(arr.max())
    if low < 0.0 or high > 1.0:
        arr = (arr - low) / (high - low if high > low else 1.0)
    return arr


def feature_positions(result: Interactions, feature_mask: Tensor | np.ndarray) -> np.ndarray:
    """Each pixel's feature position in ``result`` (``int64``, same shape as the mask).

    ``feature_mask`` holds the feature ids the result is keyed by (e.g. patch ids).

    Raises:
        ValueError: when the mask holds ids the result does not know.
    """
    ids = as_numpy(feature_mask)
    unique, inverse = np.unique(ids, return_inverse=True)
    lookup = {fid: i for i, fid in enumerate(result.feature_ids)}
    pos = np.array([lookup.get(u.item(), -1) for u in unique], dtype=np.int64)
    if (pos < 0).any():
        missing = unique[pos < 0][:5].tolist()
        raise ValueError(
            f"`feature_mask` holds ids {missing} that are not feature ids of the result "
            f"({result.n_features} features); pass the feature mask the result was computed with."
        )
    return pos[inverse.reshape(ids.shape)]


def _spatial_mask(feature_mask: Tensor | np.ndarray) -> np.ndarray:
    mask = as_numpy(feature_mask)
    while mask.ndim > 2:  # [1, C, H, W] / [C, H, W]: the first channel's map
        mask = mask[0]
    if mask.ndim != 2:
        raise ValueError(f"`feature_mask` must have at least 2 dims [H, W]; got {mask.shape}.")
    return mask


def plot_image(
    result: Interactions,
    image: Tensor | np.ndarray,
    feature_mask: Tensor | np.ndarray,
    index: str | None = None,
    max_order: int | None = None,
    n_pairs: int = 5,
    alpha: float = 0.55,
    ax: Any = None,
) -> tuple[Any, Any]:
    """Patch first-order values as a heatmap over the image, strongest patch pairs as links.

    Args:
        result: a result over image patches (feature ids = the ids in ``feature_mask``).
        image: ``[C, H, W]`` / ``[1, C, H, W]`` tensor, or ``[H, W, C]`` / ``[H, W]`` array.
        feature_mask: patch ids ``[H, W]`` (leading size-1 or channel dims are allowed; the
            first channel is drawn), as passed to ``attribute``.
        index: interaction index (default: the result's).
        max_order: order cap of the view (default: the result's).
        n_pairs: how many of the largest order-2 values to draw between patch centres.
        alpha: opacity of the heatmap.
        ax: matplotlib axes to draw on.

    Returns:
        ``(fig, ax)``; the patches of the drawn pairs are labelled with their feature names.
    """
    scalar_result(result, "result")
    shown = view(result, index, max_order)
    picture = image_hwc(image)
    mask = _spatial_mask(feature_mask)
    if mask.shape != picture.shape[:2]:
        raise ValueError(
            f"`feature_mask` covers {mask.shape} pixels but `image` is {picture.shape[:2]}."
        )
    pos = feature_positions(shown, mask)
    first = first_order_values(shown)
    pairs, values = pair_values(shown)
    pairs, values = pairs[:n_pairs], values[:n_pairs]
    limit = symmetric_limit(first)
    fig, ax = figure_axes(ax, (6.0, 6.0))
    ax.imshow(picture, cmap="gray" if picture.ndim == 2 else None)
    heat = ax.imshow(first[pos], cmap=CMAP, vmin=-limit, vmax=limit, alpha=alpha)
    rows, cols = np.indices(mask.shape)
    count = np.bincount(pos.ravel(), minlength=shown.n_features).astype(np.float64)
    safe = np.maximum(count, 1.0)
    cy = np.bincount(pos.ravel(), rows.ravel(), shown.n_features) / safe
    cx = np.bincount(pos.ravel(), cols.ravel(), shown.n_features) / safe
    colours, widths = _pair_style(values, symmetric_limit(values))
    for (i, j), colour, width in zip(pairs.tolist(), colours, widths):
        ax.plot([cx[i], cx[j]], [cy[i], cy[j]], color=colour, linewidth=width, alpha=0.9,
                marker="o", markersize=4)
    for i in sorted(set(pairs.ravel().tolist())):
        if count[i]:
            ax.text(cx[i], cy[i], shown.feature_names[i], fontsize=7, ha="center", va="bottom",
                    color="black", bbox={"facecolor": "white", "alpha": 0.6, "pad": 1,
                                         "edgecolor": "none"})
    ax.set_axis_off()
    ax.set_title(f"Patch values and top {len(values)} pairs ({shown.index})")
    fig.colorbar(heat, ax=ax, fraction=0.046, pad=0.04)
    return fig, ax
