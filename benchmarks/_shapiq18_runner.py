"""shapiq 1.8 peers for ``accuracy_vs_sampling.py``, run under a Python >= 3.12 interpreter.

shapiq 1.8.0 needs Python >= 3.12 and torchspex's venv is 3.11, so the benchmark starts this
script as a long-lived child (``--shapiq18-python``) and talks to it over stdin/stdout in frames:
a 4-byte big-endian length, a JSON header, then (when the header has ``nbytes``) an ``.npy``
payload. The game itself stays in the parent: every time an approximator evaluates coalitions,
this script sends them up (``{"op": "eval"}`` + a bool ``[m, n]`` array) and reads the values
back, so the parent counts every row each peer spends and answers from the same value table or
model as torchspex's methods.

Commands from the parent:
    ``{"op": "run", "peer": NAME, "n": n, "budget": b, "seed": s}``: replies
    ``{"op": "result", "index": ..., "sv": [n] or None, "pairs": [[i, j, v], ...] or None}``
    or ``{"op": "error", "message": ...}``;
    ``{"op": "version"}``: replies ``{"op": "version", "shapiq": ..., "python": ...}``;
    ``{"op": "quit"}``.

Each peer runs with shapiq's defaults except the index: the Shapley-value estimators with
``index="SV"``, the interaction estimators with ``index="k-SII", max_order=2`` (RegressionFSII:
FSII, order 2); the reply names the index the approximator reported (``InteractionValues.index``).
"""

from __future__ import annotations

import io
import json
import os
import struct
import sys
import warnings
from collections.abc import Callable

import numpy as np

# The protocol owns the real stdout; anything a library prints goes to stderr instead.
_PROTO_OUT = os.fdopen(os.dup(1), "wb")
os.dup2(2, 1)
sys.stdout = sys.stderr
_PROTO_IN = sys.stdin.buffer


def _send(header: dict, array: np.ndarray | None = None) -> None:
    payload = b""
    if array is not None:
        buf = io.BytesIO()
        np.save(buf, array, allow_pickle=False)
        payload = buf.getvalue()
        header = {**header, "nbytes": len(payload)}
    head = json.dumps(header).encode()
    _PROTO_OUT.write(struct.pack(">I", len(head)) + head + payload)
    _PROTO_OUT.flush()


def _read_exact(k: int) -> bytes:
    data = b""
    while len(data) < k:
        chunk = _PROTO_IN.read(k - len(data))
        if not chunk:
            raise EOFError
        data += chunk
    return data


def _recv() -> tuple[dict, np.ndarray | None]:
    (size,) = struct.unpack(">I", _read_exact(4))
    header = json.loads(_read_exact(size))
    array = None
    if header.get("nbytes"):
        array = np.load(io.BytesIO(_read_exact(header["nbytes"])), allow_pickle=False)
    return header, array


def _game(n: int):
    def value(coalitions: np.ndarray) -> np.ndarray:
        x = np.atleast_2d(np.asarray(coalitions)).astype(bool).reshape(-1, n)
        _send({"op": "eval"}, x)
        _, values = _recv()
        return np.asarray(values, dtype=np.float64)

    return value


# peer name -> (shapiq class, constructor keywords, what its result carries: "sv" or "pairs")
PEERS: dict[str, tuple[str, dict, str]] = {
    "OddSHAP": ("OddSHAP", {}, "sv"),
    "ProxySHAP": ("ProxySHAP", {"index": "SV", "max_order": 1}, "sv"),
    "RegressionMSR": ("RegressionMSR", {"index": "SV"}, "sv"),
    "LeverageSHAP": ("LeverageSHAP", {}, "sv"),
    "PolySHAP": ("PolySHAP", {}, "sv"),
    "KernelSHAP": ("KernelSHAP", {}, "sv"),
    "kADDSHAP": ("kADDSHAP", {"max_order": 2}, "sv"),
    "KernelSHAPIQ": ("KernelSHAPIQ", {"index": "k-SII", "max_order": 2}, "pairs"),
    "SVARMIQ": ("SVARMIQ", {"index": "k-SII", "max_order": 2}, "pairs"),
    "PermutationSamplingSII": (
        "PermutationSamplingSII",
        {"index": "k-SII", "max_order": 2},
        "pairs",
    ),
    "RegressionFSII": ("RegressionFSII", {"max_order": 2}, "pairs"),
}


def _run(peer: str, n: int, budget: int, seed: int) -> dict:
    import shapiq

    cls_name, kwargs, kind = PEERS[peer]
    approx = getattr(shapiq, cls_name)(n=n, random_state=seed, **kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        iv = approx.approximate(budget, _game(n))
    out: dict = {"op": "result", "index": str(iv.index), "sv": None, "pairs": None}
    if kind == "sv":
        # kADD-SHAP reports its own index; its order-1 values are the Shapley values of the
        # k-additive fit (Pelegrina et al. 2023), read here as its SV estimate
        out["sv"] = [float(iv[(i,)]) for i in range(n)]
    else:
        out["pairs"] = [
            [int(key[0]), int(key[1]), float(iv.values[pos])]
            for key, pos in iv.interaction_lookup.items()
            if len(key) == 2
        ]
    return out


def serve(
    run: Callable[[dict, np.ndarray | None], dict],
    version: Callable[[], dict] | None = None,
    ops: dict[str, Callable[[], dict]] | None = None,
) -> None:
    """The child's loop: answers frames until ``quit`` or end of input. ``version`` frames get
    shapiq's and Python's versions (plus ``version()``), the ops named in ``ops`` their reply,
    every other frame ``run(header, payload)``; a peer that fails is an error reply."""
    while True:
        try:
            header, array = _recv()
        except EOFError:
            return
        op = header.get("op")
        if op == "quit":
            return
        if op == "version":
            import shapiq

            _send({"op": "version", "shapiq": shapiq.__version__,
                   "python": sys.version.split()[0], **(version() if version else {})})  # fmt: skip
            continue
        if ops and op in ops:
            _send(ops[op]())
            continue
        try:
            _send(run(header, array))
        except Exception as err:  # a peer failing at some budget is a result, not a crash
            _send({"op": "error", "message": f"{type(err).__name__}: {str(err)[:200]}"})


def main() -> None:
    serve(lambda h, _: _run(h["peer"], int(h["n"]), int(h["budget"]), h["seed"]))


if __name__ == "__main__":
    main()
