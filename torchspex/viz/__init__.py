"""Pictures of results, and adapters to Captum's visualization (matplotlib imported lazily).

Every plot takes an :class:`~torchspex.Interactions` result (one output; use ``select``) and an
optional ``ax``, and returns ``(fig, ax)``; nothing calls ``plt.show()``, so the Agg backend
works.
"""

from torchspex.viz.captum import to_image_attr, to_visualization_record, visualize_image
from torchspex.viz.plots import plot_heatmap, plot_layers, plot_top_k
from torchspex.viz.views import feature_positions, image_hwc, plot_image, plot_text

__all__ = [
    "feature_positions",
    "image_hwc",
    "plot_heatmap",
    "plot_image",
    "plot_layers",
    "plot_text",
    "plot_top_k",
    "to_image_attr",
    "to_visualization_record",
    "visualize_image",
]
