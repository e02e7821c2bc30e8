"""SpectralInteraction against Captum's exact ShapleyValues, invariances and the result API."""

from __future__ import annotations

import pytest
import torch
from captum.attr import PerturbationAttribution, ShapleyValues

from torchspex import SpectralInteraction
from torchspex.attr import AttributionInteractions

D = torch.float64


def _weights(seed: int, *shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=D)


W = _weights(0, 5, 3)


def mlp(x: torch.Tensor) -> torch.Tensor:
    """Non-additive 3-class model on [B, 5] (outputs ~0.3 so Captum's float32 sums stay exact)."""
    h = x @ W
    return 0.3 * torch.tanh(h) + 0.1 * h[:, :1] * h[:, 1:2]


W1, W2 = _weights(1, 4), _weights(2, 2, 3)


def two_inputs(a: torch.Tensor, b: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """Tuple-input model [B, 4], [B, 2] -> [B, 3] with cross-input interactions."""
    return scale * 0.3 * torch.sigmoid((a @ W1).unsqueeze(1) * (b @ W2))


def _x(seed: int, *shape: int) -> torch.Tensor:
    return _weights(seed + 100, *shape)


def _captum(forward, inputs, **kwargs):
    return ShapleyValues(forward).attribute(inputs, perturbations_per_eval=8, **kwargs)


def _ours(forward, inputs, **kwargs) -> AttributionInteractions:
    return SpectralInteraction(forward).attribute(inputs, method="exhaustive", **kwargs)


def _close(ours, ref) -> None:
    if isinstance(ref, tuple):
        assert isinstance(ours, tuple)
        assert len(ours) == len(ref)
        for a, b in zip(ours, ref):
            _close(a, b)
        return
    assert ours.shape == ref.shape
    torch.testing.assert_close(ours, ref.to(D), atol=1e-6, rtol=0)


# ---------------------------------------------------------------------- Captum parity
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize(
    "target", [0, 2, "list", "tensor", None], ids=["int0", "int2", "list", "tensor", "none"]
)
def test_single_tensor_matches_captum(batch, target):
    x = _x(0, batch, 5)
    if target == "list":
        target = [i % 3 for i in range(batch)]
    elif target == "tensor":
        target = torch.arange(batch) % 3
    ours = _ours(mlp, x, target=target, baselines=0.25)
    _close(ours.first_order("SV"), _captum(mlp, x, target=target, baselines=0.25))
    torch.testing.assert_close(
        ours.convergence_delta, torch.zeros_like(ours.convergence_delta), atol=1e-12, rtol=0
    )


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("shared", [True, False], ids=["shared_mask", "per_example_mask"])
@pytest.mark.parametrize("baseline", ["scalar", "tensor"])
def test_tuple_inputs_match_captum(batch, shared, baseline):
    a, b = _x(1, batch, 4), _x(2, batch, 2)
    if shared:  # ids global across the tuple, with a gap (no 2) and a cross-tensor group 4
        mask = (torch.tensor([[0, 0, 1, 4]]), torch.tensor([[3, 4]]))
    else:  # example 2 has one group fewer: it is decoded over its own 3 groups
        rows_a = torch.tensor([[0, 0, 1, 4], [3, 1, 1, 0], [0, 1, 3, 3]])[:batch]
        rows_b = torch.tensor([[3, 4], [4, 4], [1, 3]])[:batch]
        mask = (rows_a, rows_b)
    if baseline == "scalar":
        base = (0.5, -0.25)
    else:
        base = (_x(3, 1, 4), _x(4, batch, 2))
    kwargs = {
        "baselines": base,
        "target": [1] * batch,
        "feature_mask": mask,
        "additional_forward_args": (2.0,),
    }
    ours = _ours(two_inputs, (a, b), **kwargs)
    _close(ours.first_order("SV"), _captum(two_inputs, (a, b), **kwargs))


def test_multi_output_and_tuple_target_match_captum():
    x, mask = _x(5, 2, 5), torch.tensor([[0, 1, 2, 3, 3]])
    ours = _ours(mlp, x, feature_mask=mask)  # target=None: every class at once
    ref = _captum(mlp, x, feature_mask=mask)
    assert ours.out_shape == (2, 3)
    _close(ours.first_order("SV"), ref)
    for c in range(3):  # one set of forward passes gives each class's spectrum
        _close(ours.first_order("SV")[:, c], _captum(mlp, x, target=c, feature_mask=mask))

    def grid(x):
        return mlp(x).reshape(-1, 3, 1).expand(-1, 3, 2) * torch.tensor([1.0, -2.0], dtype=D)

    _close(_ours(grid, x, target=(2, 1)).first_order(), _captum(grid, x, target=(2, 1)))
    per_example = [(0, 1), (2, 0)]
    _close(_ours(grid, x, target=per_example).first_order(), _captum(grid, x, target=per_example))


def test_image_like_input_with_broadcast_mask_matches_captum():
    x = _x(6, 2, 3, 4, 4)
    mask = torch.arange(4).reshape(1, 1, 2, 2).repeat_interleave(2, 2).repeat_interleave(2, 3)

    def cnn(x):
        return 0.1 * torch.tanh(x.sum(dim=(1, 2, 3), keepdim=False)).unsqueeze(1) * x[:, 0, :2, 0]

    kwargs = {"baselines": _x(7, 1, 3, 4, 4), "feature_mask": mask, "target": 1}
    ours = _ours(cnn, x, **kwargs)
    assert ours.first_order().shape == x.shape
    _close(ours.first_order(), _captum(cnn, x, **kwargs))


def test_background_set_is_the_mean_of_single_baselines():
    x, mask = _x(8, 2, 5), torch.tensor([[0, 0, 1, 2, 2]])
    background = _x(9, 4, 1, 5)  # [R, 1, 5]: four baselines shared by the batch
    ours = _ours(mlp, x, baselines=background, target=1, feature_mask=mask)
    assert ours.info["n_background"] == 4
    assert ours.info["n_forward_rows"] == 2 * 4 * ours.n_evaluations
    ref = torch.stack(
        [_captum(mlp, x, baselines=bg, target=1, feature_mask=mask) for bg in background]
    ).mean(0)
    _close(ours.first_order(), ref)
    per_example = _x(10, 3, 2, 5)  # [R, B, 5]: three baselines per example
    ours = _ours(mlp, x, baselines=per_example, target=0, feature_mask=mask)
    ref = torch.stack(
        [_captum(mlp, x, baselines=bg, target=0, feature_mask=mask) for bg in per_example]
    ).mean(0)
    _close(ours.first_order(), ref)


def test_default_feature_mask_and_integer_inputs():
    table = _x(11, 10, 2)

    def embed(ids, offset):
        return 0.2 * (table[ids + offset].prod(dim=2).sum(dim=1, keepdim=True))

    ids = torch.tensor([[1, 4, 2, 7], [3, 3, 9, 0]])
    offset = torch.tensor([[0], [0]])  # per-example tensor arg: repeated with the batch
    ours = _ours(embed, ids, baselines=5, additional_forward_args=(offset,), target=0)
    ref = _captum(embed, ids, baselines=5, additional_forward_args=(offset,), target=0)
    assert ours.first_order().dtype == ref.dtype == torch.float32  # integer inputs: Captum's
    _close(ours.first_order().double(), ref)
    assert ours.first_order().device == ids.device


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16])
def test_first_order_has_the_inputs_dtype_the_spectrum_stays_float64(dtype):
    x = _x(12, 2, 5).to(dtype)
    res = _ours(lambda t: mlp(t.double()), x, target=0)
    assert res.first_order().dtype == dtype
    assert res.first_order(return_input_shape=False).dtype == D
    assert res.spectrum.coefficients.dtype == D
    pair = _ours(lambda a, b: two_inputs(a.double(), b), (_x(13, 2, 4).float(), _x(14, 2, 2)),
                 target=1).first_order()  # fmt: skip
    assert [p.dtype for p in pair] == [torch.float32, D]


