"""Which masks to query: BCH codes over GF(2), the SPEX query plan, uniform masks."""

from torchspex.sampling.bch import BCHCode, bch_code, bch_parameters
from torchspex.sampling.plan import (
    SPEXPlan,
    default_n_samples,
    degree_for_budget,
    fill_budget,
    min_spex_samples,
    n_delays,
    plan_for_budget,
    spex_sample_count,
)
from torchspex.sampling.uniform import uniform_masks

__all__ = [
    "BCHCode",
    "SPEXPlan",
    "bch_code",
    "bch_parameters",
    "default_n_samples",
    "degree_for_budget",
    "fill_budget",
    "min_spex_samples",
    "n_delays",
    "plan_for_budget",
    "spex_sample_count",
    "uniform_masks",
]
