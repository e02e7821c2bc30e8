"""torchspex: feature interactions for PyTorch models from sparse Fourier spectra."""

from torchspex.attr import AttributionInteractions, TreeInteraction
from torchspex.decoders.base import BudgetTooSmallError
from torchspex.explain import explain
from torchspex.fourier import INDEX_NAMES, IndexName, SparseSpectrum
from torchspex.interactions import Interactions
from torchspex.llm import LayerSpectralInteraction, LLMSpectralInteraction

__version__ = "0.1.0"

__all__ = [
    "INDEX_NAMES",
    "AttributionInteractions",
    "BudgetTooSmallError",
    "IndexName",
    "Interactions",
    "LLMSpectralInteraction",
    "LayerSpectralInteraction",
    "SparseSpectrum",
    "SpectralInteraction",
    "TreeInteraction",
    "__version__",
    "explain",
]


def __getattr__(name: str) -> object:
    if name == "SpectralInteraction":  # lazy: captum.attr imports matplotlib
        from torchspex.attr.spectral_interaction import SpectralInteraction

        return SpectralInteraction
    raise AttributeError(f"module 'torchspex' has no attribute {name!r}")
