"""Spreading an explanation's forward passes over torch.distributed ranks or an executor.

Two independent ways, both used by :class:`~torchspex.decoders.base.Evaluator`:

**Ranks** (``process_group``; by default the ranks of ``torch.distributed`` when it is
initialized, e.g. under ``torchrun``). Every rank runs the same explanation: the same decoder
with the same generator seed, so every rank asks for the same masks in the same order. Each
round of new masks is split into contiguous shards in the original order, one per rank (sizes
differ by at most one); each rank runs its shard through its own value function (on its own
device), and the values are all-gathered in the original order. Every rank then holds every
value, so every rank decodes the same spectrum, bit for bit. One round costs three collectives:

1. *agree*: each rank sends a digest of the round's masks (and which of them its evaluation
   store already holds). Different digests mean the ranks are not running the same
   explanation (different seed, inputs or budget): every rank raises ``ValueError`` before any
   forward pass. A stored value is reused only when every rank holds it.
2. *status*: after evaluating its shard, each rank sends whether it succeeded. If any rank
   failed, the failing rank re-raises its own exception and every other rank raises
   :class:`DistributedEvaluationError` naming it: an error on all ranks, never a hang.
   Ranks explaining different inputs with the same seed may still ask for the same masks, so
   in the first round every rank also evaluates that round's emptiest and fullest masks (two
   extra masks per rank, once: the fullest shows the inputs, the emptiest the baseline; the
   round's first mask, the all-removed one, used to be the only witness and is the same for
   different inputs) and sends their values here; values further apart than
   :data:`WITNESS_RTOL` raise ``ValueError`` on every rank.
3. *values*: all-gather of the shards (padded to the largest; ``float64 [m_r, *out]``).

Rank-local set-up before the first round (opening a ``cache``) goes through
:func:`on_every_rank`: if it fails on one rank, every rank raises, as in *status*.

A rank that never reaches a collective (killed, or stuck in its model) is bounded by the
process group's ``timeout`` (``torch.distributed.init_process_group(timeout=...)``).

**Executors** (``executor``): any ``concurrent.futures.Executor``-like object (one with
``submit`` returning futures, or ``map``), e.g. a ``ThreadPoolExecutor``, Dask's
``client.get_executor()`` or Ray's ``ray.util.multiprocessing.Pool``. Each round is split into
``batch_size`` chunks, the value function is mapped over them, and the values are reassembled in
order. Results are identical to evaluating the chunks one after the other.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Generator, Sequence
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor

__all__ = [
    "DistributedEvaluationError",
    "RankGroup",
    "check_executor",
    "map_batches",
    "on_every_rank",
    "resolve_process_group",
    "shard_offsets",
]


#: Ranks whose values of the same mask differ by more than this share of its largest magnitude
#: are explaining different things (loose: batch composition moves low-precision outputs).
WITNESS_RTOL = 0.05


class DistributedEvaluationError(RuntimeError):
    """Another rank's value function failed; ``rank`` is the rank that raised it."""

    def __init__(self, message: str, rank: int) -> None:
        super().__init__(message)
        self.rank = rank


def resolve_process_group(process_group: Any = None) -> Any:
    """The process group whose ranks share the forward passes, or ``None`` to work alone.

    Args:
        process_group: ``None`` (default): the default group when ``torch.distributed`` is
            initialized, else none. ``False``: none (each rank explains on its own). A
            ``torch.distributed.ProcessGroup``: that group.

    Returns:
        A process group with at least two ranks, or ``None`` (nothing to share).

    Raises:
        TypeError: for anything else.
        ValueError: for a group while ``torch.distributed`` is not initialized, or a group this
            rank does not belong to.
    """
    if process_group is False:
        return None
    available = dist.is_available()
    if process_group is None:
        if not (available and dist.is_initialized()):
            return None
        group = dist.group.WORLD
    else:
        if not available or not isinstance(process_group, dist.ProcessGroup):
            raise TypeError(
                "`process_group` must be a torch.distributed.ProcessGroup, None (the default "
                f"group when torch.distributed is initialized) or False; got "
                f"{type(process_group).__name__}."
            )
        if not dist.is_initialized():
            raise ValueError(
                "`process_group` was given but torch.distributed is not initialized; call "
                "torch.distributed.init_process_group first (torchrun sets up the environment)."
            )
        group = process_group
    if dist.get_rank(group) < 0:
        raise ValueError(
            "`process_group` must contain this rank; got a group without rank "
            f"{dist.get_rank()}. Call explain only on the group's ranks, or pass False."
        )
    return group if dist.get_world_size(group) > 1 else None


def check_executor(executor: Any) -> Any:
    """``None`` or an object with a callable ``submit`` or ``map``."""
    if executor is None:
        return None
    if not (
        callable(getattr(executor, "submit", None)) or callable(getattr(executor, "map", None))
    ):
        raise TypeError(
            "`executor` must have a `submit` or `map` method (a concurrent.futures.Executor, "
            f"Dask's client.get_executor(), a Ray Pool, ...); got {type(executor).__name__}."
        )
    return executor


