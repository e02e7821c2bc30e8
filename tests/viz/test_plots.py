"""Top-k bars, pairwise heatmap and layer sweeps: rendered to PNG, labelled by feature name."""

from __future__ import annotations

import itertools
import re

import numpy as np
import pytest
import torch
from conftest import render, texts_inside

from torchspex import Interactions, SparseSpectrum
from torchspex.viz import plot_heatmap, plot_layers, plot_top_k

NAMES = ["age", "bmi", "bp", "s1", "s2"]


def result(**kw) -> Interactions:
    spec = SparseSpectrum.from_sets(
        [(), (0,), (1,), (3,), (0, 1), (2, 4), (1, 2, 3)], [0.5, 1.0, -0.8, 0.3, 0.6, -0.4, 0.2], 5
    )
    return Interactions(spec, index="Moebius", feature_names=NAMES, **kw)


def texts(labels):
    return [t.get_text() for t in labels]


def test_top_k_bars():
    res = result()
    fig, ax = plot_top_k(res, k=4)
    render(fig)
    expected = [" \u00d7 ".join(NAMES[i] for i in ids) for ids, _ in res.top_k(4)]
    assert texts(ax.get_yticklabels()) == expected
    assert ax.get_yticks()[0] == 3  # strongest on top
    widths = [p.get_width() for p in ax.patches]
    assert widths == pytest.approx([float(v) for _, v in res.top_k(4)])
    assert {t.get_text() for t in ax.get_legend().get_texts()} == {"order 1", "order 2",
                                                                  "order 3"}


def test_top_k_other_index_and_order_on_given_axes():
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    out_fig, out_ax = result().plot("bar", k=3, index="FBII", max_order=2, order=2, ax=ax)
    assert out_ax is ax and out_fig is fig
    assert all("\u00d7" in t for t in texts(ax.get_yticklabels()))
    render(fig)


def test_heatmap_values_and_labels():
    res = result()
    fig, ax = plot_heatmap(res, max_order=2)
    render(fig)
    assert texts(ax.get_xticklabels()) == NAMES and texts(ax.get_yticklabels()) == NAMES
    grid = ax.images[0].get_array()
    view = res.to_index("Moebius", 2)
    assert grid[0, 1] == grid[1, 0] == pytest.approx(view[(0, 1)])
    assert grid[2, 4] == pytest.approx(view[(2, 4)])
    assert np.ma.getmaskarray(grid).diagonal().all()  # the diagonal is masked in the pair grid
    strip = fig.axes[1]  # the single-feature values, their own column
    singles = np.asarray(strip.images[0].get_array())[:, 0].tolist()
    assert singles == pytest.approx([view[(i,)] for i in range(5)])
    assert [t.get_text() for t in strip.texts] == [f"{view[(i,)]:+.2g}" for i in range(5)]


def test_heatmap_scale_comes_from_pairs_not_the_diagonal():
    # one single feature 100x stronger than the pair: the pair must still be coloured strongly
    spec = SparseSpectrum.from_sets([(0,), (1, 2)], [50.0, 0.5], 3)
    fig, ax = plot_heatmap(Interactions(spec, index="Moebius", max_order=2))
    image = render(fig)
    pair = ax.images[0]
    assert pair.norm.vmax == pytest.approx(abs(spec.to_dict()[(1, 2)]) * 4)  # Moebius = 4 F
    colour = np.array(pair.cmap(pair.norm(pair.get_array()[1, 2]))[:3])
    assert np.abs(colour - 1.0).max() > 0.5  # far from white
    assert (np.abs(image[..., :3] - colour).max(axis=-1) < 0.05).any()  # drawn on the PNG


def test_heatmap_chooses_features():
    fig, ax = plot_heatmap(result(), features=[4, 2])
    assert texts(ax.get_xticklabels()) == ["s2", "bp"]
    fig, ax = plot_heatmap(result(), max_features=2)
    assert texts(ax.get_yticklabels()) == ["age", "bmi"]  # most involved, in feature order
    render(fig)


