"""decoders/base.py: the progress bar's planned total matches what the decoders evaluate."""

from __future__ import annotations

import warnings

import pytest
import torch

from torchspex.decoders.base import Evaluator, planned_evaluations
from torchspex.decoders.dispatch import decode


def _game(masks: torch.Tensor) -> torch.Tensor:
    m = masks.double()
    return m[:, 0] * m[:, 1] - 0.5 * m[:, 2] * m[:, 3] * m[:, 4] + m[:, 5]


@pytest.mark.parametrize(
    ("n", "max_order", "options"),
    [(40, 2, {}), (40, None, {}), (30, 3, {"degree_parameter": 4}), (30, 2, {"b": 4})],
)
def test_spex_default_budget_is_planned_as_spent(n, max_order, options):
    # n_samples=None: SPEX spends default_n_samples (not the reference's b = 8 design, which
    # the bar used to plan: 14592 masks planned for 913 evaluated at n = 40, max_order = 2)
    planned = planned_evaluations("spex", n, None, max_order, options)
    evaluator = Evaluator(_game, n)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the default-budget notice
        decode("spex", evaluator, n, max_order=max_order, **options)
    assert planned is not None
    assert evaluator.n_evaluations <= planned <= evaluator.n_evaluations + 40


def test_planned_totals_of_the_other_methods():
    assert planned_evaluations("exhaustive", 6, None) == 64
    assert planned_evaluations("regression", 40, None) == 800  # 20 n
    assert planned_evaluations("auto", 6, None) == 64  # capped at every mask
    assert planned_evaluations("proxyspex", 40, 500) == 500
    assert planned_evaluations("proxyspex", 40, None) is None  # it needs a budget
    assert planned_evaluations("spex", 4, None) == 16  # every mask
    assert planned_evaluations("spex", 40, None, 2, {"b": "x"}) is None  # an estimate only


def test_progress_shows_the_fitting_time_and_keeps_the_decode_total():
    """While the decoder fits, the bar's postfix counts its seconds (refreshed by a thread
    every ``tick``); phases add up, and the finished bar shows the decoder's total."""
    import io
    import time

    from torchspex.decoders.base import Progress

    out = io.StringIO()
    bar = Progress("explain", total=4, file=out, tick=0.01)
    bar.update(2)
    bar.phase("fitting")
    time.sleep(0.05)
    assert "fitting 0 s" in out.getvalue()  # refreshed while nothing else moved
    bar.phase("evaluating")
    first = bar.fit_seconds
    assert first >= 0.05 and bar._ticker is None  # the thread has stopped
    bar.update(2)
    bar.phase("fitting")
    time.sleep(0.02)
    bar.finish()
    assert bar.fit_seconds >= first + 0.02
    final = out.getvalue().replace("\r", "\n").strip().splitlines()[-1]
    assert "4/4" in final and f"decode {bar.fit_seconds:.1f} s" in final
