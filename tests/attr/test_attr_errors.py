"""Bad arguments fail with a clear error before the model runs (or on its first, tiny call)."""

from __future__ import annotations

import pytest
import torch

from torchspex import BudgetTooSmallError, SpectralInteraction, explain


class Recorder:
    """A 3-class model that records the batch size of every call."""

    def __init__(self, aggregate: bool = False, returns: str = "tensor") -> None:
        self.calls: list[int] = []
        self.aggregate = aggregate
        self.returns = returns

    def __call__(self, x: torch.Tensor, *args: object) -> object:
        self.calls.append(x.shape[0])
        out = torch.stack([x.sum(1), x.prod(1), x[:, 0]], dim=1)
        if self.aggregate:
            return out.sum()
        if self.returns == "tuple":
            return (out,)
        return out


X = torch.ones(2, 4)


def _attribute(model, inputs=X, **kwargs):
    kwargs.setdefault("method", "exhaustive")
    return SpectralInteraction(model).attribute(inputs, **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"baselines": torch.zeros(3, 4)}, ValueError, "must broadcast to the input's shape"),
        ({"baselines": torch.zeros(2, 5)}, ValueError, "must broadcast"),
        ({"baselines": (0.0, 1.0)}, ValueError, "one entry per input"),
        ({"baselines": "zero"}, TypeError, "must be None, a number or a tensor"),
        ({"feature_mask": torch.zeros(1, 4)}, TypeError, "integer group ids"),
        ({"feature_mask": torch.zeros(1, 4, dtype=torch.bool)}, TypeError, "integer group ids"),
        ({"feature_mask": torch.zeros(1, 3, dtype=torch.long)}, ValueError, "must broadcast"),
        ({"feature_mask": torch.zeros(3, 4, dtype=torch.long)}, ValueError, "dim 0 = 1"),
        ({"feature_mask": [0, 1, 2, 3]}, TypeError, "integer torch.Tensor"),
        ({"target": [0, 1, 2]}, ValueError, "one entry per example"),
        ({"target": torch.tensor([0, 1, 2])}, ValueError, "one entry per example"),
        ({"target": 1.5}, TypeError, "`target` must be"),
        ({"target": torch.tensor([0.0, 1.0])}, TypeError, "must hold integers"),
        ({"n_samples": 10}, BudgetTooSmallError, "n_samples >= 2\\^4 = 16"),
        ({"n_samples": 0}, ValueError, "`n_samples` must be >= 1"),
        ({"method": "kernelshap"}, ValueError, "`method` must be one of"),
        ({"index": "Shapley"}, ValueError, "index"),
        ({"max_order": 9}, ValueError, "`max_order` must be between 1 and n_features=4"),
        ({"perturbations_per_eval": 0}, ValueError, "positive int or 'auto'"),
        ({"perturbations_per_eval": "max"}, ValueError, "positive int or 'auto'"),
        ({"feature_names": ["a", "b"]}, ValueError, "one name per feature group"),
        ({"generator": "seed"}, TypeError, "`generator` must be"),
    ],
)
def test_bad_arguments_fail_before_any_forward(kwargs, error, match):
    model = Recorder()
    with pytest.raises(error, match=match):
        _attribute(model, **kwargs)
    assert model.calls == []


@pytest.mark.parametrize(
    ("inputs", "error", "match"),
    [
        ([[1.0, 2.0]], TypeError, "must be a torch.Tensor"),
        ((X, torch.ones(3, 2)), ValueError, "same batch size"),
        (torch.tensor(1.0), ValueError, "batch dimension"),
        ((), ValueError, "non-empty tuple"),
        (torch.ones(0, 4), ValueError, "at least one example"),
    ],
)
def test_bad_inputs_fail_before_any_forward(inputs, error, match):
    model = Recorder()
    with pytest.raises(error, match=match):
        _attribute(model, inputs)
    assert model.calls == []


def test_budget_is_checked_for_every_group_count_before_any_forward():
    model = Recorder()
    per_example = torch.tensor([[0, 1, 2, 3], [0, 0, 1, 1]])  # 4 groups, then 2
    with pytest.raises(BudgetTooSmallError, match="2\\^4") as info:
        _attribute(model, feature_mask=per_example, n_samples=8)
    assert info.value.minimum == 16
    assert model.calls == []
    with pytest.raises(ValueError, match="n_features <= 20"):
        _attribute(model, torch.ones(1, 21))
    assert model.calls == []


