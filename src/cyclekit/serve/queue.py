"""A bounded work queue: load can make the server say "busy", never run it out of memory.

Every translation request takes a *slot* before its body is read. There are ``max_pending``
slots (waiting + running); when all are taken the request is answered ``503`` with a
``Retry-After`` estimate at once, without reading its body. So at most ``max_pending`` uploads
(each at most ``Limits.max_upload_bytes``) are ever held in memory, and at most ``workers``
images are decoded and translated at a time.

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
        self._service_s = 0.5  # moving average of one job, for Retry-After

    def retry_after(self) -> int:
        return max(1, math.ceil(self.pending * self._service_s / self.workers))

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
                    self._service_s = 0.8 * self._service_s + 0.2 * dt

        return await asyncio.wrap_future(self.executor.submit(timed))

    def stats(self) -> dict[str, Any]:
        return {"pending": self.pending, "peak_pending": self.peak_pending, "max_pending": self.max_pending,
                "workers": self.workers, "completed": self.completed, "rejected": self.rejected,
                "mean_service_s": round(self._service_s, 4)}

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)


def _set_threads(threads: Optional[int]) -> None:
    """Worker initializer: name the torch thread budget once (``None`` keeps PyTorch's default)."""
    if threads:
        import torch

        torch.set_num_threads(threads)
