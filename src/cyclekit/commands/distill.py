"""``cyclekit distill TEACHER``: train a compact mobile_resnet student from a trained generator."""
from __future__ import annotations

import argparse

from cyclekit.config import CHOICES


def register(sub) -> None:
    p = sub.add_parser(
        "distill", help="distil a trained model into a compact generator (GAN Compression style)",
        description="Train a compact 'mobile_resnet' student (depthwise-separable residual blocks, "
                    "fewer channels) on the teacher's translations of real images (L1 + feature loss) "
                    "plus an adversarial loss against real target-domain images. Writes a run "
                    "directory whose model/ release works with translate, export and serve.",
    )
    p.add_argument("teacher", help="run directory or release folder of the trained teacher")
    p.add_argument("--out", "-o", required=True, help="run directory to write (release in OUT/model)")
    p.add_argument("--directions", choices=("AtoB", "BtoA", "both"), default="both",
                   help="which generators to distil (default both)")
    p.add_argument("--ngf", type=int, default=16, help="student width (blocks run at 4 x ngf; default 16)")
    p.add_argument("--n-blocks", type=int, default=9, help="separable residual blocks (default 9)")
    p.add_argument("--steps", type=int, default=2000, help="iterations (default 2000)")
    p.add_argument("--max-minutes", type=float, default=0.0, help="stop and save after this long (0 = no limit)")
    p.add_argument("--batch-size", type=int, default=0, help="default: the teacher's")
    p.add_argument("--crop-size", type=int, default=0, help="training crop (default: the teacher's)")
    p.add_argument("--dataroot", default="", help="training data (default: the teacher's)")
    p.add_argument("--lr", type=float, default=2e-4, help="Adam learning rate of student and discriminator")
    p.add_argument("--lambda-l1", type=float, default=10.0, help="weight of |student - teacher|_1")
    p.add_argument("--lambda-feat", type=float, default=1.0, help="weight of the feature loss (0 = off)")
    p.add_argument("--lambda-adv", type=float, default=1.0, help="weight of the LSGAN loss vs real images")
    p.add_argument("--ndf", type=int, default=32, help="width of the student's discriminator")
    p.add_argument("--seed", type=int, default=0, help="seed of the student's weights and the data order")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = default)")
    p.add_argument("--device", choices=CHOICES["device"], default="auto",
                   help="auto: the GPU when CUDA is available, else the CPU")
    p.add_argument("--log-every", type=int, default=20, help="iterations between metrics.jsonl rows")
    p.add_argument("--save-every", type=int, default=500, help="save the release every N steps (0 = end only)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint "
                   "(give the same options)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from cyclekit.release import load_generator
    from cyclekit.train.distill import DistillConfig, distill
    from cyclekit.train.loop import TrainingInterrupted
    from cyclekit.nn import count_macs, count_parameters

    dc = DistillConfig(
        teacher=args.teacher, out=args.out, directions=args.directions, ngf=args.ngf, n_blocks=args.n_blocks,
        steps=args.steps, max_minutes=args.max_minutes, batch_size=args.batch_size, crop_size=args.crop_size,
        dataroot=args.dataroot, lr=args.lr, lambda_l1=args.lambda_l1, lambda_feat=args.lambda_feat,
        lambda_adv=args.lambda_adv, ndf=args.ndf, seed=args.seed, threads=args.threads, device=args.device,
        log_every=args.log_every, save_every=args.save_every, progress=not args.no_progress, resume=args.resume,
    ).validate()
    try:
        out = distill(dc)
    except TrainingInterrupted as exc:
        print(str(exc))
        return 130
    teacher, tcfg = load_generator(args.teacher, "AtoB")
    student, scfg = load_generator(out, "AtoB")
    shape = (1, scfg.in_channels, 256, 256)
    t_macs, s_macs = count_macs(teacher, shape), count_macs(student, shape)
    print(f"student {scfg.generator} ngf={scfg.ngf} blocks={scfg.n_blocks}: params={count_parameters(student):,} "
          f"MACs@256px={s_macs / 1e9:.3f} G (teacher {tcfg.generator}: {count_parameters(teacher):,} params, "
          f"{t_macs / 1e9:.2f} G; {t_macs / max(s_macs, 1):.1f}x fewer)")
    print(f"distilled {dc.directions} into {out / 'model'}")
    return 0
