"""Does the proxy config that leads early win at the end? The measurement behind ``RACE_ROUNDS``.

For each game and seed: the regression's paired design at ``--budget`` calls, the proxy's
held-out fifth, and LightGBM boosters of each deep config (depths 5 and 8, 32 leaves, rate 0.1,
as the regression fits them from ``DEEP_ROWS`` samples) boosted to ``--rounds`` rounds. Prints
each config's best held-out error so far at rounds 100 / 200 / 300 and at the end, which config
leads at each of those rounds, and whether the leader at ``RACE_ROUNDS`` is the final winner.

    python benchmarks/proxy_race.py                      # 3 games x 4 seeds at 4,096 calls
    python benchmarks/proxy_race.py --budget 2048 --seeds 2

Writes ``results/proxy_race.json`` (``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import decode_variants as dv
import numpy as np
import torch

from torchspex.decoders import _candidates as cand
from torchspex.decoders import _proxy
from torchspex.decoders import regression as reg


def _curves(x: np.ndarray, y: np.ndarray, valid: np.ndarray, rounds: int) -> dict[int, np.ndarray]:
    """Each deep config's best held-out mean squared error after every round."""
    import lightgbm as lgb

    base = _proxy._base_params(int((~valid).sum()), 1)
    data = {k: base[k] for k in ("verbosity", "max_bin", "min_data_in_bin",
                                 "feature_pre_filter", "num_threads")}  # fmt: skip
    train = lgb.Dataset(x[~valid], y[~valid], params=data, free_raw_data=False)
    held = lgb.Dataset(x[valid], y[valid], params=data, reference=train, free_raw_data=False)
    out = {}
    for depth in cand.DEEP_DEPTHS:
        params = {**base, "max_depth": depth, "num_leaves": cand.DEEP_LEAVES,
                  "learning_rate": 0.1, "metric": "l2"}  # fmt: skip
        record: dict = {}
        lgb.train(params, train, rounds, valid_sets=[held],
                  callbacks=[lgb.record_evaluation(record)])  # fmt: skip
        out[depth] = np.minimum.accumulate(np.asarray(record["valid_0"]["l2"]))
    return out


def _leader(curves: dict[int, np.ndarray], rounds: int) -> int:
    """The depth with the lowest held-out error after ``rounds`` rounds."""
    return min(curves, key=lambda depth: float(curves[depth][rounds - 1]))


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--games", default="MLP,MiniLM,2x2")
    parser.add_argument("--budget", type=int, default=4096)
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "proxy_race.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    checks = [r for r in (100, 200, 300) if r <= args.rounds]
    rows = []
    for pattern in args.games.split(","):
        game = dv._game(pattern)
        for seed in range(args.seeds):
            gen = torch.Generator().manual_seed(seed)
            masks, _ = reg.design(game.n, args.budget, gen, "shapley",
                                  reg.default_sizes(game.n, args.budget))  # fmt: skip
            y = np.asarray(game(masks.numpy()), dtype=np.float64).reshape(-1)
            valid = _proxy.holdout_rows(masks.shape[0], 0.2, gen)
            curves = _curves(masks.numpy().astype(np.float32), y, valid, args.rounds)

            row = {"game": game.name, "seed": seed, "budget": args.budget,
                   "errors": {d: {r: float(c[r - 1]) for r in [*checks, args.rounds]}
                              for d, c in curves.items()},
                   "leader": {r: _leader(curves, r) for r in [*checks, args.rounds]}}  # fmt: skip
            winner = _leader(curves, args.rounds)
            row["race_leader_wins"] = _leader(curves, _proxy.RACE_ROUNDS) == winner
            rows.append(row)
            ends = " ".join(f"depth {d}: {c[-1]:.3g}" for d, c in curves.items())
            leads = " / ".join(str(row["leader"][r]) for r in checks)
            print(f"{game.name:30s} seed {seed}  final {ends}  winner depth {winner}"
                  f"  leader at {'/'.join(map(str, checks))}: {leads}", flush=True)  # fmt: skip
    wins = sum(r["race_leader_wins"] for r in rows)
    print(f"the leader at {_proxy.RACE_ROUNDS} rounds won in {wins} of {len(rows)} fits")
    args.out.parent.mkdir(exist_ok=True)
    args.out.write_text(json.dumps({"rows": rows, "race_rounds": _proxy.RACE_ROUNDS}, indent=1))
    return rows


if __name__ == "__main__":
    main()
