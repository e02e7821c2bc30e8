from __future__ import annotations

import numpy as np
import pytest
import torch

from torchspex.decoders.exhaustive import all_masks
from torchspex.grouping import mask_image, patch_grid, patch_labels, segment_mask, superpixels


@pytest.mark.parametrize(("shape", "patch"), [((3, 8, 8), 4), ((3, 10, 7), 4), ((10, 7), (3, 5))])
def test_patch_grid_counts_and_ragged_edges(shape, patch):
    grid = patch_grid(shape, patch)
    ph, pw = (patch, patch) if isinstance(patch, int) else patch
    height, width = shape[-2:]
    n_rows, n_cols = -(-height // ph), -(-width // pw)
    assert grid.shape == (1,) * (len(shape) - 2) + (height, width) and grid.dtype == torch.long
    flat = grid.reshape(height, width)
    assert flat.unique().tolist() == list(range(n_rows * n_cols))
    # Brute force: pixel (h, w) is in patch (h // ph, w // pw).
    for h in range(height):
        for w in range(width):
            assert int(flat[h, w]) == (h // ph) * n_cols + w // pw
    assert len(patch_labels(shape, patch)) == n_rows * n_cols
    counts = torch.bincount(flat.reshape(-1))
    assert int(counts.min()) == min(height - (n_rows - 1) * ph, ph) * min(
        width - (n_cols - 1) * pw, pw
    )


def test_patch_grid_broadcasts_over_batch_and_channels():
    images = torch.randn(2, 3, 6, 6)
    grid = patch_grid(images, 3)
    assert grid.shape == (1, 1, 6, 6)
    assert grid.expand_as(images).shape == images.shape


def test_segment_mask_reindexes_any_labels():
    labels = torch.tensor([[-4, -4, 10], [10, 99, 99]])
    mask, ids = segment_mask(labels)
    assert ids.tolist() == [-4, 10, 99]
    assert torch.equal(ids[mask], labels)


def test_mask_image_against_brute_force():
    g = torch.Generator().manual_seed(0)
    image = torch.randn(3, 5, 4, generator=g)
    grid = patch_grid(image, 2)  # 3 x 2 = 6 patches
    baseline = torch.full((3, 1, 1), -1.0)
    masks = all_masks(6)
    out = mask_image(image, grid, masks, baseline)
    assert out.shape == (64, 3, 5, 4)
    for mask, img in zip(masks, out):
        keep = mask[grid[0]]  # [H, W]
        expected = torch.where(keep, image, baseline)
        assert torch.equal(img, expected)


def test_mask_image_never_masks_negative_ids():
    image = torch.ones(1, 2, 2)
    groups = torch.tensor([[[0, -1], [0, -1]]])
    out = mask_image(image, groups, torch.tensor([[False]]))
    assert out[0, 0].tolist() == [[0.0, 1.0], [0.0, 1.0]]


def test_errors():
    with pytest.raises(ValueError, match="patch_size"):
        patch_grid((3, 4, 4), 0)
    with pytest.raises(ValueError, match="image_shape"):
        patch_grid((4,), 2)
    with pytest.raises(TypeError, match="integer"):
        segment_mask(torch.zeros(2, 2))
    with pytest.raises(ValueError, match="columns"):
        mask_image(torch.ones(1, 2, 2), patch_grid((1, 2, 2), 1), torch.ones(1, 3, dtype=bool))
    with pytest.raises(ValueError, match="broadcast"):
        mask_image(torch.ones(1, 2, 2), torch.zeros(3, 3, dtype=torch.long),
                   torch.ones(1, 1, dtype=bool))


def test_superpixels_follow_a_two_colour_image():
    pytest.importorskip("skimage")
    image = torch.zeros(3, 16, 16)
    image[:, :, 8:] = 1.0
    mask = superpixels(image, n_segments=4, compactness=1.0)
    assert mask.shape == (1, 16, 16)
    # No superpixel straddles the colour edge.
    left, right = set(mask[0, :, :8].unique().tolist()), set(mask[0, :, 8:].unique().tolist())
    assert not left & right
    assert mask.unique().tolist() == list(range(len(left | right)))  # consecutive ids


def test_superpixels_of_a_channels_last_image():
    # a NumPy / PIL image (H, W, C) used to be read as (C, H, W): a (1, W, C) mask
    pytest.importorskip("skimage")
    rng = np.random.default_rng(0)
    hwc = rng.random((30, 48, 3))
    with pytest.raises(ValueError, match="channels-last"):
        superpixels(hwc, n_segments=10)
    last = superpixels(hwc, n_segments=10, channel_axis=-1)
    assert last.shape == (1, 30, 48)
    assert torch.equal(last, superpixels(hwc.transpose(2, 0, 1), n_segments=10))


def test_sizes_as_numpy_ints_and_clear_errors():
    # NumPy ints (a shape read from an array) were refused as "not positive"; a float patch
    # size raised "'float' object is not iterable"
    shape = tuple(np.array([1, 6, 8]))
    assert torch.equal(patch_grid(shape, np.int64(2)), patch_grid((1, 6, 8), 2))
    for bad in (2.0, (2, 0), "22", (2, 2, 2)):
        with pytest.raises(ValueError, match="`patch_size` must be"):
            patch_grid((6, 8), bad)
    with pytest.raises(ValueError, match="positive integer dimensions"):
        patch_grid((6.0, 8), 2)
