"""Distil a trained CycleGAN generator (the teacher) into the compact ``mobile_resnet`` student.

After GAN Compression (Li et al., CVPR 2020, section 3.1): the student learns the teacher's
translation of real domain-A images, plus an adversarial loss against real domain-B images, so
it needs no paired data and no cycle. Per iteration and per direction (``AtoB`` shown)::

    t, f_t = G_teacher(a)                                   # frozen, no gradient
    s, f_s = G_student(a)
    L_G = lambda_l1   * |s - t|_1                           # reconstruct the teacher's output
        + lambda_feat * |adapter(f_s) - f_t|_1              # intermediate features, 1x1 adapter
        + lambda_adv  * LSGAN(D(s), real)                   # look like real domain B
    L_D = 0.5 * (LSGAN(D(b), real) + LSGAN(D(s.detach()), fake))

``f`` is the feature map after the residual blocks (``4 ngf`` channels at H/4 for both networks);
the 1x1 ``adapter`` maps the student's width to the teacher's (GAN Compression's learnable
channel mapping) and is thrown away afterwards. ``D`` is a small PatchGAN (``ndf`` 32). Teachers
without residual blocks (U-Nets) are distilled without the feature term.

The result is a run directory like ``cyclekit train`` writes: ``config.json``, ``metrics.jsonl``
and the release in ``model/`` (``config.json`` + ``model.safetensors``) whose generators are both
``mobile_resnet``. Directions not distilled (``--directions AtoB``) are saved as initialised but
untrained students and the release metadata says so (``distilled_directions``).
"""
from __future__ import annotations

import copy
import dataclasses
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch
from torch import nn

from cyclekit.config import Config, generator_config_for
from cyclekit.errors import ConfigError, DataError

log = logging.getLogger(__name__)


