"""Pure tensor math: the sparse spectrum, transforms, and every interaction index."""

from torchspex.fourier.indices import INDEX_NAMES, IndexName, canonical_index
from torchspex.fourier.spectrum import SparseSpectrum
from torchspex.fourier.transforms import (
    dense_to_spectrum,
    evaluate,
    fourier_to_index,
    fourier_to_moebius,
    fwht,
    moebius_to_fourier,
    moebius_to_index,
    spectrum_to_dense,
)

__all__ = [
    "INDEX_NAMES",
    "IndexName",
    "SparseSpectrum",
    "canonical_index",
    "dense_to_spectrum",
    "evaluate",
    "fourier_to_index",
    "fourier_to_moebius",
    "fwht",
    "moebius_to_fourier",
    "moebius_to_index",
    "spectrum_to_dense",
]
