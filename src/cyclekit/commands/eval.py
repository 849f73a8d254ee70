"""``cyclekit eval``: measure a trained model (paired metrics, cycle, identity, success rate, FID/KID)."""
from __future__ import annotations

import argparse

from cyclekit.config import CHOICES


def register(sub) -> None:
    p = sub.add_parser(
        "eval", help="measure a model: paired metrics, cycle/identity, translation success, FID/KID, HTML report",
        description="Translates DATA/testA and DATA/testB both ways and writes metrics.json, metrics.csv, "
        "per_image.csv and a static HTML report (index.html + images/) to --out. Paired metrics need "
        "DATA/testA_gt, DATA/testB_gt (the true translations, same file names); the domain classifier "
        "trains on DATA/trainA vs DATA/trainB. Every metric is shown next to the do-nothing baseline.",
    )
    p.add_argument("model", help="run directory, release folder (config.json + model.safetensors) or .safetensors")
    p.add_argument("--data", required=True, help="folder with testA/ testB/ (and trainA/ trainB/, testA_gt/ testB_gt/)")
    p.add_argument("--out", help="output folder (default: MODEL/eval)")
    p.add_argument("--seed", type=int, default=0, help="classifier and KID subset seed (default: 0)")
    p.add_argument("--device", choices=CHOICES["device"], default="auto",
                   help="auto: the GPU when CUDA is available, else the CPU")
    p.add_argument("--batch-size", type=int, default=8, help="test images translated together")
    p.add_argument("--size", type=int, default=-1,
                   help="resize test images to SIZE x SIZE (-1: the model's training size, default; 0: as they are)")
    p.add_argument("--max-images", type=int, default=0, help="use the first N test images per domain (0 = all)")
    p.add_argument("--features", choices=("auto", "inception", "classifier", "none"), default="auto",
                   help="FID/KID features: auto = Inception-v3 when its weights are found, else the domain "
                   "classifier's (labelled as not comparable to published FID)")
    p.add_argument("--fid-weights", default="", help="path to pt_inception-2015-12-05-6726825d.pth (pytorch-fid)")
    p.add_argument("--kid-subsets", type=int, default=100, help="random subsets KID is averaged over")
    p.add_argument("--kid-subset-size", type=int, default=1000,
                   help="images per KID subset (capped at the number of test images)")
    p.add_argument("--classifier-steps", type=int, default=300,
                   help="training steps of the domain classifier behind the success rate")
    p.add_argument("--classifier-size", type=int, default=64, help="side in pixels the classifier sees (16-256)")
    p.add_argument("--no-classifier", action="store_true", help="skip the domain classifier (no success rate)")
    p.add_argument("--skip-bad", action="store_true", help="skip unreadable test images with a warning")
    p.add_argument("--no-judge", action="store_true",
                   help="for male/female face data: skip the independent gender judge's swap success")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = PyTorch's default)")
    p.add_argument("--report-images", type=int, default=24, help="images per direction shown in the HTML report")
    p.set_defaults(func=run)


def format_summary(result: dict) -> str:
    """The console table: model vs do-nothing per direction, with the feature extractor named."""
    from cyclekit.metrics.report import features_label

    m, b = result["metrics"], result["baseline"]
    rows = [("l1", "L1 to truth", "l1_AtoB", "l1_BtoA"), ("psnr", "PSNR dB", "psnr_AtoB", "psnr_BtoA"),
            ("ssim", "SSIM", "ssim_AtoB", "ssim_BtoA"), ("success", "success rate", "success_AtoB", "success_BtoA"),
            ("fid", "FID*", "fid_AtoB", "fid_BtoA"), ("kid", "KID* x1000", "kid_AtoB", "kid_BtoA"),
            ("cycle_l1", "cycle L1", "cycle_l1_ABA", "cycle_l1_BAB"),
            ("identity_l1", "identity drift L1", "identity_l1_AtoB", "identity_l1_BtoA")]

    def f(table, key, scale=1.0):
        v = table.get(key)
        if v is None or v != v:
            return f"{'-':>10}"
        v *= scale
        return f"{v:>10.0f}" if abs(v) >= 1000 else f"{v:>10.4g}"

    lines = [f"{'':<18}{'A->B':>10}{'nothing':>10}{'B->A':>10}{'nothing':>10}   better",]
    for base, label, ka, kb in rows:
        if ka not in m and kb not in m:
            continue
        s = 1000.0 if base == "kid" else 1.0
        goal = "higher" if result["goals"].get(base, result["goals"].get(ka)) == "max" else "lower"
        lines.append(f"{label:<18}{f(m, ka, s)}{f(b, ka, s)}{f(m, kb, s)}{f(b, kb, s)}   {goal}")
    lines.append(f"* FID/KID features: {features_label(result)}")
    c = result.get("classifier")
    if c:
        lines.append(f"domain classifier: held-out accuracy {c['heldout_accuracy']:.1%} on {c['heldout_images']} "
                     f"images ({c['verdict']})")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from cyclekit.release import resolve_release
    from cyclekit.metrics.evaluate import EvalOptions, evaluate_model
    from cyclekit.runtime import pick_device

    if args.threads > 0:
        import torch

        torch.set_num_threads(args.threads)
    device = str(pick_device(args.device))
    opts = EvalOptions(
        seed=args.seed, batch_size=args.batch_size, size=args.size, max_images=args.max_images,
        features=args.features, fid_weights=args.fid_weights, kid_subsets=args.kid_subsets,
        kid_subset_size=args.kid_subset_size, classifier=not args.no_classifier,
        skip_bad=args.skip_bad, classifier_steps=args.classifier_steps, classifier_size=args.classifier_size, device=device,
        report_images=args.report_images,
    ).validate()
    release = resolve_release(args.model)  # fail early with a clear message
    out = Path(args.out) if args.out else (Path(args.model) if Path(args.model).is_dir() else release) / "eval"
    result = evaluate_model(args.model, args.data, out, opts)
    for note in result["notes"]:
        print(note)
    print(format_summary(result))
    genders = _face_genders(args.model, args.data)
    if genders is not None and not args.no_judge:
        import json

        from cyclekit.faces.judge_eval import format_judge_lines, judge_translations
        from cyclekit.infer.translator import load_translator
        from cyclekit.io.files import atomic_write_text

        translators = {d: load_translator(args.model, d, device=device) for d in ("AtoB", "BtoA")}
        judged = judge_translations(args.data, translators, genders, max_images=args.max_images)
        atomic_write_text(out / "gender_judge.json", json.dumps(judged, indent=2) + "\n")
        print("independent gender judge (cyclekit.faces.judge, not trained by us):")
        for line in format_judge_lines(judged):
            print("  " + line)
    print(f"report: {out / 'index.html'}  (metrics.json, metrics.csv, per_image.csv beside it)")
    return 0


def _face_genders(model: str, data: str):
    """The genders of domains A and B when the model or the data names them (men/women, ...)."""
    from cyclekit.config import DataConfig
    from cyclekit.data.domains import domain_names
    from cyclekit.faces.judge_eval import domain_genders
    from cyclekit.release import release_domains

    return domain_genders(release_domains(model)) or domain_genders(domain_names(DataConfig(dataroot=str(data))))
