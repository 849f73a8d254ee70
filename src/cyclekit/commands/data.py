"""``cyclekit data``: make synthetic worlds, download the standard datasets."""
from __future__ import annotations

import argparse

from cyclekit.config import CHOICES


def register(sub) -> None:
    p = sub.add_parser("data", help="prepare data: synthetic worlds, standard datasets")
    dsub = p.add_subparsers(dest="data_command", metavar="ACTION")
    dsub.required = True

    s = dsub.add_parser("synth", help="write a synthetic unpaired world with ground-truth test pairs")
    s.add_argument("--world", default="fruit", help="fruit (colour swap), zebra (texture), faces (geometry), ...")
    s.add_argument("--out", required=True, help="output folder (trainA/ trainB/ testA/ testB/ testA_gt/ testB_gt/)")
    s.add_argument("--size", type=int, default=128, help="image side in pixels (default 128)")
    s.add_argument("--n-train", type=int, default=200, help="training images per domain")
    s.add_argument("--n-test", type=int, default=50, help="test images per domain")
    s.add_argument("--channels", type=int, default=3, choices=(1, 3), help="1 = grayscale, 3 = RGB")
    s.add_argument("--seed", type=int, default=0, help="seed of the scenes (the same seed gives the same images)")
    s.set_defaults(func=run_synth)

    d = dsub.add_parser("download", help="download a standard CycleGAN dataset (horse2zebra, ...)")
    d.add_argument("name", help="dataset name, e.g. horse2zebra, apple2orange, monet2photo")
    d.add_argument("--out", default="datasets", help="parent folder (default: datasets/)")
    d.add_argument("--url", help="download from this URL instead of the official one")
    d.add_argument("--base-url", help="mirror holding NAME.zip files")
    d.set_defaults(func=run_download)

    f = dsub.add_parser("faces", help="face crops for a face-swap model, from CelebA or two folders of photos")
    src = f.add_mutually_exclusive_group(required=True)
    src.add_argument("--celeba", metavar="ROOT", help="CelebA root: img_align_celeba/, list_attr_celeba.txt, "
                     "list_eval_partition.txt")
    src.add_argument("--a", dest="dir_a", metavar="DIR", help="photos of domain A (use with --b)")
    f.add_argument("--b", dest="dir_b", metavar="DIR", help="photos of domain B")
    f.add_argument("--out", required=True, help="output folder (trainA/ trainB/ testA/ testB/ faces.json)")
    f.add_argument("--attribute", default="Male", help="CelebA attribute: 1 -> A, -1 -> B (default Male)")
    f.add_argument("--val-to", choices=("train", "test", "skip"), default="train",
                   help="where CelebA's validation partition goes")
    f.add_argument("--limit", type=int, default=0, help="CelebA: at most this many images per folder (0 = all)")
    f.add_argument("--test-fraction", type=float, default=0.1, help="folders: share of photos for testA/testB")
    f.add_argument("--seed", type=int, default=0, help="folders: seed of the train/test split")
    f.add_argument("--size", type=int, default=128, help="crop size in pixels (the model's image size)")
    f.add_argument("--margin", type=float, default=None, help="box widening per side, fraction of the box (0.4)")
    f.add_argument("--no-align", action="store_true", help="do not rotate crops by the eye line")
    f.add_argument("--min-face", type=int, default=40, help="skip faces smaller than this (pixels)")
    f.add_argument("--detector", choices=CHOICES["detector"], default="auto",
                   help="face detector: auto = dlib when installed (cyclekit[faces]), else OpenCV's Haar cascades")
    f.add_argument("--format", choices=("png", "jpg"), default="png",
                   help="crop file format: png (lossless, default) or jpg (smaller)")
    f.add_argument("--workers", type=int, default=0, help="processes detecting and cropping (0 = one per core)")
    f.set_defaults(func=run_faces)


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


def run_faces(args: argparse.Namespace) -> int:
    import json

    from cyclekit.errors import ConfigError
    from cyclekit.faces.params import DEFAULT_MARGIN, FaceParams
    from cyclekit.faces.prepare import prepare_celeba, prepare_folders

    params = FaceParams(margin=DEFAULT_MARGIN if args.margin is None else args.margin, align=not args.no_align,
                        size=args.size, detector=args.detector, min_face=args.min_face).validate()
    ext = "." + args.format
    if args.celeba:
        out = prepare_celeba(args.celeba, args.out, params=params, attribute=args.attribute, val_to=args.val_to,
                             limit=args.limit, ext=ext, progress=True, workers=args.workers)
    else:
        if not args.dir_b:
            raise ConfigError("--a needs --b (the photos of domain B)")
        out = prepare_folders(args.dir_a, args.dir_b, out=args.out, params=params,
                              test_fraction=args.test_fraction, seed=args.seed, ext=ext, progress=True,
                              workers=args.workers)
    doc = json.loads((out / "faces.json").read_text(encoding="utf-8"))
    counts = ", ".join(f"{k} {v}" for k, v in doc["counts"].items())
    reasons = ", ".join(f"{k} {v}" for k, v in doc.get("skip_reasons", {}).items())
    print(f"wrote face crops to {out} ({counts}; detector {doc['detector']}); {doc['skipped']} skipped"
          + (f" ({reasons})" if reasons else "") + f", listed in {out / 'skipped.txt'}")
    for warning in doc.get("warnings", []):
        print(f"warning: {warning}")
    return 0
