"""Text and image views, and the Captum adapters."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import render

from torchspex import Interactions, SparseSpectrum
from torchspex.grouping.vision import patch_grid, patch_labels
from torchspex.viz import (
    plot_image,
    plot_text,
    to_image_attr,
    to_visualization_record,
    visualize_image,
)

WORDS = ["the", "movie", "was", "not", "bad", "at", "all"]


def text_result() -> Interactions:
    spec = SparseSpectrum.from_sets(
        [(), (1,), (3,), (4,), (3, 4), (1, 4), (5, 6)], [0.1, 0.3, 0.5, 0.9, -1.2, 0.2, 0.1], 7
    )
    return Interactions(spec, index="Moebius", feature_names=WORDS)


def test_text_view():
    fig, ax = plot_text(text_result(), n_pairs=2)
    render(fig)
    assert [t.get_text() for t in ax.texts] == WORDS
    assert len(ax.patches) == 2  # the two strongest pairs as arcs
    colours = [t.get_bbox_patch().get_facecolor() for t in ax.texts]
    assert colours[4] != colours[0]  # 'bad' (strong) differs from 'the' (zero)


def test_text_view_white_text_on_dark_boxes():
    spec = SparseSpectrum.from_sets([(0,)], [-1.0], 2)  # f = 2 x0 - 1: word 0 strongest
    fig, ax = plot_text(Interactions(spec, index="Moebius", feature_names=["good", "film"]))
    render(fig)
    assert [t.get_color() for t in ax.texts] == ["white", "black"]


def test_text_view_wraps_and_takes_words():
    res = text_result()
    fig, ax = res.plot("text", words=[w.upper() for w in WORDS], line_width=12)
    render(fig)
    assert [t.get_text() for t in ax.texts] == [w.upper() for w in WORDS]
    assert len({round(t.get_position()[1], 3) for t in ax.texts}) > 1  # several lines
    with pytest.raises(ValueError, match="`words` must have 7"):
        plot_text(res, words=["a"])


def image_result():
    image = torch.linspace(0, 1, 3 * 8 * 8).reshape(3, 8, 8)
    mask = patch_grid(image.shape, 4)  # [1, 8, 8], 4 patches
    labels = patch_labels(image.shape, 4)
    spec = SparseSpectrum.from_sets(
        [(), (0,), (3,), (0, 3), (1, 2)], [0.0, 1.0, -0.5, 0.7, -0.3], 4
    )
    return Interactions(spec, index="Moebius", feature_names=labels), image, mask


def test_image_view():
    res, image, mask = image_result()
    fig, ax = plot_image(res, image, mask, n_pairs=2)
    render(fig)
    heat = ax.images[1].get_array()
    assert heat[0, 0] == pytest.approx(res[(0,)]) and heat[7, 7] == pytest.approx(res[(3,)])
    assert heat[0, 0] != 0 and heat[7, 7] != heat[0, 0]
    assert sorted(t.get_text() for t in ax.texts) == ["r0c0", "r0c1", "r1c0", "r1c1"]
    assert len(ax.lines) == 2


def test_image_view_numpy_hwc_and_errors():
    res, image, mask = image_result()
    fig, _ = res.plot("image", image=(image.permute(1, 2, 0).numpy() * 255).astype(np.uint8),
                      feature_mask=mask[0].numpy())
    render(fig)
    with pytest.raises(ValueError, match="not feature ids"):
        plot_image(res, image, mask + 10)
    with pytest.raises(ValueError, match="pixels"):
        plot_image(res, image, mask[..., :4])


def test_captum_image_adapter():
    res, image, mask = image_result()
    attr = to_image_attr(res, mask)
    assert attr.shape == (8, 8, 1)
    sv = res.first_order("SV").numpy()
    assert attr[0, 0, 0] == sv[0] and attr[7, 7, 0] == sv[3] and attr[0, 7, 0] == sv[1]
    channels = to_image_attr(res, mask.expand(1, 3, 8, 8))
    assert channels.shape == (8, 8, 3) and np.array_equal(channels[..., 2], attr[..., 0])
    fig, _ = visualize_image(res, image, mask)
    render(fig)


def test_captum_text_record():
    from captum.attr import visualization

    res = text_result()
    record = to_visualization_record(res, pred_prob=0.9, pred_class="pos", true_class="pos",
                                      attr_class="pos")
    sv = res.first_order("SV")
    assert torch.allclose(record.word_attributions, sv / sv.abs().max())
    assert record.raw_input_ids == WORDS and record.attr_score == pytest.approx(float(sv.sum()))
    html = visualization.format_word_importances(record.raw_input_ids, record.word_attributions)
    assert all(w in html for w in WORDS)
