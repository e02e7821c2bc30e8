"""Text and image views, and the Captum adapters."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import render, texts_inside

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


def long_result(n_words: int = 70) -> Interactions:
    words = [f"{w}," if i % 7 == 3 else w for i, w in
             enumerate(("Our hotel wasn't cheap but the location was perfect and quiet " * 7)
                       .split()[:n_words])]
    g = torch.Generator().manual_seed(0)
    n = n_words
    pairs = [(0, 3), (2, n - 1), (n // 7, n // 7 + 2), (4 * n // 7, 5),
             (3 * n // 7, 3 * n // 7 + 1), (1, n - 2)]
    sets = [(i,) for i in range(n_words)] + pairs
    values = torch.cat([torch.randn(n_words, generator=g, dtype=torch.float64),
                        torch.tensor([2.0, -1.5, 1.2, -1.0, 0.8, 0.7], dtype=torch.float64)])
    spec = SparseSpectrum.from_sets(sets, values, n_words)
    return Interactions(spec, index="Moebius", feature_names=words)


def boxes(fig, ax):
    """Window extents of the word boxes, the arcs, the title and the figure."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    words = [t.get_bbox_patch().get_window_extent(renderer) for t in ax.texts]
    arcs = [p.get_window_extent(renderer) for p in ax.patches]
    return words, arcs, ax.title.get_window_extent(renderer), fig.bbox


@pytest.mark.parametrize(("line_width", "n_words", "own_axes"),
                         [(60, 70, False), (200, 70, False), (25, 70, True), (60, 8, True),
                          (60, 12, False)])  # 12 words: just over one line
def test_text_view_long_sentences_neither_overlap_nor_hit_the_title(line_width, n_words,
                                                                   own_axes):
    import matplotlib.pyplot as plt

    res = long_result(n_words)
    ax = plt.subplots(1, 2, figsize=(8, 4))[1][0] if own_axes else None
    fig, ax = plot_text(res, line_width=line_width, n_pairs=6, ax=ax)
    words, arcs, title, page = boxes(fig, ax)
    assert [t.get_text() for t in ax.texts] == res.feature_names  # every word, whole
    # a pair is an arc exactly when its words share a line; the others get their rank under
    # both words and a line in the note
    line = [round(t.get_position()[1], 6) for t in ax.texts]
    top = res.top_k(6, order=2)
    same = [ids for ids, _ in top if line[ids[0]] == line[ids[1]]]
    assert len(arcs) == len(same) >= 1
    tags = {}
    for rank, (ids, _) in enumerate(top, start=1):
        if line[ids[0]] != line[ids[1]]:
            for i in ids:
                tags.setdefault(i, []).append(str(rank))
    drawn_tags = {(round(a.xy[0], 6), a.offsetbox.get_text()) for a in ax.artists[:-1]}
    assert drawn_tags == {(round(ax.texts[i].get_position()[0], 6), ",".join(r))
                          for i, r in tags.items()}
    if tags:
        assert ax.artists[-1].offsetbox.get_text().startswith(
            "not arcs (words on different lines")
    for arc in arcs:  # an arc runs through no word box (it ends on the tops of its two)
        for w in words:
            assert arc.x1 <= w.x0 or arc.x0 >= w.x1 or arc.y0 >= w.y1 - 2.5 or arc.y1 <= w.y0
    for i, a in enumerate(words):  # no two word boxes overlap, none is cut by the page
        assert a.x0 >= page.x0 and a.x1 <= page.x1 and a.y0 >= page.y0 and a.y1 <= page.y1
        for b in words[i + 1:]:
            assert not a.overlaps(b), (a, b)
    for arc in arcs:  # arcs stay below the title and inside the figure
        assert arc.y1 <= title.y0 and arc.x0 >= page.x0 and arc.x1 <= page.x1
    assert max(w.y1 for w in words) <= title.y0
    lines = {round(t.get_position()[1], 6) for t in ax.texts}
    assert len(lines) >= {8: 1, 12: 2}.get(n_words, 6 if line_width <= 60 else 2)  # wrapped
    texts_inside(fig)
    render(fig)


def test_layout_keeps_pairs_on_one_line_while_the_lines_stay_full():
    from torchspex.viz._layout import MIN_FILL, keep_together, layout_text

    words = ("We booked a table for eight at the new bistro on Main Street and the waiter "
             "was friendly but slow " * 4).split()[:70]
    pairs = np.array([[9, 14], [3, 14], [1, 69], [40, 41], [20, 22]])
    lay = layout_text(words, pairs, 60)
    assert lay.drawn.tolist() == [True, False, False, True, True]  # [3, 14] would leave a
    for (a, b), drawn in zip(pairs.tolist(), lay.drawn.tolist()):  # short first line
        assert (lay.line_of[a] == lay.line_of[b]) == drawn
    assert len(lay.arcs) == 3 and lay.tags == [(1, "3"), (3, "2"), (14, "2"), (69, "3")]
    chars = np.bincount(lay.line_of, [len(w) + 1 for w in words]) - 1
    assert (chars <= 60).all() and (chars[:-1] >= MIN_FILL * 60).all()
    for (a, b), arc in zip(pairs[lay.drawn].tolist(), lay.arcs):  # box top to box top, above
        top = lay.centres[a, 1] + 1.5
        assert arc[0] == pytest.approx([lay.centres[a, 0], top])
        assert arc[3] == pytest.approx([lay.centres[b, 0], top])
        assert (arc[:, 1] >= top).all()
    runs, drawn = keep_together(words, pairs, 60)  # no line width: only the runs are capped
    assert drawn.tolist() == [True, True, False, True, True]
    assert (3, 14) in runs and (40, 41) in runs and (20, 22) in runs
    assert [i for lo, hi in runs for i in range(lo, hi + 1)] == list(range(70))


def test_text_view_rejects_a_bad_line_width():
    with pytest.raises(ValueError, match="`line_width`"):
        plot_text(text_result(), line_width=0)


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


def test_image_view_64_patches_labels_on_the_page():
    image = torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(0))
    mask, labels = patch_grid(image.shape, 8), patch_labels(image.shape, 8)
    sets = [(i,) for i in range(64)] + [(0, 63), (9, 54), (18, 20), (7, 56), (30, 33)]
    g = torch.Generator().manual_seed(2)
    spec = SparseSpectrum.from_sets(sets, torch.randn(len(sets), generator=g).double(), 64)
    res = Interactions(spec, index="Moebius", feature_names=labels)
    fig, ax = plot_image(res, image, mask, n_pairs=5)
    render(fig)
    texts_inside(fig)  # title, colour bar and its label, patch labels: none cut
    assert sorted(t.get_text() for t in ax.texts) == sorted(
        labels[i] for i in {0, 63, 9, 54, 18, 20, 7, 56, 30, 33})
    assert fig.axes[1].get_ylabel() == "patch value (Moebius)"


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
