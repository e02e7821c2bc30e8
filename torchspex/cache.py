"""A durable evaluation store: no model evaluation is lost to a crash or a kill.

Every batch of evaluated masks is appended to an SQLite file (one transaction per batch,
``synchronous=FULL``) under a *fingerprint* of the explanation problem. Re-running the same call
finds the stored values and evaluates only the masks that are missing. A different problem has a
different fingerprint, so stale values are never reused; on resume one stored mask is evaluated
again and compared, so a changed model or value function behind an unchanged fingerprint raises
instead of silently mixing results.
"""

from __future__ import annotations

import hashlib
import io
import os
import sqlite3
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch

__all__ = ["EvaluationStore", "fingerprint"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS evaluations (
    fingerprint TEXT NOT NULL,
    mask BLOB NOT NULL,
    value BLOB NOT NULL,
    PRIMARY KEY (fingerprint, mask)
);
CREATE TABLE IF NOT EXISTS problems (
    fingerprint TEXT PRIMARY KEY,
    n_features INTEGER NOT NULL,
    out_shape TEXT
);
"""


def _captured(fn: Any, depth: int) -> list[Any]:
    """What a function captured that changes its values: modules, tensors and plain data.

    A closure such as ``lambda x: model(x)[:, 0]`` depends on the ``model`` in its closure cell
    (or a default argument), not only on its code; nested functions are followed ``depth`` deep.
    Other objects (and ``None``, which often stands in for one, e.g. an optional progress bar)
    are left out: they would make keys differ between runs that compute the same values.
    """
    values: list[Any] = list(getattr(fn, "__defaults__", None) or ())
    values += list((getattr(fn, "__kwdefaults__", None) or {}).values())
    for cell in getattr(fn, "__closure__", None) or ():
        try:
            values.append(cell.cell_contents)
        except ValueError:  # an empty cell
            continue
    return [
        v for v in values
        if isinstance(v, (torch.nn.Module, torch.Tensor, np.ndarray, bool, int, float, str))
        or (depth > 0 and callable(v) and hasattr(v, "__code__"))
    ]  # fmt: skip


def _feed(h: Any, obj: Any, depth: int = 2) -> None:
    if obj is None or isinstance(obj, (bool, int, float, str)):
        h.update(f"{type(obj).__name__}:{obj!r};".encode())
    elif isinstance(obj, bytes):
        h.update(b"bytes:" + obj + b";")
    elif isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous()
        h.update(f"tensor:{t.dtype}:{tuple(t.shape)}:".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    elif isinstance(obj, np.ndarray):
        a = np.ascontiguousarray(obj)
        h.update(f"ndarray:{a.dtype}:{a.shape}:".encode() + a.tobytes())
    elif isinstance(obj, torch.nn.Module):
        h.update(f"module:{type(obj).__qualname__}:".encode())
        for name, value in obj.state_dict().items():
            _feed(h, name)
            _feed(h, value)
    elif isinstance(obj, torch.Generator):
        _feed(h, obj.get_state())
    elif isinstance(obj, dict):
        h.update(b"dict{")
        for key in sorted(obj, key=repr):
            _feed(h, key)
            _feed(h, obj[key])
        h.update(b"}")
    elif isinstance(obj, (list, tuple)):
        h.update(f"{type(obj).__name__}[".encode())
        for item in obj:
            _feed(h, item)
        h.update(b"]")
    elif callable(obj):
        code = getattr(obj, "__code__", None)
        h.update(f"callable:{getattr(obj, '__qualname__', type(obj).__qualname__)}:".encode())
        if code is not None:
            h.update(code.co_code)
            _feed(h, [c for c in code.co_consts if isinstance(c, (int, float, str, bytes))])
            h.update(b"captured[")
            for value in _captured(obj, depth):
                _feed(h, value, depth - 1)
            h.update(b"]")
        if isinstance(getattr(obj, "__self__", None), torch.nn.Module):
            _feed(h, obj.__self__)
    else:
        buf = io.BytesIO()
        torch.save(obj, buf)
        h.update(buf.getvalue())


def fingerprint(*parts: Any) -> str:
    """A stable SHA-256 hex digest of tensors, arrays, modules (their weights) and plain data.

    Example:
        >>> fingerprint(torch.ones(2), {"n": 3}) == fingerprint(torch.ones(2), {"n": 3})
        True
        >>> fingerprint(torch.ones(2)) == fingerprint(torch.zeros(2))
        False
    """
    h = hashlib.sha256()
    for part in parts:
        _feed(h, part)
    return h.hexdigest()


class EvaluationStore:
    """Append-only store of ``(mask, value)`` pairs for one explanation problem.

    Args:
        path: SQLite file (created if missing).
        key: the problem's fingerprint (see :func:`fingerprint`).
        n_features: number of features (checked against what the file holds for ``key``).

    Attributes:
        out_shape: the per-mask output shape stored for ``key`` (``None`` until known).
        initial_entry: one ``(packed mask, value)`` stored before this store was opened, or
            ``None``: the entry a resumed run evaluates again to detect a changed model.
    """

    def __init__(self, path: str | os.PathLike, key: str, n_features: int) -> None:
        self.path = os.fspath(path)
        self.key = key
        self.n_features = n_features
        # Several processes (ranks, resumed jobs) may open one file at once: wait for the
        # writer lock instead of failing, and register the problem race-free.
        self._conn = sqlite3.connect(self.path, timeout=120.0)
        self._conn.execute("PRAGMA busy_timeout=120000")
        with self._conn:
            self._conn.executescript(_SCHEMA)
        self._conn.execute("PRAGMA synchronous=FULL")
        with self._conn:
            self._conn.execute(
                "INSERT OR IGNORE INTO problems (fingerprint, n_features) VALUES (?, ?)",
                (key, n_features),
            )
        stored, shape = self._conn.execute(
            "SELECT n_features, out_shape FROM problems WHERE fingerprint = ?", (key,)
        ).fetchone()
        if stored != n_features:
            self._conn.close()
            raise ValueError(
                f"cache {self.path!r} holds this problem with {stored} features, not "
                f"{n_features}; delete the file or pass another `cache` path."
            )
        self.out_shape: tuple[int, ...] | None = (
            None if shape is None else tuple(int(v) for v in shape.split(",") if v)
        )
        # what was stored before this run (the entry a resumed run re-checks against the value
        # function); entries other processes append to a shared file later are not re-checked
        self.initial_entry = self.any_entry()

    def __len__(self) -> int:
        (count,) = self._conn.execute(
            "SELECT COUNT(*) FROM evaluations WHERE fingerprint = ?", (self.key,)
        ).fetchone()
        return int(count)

    def lookup(self, keys: Iterable[bytes]) -> dict[bytes, np.ndarray]:
        """Stored values for the packed masks ``keys`` that are present."""
        keys = list(keys)
        found: dict[bytes, np.ndarray] = {}
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = self._conn.execute(
                f"SELECT mask, value FROM evaluations WHERE fingerprint = ? AND mask IN ({marks})",
                (self.key, *chunk),
            ).fetchall()
            for mask, value in rows:
                found[bytes(mask)] = np.frombuffer(value, dtype=np.float64)
        return found

    def any_entry(self) -> tuple[bytes, np.ndarray] | None:
        """One stored ``(packed mask, value)`` pair, or None: the greatest packed mask, i.e. the
        full mask where it is stored (the model's own output, which nearly any change to the
        model moves; the lowest key would be the empty mask, the baseline's value, which a
        change to the model's weights often leaves alone)."""
        row = self._conn.execute(
            "SELECT mask, value FROM evaluations WHERE fingerprint = ? ORDER BY mask DESC LIMIT 1",
            (self.key,),
        ).fetchone()
        return None if row is None else (bytes(row[0]), np.frombuffer(row[1], dtype=np.float64))

    def append(
        self, keys: list[bytes], values: np.ndarray, out_shape: tuple[int, ...] | None = None
    ) -> None:
        """Durably appends one evaluated batch (one transaction)."""
        flat = np.ascontiguousarray(values, dtype=np.float64).reshape(len(keys), -1)
        with self._conn:
            if out_shape is not None and self.out_shape is None:
                self.out_shape = tuple(out_shape)
                self._conn.execute(
                    "UPDATE problems SET out_shape = ? WHERE fingerprint = ?",
                    (",".join(str(v) for v in out_shape), self.key),
                )
            self._conn.executemany(
                "INSERT OR REPLACE INTO evaluations (fingerprint, mask, value) VALUES (?, ?, ?)",
                [(self.key, k, v.tobytes()) for k, v in zip(keys, flat)],
            )

    def close(self) -> None:
        """Closes the file."""
        self._conn.close()
