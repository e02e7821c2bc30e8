"""SPEX: torchspex vs spectralexplain vs shapiq on the same planted games and sample counts.

Games (exactly sparse, noisy, dense tail) are planted Fourier spectra from ``tests/helpers.py``;
all methods query the same value function with the same SPEX design size
``N = 3 * P(n, t) * 2^b`` (t = 5). Reported per run: held-out R^2 against the noiseless function
on 10,000 uniform masks, planted main terms recovered, decode time (everything after the
queries: transforms, peeling, refit; for the peers their decoder call, BCH/JIT warm-up
excluded), and peak resident memory above the process's baseline. Each run is a separate
process (clean memory peaks, and a time limit for the peers).

    python benchmarks/spex_vs_reference.py            # full run (an hour or more on 2 cores)
    python benchmarks/spex_vs_reference.py --quick    # smoke test: one small game
    python benchmarks/spex_vs_reference.py --games sparse:1000   # one game of the full run

Writes ``benchmarks/results/spex_vs_reference.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

T = 5  # BCH degree parameter (both references default to 5)

FULL_GAMES = [
    {"name": "sparse", "n": 100, "n_terms": 50, "order": 5, "b": 6},
    {"name": "noisy", "n": 100, "n_terms": 50, "order": 5, "b": 6, "noise_sd": 1.5},
    {"name": "tail", "n": 100, "n_terms": 50, "order": 5, "b": 6,
     "tail": [3000, 8, 0.15]},
    {"name": "sparse", "n": 1000, "n_terms": 100, "order": 4, "b": 7},
    {"name": "noisy", "n": 1000, "n_terms": 100, "order": 4, "b": 7, "noise_sd": 1.0},
    {"name": "tail", "n": 1000, "n_terms": 100, "order": 4, "b": 7,
     "tail": [5000, 8, 0.15]},
]
QUICK_GAMES = [
    {"name": "sparse", "n": 40, "n_terms": 10, "order": 3, "b": 4},
]
METHODS = ("torchspex", "spectralexplain", "shapiq")


# ---------------------------------------------------------------------------------- child side
def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make_game(cfg: dict):
    import torch

    from tests.helpers import PlantedGame, combine, dense_tail, planted_spectrum

    g = torch.Generator().manual_seed(cfg.get("seed", 0))
    main = planted_spectrum(cfg["n"], cfg["n_terms"], cfg["order"], g)
    full = main
    if cfg.get("tail"):
        n_tail, order, share = cfg["tail"]
        energy = share * float((main.coefficients[1:] ** 2).sum())
        full = combine(main, dense_tail(cfg["n"], n_tail, order, energy, g, min_order=2))
    return main, full, PlantedGame(full, noise_sd=cfg.get("noise_sd", 0.0), seed=7)


def _score(cfg: dict, main, full, learned) -> dict:
    import torch

    from tests.helpers import held_out_r2

    r2 = held_out_r2(full, learned, 10_000, torch.Generator().manual_seed(12345))
    found = {s for s, c in zip(learned.sets(), learned.coefficients.tolist()) if abs(c) > 1e-9}
    main_sets = {s for s in main.sets() if s}
    return {"r2": r2, "found": len(found & main_sets), "n_main": len(main_sets),
            "n_terms": len(found)}


def _spectrum_from_dict(d: dict, n: int):
    """A Fourier spectrum from the reference's dict keyed by length-n 0/1 tuples."""
    from torchspex.fourier import SparseSpectrum

    if not d:
        return SparseSpectrum.zeros(n)
    sets = [tuple(i for i, v in enumerate(k) if v) for k in d]
    return SparseSpectrum.from_sets(sets, [float(np.real(v)) for v in d.values()], n)


