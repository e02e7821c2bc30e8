"""The steps every entry point runs: validate, plan the masks, evaluate, decode, assemble.

:func:`~torchspex.explain` (a plain value function), ``SpectralInteraction.attribute`` (a
model, one decode per example), ``LayerSpectralInteraction`` and the LLM helpers (value
functions handed to ``explain``) build one :class:`Problem` and hand it to the same steps:

1. **validate**: :meth:`Problem.check` (method, index, order, budget, generator, ``nonfinite``)
   and :meth:`Problem.check_budget` (the decoder's own refusal, without evaluating anything);
2. **plan the masks**: :meth:`Problem.planned` sizes the progress bar (the decoder asks
   ``sampling/`` for its design when it runs);
3. **evaluate**: a :class:`Run` opens the cache stores (:meth:`Run.open_store`) and the progress
   bar (:meth:`Run.show_progress`) and closes them however the run ends; the
   :class:`~torchspex.decoders.base.Evaluator` the entry point builds on them batches, caches
   and shards;
4. **decode**: :meth:`Problem.decode` (``decoders.dispatch.decode`` with the problem's settings);
5. **assemble**: :meth:`Problem.result` (the spectrum in an ``Interactions`` subclass).

The entry points keep only what is theirs: how masks become values (a model's masked forward
passes, a layer hook, a prompt), and what their result carries besides the spectrum.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from functools import partial
from types import TracebackType
from typing import Any, TypeVar

import numpy as np
import torch
from torch import Tensor

from torchspex.cache import EvaluationStore
from torchspex.decoders.base import Evaluator, Progress, check_nonfinite, planned_evaluations
from torchspex.decoders.dispatch import check_method, decode
from torchspex.decoders.exhaustive import check_exhaustive
from torchspex.distributed import on_every_rank
from torchspex.fourier import SparseSpectrum, canonical_index
from torchspex.interactions import Interactions, _check_order

__all__ = ["Problem", "Run", "check_generator", "check_n_samples"]

R = TypeVar("R", bound=Interactions)


def check_n_samples(n_samples: int | None) -> int | None:
    """Validates a budget."""
    if n_samples is None:
        return None
    if isinstance(n_samples, bool) or not isinstance(n_samples, int):
        raise TypeError(f"`n_samples` must be an int or None; got {type(n_samples).__name__}.")
    if n_samples < 1:
        raise ValueError(f"`n_samples` must be >= 1; got {n_samples}.")
    return n_samples


def check_generator(generator: torch.Generator | int | None) -> torch.Generator:
    """A fresh generator from ``None`` (seed 0) or an int seed; a generator is used as given."""
    if generator is None:
        return torch.Generator().manual_seed(0)
    if isinstance(generator, bool):
        raise TypeError("`generator` must be a torch.Generator, an int seed or None; got bool.")
    if isinstance(generator, (int, np.integer)):
        if not -(2**63) <= int(generator) < 2**64:  # the seeds torch takes
            raise ValueError(
                f"`generator` as a seed must be in -2**63..2**64 - 1; got {generator}."
            )
        return torch.Generator().manual_seed(int(generator))
    if not isinstance(generator, torch.Generator):
        raise TypeError(
            "`generator` must be a torch.Generator, an int seed or None; got "
            f"{type(generator).__name__}."
        )
    return generator


class _DryRun(Exception):
    """Raised by the dry-run evaluator at the decoder's first evaluation: the budget is valid."""


class _DryRunEvaluator(Evaluator):
    def __call__(self, masks: Tensor) -> Tensor:
        raise _DryRun


def _never_called(masks: Tensor) -> Tensor:
    raise AssertionError("the dry-run evaluator never calls its value function")


def check_index_size(index: str, max_order: int | None, n_features: int) -> None:
    """Raises, before any model call, for an index the result could not list at this size: the
    egalitarian least core above ``MAX_ELC_FEATURES`` features, a generalized value of too many
    coalitions (:func:`~torchspex.fourier.generalized.check_listing`)."""
    from torchspex.fourier.elc import MAX_ELC_FEATURES
    from torchspex.fourier.generalized import check_listing
    from torchspex.fourier.indices import GENERALIZED

    if index == "ELC" and n_features > MAX_ELC_FEATURES:
        raise ValueError(
            f"index='ELC' (the egalitarian least core) needs every coalition's value; it is "
            f"computed for n_features <= {MAX_ELC_FEATURES}, got {n_features}: pick another "
            "index."
        )
    if index in GENERALIZED:
        check_listing(index, max_order, n_features)


