"""Pure tensor math: the sparse spectrum, transforms, every interaction index, the generalized
values and the egalitarian least core."""

from torchspex.fourier.elc import egalitarian_least_core
from torchspex.fourier.generalized import generalized_index, generalized_values
from torchspex.fourier.indices import INDEX_NAMES, IndexName, canonical_index
from torchspex.fourier.spectrum import DeferredSpectrum, SparseSpectrum
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
    "DeferredSpectrum",
    "IndexName",
    "SparseSpectrum",
    "canonical_index",
    "dense_to_spectrum",
    "egalitarian_least_core",
    "evaluate",
    "fourier_to_index",
    "fourier_to_moebius",
    "fwht",
    "generalized_index",
    "generalized_values",
    "moebius_to_fourier",
    "moebius_to_index",
    "spectrum_to_dense",
]