@pytest.mark.parametrize(
    ("target", "match"),
    [
        (3, "out of range: 3 for output dimension 1 of size 3"),
        (-4, "out of range: -4"),
        ((0, 1), r"pass a list instead: target=\[0, 1\]"),
        ((0, 1, 2), "indexes output dimension 2"),
        ([0, 7], "out of range: 7"),
        (torch.tensor([5, 0]), "out of range: 5"),
    ],
)
def test_target_out_of_range_fails_on_the_small_probe_call(target, match):
    model = Recorder()
    with pytest.raises(ValueError, match=match):
        _attribute(model, target=target)
    assert model.calls == [4]  # only the probe: all kept and all removed for 2 examples


def test_model_that_does_not_grow_with_the_batch():
    model = Recorder(aggregate=True)
    with pytest.raises(ValueError, match="one row per input row"):
        _attribute(model, target=None)
    assert model.calls == [4]
    single = Recorder(aggregate=True)  # B = 1 still gives 2 rows in the probe
    with pytest.raises(ValueError, match="dim 0 grows with the batch"):
        _attribute(single, torch.ones(1, 4))
    with pytest.raises(TypeError, match="must return a torch\\.Tensor"):
        _attribute(Recorder(returns="tuple"))


def test_nan_output_names_a_mask():
    def nan_model(x):
        out = x.sum(1, keepdim=True)
        return torch.where(x[:, :1] == 0, torch.nan, out)

    with pytest.raises(ValueError, match="NaN or inf"):
        _attribute(nan_model, target=0)


def test_integer_input_rejects_fractional_baseline():
    ids = torch.tensor([[1, 2, 3]])
    model = Recorder()
    with pytest.raises(ValueError, match="whole number"):
        _attribute(model, ids, baselines=0.5)
    with pytest.raises(ValueError, match="whole numbers"):
        _attribute(model, ids, baselines=torch.tensor([[0.5, 0.0, 0.0]]))
    assert model.calls == []


def test_inconsistent_background_sets():
    model = Recorder()
    with pytest.raises(ValueError, match="same number of rows"):
        _attribute(model, (X, X), baselines=(torch.zeros(3, 1, 4), torch.zeros(2, 1, 4)), target=0)
    assert model.calls == []


def test_forward_func_must_be_callable():
    with pytest.raises(TypeError, match="`forward_func` must be callable"):
        SpectralInteraction("model")


