"""SpectralInteraction.attribute step by step: validate, plan, evaluate, decode, assemble."""

from __future__ import annotations

import pytest
import torch

from torchspex import BudgetTooSmallError, SpectralInteraction
from torchspex._pipeline import Problem, Run
from torchspex.attr.spectral_interaction import (
    _assemble,
    _explain_part,
    _masked_forward,
    _plan,
    _SharedColumns,
    _validate,
)
from torchspex.decoders.base import Evaluator

D = torch.float64
W = torch.tensor([[1.0, -2.0], [0.5, 1.5], [-1.0, 0.25], [2.0, 1.0]], dtype=D)
X = torch.tensor([[1.0, 2.0, 3.0, 4.0], [0.5, -1.0, 2.0, 1.0], [2.0, 1.0, -1.0, 0.5]], dtype=D)
#: examples 0 and 2 hold groups {0, 1, 2}, example 1 only {0, 2}: two partitions
MASK = torch.tensor([[0, 1, 2, 2], [0, 0, 2, 2], [0, 1, 1, 2]])


class Model(torch.nn.Module):
    """[B, 4] -> [B, 2], with a product so groups interact; counts forward calls."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return x @ W + (x[:, :1] * x[:, 2:3])


def request(**overrides: object):
    settings = {"method": "exhaustive", "index": "Moebius", "max_order": None,
                "n_samples": None, "generator": 0, "nonfinite": "raise", "decoder_options": {},
                "perturbations_per_eval": 3, "process_group": False, "feature_names": None,
                "cache": None, "target": 1, "baselines": 0.0, "feature_mask": MASK}  # fmt: skip
    settings.update(overrides)
    inputs = settings.pop("inputs", X)
    return _validate(
        inputs, settings.pop("baselines"), settings.pop("target"), None,
        settings.pop("feature_mask"), **settings,
    )  # fmt: skip


# ---------------------------------------------------------------------- 1. validate
def test_validate_formats_everything_and_builds_the_problem() -> None:
    req = request(method="Exhaustive", feature_names=["a", "b", "c"])
    assert (req.batch, req.n_features, req.n_background) == (3, 3, 1)
    assert isinstance(req.problem, Problem) and req.problem.method == "exhaustive"
    assert req.target == 1 and req.args == () and not req.is_tuple
    assert req.layout.presence.tolist() == [[True] * 3, [True, False, True], [True] * 3]
    with pytest.raises(ValueError, match=r"one name per feature group \(3\); got 2"):
        request(feature_names=["a", "b"])
    with pytest.raises(ValueError, match="perturbations_per_eval"):
        request(perturbations_per_eval=0)


# ---------------------------------------------------------------------- 2. plan
def test_plan_groups_examples_by_their_features_largest_first() -> None:
    parts = _plan(request())
    assert [p.members.tolist() for p in parts] == [[0, 2], [1]]
    assert [p.columns.tolist() for p in parts] == [[0, 1, 2], [0, 2]]
    assert [p.n_features for p in parts] == [3, 2]


def test_plan_checks_every_partitions_budget_before_any_forward_pass(monkeypatch) -> None:
    sizes: list[int] = []
    real = Problem.check_budget
    monkeypatch.setattr(Problem, "check_budget", lambda self, n: sizes.append(n) or real(self, n))
    _plan(request(method="regression", n_samples=20))
    assert sizes == [3, 2]
    sizes.clear()
    _plan(request(feature_mask=None))  # one partition: the decoder checks its own budget
    assert sizes == []
    with pytest.raises(BudgetTooSmallError, match=r"2\^3"):
        _plan(request(n_samples=6))  # 8 masks for the first partition, 4 for the second


# ---------------------------------------------------------------------- 3. evaluate
def test_masked_forward_of_a_partition_uses_its_examples_and_groups() -> None:
    req = request()
    small = _plan(req)[1]  # example 1, groups 0 and 2
    fwd = _masked_forward(Model(), req, small)
    masks = torch.tensor([[True, True], [True, False], [False, True], [False, False]])
    values = fwd(masks)  # [4, 1]: target 1 of example 1
    x = X[1]
    expected = []
    for keep0, keep2 in masks.tolist():
        row = torch.where(torch.tensor([keep0, keep0, keep2, keep2]), x, torch.zeros(4, dtype=D))
        expected.append(Model()(row.unsqueeze(0))[0, 1])
    assert values.shape == (4, 1)
    assert torch.equal(values[:, 0], torch.stack(expected))


def test_shared_columns_probe_first_once_and_serve_each_example() -> None:
    calls: list[list[list[bool]]] = []

    def f(masks: torch.Tensor) -> torch.Tensor:
        calls.append(masks.tolist())
        x = masks.double()
        return torch.stack([x.sum(1), 10 * x[:, 0]], dim=1)  # two "examples"

    columns = _SharedColumns(Evaluator(f, 2), 2)
    masks = torch.tensor([[True, False]])
    assert columns.column(1, masks).tolist() == [10.0]
    assert columns.column(0, masks).tolist() == [1.0]  # no new evaluation
    assert [sorted(c) for c in calls] == [[[False, False], [True, True]], [[True, False]]]
    assert columns.ends().tolist() == [[2.0, 10.0], [0.0, 0.0]]
    assert len(calls) == 2  # the probes were evaluated once


# ---------------------------------------------------------------------- 4. decode
def test_explain_part_decodes_each_example_from_the_same_state() -> None:
    req = request(method="regression", n_samples=6)
    part = _plan(req)[0]
    model = Model()
    fwd = _masked_forward(model, req, part)
    state = req.problem.generator.get_state()
    with Run() as run:
        outcome = _explain_part(model, req, part, fwd, run, state)
    assert len(outcome.spectra) == len(outcome.decoder_info) == 2
    assert outcome.ends.shape == (2, 2)  # all kept / all removed, 2 examples
    assert 0 < outcome.n_evaluations <= 6
    for b in range(2):  # the same as decoding that example's column alone
        alone = Evaluator(lambda m, b=b: fwd(m)[:, b], 3, n_samples=6)
        spectrum, _ = req.problem.decode(alone, 3, generator=req.problem.replay(state))
        assert torch.equal(outcome.spectra[b].coefficients, spectrum.prune(atol=0.0).coefficients)
    after = req.problem.replay(state)
    req.problem.decode(Evaluator(lambda m: fwd(m)[:, 0], 3, n_samples=6), 3, generator=after)
    assert torch.equal(outcome.state, after.get_state())
    assert torch.equal(req.problem.generator.get_state(), state)  # attribute sets it afterwards


# ---------------------------------------------------------------------- 5. assemble
def test_assemble_merges_the_partitions_into_one_batch_result() -> None:
    req = request()
    parts = _plan(req)
    model = Model()
    forwards = [_masked_forward(model, req, p) for p in parts]
    state = req.problem.generator.get_state()
    with Run() as run:
        outcomes = [_explain_part(model, req, p, f, run, state) for p, f in zip(parts, forwards)]
    result = _assemble(req, outcomes, forwards)
    reference = SpectralInteraction(Model()).attribute(
        X, target=1, feature_mask=MASK, method="exhaustive", index="Moebius",
        perturbations_per_eval=3,
    )  # fmt: skip
    assert torch.equal(result.spectrum.indices, reference.spectrum.indices)
    assert torch.equal(result.spectrum.coefficients, reference.spectrum.coefficients)
    assert result.info["n_forward_calls"] == model.calls == sum(f.n_calls for f in forwards)
    assert result.n_evaluations == 8 + 4
    assert result.info["decoder_info"] == reference.info["decoder_info"]
    full = Model()(X)[:, 1]
    assert torch.equal(result.inputs_value, full)
    assert float(result.convergence_delta.abs().max()) < 1e-12  # exhaustive: exact
    # example 1 has no group 1: its row of the merged spectrum has no term with feature 1
    one = result.select(1).to_dict()
    assert one and all(1 not in key for key in one)
