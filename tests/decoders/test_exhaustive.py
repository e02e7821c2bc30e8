import pytest
import torch

from torchspex.decoders import Evaluator, all_masks, decode_exhaustive
from torchspex.decoders.exhaustive import check_exhaustive
from torchspex.fourier import SparseSpectrum


def test_exhaustive_recovers_every_coefficient() -> None:
    g = torch.Generator().manual_seed(0)
    n = 9
    support = torch.rand(40, n, generator=g) < 0.5
    truth = SparseSpectrum.from_support(support, torch.randn(40, generator=g).double()).coalesce()
    ev = Evaluator(truth.evaluate, n)
    spec, info = decode_exhaustive(ev, n)
    assert info["exact"]
    assert ev.n_evaluations == 512
    got = spec.prune(atol=1e-12).to_dict()
    want = truth.to_dict()
    assert set(got) == set(want)
    for key in want:
        assert got[key] == pytest.approx(want[key], abs=1e-12)


def test_limits() -> None:
    with pytest.raises(ValueError, match=r"n_features <= 20.*spex"):
        check_exhaustive(21, None)
    with pytest.raises(ValueError, match=r">= 2\^4 = 16"):
        check_exhaustive(4, 10)


def test_all_masks_bit_order() -> None:
    masks = all_masks(3)
    assert masks.shape == (8, 3)
    assert masks[5].tolist() == [True, False, True]