# ---------------------------------------------------------------------- issue 17: the first hour
def test_a_failing_model_gets_one_note_with_the_right_counts():
    calls = []
    model = torch.nn.Linear(3, 2)

    class Flaky(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = model

        def forward(self, x):
            calls.append(x.shape[0])
            if len(calls) == 3:
                raise RuntimeError("boom")
            return self.inner(x)

    with pytest.raises(RuntimeError, match="boom") as info:
        _attribute(Flaky(), torch.ones(1, 3), target=0, perturbations_per_eval=1)
    notes = info.value.__notes__
    assert len(notes) == 1, notes
    assert "the model (Flaky) raised on forward call 3" in notes[0]
    assert "the 2 calls before it (2 masks) had succeeded" in notes[0]
    assert "value function" not in notes[0]


def test_target_out_of_range_gets_no_note_blaming_the_value_function():
    with pytest.raises(ValueError, match="out of range") as info:
        _attribute(torch.nn.Linear(4, 3), target=5)
    assert not getattr(info.value, "__notes__", [])


def test_dtype_mismatch_says_what_to_do_on_the_first_call():
    model = torch.nn.Linear(4, 3)  # float32
    with pytest.raises(TypeError, match=r"inputs are float64 but the model's parameters are "
                       r"float32.*inputs\.to\(torch\.float32\).*model\.to"):  # fmt: skip
        _attribute(model, torch.ones(2, 4, dtype=torch.float64), target=0)


@pytest.mark.parametrize(
    ("args", "error", "match"),
    [
        (torch.ones(3, 2), ValueError, r"dim 0 = the batch size \(2\)"),
        ((torch.ones(2), torch.ones(1, 5)), ValueError, r"`additional_forward_args\[1\]`"),
        ([torch.ones(2)], TypeError, "list holding tensors"),
        ({"mask": torch.ones(2)}, TypeError, "dict holding tensors"),
    ],
)
def test_additional_forward_args_are_checked_before_any_forward(args, error, match):
    model = Recorder()
    with pytest.raises(error, match=match):
        _attribute(model, additional_forward_args=args)
    assert model.calls == []


def test_additional_forward_args_of_the_batch_and_constants_pass():
    model = Recorder()
    _attribute(model, target=0, additional_forward_args=(torch.ones(2, 7), torch.tensor(1.0), 3))
    assert model.calls


def test_budget_message_states_one_minimum_and_working_advice():
    import re

    model = torch.nn.Linear(40, 2)
    for order in (1, 2, 3, None):
        with pytest.raises(BudgetTooSmallError) as info:
            SpectralInteraction(model).attribute(
                torch.ones(1, 40), target=0, method="spex", n_samples=48, max_order=order
            )
        msg = str(info.value)
        assert set(re.findall(r">= (\d+)", msg)) == {str(info.value.minimum)}, msg
        assert "max_order" not in msg  # lowering it does not lower the minimum
        assert "decoder said" not in msg


def test_baselines_true_is_one_as_in_captum():
    model = torch.nn.Linear(3, 2)
    x = torch.zeros(1, 3)
    ours = _attribute(model, x, target=0, baselines=True)
    ref = _attribute(model, x, target=0, baselines=1.0)
    torch.testing.assert_close(ours.first_order(), ref.first_order())
    expected = model(torch.ones(1, 3))[:, 0].double().detach()
    torch.testing.assert_close(ours.baselines_value, expected)


def test_top_k_of_a_batch_asks_for_one_example():
    model = torch.nn.Linear(3, 1)
    batch = _attribute(model, torch.ones(2, 3), target=0)
    with pytest.raises(ValueError, match=r"batch of 2.*result\.select\(i\)\.top_k\(3\)"):
        batch.top_k(3)
    assert batch.select(1).top_k(3) == _attribute(model, torch.ones(1, 3), target=0).top_k(3)
    assert "example 1:" in str(batch)  # printing a batch shows each example's ranking


# ---------------------------------------------------------------------- issue 30: say the fix
@pytest.mark.parametrize(
    "inputs", [torch.ones(2, 0), torch.ones(2, 3, 0), (torch.ones(2, 0), torch.ones(2, 0, 5))]
)
def test_inputs_without_features_fail_before_any_forward(inputs):
    model = Recorder()
    with pytest.raises(ValueError, match=r"empty after the batch dimension.*n_features >= 1"):
        _attribute(model, inputs, target=0)
    assert model.calls == []


def test_an_empty_input_beside_others_still_works():
    result = _attribute(lambda x, empty: x.sum(1, keepdim=True), (X, torch.ones(2, 0)), target=0)
    assert result.n_features == 4


class _Elsewhere(torch.nn.Module):
    """A model whose parameters report ``devices`` (a CPU-only machine has no second device)."""

    def __init__(self, *devices: str) -> None:
        super().__init__()
        self.devices = devices

    def parameters(self, recurse: bool = True):
        from types import SimpleNamespace

        return iter([SimpleNamespace(device=torch.device(d)) for d in self.devices])

    def forward(self, x):
        raise AssertionError("never called")


def test_model_on_another_device_is_refused_with_both_devices_and_the_fix():
    from torchspex.attr._forward import check_model_device

    with pytest.raises(ValueError, match=r"on 'cuda:0', but the inputs are on 'cpu'.*"
                       r"inputs\.to\('cuda:0'\).*model\.to\('cpu'\)"):  # fmt: skip
        check_model_device(_Elsewhere("cuda:0"), torch.device("cpu"))
    with pytest.raises(ValueError, match="'cuda:0', 'cuda:1'"):  # bound methods too
        check_model_device(_Elsewhere("cuda:0", "cuda:1").forward, torch.device("cpu"))
    # split by hand over several devices: the inputs go to one that holds some parameters
    check_model_device(_Elsewhere("cuda:1", "cuda:0"), torch.device("cuda:0"))


def test_meta_model_is_refused_before_any_forward_and_says_it_holds_no_data():
    calls = []
    model = torch.nn.Linear(4, 2, device="meta")
    model.register_forward_pre_hook(lambda *a: calls.append(1))
    with pytest.raises(ValueError, match=r"on 'meta', but the inputs are on 'cpu'.*to_empty"):
        _attribute(model, target=0)
    with pytest.raises(ValueError, match=r"the model \(Linear\.forward\)"):
        _attribute(model.forward, target=0)
    buffers_only = torch.nn.BatchNorm1d(4, affine=False, device="meta").eval()
    with pytest.raises(ValueError, match="'meta'"):
        _attribute(buffers_only, target=0)
    assert calls == []


def test_models_on_the_inputs_device_or_out_of_sight_are_never_refused():
    from torchspex.attr._forward import check_model_device

    cpu = torch.device("cpu")
    check_model_device(torch.nn.Linear(4, 2), cpu)  # every parameter on the inputs' device
    check_model_device(torch.nn.Flatten(), cpu)  # no parameters or buffers
    meta = torch.nn.Linear(4, 2, device="meta")
    check_model_device(lambda x: meta(x), cpu)  # a plain function: its model is out of sight
    mixed = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 2, device="meta"))
    check_model_device(mixed, cpu)  # some parameters on the inputs' device
    offloaded = torch.nn.Sequential(torch.nn.Linear(4, 2, device="meta"))
    offloaded[0]._hf_hook = object()  # accelerate's dispatch / offload hooks place the tensors
    check_model_device(offloaded, cpu)
    _attribute(torch.nn.Sequential(torch.nn.Flatten()), target=0)


