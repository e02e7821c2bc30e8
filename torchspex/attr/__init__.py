"""The model side: Captum-style attribution over batched masked forward passes.

``SpectralInteraction`` subclasses Captum's ``PerturbationAttribution``; it is imported on first
access because ``import captum.attr`` pulls in matplotlib (about a second).
"""

from typing import Any

from torchspex.attr.result import AttributionInteractions
from torchspex.attr.tree import TreeInteraction

__all__ = [
    "AttributionInteractions",
    "SpectralInteraction",
    "TreeInteraction",
]


def __getattr__(name: str) -> Any:
    if name == "SpectralInteraction":
        from torchspex.attr.spectral_interaction import SpectralInteraction

        return SpectralInteraction
    raise AttributeError(f"module 'torchspex.attr' has no attribute {name!r}")