def test_layers_heatmap():
    layers = [result(), Interactions(result().spectrum.replace(
        coefficients=-2 * result().spectrum.coefficients), feature_names=NAMES)]
    fig, ax = plot_layers(layers, layer_names=["emb", "block 1"])
    render(fig)
    assert texts(ax.get_xticklabels()) == NAMES
    assert texts(ax.get_yticklabels()) == ["emb", "block 1"]
    bar = fig.axes[1]  # a labelled colour bar as tall as the rows, not a sliver
    assert bar.get_ylabel() == "SV value"
    fig.canvas.draw()
    ticks = [t.get_window_extent() for t in bar.get_yticklabels() if t.get_text()]
    assert len(ticks) >= 3 and not any(a.overlaps(b) for a, b in itertools.pairwise(ticks))
    grid = ax.images[0].get_array()
    assert np.allclose(grid[1], layers[1].first_order("SV").numpy())
    with pytest.raises(ValueError, match="share their features"):
        plot_layers([result(), Interactions(SparseSpectrum.zeros(3))])
    with pytest.raises(ValueError, match="at least one"):
        plot_layers([])


def test_errors():
    multi = Interactions(SparseSpectrum(torch.zeros(1, 0, dtype=torch.long),
                                        torch.ones(1, 2, dtype=torch.float64), 3))
    with pytest.raises(ValueError, match=r"select\(0\)"):
        plot_top_k(multi)
    with pytest.raises(TypeError, match="Interactions"):
        plot_heatmap(object())
    with pytest.raises(ValueError, match="`kind` must be one of"):
        result().plot("pie")


def test_repeated_names_get_their_position():
    spec = SparseSpectrum.from_sets([(0,), (0, 2), (1,)], [1.0, -0.6, 0.3], 3)
    res = Interactions(spec, index="Moebius", max_order=2, feature_names=["the", "cat", "the"])
    fig, ax = plot_top_k(res, k=3)
    render(fig)
    labels = {" \u00d7 ".join(["the [0]", "cat", "the [2]"][i] for i in ids)
              for ids, _ in res.top_k(3)}
    assert set(texts(ax.get_yticklabels())) == labels == {"the [0]", "the [0] \u00d7 the [2]",
                                                          "the [2]"}
    fig, ax = plot_heatmap(res)
    assert texts(ax.get_xticklabels()) == ["the [0]", "cat", "the [2]"]


LONG_NAMES = [f"{kind} {what}" for kind in ("mean", "error of", "worst") for what in (
    "radius", "texture", "perimeter", "area", "smoothness", "compactness", "concavity",
    "concave points", "symmetry", "fractal dimension")]


def tabular_result() -> Interactions:
    g = torch.Generator().manual_seed(1)
    sets = [(i,) for i in range(30)] + [(i, (7 * i + 3) % 30) for i in range(0, 30, 3)]
    sets = list(dict.fromkeys(tuple(sorted(s)) for s in sets if len(set(s)) == len(s)))
    spec = SparseSpectrum.from_sets(sets, torch.randn(len(sets), generator=g).double(), 30)
    return Interactions(spec, index="FSII", max_order=2, feature_names=LONG_NAMES)


@pytest.mark.parametrize("kind", ["bar", "heatmap", "layers"])
def test_thirty_long_names_stay_on_the_page(kind):
    res = tabular_result()
    if kind == "layers":
        fig, _ = plot_layers([res, res.to_index("FBII", 2), res.to_index("SII", 2)])
    else:
        fig, _ = res.plot(kind)
    render(fig)
    texts_inside(fig)


def _numbers(text: str) -> list[float]:
    """The signed numbers of a caption, in order (matplotlib's minus sign read as '-')."""
    return [float(v.replace(",", "")) for v in re.findall(
        r"[+-]\d[\d,]*\.?\d*(?:e[+-]\d+)?", text.replace("\u2212", "-"))]


def efficient_result(scale: float = 1.0) -> Interactions:
    """FSII of 10 features with every pair present: its terms add up to f(N) - f(empty)."""
    g = torch.Generator().manual_seed(3)
    sets = [(), *[(i,) for i in range(10)], *itertools.combinations(range(10), 2)]
    coef = scale * torch.randn(len(sets), generator=g, dtype=torch.float64)
    spec = SparseSpectrum.from_sets(sets, coef, 10)
    return Interactions(spec, index="FSII", max_order=2, feature_names=[f"m{i}" for i in range(10)])


