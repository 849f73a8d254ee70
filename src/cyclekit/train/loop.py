"""The training loop: data order, logging, stopping, checkpoints and the release, around an
objective (:mod:`cyclekit.train.objective`) that owns the networks and the update.

Resuming is exact: data order and augmentation are pure functions of (seed, epoch, index), and
the RNG, optimizer, scheduler and history-pool states are saved, so training N steps in one go
or in pieces with a kill in between gives identical weights on CPU.

Under ``torchrun`` (:mod:`cyclekit.train.parallel.ddp`) every rank runs this same loop on its
shard of each epoch; rank 0 alone writes the run directory and shows progress. The checkpoint
keeps every rank's history pools and RNG state (``other_ranks``), so a resume on the same number
of ranks is exact, and it records the position in the epoch in samples (``samples_in_epoch``),
so it also resumes on a different number of ranks or batch size.
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import torch

from cyclekit import runtime
from cyclekit.config import Config
from cyclekit.data.domains import domain_names
from cyclekit.errors import ConfigError, DataError, OutputError
from cyclekit.io.files import remove_stale_temps
from cyclekit.release import RELEASE_DIR
from cyclekit.train.hooks import StepHook, StepView
from cyclekit.train.init_from import inherited_info
from cyclekit.train.signals import StopSignals, TrainingInterrupted
from cyclekit.train.objective import CycleGAN
from cyclekit.train.parallel import ddp
from cyclekit.train.rundir import RunLog, check_test_headers, sample_tensors, write_samples
from cyclekit.train.state import FORMAT, STATE_FILE, load_training_state, rng_state, save_training_state, set_rng_state

log = logging.getLogger(__name__)


def _no_init_from(_release: str) -> None:
    raise ConfigError("--init-from is only for cyclekit train (CycleGAN); leave it empty")


class Trainer:
    """Builds the data and the objective from a Config and runs the loop; ``fit()`` returns the run directory.

    ``hooks`` are called after every step (see :mod:`cyclekit.train.hooks`); ``objective`` is
    built as ``objective(cfg, device, dist, steps_per_epoch)`` (default: CycleGAN);
    ``release_info`` goes into every release's metadata (e.g. ``faces.json``'s tone for ``swap``).
    """

    def __init__(self, cfg: Config, resume: bool = False, hooks: Sequence[StepHook] = (),
                 objective: Callable[..., Any] = CycleGAN, release_info: Optional[dict] = None) -> None:
        cfg.validate()
        t = cfg.train
        self.cfg, self.run_dir, self.resume, self.hooks = cfg, Path(t.run_dir), resume, list(hooks)
        self.release_info = dict(release_info or {})  # written into every release's metadata
        if t.init_from:  # a fine-tuned model keeps its source's licence and attribution
            self.release_info = {**inherited_info(t.init_from, t.run_dir), **self.release_info}
        runtime.set_threads(t.threads)
        self.dist = ddp.setup(t.device, t.dist_timeout)  # world size 1 outside torchrun
        self.is_main = self.dist.is_main  # only rank 0 writes files, logs metrics, shows progress
        self.device = self.dist.device or runtime.pick_device(t.device)
        runtime.setup_backend(self.device)  # cudnn autotuning and TF32 on CUDA
        torch.manual_seed(t.seed)
        from cyclekit.data.datasets import UnpairedDataset

        self.dataset = UnpairedDataset.from_config(cfg.data, cfg.model, seed=t.seed, phase="train")
        self.dataset.validate()  # decode every file once: a broken file fails now, named, not hours in
        # One iteration consumes the global batch (batch_size per rank x ranks) from the epoch's order.
        self.global_batch = t.batch_size * self.dist.world_size
        self.steps_per_epoch = len(self.dataset) // self.global_batch
        if self.steps_per_epoch < 1:
            raise DataError(
                f"the global batch (--batch-size {t.batch_size} x {self.dist.world_size} ranks) is larger "
                f"than the dataset ({len(self.dataset)} images per epoch); lower --batch-size, use fewer "
                "ranks or add images"
            )
        self._samples = None  # the fixed images of the sample grids (rank 0)
        if self.is_main:  # every file the run will read, checked before the first step
            check_test_headers(cfg.data)
            if t.sample_every_epochs:
                self._samples = sample_tensors(cfg, n=4)
        self.objective = objective(cfg, self.device, self.dist, self.steps_per_epoch)
        if t.init_from and not resume:  # every rank reads the same file; a resume reads its checkpoint
            getattr(self.objective, "start_from", _no_init_from)(t.init_from)
        self.epoch = 0  # current epoch (0-based)
        self.step_in_epoch = 0  # iterations done in the current epoch
        self.global_step = 0  # iterations done in total
        self.samples_in_epoch = 0  # images of this epoch's order consumed by all ranks together
        self.last_saved_step: Optional[int] = None
        self._saved_at = time.monotonic()  # when the last checkpoint was written (or this process began)
        self.total_epochs = t.n_epochs + t.n_epochs_decay
        # --lr-step-unit time: the budget is the whole run's, so the training seconds of earlier
        # processes are saved and counted; the epochs then bound nothing.
        self.by_time = t.lr_step_unit == "time"
        self.seconds_before = 0.0  # training time of earlier processes of this run
        self._started = time.monotonic()
        self.out_of_time = False
        self.runlog: Optional[RunLog] = None

    # ------------------------------------------------------------------ the loop
    def fit(self) -> Path:
        clean = False
        signals = StopSignals()
        try:
            with signals.installed():  # a peer failure is reported under them: torchrun's SIGTERM follows it
                try:
                    if self.resume:
                        self.load_state_dict(self._read_state())
                        log.info("resumed %s at step %d (epoch %d)", self.run_dir, self.global_step, self.epoch + 1)
                        if ddp.any_rank(self.dist, [signals.requested])[0]:  # asked to stop while it loaded:
                            raise TrainingInterrupted(self.run_dir, self.global_step,  # its checkpoint is the last
                                                      getattr(self.objective, "resume_command", None),
                                                      while_resuming=True)
                    if self.is_main:  # the other ranks never touch the run directory
                        remove_stale_temps(self.run_dir)  # left by a run that was killed while writing
                        self.runlog = RunLog(self.cfg, self.global_step if self.resume else None)
                    try:
                        self._loop(signals)
                    finally:
                        if self.runlog is not None:
                            self.runlog.close()
                except Exception as exc:
                    if self.dist.enabled and ddp.is_peer_failure(exc):
                        signals.ignore_from_now()
                        log.debug("collective failed", exc_info=True)
                        msg = ddp.lost_peer_message(self.dist, exc, self.last_saved_step, str(self.run_dir))
                        raise ddp.LostPeerError(msg) from None
                    raise
            clean = True
        except TrainingInterrupted:
            clean = True
            raise
        finally:
            if clean:  # after a peer failure the group cannot be shut down politely; exiting frees it
                ddp.teardown(self.dist)
        return self.run_dir

    def _loop(self, signals: StopSignals) -> None:
        t = self.cfg.train
        self._started = time.monotonic()
        left = t.max_minutes * 60 - (self.seconds_before if self.by_time else 0.0)
        deadline = self._started + left if t.max_minutes else None
        self._rate_mark = (time.perf_counter(), self.global_step)
        batches = bar = None
        while not self._finished():
            if batches is None:
                batches, bar = self._open_epoch()
            batch = None if self._epoch_done() else next(batches, None)
            stop = False
            if batch is not None:
                losses = self.objective.step(batch)
                self.global_step += 1
                self.step_in_epoch += 1
                self.samples_in_epoch += self.global_batch
                self._advance_schedules("step")
                bar.update(1)
                stop = self.should_stop(signals.requested, deadline)
                if self.global_step % t.log_every == 0:
                    self._log_losses(losses, bar)
                self._run_hooks()
            epoch_end = batch is None or self._epoch_done()
            if epoch_end:
                bar.close()
                batches = None
                self._end_epoch()
            periodic = batch is not None and t.save_every and self.global_step % t.save_every == 0
            epoch_end_save = epoch_end
            if epoch_end and t.save_minutes:  # a fast GPU on a small set: an epoch every second or two
                (waited,) = ddp.max_across_ranks(self.dist, [time.monotonic() - self._saved_at])  # ranks agree
                epoch_end_save = waited >= t.save_minutes * 60
            if periodic or stop or epoch_end_save or self._finished():
                self.save()
            if epoch_end:  # after the checkpoint: a failure here cannot lose the epoch
                self._write_samples(self.epoch)
            if stop:
                bar.close()
                raise TrainingInterrupted(self.run_dir, self.global_step,
                                          getattr(self.objective, "resume_command", None))
        if bar is not None:
            bar.close()

    def should_stop(self, requested: bool, deadline: Optional[float]) -> bool:
        """Whether to stop after this step, the same answer on every rank (one tiny all-reduce
        under torchrun): a signal asked for it, or the time limit passed (then the run finishes)."""
        late = deadline is not None and time.monotonic() > deadline
        if self.by_time:  # every rank moves its schedule to the same (the slowest clock's) point
            requested, late, spent = ddp.max_across_ranks(self.dist, [requested, late, self.seconds_trained()])
            requested, late = requested > 0, late > 0
            self.objective.set_progress(spent / (self.cfg.train.max_minutes * 60))
        else:
            requested, late = ddp.any_rank(self.dist, [requested, late])
        if late and not self.out_of_time:
            log.info("--max-minutes %.1f reached at step %d", self.cfg.train.max_minutes, self.global_step)
            self.out_of_time = True
        return requested

    def seconds_trained(self) -> float:
        """Wall time this run has trained, over all its processes."""
        return self.seconds_before + time.monotonic() - self._started

    def _finished(self) -> bool:
        t = self.cfg.train
        out_of_epochs = self.epoch >= self.total_epochs and not self.by_time
        return bool(self.out_of_time or (t.max_steps and self.global_step >= t.max_steps) or out_of_epochs)

    def _epoch_done(self) -> bool:
        """Not enough of the epoch's order left for another global batch (drop_last, over all ranks)."""
        return self.samples_in_epoch + self.global_batch > len(self.dataset)

    def _open_epoch(self):
        from torch.utils.data import DataLoader
        from tqdm.auto import tqdm

        from cyclekit.data.datasets import EpochSampler

        t = self.cfg.train
        self.dataset.set_epoch(self.epoch)
        # Rank r takes items r, r+N, ... of the order from the global position: together the
        # ranks consume the same contiguous global batch a single process of batch N*b would.
        sampler = EpochSampler(self.dataset, self.epoch, start=self.samples_in_epoch,
                               rank=self.dist.rank, world_size=self.dist.world_size)
        # The loader draws its workers' base seed from this generator rather than the global
        # RNG, so creating a loader on resume does not shift the training randomness.
        loader = DataLoader(
            self.dataset, batch_size=t.batch_size, sampler=sampler, drop_last=True,
            num_workers=self.cfg.data.num_workers, pin_memory=self.device.type == "cuda",
            generator=torch.Generator().manual_seed(t.seed * 100_003 + self.epoch),
        )
        bar = tqdm(
            total=self.steps_per_epoch, initial=self.step_in_epoch, disable=not (t.progress and self.is_main),
            desc=f"{self.objective.name} epoch {self.epoch + 1}" + ("" if self.by_time else f"/{self.total_epochs}"),
            unit="it", dynamic_ncols=True,
        )
        return iter(loader), bar

    def _run_hooks(self) -> None:
        """After-step hooks (validation): if one fails, the steps since the last checkpoint are
        saved first, then the error is raised."""
        view = self._view()
        try:
            for hook in self.hooks:
                hook.after_step(view)
        except Exception:
            if self.last_saved_step != self.global_step:
                log.warning("an after-step hook failed at step %d; saving a checkpoint first", self.global_step)
                self.save()
            raise

    def _write_samples(self, epochs_done: int) -> None:
        every = self.cfg.train.sample_every_epochs
        if self.is_main and every and epochs_done % every == 0 and self._samples is not None:
            path = self.run_dir / "samples" / f"epoch_{epochs_done:04d}.png"
            write_samples(path, self.objective.generators, self._samples, self.device)

    def _end_epoch(self) -> None:
        self._advance_schedules("epoch")
        self.epoch += 1
        self.step_in_epoch = 0
        self.samples_in_epoch = 0

    def _advance_schedules(self, unit: str) -> None:
        if self.objective.lr_step_unit == unit:
            for sched in self.objective.schedulers:
                sched.step()

    # ------------------------------------------------------------------ logging
    def _log_losses(self, losses: dict[str, torch.Tensor], bar) -> None:
        now, (then, last_step) = time.perf_counter(), self._rate_mark
        rate = (self.global_step - last_step) * self.global_batch / max(now - then, 1e-9)
        self._rate_mark = (now, self.global_step)
        if self.dist.enabled:  # log the global batch's losses, as one process of batch N*b would
            losses = ddp.mean_across_ranks(losses)
        row = {k: round(float(v), 6) for k, v in losses.items()}  # the one host sync, at log steps only
        bar.set_postfix({k: f"{row[k]:.3f}" for k in self.objective.progress_keys if k in row})
        self.log_row({"step": self.global_step, "epoch": self.epoch + 1, **row,
                      "lr": self.objective.lr(), "pairs_per_s": round(rate, 4)})

    def log_row(self, row: dict[str, Any]) -> None:
        """Append a row to metrics.jsonl (and TensorBoard); a no-op on ranks > 0."""
        if self.runlog is not None:
            self.runlog.write(row)

    def _view(self) -> StepView:
        return StepView(self.objective.generators, self.device, self.global_step, self.epoch, self.log_row)

    # ------------------------------------------------------------------ checkpoints
    def rank_state(self) -> dict[str, Any]:
        """What differs between ranks: the objective's per-rank entries (history pools) and the RNG."""
        full = self.objective.state_dict()
        return {**{k: full[k] for k in self.objective.rank_keys}, "rng": rng_state()}

    def state_dict(self) -> dict[str, Any]:
        """The resumable state. Under torchrun this is collective (every rank must call it) and
        only rank 0's copy is complete: it holds rank 0's pools and RNG at the top level, as a
        1-process run does, and ranks 1..N-1's in ``other_ranks``."""
        shared = self.objective.state_dict()
        mine = {**{k: shared.pop(k) for k in self.objective.rank_keys}, "rng": rng_state()}
        others: list = []
        if self.dist.enabled:
            everyone = ddp.gather_to_main(self.dist, mine)
            others = everyone[1:] if everyone else []
        state = {
            "format": FORMAT, "config": json.dumps(self.cfg.to_dict()), **shared, **mine,
            "epoch": self.epoch, "step_in_epoch": self.step_in_epoch, "global_step": self.global_step,
            "samples_in_epoch": self.samples_in_epoch, "world_size": self.dist.world_size,
            "other_ranks": others, "seconds_trained": self.seconds_trained(),
        }
        for hook in self.hooks:
            if hook.name:
                state[hook.name] = hook.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        saved = json.loads(state["config"])
        # face_margin and image_size describe the training crops, not the networks' weights: a
        # re-prepared faces.json may change them without breaking the checkpoint.
        described = ("face_margin", "image_size")
        now = {k: v for k, v in self.cfg.to_dict()["model"].items() if k not in described}
        then = {k: v for k, v in saved["model"].items() if k not in described}
        if then != now:
            changed = sorted(k for k in set(now) | set(then) if now.get(k) != then.get(k))
            raise ConfigError(
                f"the model options differ from the checkpoint's ({', '.join(changed)}); resume without "
                "changing them (or start a new run)"
            )
        self.objective.load_state_dict(state)
        if state.get("rng") is not None:  # None: a rank the checkpoint did not have
            set_rng_state(state["rng"])
        for hook in self.hooks:
            if hook.name:
                hook.load_state_dict(state.get(hook.name))
        self.epoch = int(state["epoch"])
        self.step_in_epoch = int(state["step_in_epoch"])
        self.global_step = int(state["global_step"])
        self.seconds_before = float(state.get("seconds_trained", 0.0))
        saved_world = int(state.get("world_size", 1))
        saved_batch = int(saved["train"]["batch_size"]) * saved_world
        self.samples_in_epoch = int(state.get("samples_in_epoch", self.step_in_epoch * saved_batch))
        self.last_saved_step = self.global_step
        if saved_batch != self.global_batch:
            # The position in the epoch is kept in samples; iterations are counted in global batches.
            self.step_in_epoch = self.samples_in_epoch // self.global_batch
            if self.is_main:
                log.warning(
                    "checkpoint trained with a global batch of %d (%d rank(s)); continuing with %d (%d rank(s)) "
                    "from sample %d of epoch %d", saved_batch, saved_world, self.global_batch,
                    self.dist.world_size, self.samples_in_epoch, self.epoch + 1,
                )
            self.objective.retime(self.steps_per_epoch, self.epoch * self.steps_per_epoch + self.step_in_epoch)

    def _read_state(self) -> dict[str, Any]:
        """Read the training state to resume from. Under torchrun rank 0 reads the file and hands
        every rank the shared part and its own pools/RNG; a rank the checkpoint did not have (it
        was saved by fewer ranks) keeps the fresh pools and RNG derived from (seed, rank)."""
        path = self.run_dir / STATE_FILE
        if not self.dist.enabled:  # on the CPU: RNG states must stay there; every load copies to its device
            state = load_training_state(path, map_location="cpu")
            if int(state.get("world_size", 1)) > 1:
                log.info("resuming a %d-rank checkpoint in one process: rank 0's history pools and RNG "
                         "are used, the other ranks' are dropped", state["world_size"])
            return state
        keys = (*self.objective.rank_keys, "rng")
        return ddp.read_state_on_ranks(self.dist, lambda: load_training_state(path, map_location="cpu"), keys)

    def save(self) -> None:
        """The one save: training state and release. Collective under torchrun (every rank sends
        its pools and RNG); rank 0 writes."""
        state = self.state_dict()
        if self.is_main:
            path = self.run_dir / STATE_FILE
            try:
                save_training_state(path, state)
                meta = {**self.release_info, "domains": list(domain_names(self.cfg.data)), "epoch": self.epoch,
                        "global_step": self.global_step}
                self.objective.release(self.run_dir / RELEASE_DIR, meta)
            except OutputError as exc:  # e.g. a full disk: say what is still safe
                intact = (f"the checkpoint of step {self.last_saved_step} ({path}) is intact; resume from it "
                          f"with: cyclekit train --resume {self.run_dir}" if self.last_saved_step is not None
                          else "no checkpoint of this run was saved yet")
                raise OutputError(f"{exc}; {intact}") from None
            log.info("checkpoint saved at step %d (%d epoch(s) done)", self.global_step, self.epoch)
        self.last_saved_step = self.global_step
        self._saved_at = time.monotonic()
