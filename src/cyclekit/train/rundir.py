"""What a run writes besides checkpoints: ``metrics.jsonl``, TensorBoard and sample grids.

A run directory holds::

    config.json              the resolved configuration (what `--resume` reads back)
    metrics.jsonl            one JSON row per logging interval: every loss term, lr, pairs/s
    samples/epoch_0001.png   real | translated | reconstructed, both directions
    checkpoints/last.pt      resumable state (weights_only-loadable, see cyclekit.train.state)
    model/                   release: config.json + model.safetensors (both generators)
    tensorboard/             when --tensorboard is on

Only rank 0 of a multi-process run opens a :class:`RunLog`.
"""
from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from cyclekit.config import Config
from cyclekit.errors import DataError, OutputError
from cyclekit.io.files import atomic_write_text, describe_os_error

log = logging.getLogger(__name__)

METRICS_FILE = "metrics.jsonl"


class RunLog:
    """Writes ``config.json`` and appends rows to ``metrics.jsonl`` (and TensorBoard).

    Resuming at ``step``, rows written after that step (by the run that crashed or stopped after
    its checkpoint) are dropped first, so the log has no duplicates; a fresh run starts a new log.
    """

    def __init__(self, cfg: Config, resume_step: int | None) -> None:
        run_dir = Path(cfg.train.run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        cfg.save(run_dir / "config.json")
        path = run_dir / METRICS_FILE
        if resume_step is not None and path.exists():
            keep = []
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    if json.loads(line).get("step", 0) <= resume_step:
                        keep.append(line)
                except json.JSONDecodeError:
                    continue  # a row cut short by the crash
            atomic_write_text(path, "".join(l + "\n" for l in keep))
        elif path.exists():
            path.unlink()
        self._file = open(path, "a", encoding="utf-8")
        self.tb = None
        if cfg.train.tensorboard:
            from cyclekit.errors import require

            require("tensorboard", "tensorboard", "--tensorboard")
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(run_dir / "tensorboard"), purge_step=(resume_step or 0) + 1)

    def write(self, row: dict[str, Any]) -> None:
        try:
            self._file.write(json.dumps(row) + "\n")
            self._file.flush()
        except OSError as exc:
            raise OutputError(describe_os_error(exc, self._file.name)) from None
        if self.tb is not None:
            for k, v in row.items():
                if isinstance(v, (int, float)) and k not in ("step", "epoch"):
                    self.tb.add_scalar(k, v, row["step"])

    def close(self) -> None:
        self._file.close()
        if self.tb is not None:
            self.tb.close()


# ---------------------------------------------------------------------- sample grids
def sample_tensors(cfg: Config, n: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """Up to ``n`` unaugmented images per domain: the test split when there is one, else train."""
    from cyclekit.data.datasets import UnpairedDataset

    data = dataclasses.replace(cfg.data, serial_batches=True)  # item i = (A[i], B[i]), no crop jitter
    for phase in ("test", "train"):
        try:
            src = UnpairedDataset.from_config(data, cfg.model, seed=cfg.train.seed, phase=phase)
        except DataError:
            continue
        ds = UnpairedDataset(src.files_a, src.files_b, data, cfg.model.in_channels,
                             cfg.model.out_channels, seed=cfg.train.seed, train=False)
        items = []
        for i in range(len(ds)):
            if len(items) == n:
                break
            try:
                items.append(ds[i])
            except DataError:
                if cfg.data.on_bad_file != "skip":
                    raise
        if items:
            return torch.stack([x["A"] for x in items]), torch.stack([x["B"] for x in items])
    raise DataError("no images found for the sample grid")


def check_test_headers(data_cfg) -> None:
    """Open the header of every test image the run may read (sample grids, validation), so a
    broken one is named before the first step instead of after an epoch of training."""
    from cyclekit.io.images import list_images, probe_image

    root = Path(data_cfg.dataroot) if data_cfg.dataroot else None
    if root is None or not root.is_dir():
        return
    bad = []
    for folder in (root / "testA", root / "testB", root / "testA_gt", root / "testB_gt"):
        try:
            files = list_images(folder) if folder.is_dir() else []
        except DataError:  # a folder without images: nothing to read
            files = []
        for path in files:
            try:
                probe_image(path)
            except DataError as exc:
                bad.append(str(exc))
    if bad and data_cfg.on_bad_file != "skip":
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        raise DataError(f"unreadable test image: {bad[0]}{more}; fix or remove it, or pass --on-bad-file skip")
    for reason in bad:
        log.warning("test image skipped (--on-bad-file skip): %s", reason)


@torch.no_grad()
def write_samples(path: Path, generators: Sequence[nn.Module], samples: tuple[torch.Tensor, torch.Tensor],
                  device: torch.device) -> Path:
    """real | translated | reconstructed for both directions, one row per example, as a PNG."""
    from cyclekit.io.images import save_image, to_image

    G_AB, G_BA = generators
    real_A, real_B = (x.to(device) for x in samples)
    modes = [G_AB.training, G_BA.training]
    G_AB.eval(), G_BA.eval()
    try:
        fake_B = G_AB(real_A)
        rec_A = G_BA(fake_B)
        fake_A = G_BA(real_B)
        rec_B = G_AB(fake_A)
    finally:
        G_AB.train(modes[0]), G_BA.train(modes[1])
    rows = [_grid_row([t.float().cpu() for t in triple]) for triple in ((real_A, fake_B, rec_A), (real_B, fake_A, rec_B))]
    save_image(path, to_image(_stack_rows(rows)))
    return path


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
