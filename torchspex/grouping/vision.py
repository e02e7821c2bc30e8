"""Image features: ViT-style patch grids, segment maps from label images, superpixels.

Every function returns a Captum-style ``feature_mask``: an ``int64`` tensor of group ids with
the image's number of dimensions, the spatial (last two) dimensions filled in and every other
dimension of size 1, so it broadcasts over the channels and the batch of a channels-first
tensor. :func:`superpixels` also segments a channels-last ``(H, W, C)`` array (PIL's layout)
and still returns the channels-first ``(1, H, W)`` mask.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = ["mask_image", "patch_grid", "patch_labels", "segment_mask", "superpixels"]


def _positive_int(value: Any) -> int | None:
    """``value`` as an int when it is a positive integer (a Python or NumPy int), else None."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        return None
    return int(value) if value >= 1 else None


def _spatial_shape(
    image_shape: Sequence[int] | Tensor, name: str = "image_shape"
) -> tuple[int, ...]:
    shape = tuple(image_shape.shape) if isinstance(image_shape, Tensor) else tuple(image_shape)
    sizes = tuple(_positive_int(s) for s in shape)
    if len(shape) < 2 or None in sizes:
        raise ValueError(
            f"`{name}` must have at least 2 positive integer dimensions (..., H, W); got "
            f"{shape}."
        )
    return sizes  # type: ignore[return-value]


def _patch_size(patch_size: int | Sequence[int]) -> tuple[int, int]:
    pair = patch_size if isinstance(patch_size, (Sequence, np.ndarray, Tensor)) else (
        patch_size, patch_size)  # fmt: skip
    size = tuple(_positive_int(s) for s in pair) if not isinstance(pair, str) else (None,)
    if len(size) != 2 or None in size:
        raise ValueError(
            f"`patch_size` must be a positive int or a pair (height, width); got {patch_size!r}."
        )
    return size  # type: ignore[return-value]


