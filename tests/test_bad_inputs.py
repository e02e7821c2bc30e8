import pytest

from tests.bad_inputs import CASES, Case, outcome


def test_catalogue_is_large_enough() -> None:
    assert len(CASES) >= 25


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.entry}: {c.mistake}")
def test_bad_input_raises_before_any_model_call(case: Case) -> None:
    err, calls = outcome(case)
    assert isinstance(err, case.error), f"expected {case.error.__name__}, got {err!r}"
    assert calls == case.probe, "the model was called before the input was rejected"
    assert len(str(err)) > 25, "the message must say what is wrong and how to fix it"
