"""The training loop: data, networks, optimizers, logging, samples and checkpoints.

A run directory holds::

    config.json              the resolved configuration (what `--resume` reads back)
    metrics.jsonl            one JSON row per logging interval: every loss term, lr, pairs/s
    samples/epoch_0001.png   real | translated | reconstructed, both directions
    checkpoints/last.pt      resumable state (weights_only-loadable)
    model/                   release: config.json + model.safetensors (both generators)
    tensorboard/             when --tensorboard is on

Resuming is exact: data order and augmentation are pure functions of (seed, epoch, index),
and the RNG, optimizer, scheduler and history-pool states are saved, so training N steps in one
go or in pieces with a kill in between gives identical weights on CPU.

Under ``torchrun`` (see :mod:`cyclekit.train.distributed`) every rank runs this same loop on its
shard of each epoch; rank 0 alone writes the run directory and shows progress. The checkpoint
keeps every rank's history pools and RNG state (``other_ranks``), so a resume on the same number
of ranks is exact, and it records the position in the epoch in samples (``samples_in_epoch``),
so it also resumes on a different number of ranks or batch size.
"""
from __future__ import annotations

import json
import logging
import signal
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Optional

import torch

from cyclekit.checkpoint import (
    RELEASE_DIR, STATE_FILE, load_training_state, rng_state, save_release, save_training_state,
    set_rng_state, unwrap,
)
from cyclekit.config import Config, atomic_write_text
from cyclekit.errors import ConfigError, DataError
from cyclekit.losses import GANLoss
from cyclekit.train import distributed, fast
from cyclekit.train.pool import ImagePool
from cyclekit.train.schedule import make_scheduler
from cyclekit.train.step import CycleGANNets, StepState, make_optimizers, train_step

log = logging.getLogger(__name__)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda was asked for but no CUDA GPU is available; use --device cpu")
    return torch.device(name)


def autocast_dtype(precision: str, device: torch.device, macs: Optional[float] = None) -> Optional[torch.dtype]:
    """The autocast dtype for ``--precision`` (``auto``: bf16 on CPUs with native bf16 unless the
    model is tiny (``macs``), bf16 on Ampere+ GPUs, fp16 on older GPUs, else fp32 = None); see
    :mod:`cyclekit.train.fast`."""
    from cyclekit.train.fast import precision_dtype

    return precision_dtype(precision, device, macs)


class _StopFlag:
    """SIGINT/SIGTERM ask the loop to stop after the current step and save a checkpoint."""

    def __init__(self) -> None:
        self.requested = False

    @contextmanager
    def installed(self):
        old = {}

        def handler(signum, frame):
            if self.requested:  # second signal: give up immediately
                raise KeyboardInterrupt
            self.requested = True
            log.warning("stop requested: finishing this step and saving a checkpoint")

        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                old[sig] = signal.signal(sig, handler)
            except ValueError:  # not in the main thread
                pass
        try:
            yield self
        finally:
            for sig, h in old.items():
                signal.signal(sig, h)


