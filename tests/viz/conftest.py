"""Plots render with the Agg backend; each test closes its figures."""

from __future__ import annotations

import io

import matplotlib
import pytest

matplotlib.use("Agg")

import matplotlib.image as mpimg
import matplotlib.pyplot as plt
import numpy as np


def render(fig) -> np.ndarray:
    """The figure as an RGB(A) array after a real PNG round trip; asserts it is not blank."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=50)
    buf.seek(0)
    image = mpimg.imread(buf)
    assert image.shape[0] > 80 and image.shape[1] > 80
    rgb = image[..., :3]
    assert rgb.std() > 0.02, "the picture is blank"
    assert (rgb < 0.9).mean() > 0.005, "almost nothing is drawn"
    return image


def texts_inside(fig) -> None:
    """Asserts everything the figure draws (titles, ticks, labels, colour bars) is on the page:
    nothing cut at an edge."""
    fig.canvas.draw()
    drawn = fig.get_tightbbox(fig.canvas.get_renderer())  # inches, drawn artists only
    page = fig.bbox_inches
    tol = 0.02
    assert drawn.x0 >= page.x0 - tol and drawn.x1 <= page.x1 + tol, (drawn, page)
    assert drawn.y0 >= page.y0 - tol and drawn.y1 <= page.y1 + tol, (drawn, page)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")
