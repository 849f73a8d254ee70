"""A bounded work queue: load can make the server say "busy", never run it out of memory.

A translation request takes a *slot* once its upload is complete and its image header has
passed the checks of :mod:`cyclekit.serve.limits`, so a client that uploads slowly (or stalls)
holds a connection, bounded by ``Limits.max_connections`` and the body timeouts, but never a
place in the queue. There are ``max_pending`` slots (waiting + running); when all are taken the
request is answered ``503`` with a ``Retry-After`` estimate (:class:`DrainEstimate`). At most
``workers`` images are decoded and translated at a time; the others wait as compressed bytes.

The model runs in a fixed pool of ``workers`` threads (one by default). One worker is the right
default on a CPU: PyTorch already spreads one convolution over every core (intra-op threads),
so a second concurrent image would only double the activation memory and split the same cores.
The translators are loaded once and shared; a forward pass in eval mode under
``torch.inference_mode`` mutates nothing, so sharing across workers is safe as well.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import math
import threading
import time
from contextlib import asynccontextmanager
from typing import Any, Callable, Optional


class QueueFull(Exception):
    """All slots are taken; ``retry_after`` is a whole number of seconds worth waiting."""

    def __init__(self, retry_after: int, pending: int) -> None:
        super().__init__(f"the server is busy ({pending} requests queued); try again in {retry_after} s")
        self.retry_after = retry_after


class DrainEstimate:
    """How long one queued job keeps the ones behind it waiting: the basis of ``Retry-After``.

    Two exponential moving averages (weight ``alpha`` on the newest sample, the first sample
    replaces the prior): the worker's seconds per job, and the interval between two slots being
    released while others were waiting (the drain rate as clients see it, which also counts the
    event loop, uploads and responses competing for the same CPUs). The larger wins.
    """

    def __init__(self, prior_s: float = 0.5, alpha: float = 0.3) -> None:
        self.alpha = alpha
        self.job_s: Optional[float] = None
        self.interval_s: Optional[float] = None
        self.prior_s = prior_s
        self._last_release: Optional[float] = None

    def _blend(self, old: Optional[float], new: float) -> float:
        return new if old is None else (1 - self.alpha) * old + self.alpha * new

    def job(self, seconds: float) -> None:
        self.job_s = self._blend(self.job_s, seconds)

    def released(self, now: float, backlog: bool) -> None:
        """A slot was released at ``now``; ``backlog``: another job was already waiting to run."""
        if backlog and self._last_release is not None:
            self.interval_s = self._blend(self.interval_s, now - self._last_release)
        self._last_release = now if backlog else None

    def seconds_per_job(self, workers: int) -> float:
        by_worker = (self.prior_s if self.job_s is None else self.job_s) / workers
        return max(by_worker, self.interval_s or 0.0)


class WorkQueue:
    """``async with queue.slot(): result = await queue.run(fn, *args)``."""

    def __init__(self, max_pending: int = 64, workers: int = 1, threads: Optional[int] = None) -> None:
        if max_pending < 1 or workers < 1:
            raise ValueError("max_pending and workers must be at least 1")
        self.max_pending, self.workers = max_pending, workers
        self.executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix="cyclekit-infer",
            initializer=_set_threads, initargs=(threads,))
        self._lock = threading.Lock()
        self.pending = 0  # requests holding a slot: reading their upload, waiting or running
        self.peak_pending = 0
        self.completed = 0
        self.rejected = 0
        self.estimate = DrainEstimate()

    def retry_after(self, jobs_ahead: Optional[int] = None) -> int:
        """Seconds until ``jobs_ahead`` jobs (default: all pending) have drained, rounded up, at least 1."""
        jobs = self.pending if jobs_ahead is None else jobs_ahead
        return max(1, math.ceil(jobs * self.estimate.seconds_per_job(self.workers) - 1e-9))

    @asynccontextmanager
    async def slot(self):
        with self._lock:
            if self.pending >= self.max_pending:
                self.rejected += 1
                raise QueueFull(self.retry_after(), self.pending)
            self.pending += 1
            self.peak_pending = max(self.peak_pending, self.pending)
        try:
            yield
        finally:
            with self._lock:
                self.pending -= 1
                self.estimate.released(time.monotonic(), backlog=self.pending >= self.workers)

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn(*args)`` on a worker thread and wait for it.

        The executor has ``workers`` threads, so at most that many jobs run at once; the others
        wait in its queue, which holds at most ``max_pending`` jobs because each caller holds a
        slot. A caller cancelled while waiting (client gone) cancels its job before it starts.
        """
        def timed() -> Any:
            t0 = time.perf_counter()
            try:
                return fn(*args)
            finally:
                dt = time.perf_counter() - t0
                with self._lock:
                    self.completed += 1
                    self.estimate.job(dt)

        return await asyncio.wrap_future(self.executor.submit(timed))

    def stats(self) -> dict[str, Any]:
        return {"pending": self.pending, "peak_pending": self.peak_pending, "max_pending": self.max_pending,
                "workers": self.workers, "completed": self.completed, "rejected": self.rejected,
                "seconds_per_job": round(self.estimate.seconds_per_job(self.workers), 4)}

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)


def _set_threads(threads: Optional[int]) -> None:
    """Worker initializer: name the torch thread budget once (``None`` keeps PyTorch's default)."""
    if threads:
        import torch

        torch.set_num_threads(threads)
