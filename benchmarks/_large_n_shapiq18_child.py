"""shapiq 1.8 peers for ``large_n.py``, run under a Python >= 3.12 interpreter.

The protocol and the call-back game are ``_shapiq18_runner.py``'s (frames on stdin/stdout; every
batch of coalitions an approximator evaluates is sent up with ``{"op": "eval"}`` and the parent
answers with the values, so the parent counts every call and evaluates the real model). Two
additions for large n:

- the ``run`` frame may carry a bool ``[m, n]`` payload of held-out masks; for the peers whose
  result is a sparse representation of the whole game (ProxySPEX, SPEX: a Moebius transform,
  captured where the approximator converts it to the requested index) the reply carries the
  surrogate's values on those masks (``"heldout"``), so the parent can compute its R^2;
- ``{"op": "warmup"}`` runs SPEX once on a small local game, so the just-in-time compilation
  of ``sparse-transform``'s numba code is not charged to the first timed cell;
- ProxySPEX and SPEX run with ``index="SV", max_order=1``: shapiq converts their full Moebius
  transform (all orders) to Shapley values.

SPEX needs the ``sparse-transform`` package in the 3.12 environment; without it the peer's
reply is an error row.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _shapiq18_runner import PEERS, _game, serve

LARGE_N_PEERS: dict[str, tuple[str, dict, str]] = {
    # the Shapley-value peers, and the k-SII ones (their order-2 values, for the pair metric)
    **{name: (cls, kw, kind) for name, (cls, kw, kind) in PEERS.items()
       if kind == "sv" or kw.get("index") == "k-SII"},
    "ProxySPEX": ("ProxySPEX", {"index": "SV", "max_order": 1}, "sv"),
    "SPEX": ("SPEX", {"index": "SV", "max_order": 1}, "sv"),
}


def _moebius_values(moebius: dict[tuple, float], masks: np.ndarray) -> np.ndarray:
    """``f(x) = sum_S m_S prod_{i in S} x_i`` on bool masks ``[m, n]``."""
    out = np.zeros(masks.shape[0])
    for key, value in moebius.items():
        out += value * (masks[:, list(key)].all(axis=1) if key else 1.0)
    return out


def _run(header: dict, heldout: np.ndarray | None) -> dict:
    import shapiq

    peer, n = header["peer"], int(header["n"])
    cls_name, kwargs, kind = LARGE_N_PEERS[peer]
    approx = getattr(shapiq, cls_name)(n=n, random_state=header["seed"], **kwargs)
    captured: dict = {}
    if hasattr(approx, "_process_moebius"):
        inner = approx._process_moebius

        def capture(moebius_transform):
            captured["moebius"] = dict(moebius_transform)
            return inner(moebius_transform=moebius_transform)

        approx._process_moebius = capture
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        iv = approx.approximate(int(header["budget"]), _game(n))
    out: dict = {"op": "result", "index": str(iv.index), "pairs": None, "sv": None}
    if kind == "sv":
        out["sv"] = [float(iv[(i,)]) for i in range(n)]
    else:  # k-SII of order 2: its pairs (its order-1 values are not the Shapley values)
        out["pairs"] = [[int(key[0]), int(key[1]), float(iv.values[pos])]
                        for key, pos in iv.interaction_lookup.items() if len(key) == 2]
    if heldout is not None and "moebius" in captured:
        out["heldout"] = _moebius_values(captured["moebius"], heldout.astype(bool)).tolist()
        out["n_terms"] = len(captured["moebius"])
    return out


def _warm_up() -> None:
    import shapiq

    w = np.linspace(-1.0, 1.0, 24)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        shapiq.SPEX(n=24, index="SV", max_order=1, random_state=0).approximate(
            400, lambda x: np.asarray(x, dtype=float) @ w
        )


def _spex_status() -> dict:
    try:
        import sparse_transform  # noqa: F401

        return {"spex": "sparse-transform available"}
    except ImportError:
        return {"spex": "no sparse-transform: SPEX will fail"}


def _warm() -> dict:
    """Compiles SPEX's numba code once, outside every timed cell."""
    try:
        _warm_up()
        return {"op": "warm"}
    except Exception as err:
        return {"op": "warm", "message": f"{type(err).__name__}: {str(err)[:200]}"}


def main() -> None:
    serve(_run, _spex_status, {"warmup": _warm})


if __name__ == "__main__":
    main()
