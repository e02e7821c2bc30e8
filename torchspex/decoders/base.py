"""The value-function seam shared by every decoder.

A *value function* maps masks ``bool [m, n_features]`` (True = feature kept) to values
``[m]`` or ``[m, *out]``. Decoders never call it directly: they go through an
:class:`Evaluator`, which checks every output, evaluates each distinct mask once, and counts
evaluations against the budget.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor

from torchspex.cache import EvaluationStore
from torchspex.decoders._budgets import default_degree, regression_n_samples
from torchspex.distributed import RankGroup, check_executor, map_batches, shard_offsets
from torchspex.errors import BudgetTooSmallError
from torchspex.sampling.plan import DEFAULT_N_GROUPS, default_n_samples, spex_sample_count
from torchspex.sampling.uniform import mask_keys

__all__ = [
    "NONFINITE_MODES",
    "BudgetTooSmallError",
    "Evaluator",
    "Progress",
    "ValueFunction",
    "check_nonfinite",
]

ValueFunction = Callable[[Tensor], Any]


#: What to do with a mask whose value is NaN or inf: raise (default), or leave it out of the fit.
NONFINITE_MODES = ("raise", "drop")


def check_nonfinite(nonfinite: Any, method: str | None = None) -> str:
    """Validates ``nonfinite``; ``"drop"`` needs a method that can fit any subset of its masks.

    Example:
        >>> check_nonfinite("drop", "proxyspex")
        'drop'
    """
    if nonfinite not in NONFINITE_MODES:
        raise ValueError(f"`nonfinite` must be one of {NONFINITE_MODES}; got {nonfinite!r}.")
    if nonfinite == "drop" and method is not None and method != "proxyspex":
        raise ValueError(
            f"`nonfinite='drop'` needs method='proxyspex'; got method={method!r}. SPEX's "
            "structured design and the exhaustive transform need the value of every mask they "
            "query; ProxySPEX fits its random masks, so it can leave the non-finite ones out. "
            "Use method='proxyspex', or keep nonfinite='raise' and fix the value function."
        )
    return nonfinite


class Progress:
    """A tqdm bar over evaluated masks; the decoder's own work shows as a phase, with its time.

    One bar per entry point (``explain``, ``SpectralInteraction.attribute``, the LLM and layer
    helpers): :meth:`update` counts masks as their values arrive (from the model or a store),
    :meth:`phase` names what is going on (``"evaluating"`` while the value function runs,
    ``"fitting"`` while the decoder works on the values it has), and :meth:`finish` sets the
    total to the masks actually evaluated, so a run that needed fewer masks than planned still
    ends at exactly 100%. While the decoder fits, the bar shows the seconds it has spent so far,
    refreshed every ``tick`` seconds by a daemon thread (the counts do not move then), and the
    finished bar keeps the decoder's total (``decode 3.2 s``). An :class:`Evaluator` given a
    ``progress`` drives all of this.

    Args:
        desc: the bar's label.
        total: the masks planned (an upper bound; ``None``: unknown).
        file: where to draw (default ``sys.stderr``, tqdm's default).
        unit: what is counted (``"mask"``; ``"row"`` for :class:`~torchspex.TreeInteraction`).
        tick: seconds between refreshes of the fitting time.

    Example:
        >>> import io
        >>> out = io.StringIO()
        >>> bar = Progress("explain", total=10, file=out)
        >>> bar.update(4)
        >>> bar.finish()  # only 4 of the 10 planned masks were needed
        >>> "100%" in out.getvalue() and "4/4" in out.getvalue()
        True
    """

    def __init__(
        self, desc: str, total: int | None = None, file: Any = None, unit: str = "mask",
        tick: float = 1.0,
    ) -> None:
        from tqdm.auto import tqdm

        self.bar = tqdm(desc=desc, total=total, unit=unit, mininterval=0.5, file=file)
        self.current: str | None = None
        self.tick = tick
        self.fit_seconds = 0.0  # the fitting phases' time so far, the current one excluded
        self._fit_start: float | None = None
        self._stop: threading.Event | None = None
        self._ticker: threading.Thread | None = None

    @property
    def n(self) -> int:
        """Masks counted so far."""
        return int(self.bar.n)

    def update(self, n: int) -> None:
        """Counts ``n`` more evaluated masks (the total grows if the plan was too small)."""
        if n <= 0:
            return
        if self.bar.total is not None and self.bar.n + n > self.bar.total:
            self.bar.total = self.bar.n + n
        self.bar.update(n)

    def phase(self, name: str) -> None:
        """Shows ``name`` (e.g. ``"fitting"``) after the counts until the next phase;
        ``"fitting"`` with its seconds so far."""
        if name == self.current:
            return
        self._end_fitting()
        self.current = name
        if name == "fitting":
            self._fit_start = time.perf_counter()
            self._stop = threading.Event()
            self._ticker = threading.Thread(target=self._tick, args=(self._stop,), daemon=True)
            self._ticker.start()
        self.bar.set_postfix_str(self._label(), refresh=True)

    def _label(self) -> str:
        start = self._fit_start
        if self.current == "fitting" and start is not None:
            return f"fitting {self.fit_seconds + time.perf_counter() - start:.0f} s"
        return self.current or ""

    def _tick(self, stop: threading.Event) -> None:
        while not stop.wait(self.tick):
            self.bar.set_postfix_str(self._label(), refresh=True)

    def _end_fitting(self) -> None:
        """Stops the refreshes and adds the fitting phase's time (if one is running)."""
        if self._stop is not None and self._ticker is not None:
            self._stop.set()  # no refresh after this returns (the bar may close next)
            self._ticker.join()
            self._stop = self._ticker = None
        if self._fit_start is not None:
            self.fit_seconds += time.perf_counter() - self._fit_start
            self._fit_start = None

    def phases(self) -> _PhaseView:
        """A view that passes on phases but counts nothing (for evaluators over shared masks)."""
        return _PhaseView(self)

    def finish(self) -> None:
        """Ends the bar at exactly 100%: the total becomes the masks actually evaluated; the
        decoder's fitting time stays on it."""
        self._end_fitting()
        self.bar.total = self.bar.n
        self.current = None
        done = f"decode {self.fit_seconds:.1f} s" if self.fit_seconds > 0 else ""
        self.bar.set_postfix_str(done, refresh=False)
        self.close()

    def close(self) -> None:
        """Closes the bar as it stands (after an error)."""
        self._end_fitting()
        self.bar.close()


class _PhaseView:
    def __init__(self, progress: Progress) -> None:
        self.progress = progress

    def update(self, n: int) -> None:
        pass

    def phase(self, name: str) -> None:
        self.progress.phase(name)


def planned_evaluations(
    method: str,
    n_features: int,
    n_samples: int | None,
    max_order: int | None = None,
    options: dict[str, Any] | None = None,
) -> int | None:
    """An upper bound on the distinct masks ``method`` will evaluate (``None``: unknown).

    Used as a progress bar's total; :meth:`Progress.finish` corrects it at the end.
    """
    every = 1 << n_features if n_features <= 62 else None
    if method == "exhaustive":
        return every
    bound = n_samples
    if method in ("auto", "regression") and n_samples is None:
        bound = regression_n_samples(n_features)
    if method == "spex" and n_samples is None:  # the default design's size
        try:
            opts = options or {}
            t = opts.get("degree_parameter") or default_degree(max_order)
            if opts.get("b") is None:  # SPEX spends its default budget
                bound = default_n_samples(n_features, t)
            else:  # the design of `b` bins per group
                groups = opts.get("n_groups") or DEFAULT_N_GROUPS
                bound = spex_sample_count(n_features, opts["b"], t, groups)
            bound += 2  # the corners, which method="spex" evaluates after the design
        except Exception:  # an estimate only: the decoder reports bad settings itself
            bound = None
    if every is not None and bound is not None:
        bound = min(bound, every)
    return bound


def mark_context(err: BaseException) -> None:
    """Marks ``err`` as carrying torchspex's context already (one note, from the innermost)."""
    with contextlib.suppress(AttributeError):  # an exception type with __slots__
        err.__torchspex_context__ = True  # type: ignore[attr-defined]


def has_context(err: BaseException) -> bool:
    """Whether an inner layer already said where ``err`` happened (see :func:`mark_context`)."""
    return bool(getattr(err, "__torchspex_context__", False))


class Evaluator:
    """Calls a value function on masks: checked outputs, distinct masks once, counted calls.

    Args:
        value_function: ``masks bool [m, n] -> values [m, *out]`` (torch or NumPy, any real
            dtype).
        n_features: number of features ``n``.
        n_samples: the most distinct masks that may be evaluated (``None``: no limit).
        mask_format: ``"torch"`` passes bool tensors, ``"numpy"`` passes bool arrays.
        batch_size: largest number of masks per call (``None``: all masks of a request at once).
        store: an :class:`~torchspex.cache.EvaluationStore`: values found there are reused, and
            every evaluated batch is appended to it before the next one starts.
        process_group: a ``torch.distributed`` process group (``None``: work alone). Each round
            of new masks is split into contiguous shards, one per rank, and the values are
            all-gathered in order (see :mod:`torchspex.distributed`); every rank must make the
            same requests (same decoder, same generator seed). With a store, a stored value is
            reused only when every rank's store holds it.
        executor: a ``concurrent.futures.Executor``-like object (``submit`` or ``map``) that
            runs the value function on the ``batch_size`` chunks of a round (of this rank's
            shard); values are reassembled in order.
        nonfinite: ``"raise"`` (default): a NaN or inf value raises ``ValueError`` naming how
            many masks and one of them. ``"drop"``: such values are kept as they are (NaN/inf),
            counted in ``n_nonfinite``, and left out by the decoder, which warns (ProxySPEX only;
            see :func:`check_nonfinite`).
        progress: a :class:`Progress` (or anything with ``update(n)`` and ``phase(name)``):
            counts every mask whose value arrives (per ``batch_size`` batch, per round when
            ``batch_size`` is ``None``; a store's values at once; other ranks' after each
            gather), shows ``"evaluating"`` while the value function runs and ``"fitting"``
            between requests, while the decoder works.

    Attributes:
        n_evaluations: distinct masks whose values were used (from the model or the store).
        n_model_evaluations: masks the value function actually evaluated (on all ranks).
        n_local_evaluations: masks this rank's value function evaluated.
        n_cached: masks whose values came from the store.
        n_nonfinite: masks whose value was NaN or inf (``nonfinite="drop"``); with
            ``nonfinite_example``, the features one of them kept.
    """

    def __init__(
        self,
        value_function: ValueFunction,
        n_features: int,
        n_samples: int | None = None,
        mask_format: str = "torch",
        batch_size: int | None = None,
        store: EvaluationStore | None = None,
        process_group: Any = None,
        executor: Any = None,
        nonfinite: str = "raise",
        progress: Any = None,
    ) -> None:
        if not callable(value_function):
            raise TypeError(
                f"`value_function` must be callable; got {type(value_function).__name__}."
            )
        if mask_format not in ("torch", "numpy"):
            raise ValueError(
                f"`mask_format` must be one of ('torch', 'numpy'); got {mask_format!r}."
            )
        self.value_function = value_function
        self.n_features = n_features
        self.n_samples = n_samples
        self.mask_format = mask_format
        self.batch_size = batch_size
        self.store = store
        self.ranks = None if process_group is None else RankGroup(process_group)
        self.executor = check_executor(executor)
        self.nonfinite = check_nonfinite(nonfinite)
        self.progress = progress
        self.n_nonfinite = 0
        self.nonfinite_example: list[int] | None = None
        self.n_evaluations = 0
        self.n_model_evaluations = 0
        self.n_local_evaluations = 0
        self.n_cached = 0
        self.n_calls = 0
        self._verified = False
        self._witnessed = False
        self.out_shape: tuple[int, ...] | None = None
        self._seen: dict[bytes, int] = {}
        self._values: list[Tensor] = []
        self._masks: list[Tensor] = []

    @property
    def masks(self) -> Tensor:
        """Every distinct mask evaluated so far, ``bool [N, n]``."""
        if not self._masks:
            return torch.zeros(0, self.n_features, dtype=torch.bool)
        return torch.cat(self._masks)

    @property
    def values(self) -> Tensor:
        """Their values, ``float64 [N, *out]``."""
        if not self._values:
            return torch.zeros(0, *(self.out_shape or ()), dtype=torch.float64)
        return torch.cat(self._values)

    def _argument(self, masks: Tensor) -> Any:
        return masks.numpy() if self.mask_format == "numpy" else masks

    def _check_output(self, out: Any, masks: Tensor) -> Tensor:
        """``out`` (the value function's answer for ``masks``) as ``float64 [m, *out]``."""
        if isinstance(out, (list, tuple)) and any(isinstance(v, (Tensor, np.ndarray)) for v in out):
            raise TypeError(
                f"`value_function` returned a {type(out).__name__} of arrays; it must return one "
                "tensor or array of shape [m] or [m, n_outputs] (stack them first)."
            )
        if isinstance(out, (list, tuple, float, int)):
            out = np.asarray(out)
        if isinstance(out, np.ndarray):
            if not np.issubdtype(out.dtype, np.number) or np.iscomplexobj(out):
                raise TypeError(
                    f"`value_function` must return real numbers; got an array of dtype {out.dtype}."
                )
            out = torch.from_numpy(np.ascontiguousarray(out, dtype=np.float64))
        if not isinstance(out, Tensor):
            raise TypeError(
                "`value_function` must return a torch.Tensor or numpy.ndarray; got "
                f"{type(out).__name__}."
            )
        if out.is_complex() or out.dtype == torch.bool:
            raise TypeError(f"`value_function` must return real numbers; got dtype {out.dtype}.")
        out = out.detach().to("cpu", torch.float64)
        if out.dim() == 0 or out.shape[0] != masks.shape[0]:
            raise ValueError(
                f"`value_function` returned shape {tuple(out.shape)} for {masks.shape[0]} masks; "
                f"it must return one value per mask (shape [{masks.shape[0]}, ...])."
            )
        if self.out_shape is None:
            self.out_shape = tuple(out.shape[1:])
        elif tuple(out.shape[1:]) != self.out_shape:
            raise ValueError(
                f"`value_function` returned values of shape {tuple(out.shape[1:])} per mask after "
                f"returning {self.out_shape} before; it must be consistent."
            )
        return out

    def __call__(self, masks: Tensor) -> Tensor:
        """Values for ``masks bool [m, n]`` -> ``float64 [m, *out]``, evaluating new masks only."""
        masks = torch.as_tensor(masks).bool().cpu()
        if masks.dim() != 2 or masks.shape[1] != self.n_features:
            raise AssertionError(f"masks must be [m, {self.n_features}]; got {tuple(masks.shape)}")
        keys = mask_keys(masks)  # bool, on the CPU
        uniq_keys, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
        key_bytes = uniq_keys.tolist()  # each distinct key as ``bytes`` (one call, not per row)
        new = [i for i, key in enumerate(key_bytes) if key not in self._seen]
        if new:
            new_masks = masks[torch.from_numpy(first[new])]
            new_keys = [key_bytes[i] for i in new]
            if self.n_samples is not None and self.n_evaluations + len(new) > self.n_samples:
                raise AssertionError(
                    f"decoder exceeded its budget: {self.n_evaluations + len(new)} > "
                    f"{self.n_samples}"
                )
            if self.progress is not None:
                self.progress.phase("evaluating")
            new_values = self._evaluate_new(new_masks, new_keys)
            if self.progress is not None:
                self.progress.phase("fitting")
            base = len(self._seen)
            for j, key in enumerate(new_keys):
                self._seen[key] = base + j
            self._masks.append(new_masks)
            self._values.append(new_values)
            self.n_evaluations += len(new)
        all_values = self.values
        pos = torch.tensor([self._seen[k] for k in key_bytes], dtype=torch.long)
        return all_values[pos[torch.from_numpy(inverse.reshape(-1))]]

    def _evaluate_new(self, masks: Tensor, keys: list[bytes]) -> Tensor:
        """Values of never-seen masks: from the store where present, else from the model."""
        cached = self.store.lookup(keys) if self.store is not None else {}
        if self.ranks is not None:
            held = np.fromiter((key in cached for key in keys), dtype=bool, count=len(keys))
            every = self.ranks.agree(keys, held)
            cached = {key: cached[key] for key, ok in zip(keys, every.tolist()) if ok}
        if cached and self.out_shape is None:
            self.out_shape = self.store.out_shape  # type: ignore[union-attr]
        if not cached:  # every value from the model, in order
            return self._evaluate_model(masks, keys)
        todo = [j for j, key in enumerate(keys) if key not in cached]
        if not todo and self.ranks is None:
            # every value from the store: one stored value is still evaluated again, so a
            # model changed behind an unchanged fingerprint (e.g. reached through a global
            # the fingerprint cannot see) raises instead of returning its old values
            self._verify_stored()
        fresh = self._evaluate_model(masks[todo], [keys[j] for j in todo]) if todo else None
        rows: list[Tensor] = []
        fresh_pos = {j: i for i, j in enumerate(todo)}
        for j, key in enumerate(keys):
            if key in cached:
                rows.append(torch.from_numpy(cached[key].copy()).reshape(self.out_shape or ()))
            else:
                rows.append(fresh[fresh_pos[j]])  # type: ignore[index]
        self.n_cached += len(cached)
        if self.progress is not None:
            self.progress.update(len(cached))
        values = torch.stack(rows)
        if self.nonfinite == "raise":  # a store written with nonfinite="drop"
            self._check_finite(masks, values)
        return values

    def _evaluate_model(self, masks: Tensor, keys: list[bytes]) -> Tensor:
        if self.ranks is None:
            return self._evaluate_local(masks, keys)[0]
        offsets = shard_offsets(masks.shape[0], self.ranks.world_size)
        start, stop = offsets[self.ranks.rank], offsets[self.ranks.rank + 1]
        # once: every rank also evaluates the round's emptiest and fullest masks beside its
        # shard, so ranks explaining different models, inputs or baselines (which still ask for
        # the same masks) are caught, not mixed: the fullest mask shows the inputs (the empty
        # mask, the first of a round, is the baseline alone: the same for different inputs),
        # the emptiest the baseline
        witnessing, self._witnessed = not self._witnessed, True
        witness = None
        if witnessing and masks.shape[0]:
            kept = masks.sum(dim=1)
            witness = masks[sorted({int(kept.argmin()), int(kept.argmax())})]
        local, seen, error = None, None, None
        try:
            local, seen = self._evaluate_local(masks[start:stop], keys[start:stop], witness)
        except Exception as err:  # every rank must learn of it (no hang): see RankGroup.gather
            error = err
        values = self.ranks.gather(local, error, offsets, self.out_shape, seen)
        if self.out_shape is None:
            self.out_shape = tuple(values.shape[1:])
        others = torch.ones(masks.shape[0], dtype=torch.bool)
        others[start:stop] = False
        if self.store is not None and bool(others.any()):
            rest = [key for key, other in zip(keys, others.tolist()) if other]
            self.store.append(rest, values[others].numpy(), self.out_shape)
        self.n_model_evaluations += masks.shape[0] - (stop - start)
        if self.progress is not None:
            self.progress.update(masks.shape[0] - (stop - start))
        return values

    def _evaluate_local(
        self, masks: Tensor, keys: list[bytes], witness: Tensor | None = None
    ) -> tuple[Tensor, Tensor | None]:
        """This rank's values of ``masks``, ``batch_size`` at a time (through the executor).

        Returns ``(values float64 [m, *out], values of witness or None)``; ``witness bool
        [w, n]`` (masks every rank evaluates, :meth:`_evaluate_model`) rides along with the
        first batch.
        """
        step = self.batch_size or max(masks.shape[0], 1)
        starts = list(range(0, masks.shape[0], step))
        if not starts and witness is None:
            return torch.zeros(0, *(self.out_shape or ()), dtype=torch.float64), None
        batches = [masks[start : start + step] for start in starts or [0]]
        check = self._pending_check() if masks.shape[0] else None
        extra = [t for t in (None if check is None else check[0], witness) if t is not None]
        batches[0] = torch.cat([batches[0], *extra])
        results = map_batches(
            self.value_function, [self._argument(b) for b in batches], self.executor
        )
        chunks, seen = [], None
        try:
            for index, (start, batch) in enumerate(zip(starts or [0], batches)):
                try:
                    answer = next(results)
                    self.n_calls += 1
                    out = self._check_output(answer, batch)
                except Exception as err:
                    if hasattr(err, "add_note") and not has_context(err):
                        err.add_note(
                            f"torchspex: raised by the value function on batch {index} of this "
                            f"request (masks of shape {tuple(batch.shape)}) after "
                            f"{self.n_local_evaluations} successful evaluations"
                            + (f"; they are kept in {self.store.path!r}" if self.store else "")
                            + "."
                        )
                        mark_context(err)
                    raise
                chunk = masks[start : start + step]
                if index == 0 and extra:
                    out, tail = out[: chunk.shape[0]], out[chunk.shape[0] :]
                    if check is not None:
                        self._verify(tail[0], check[1])
                    if witness is not None:
                        seen = tail[-witness.shape[0]:]
                if chunk.shape[0]:  # empty: an empty shard's batch of just the witness
                    self._check_finite(chunk, out)
                if self.store is not None and chunk.shape[0]:
                    self.store.append(keys[start : start + step], out.numpy(), self.out_shape)
                self.n_model_evaluations += chunk.shape[0]
                self.n_local_evaluations += chunk.shape[0]
                if self.progress is not None:
                    self.progress.update(chunk.shape[0])
                chunks.append(out)
        finally:
            results.close()
        return torch.cat(chunks), seen

    def _pending_check(self) -> tuple[Tensor, np.ndarray] | None:
        if self.store is None or self._verified:
            return None
        self._verified = True
        entry = self.store.initial_entry
        if entry is None:
            return None
        key, value = entry
        bits = np.unpackbits(np.frombuffer(key, dtype=np.uint8))[: self.n_features]
        return torch.from_numpy(bits.astype(bool)).unsqueeze(0), value

    def _verify_stored(self) -> None:
        """Evaluates one value stored before this run on its own (one model call) and compares
        it (:meth:`_verify`), once per run; the check otherwise rides along with the first batch
        of new masks (:meth:`_evaluate_local`), which a run served wholly by the store lacks."""
        check = self._pending_check()
        if check is None:
            return
        results = map_batches(self.value_function, [self._argument(check[0])], self.executor)
        try:
            answer = next(results)
        finally:
            results.close()
        self.n_calls += 1
        self._verify(self._check_output(answer, check[0])[0], check[1])

    def _verify(self, again: Tensor, stored: np.ndarray) -> None:
        stored_t = torch.from_numpy(stored.copy()).reshape(again.shape)
        if not torch.allclose(again, stored_t, rtol=1e-4, atol=1e-6, equal_nan=True):
            raise ValueError(
                f"cache {self.store.path!r} holds a value for this problem that the value "  # type: ignore[union-attr]
                f"function no longer reproduces ({stored_t.tolist()} stored, {again.tolist()} "
                "now): the model or value function changed. Delete the cache file or use "
                "another `cache` path."
            )

    def _check_finite(self, masks: Tensor, values: Tensor) -> None:
        bad = ~torch.isfinite(values.reshape(values.shape[0], -1)).all(dim=1)
        if bool(bad.any()):
            example = torch.nonzero(masks[bad][0]).squeeze(1).tolist()
            if self.nonfinite == "drop":
                self.n_nonfinite += int(bad.sum())
                if self.nonfinite_example is None:
                    self.nonfinite_example = example
                return
            # a value function built around a model names it (``value_source``, e.g.
            # "the model (MLP)", set by torchspex.attr's MaskedForward)
            source = getattr(self.value_function, "value_source", None)
            who = source if isinstance(source, str) else "`value_function`"
            fix = source if isinstance(source, str) else "the model or value function"
            raise ValueError(
                f"{who} returned NaN or inf for {int(bad.sum())} of "
                f"{masks.shape[0]} masks (e.g. the mask keeping features {example}); "
                f"fix {fix} so every mask has a finite value (or, with "
                "method='proxyspex', pass nonfinite='drop' to leave such masks out)."
            )