def _result(item: Any) -> Any:
    """A future's result; anything else as it is."""
    get = getattr(item, "result", None)
    return get() if callable(get) and not isinstance(item, (Tensor, np.ndarray)) else item


def map_batches(
    function: Callable[[Any], Any], batches: Sequence[Any], executor: Any = None
) -> Generator[Any, None, None]:
    """Yields ``function(batch)`` for each batch, in order, computed by ``executor``.

    With ``submit``, every batch is submitted at once and the results are collected in order;
    closing the iterator early (an error in one batch) cancels the batches not yet started.

    Example:
        >>> from concurrent.futures import ThreadPoolExecutor
        >>> with ThreadPoolExecutor(2) as pool:
        ...     list(map_batches(sum, [[1, 2], [3], [4, 5, 6]], pool))
        [3, 3, 15]
    """
    if executor is None:
        for batch in batches:
            yield function(batch)
        return
    if not callable(getattr(executor, "submit", None)):
        for item in executor.map(function, batches):
            yield _result(item)
        return
    futures = [executor.submit(function, batch) for batch in batches]
    try:
        for future in futures:
            yield future.result()
    finally:
        for future in futures:
            cancel = getattr(future, "cancel", None)
            if callable(cancel):
                cancel()


def on_every_rank(group: Any, fn: Callable[[], Any], what: str) -> Any:
    """Runs ``fn()`` on this rank; with a process group, a failure on any rank fails them all.

    For rank-local set-up before the first collective (e.g. opening an evaluation store): a rank
    that raised there would otherwise leave the others waiting in their first round, or pair
    their collectives with the failing rank's next explanation.

    Args:
        group: a process group, or ``None`` to just call ``fn``.
        fn: the set-up step.
        what: what ``fn`` does, for the message (e.g. ``"opening its cache"``).

    Raises:
        the rank's own exception on the failing rank, :class:`DistributedEvaluationError` on
        the others.
    """
    if group is None:
        return fn()
    error: BaseException | None = None
    result = None
    try:
        result = fn()
    except Exception as exc:  # re-raised below, after every rank has reported
        error = exc
    RankGroup(group).settle(error, what)
    return result


def shard_offsets(n_items: int, world_size: int) -> list[int]:
    """Contiguous shard bounds: rank ``r`` takes items ``offsets[r]:offsets[r + 1]``.

    Sizes differ by at most one; the first ``n_items % world_size`` ranks take one more.

    Example:
        >>> shard_offsets(7, 3)
        [0, 3, 5, 7]
        >>> shard_offsets(1, 2)
        [0, 1, 1]
    """
    base, extra = divmod(n_items, world_size)
    offsets = [0]
    for rank in range(world_size):
        offsets.append(offsets[-1] + base + (rank < extra))
    return offsets


def _comm_device(group: Any) -> torch.device:
    """Where tensors must live for ``group``'s collectives."""
    backend = str(dist.get_backend(group)).lower()
    if "gloo" in backend or "mpi" in backend:
        return torch.device("cpu")
    if "nccl" in backend:
        return torch.device("cuda", torch.cuda.current_device())
    accelerator = torch.accelerator.current_accelerator()
    return torch.device("cpu") if accelerator is None else accelerator


