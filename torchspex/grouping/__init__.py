"""What a feature is: words, sentences or spans of a text, patches or segments of an image."""

from torchspex.grouping.text import (
    BASELINES,
    LEVELS,
    TextFeatures,
    chat_features,
    sentence_spans,
    text_features,
    word_label,
    word_spans,
)
from torchspex.grouping.vision import (
    mask_image,
    patch_grid,
    patch_labels,
    segment_mask,
    superpixels,
)

__all__ = [
    "BASELINES",
    "LEVELS",
    "TextFeatures",
    "chat_features",
    "mask_image",
    "patch_grid",
    "patch_labels",
    "segment_mask",
    "sentence_spans",
    "superpixels",
    "text_features",
    "word_label",
    "word_spans",
]