@dataclass(frozen=True)
class Problem:
    """What one explanation decodes, validated: the settings every step reads.

    Attributes:
        method: canonical method name (``decoders.dispatch.METHODS``).
        index: canonical index name of the result.
        n_samples: the most distinct masks a decode may evaluate (``None``: its default).
        max_order: order cap of the report and the decoder's target order (``None``: none).
        generator: the decoder's randomness.
        nonfinite: ``"raise"`` or ``"drop"``.
        decoder_options: method-specific settings, passed to the decoder as they are.
    """

    method: str
    index: str
    n_samples: int | None
    max_order: int | None
    generator: torch.Generator
    nonfinite: str
    decoder_options: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def check(
        cls,
        n_features: int,
        *,
        method: str,
        index: str,
        max_order: int | None,
        n_samples: int | None,
        generator: torch.Generator | int | None,
        nonfinite: str,
        decoder_options: dict[str, Any],
    ) -> Problem:
        """Step 1, validate: every setting checked (in this order) before any evaluation.

        Raises:
            TypeError, ValueError: for an unknown method or index, an order outside
                ``1..n_features``, a budget below 1, a bad generator or ``nonfinite``.
        """
        method = check_method(method)
        index = canonical_index(index)
        max_order = _check_order(max_order, n_features)
        check_index_size(index, max_order, n_features)
        n_samples = check_n_samples(n_samples)
        generator = check_generator(generator)
        nonfinite = check_nonfinite(nonfinite, method)
        return cls(method, index, n_samples, max_order, generator, nonfinite, decoder_options)

    def order(self, n_features: int) -> int | None:
        """The decoder's target order for ``n_features`` (the cap, at most ``n_features``)."""
        return None if self.max_order is None else min(self.max_order, n_features)

    def replay(self, state: Tensor) -> torch.Generator:
        """A fresh generator (on the problem's generator's device) started at ``state``."""
        generator = torch.Generator(device=self.generator.device)
        generator.set_state(state)
        return generator

    def check_budget(self, n_features: int) -> None:
        """Step 1, validate: the decoder's own budget check for ``n_features``, nothing evaluated.

        For an entry point that decodes several problems of different sizes (the partitions of
        ``SpectralInteraction``), so that the last one cannot fail after the first one's forward
        passes. The decoder runs on a copy of the generator up to its first evaluation.

        Raises:
            BudgetTooSmallError: with the minimum, when ``n_samples`` is below it.
        """
        if self.method == "exhaustive":
            check_exhaustive(n_features, self.n_samples)
            return
        dry = _DryRunEvaluator(_never_called, n_features, n_samples=self.n_samples)
        with contextlib.suppress(_DryRun):
            decode(
                self.method, dry, n_features, n_samples=self.n_samples,
                max_order=self.order(n_features), generator=self.replay(self.generator.get_state()),
                **self.decoder_options,
            )  # fmt: skip

    def planned(self, n_features: int) -> int | None:
        """Step 2, plan: the most masks a decode of ``n_features`` evaluates (``None``: unknown)."""
        return planned_evaluations(
            self.method, n_features, self.n_samples, self.max_order, self.decoder_options
        )

    def decode(
        self, evaluator: Evaluator, n_features: int, generator: torch.Generator | None = None
    ) -> tuple[SparseSpectrum, dict[str, Any]]:
        """Step 4, decode: the spectrum of ``evaluator``'s value function and the decoder's info.

        Args:
            evaluator: the value function, wrapped (step 3).
            n_features: its number of features.
            generator: the randomness of this decode (default: the problem's generator).
        """
        return decode(
            self.method, evaluator, n_features, n_samples=self.n_samples,
            max_order=self.order(n_features),
            generator=self.generator if generator is None else generator, index=self.index,
            **self.decoder_options,
        )  # fmt: skip

    def result(
        self,
        cls: type[R],
        spectrum: SparseSpectrum,
        *,
        n_evaluations: int,
        feature_names: Sequence[str] | None,
        feature_ids: Sequence[Hashable] | None,
        info: dict[str, Any],
    ) -> R:
        """Step 5, assemble: ``spectrum`` as a ``cls``, with the problem's index, order, method."""
        return cls(
            spectrum, index=self.index, max_order=self.max_order, n_evaluations=n_evaluations,
            feature_names=feature_names, feature_ids=feature_ids, method=self.method, info=info,
        )  # fmt: skip


class Run:
    """Step 3's resources: the progress bar and the cache stores an explanation holds open.

    A context manager: on success the bar is finished (its total becomes the masks evaluated,
    so it ends at exactly 100%); however the run ends, the bar and every store are closed.

    Example:
        >>> with Run() as run:
        ...     bar = run.show_progress("explain", [4, 6])
        ...     bar.update(4)  # only 4 of the 10 planned masks were needed
        >>> bar.n, bar.bar.total
        (4, 4)
    """

    def __init__(self) -> None:
        self.progress: Progress | None = None
        self.stores: list[EvaluationStore] = []

    def show_progress(self, label: str, planned: Sequence[int | None]) -> Progress:
        """A bar over the masks of every planned decode (total unknown if any plan is)."""
        known = [n for n in planned if n is not None]
        self.progress = Progress(label, sum(known) if len(known) == len(planned) else None)
        return self.progress

    def open_store(
        self, cache: str | os.PathLike, key: str, n_features: int, process_group: Any
    ) -> EvaluationStore:
        """The evaluation store of problem ``key`` (a fingerprint) in the file ``cache``.

        Opened on every rank of ``process_group`` (a failure on one fails them all) and closed
        when the run ends.
        """
        opening = partial(EvaluationStore, cache, key, n_features)
        store: EvaluationStore = on_every_rank(process_group, opening, f"opening cache {cache!r}")
        self.stores.append(store)
        return store

    def __enter__(self) -> Run:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            if exc_type is None and self.progress is not None:
                self.progress.finish()
        finally:
            if self.progress is not None:
                self.progress.close()
            for store in self.stores:
                store.close()
