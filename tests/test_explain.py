import numpy as np
import pytest
import torch

from torchspex import BudgetTooSmallError, explain


def test_numpy_value_function() -> None:
    w = np.array([1.0, -2.0, 0.5])
    r = explain(lambda x: x.astype(float) @ w, 3, method="exhaustive", mask_format="numpy",
                index="SV")
    assert r.first_order().tolist() == pytest.approx(w.tolist())


def test_batch_size_limits_calls() -> None:
    calls = []

    def f(m: torch.Tensor) -> torch.Tensor:
        calls.append(m.shape[0])
        return m.sum(1).double()

    explain(f, 5, method="exhaustive", batch_size=7)
    assert max(calls) == 7 and sum(calls) == 32


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"index": "shapley"}, ValueError, r"`index` must be one of"),
        ({"max_order": 0}, ValueError, r"`max_order` must be between 1 and n_features=4"),
        ({"max_order": 5}, ValueError, r"`max_order` must be between 1 and n_features=4"),
        ({"max_order": 1.5}, TypeError, r"`max_order` must be an int"),
        ({"method": "lasso"}, ValueError, r"`method` must be one of"),
        ({"n_samples": 0}, ValueError, r"`n_samples` must be >= 1"),
        ({"n_samples": 8, "method": "exhaustive"}, BudgetTooSmallError, r"n_samples >= 2\^4"),
        ({"generator": "seed"}, TypeError, r"`generator` must be"),
        ({"mask_format": "pandas"}, ValueError, r"`mask_format` must be one of"),
    ],
)
def test_bad_arguments(kwargs: dict, error: type, match: str) -> None:
    calls = []
    with pytest.raises(error, match=match):
        explain(lambda m: calls.append(1) or m.sum(1), 4, **{"method": "exhaustive", **kwargs})
    assert not calls, "the value function must not be called before validation"


@pytest.mark.parametrize(
    ("n", "kwargs", "match"),
    [
        (17, {"index": "ELC"}, r"computed for n_features <= 16, got 17"),
        (40, {"index": "SGV"}, r"1099511627775 values"),
        (40, {"index": "JointSV", "max_order": 8}, r"lower `max_order`"),
    ],
)
def test_an_index_the_result_cannot_list_is_refused_before_any_call(n, kwargs, match) -> None:
    # these used to spend the whole budget and then fail in every view of the result (repr too)
    calls = []
    with pytest.raises(ValueError, match=match):
        explain(lambda m: calls.append(1) or m.sum(1).double(), n, n_samples=300, **kwargs)
    assert not calls
    assert explain(lambda m: m.sum(1).double(), 40, n_samples=300, index="SGV",
                   max_order=2).values.n_terms == 40 + 780  # fmt: skip


def test_bad_feature_counts() -> None:
    with pytest.raises(ValueError, match="`n_features` must be >= 1"):
        explain(lambda m: m.sum(1), 0, method="exhaustive")
    with pytest.raises(TypeError, match="`n_features` must be an int"):
        explain(lambda m: m.sum(1), 3.0, method="exhaustive")
    with pytest.raises(ValueError, match=r"n_features <= 20.*method='spex'"):
        explain(lambda m: m.sum(1), 21, method="exhaustive")


@pytest.mark.parametrize(
    ("f", "error", "match"),
    [
        (lambda m: m.sum(1)[:-1], ValueError, r"returned shape \(15,\) for 16 masks"),
        (lambda m: torch.full((m.shape[0],), float("nan")), ValueError, r"NaN or inf for 16"),
        (lambda m: np.where(m[:, 0], np.inf, 0.0), ValueError, r"NaN or inf for 8 of 16"),
        (lambda m: "x", TypeError, r"must return a torch.Tensor or numpy.ndarray"),
        (lambda m: np.array(["a"] * m.shape[0]), TypeError, r"real numbers"),
        (lambda m: torch.ones(m.shape[0], dtype=torch.complex64), TypeError, r"real numbers"),
    ],
)
def test_bad_value_functions(f, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        explain(f, 4, method="exhaustive")


def test_value_function_not_callable() -> None:
    with pytest.raises(TypeError, match="`value_function` must be callable"):
        explain(3, 4, method="exhaustive")


def test_show_progress_counts_masks_and_ends_at_exactly_100(capsys, monkeypatch) -> None:
    from torchspex.decoders.base import Progress

    f = lambda m: m.double().sum(1)  # noqa: E731
    explain(f, 5, method="exhaustive", batch_size=10, show_progress=True)
    err = capsys.readouterr().err
    assert "explain" in err and "100%" in err and "32/32" in err
    ticks: list[int] = []
    update = Progress.update
    monkeypatch.setattr(Progress, "update", lambda self, n: (ticks.append(n), update(self, n)))
    explain(f, 5, method="exhaustive", batch_size=10, show_progress=True)
    assert [t for t in ticks if t] == [10, 10, 10, 2]  # one tick per value-function call
    monkeypatch.undo()
    result = explain(f, 40, method="spex", n_samples=1000, show_progress="my run")
    final = capsys.readouterr().err.replace("\r", "\n").strip().splitlines()[-1]
    n = result.n_evaluations
    assert final.startswith("my run") and "100%" in final and f"{n}/{n}" in final


def test_quiet_by_default(capsys) -> None:
    explain(lambda m: m.double().sum(1), 3, method="exhaustive")
    assert capsys.readouterr().err == ""


def test_effort_beside_another_methods_options_is_refused() -> None:
    # auto sent energy= to ProxySPEX and dropped effort= without a word
    calls = []
    with pytest.raises(TypeError, match="`effort` is a setting of method='auto'"):
        explain(lambda m: calls.append(1) or m.sum(1).double(), 12, n_samples=300,
                effort="high", energy=0.9)  # fmt: skip
    assert not calls