def run_child(method: str, cfg: dict) -> dict:
    import torch

    from torchspex.sampling import spex_sample_count

    n, b = cfg["n"], cfg["b"]
    main, full, game = make_game(cfg)
    budget = spex_sample_count(n, b, T)
    out: dict = {"method": method, "n_samples": budget}
    eval_time = [0.0]

    def value_np(x):
        t0 = time.perf_counter()
        y = game(torch.from_numpy(np.asarray(x)).bool()).numpy()
        eval_time[0] += time.perf_counter() - t0
        return y

    if method == "torchspex":
        from torchspex.decoders import Evaluator
        from torchspex.decoders.spex import decode_spex

        ev = Evaluator(game, n, n_samples=budget)
        base = _rss_mb()
        spec, info = decode_spex(ev, n, n_samples=budget, degree_parameter=T,
                                 generator=torch.Generator().manual_seed(0))
        out.update(decode_s=info["decode_seconds"], peel_s=info["peel_seconds"],
                   refit_s=info["refit_seconds"], b=info["b"],
                   n_evaluations=ev.n_evaluations, noise_sd_est=info["noise_sd"])
        out["peak_mb"] = max(0.0, _peak_mb() - base)
        learned = spec
    elif method == "spectralexplain":
        from sparse_transform.qsft.codes.BCH import BCH
        from spectralexplain.support_recovery import sampling_strategy, support_recovery

        from torchspex.sampling.bch import bch_code

        t0 = time.perf_counter()
        code = BCH(n, T)  # galois JIT warm-up, excluded from the decode time
        code.parity_decode([0] * code.get_parity_length())
        out["setup_s"] = time.perf_counter() - t0
        base = _rss_mb()
        signal, _ = sampling_strategy(value_np, b, b, n, None, t=T)
        reference_delays = np.asarray(signal.Ds[0][0], dtype=bool)  # group 0, repeat 0
        out["delays_match_reference"] = bool(
            np.array_equal(reference_delays[1:], bch_code(n, T).parity_matrix)
        )
        t0 = time.perf_counter()
        fourier = support_recovery("soft", signal, b, t=T)
        out["decode_s"] = time.perf_counter() - t0
        out["peak_mb"] = max(0.0, _peak_mb() - base)
        learned = _spectrum_from_dict(fourier, n)
    elif method == "shapiq":
        from shapiq.approximator.sparse import SPEX
        from sparse_transform.qsft.codes.BCH import BCH

        t0 = time.perf_counter()
        code = BCH(n, T)
        code.parity_decode([0] * code.get_parity_length())
        approx = SPEX(n=n, index="FBII", max_order=2, decoder_type="soft", degree_parameter=T,
                      random_state=0)
        out["setup_s"] = time.perf_counter() - t0
        import shapiq.approximator.sparse.base as shapiq_sparse

        captured: dict = {}
        transform = shapiq_sparse.sparse_fourier_transform

        def capture(*a, **k):  # record the Fourier dict shapiq converts to FBII
            result = transform(*a, **k)
            captured.update(result)
            return result

        shapiq_sparse.sparse_fourier_transform = capture
        base = _rss_mb()
        t0 = time.perf_counter()
        approx.approximate(budget, value_np)
        out["decode_s"] = time.perf_counter() - t0 - eval_time[0]
        out["peak_mb"] = max(0.0, _peak_mb() - base)
        learned = _spectrum_from_dict(captured, n)
    else:
        raise ValueError(method)
    out.update(_score(cfg, main, full, learned))
    return out


# --------------------------------------------------------------------------------- parent side
def run_job(method: str, cfg: dict, timeout: float) -> dict:
    cmd = [sys.executable, __file__, "--child", method, json.dumps(cfg)]
    env = dict(os.environ, PYTHONWARNINGS="ignore", TQDM_DISABLE="1")
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env,
                              cwd=ROOT)
    except subprocess.TimeoutExpired:
        return {"method": method, "status": f"timeout > {timeout:.0f} s"}
    wall = time.perf_counter() - t0
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        return {"method": method, "status": "error", "stderr": proc.stderr[-2000:]}
    res = json.loads(lines[-1])
    res["status"] = "ok"
    res["wall_s"] = wall
    return res


def fmt(v, spec: str) -> str:
    return "—" if v is None else format(v, spec)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="one small game (smoke test)")
    parser.add_argument("--timeout", type=float, default=None, help="seconds per peer run")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" /
                                             "spex_vs_reference.json"))
    parser.add_argument("--games", default=None,
                        help="comma-separated name:n pairs to run, e.g. sparse:1000 (default all)")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_child(args.child[0], json.loads(args.child[1]))))
        return
    games = QUICK_GAMES if args.quick else FULL_GAMES
    if args.games:
        wanted = set(args.games.split(","))
        games = [cfg for cfg in games if f"{cfg['name']}:{cfg['n']}" in wanted]
        if not games:
            parser.error(f"--games {args.games!r} matches none of the games")
    timeout = args.timeout or (300.0 if args.quick else 600.0)
    methods = args.methods.split(",")
    rows = []
    for cfg in games:
        for method in methods:
            limit = timeout if method != "torchspex" else max(timeout, 600.0)
            res = run_job(method, cfg, limit)
            res["game"] = cfg
            rows.append(res)
            print(f"# {cfg['name']:6s} n={cfg['n']:4d} {method:15s} {res.get('status')} "
                  f"r2={res.get('r2')} decode={res.get('decode_s')}", file=sys.stderr, flush=True)
    # table
    print("| game | n | samples | method | R² held-out | main terms found | decode s | "
          "torchspex speed-up | peak MB |")
    print("|---|---|---|---|---|---|---|---|---|")
    for i, res in enumerate(rows):
        cfg = res["game"]
        ours = next(r for r in rows[i - i % len(methods): i - i % len(methods) + len(methods)]
                    if r["method"] == "torchspex")
        speed = None
        if res.get("decode_s") and ours.get("decode_s") and res["method"] != "torchspex":
            speed = res["decode_s"] / ours["decode_s"]
        status = res.get("status")
        label = cfg["name"] + (f" (sd={cfg['noise_sd']})" if cfg.get("noise_sd") else "")
        if status != "ok":
            print(f"| {label} | {cfg['n']} | — | {res['method']} | {status} | — | — | — | — |")
            continue
        found = f"{res['found']}/{res['n_main']}"
        print(f"| {label} | {cfg['n']} | {res['n_samples']} | {res['method']} | "
              f"{fmt(res['r2'], '.4f')} | {found} | {fmt(res['decode_s'], '.2f')} | "
              f"{fmt(speed, '.0f') + 'x' if speed else '—'} | {fmt(res.get('peak_mb'), '.0f')} |")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"quick": args.quick, "t": T, "runs": rows}, indent=1))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
