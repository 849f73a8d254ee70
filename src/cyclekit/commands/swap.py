"""``cyclekit swap``: swap the faces in photos, folders and videos with a trained face model."""
from __future__ import annotations

import argparse
import logging

from cyclekit.config import CHOICES, DIRECTIONS
from cyclekit.commands._config_args import INFER_PRECISION_HELP
from cyclekit.errors import UserError
from cyclekit.faces.params import MAX_TURN, check_max_turn

log = logging.getLogger(__name__)


def register(sub) -> None:
    p = sub.add_parser(
        "swap", help="face swap (e.g. male <-> female) in photos, folders and videos",
        description="Detect the dominant face (or all faces), crop it as the training crops were made "
                    "(margin from the model's config), translate it and paste it back seamlessly. "
                    "Photos without a usable face are copied unchanged.",
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders (recursive), globs or video files")
    p.add_argument("--model", "-m", default=None,
                   help="run directory or release folder; 'identity' runs the pipeline with a no-op generator "
                        "(default: the built-in male <-> female model; --direction AtoB turns men into women, "
                        "BtoA women into men; see the README's model card)")
    p.add_argument("--out", "-o", required=True,
                   help="output folder (PNG images, H.264 .mp4 videos), or a file name for one input "
                        "(swapped.jpg, swapped.mp4); required, so that nothing is written where you did not ask")
    p.add_argument("--direction", choices=DIRECTIONS, default="AtoB",
                   help="AtoB applies G_AB (domain A -> B; the built-in model: male -> female), BtoA applies "
                        "G_BA (female -> male) (default: %(default)s)")
    p.add_argument("--all-faces", action="store_true", help="swap every face, not only the dominant one")
    p.add_argument("--compare", action="store_true", help="also write NAME_compare.png/.mp4 (input | output)")
    g = p.add_argument_group("crop geometry (defaults: the model's)")
    g.add_argument("--margin", type=float, help="box widening per side as a fraction of the box "
                   "(default: the model's face_margin, else 0.4)")
    g.add_argument("--size", type=int, help="crop size in pixels (default: the model's image_size)")
    g.add_argument("--no-align", action="store_true", help="do not rotate the crop by the eye line")
    g.add_argument("--min-face", type=int, default=40, help="smaller faces (box side, pixels) are left unchanged (default: %(default)s)")
    g.add_argument("--max-turn", type=float, default=MAX_TURN, metavar="X",
                   help="leave faces turned further to the side than X unchanged, since a model trained on "
                        "frontal faces paints blotches into them (in a video, a face's whole track). The turn is how "
                        "far the nose sits from the middle of the eyes, in eye distances: about 0 looking straight "
                        "ahead, 0.5 near profile, at most 0.11 in the London photos; measured with the dlib "
                        "detector only. --max-turn 0 swaps every face (default: %(default)s)")
    g.add_argument("--detector", choices=CHOICES["detector"], default="auto",
                   help="face detector: auto = dlib's HOG detector with its 5-point landmarks when installed "
                        "(the faces extra), else haar (OpenCV's cascades); mediapipe needs its own extra")
    g.add_argument("--mediapipe-model", help="BlazeFace .tflite file for mediapipe >= 0.10.30 (ships no model)")
    b = p.add_argument_group("paste back")
    b.add_argument("--blend", choices=CHOICES["blend"], default="feather",
                   help="feather: alpha blend with a soft edge; poisson: seamless cloning (OpenCV)")
    b.add_argument("--mask", choices=CHOICES["mask"], default="head",
                   help="pasted region: head (face and hair found in the crop: the background keeps its pixels, "
                        "no halo) | round | square (the whole crop, rounded or not)")
    b.add_argument("--feather", type=float, default=0.15, help="width of the soft edge, fraction of the crop (default: %(default)s)")
    b.add_argument("--strength", type=float, default=None,
                   help="scale of the pasted change: below 1 a gentler swap that keeps more of the person, "
                        "above 1 (up to 2) a stronger one (default: what the model recommends for the direction, "
                        "else 1, the model's own swap; see the README's model card)")
    b.add_argument("--no-detail", action="store_true",
                   help="paste the model output itself instead of its change (loses the photo's fine detail)")
    b.add_argument("--no-tone", action="store_true",
                   help="show the model the face in its own colours, not moved to the average skin colour of the "
                        "model's training faces (its release's face_tone)")
    b.add_argument("--any-hue", action="store_true",
                   help="paste the model's colour changes outside the middle of the face as made (default: there "
                        "only changes of brightness and along the skin's hue, so no green or magenta casts on "
                        "hair, forehead, jaw and neck); for a model meant to change those colours")
    b.add_argument("--overlay", action="append", default=[], metavar="FILE[@ANCHOR][,scale=S][,dx=X][,dy=Y]",
                   help="RGBA image anchored at eyes|left_eye|right_eye|nose|mouth|chin|forehead|face (repeatable)")
    v = p.add_argument_group("video")
    v.add_argument("--smooth", type=float, default=0.15, help="temporal smoothing of the face box, seconds (default: %(default)s)")
    v.add_argument("--detect-every", type=int, default=1, help="detect faces every N frames, interpolate between (default: %(default)s)")
    v.add_argument("--crf", type=int, default=18, help="H.264 quality (lower is better, 18 ~ visually lossless; default: %(default)s)")
    p.add_argument("--device", choices=CHOICES["device"], default="auto",
                   help="auto: the GPU when CUDA is available, else the CPU")
    p.add_argument("--precision", choices=CHOICES["precision"], default="auto",
                   help=INFER_PRECISION_HELP)
    p.add_argument("--backend", choices=CHOICES["backend"], default="torch",
                   help="run the generator with PyTorch or onnxruntime (pip install 'cyclekit[onnx]')")
    p.set_defaults(func=run)


def identity_translator(size: int, margin: float):
    """A Translator whose network returns its input: checks the pipeline without a model."""
    from cyclekit.config import ModelConfig
    from cyclekit.infer.translator import Translator

    return Translator(lambda x: x, ModelConfig(image_size=size, face_margin=margin))


def run(args: argparse.Namespace) -> int:
    from cyclekit.errors import ConfigError
    from cyclekit.faces.detectors import make_detector
    from cyclekit.faces.overlays import load_overlays
    from cyclekit.faces.params import DEFAULT_MARGIN
    from cyclekit.faces.batch import plan_swap, swap_path
    from cyclekit.faces.cycle import recorded_limit, unlike_training_faces
    from cyclekit.faces.pipeline import check_face_release, check_strength, face_params_for, recommended_strength

    if args.crf < 0 or args.crf > 51:  # option errors before a model is loaded
        raise ConfigError(f"--crf must be in 0..51, got {args.crf}")
    check_max_turn(args.max_turn)
    if args.detect_every < 1:
        raise ConfigError(f"--detect-every must be at least 1, got {args.detect_every}")
    if args.strength is not None:
        check_strength(args.strength)
    plan_swap(args.inputs, args.out, compare=args.compare)  # a bad --out is refused before the model loads
    if args.model is None:
        from cyclekit.faces.evaluate_swap import builtin_model

        args.model = str(builtin_model())
    if args.model == "identity":
        translator = identity_translator(args.size or 256, args.margin or DEFAULT_MARGIN)
    else:
        from cyclekit.infer.translator import load_translator

        translator = load_translator(args.model, args.direction, args.device, args.precision,
                                     backend=args.backend)
    check_face_release(translator)  # a release the swap could not use is refused before any photo is read
    limit, back = recorded_limit(translator), None
    if limit is not None and args.model != "identity" and args.backend == "torch":  # faces/cycle.py
        try:  # the generator the other way, to tell a face unlike the training faces
            back = load_translator(args.model, "BtoA" if translator.direction == "AtoB" else "AtoB", args.device,
                                   args.precision, backend=args.backend)
        except UserError as exc:
            log.info("no cycle check (%s)", exc)
    strength = recommended_strength(translator) if args.strength is None else args.strength
    params = face_params_for(translator, margin=args.margin, align=not args.no_align, size=args.size,
                             detector=args.detector, min_face=args.min_face)
    kwargs = {"mediapipe": {"model_path": args.mediapipe_model}}.get(args.detector, {})
    detector = make_detector(args.detector, **kwargs)
    records = swap_path(
        translator, args.inputs, args.out, compare=args.compare, progress=True, params=params, detector=detector,
        video_options={"smooth": args.smooth, "detect_every": args.detect_every, "crf": args.crf},
        all_faces=args.all_faces, blend=args.blend, detail=not args.no_detail, tone=not args.no_tone,
        natural_hue=not args.any_hue,
        feather=args.feather, mask=args.mask, overlays=load_overlays(args.overlay), strength=strength,
        max_turn=args.max_turn, back=back,
    )
    for r in records:
        if r.swapped == 0 or "left unchanged" in r.message:
            written = f" -> {r.output}" if r.output.exists() else " (nothing written)"
            print(f"{r.source}: {r.message}{written}")
        warning = unlike_training_faces(r.cycle_error, limit) if back is not None else None
        if warning:
            print(f"{r.source}: {warning}")
    left = {why for r in records for why in r.left}
    if "turned" in left:
        print(f"(faces turned further than --max-turn {args.max_turn:g} are left unchanged; --max-turn 0 swaps "
              "them anyway, with blotches to expect)")
    if "too small" in left:
        print(f"(faces smaller than --min-face {args.min_face} px are left unchanged; a lower --min-face swaps them)")
    done = sum(r.swapped > 0 for r in records)
    unreadable = sum(not r.readable for r in records)
    failed = f"; {unreadable} unreadable file(s) skipped, exit status 1" if unreadable else ""
    label = args.direction
    if args.model != "identity":
        from cyclekit.release import direction_label

        label = direction_label(args.model, translator.direction, translator.info)
    print(f"swapped faces in {done} of {len(records)} file(s) ({label}, margin {params.margin:g}, "
          f"{params.size} px crops, strength {strength:g}) into {args.out}{failed}")
    return 1 if unreadable else 0  # a script sees that an input was lost; a photo without a face is not an error
