"""Decode variants side by side: SV error and decode seconds on the exact-table games.

An in-process A/B harness for the regression decoder's settings (issue 28): every variant runs
on the same game, budget and seed in turn (one thread), so decode seconds compare within one
run even on a loaded machine. A variant is ``+``-joined parts:

* ``low`` / ``high``: ``effort`` (``low`` is the default),
* ``oldread``: the trees' node expansion instead of the leaf read-out,
* ``nodeep``: no depth-8 proxy at 2,048 rows and more; ``deep8``: only the depth-8 one there
  (the default); ``dd6`` / ``dd58``: the depths tried there (one digit each),
  ``leaves256``: the deep proxies grow every leaf their depth allows (not ``DEEP_LEAVES``),
* ``pens2``: ridge penalties ``(0, 1e-2)`` on discovered terms instead of five; ``pens3``:
  ``(0, 1e-3, 1e-2)``,
* ``avg1``: the odd part keeps its best setting instead of averaging up to eight;
  ``allpens``: it averages settings of every penalty, not only the best one's
  (``AVERAGE_ONE_PENALTY``),
* ``rescreen`` / ``norescreen``: the odd part with / without its second screen of the triples
  against its residual (``RESCREEN_TRIPLES``),
* ``norace``: every proxy config boosts to its own early stop (no race, ``RACE_ROUNDS``),
* ``fullpens``: cross-validation scores every ridge penalty, not a walk over them
  (``PENALTY_WALK``),
* ``lr0.3``: the proxies' learning rate (every proxy; ``DEEP_RATE`` from ``DEEP_ROWS`` samples),
* ``mt512``: ``max_terms`` (most terms per part of the regression); ``cap768``: the default's
  cap on it (``MAX_TERMS_LOW``; ``3 p / 4`` for ``p`` pairs below it),
* ``noproxy``: no LightGBM proxy (candidates: the pairs and triples the budget allows),
* ``f3``: cross-validation folds of the regression (every part; by default parts from
  ``CV_SINGLE_FROM`` terms take ``LARGE_PART_FOLDS``),
* ``screen`` / ``noscreen``: triples screened against the odd residual as candidates,
* ``oddcon``: the odd part holds the corner pair as a constraint of its fit instead of being
  fitted free and shifted onto it (``regression.ODD_CORNER_SHIFT``),
* ``constshrink``: the even part's James-Stein scaling gives its change at the corners to the
  constant alone, not spread over the even terms and every pair (``_shrink.SPREAD_CHANGE``),
* ``nopad``: factor matrices at their own side, not padded off MKL's slow sides (``_linalg``);
  ``noalign``: padded only off the multiples of 128, not up to a multiple of 8 (``ALIGN``),
* ``mid35``: from 1,024 samples to ``DEEP_ROWS`` the proxy tries depths 3 and 5, not 5 only
  (the default before ``MID_ROWS``),
* ``cv64``: cross-validation scored in float64 at every part size (not float32 from
  ``CV_SINGLE_FROM`` terms),
* ``cft100``: the cross-fitted proxies keep at least this many trees (``CROSS_FIT_TREES``),
* ``jkrefit``: the even part's jackknife refits its own proxies instead of reusing the odd
  part's cross-fitted ones,
* ``rounds500``: the proxies' most boosting rounds (``PROXY_ROUNDS``); ``drounds1000``: the
  deep proxy's (``DEEP_ROUNDS``, from ``DEEP_ROWS`` samples),
* ``nocf``: no cross-fitted proxy offset for the odd part (the ``cross_fit=False`` option),
* ``cfp8``: the cross-fitted proxy offset runs below this many pairs per feature
  (``CROSS_FIT_PAIRS``),
* ``pat30``: rounds without a held-out gain before a proxy stops (``PROXY_PATIENCE``),
* ``mg1e-4``: the proxy's early stopping counts a round only if it gains this fraction of the
  held-out variance (``PROXY_MIN_GAIN``),
* ``minimal``: ``effort="minimal"`` (no LightGBM proxy; the Walsh screen where it runs);
  ``noevenscreen``: that screen of the odd part only (``WALSH_SCREEN_EVEN``).

    python benchmarks/decode_variants.py low,high --seeds 12 --budgets 128,256,512,1024
    python benchmarks/decode_variants.py low,low+pens2 --budgets 4096 --games MLP,MiniLM,2x2

Prints one line per (game, budget, variant) and writes ``results/decode_variants.json``
(``--out``): mean SV error and mean order-2 k-SII pair error over the seeds (relative L2, as
``accuracy_vs_sampling.py`` reports them), median decode seconds to the Shapley values (the
value queries' time excluded; ``index="SV"`` defers the even part) and what reading the pairs
adds (``pairs_s``, the deferred even part), and every seed's numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import accuracy_vs_sampling as avs
import numpy as np
import torch

import torchspex
from torchspex.decoders import _candidates as cand
from torchspex.decoders import _even, _linalg, _offset, _proxy, _shrink, trees
from torchspex.decoders import _part_fit as pf
from torchspex.decoders import regression as reg
from torchspex.fourier import DeferredSpectrum

ORIGINAL = {
    "patience": cand.PROXY_PATIENCE, "cfp": _offset.CROSS_FIT_PAIRS,
    "leaf": trees._LEAF_KEY_FEATURES, "deep": cand.DEEP_ROWS, "pens": pf._PENALTIES,
    "avg": reg.ODD_AVERAGE, "configs": cand.proxy_configs, "gain": cand.PROXY_MIN_GAIN,
    "screen": cand.SCREEN_TRIPLES, "even_refits": _even._even_refits, "depths": cand.DEEP_DEPTHS,
    "pad_from": _linalg.PAD_FROM, "mid": cand.MID_ROWS, "single": pf.CV_SINGLE_FROM,
    "leaves": cand.DEEP_LEAVES, "cft": _offset.CROSS_FIT_TREES, "walk": pf.PENALTY_WALK,
    "race": _proxy.RACE_ROUNDS, "rounds": cand.PROXY_ROUNDS, "drounds": cand.DEEP_ROUNDS,
    "one_pen": pf.AVERAGE_ONE_PENALTY, "cap": reg.MAX_TERMS_LOW, "rescreen": cand.RESCREEN_TRIPLES,
    "spread": _shrink.SPREAD_CHANGE, "corner": reg.ODD_CORNER_SHIFT,
    "even_screen": cand.WALSH_SCREEN_EVEN,
}  # fmt: skip


KNOB_MODULES = (reg, cand, _offset, _even, pf, _proxy, _linalg, _shrink, trees)


def _apply(variant: str) -> dict:
    """Sets the module knobs of ``variant``; returns the explain() options it needs. Raises
    if a knob names something its module does not have (a knob moved elsewhere would
    otherwise be set where nothing reads it, and the variant would silently be the default)."""
    before = [set(vars(module)) for module in KNOB_MODULES]
    options = _set_knobs(variant)
    for module, names in zip(KNOB_MODULES, before):
        if set(vars(module)) - names:
            raise AttributeError(f"{module.__name__} has no {sorted(set(vars(module)) - names)}")
    return options


def _set_knobs(variant: str) -> dict:
    parts = variant.split("+")
    trees._LEAF_KEY_FEATURES = 0 if "oldread" in parts else ORIGINAL["leaf"]
    cand.DEEP_ROWS = 10**9 if "nodeep" in parts else ORIGINAL["deep"]
    cand.DEEP_DEPTHS = (8,) if "deep8" in parts else ORIGINAL["depths"]
    deep = next((p[2:] for p in parts if p.startswith("dd") and p[2:].isdigit()), None)
    if deep is not None:
        cand.DEEP_DEPTHS = tuple(int(c) for c in deep)
    pf._PENALTIES = ((0.0, 1e-2) if "pens2" in parts else (0.0, 1e-3, 1e-2) if "pens3" in parts
                      else ORIGINAL["pens"])  # fmt: skip
    reg.ODD_AVERAGE = 1 if "avg1" in parts else ORIGINAL["avg"]
    reg.ODD_CORNER_SHIFT = False if "oddcon" in parts else ORIGINAL["corner"]
    pf.AVERAGE_ONE_PENALTY = False if "allpens" in parts else ORIGINAL["one_pen"]
    pf.PENALTY_WALK = False if "fullpens" in parts else ORIGINAL["walk"]
    _proxy.RACE_ROUNDS = 1 << 62 if "norace" in parts else ORIGINAL["race"]
    _even._even_refits = (ORIGINAL["even_refits"] if "jkrefit" not in parts else
                        lambda *a, **k: ORIGINAL["even_refits"](*a[:-1], None, **k))
    cand.MID_ROWS = 1 << 62 if "mid35" in parts else ORIGINAL["mid"]
    cand.PROXY_ROUNDS = next((int(p[6:]) for p in parts if p.startswith("rounds")),
                            ORIGINAL["rounds"])  # fmt: skip
    cand.DEEP_ROUNDS = next((int(p[7:]) for p in parts if p.startswith("drounds")),
                           ORIGINAL["drounds"])  # fmt: skip
    cand.DEEP_LEAVES = 256 if "leaves256" in parts else ORIGINAL["leaves"]
    _offset.CROSS_FIT_PAIRS = next((int(p[3:]) for p in parts if p.startswith("cfp")),
                               ORIGINAL["cfp"])  # fmt: skip
    cand.PROXY_PATIENCE = next((int(p[3:]) for p in parts if p.startswith("pat")),
                              ORIGINAL["patience"])  # fmt: skip
    _offset.CROSS_FIT_TREES = next((int(p[3:]) for p in parts if p.startswith("cft")),
                               ORIGINAL["cft"])  # fmt: skip
    pf.CV_SINGLE_FROM = 1 << 62 if "cv64" in parts else ORIGINAL["single"]
    cand.RESCREEN_TRIPLES = (True if "rescreen" in parts else False if "norescreen" in parts
                            else ORIGINAL["rescreen"])  # fmt: skip
    reg.MAX_TERMS_LOW = next((int(p[3:]) for p in parts if p.startswith("cap")),
                             ORIGINAL["cap"])  # fmt: skip
    _linalg.PAD_FROM = 1 << 62 if "nopad" in parts else ORIGINAL["pad_from"]
    _linalg.ALIGN = "noalign" not in parts
    _shrink.SPREAD_CHANGE = "constshrink" not in parts and ORIGINAL["spread"]
    cand.SCREEN_TRIPLES = ("screen" in parts) or (ORIGINAL["screen"] and "noscreen" not in parts)
    cand.PROXY_MIN_GAIN = next((float(p[2:]) for p in parts if p.startswith("mg")),
                              ORIGINAL["gain"])  # fmt: skip
    rate = next((float(p[2:]) for p in parts if p.startswith("lr")), None)
    cand.proxy_configs = (ORIGINAL["configs"] if rate is None
                         else lambda depth, _rate, r=rate: ORIGINAL["configs"](depth, r))
    options: dict = ({"effort": "high"} if "high" in parts
                     else {"effort": "minimal"} if "minimal" in parts else {})  # fmt: skip
    cand.WALSH_SCREEN_EVEN = "noevenscreen" not in parts and ORIGINAL["even_screen"]
    if "nocf" in parts:
        options["cross_fit"] = False
    if "noproxy" in parts:
        options.update(proxy=False, method="regression")
    folds = next((int(p[1:]) for p in parts if p[:1] == "f" and p[1:].isdigit()), None)
    if folds is not None:
        options.update(n_folds=folds, method="regression")
    cap = next((int(p[2:]) for p in parts if p.startswith("mt") and p[2:].isdigit()), None)
    if cap is not None:
        # auto at n < SPEX_FEATURES is the regression; max_terms names it (two methods take it)
        options.update(max_terms=cap, method="regression")
    return options


def _game(pattern: str) -> avs.Game:
    """The accuracy benchmark's game matching ``pattern``; ``planted sparse 128`` /
    ``planted hierarchical 128``: its planted games at n = 128 (not in its list)."""
    kind, _, size = pattern.rpartition(" ")
    if pattern.startswith("planted") and size.isdigit():
        build = avs._planted_sparse if "sparse" in kind else avs._planted_hierarchical
        return build(int(size), torch.Generator().manual_seed(0))
    return avs._games(False, torch.Generator().manual_seed(0), [pattern])[0]


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variants", help="comma list, e.g. low,high,low+pens2")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--budgets", default="128,256,512,1024,4096")
    parser.add_argument("--games", default="LightGBM,MLP,MiniLM,2x2")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "decode_variants.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    variants = args.variants.split(",")
    budgets = [int(b) for b in args.budgets.split(",")]
    rows: list[dict] = []
    for pattern in args.games.split(","):
        game = _game(pattern)
        for budget in budgets:
            got: dict[str, tuple[list[float], list[float], list[float], list[float]]] = {
                v: ([], [], [], []) for v in variants}
            for seed in range(args.seeds):
                for v in variants:
                    options = _apply(v)
                    game.eval_s = 0.0
                    start = time.perf_counter()
                    res = torchspex.explain(game, game.n, n_samples=budget, generator=seed,
                                            index="SV", mask_format="numpy", **options)
                    sv = res.first_order("SV").numpy()
                    got[v][1].append(time.perf_counter() - start - game.eval_s)
                    got[v][0].append(avs._rel(sv, game.sv))
                    start = time.perf_counter()  # the deferred even part, for the pairs
                    if isinstance(res.spectrum, DeferredSpectrum):
                        res.spectrum.complete()
                    got[v][3].append(time.perf_counter() - start)
                    pairs = avs._dense_pairs(res.to_index("k-SII", 2).values, game.n)
                    got[v][2].append(float("nan") if game.ksii is None
                                     else avs._rel(pairs, game.ksii))  # fmt: skip
            for v in variants:
                errs, secs, pair_errs, pair_secs = got[v]
                rows.append({"game": game.name, "budget": budget, "variant": v,
                             "sv_err": float(np.mean(errs)), "ksii_err": float(np.mean(pair_errs)),
                             "decode_s": float(np.median(secs)),
                             "pairs_s": float(np.median(pair_secs)), "errs": errs,
                             "ksii_errs": pair_errs, "secs": secs})  # fmt: skip
                print(f"{game.name:30s} {budget:5d} {v:24s} SV error {np.mean(errs):.5f}  "
                      f"k-SII pairs {np.mean(pair_errs):.4f}  decode {np.median(secs):.3f} s "
                      f"(+ pairs {np.median(pair_secs):.3f} s)", flush=True)  # fmt: skip
            args.out.parent.mkdir(exist_ok=True)
            args.out.write_text(json.dumps({"seeds": args.seeds, "rows": rows}, indent=1))
    _apply("")
    return rows


if __name__ == "__main__":
    main()
