"""Pictures of results, and adapters to Captum's visualization (matplotlib imported lazily).

Every plot takes an :class:`~torchspex.Interactions` result (one output; use ``select``) and an
optional ``ax``, and returns ``(fig, ax)``; nothing calls ``plt.show()``, so the Agg backend
works. The HTML views (:func:`to_html`, :func:`text_html`, :func:`summary_html`) need no
matplotlib: they are what a notebook shows for a result and what ``result.save_html`` writes.
"""

from torchspex.viz.captum import to_image_attr, to_visualization_record, visualize_image
from torchspex.viz.html import HTMLView, save_html, summary_html, text_html, to_html
from torchspex.viz.plots import plot_heatmap, plot_layers, plot_top_k
from torchspex.viz.views import feature_positions, image_hwc, plot_image, plot_text

__all__ = [
    "HTMLView",
    "feature_positions",
    "image_hwc",
    "plot_heatmap",
    "plot_image",
    "plot_layers",
    "plot_text",
    "plot_top_k",
    "save_html",
    "summary_html",
    "text_html",
    "to_html",
    "to_image_attr",
    "to_visualization_record",
    "visualize_image",
]