@dataclass
class DistillConfig:
    teacher: str  # run directory or release of the trained teacher
    out: str = "runs/distilled"  # run directory to write (release in out/model)
    directions: str = "both"  # AtoB | BtoA | both
    ngf: int = 16  # student width: stem ngf, blocks 4 ngf
    n_blocks: int = 9  # separable residual blocks of the student
    steps: int = 2000
    max_minutes: float = 0.0  # stop early after this much wall time (0 = no limit)
    batch_size: int = 0  # 0 = the teacher's
    crop_size: int = 0  # 0 = the teacher's training crop
    dataroot: str = ""  # "" = the teacher's training data
    lr: float = 2e-4
    lambda_l1: float = 10.0
    lambda_feat: float = 1.0
    lambda_adv: float = 1.0
    ndf: int = 32
    seed: int = 0
    threads: int = 0
    device: str = "auto"
    log_every: int = 20
    save_every: int = 500
    progress: bool = True

    def validate(self) -> "DistillConfig":
        if self.directions not in ("AtoB", "BtoA", "both"):
            raise ConfigError(f"--directions must be AtoB, BtoA or both, got {self.directions!r}")
        for name in ("ngf", "steps", "ndf", "log_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        for name in ("n_blocks", "batch_size", "crop_size", "lambda_l1", "lambda_feat", "lambda_adv",
                     "max_minutes", "threads", "save_every"):
            if getattr(self, name) < 0:
                raise ConfigError(f"--{name.replace('_', '-')} must not be negative, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ConfigError(f"--lr must be positive, got {self.lr}")
        return self

    @property
    def direction_list(self) -> list[str]:
        return ["AtoB", "BtoA"] if self.directions == "both" else [self.directions]


def student_config(teacher_cfg: Config, dc: DistillConfig) -> Config:
    """The student's full Config: the teacher's, with a ``mobile_resnet`` generator and overrides."""
    cfg = copy.deepcopy(teacher_cfg)
    cfg.model = dataclasses.replace(
        cfg.model, generator="mobile_resnet", ngf=dc.ngf, n_blocks=dc.n_blocks, block="add",
        upsample="convtranspose", norm="instance", norm_affine=False, norm_before_tanh=False, dropout=0.0,
        ndf=dc.ndf, discriminator="patchgan", d_layers=3, d_norm="instance", d_padding="official",
    )
    if dc.dataroot:
        cfg.data.dataroot, cfg.data.dir_a, cfg.data.dir_b = dc.dataroot, "", ""
    if dc.crop_size:
        cfg.data.crop_size = dc.crop_size
        cfg.data.load_size = max(cfg.data.load_size, dc.crop_size)
        cfg.model.image_size = dc.crop_size
    cfg.train = dataclasses.replace(cfg.train, run_dir=str(dc.out), seed=dc.seed, lr=dc.lr,
                                    batch_size=dc.batch_size or cfg.train.batch_size, max_steps=dc.steps,
                                    device=dc.device, precision="fp32", threads=dc.threads)
    return cfg.validate()


class _FeatureTap:
    """Forward hook that keeps the output of the teacher's residual blocks."""

    def __init__(self, module: nn.Module) -> None:
        self.value: Optional[torch.Tensor] = None
        self.handle = module.register_forward_hook(self._hook)

    def _hook(self, module, inputs, output) -> None:
        self.value = output


class _Branch(nn.Module):
    """One direction: teacher (frozen), student, feature adapter and discriminator."""

    def __init__(self, teacher: nn.Module, student: nn.Module, disc: nn.Module, in_channels: int,
                 multiple: int, use_feat: bool) -> None:
        super().__init__()
        self.student, self.disc = student, disc
        self.teacher = [teacher]  # a list so its parameters are not part of this module
        self.tap = _FeatureTap(teacher.blocks) if use_feat else None
        self.adapter: nn.Module = nn.Identity()
        if self.tap is not None:
            with torch.no_grad():
                p = next(teacher.parameters())
                teacher(torch.zeros(1, in_channels, 4 * multiple, 4 * multiple, device=p.device))
            self.adapter = nn.Conv2d(student.feature_channels, self.tap.value.shape[1], 1)

    def teacher_forward(self, x: torch.Tensor) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        with torch.no_grad():
            out = self.teacher[0](x)
        return out, (self.tap.value if self.tap is not None else None)


def distill(dc: DistillConfig) -> Path:
    """Train the student(s) and write the run directory; returns it."""
    from cyclekit.checkpoint import load_generator, load_release_config, resolve_release, save_release
    from cyclekit.data.datasets import UnpairedDataset
    from cyclekit.losses import GANLoss, l1
    from cyclekit.nn import build_discriminator, build_generator, init_weights
    from cyclekit.train.trainer import pick_device
    from cyclekit.translate import size_multiple

    dc.validate()
    if dc.threads > 0:
        torch.set_num_threads(dc.threads)
    torch.manual_seed(dc.seed)
    device = pick_device(dc.device)
    teacher_release = resolve_release(dc.teacher)
    cfg = student_config(load_release_config(teacher_release), dc)
    out = Path(dc.out)
    dataset = UnpairedDataset.from_config(cfg.data, cfg.model, seed=dc.seed, phase="train")
    batch = cfg.train.batch_size
    if len(dataset) < batch:
        raise DataError(f"--batch-size {batch} is larger than the dataset ({len(dataset)} images)")

    students = {d: build_generator(generator_config_for(cfg.model, d)) for d in ("AtoB", "BtoA")}
    for s in students.values():
        init_weights(s, cfg.model.init, cfg.model.init_gain)
    branches: dict[str, _Branch] = {}
    for d in dc.direction_list:
        teacher, tcfg = load_generator(teacher_release, d, device=device)
        for p in teacher.parameters():
            p.requires_grad_(False)
        use_feat = dc.lambda_feat > 0 and isinstance(getattr(teacher, "blocks", None), nn.Module)
        if dc.lambda_feat > 0 and not use_feat:
            log.warning("the %s teacher (%s) has no residual blocks to match; distilling without the "
                        "feature loss", d, tcfg.generator)
        disc = build_discriminator(cfg.model, tcfg.out_channels)
        init_weights(disc, cfg.model.init, cfg.model.init_gain)
        branches[d] = _Branch(teacher, students[d], disc, tcfg.in_channels, size_multiple(tcfg), use_feat).to(device)
    opt_G = {d: torch.optim.Adam(list(b.student.parameters()) + list(b.adapter.parameters()),
                                 lr=dc.lr, betas=(0.5, 0.999)) for d, b in branches.items()}
    opt_D = {d: torch.optim.Adam(b.disc.parameters(), lr=dc.lr, betas=(0.5, 0.999)) for d, b in branches.items()}
    decay_from = dc.steps // 2  # constant for the first half, then linear decay to 0 (as the paper)
    lr_at = lambda step: dc.lr * min(1.0, max(0.0, (dc.steps - step) / max(1, dc.steps - decay_from)))  # noqa: E731
    gan = GANLoss("lsgan")

    out.mkdir(parents=True, exist_ok=True)
    cfg.save(out / "config.json")
    meta = {"distilled_from": str(teacher_release), "distilled_directions": ",".join(dc.direction_list),
            "distill": json.dumps(dataclasses.asdict(dc))}

    def save(step: int) -> None:
        save_release(out / "model", cfg, students["AtoB"], students["BtoA"], meta={**meta, "global_step": step})

    from torch.utils.data import DataLoader
    from tqdm.auto import tqdm

    from cyclekit.data.datasets import EpochSampler

    deadline = time.monotonic() + dc.max_minutes * 60 if dc.max_minutes else None
    step, epoch, t0 = 0, 0, time.perf_counter()
    bar = tqdm(total=dc.steps, disable=not dc.progress, desc="distill", unit="it", dynamic_ncols=True)
    with open(out / "metrics.jsonl", "w", encoding="utf-8") as metrics:
        while step < dc.steps:
            dataset.set_epoch(epoch)
            loader = DataLoader(dataset, batch_size=batch, sampler=EpochSampler(dataset, epoch),
                                drop_last=True, num_workers=cfg.data.num_workers)
            for item in loader:
                row: dict = {"step": step + 1}
                for d, br in branches.items():
                    for group in list(opt_G[d].param_groups) + list(opt_D[d].param_groups):
                        group["lr"] = lr_at(step)
                    x, y = (item["A"], item["B"]) if d == "AtoB" else (item["B"], item["A"])
                    row.update(_step(br, opt_G[d], opt_D[d], x.to(device), y.to(device), dc, gan, l1, d))
                step += 1
                bar.update(1)
                if step % dc.log_every == 0 or step == dc.steps:
                    row["lr"] = lr_at(step - 1)
                    row["it_per_s"] = round(step / max(time.perf_counter() - t0, 1e-9), 4)
                    metrics.write(json.dumps(row) + "\n")
                    metrics.flush()
                if dc.save_every and step % dc.save_every == 0:
                    save(step)
                if step >= dc.steps or (deadline is not None and time.monotonic() > deadline):
                    break
            epoch += 1
            if deadline is not None and time.monotonic() > deadline:
                log.info("--max-minutes %.1f reached at step %d", dc.max_minutes, step)
                break
    bar.close()
    if len(branches) < 2:
        log.warning("only %s was distilled; the release's other generator is an untrained student",
                    dc.direction_list[0])
    save(step)
    return out


def _step(br: _Branch, opt_G, opt_D, x: torch.Tensor, y: torch.Tensor, dc: DistillConfig,
          gan, l1, tag: str) -> dict[str, float]:
    """One student update and one discriminator update for one direction."""
    t_out, t_feat = br.teacher_forward(x)
    br.disc.requires_grad_(False)
    opt_G.zero_grad(set_to_none=True)
    s_out, s_feat = br.student(x, return_features=True)
    loss_l1 = l1(s_out, t_out) * dc.lambda_l1
    loss_feat = l1(br.adapter(s_feat), t_feat) * dc.lambda_feat if t_feat is not None else torch.zeros(())
    loss_adv = gan(br.disc(s_out), True) * dc.lambda_adv
    (loss_l1 + loss_feat + loss_adv).backward()
    opt_G.step()

    br.disc.requires_grad_(True)
    opt_D.zero_grad(set_to_none=True)
    loss_d = 0.5 * (gan(br.disc(y), True) + gan(br.disc(s_out.detach()), False))
    loss_d.backward()
    opt_D.step()
    losses = {"l1": loss_l1, "feat": loss_feat, "adv": loss_adv, "D": loss_d}
    return {f"{tag}_{k}": round(float(v.detach()), 5) for k, v in losses.items()}