def test_noise_tunnel_averages_first_order_shapley_values():
    from captum.attr import NoiseTunnel

    x = _x(15, 2, 5)
    explainer = SpectralInteraction(mlp)
    plain = explainer.attribute(x, target=1, method="exhaustive").first_order()
    smooth = NoiseTunnel(explainer).attribute(x, nt_samples=3, stdevs=0.0, target=1,
                                              method="exhaustive")  # fmt: skip
    torch.testing.assert_close(smooth, plain)
    attr, delta = NoiseTunnel(explainer).attribute(
        x, nt_samples=2, stdevs=0.1, target=1, method="exhaustive", return_convergence_delta=True
    )
    assert attr.shape == x.shape and delta.shape == (4,)
    import inspect

    assert "baselines" in inspect.signature(explainer.attribute).parameters  # help() unchanged


# ---------------------------------------------------------------------- invariances
def _spectrum_values(result: AttributionInteractions) -> torch.Tensor:
    return result.spectrum.coalesce().coefficients


@pytest.mark.parametrize("ppe", [1, 7, 64, "auto"])
def test_perturbations_per_eval_does_not_change_the_result(ppe):
    x, mask = _x(12, 3, 6), torch.tensor([[0, 1, 1, 2, 3, 4]])
    ref = _ours(mlp6, x, feature_mask=mask, target=2, perturbations_per_eval=3)
    res = _ours(mlp6, x, feature_mask=mask, target=2, perturbations_per_eval=ppe)
    assert torch.equal(res.spectrum.indices, ref.spectrum.indices)
    assert torch.equal(_spectrum_values(res), _spectrum_values(ref))
    # the probe (all kept, all removed), then the 30 other masks
    chunk = res.info["perturbations_per_eval"]
    expected_calls = -(-2 // chunk) + -(-30 // chunk)
    assert res.info["n_forward_calls"] == expected_calls


W6 = _weights(13, 6, 3)


def mlp6(x: torch.Tensor) -> torch.Tensor:
    h = x @ W6
    return h.prod(dim=1, keepdim=True) + h  # elementwise after one matmul per row


def test_batch_composition_does_not_change_an_example():
    x = _x(14, 4, 6)
    masks = torch.tensor(
        [[0, 0, 1, 2, 3, 4], [0, 1, 2, 2, 3, 3], [0, 0, 1, 2, 3, 4], [5, 0, 1, 2, 3, 4]]
    )
    whole = _ours(mlp6, x, feature_mask=masks, target=[0, 1, 2, 0])
    for b in range(4):
        alone = _ours(mlp6, x[b : b + 1], feature_mask=masks[b : b + 1], target=[[0, 1, 2, 0][b]])
        torch.testing.assert_close(
            whole.select(b).to_index("Moebius").to_dict(),
            {tuple(k): v[0] for k, v in alone.to_index("Moebius").to_dict().items()},
            atol=1e-12,
            rtol=0,
        )


def test_forward_passes_are_shared_across_the_batch(generator):
    calls = []

    def spy(x):
        calls.append(x.shape[0])
        return mlp(x)

    before = generator.get_state()
    _ours(spy, _x(15, 2, 5), target=0, generator=generator)
    assert torch.equal(generator.get_state(), before)  # exhaustive draws nothing
    assert calls == [4, 60]  # the probe (2 masks x 2 examples), then the other 30 masks x 2


# ---------------------------------------------------------------------- result API
def test_result_views_and_captum_hooks():
    x = _x(16, 2, 5)
    explainer = SpectralInteraction(mlp)
    assert isinstance(explainer, PerturbationAttribution)
    assert explainer.has_convergence_delta()
    assert explainer.get_name() == "Spectral Interaction"
    with pytest.raises(NotImplementedError):
        explainer.attribute_future(x)
    res = explainer.attribute(x, target=1, method="exhaustive", index="STII", max_order=2)
    assert res.n_evaluations == 32
    assert res.batch_size == 2
    assert res.first_order("SV", return_input_shape=False).shape == (2, 5)
    torch.testing.assert_close(res.first_order("SV").sum(1), res.inputs_value - res.baselines_value)
    torch.testing.assert_close(explainer.compute_convergence_delta(res), res.convergence_delta)
    bv = res.to_index("BV")
    assert isinstance(bv, AttributionInteractions)
    assert bv.first_order("BV").shape == x.shape
    assert res.inputs_value.shape == (2,)
    torch.testing.assert_close(res.inputs_value, mlp(x)[:, 1])


def test_save_load_keeps_the_input_layout(tmp_path):
    a, b = _x(17, 2, 4), _x(18, 2, 2)
    res = _ours(
        two_inputs,
        (a, b),
        target=0,
        feature_mask=(torch.tensor([[0, 1, 1, 2]]), torch.tensor([[7, 7]])),
    )
    res.save(tmp_path / "r.pt")
    loaded = AttributionInteractions.load(tmp_path / "r.pt")
    assert loaded.feature_ids == (0, 1, 2, 7)
    for x, y in zip(loaded.first_order(), res.first_order()):
        assert torch.equal(x, y)


def test_model_mode_and_requires_grad_untouched():
    model = torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    model.train()
    model[0].weight.requires_grad_(False)
    flags = [p.requires_grad for p in model.parameters()]
    res = SpectralInteraction(model).attribute(torch.randn(1, 5), target=1, method="exhaustive")
    assert model.training
    assert [p.requires_grad for p in model.parameters()] == flags
    assert res.first_order().shape == (1, 5)
    model.append(torch.nn.Dropout(0.0))
    with pytest.warns(UserWarning, match="training mode"):
        SpectralInteraction(model).attribute(torch.randn(1, 5), target=1, method="exhaustive")


def test_show_progress_counts_masks_and_ends_at_100(capsys):
    res = _ours(mlp, _x(19, 1, 5), target=0, perturbations_per_eval=8, show_progress=True)
    err = capsys.readouterr().err
    assert "Spectral Interaction attribution" in err
    assert "100%" in err and "32/32" in err  # every mask once: the 2 probes and 30 more
    assert res.info["n_forward_calls"] == 5  # 1 probe call + ceil(30 / 8)


@pytest.mark.parametrize("per_eval", [1, 2, 3])
def test_show_progress_reaches_100_for_any_perturbations_per_eval(capsys, per_eval):
    _ours(lambda x: mlp(torch.cat([x, x[:, :2]], 1)), _x(19, 1, 3), target=0,
          perturbations_per_eval=per_eval, show_progress=True)  # fmt: skip
    err = capsys.readouterr().err
    assert "100%" in err and "8/8" in err  # was 8/9, 4/5, 3/4 calls


@pytest.mark.slow
def test_show_progress_proxyspex_ends_at_100_and_shows_fitting(capsys):
    x = _weights(3, 1, 12)
    w = _weights(4, 12)
    res = SpectralInteraction(lambda t: t @ w).attribute(
        x, n_samples=120, method="proxyspex", show_progress=True
    )
    err = capsys.readouterr().err
    final = err.replace("\r", "\n").strip().splitlines()[-1]
    assert "100%" in final and f"{res.n_evaluations}/{res.n_evaluations}" in final
    assert "fitting" in err  # the decoder's phase


@pytest.mark.slow
def test_show_progress_spex_ends_at_100_when_fewer_masks_than_the_budget(capsys):
    w = _weights(5, 40)
    res = SpectralInteraction(lambda t: t @ w).attribute(
        _weights(6, 1, 40), n_samples=1000, method="spex", show_progress=True
    )
    final = capsys.readouterr().err.replace("\r", "\n").strip().splitlines()[-1]
    n = res.n_evaluations
    assert "100%" in final and f"{n}/{n}" in final  # was 38/64 calls


def test_show_progress_moves_with_every_forward_call(monkeypatch):
    from torchspex.decoders import base

    seen = []
    monkeypatch.setattr(base.Progress, "update", lambda self, n: n and seen.append(n))
    _ours(mlp, _x(19, 2, 5), target=0, perturbations_per_eval=8, show_progress=True)
    assert seen == [2, 8, 8, 8, 6]  # masks per forward call (the probes, then 30)


def test_show_progress_auto_caps_rows_per_call_on_cpu():
    sizes = []

    def model(x):
        sizes.append(x.shape[0])
        return mlp(x[:, :5])

    x = _x(19, 1, 9)
    _ours(model, x, target=0, show_progress=True, feature_mask=torch.arange(9) % 5)
    assert max(sizes) <= 128 and sum(sizes) == 2**5
    sizes.clear()
    _ours(model, _x(19, 130, 9), target=0, show_progress=True, feature_mask=torch.arange(9) % 2)
    assert max(sizes) == 130  # one mask per call when the batch alone exceeds 128 rows


# ---------------------------------------------------------------------- OOM back-off
def test_auto_halves_on_out_of_memory():
    seen = []

    def fussy(x):
        seen.append(x.shape[0])
        if x.shape[0] > 24:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return mlp(x)

    x = _x(20, 3, 5)
    res = _ours(fussy, x, target=1, perturbations_per_eval="auto")
    ref = _ours(mlp, x, target=1, perturbations_per_eval=1)
    assert torch.equal(_spectrum_values(res), _spectrum_values(ref))
    # probe (2 masks x 3 rows); then 30 masks: 90 rows fail, 15 masks fail, 7 masks fit
    assert seen == [6, 90, 45, 21, 21, 21, 21, 6]
    assert res.info["perturbations_per_eval"] == 7
    with pytest.raises(torch.OutOfMemoryError) as info:
        _ours(fussy, x, target=1, perturbations_per_eval=16)
    notes = getattr(info.value, "__notes__", None)  # Python >= 3.11
    if notes is not None:
        assert "Lower `perturbations_per_eval`" in notes[0]


def test_model_error_gets_context():
    def broken(x):
        if x.shape[0] > 2:
            raise RuntimeError("boom")
        return mlp(x)

    with pytest.raises(RuntimeError, match="boom") as info:
        _ours(broken, _x(21, 1, 5), target=0)
    notes = getattr(info.value, "__notes__", None)
    if notes is not None:
        assert "input rows" in notes[0]


def test_negative_ids_are_never_features_and_keep_the_input():
    x = _x(22, 2, 5)
    ours = _ours(mlp, x, feature_mask=torch.tensor([[0, -1, 1, 2, -1]]), target=1, baselines=0.25)
    assert ours.feature_ids == (0, 1, 2)
    # Captum has no such id: give those positions a group whose baseline is the input itself
    base = torch.full_like(x, 0.25)
    base[:, [1, 4]] = x[:, [1, 4]]
    ref = _captum(mlp, x, feature_mask=torch.tensor([[0, 3, 1, 2, 3]]), target=1, baselines=base)
    _close(ours.first_order(), ref)
    assert torch.equal(ours.first_order()[:, [1, 4]], torch.zeros(2, 2, dtype=D))


# ---------------------------------------------------------------------- sampling decoders
def planted(x: torch.Tensor) -> torch.Tensor:
    """A sparse function of 24 features: two pairs, one triple, one main effect."""
    return (
        2.0 * x[:, 3] * x[:, 17]
        - 1.5 * x[:, 5]
        + 0.7 * x[:, 8] * x[:, 9] * x[:, 20]
        + 0.4 * x[:, 0] * x[:, 23]
    )


@pytest.mark.slow
@pytest.mark.parametrize("method", ["spex", "proxyspex", "regression", "auto"])
def test_sampling_methods_are_batch_and_ppe_invariant(method):
    pytest.importorskip(f"torchspex.decoders.{method}")
    if method in ("proxyspex", "regression", "auto"):
        pytest.importorskip("lightgbm")
    x = torch.linspace(0.5, 2.0, 3, dtype=D).unsqueeze(1) * torch.ones(3, 24, dtype=D)
    kwargs = {"method": method, "n_samples": 700, "max_order": 3, "index": "Moebius"}
    explainer = SpectralInteraction(planted)
    batch = explainer.attribute(x, generator=5, perturbations_per_eval=7, **kwargs)
    assert batch.n_evaluations <= 700
    auto = explainer.attribute(x, generator=5, **kwargs)
    assert torch.equal(auto.spectrum.indices, batch.spectrum.indices)
    assert torch.equal(auto.spectrum.coefficients, batch.spectrum.coefficients)
    alone = explainer.attribute(x[2:], generator=5, **kwargs)
    assert alone.select(0).to_dict() == {
        k: v for k, v in batch.select(2).to_dict().items() if v != 0.0
    }
    # the delta compares the learned surrogate with the model's own extremes
    torch.testing.assert_close(batch.inputs_value, planted(x))
    torch.testing.assert_close(batch.baselines_value, torch.zeros(3, dtype=D))
    ones = torch.ones(1, 24, dtype=torch.bool)
    learned = batch.spectrum.evaluate(ones)[0] - batch.spectrum.coefficients.sum(0)
    torch.testing.assert_close(batch.convergence_delta, learned - planted(x))
    # every method's surrogate is exact at the corners: the delta vanishes
    assert float(batch.convergence_delta.abs().max()) < 1e-9


def test_first_order_feeds_captum_metrics_and_visualization():
    from captum.metrics import infidelity

    x = _x(23, 2, 5)
    res = _ours(mlp, x, target=1, baselines=0.25)
    attributions = res.first_order()

    def perturb(inputs):
        noise = 0.1 * torch.ones_like(inputs)
        return noise, inputs - noise

    score = infidelity(mlp, perturb, x, attributions, target=1, n_perturb_samples=2)
    assert score.shape == (2,)
    assert torch.isfinite(score).all()

    pytest.importorskip("matplotlib")
    from captum.attr import visualization

    image = _x(24, 1, 3, 4, 4)

    def brightness(img):
        return img.mean(dim=(1, 2, 3)).unsqueeze(1) ** 2

    mask = torch.arange(4).reshape(1, 1, 2, 2).repeat_interleave(2, 2).repeat_interleave(2, 3)
    attr = _ours(brightness, image, target=0, feature_mask=mask).first_order()
    fig, _ = visualization.visualize_image_attr(
        attr[0].permute(1, 2, 0).numpy(), method="heat_map", sign="all", use_pyplot=False
    )
    assert len(fig.axes) >= 1 and len(fig.axes[0].get_images()) == 1


def test_info_splits_forward_and_decode_seconds():
    # issue 28: info records the forward passes' and the decoders' seconds apart, and says
    # where the decode runs
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))
    result = SpectralInteraction(model).attribute(torch.randn(2, 8), n_samples=300, target=0)
    assert result.info["forward_seconds"] > 0 and result.info["decode_seconds"] > 0
    assert result.info["decode_device"].startswith("cpu")


