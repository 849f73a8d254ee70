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

Distillation is an objective (:class:`Distillation`) of the training loop
(:class:`cyclekit.train.loop.Trainer`), so it has what training has: a run directory with
``config.json``, ``metrics.jsonl`` (and TensorBoard), ``checkpoints/last.pt`` for an exact
``--resume``, Ctrl-C stops that save, ``--max-minutes``, and the release in ``model/`` whose
generators are both ``mobile_resnet``. Directions not distilled (``--directions AtoB``) are saved as initialised but
untrained students and the release metadata says so (``distilled_directions``).
"""
from __future__ import annotations

import copy
import dataclasses
import functools
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch
from torch import nn

from cyclekit.config import Config, generator_config_for
from cyclekit.errors import ConfigError

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
    resume: bool = False  # continue the run in ``out`` from its last checkpoint

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


def teacher_config(dc: DistillConfig) -> tuple[Path, Config]:
    """The teacher's release and a Config with its model and the data to distil on: ``--dataroot``,
    else the data of the teacher's run directory (a release alone does not name its data)."""
    from cyclekit.config import load_config
    from cyclekit.release import RELEASE_DIR, load_release_config, resolve_release

    release = resolve_release(dc.teacher)
    cfg = load_release_config(release)
    if dc.dataroot:
        return release, cfg
    run_config = release.parent / "config.json" if release.name == RELEASE_DIR else None
    if run_config is None or not run_config.is_file():
        raise ConfigError(
            f"no training data known for the teacher {dc.teacher}: its release does not record it and "
            "there is no run directory config.json beside it; pass --dataroot"
        )
    full = load_config(run_config)
    full.model = cfg.model
    return release, full


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
    cfg.train = dataclasses.replace(
        cfg.train, run_dir=str(dc.out), seed=dc.seed, lr=dc.lr, batch_size=dc.batch_size or cfg.train.batch_size,
        max_steps=dc.steps, max_minutes=dc.max_minutes, device=dc.device, precision="fp32", threads=dc.threads,
        log_every=dc.log_every, save_every=dc.save_every, progress=dc.progress,
        n_epochs=dc.steps, n_epochs_decay=0,  # the run ends at --steps (an epoch has at least one step)
        sample_every_epochs=0, val_every=0, compile=False, cuda_graphs="false", channels_last=False,
        half_res_warmup="0",  # a step schedule: the teacher's time-budget warm-up does not apply
        init_from="",  # the student starts from its own weights, not the teacher's starting point
    )
    return cfg.validate()


class StepDecay:
    """lr factor: constant for the first half of ``steps``, then linear to 0 (as GAN Compression)."""

    def __init__(self, steps: int) -> None:
        self.steps, self.decay_from = steps, steps // 2

    def __call__(self, t: int) -> float:
        return min(1.0, max(0.0, (self.steps - t) / max(1, self.steps - self.decay_from)))


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


