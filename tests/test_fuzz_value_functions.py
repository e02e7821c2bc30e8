"""Fuzzed value functions: a corrupted output never turns into a result that hides it."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import torchspex

FAULTS = ["nan", "inf", "-inf", "short", "long", "strings", "complex", "raise", "none", "2d-ragged"]


def corrupt(values: torch.Tensor, fault: str, where: int) -> object:
    m = values.shape[0]
    where = where % m
    if fault in ("nan", "inf", "-inf"):
        out = values.clone()
        out[where] = float(fault)
        return out
    if fault == "short":
        return values[: m - 1 - where % max(m - 1, 1)] if m > 1 else values[:0]
    if fault == "long":
        return torch.cat([values, values[:1]])
    if fault == "strings":
        return np.array(["x"] * m)
    if fault == "complex":
        return values.to(torch.complex64)
    if fault == "raise":
        raise RuntimeError("model crashed")
    if fault == "none":
        return None
    return [values[:1], values]  # ragged list


@settings(max_examples=25, deadline=None)
@given(
    method=st.sampled_from(["exhaustive", "spex", "proxyspex"]),
    fault=st.sampled_from(FAULTS),
    bad_call=st.integers(0, 3),
    where=st.integers(0, 10_000),
    batch_size=st.sampled_from([None, 7, 64]),
)
def test_corrupted_outputs_always_raise(method, fault, bad_call, where, batch_size) -> None:
    n = 6 if method == "exhaustive" else 12
    calls = []

    def value_function(masks: torch.Tensor) -> object:
        calls.append(masks.shape[0])
        values = masks.double() @ torch.linspace(-1, 1, n, dtype=torch.float64)
        if len(calls) - 1 == bad_call or (len(calls) == 1 and fault in ("strings", "none")):
            return corrupt(values, fault, where)
        return values

    kwargs = {"n_samples": 600} if method != "exhaustive" else {}
    try:
        result = torchspex.explain(value_function, n, method=method, batch_size=batch_size,
                                   generator=0, **kwargs)
    except (ValueError, TypeError, RuntimeError):
        return
    # no error: then the corrupted call never happened, and the result must be finite
    assert len(calls) <= bad_call, f"{fault} on call {bad_call} was hidden"
    assert torch.isfinite(result.spectrum.coefficients).all()


@pytest.mark.parametrize("fault", ["nan", "inf"])
def test_nonfinite_error_names_count_and_example_mask(fault: str) -> None:
    def value_function(masks: torch.Tensor) -> torch.Tensor:
        values = masks.double().sum(1)
        return torch.where(masks[:, 2] & masks[:, 3], float(fault), values)

    expected = r"NaN or inf for 16 of 64 masks \(e\.g\. the mask keeping features \[2, 3\]\)"
    with pytest.raises(ValueError, match=expected):
        torchspex.explain(value_function, 6, method="exhaustive")
