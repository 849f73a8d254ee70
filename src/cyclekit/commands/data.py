"""``cyclekit data``: make synthetic worlds, download the standard datasets."""
from __future__ import annotations

import argparse


def register(sub) -> None:
    p = sub.add_parser("data", help="prepare data: synthetic worlds, standard datasets")
    dsub = p.add_subparsers(dest="data_command", metavar="ACTION")
    dsub.required = True

    s = dsub.add_parser("synth", help="write a synthetic unpaired world with ground-truth test pairs")
    s.add_argument("--world", default="fruit", help="fruit (colour swap), zebra (texture), faces (geometry), ...")
    s.add_argument("--out", required=True, help="output folder (trainA/ trainB/ testA/ testB/ testA_gt/ testB_gt/)")
    s.add_argument("--size", type=int, default=128)
    s.add_argument("--n-train", type=int, default=200, help="training images per domain")
    s.add_argument("--n-test", type=int, default=50, help="test images per domain")
    s.add_argument("--channels", type=int, default=3, choices=(1, 3))
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(func=run_synth)

    d = dsub.add_parser("download", help="download a standard CycleGAN dataset (horse2zebra, ...)")
    d.add_argument("name", help="dataset name, e.g. horse2zebra, apple2orange, monet2photo")
    d.add_argument("--out", default="datasets", help="parent folder (default: datasets/)")
    d.add_argument("--url", help="download from this URL instead of the official one")
    d.add_argument("--base-url", help="mirror holding NAME.zip files")
    d.set_defaults(func=run_download)


def run_synth(args: argparse.Namespace) -> int:
    from cyclekit.data.synthetic import make_world

    out = make_world(
        args.world, args.out, size=args.size, n_train=args.n_train, n_test=args.n_test,
        seed=args.seed, channels=args.channels, progress=True,
    )
    print(f"wrote world '{args.world}' to {out}")
    return 0


def run_download(args: argparse.Namespace) -> int:
    from cyclekit.data.download import download_dataset

    kwargs = {"url": args.url}
    if args.base_url:
        kwargs["base_url"] = args.base_url
    path = download_dataset(args.name, args.out, **kwargs)
    print(f"dataset ready: {path}")
    return 0
