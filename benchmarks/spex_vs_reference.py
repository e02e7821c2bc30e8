"""SPEX: torchspex vs spectralexplain vs shapiq on the same planted games and sample counts.

Games (exactly sparse, noisy, dense tail) are planted Fourier spectra from ``tests/helpers.py``;
all methods query the same value function with the same SPEX design size
``N = 3 * P(n, t) * 2^b`` (t = 5). Reported per run: held-out R^2 against the noiseless function
on 10,000 uniform masks, planted main terms recovered, decode time (everything after the
queries: transforms, peeling, refit; for the peers their decoder call, BCH/JIT warm-up
excluded), and peak resident memory above the process's baseline. Each run is a separate
process (clean memory peaks, and a time limit for the peers) with one thread per method
(``--threads``); torchspex runs ``--repeat`` times per game and reports the median decode time.

    python benchmarks/spex_vs_reference.py            # full run (an hour or more on 2 cores)
    python benchmarks/spex_vs_reference.py --quick    # smoke test: one small game
    python benchmarks/spex_vs_reference.py --games sparse:1000   # one game of the full run

Writes ``benchmarks/results/spex_vs_reference.json``.

``--calls`` measures instead the *calls to exact recovery*: per planted game (50 terms of order
<= 3 at n = 64, 256, 1000; 100 terms of order <= 4 at n = 1000) and seed, the smallest budget at
which held-out R^2 >= 0.999 and the value-function calls made there. torchspex: bisection over
the budget (its design fills any budget); the peers: their designs only change with
``b = floor(log2(budget / (3 P)))``, so their budgets ``3 P 2^b`` are tried from the game's
``peer_b`` down while exact (up while not), each probe in its own process with a time limit
(``--probe-limit``; a timeout counts as not exact). Both peers run with ``t = max_order``,
spectralexplain's rule (shapiq's ``degree_parameter`` is set to it).

    python benchmarks/spex_vs_reference.py --calls   # -> spex_calls_to_exact.json
    python benchmarks/spex_vs_reference.py --calls --methods spectralexplain --out a.json
    python benchmarks/spex_vs_reference.py --calls --combine a.json,b.json   # join runs
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

R2_EXACT = 0.999
# ``peer_b``: where the peers' walk over b starts (the reference's answer in the issue's run,
# n = 1000/100/4 from one bin per 0.5 terms); the walk goes down while exact, else up.
CALLS_GAMES = [
    {"name": "sparse", "n": 1000, "n_terms": 50, "order": 3, "cap": 12000, "peer_b": 4},
    {"name": "sparse", "n": 64, "n_terms": 50, "order": 3, "cap": 8000, "peer_b": 5},
    {"name": "sparse", "n": 256, "n_terms": 50, "order": 3, "cap": 12000, "peer_b": 5},
    {"name": "sparse", "n": 1000, "n_terms": 100, "order": 4, "cap": 24000, "peer_b": 6},
    # robustness: order-3 terms, but the user asks for max_order = 2
    {"name": "sparse", "n": 256, "n_terms": 50, "order": 3, "max_order": 2, "cap": 12000,
     "methods": ["torchspex", "torchspex_t=max_order"]},
]
#: torchspex variants of the calls table: extra ``decode_spex`` options per name.
CALLS_METHODS = ("torchspex", "torchspex_t=5", "spectralexplain", "shapiq",
                 "torchspex_t=max_order")


#: Thread pools of every method's process: one thread each (see ``child_env``).
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS")


def child_env() -> dict:
    """The environment of every run: warnings and progress bars off, one thread per method.

    The peers decode in single-threaded Python/NumPy; torchspex's transforms and refit would use
    the OpenMP/MKL pools, which on a shared 2-core machine spend more time waiting for a core
    than computing (a 51 x 51 Cholesky factorisation took 13 ms with two threads under load,
    0.02 ms with one). One thread each makes the decode times compute against compute.
    ``--threads 0`` keeps the libraries' defaults.
    """
    env = dict(os.environ, PYTHONWARNINGS="ignore", TQDM_DISABLE="1")
    if _THREADS[0]:
        env.update({var: str(_THREADS[0]) for var in THREAD_VARS})
    return env


_THREADS = [1]


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


# ------------------------------------------------------------------- calls to exact recovery
def _probe_torchspex(method: str, cfg: dict, seed: int, budget: int) -> dict:
    import torch

    from torchspex.decoders import Evaluator
    from torchspex.decoders.spex import decode_spex

    main, full, game = make_game(dict(cfg, seed=seed))
    n, order = cfg["n"], cfg.get("max_order", cfg["order"])
    options = {}
    if method == "torchspex_t=5":
        options["degree_parameter"] = 5
    elif method == "torchspex_t=max_order":
        options["degree_parameter"] = max(2, order)
    ev = Evaluator(game, n, n_samples=budget)
    spec, info = decode_spex(ev, n, n_samples=budget, max_order=order,
                             generator=torch.Generator().manual_seed(seed), **options)
    out = {"budget": budget, "calls": game.n_evaluations, "t": info["degree_parameter"],
           "group_b": list(info["group_b"]), "decode_s": info["decode_seconds"]}
    out.update(_score(cfg, main, full, spec))
    return out


def _probe_peer(method: str, cfg: dict, seed: int, b: int) -> dict:
    import torch

    from torchspex.sampling import spex_sample_count

    main, full, game = make_game(dict(cfg, seed=seed))
    n, t = cfg["n"], max(2, cfg.get("max_order", cfg["order"]))
    calls = [0]

    def value_np(x):
        calls[0] += len(x)
        return game(torch.from_numpy(np.asarray(x)).bool()).numpy()

    np.random.seed(seed)  # noqa: NPY002 -- both peers draw their design from NumPy's global RNG
    budget = spex_sample_count(n, b, t)
    t0 = time.perf_counter()
    if method == "spectralexplain":
        from spectralexplain.support_recovery import sampling_strategy, support_recovery

        signal, _ = sampling_strategy(value_np, b, b, n, None, t=t)
        learned = _spectrum_from_dict(support_recovery("soft", signal, b, t=t), n)
    else:
        import shapiq.approximator.sparse.base as shapiq_sparse
        from shapiq.approximator.sparse import SPEX

        approx = SPEX(n=n, index="FBII", max_order=min(t, 2), decoder_type="soft",
                      degree_parameter=t, random_state=seed)
        captured: dict = {}
        transform = shapiq_sparse.sparse_fourier_transform

        def capture(*a, **k):
            result = transform(*a, **k)
            captured.update(result)
            return result

        shapiq_sparse.sparse_fourier_transform = capture
        approx.approximate(budget, value_np)
        shapiq_sparse.sparse_fourier_transform = transform
        learned = _spectrum_from_dict(captured, n)
    out = {"budget": budget, "b": b, "t": t, "calls": calls[0],
           "seconds": time.perf_counter() - t0}
    out.update(_score(cfg, main, full, learned))
    return out


def _bisect(method: str, cfg: dict, seed: int, lo: int, hi: int, emit) -> dict | None:
    """The probe at the smallest budget in ``[lo, hi]`` found exact by bisection (or None)."""
    cache: dict[int, dict] = {}

    def ok(budget: int) -> bool:
        if budget not in cache:
            cache[budget] = _probe_torchspex(method, cfg, seed, budget)
            emit({"probe": cache[budget], "seed": seed})
        return cache[budget]["r2"] >= R2_EXACT

    if ok(lo):
        return cache[lo]
    if not ok(hi):
        return None
    while hi - lo > max(16, 0.02 * hi):  # invariant: not ok(lo), ok(hi)
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if ok(mid) else (mid, hi)
    return cache[hi]


def _peer_probe_process(method: str, cfg: dict, seed: int, b: int, limit: float) -> dict:
    """One peer probe in its own process (BCH JIT warm-up included), stopped after ``limit``
    seconds of decoding plus ``_PEER_SETUP_S`` of set-up; a stopped probe counts as not exact."""
    from torchspex.sampling import spex_sample_count

    t = max(2, cfg.get("max_order", cfg["order"]))
    cmd = [sys.executable, __file__, "--peer-probe", method, json.dumps(dict(cfg, seed=seed, b=b))]
    env = child_env()
    budget = spex_sample_count(cfg["n"], b, t)
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=limit + _PEER_SETUP_S,
                              env=env, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return {"budget": budget, "b": b, "t": t, "calls": budget, "timeout": limit}
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        return {"budget": budget, "b": b, "t": t, "calls": budget, "error": proc.stderr[-1500:]}
    return json.loads(lines[-1])


def _walk_b(method: str, cfg: dict, seed: int, limit: float, log) -> tuple[dict | None, list]:
    """A peer's smallest exact ``b``: start at the game's ``peer_b`` (default: about one bin per
    term, ``3 * 2^b >= terms``), walk ``b`` down to the first failure (or timeout); if the start
    fails, walk up to the cap."""
    from torchspex.sampling import spex_sample_count

    t = max(2, cfg.get("max_order", cfg["order"]))
    results: dict[int, dict] = {}

    def exact(b: int) -> bool:
        if b not in results:
            results[b] = _peer_probe_process(method, cfg, seed, b, limit)
            log(results[b])
        return results[b].get("r2", -1.0) >= R2_EXACT

    b = cfg.get("peer_b") or max(3, int(np.ceil(np.log2(cfg["n_terms"] / 3))))
    best = None
    if exact(b):
        while b > 3 and exact(b - 1):
            b -= 1
        best = results[b]
    else:
        while spex_sample_count(cfg["n"], b + 1, t) <= cfg["cap"]:
            b += 1
            if exact(b):
                best = results[b]
                break
    return best, [results[k] for k in sorted(results)]


#: Seconds a peer probe process may spend on imports and the galois/numba JIT warm-up (30-60 s
#: on a quiet machine, up to 2-3 min on a loaded one).
_PEER_SETUP_S = 240.0


def run_calls_child(method: str, cfg: dict) -> None:
    """Prints one JSON line per probe and one per seed (``"result"``), as they finish."""
    from torchspex.sampling import min_spex_samples

    n, cap = cfg["n"], cfg["cap"]

    def emit(row: dict) -> None:
        print(json.dumps(row), flush=True)

    for seed in cfg["seeds"]:
        low_t = {"torchspex_t=5": 5, "torchspex_t=max_order": max(2, cfg.get(
            "max_order", cfg["order"]))}.get(method, 2)
        best = _bisect(method, cfg, seed, min_spex_samples(n, low_t), cap, emit)
        emit({"result": True, "seed": seed, "exact": best is not None,
              "budget": None if best is None else best["budget"],
              "calls": None if best is None else best["calls"], "best": best})


def _log_probe(probe: dict) -> None:
    keys = ("budget", "calls", "r2", "seconds", "timeout", "error")
    print(f"#   probe {({k: probe[k] for k in keys if k in probe})}", file=sys.stderr, flush=True)


def run_calls(methods: list[str], games: list[dict], seeds: list[int], timeout: float,
              probe_limit: float = 900.0) -> list:
    rows = []
    env = child_env()
    for cfg in games:
        for method in methods:
            if method not in cfg.get("methods", CALLS_METHODS):
                continue
            if not method.startswith("torchspex"):
                for seed in seeds:
                    t0 = time.perf_counter()
                    best, probes = _walk_b(method, cfg, seed, probe_limit, _log_probe)
                    rows.append({"game": cfg, "method": method, "seed": seed, "probes": probes,
                                 "status": "ok", "exact": best is not None,
                                 "budget": best and best["budget"],
                                 "calls": best and best["calls"], "best": best,
                                 "wall_s": time.perf_counter() - t0})
                    print(f"# {cfg['n']:4d}/{cfg['n_terms']}/{cfg['order']} {method:22s} seed "
                          f"{seed} calls={best and best['calls']}", file=sys.stderr, flush=True)
                continue
            job = dict(cfg, seeds=seeds)
            cmd = [sys.executable, __file__, "--calls-child", method, json.dumps(job)]
            t0 = time.perf_counter()
            status, out, err = "ok", "", ""
            try:
                proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                                      env=env, cwd=ROOT)
                out, err = proc.stdout, proc.stderr
                if proc.returncode != 0:
                    status = "error"
            except subprocess.TimeoutExpired as exc:
                status = f"timeout > {timeout:.0f} s"
                out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
            lines = [json.loads(ln) for ln in out.splitlines() if ln.startswith("{")]
            results = {r["seed"]: r for r in lines if r.get("result")}
            for seed in seeds:
                probes = [r["probe"] for r in lines if "probe" in r and r["seed"] == seed]
                res = results.get(seed)
                row = {"game": cfg, "method": method, "seed": seed, "probes": probes,
                       "status": "ok" if res else status, "wall_s": time.perf_counter() - t0}
                if res:
                    row.update(exact=res["exact"], budget=res["budget"], calls=res["calls"],
                               best=res["best"])
                if status == "error" and not res:
                    row["stderr"] = err[-2000:]
                rows.append(row)
                print(f"# {cfg['n']:4d}/{cfg['n_terms']}/{cfg['order']} {method:22s} seed {seed}"
                      f" {row['status']} calls={row.get('calls')} probes={len(probes)}",
                      file=sys.stderr, flush=True)
    return rows


def calls_label(res: dict) -> str:
    if res.get("status") != "ok":
        tried = max((p["calls"] for p in res["probes"]), default=None)
        return f"{res['status']}" + (f" (not exact at {tried:,})" if tried else "")
    if not res.get("exact"):
        slow = [p for p in res["probes"] if p.get("timeout")]
        if slow:
            return ("timeout (" + ", ".join(f"{p['calls']:,}" for p in slow)
                    + f": > {slow[0]['timeout']:.0f} s each)")
        return f"> {res['game']['cap']:,}"
    below = [p for p in res["probes"] if p["calls"] < res["calls"]]
    slow = [p for p in below if p.get("timeout")]
    if slow:
        return f"{res['calls']:,} ({slow[-1]['calls']:,}: > {slow[-1]['timeout']:.0f} s)"
    if "b" in res["best"] and below:  # a peer: the b below failed
        return f"{res['calls']:,} ({below[-1]['calls']:,}: R^2 {below[-1]['r2']:.2f})"
    return f"{res['calls']:,}"


def print_calls_table(rows: list, methods: list[str]) -> None:
    games = []
    for r in rows:
        if r["game"] not in games:
            games.append(r["game"])
    peers = [m for m in ("spectralexplain", "shapiq") if m in methods]
    heads = methods + [f"torchspex / {p}" for p in peers]
    print(f"| game | {' | '.join(heads)} |")
    print("|---|" + "---|" * len(heads))
    for cfg in games:
        label = f"n = {cfg['n']}, {cfg['n_terms']} terms, order <= {cfg['order']}"
        if cfg.get("max_order"):
            label += f", max_order = {cfg['max_order']}"
        cells = []
        for m in methods:
            mine = [r for r in rows if r["game"] == cfg and r["method"] == m]
            cells.append(" / ".join(calls_label(r) for r in mine) if mine else "—")
        cells += [calls_ratio(rows, cfg, peer) for peer in peers]
        print(f"| {label} | {' | '.join(cells)} |")


def calls_ratio(rows: list, cfg: dict, peer: str, ours: str = "torchspex") -> str:
    """torchspex's calls over the peer's, seed by seed (both exact), e.g. ``0.78 / 0.80``."""
    out = []
    for r in rows:
        if r["game"] != cfg or r["method"] != ours:
            continue
        other = [x for x in rows if x["game"] == cfg and x["method"] == peer
                 and x["seed"] == r["seed"]]
        if other and r.get("exact") and other[0].get("exact"):
            out.append(f"{r['calls'] / other[0]['calls']:.2f}")
    return " / ".join(out) if out else "—"


# --------------------------------------------------------------------------------- parent side
def run_job(method: str, cfg: dict, timeout: float) -> dict:
    cmd = [sys.executable, __file__, "--child", method, json.dumps(cfg)]
    env = child_env()
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


def median_run(runs: list) -> dict:
    """The run of median decode time (torchspex is deterministic: only the times differ), with
    every run's decode time in ``decode_runs``."""
    done = sorted((r for r in runs if r.get("status") == "ok"), key=lambda r: r["decode_s"])
    out = dict(done[(len(done) - 1) // 2])
    out["decode_runs"] = [r["decode_s"] for r in runs if r.get("status") == "ok"]
    return out


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
    parser.add_argument("--calls", action="store_true",
                        help="calls to exact recovery (R^2 >= 0.999) instead of equal budgets")
    parser.add_argument("--seeds", default="0,1", help="seeds of the --calls games")
    parser.add_argument("--probe-limit", type=float, default=900.0,
                        help="seconds per peer probe in --calls (slower: not exact)")
    parser.add_argument("--combine", default=None,
                        help="--calls: comma-separated JSON files to combine (no runs)")
    parser.add_argument("--merge", action="store_true",
                        help="replace only the rerun rows (methods x games) in the existing JSON")
    parser.add_argument("--repeat", type=int, default=3,
                        help="torchspex runs per game (median decode time; a run takes seconds, "
                             "so one load spike on the shared machine would decide it)")
    parser.add_argument("--threads", type=int, default=1,
                        help="threads per method's process (0: the libraries' defaults)")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--calls-child", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--peer-probe", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    _THREADS[0] = args.threads
    if args.child:
        print(json.dumps(run_child(args.child[0], json.loads(args.child[1]))))
        return
    if args.peer_probe:
        method, cfg = args.peer_probe[0], json.loads(args.peer_probe[1])
        from sparse_transform.qsft.codes.BCH import BCH

        code = BCH(cfg["n"], max(2, cfg.get("max_order", cfg["order"])))  # JIT warm-up
        code.parity_decode([0] * code.get_parity_length())
        print(json.dumps(_probe_peer(method, cfg, cfg["seed"], cfg["b"])))
        return
    if args.calls_child:
        run_calls_child(args.calls_child[0], json.loads(args.calls_child[1]))
        return
    if args.calls:
        games = CALLS_GAMES
        if args.games:  # n/n_terms/order triples, e.g. 1000/50/3
            wanted = set(args.games.split(","))
            games = [g for g in games if f"{g['n']}/{g['n_terms']}/{g['order']}" in wanted
                     or f"{g['n']}/{g['n_terms']}/{g['order']}/{g.get('max_order')}" in wanted]
            if not games:
                parser.error(f"--games {args.games!r} matches none of the --calls games")
        methods = (args.methods.split(",") if args.methods != ",".join(METHODS)
                   else list(CALLS_METHODS))
        seeds = [int(s) for s in args.seeds.split(",")]
        out = Path(args.out if args.out != parser.get_default("out") else
                   ROOT / "benchmarks" / "results" / "spex_calls_to_exact.json")
        rows = []
        for other in args.combine.split(",") if args.combine else []:
            rows += json.loads(Path(other).read_text())["runs"]
        if not args.combine:
            rows = run_calls(methods, games, seeds, args.timeout or 900.0, args.probe_limit)
        if args.merge and out.exists():
            keep = [r for r in json.loads(out.read_text())["runs"]
                    if not any(r["method"] == x["method"] and r["game"] == x["game"]
                               for x in rows)]
            rows = keep + rows
        shown = [m for m in CALLS_METHODS if any(r["method"] == m for r in rows)]
        print_calls_table(rows, shown)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"r2_exact": R2_EXACT, "seeds": seeds, "runs": rows}, indent=1))
        print(f"\nwrote {out}")
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
            if method == "torchspex" and args.repeat > 1 and res.get("status") == "ok":
                res = median_run([res] + [run_job(method, cfg, limit)
                                          for _ in range(args.repeat - 1)])
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
    out.write_text(json.dumps({"quick": args.quick, "t": T, "threads": args.threads,
                               "torchspex_repeat": args.repeat, "runs": rows}, indent=1))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