class RankGroup:
    """The ranks of a process group sharing one explanation's forward passes.

    Args:
        group: a ``torch.distributed`` process group with this rank in it.

    Attributes:
        rank, world_size: this rank's place in ``group`` and the group's size.
        n_rounds: rounds of new masks agreed so far.
    """

    def __init__(self, group: Any) -> None:
        self.group = group
        self.rank = dist.get_rank(group)
        self.world_size = dist.get_world_size(group)
        self.device = _comm_device(group)
        self.n_rounds = 0

    def _gather(self, obj: Any) -> list[Any]:
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj, group=self.group)
        return out

    def agree(self, keys: Sequence[bytes], held: np.ndarray) -> np.ndarray:
        """Checks that every rank asks for the same masks; which of them every store holds.

        Args:
            keys: the round's packed masks, in order (identical on every rank).
            held: ``bool [m]``: masks this rank's evaluation store holds.

        Returns:
            ``bool [m]``: masks every rank's store holds (only those may be reused).

        Raises:
            ValueError: on every rank, when the ranks asked for different masks.
        """
        self.n_rounds += 1
        digest = hashlib.blake2b(b"".join(keys), digest_size=16).digest()
        mine = (digest, len(keys), np.packbits(held.astype(bool)).tobytes())
        everyone = self._gather(mine)
        odd = [r for r, theirs in enumerate(everyone) if theirs[0] != everyone[0][0]]
        if odd:
            r = odd[0]
            raise ValueError(
                f"the ranks must ask for the same masks; in round {self.n_rounds} rank 0 asked "
                f"for {everyone[0][1]} new masks and rank {r} for {everyone[r][1]} different "
                "ones. Run the same explanation on every rank with the same generator seed "
                "(and inputs, n_samples, options), or pass process_group=False to explain on "
                "each rank alone."
            )
        every = np.ones(len(keys), dtype=bool)
        for _, _, bits in everyone:
            every &= np.unpackbits(np.frombuffer(bits, dtype=np.uint8), count=len(keys)) > 0
        return every

    def settle(self, error: BaseException | None, what: str) -> None:
        """One collective after a rank-local step: raises on every rank if any rank failed."""
        note = None if error is None else f"{type(error).__name__}: {error}"
        self._stop_if_failed(error, self._gather(note), lambda r: f"while {what}")

    def _stop_if_failed(
        self, error: BaseException | None, notes: list[str | None], doing: Callable[[int], str]
    ) -> None:
        """Raises on every rank when any rank's ``notes[r]`` (its error) is not ``None``.

        The failing rank re-raises its own ``error``; the others raise
        :class:`DistributedEvaluationError` naming the first failed rank and what it was
        ``doing(r)``.
        """
        failed = [r for r, note in enumerate(notes) if note is not None]
        if not failed:
            return
        if error is not None:
            if hasattr(error, "add_note"):
                error.add_note(
                    f"torchspex: raised on rank {self.rank} of {self.world_size} "
                    f"({doing(self.rank)}); the other ranks raise DistributedEvaluationError."
                )
            raise error
        r = failed[0]
        raise DistributedEvaluationError(
            f"rank {r} of {self.world_size} failed {doing(r)}: {notes[r]} (its traceback is on "
            f"rank {r}); every rank stops.",
            rank=r,
        )

    def gather(
        self,
        local: Tensor | None,
        error: BaseException | None,
        offsets: Sequence[int],
        out_shape: tuple[int, ...] | None,
        witness: Tensor | None = None,
    ) -> Tensor:
        """All ranks' shards in order, ``float64 [m, *out]`` on the CPU (every rank).

        Args:
            local: this rank's values ``float64 [m_r, *out]`` (``None`` for an empty shard or a
                failure).
            error: the exception this rank's evaluation raised, or ``None``.
            offsets: :func:`shard_offsets` of the round.
            out_shape: this rank's per-mask output shape, if known.
            witness: this rank's values ``[w, *out]`` of the witness masks (the first round's
                emptiest and fullest), which every rank evaluates beside its shard in that
                round.

        Raises:
            the rank's own ``error`` on the failing rank, :class:`DistributedEvaluationError`
            on the others; ``ValueError`` on every rank when their output shapes differ, or
            when their values of the witness mask differ by more than
            ``WITNESS_RTOL * max |value|`` (the ranks explain different models or inputs).
        """
        note = None if error is None else f"{type(error).__name__}: {error}"
        seen = None if witness is None else witness.detach().cpu().numpy()
        statuses = self._gather((error is None, out_shape, note, seen))
        self._stop_if_failed(
            error,
            [status[2] for status in statuses],
            lambda r: f"evaluating its shard (masks {offsets[r]}:{offsets[r + 1]}) of round "
            f"{self.n_rounds}",
        )
        shapes = {status[1] for status in statuses if status[1] is not None}
        if len(shapes) != 1:
            raise ValueError(
                f"the ranks' value functions must return the same shape per mask; got "
                f"{sorted(shapes)} in round {self.n_rounds}."
            )
        (shape,) = shapes
        self._compare_witnesses([status[3] for status in statuses])
        if out_shape is not None and tuple(out_shape) != tuple(shape):
            raise ValueError(
                f"the ranks' value functions must return the same shape per mask; rank "
                f"{self.rank} returned {tuple(out_shape)} earlier and the others {tuple(shape)}."
            )
        sizes = [offsets[r + 1] - offsets[r] for r in range(self.world_size)]
        width = max(sizes)
        padded = torch.zeros(width, *shape, dtype=torch.float64, device=self.device)
        if local is not None and local.shape[0]:
            padded[: local.shape[0]] = local.to(self.device)
        parts = [torch.empty_like(padded) for _ in range(self.world_size)]
        dist.all_gather(parts, padded, group=self.group)
        values = torch.cat([part[:size] for part, size in zip(parts, sizes)])
        return values.to("cpu")

    def _compare_witnesses(self, seen: list[np.ndarray | None]) -> None:
        reference = seen[0]
        if reference is None:
            return
        tolerance = WITNESS_RTOL * (float(np.abs(reference).max(initial=0.0)) + 1e-12)
        for r, theirs in enumerate(seen):
            if theirs is None or np.abs(theirs - reference).max(initial=0.0) <= tolerance:
                continue
            raise ValueError(
                f"the ranks must explain the same model and inputs; rank {r} evaluates the same "
                f"mask to {np.round(theirs, 6).tolist()} and rank 0 to "
                f"{np.round(reference, 6).tolist()}. Give every rank the same model weights, "
                "inputs and arguments, or pass process_group=False to explain different inputs "
                "on each rank alone."
            )