def test_shapley_values_of_a_batch_defer_the_even_parts():
    """attribute(index="SV") on a batch: every example's even part deferred and merged on the
    first read; the Shapley values and the convergence delta come without it and equal the
    eager (index="k-SII") run's; the pairs, once read, are bitwise the eager ones."""
    from torchspex.fourier import DeferredSpectrum

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(10, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
    x = torch.randn(3, 10)
    runs = {index: SpectralInteraction(model).attribute(x, baselines=0.0, target=0,
                                                        index=index, n_samples=300)
            for index in ("SV", "k-SII")}  # fmt: skip
    lazy, eager = runs["SV"], runs["k-SII"]
    assert isinstance(lazy.spectrum, DeferredSpectrum) and lazy.spectrum.is_deferred
    sv = lazy.first_order("SV")
    assert lazy.spectrum.is_deferred
    torch.testing.assert_close(sv, eager.first_order("SV"), rtol=0, atol=1e-12)
    torch.testing.assert_close(lazy.info["convergence_delta"], eager.info["convergence_delta"],
                               rtol=0, atol=1e-12)  # fmt: skip
    assert float(lazy.info["convergence_delta"].abs().max()) < 1e-12
    pairs = lazy.to_index("k-SII", 2).values
    assert not lazy.spectrum.is_deferred
    assert torch.equal(pairs.indices, eager.to_index("k-SII", 2).values.indices)
    assert torch.equal(pairs.coefficients, eager.to_index("k-SII", 2).values.coefficients)
