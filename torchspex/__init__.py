"""torchspex: feature interactions for PyTorch models from sparse Fourier spectra."""

from torchspex.decoders.base import BudgetTooSmallError
from torchspex.explain import explain
from torchspex.fourier import INDEX_NAMES, IndexName, SparseSpectrum
from torchspex.interactions import Interactions

__version__ = "0.1.0"

__all__ = [
    "INDEX_NAMES",
    "BudgetTooSmallError",
    "IndexName",
    "Interactions",
    "SparseSpectrum",
    "__version__",
    "explain",
]
