import math

import pytest
import torch

from torchspex import Interactions, SparseSpectrum, explain
from torchspex.decoders import all_masks


def result() -> Interactions:
    f = lambda m: 3.0 * m[:, 0] * m[:, 1] - 2.0 * m[:, 2] + 0.5 * m[:, 1] + 1.0  # noqa: E731
    return explain(f, 4, method="exhaustive", index="Moebius", feature_names=list("abcd"))


def test_views_and_lookup() -> None:
    r = result()
    assert r[(0, 1)] == pytest.approx(3.0)
    assert r[(1, 0)] == pytest.approx(3.0)
    assert r[(3,)] == 0.0
    assert r.baseline_value == pytest.approx(1.0)
    assert r.full_value == pytest.approx(2.5)
    assert r.n_evaluations == 16
    assert r.to_dict() == pytest.approx({(): 1.0, (1,): 0.5, (2,): -2.0, (0, 1): 3.0})
    top = r.top_k(2)
    assert [k for k, _ in top] == [(0, 1), (2,)]
    assert r.top_k(5, order=1)[0][0] == (2,)
    sv = r.to_index("SV")
    assert sv.index == "SV" and sv.max_order == 1
    assert sv.first_order().tolist() == pytest.approx([1.5, 2.0, -2.0, 0.0])
    assert r.first_order("BV").tolist() == pytest.approx([1.5, 2.0, -2.0, 0.0])
    fb = r.to_index("fbii", max_order=1)
    assert fb.index == "FBII" and fb.max_order == 1
    with pytest.raises(KeyError, match="feature 9"):
        r[(9,)]


def test_str_shows_names_and_values() -> None:
    text = str(result())
    assert "index=Moebius" in text and "n_evaluations=16" in text
    assert "(a, b): +3" in text


def test_predict_and_r2() -> None:
    r = result()
    masks = all_masks(4)
    f = 3.0 * masks[:, 0] * masks[:, 1] - 2.0 * masks[:, 2] + 0.5 * masks[:, 1] + 1.0
    assert torch.allclose(r.predict(masks), f.double(), atol=1e-12)
    assert r.r2(masks, f) == pytest.approx(1.0)
    # constant values: R^2 is undefined (nan), not -inf
    assert math.isnan(r.r2(masks, torch.zeros(16)))


def test_save_load_round_trip(tmp_path) -> None:
    r = result().to_index("STII", max_order=2)
    path = tmp_path / "r.pt"
    r.save(path)
    back = Interactions.load(path)
    assert torch.equal(back.spectrum.coefficients, r.spectrum.coefficients)
    assert torch.equal(back.spectrum.indices, r.spectrum.indices)
    assert back.to_dict() == r.to_dict()
    assert (back.index, back.max_order, back.feature_names) == ("STII", 2, list("abcd"))
    assert back.n_evaluations == r.n_evaluations


def test_vector_outputs_and_select() -> None:
    f = lambda m: torch.stack([m[:, 0] * m[:, 1], 2.0 * m[:, 2]], dim=1)  # noqa: E731
    r = explain(f, 3, method="exhaustive", index="Moebius")
    assert r.out_shape == (2,)
    assert r[(0, 1)].tolist() == [1.0, 0.0]
    assert r.select(1).to_dict() == pytest.approx({(2,): 2.0})
    assert r.first_order("SV").shape == (2, 3)


def test_feature_ids_key_results() -> None:
    spec = SparseSpectrum.from_sets([(0, 1)], [1.0], 2)
    r = Interactions(spec, index="Fourier", feature_ids=[10, 30])
    assert r[(10, 30)] == 1.0
    assert list(r.to_dict()) == [(10, 30)]


def test_top_k_with_no_term_of_the_order() -> None:
    r = Interactions(SparseSpectrum.from_sets([(), (0,)], [1.0, 2.0], 2), index="Moebius")
    assert r.top_k(3, order=2) == []
    vector = Interactions(SparseSpectrum.from_sets([(0,)], [[1.0, 2.0]], 2), index="Moebius")
    assert vector.top_k(3, order=2) == []


def test_select_keys_and_orders_say_what_is_wrong() -> None:
    # these raised a bare IndexError, returned 0 for a repeated feature, or returned []
    r = result()
    with pytest.raises(IndexError, match="nothing to select"):
        r.select(0)
    vector = explain(lambda m: torch.stack([m.sum(1).double()] * 3, 1), 4, method="exhaustive")
    assert vector.select(2).out_shape == () and vector.select(-1).out_shape == ()
    with pytest.raises(IndexError, match=r"outside \[0, 3\)"):
        vector.select(5)
    with pytest.raises(KeyError, match="names each feature once"):
        r[(0, 0)]
    with pytest.raises(ValueError, match="`order` must be a non-negative int"):
        r.top_k(order="2")


def test_heatmap_of_a_first_order_view_is_refused() -> None:
    pytest.importorskip("matplotlib")
    with pytest.raises(ValueError, match="max_order must be at least 2"):
        result().to_index("k-SII", 1).plot("heatmap")
