"""Stopping a run cleanly: SIGINT/SIGTERM finish the current step, save, and say how to resume
(during a resume's checkpoint load: stop right after it, the checkpoint unchanged)."""
from __future__ import annotations

import logging
import os
import signal
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

log = logging.getLogger("cyclekit.train.loop")  # the loop's messages, under its name as before


class TrainingInterrupted(Exception):
    """Raised after a clean stop on SIGINT/SIGTERM; the checkpoint is saved (or, ``while_resuming``,
    the one just read is unchanged)."""

    def __init__(self, run_dir: Path, step: int, command: Optional[str] = None, while_resuming: bool = False) -> None:
        command = command or f"cyclekit train --resume {run_dir}"
        done = (f"while resuming at step {step}; its checkpoint is unchanged" if while_resuming
                else f"at step {step}; checkpoint saved")
        super().__init__(f"training stopped {done}. Continue with: {command}")


class StopSignals:
    """SIGINT/SIGTERM ask the loop to stop after the current step and save a checkpoint."""

    def __init__(self) -> None:
        self.requested = False
        self.ignoring = False

    def ignore_from_now(self) -> None:
        """Ignore SIGINT/SIGTERM for the rest of this process, also after ``installed()`` ends.

        For a torchrun rank that lost a peer: the launcher SIGTERMs the surviving ranks as soon as
        one dies, and that signal must not cut off the one line saying which checkpoint is intact.
        The process exits right after; the launcher SIGKILLs it after its shutdown timeout if not."""
        if "TORCHELASTIC_RUN_ID" not in os.environ:  # not under torchrun's agent: nobody SIGTERMs us
            return
        self.ignoring = True
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                signal.signal(sig, signal.SIG_IGN)
            except ValueError:  # not in the main thread
                pass

    @contextmanager
    def installed(self):
        old = {}

        def handler(signum, frame):
            if self.requested:  # second signal: give up immediately
                raise KeyboardInterrupt
            self.requested = True
            log.warning("stop requested: stopping at the end of this step, with a checkpoint")

        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                old[sig] = signal.signal(sig, handler)
            except ValueError:  # not in the main thread
                pass
        try:
            yield self
        finally:
            if not self.ignoring:
                for sig, h in old.items():
                    signal.signal(sig, h)