class Distillation:
    """The distillation objective of the training loop (see :mod:`cyclekit.train.objective`)."""

    name = "distill"
    rank_keys = ()
    lr_step_unit = "step"

    def __init__(self, cfg: Config, device: torch.device, dist, steps_per_epoch: int, *,
                 dc: DistillConfig, teacher: Path) -> None:
        from cyclekit.losses import GANLoss
        from cyclekit.nn import build_discriminator, build_generator, init_weights, size_multiple
        from cyclekit.release import load_generator

        if dist.enabled:
            raise ConfigError("distill runs in one process; start it without torchrun")
        self.cfg, self.device, self.dc, self.teacher = cfg, device, dc, teacher
        self.resume_command = f"cyclekit distill {dc.teacher} --out {dc.out} --resume"
        self.students = {d: build_generator(generator_config_for(cfg.model, d)) for d in ("AtoB", "BtoA")}
        for s in self.students.values():
            init_weights(s, cfg.model.init, cfg.model.init_gain)
            s.to(device)
        self.branches: dict[str, _Branch] = {}
        for d in dc.direction_list:
            net, tcfg = load_generator(teacher, d, device=device)
            for p in net.parameters():
                p.requires_grad_(False)
            use_feat = dc.lambda_feat > 0 and isinstance(getattr(net, "blocks", None), nn.Module)
            if dc.lambda_feat > 0 and not use_feat:
                log.warning("the %s teacher (%s) has no residual blocks to match; distilling without the "
                            "feature loss", d, tcfg.generator)
            disc = build_discriminator(cfg.model, tcfg.out_channels)
            init_weights(disc, cfg.model.init, cfg.model.init_gain)
            self.branches[d] = _Branch(net, self.students[d], disc, tcfg.in_channels, size_multiple(tcfg),
                                       use_feat).to(device)
        self.opt_G = {d: torch.optim.Adam(list(b.student.parameters()) + list(b.adapter.parameters()),
                                          lr=dc.lr, betas=(0.5, 0.999)) for d, b in self.branches.items()}
        self.opt_D = {d: torch.optim.Adam(b.disc.parameters(), lr=dc.lr, betas=(0.5, 0.999))
                      for d, b in self.branches.items()}
        opts = [o for d in self.branches for o in (self.opt_G[d], self.opt_D[d])]
        self.schedulers = [torch.optim.lr_scheduler.LambdaLR(o, StepDecay(dc.steps)) for o in opts]
        self.gan = GANLoss("lsgan")
        self.progress_keys = tuple(f"{d}_l1" for d in self.branches)
        if len(self.branches) < 2:
            log.warning("only %s is distilled; the release's other generator is an untrained student",
                        dc.direction_list[0])

    @property
    def generators(self) -> tuple[nn.Module, nn.Module]:
        return self.students["AtoB"], self.students["BtoA"]

    def step(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        for d, br in self.branches.items():
            x, y = (batch["A"], batch["B"]) if d == "AtoB" else (batch["B"], batch["A"])
            out.update(self._step(d, br, x.to(self.device), y.to(self.device)))
        return out

    def _step(self, d: str, br: _Branch, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        """One student update and one discriminator update for one direction."""
        from cyclekit.losses import l1

        dc, gan = self.dc, self.gan
        t_out, t_feat = br.teacher_forward(x)
        br.disc.requires_grad_(False)
        self.opt_G[d].zero_grad(set_to_none=True)
        s_out, s_feat = br.student(x, return_features=True)
        loss_l1 = l1(s_out, t_out) * dc.lambda_l1
        loss_feat = (l1(br.adapter(s_feat), t_feat) * dc.lambda_feat if t_feat is not None
                     else torch.zeros((), device=x.device))
        loss_adv = gan(br.disc(s_out), True) * dc.lambda_adv
        (loss_l1 + loss_feat + loss_adv).backward()
        self.opt_G[d].step()

        br.disc.requires_grad_(True)
        self.opt_D[d].zero_grad(set_to_none=True)
        loss_d = 0.5 * (gan(br.disc(y), True) + gan(br.disc(s_out.detach()), False))
        loss_d.backward()
        self.opt_D[d].step()
        losses = {"l1": loss_l1, "feat": loss_feat, "adv": loss_adv, "D": loss_d}
        return {f"{d}_{k}": v.detach() for k, v in losses.items()}

    def lr(self) -> float:
        return float(self.schedulers[0].optimizer.param_groups[0]["lr"])

    def _modules(self) -> dict[str, nn.Module]:
        mods: dict[str, nn.Module] = {f"student_{d}": s for d, s in self.students.items()}
        for d, br in self.branches.items():
            mods[f"adapter_{d}"], mods[f"disc_{d}"] = br.adapter, br.disc
        return mods

    def state_dict(self) -> dict[str, Any]:
        return {
            "nets": {k: m.state_dict() for k, m in self._modules().items()},
            "optimizers": {f"{kind}_{d}": opt[d].state_dict()
                           for kind, opt in (("G", self.opt_G), ("D", self.opt_D)) for d in self.branches},
            "schedulers": [s.state_dict() for s in self.schedulers],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        mods = self._modules()
        if set(state["nets"]) != set(mods):
            raise ConfigError("the checkpoint distilled other directions; resume with the same --directions")
        for k, m in mods.items():
            m.load_state_dict(state["nets"][k])
        for kind, opt in (("G", self.opt_G), ("D", self.opt_D)):
            for d in self.branches:
                opt[d].load_state_dict(state["optimizers"][f"{kind}_{d}"])
        for s, sd in zip(self.schedulers, state["schedulers"]):
            s.load_state_dict(sd)

    def retime(self, steps_per_epoch: int, position: int) -> None:
        pass  # the schedule counts iterations, not epochs

    def release(self, out_dir: Path, meta: dict[str, Any]) -> None:
        from cyclekit.release import save_release

        dc = self.dc
        meta = {**meta, "distilled_from": str(self.teacher), "distilled_directions": ",".join(dc.direction_list),
                "distill": json.dumps(dataclasses.asdict(dc))}
        save_release(out_dir, self.cfg, *self.generators, meta=meta)


CARRIED_TO_STUDENT = ("face_backdrop", "face_tone", "face_detector", "licence", "attribution")


def distill(dc: DistillConfig) -> Path:
    """Train the student(s) on the training loop and write the run directory; returns it."""
    from cyclekit.release import release_info
    from cyclekit.train.loop import Trainer

    dc.validate()
    release, teacher_cfg = teacher_config(dc)
    cfg = student_config(teacher_cfg, dc)
    objective = functools.partial(Distillation, dc=dc, teacher=release)
    # what the teacher's face crops were (the student sees the same crops); not its swap_strength,
    # which was chosen for the teacher's own weights
    carried = {k: v for k, v in release_info(release).items() if k in CARRIED_TO_STUDENT}
    return Trainer(cfg, resume=dc.resume, objective=objective, release_info=carried).fit()