def test_top_k_caption_says_what_the_bars_leave_out():
    res = efficient_result()
    fig, ax = plot_top_k(res, k=10)
    render(fig)
    texts_inside(fig)
    top = res.top_k(10)
    values = [float(v) for _, v in top]
    caption = ax.texts[-1].get_text().replace("\n", " ")  # wrapped to the figure's width
    drawn, gap, rest = _numbers(caption)[:3]
    full_gap = res.full_value - res.baseline_value
    assert drawn == pytest.approx(sum(values), abs=0.01, rel=5e-3)
    assert gap == pytest.approx(full_gap, abs=0.01, rel=5e-3)
    assert rest == pytest.approx(full_gap - sum(values), abs=0.01, rel=5e-3)
    all_terms = res.values.coefficients[res.values.orders > 0].sum().item()
    assert all_terms == pytest.approx(full_gap)  # FSII adds up: the rest is in what is not drawn
    not_drawn = len(res) - 1 - 10  # the non-empty terms not drawn
    orders = [len(ids) for ids, _ in top]
    assert f"is in the {not_drawn} terms not drawn (" in caption
    assert f"{10 - orders.count(1)} singles" in caption or orders.count(1) == 0
    assert f"{45 - orders.count(2)} pairs" in caption
    # each bar is labelled with its value
    labels = [t.get_text() for t in ax.texts[:-1]]
    assert _numbers(" ".join(labels)) == pytest.approx(values, rel=6e-3)


def test_top_k_caption_of_an_index_that_does_not_add_up():
    res = efficient_result().to_index("SII", 2)
    _, ax = plot_top_k(res, k=5)
    caption = ax.texts[-1].get_text().replace("\n", " ")  # wrapped to the figure's width
    total = res.values.coefficients[res.values.orders > 0].sum().item()
    assert "SII up to order 2 does not add up to f(all kept) \u2212 f(all removed)" in caption
    assert _numbers(caption.split("sum to ")[1])[0] == pytest.approx(total, abs=0.01, rel=5e-3)
    every = plot_top_k(result(), k=10)[1].texts[-1].get_text().replace("\n", " ")
    assert "every non-zero term is drawn" in every


def test_top_k_stays_readable_when_values_are_large():
    res = efficient_result(scale=400.0)  # a saturated model: values in the hundreds
    fig, ax = plot_top_k(res, k=10)
    render(fig)
    texts_inside(fig)  # labels and caption on the page
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    inside = ax.get_window_extent(renderer)
    for label in ax.texts[:-1]:  # every value label inside the axes, none overlapping
        box = label.get_window_extent(renderer)
        assert inside.x0 <= box.x0 and box.x1 <= inside.x1, label.get_text()
    assert all("e+" not in t.get_text() for t in ax.texts)


def test_heatmap_of_30_says_top_20_and_scales_to_the_pairs_shown():
    res = tabular_result()
    fig, ax = plot_heatmap(res)
    render(fig)
    title = ax.get_title()
    assert "top 20 of 30 features by |single value| + \u03a3 |pair values|" in title
    grid = np.ma.getdata(ax.images[0].get_array())
    assert grid.shape == (20, 20) and np.isnan(np.diagonal(grid)).all()
    off = grid[~np.eye(20, dtype=bool)]
    assert ax.images[0].norm.vmax == pytest.approx(np.abs(off).max())  # pairs set the scale
    assert ax.images[0].norm.vmin == pytest.approx(-np.abs(off).max())
    pairs = res.top_k(100, order=2)
    shown = {t.get_text() for t in ax.get_xticklabels()}
    left_out = sum(1 for ids, _ in pairs if not {LONG_NAMES[i] for i in ids} <= shown)
    assert left_out > 0 and f"; {left_out} of {len(pairs)} non-zero pairs involve features " \
        "not shown" in title
    assert "\n" not in plot_heatmap(result())[1].get_title()  # all 5 shown: nothing to say
    assert "2 of 5 features, as chosen" in plot_heatmap(result(), features=[4, 2])[1].get_title()