class Trainer:
    """Builds everything from a Config and runs the loop. ``fit()`` returns the run directory."""

    def __init__(self, cfg: Config, resume: bool = False, step_hook: Optional[Callable] = None) -> None:
        cfg.validate()
        from cyclekit.faces.params import apply_dataset_face_params

        apply_dataset_face_params(cfg)  # `data faces` crops: their margin travels with the model
        self.cfg = cfg
        self.run_dir = Path(cfg.train.run_dir)
        self.resume = resume
        self.step_hook = step_hook  # called as hook(trainer, step) after every iteration (tests, eval)
        t = cfg.train
        if t.threads > 0:
            torch.set_num_threads(t.threads)
        self.dist = distributed.setup(t.device, t.dist_timeout)  # world size 1 outside torchrun
        self.is_main = self.dist.is_main  # only rank 0 writes files, logs metrics, shows progress
        self.device = self.dist.device or pick_device(t.device)
        macs = fast.generator_macs(cfg.model, t.batch_size, cfg.data.crop_size) if t.precision == "auto" else None
        self.amp_dtype = autocast_dtype(t.precision, self.device, macs)
        fast.setup_backend(self.device)  # cudnn autotuning and TF32 on CUDA
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

        self.nets = CycleGANNets(cfg.model)
        from cyclekit.nn import init_weights

        for net in (self.nets.G_AB, self.nets.G_BA, self.nets.D_A, self.nets.D_B):
            init_weights(net, cfg.model.init, cfg.model.init_gain)
        if self.dist.enabled:  # batch statistics over the global batch (no-op for instance norm)
            self.nets, n_bn = distributed.convert_sync_batchnorm(self.nets, self.device)
            if n_bn and self.is_main:
                log.info("synchronised batch norm over %d ranks (%d layers)", self.dist.world_size, n_bn)
        self.nets.to(self.device)
        if t.channels_last:
            self.nets.to(memory_format=torch.channels_last)
        self.grad_sync = None
        if self.dist.enabled:
            distributed.broadcast_module(self.nets)  # start from rank 0's weights, whatever happened
            self.grad_sync = distributed.GradSync(self.dist.world_size)
            if self.dist.rank > 0:  # own dropout stream per rank; rank 0 keeps the 1-process stream
                torch.manual_seed(distributed.rank_seed(t.seed, self.dist.rank))
        self.opt_G, self.opt_D = fast.make_optimizers(  # fused Adam; capturable for CUDA graphs
            self.nets, t, self.device, cuda_graphs=t.cuda_graphs and self.device.type == "cuda" and not self.dist.enabled)
        self.sched_G = make_scheduler(self.opt_G, t, self.steps_per_epoch)
        self.sched_D = make_scheduler(self.opt_D, t, self.steps_per_epoch)
        # History pools are per rank: each holds its own rank's fakes, with its own random stream.
        r = self.dist.rank
        self.pool_A = ImagePool(t.pool_size, seed=t.seed * 2 + 1 if r == 0 else distributed.rank_seed(t.seed, r, 1))
        self.pool_B = ImagePool(t.pool_size, seed=t.seed * 2 + 2 if r == 0 else distributed.rank_seed(t.seed, r, 2))
        scaler = None
        if self.amp_dtype == torch.float16:
            scaler = torch.amp.GradScaler("cuda")
        self.step_state = StepState(
            nets=self.nets, opt_G=self.opt_G, opt_D=self.opt_D, pool_A=self.pool_A, pool_B=self.pool_B,
            gan_loss=GANLoss(t.gan_loss), scaler=scaler, autocast_dtype=self.amp_dtype,
            grad_sync=self.grad_sync,
        )
        # train_step, on compiled views of the networks (--compile) or replayed as a CUDA graph
        # (--cuda-graphs); self.nets, which is saved, is never wrapped.
        self.step_fn = fast.make_step_fn(self.step_state, t, self.device)
        self.epoch = 0  # current epoch (0-based)
        self.step_in_epoch = 0  # iterations done in the current epoch
        self.global_step = 0  # iterations done in total
        self.samples_in_epoch = 0  # images of this epoch's order consumed by all ranks together
        self.last_saved_step: Optional[int] = None
        self.total_epochs = t.n_epochs + t.n_epochs_decay
        self.tb = None
        self._samples = None
        self.out_of_time = False
        from cyclekit.metrics.validation import make_validator

        # --val-every: held-out metrics in metrics.jsonl and run_dir/best/ (rank 0 only; it never
        # touches the training RNG or state, see cyclekit.metrics.validation).
        self.validator = make_validator(cfg) if self.is_main else None

    # ------------------------------------------------------------------ state
    def _rank_state(self) -> dict[str, Any]:
        """What differs between ranks: the history pools and the RNG streams."""
        return {"pool_A": self.pool_A.state_dict(), "pool_B": self.pool_B.state_dict(), "rng": rng_state()}

    def state_dict(self) -> dict[str, Any]:
        """The resumable state. Under torchrun this is collective (every rank must call it) and
        only rank 0's copy is complete: it holds rank 0's pools and RNG at the top level, as a
        1-process run does, and ranks 1..N-1's in ``other_ranks``."""
        nets = unwrap(self.nets)
        mine = self._rank_state()
        others: list = []
        if self.dist.enabled:
            everyone = distributed.gather_to_main(self.dist, mine)
            others = everyone[1:] if everyone else []
        return {
            "format": 1,
            "config": json.dumps(self.cfg.to_dict()),
            "nets": {k: unwrap(getattr(nets, k)).state_dict() for k in ("G_AB", "G_BA", "D_A", "D_B")},
            "opt_G": self.opt_G.state_dict(), "opt_D": self.opt_D.state_dict(),
            "sched_G": self.sched_G.state_dict(), "sched_D": self.sched_D.state_dict(),
            "pool_A": mine["pool_A"], "pool_B": mine["pool_B"],
            "scaler": self.step_state.scaler.state_dict() if self.step_state.scaler else None,
            "rng": mine["rng"],
            "epoch": self.epoch, "step_in_epoch": self.step_in_epoch, "global_step": self.global_step,
            "samples_in_epoch": self.samples_in_epoch, "world_size": self.dist.world_size,
            "other_ranks": others,
            "validation": self.validator.state_dict() if self.validator is not None else None,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        saved = json.loads(state["config"])
        if saved["model"] != self.cfg.to_dict()["model"]:
            raise ConfigError(
                "the model options differ from the checkpoint's; resume without changing model options"
            )
        nets = unwrap(self.nets)
        for k in ("G_AB", "G_BA", "D_A", "D_B"):
            unwrap(getattr(nets, k)).load_state_dict(state["nets"][k])
        self.opt_G.load_state_dict(state["opt_G"])
        self.opt_D.load_state_dict(state["opt_D"])
        self.sched_G.load_state_dict(state["sched_G"])
        self.sched_D.load_state_dict(state["sched_D"])
        if state.get("pool_A") is not None:  # None: a rank the checkpoint did not have (see _read_state)
            self.pool_A.load_state_dict(state["pool_A"], self.device)
            self.pool_B.load_state_dict(state["pool_B"], self.device)
        if self.step_state.scaler is not None and state.get("scaler"):
            self.step_state.scaler.load_state_dict(state["scaler"])
        if state.get("rng") is not None:
            set_rng_state(state["rng"])
        self.epoch = int(state["epoch"])
        self.step_in_epoch = int(state["step_in_epoch"])
        self.global_step = int(state["global_step"])
        if self.validator is not None:
            self.validator.load_state_dict(state.get("validation"))
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
            if self.cfg.train.lr_step_unit == "step":  # per-iteration schedule: re-time it to the new epoch length
                for sched in (self.sched_G, self.sched_D):
                    distributed.retime_scheduler(sched, self.cfg.train, self.steps_per_epoch,
                                                 self.epoch * self.steps_per_epoch + self.step_in_epoch)

    def _read_state(self) -> dict[str, Any]:
        """Read the training state to resume from. Under torchrun rank 0 reads the file and hands
        every rank the shared part and its own pools/RNG; a rank the checkpoint did not have (it
        was saved by fewer ranks) keeps the fresh pools and RNG derived from (seed, rank)."""
        path = self.run_dir / STATE_FILE
        if not self.dist.enabled:
            state = load_training_state(path, map_location=self.device)
            if int(state.get("world_size", 1)) > 1:
                log.info("resuming a %d-rank checkpoint in one process: rank 0's history pools and RNG "
                         "are used, the other ranks' are dropped", state["world_size"])
            return state
        return distributed.read_state_on_ranks(self.dist, lambda: load_training_state(path, map_location="cpu"))

    def save_checkpoint(self) -> None:
        """Collective under torchrun (every rank sends its pools and RNG); rank 0 writes."""
        state = self.state_dict()
        if self.is_main:
            save_training_state(self.run_dir / STATE_FILE, state)
            nets = unwrap(self.nets)
            save_release(
                self.run_dir / RELEASE_DIR, self.cfg, nets.G_AB, nets.G_BA,
                meta={"epoch": self.epoch, "global_step": self.global_step},
            )
            log.info("checkpoint saved at step %d (%d epoch(s) done)", self.global_step, self.epoch)
        self.last_saved_step = self.global_step

    # ------------------------------------------------------------------ logging
    def _open_logs(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.cfg.save(self.run_dir / "config.json")
        metrics = self.run_dir / "metrics.jsonl"
        if self.resume and metrics.exists():
            # Drop rows written after the checkpoint we resume from, so the log has no duplicates.
            keep = []
            for line in metrics.read_text(encoding="utf-8").splitlines():
                try:
                    if json.loads(line).get("step", 0) <= self.global_step:
                        keep.append(line)
                except json.JSONDecodeError:
                    continue  # a row cut short by the crash
            atomic_write_text(metrics, "".join(l + "\n" for l in keep))
        elif metrics.exists():
            metrics.unlink()
        self._metrics = open(metrics, "a", encoding="utf-8")
        if self.cfg.train.tensorboard:
            from cyclekit.errors import require

            require("tensorboard", "tensorboard", "--tensorboard")
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(self.run_dir / "tensorboard"), purge_step=self.global_step + 1)

    def log_metrics(self, row: dict[str, Any]) -> None:
        self._metrics.write(json.dumps(row) + "\n")
        self._metrics.flush()
        if self.tb is not None:
            for k, v in row.items():
                if isinstance(v, (int, float)) and k not in ("step", "epoch"):
                    self.tb.add_scalar(k, v, row["step"])

    def _close_logs(self) -> None:
        self._metrics.close()
        if self.tb is not None:
            self.tb.close()

    # ------------------------------------------------------------------ samples
    def sample_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """A fixed set of up to 4 images per domain (test images when there are any)."""
        if self._samples is None:
            self._samples = sample_tensors(self.cfg, n=4)
        return self._samples

    @torch.no_grad()
    def write_samples(self) -> Path:
        from cyclekit.data.images import save_image, to_image

        real_A, real_B = (x.to(self.device) for x in self.sample_batch())
        nets = unwrap(self.nets)
        nets.eval()
        try:
            fake_B = nets.G_AB(real_A)
            rec_A = nets.G_BA(fake_B)
            fake_A = nets.G_BA(real_B)
            rec_B = nets.G_AB(fake_A)
        finally:
            nets.train()
        rows = []
        for triple in ((real_A, fake_B, rec_A), (real_B, fake_A, rec_B)):
            rows.append(_grid_row([t.float().cpu() for t in triple]))
        grid = _stack_rows(rows)
        path = self.run_dir / "samples" / f"epoch_{self.epoch + 1:04d}.png"
        save_image(path, to_image(grid))
        return path

    # ------------------------------------------------------------------ loop
    def fit(self) -> Path:
        clean = False
        try:
            if self.resume:
                self.load_state_dict(self._read_state())
                log.info("resumed %s at step %d (epoch %d)", self.run_dir, self.global_step, self.epoch + 1)
            if self.is_main:  # the other ranks never touch the run directory
                self._open_logs()
            stop = _StopFlag()
            try:
                with stop.installed():
                    self._loop(stop)
            finally:
                if self.is_main:
                    self._close_logs()
            clean = True
        except TrainingInterrupted:
            clean = True
            raise
        except Exception as exc:
            if self.dist.enabled and distributed.is_peer_failure(exc):
                log.debug("collective failed", exc_info=True)
                msg = distributed.lost_peer_message(self.dist, exc, self.last_saved_step, str(self.run_dir))
                raise distributed.LostPeerError(msg) from None
            raise
        finally:
            if clean:  # after a peer failure the group cannot be shut down politely; exiting frees it
                distributed.teardown(self.dist)
        return self.run_dir

    def _epoch_done(self) -> bool:
        """Not enough of the epoch's order left for another global batch (drop_last, over all ranks)."""
        return self.samples_in_epoch + self.global_batch > len(self.dataset)

    def _finished(self) -> bool:
        t = self.cfg.train
        return bool(
            self.out_of_time or (t.max_steps and self.global_step >= t.max_steps) or self.epoch >= self.total_epochs
        )

    def _loop(self, stop: _StopFlag) -> None:
        from torch.utils.data import DataLoader
        from tqdm.auto import tqdm

        from cyclekit.data.datasets import EpochSampler

        t = self.cfg.train
        unit_step = t.lr_step_unit == "step"
        last_time, last_step = time.perf_counter(), self.global_step
        deadline = time.monotonic() + t.max_minutes * 60 if t.max_minutes else None
        while not self._finished():
            self.dataset.set_epoch(self.epoch)
            # Rank r takes items r, r+N, ... of the order from the global position: together the
            # ranks consume the same contiguous global batch a single process of batch N*b would.
            sampler = EpochSampler(self.dataset, self.epoch, start=self.samples_in_epoch,
                                   rank=self.dist.rank, world_size=self.dist.world_size)
            # The loader draws its workers' base seed from this generator rather than the global
            # RNG, so creating a loader on resume does not shift the training randomness.
            loader_rng = torch.Generator().manual_seed(t.seed * 100_003 + self.epoch)
            loader = DataLoader(
                self.dataset, batch_size=t.batch_size, sampler=sampler, drop_last=True,
                num_workers=self.cfg.data.num_workers, pin_memory=self.device.type == "cuda",
                generator=loader_rng,
            )
            bar = tqdm(
                total=self.steps_per_epoch, initial=self.step_in_epoch, disable=not (t.progress and self.is_main),
                desc=f"epoch {self.epoch + 1}/{self.total_epochs}", unit="it", dynamic_ncols=True,
            )
            stopping = False  # under torchrun: only what all ranks agreed on (see GradSync flags)
            for batch in loader:
                if self._epoch_done():  # under torchrun the sampler pads the tail: stop at the real end
                    break
                if self.grad_sync is not None:  # local requests, summed with the generator gradients
                    late = deadline is not None and time.monotonic() > deadline
                    self.grad_sync.flags = [float(stop.requested), float(late)]
                real_A = batch["A"].to(self.device, non_blocking=True)
                real_B = batch["B"].to(self.device, non_blocking=True)
                if t.channels_last:
                    real_A = real_A.contiguous(memory_format=torch.channels_last)
                    real_B = real_B.contiguous(memory_format=torch.channels_last)
                losses = self.step_fn(self.step_state, real_A, real_B, t)
                self.global_step += 1
                self.step_in_epoch += 1
                self.samples_in_epoch += self.global_batch
                if unit_step:
                    self.sched_G.step()
                    self.sched_D.step()
                bar.update(1)
                if self.global_step % t.log_every == 0:
                    now = time.perf_counter()
                    rate = (self.global_step - last_step) * self.global_batch / max(now - last_time, 1e-9)
                    last_time, last_step = now, self.global_step
                    if self.dist.enabled:  # log the global batch's losses, as one process of batch N*b would
                        losses = distributed.mean_across_ranks(losses)
                    row = {k: round(float(v), 6) for k, v in losses.items()}
                    bar.set_postfix({k: f"{row[k]:.3f}" for k in ("G_total", "D_A", "D_B")})
                    if self.is_main:
                        self.log_metrics({
                            "step": self.global_step, "epoch": self.epoch + 1, **row,
                            "lr": float(self.opt_G.param_groups[0]["lr"]), "pairs_per_s": round(rate, 4),
                        })
                if self.validator is not None:
                    self.validator.maybe_run(self)
                if self.step_hook is not None:
                    self.step_hook(self, self.global_step)
                if self.grad_sync is None:
                    stopping = stop.requested
                    late = deadline is not None and time.monotonic() > deadline
                else:  # every rank decides from the same summed flags, so all stop at the same step
                    stopping, late = self.grad_sync.agreed()
                    stop.requested = stop.requested or stopping
                if (t.save_every and self.global_step % t.save_every == 0) or stopping:
                    self.save_checkpoint()
                if late and not self.out_of_time:
                    log.info("--max-minutes %.1f reached at step %d", t.max_minutes, self.global_step)
                    self.out_of_time = True
                if stopping or self.out_of_time or (t.max_steps and self.global_step >= t.max_steps):
                    break
            bar.close()
            if stopping:
                raise TrainingInterrupted(self.run_dir, self.global_step)
            if self._epoch_done():  # epoch complete
                if not unit_step:
                    self.sched_G.step()
                    self.sched_D.step()
                if self.is_main and t.sample_every_epochs and (self.epoch + 1) % t.sample_every_epochs == 0:
                    self.write_samples()
                self.epoch += 1
                self.step_in_epoch = 0
                self.samples_in_epoch = 0
                self.save_checkpoint()
            elif (self.out_of_time or (t.max_steps and self.global_step >= t.max_steps)) \
                    and self.last_saved_step != self.global_step:  # not twice (--save-every just did)
                self.save_checkpoint()


class TrainingInterrupted(Exception):
    """Raised after a clean stop on SIGINT/SIGTERM; the checkpoint is saved."""

    def __init__(self, run_dir: Path, step: int) -> None:
        super().__init__(
            f"training stopped at step {step}; checkpoint saved. Continue with: cyclekit train --resume {run_dir}"
        )


def _grid_row(images: list[torch.Tensor]) -> torch.Tensor:
    """[N,C,H,W] x k -> one tensor [C, N*H, k*W] (images side by side, examples stacked)."""
    c = max(x.shape[1] for x in images)
    images = [x.expand(-1, c, -1, -1) if x.shape[1] == 1 else x for x in images]
    cols = [torch.cat(list(x), dim=1) for x in images]  # each [C, N*H, W]
    return torch.cat(cols, dim=2)


def _stack_rows(rows: list[torch.Tensor]) -> torch.Tensor:
    c = max(r.shape[0] for r in rows)
    rows = [r.expand(c, -1, -1) if r.shape[0] == 1 else r for r in rows]
    width = max(r.shape[2] for r in rows)
    padded = [torch.nn.functional.pad(r, (0, width - r.shape[2]), value=1.0) for r in rows]
    return torch.cat(padded, dim=1)


def sample_tensors(cfg: Config, n: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """Up to ``n`` unaugmented images per domain: the test split when there is one, else train."""
    import dataclasses

    from cyclekit.data.datasets import UnpairedDataset

    data = dataclasses.replace(cfg.data, serial_batches=True)  # item i = (A[i], B[i]), no crop jitter
    for phase in ("test", "train"):
        try:
            src = UnpairedDataset.from_config(data, cfg.model, seed=cfg.train.seed, phase=phase)
        except DataError:
            continue
        ds = UnpairedDataset(src.files_a, src.files_b, data, cfg.model.in_channels,
                             cfg.model.out_channels, seed=cfg.train.seed, train=False)
        items = [ds[i] for i in range(min(n, len(ds)))]
        return torch.stack([x["A"] for x in items]), torch.stack([x["B"] for x in items])
    raise DataError("no images found for the sample grid")


def train(cfg: Config, resume: bool = False) -> Path:
    return Trainer(cfg, resume=resume).fit()