def patch_grid(image_shape: Sequence[int] | Tensor, patch_size: int | Sequence[int]) -> Tensor:
    """Feature mask of a grid of patches, numbered row by row.

    Patches at the bottom and right edges are smaller when the size does not divide the image
    (``ceil(H / ph) * ceil(W / pw)`` patches in all).

    Args:
        image_shape: ``(H, W)``, ``(C, H, W)``, ``(B, C, H, W)`` or an image tensor.
        patch_size: ``p`` or ``(ph, pw)`` in pixels.

    Returns:
        ``int64`` feature mask of shape ``(1, ..., 1, H, W)`` (same number of dimensions as
        the image).

    Example:
        >>> patch_grid((3, 3, 5), 2)[0]
        tensor([[0, 0, 1, 1, 2],
                [0, 0, 1, 1, 2],
                [3, 3, 4, 4, 5]])
    """
    shape = _spatial_shape(image_shape)
    ph, pw = _patch_size(patch_size)
    height, width = shape[-2:]
    n_cols = -(-width // pw)
    rows = torch.arange(height) // ph
    cols = torch.arange(width) // pw
    grid = rows[:, None] * n_cols + cols[None, :]
    return grid.reshape((1,) * (len(shape) - 2) + (height, width))


def patch_labels(image_shape: Sequence[int] | Tensor, patch_size: int | Sequence[int]) -> list[str]:
    """Labels ``"r{row}c{col}"`` of the patches of :func:`patch_grid`, in feature order.

    Example:
        >>> patch_labels((3, 5), 2)
        ['r0c0', 'r0c1', 'r0c2', 'r1c0', 'r1c1', 'r1c2']
    """
    shape = _spatial_shape(image_shape)
    ph, pw = _patch_size(patch_size)
    n_rows, n_cols = -(-shape[-2] // ph), -(-shape[-1] // pw)
    return [f"r{r}c{c}" for r in range(n_rows) for c in range(n_cols)]


def segment_mask(label_image: Tensor | np.ndarray) -> tuple[Tensor, Tensor]:
    """Feature mask from a label image: each distinct label is one feature.

    Args:
        label_image: integer labels ``[H, W]`` (or any shape); any values, gaps allowed.

    Returns:
        ``(feature_mask, segment_ids)``: ``int64`` ids ``0..n-1`` in the order of the sorted
        labels, shaped like ``label_image``, and the original label of each feature ``[n]``.

    Example:
        >>> mask, ids = segment_mask(torch.tensor([[7, 7, 3], [3, 9, 9]]))
        >>> mask, ids
        (tensor([[1, 1, 0],
                [0, 2, 2]]), tensor([3, 7, 9]))
    """
    labels = torch.as_tensor(label_image)
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise TypeError(f"`label_image` must hold integer labels; got dtype {labels.dtype}.")
    if labels.numel() == 0:
        raise ValueError("`label_image` must not be empty.")
    segment_ids, inverse = torch.unique(labels, sorted=True, return_inverse=True)
    return inverse.long(), segment_ids


def superpixels(
    image: Tensor | np.ndarray,
    n_segments: int = 50,
    compactness: float = 10.0,
    *,
    channel_axis: int = 0,
    **slic_kwargs: Any,
) -> Tensor:
    """Feature mask of SLIC superpixels (Achanta et al., 2012) via scikit-image.

    Args:
        image: ``(C, H, W)`` (torch layout), ``(H, W, C)`` with ``channel_axis=-1`` (NumPy /
            PIL layout), or ``(H, W)`` grayscale.
        n_segments: approximate number of superpixels.
        compactness: SLIC's colour / space trade-off.
        channel_axis: where a 3-D ``image`` keeps its channels: ``0`` (default) or ``-1``.
        **slic_kwargs: more arguments for ``skimage.segmentation.slic``.

    Returns:
        ``int64`` feature mask with ids ``0..n-1``: ``(1, H, W)`` for a colour image, in either
        layout (it broadcasts over a channels-first tensor, the layout torch models take; for
        a model that reads ``(H, W, C)`` use ``mask.permute(1, 2, 0)``), ``(H, W)`` for a
        grayscale one.

    Raises:
        ImportError: when scikit-image is not installed.
        ValueError: for an image that is not 2-D or 3-D, or a 3-D one read channels-first
            whose first dimension cannot be channels while its last can (``(H, W, C)``: pass
            ``channel_axis=-1``).
    """
    try:
        from skimage.segmentation import slic
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            "superpixels() needs scikit-image: pip install \"torchspex[vision]\""
        ) from err
    array = image.detach().cpu().numpy() if isinstance(image, Tensor) else np.asarray(image)
    if channel_axis not in (0, -1, 2):
        raise ValueError(f"`channel_axis` must be 0 or -1; got {channel_axis!r}.")
    if array.ndim == 3 and channel_axis == 0:
        if array.shape[0] > 4 and array.shape[-1] <= 4:
            raise ValueError(
                f"`image` of shape {array.shape} looks channels-last (H, W, C): pass "
                "channel_axis=-1, or the image as (C, H, W)."
            )
        hwc, axis = np.moveaxis(array, 0, -1), -1
    elif array.ndim == 3:
        hwc, axis = array, -1
    elif array.ndim == 2:
        hwc, axis = array, None
    else:
        raise ValueError(f"`image` must be (C, H, W), (H, W, C) or (H, W); got {array.shape}.")
    labels = slic(
        np.ascontiguousarray(hwc, dtype=np.float64), n_segments=n_segments,
        compactness=compactness, channel_axis=axis, start_label=0, **slic_kwargs,
    )
    mask, _ = segment_mask(torch.from_numpy(np.asarray(labels, dtype=np.int64)))
    return mask.unsqueeze(0) if array.ndim == 3 else mask


def mask_image(
    image: Tensor,
    feature_mask: Tensor,
    masks: Tensor,
    baselines: float | Tensor = 0.0,
) -> Tensor:
    """Images with the removed features replaced by the baseline, one per mask.

    Args:
        image: ``[C, H, W]`` (or any shape).
        feature_mask: ``int64`` ids broadcastable to ``image``; ids ``< 0`` are never removed.
        masks: ``bool [m, n_features]``, True = feature kept.
        baselines: scalar or tensor broadcastable to ``image`` (e.g. a blurred copy, or the
            per-channel mean ``[C, 1, 1]``).

    Returns:
        ``[m, *image.shape]`` on the image's device, in its dtype.

    Example:
        >>> img = torch.arange(4.0).reshape(1, 2, 2)
        >>> mask_image(img, patch_grid(img, (1, 2)), torch.tensor([[True, False]]))
        tensor([[[[0., 1.],
                  [0., 0.]]]])
    """
    if not isinstance(image, Tensor):
        raise TypeError(f"`image` must be a torch.Tensor; got {type(image).__name__}.")
    masks = torch.as_tensor(masks, device=image.device).bool()
    groups = torch.as_tensor(feature_mask, device=image.device).long()
    if masks.dim() != 2:
        raise ValueError(f"`masks` must be 2-D [m, n_features]; got shape {tuple(masks.shape)}.")
    try:
        groups = groups.expand_as(image) if groups.shape != image.shape else groups
    except RuntimeError:
        raise ValueError(
            f"`feature_mask` of shape {tuple(groups.shape)} must broadcast to the image's shape "
            f"{tuple(image.shape)}."
        ) from None
    if groups.numel() and int(groups.max()) >= masks.shape[1]:
        raise ValueError(
            f"`feature_mask` has id {int(groups.max())} but `masks` has only {masks.shape[1]} "
            "columns; give one column per feature."
        )
    keep = masks[:, groups.clamp_min(0)] | (groups < 0)
    base = torch.as_tensor(baselines, dtype=image.dtype, device=image.device)
    return torch.where(keep, image.unsqueeze(0), base)