def test_device_error_of_a_hidden_model_gets_a_hint_on_the_first_call():
    meta = torch.nn.Linear(4, 2, device="meta")
    with pytest.raises(RuntimeError) as info:
        _attribute(lambda x: meta(x), target=0)
    notes = " ".join(getattr(info.value, "__notes__", []))
    assert "raised on forward call 1" in notes
    assert "The inputs are on 'cpu'" in notes and "model.to('cpu')" in notes


def test_tuple_target_of_the_batch_size_that_cannot_index_suggests_a_list():
    model = Recorder()  # output [B, 3]
    with pytest.raises(ValueError, match=r"output\[:, 0, 1\].*shape \(3,\).*target=\[0, 1\]"):
        _attribute(model, target=(0, 1))
    assert model.calls == [4]  # only the probe


def _grid(x):
    """A [B, 3, 3] output: every pair of feature sums."""
    return x[:, :3, None] + x[:, None, :3]


def test_ambiguous_tuple_target_warns_and_keeps_captums_reading():
    with pytest.warns(UserWarning, match=r"one entry per example.*target=\[0, 1\]"):
        result = _attribute(_grid, target=(0, 1))
    expected = _attribute(lambda x: _grid(x)[:, 0, 1], target=None)
    torch.testing.assert_close(result.first_order(), expected.first_order())


@pytest.mark.parametrize(
    ("inputs", "target"),
    [(torch.ones(3, 4), (0, 1)), (torch.ones(1, 4), (0,)), (X, (0,))],
)
def test_tuple_targets_of_another_length_do_not_warn(inputs, target):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _attribute(_grid, inputs, target=target)


def test_nan_names_the_model_not_the_value_function():
    class MLP(torch.nn.Module):
        def forward(self, x):
            return torch.where(x[:, :1] == 0, torch.nan, x.sum(1, keepdim=True))

    with pytest.raises(ValueError, match=r"^the model \(MLP\) returned NaN or inf") as info:
        _attribute(MLP(), target=0)
    assert "value_function" not in str(info.value)

    def plain(x):
        return MLP()(x)

    with pytest.raises(ValueError, match=r"^`forward_func` \(.*plain\) returned NaN"):
        _attribute(plain, target=0)
    with pytest.raises(ValueError, match=r"^`value_function` returned NaN"):  # explain's wording
        explain(lambda m: torch.where(m[:, 0], torch.nan, 0.0), 3, method="exhaustive")
