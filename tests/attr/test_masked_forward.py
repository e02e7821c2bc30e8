"""MaskedForward: the row layout, argument expansion and target selection of the value function."""

from __future__ import annotations

import torch

from torchspex import SpectralInteraction
from torchspex.attr._forward import MaskedForward
from torchspex.attr._inputs import format_baselines, format_feature_mask, format_inputs


def _build(forward, inputs, baselines=None, feature_mask=None, **kwargs) -> MaskedForward:
    inputs, _ = format_inputs(inputs)
    bases, _ = format_baselines(baselines, inputs)
    layout = format_feature_mask(feature_mask, inputs)
    return MaskedForward(forward, inputs, bases, layout.group_maps, layout.n_features, **kwargs)


def test_rows_are_perturbation_major_with_background_rows_inside():
    seen = []

    def forward(x):
        seen.append(x.clone())
        return x.sum(1)

    x = torch.tensor([[1.0, 2.0, 3.0], [10.0, 20.0, 30.0]])
    background = torch.tensor([[[0.0, 0.0, 0.0]], [[-1.0, -1.0, -1.0]]])  # R = 2, shared
    fwd = _build(forward, x, background, perturbations_per_eval=2)
    masks = torch.tensor([[True, False, True], [False, True, False]])
    values = fwd(masks)
    expected = torch.tensor(
        [
            [1.0, 0.0, 3.0],
            [10.0, 0.0, 30.0],  # mask 0, background row 0, examples 0 and 1
            [1.0, -1.0, 3.0],
            [10.0, -1.0, 30.0],  # mask 0, background row 1
            [0.0, 2.0, 0.0],
            [0.0, 20.0, 0.0],  # mask 1, background row 0
            [-1.0, 2.0, -1.0],
            [-1.0, 20.0, -1.0],  # mask 1, background row 1
        ]
    )
    assert torch.equal(seen[0], expected)
    assert values.dtype == torch.float64
    assert values.shape == (2, 2)  # [m, B]: background outputs averaged
    expected_values = torch.tensor([[3.5, 39.5], [1.0, 19.0]], dtype=torch.float64)
    torch.testing.assert_close(values, expected_values)
    assert (fwd.n_calls, fwd.n_rows) == (1, 8)


def test_additional_forward_args_repeat_like_captum():
    shapes = []

    def forward(x, per_example, scalar_tensor, text):
        shapes.append((x.shape[0], per_example.shape[0], scalar_tensor.dim(), text))
        return x.sum(1) * per_example.squeeze(1) + scalar_tensor

    x = torch.ones(2, 3)
    fwd = _build(
        forward,
        x,
        additional_forward_args=(torch.tensor([[1.0], [2.0]]), torch.tensor(0.5), "s"),
        perturbations_per_eval=3,
    )
    values = fwd(torch.ones(5, 3, dtype=torch.bool))
    assert shapes == [(6, 6, 0, "s"), (4, 4, 0, "s")]  # 3 masks, then the remaining 2
    torch.testing.assert_close(values[:, 1], torch.full((5,), 6.5, dtype=torch.float64))


def test_per_example_targets_and_group_maps():
    def forward(x):
        return torch.stack([x.sum(1), -x.sum(1), x[:, 0]], dim=1)

    x = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    mask = torch.tensor([[0, 1], [1, 1]])  # example 1 is one group
    fwd = _build(forward, x, feature_mask=mask, target=[0, 2], perturbations_per_eval="auto")
    values = fwd(torch.tensor([[True, False], [False, True], [True, True]]))
    expected = torch.tensor([[1.0, 0.0], [2.0, 3.0], [3.0, 3.0]], dtype=torch.float64)
    torch.testing.assert_close(values, expected)
    assert fwd.out_shape == ()


def test_no_grad_and_device_of_masked_inputs():
    # under no_grad, as Captum's perturbation methods, not inference mode: a tensor a model
    # caches in its forward would be an inference tensor that later training cannot save
    flags = []

    def forward(x):
        flags.append((torch.is_grad_enabled(), torch.is_inference_mode_enabled(), x.device,
                      x.requires_grad))  # fmt: skip
        return x.sum(1)

    x = torch.ones(1, 3, requires_grad=True)
    _build(forward, x)(torch.ones(1, 3, dtype=torch.bool))
    assert flags == [(False, False, x.device, False)]


def test_a_tensor_cached_in_forward_can_be_trained_through_afterwards():
    # found by a review: after attribute(), IntegratedGradients failed with "Inference tensors
    # cannot be saved for backward" on a model caching a tensor on its first forward
    class Cached(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin, self.cache = torch.nn.Linear(3, 1), None

        def forward(self, x):
            if self.cache is None:
                self.cache = torch.ones(1)
            return (self.lin(x) * self.cache).squeeze(1)  # backward saves the cache

    model = Cached()
    x = torch.rand(2, 3)
    SpectralInteraction(model).attribute(x, method="exhaustive")
    model(x).sum().backward()  # raised "Inference tensors cannot be saved for backward"
    torch.testing.assert_close(model.lin.weight.grad, x.sum(0, keepdim=True))
