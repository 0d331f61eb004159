"""``ner-divscore --backend ray``: blocks of records scored by a pool of Ray actors.

Each actor loads the model once and scores whole blocks with
:func:`nertools.xner.scoring.block_scorer` (a fresh scorer per block), so a block's scores are
the same bytes as in a single-process run. The driver reads and checks the records (file:line
errors, ``--on-error``), cuts them into the blocks of :mod:`nertools.core.resume`, keeps at most
two blocks per actor in flight, and writes the results in input order (with ``--resume`` and
``--shard`` as usual). One actor per GPU (``num_gpus=1``) when the cluster has GPUs, else one per
CPU (``num_cpus=1``, one torch thread each unless ``--threads``).

Ray is an optional extra: ``pip install 'nertools[ray]'``. Without ``address`` (or
``RAY_ADDRESS``) a local Ray is started for the run; an already initialised Ray (a test, a
notebook) is used as it is.
"""

from __future__ import annotations

import os
from collections import deque
from typing import Any, Iterable, Iterator, Mapping, Sequence

from nertools.errors import NertoolsError, UsageError
from nertools.xner.seeds import Seed

#: Blocks in flight per actor (one being scored, one queued).
IN_FLIGHT_PER_ACTOR = 2


def import_ray():
    try:
        import ray
    except ImportError:
        raise UsageError("--backend ray needs Ray: pip install 'nertools[ray]' (or 'ray[data]')") from None
    return ray


class _Scorer:
    """The actor: one model, one block scorer."""

    def __init__(self, seeds, model, label_words, device, dtype, threads, options):
        from nertools.runtime.models import set_threads
        from nertools.runtime.progress import quiet_transformers, set_quiet
        from nertools.xner.scoring import block_scorer

        set_quiet(True)
        quiet_transformers()
        set_threads(threads)
        self.score = block_scorer(seeds, model=model, label_words=label_words, device=device, dtype=dtype,
                                  **options)

    def score_block(self, records: list[dict]) -> list[dict]:
        return self.score(records)


class RayBlockScorer:
    """A pool of scorer actors; :meth:`map` scores an iterator of blocks, in order."""

    def __init__(self, seeds: Sequence[Seed], *, model: str, label_words: Mapping[str, str] | None = None,
                 device: str = "auto", dtype: str = "auto", threads: int | None = None, address: str | None = None,
                 actors: int | None = None, **options: Any):
        from nertools.runtime.models import resolve_model_path
        from nertools.xner.scoring import check_template, with_label_words

        seeds = with_label_words(seeds, label_words)
        check_template(options.get("method", "2way"), options.get("template"))
        model = str(resolve_model_path(model)) if isinstance(model, str) else model
        ray = import_ray()
        self.started = not ray.is_initialized()
        if self.started:
            address = address or os.environ.get("RAY_ADDRESS") or None
            ray_init(ray, address=address, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True,
                     configure_logging=False)
        resources = ray.cluster_resources()
        gpus = int(resources.get("GPU", 0))
        use_gpu = gpus > 0 and device not in ("cpu",)
        if actors is None:
            actors = gpus if use_gpu else max(1, int(resources.get("CPU", 1)))
        remote = ray.remote(num_gpus=1, num_cpus=1)(_Scorer) if use_gpu else ray.remote(num_cpus=1)(_Scorer)
        actor_device = ("cuda" if device in ("auto", "cuda") else device) if use_gpu else "cpu"
        self.ray = ray
        self.actors = [remote.remote(list(seeds), model, None, actor_device, dtype, threads or 1, options)
                       for _ in range(actors)]
        self.device = actor_device

    def map(self, blocks: Iterable[list[dict]]) -> Iterator[list[dict]]:
        """Score ``blocks`` on the actors, at most :data:`IN_FLIGHT_PER_ACTOR` per actor at a time,
        and yield each block's records in input order."""
        ray = self.ray
        window: deque = deque()  # (object ref, actor), in input order
        it = iter(blocks)
        limit = IN_FLIGHT_PER_ACTOR * len(self.actors)
        rr = 0
        try:
            exhausted = False
            while True:
                while not exhausted and len(window) < limit:
                    block = next(it, None)
                    if block is None:
                        exhausted = True
                        break
                    actor = self.actors[rr % len(self.actors)]
                    rr += 1
                    window.append(actor.score_block.remote(block))
                if not window:
                    return
                ref = window.popleft()
                try:
                    yield ray.get(ref)
                except ray.exceptions.RayTaskError as e:
                    cause = e.cause if getattr(e, "cause", None) is not None else e
                    if isinstance(cause, NertoolsError):
                        raise cause from None
                    raise NertoolsError(f"a Ray scorer failed: {cause}") from None
        finally:
            for ref in window:
                try:
                    ray.cancel(ref)
                except Exception:  # noqa: BLE001 - best effort on the way out
                    pass

    def shutdown(self) -> None:
        """Stop the actors (and the local Ray this pool started)."""
        for a in self.actors:
            self.ray.kill(a)
        self.actors = []
        if self.started:
            self.ray.shutdown()


def ray_init(ray, **kwargs) -> None:
    """``ray.init(**kwargs)`` that keeps this process's SIGTERM and SIGINT handlers: Ray installs
    its own (SIGTERM: ``sys.exit(15)``), which would replace nertools' (a killed run exits 143
    and finishes its output's cleanup) for the rest of the process."""
    import signal

    kept = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        ray.init(**kwargs)
    finally:
        for s, handler in kept.items():
            if handler is not None:
                signal.signal(s, handler)
