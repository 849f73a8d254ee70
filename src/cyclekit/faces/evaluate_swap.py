"""Gender swap on real photos: a by-person split of the London set, training crops, and a
swap-and-judge evaluation on whole photos.

* :func:`london_photos` reads the Face Research Lab London Set as shipped in ``shared/faces/london``
  (``neutral/ID_03.jpg`` with ``.pts`` landmarks whose points 0/1 are the pupils,
  ``smiling/ID_08.jpg``, ``london_info.csv`` with each person's gender).
* :func:`split_by_person` holds out whole people (balanced by gender): nobody is in both splits.
* :func:`write_training_crops` crops the training people's faces exactly as ``cyclekit swap`` will
  (detector box widened by the margin, eye-line aligned) into ``trainA`` (male) / ``trainB``
  (female) and writes ``faces.json`` with ``"domains": ["male", "female"]``.
* :func:`evaluate_swaps` swaps each held-out photo to the other gender with
  :func:`cyclekit.faces.pipeline.swap_image` and scores it with the independent judge
  (:mod:`cyclekit.faces.judge`, eye-aligned chips) and the identity measures
  (:mod:`cyclekit.faces.identity`), next to the do-nothing baseline.

This is the faces layer: it uses inference, never training.
"""
from __future__ import annotations

import csv
import logging
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence, Union

import numpy as np

from cyclekit.errors import DataError
from cyclekit.faces.params import FaceParams, write_faces_json
from cyclekit.release import BUILTIN_MODEL, builtin_model  # noqa: F401 (the swap's default model, re-exported)

log = logging.getLogger(__name__)

PathLike = Union[str, Path]
# Domain A is male, B female: G_AB (swap --direction AtoB) turns men into women.
DOMAINS = ("male", "female")
LONDON_ATTRIBUTION = ("DeBruine, L., & Jones, B. (2017). Face Research Lab London Set (Version 5). figshare. "
                      "https://doi.org/10.6084/m9.figshare.5047666.v5 - licensed under CC BY 4.0.")


@dataclass
class Photo:
    """One London photo. ``eyes`` are the pupils from the ``.pts`` file (neutral photos only)."""

    person: str
    gender: str  # "male" | "female"
    path: Path
    eyes: Optional[np.ndarray] = None

    @property
    def name(self) -> str:
        return self.path.stem

    def load(self) -> np.ndarray:
        from PIL import Image

        with Image.open(self.path) as im:
            return np.asarray(im.convert("RGB"))


def _read_eyes_csv(path: Path) -> list[Photo]:
    """``eyes.csv`` (``file,gender,left_x,left_y,right_x,right_y,...``) as in tests/fixtures/london."""
    photos = []
    with open(path, newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            f = path.parent / row["file"].strip()
            eyes = np.array([[float(row["left_x"]), float(row["left_y"])],
                             [float(row["right_x"]), float(row["right_y"])]])
            photos.append(Photo(f.stem.split("_")[0], row["gender"].strip().lower(), f, eyes))
    return photos


def london_photos(root: PathLike) -> list[Photo]:
    """All photos of the London set under ``root`` (or a subset with the same layout).

    Either the shared layout (``neutral/*.jpg`` + ``.pts``, ``smiling/*.jpg`` and
    ``london_info.csv`` in ``root`` or a parent) or the fixture layout (``*.jpg`` with
    ``eyes.csv`` giving each file's gender and eye centres).
    """
    root = Path(root)
    if (root / "eyes.csv").is_file():
        photos = [p for p in _read_eyes_csv(root / "eyes.csv") if p.gender in DOMAINS and p.path.is_file()]
        if not photos:
            raise DataError(f"{root / 'eyes.csv'} lists no existing photo with gender male/female")
        return photos
    info = next((p / "london_info.csv" for p in (root, *root.parents) if (p / "london_info.csv").is_file()), None)
    if info is None:
        raise DataError(f"no london_info.csv (or eyes.csv) in {root} or above; point --london at the London "
                        "set folder (shared/faces/london)")
    with open(info, newline="", encoding="utf-8") as fh:
        gender = {row["face_id"].strip(): row["face_gender"].strip().lower() for row in csv.DictReader(fh)}
    files = sorted([*root.glob("neutral/*.jpg"), *root.glob("smiling/*.jpg"), *root.glob("*.jpg")])
    photos = []
    for f in files:
        person = f.stem.split("_")[0]
        if gender.get(person) not in DOMAINS:
            log.warning("%s: person %s has no male/female entry in %s; skipped", f, person, info)
            continue
        eyes = None
        pts = f.with_suffix(".pts")
        if pts.is_file():
            eyes = np.loadtxt(pts, dtype=np.float64).reshape(-1, 2)[:2]
        photos.append(Photo(person, gender[person], f, eyes))
    if not photos:
        raise DataError(f"no London photos (*.jpg with an entry in {info}) under {root}")
    return photos


def split_by_person(photos: Sequence[Photo], n_test_people: int = 16, seed: int = 0) -> tuple[list[Photo], list[Photo]]:
    """``(train, test)``: ``n_test_people`` whole people held out, half of them women, half men.

    The choice depends only on the set of people and ``seed``, so it is the same on every machine.
    """
    people = {g: sorted({p.person for p in photos if p.gender == g}) for g in DOMAINS}
    held: set[str] = set()
    rng = random.Random(f"london-split-{seed}")
    for i, g in enumerate(DOMAINS):
        k = n_test_people // 2 + (n_test_people % 2 if i == 0 else 0)
        if k >= len(people[g]):
            raise DataError(f"cannot hold out {k} {g} people: only {len(people[g])} in the set")
        held.update(rng.sample(people[g], k))
    train = [p for p in photos if p.person not in held]
    test = [p for p in photos if p.person in held]
    assert not {p.person for p in train} & {p.person for p in test}
    return train, test


def sample_people(photos: Sequence[Photo], n_people: int, salt: str) -> list[Photo]:
    """The photos of ``n_people`` people drawn from ``photos``, half men, half women, by a seeded
    draw named ``salt`` (the same people on every machine): e.g. training people to choose a
    checkpoint or a paste strength on, without touching the held-out ones."""
    rng = random.Random(salt)
    chosen: set[str] = set()
    for g in DOMAINS:
        people = sorted({p.person for p in photos if p.gender == g})
        chosen |= set(rng.sample(people, min(len(people), n_people // 2)))
    return [p for p in photos if p.person in chosen]


def swap_translators(model: Union[str, Path, None] = None) -> dict:
    """The gender-swap pair of a run folder or release (default: the built-in model), keyed by the
    gender each one is given: ``{"male": G(male -> female), "female": G(female -> male)}``, on the CPU."""
    from cyclekit.infer.translator import load_translator

    model = Path(model) if model else builtin_model()
    return {"male": load_translator(model, "AtoB", device="cpu"), "female": load_translator(model, "BtoA", device="cpu")}


def detect_faces(photos: Sequence[Photo], detector, progress: Optional[Callable[[str], None]] = None) -> dict:
    """``{photo path: Face or None}`` with the detector ``cyclekit swap`` uses."""
    out = {}
    for i, p in enumerate(photos):
        faces = detector.detect(p.load())
        out[str(p.path)] = faces[0] if faces else None
        if faces == []:
            log.warning("%s: no face found", p.path)
        if progress and (i + 1) % 50 == 0:
            progress(f"  detected faces in {i + 1}/{len(photos)} photos")
    return out


def write_training_crops(photos: Sequence[Photo], faces: dict, out: PathLike, params: FaceParams,
                         split: str = "train", backdrop: bool = True, even_tone: bool = False) -> dict[str, int]:
    """Crop each photo's face like ``cyclekit swap`` does into ``out/{split}A`` (male) and
    ``out/{split}B`` (female); returns the counts per folder. ``out/faces.json`` records the crop
    geometry and, for the release (:func:`cyclekit.faces.params.dataset_release_info`): with
    ``backdrop``, the studio backdrop colour (:func:`cyclekit.faces.segment.backdrop_colour`) that
    every crop's background was put on (:func:`~cyclekit.faces.segment.on_backdrop`), exactly as a
    swap with that colour in the release shows the model each head (training and swapping then
    feed the model the same kind of crop, whatever is behind the person in the photo), and the
    average skin colour of each direction's input crops (:func:`cyclekit.faces.tone.training_tone`:
    the men's for ``AtoB``, the women's for ``BtoA``).

    With ``even_tone`` every crop is first moved to the mean skin colour of all of them, men and
    women together (:func:`~cyclekit.faces.tone.to_tone`), and that one colour is recorded for both
    directions: the model then cannot take skin brightness or colour for a mark of gender, so it
    neither lightens men nor darkens women, and a swap shows it every face at that colour."""
    from cyclekit.faces.align import face_crop
    from cyclekit.faces.segment import backdrop_colour, photo_head_mask, toned_on_backdrop
    from cyclekit.faces.tone import skin_colour, to_tone, training_tone
    from cyclekit.io.images import save_image

    out = Path(out)
    found = [p for p in photos if faces.get(str(p.path)) is not None]

    def crops():  # one at a time: memory does not grow with the photos
        for p in found:
            img = p.load()
            crop, t = face_crop(img, faces[str(p.path)], params)
            yield p, crop.astype(np.float32) / 255.0, (img, t)

    def direction(p: Photo) -> str:
        return "AtoB" if p.gender == DOMAINS[0] else "BtoA"

    skins: dict[str, list] = {"AtoB": [], "BtoA": []}

    def measured():  # the first pass: each crop's skin colour, and the crops for the backdrop colour
        for p, crop, _ in crops():
            skins[direction(p)].append(skin_colour(crop, params.margin))
            yield crop

    colour = backdrop_colour(measured()) if backdrop and found else None
    if colour is None:
        for _ in measured():
            pass
    tone = {d: training_tone(c) for d, c in skins.items() if c}
    even = training_tone(skins["AtoB"] + skins["BtoA"]) if even_tone else None
    if even is not None:
        tone = {d: even for d in tone}
    counts: dict[str, int] = {}
    for p, crop, (img, t) in crops():
        folder = split + ("A" if direction(p) == "AtoB" else "B")
        head = photo_head_mask(img, t, params.margin, seen=True) if colour is not None else None  # as a swap shows it
        toned = to_tone(crop, params.margin, even) if even is not None else crop
        # as a swap shows it: the person at the tone, on the photo's own background or the backdrop
        crop = toned if head is None else toned_on_backdrop(crop, toned, head, colour)
        save_image(out / folder / f"{p.name}.png", crop, png_level=1)
        counts[folder] = counts.get(folder, 0) + 1
    write_faces_json(out, params, {"domains": list(DOMAINS), "source": "Face Research Lab London Set (CC BY 4.0)",
                                   "attribution": LONDON_ATTRIBUTION, "split": "by person", "backdrop": colour,
                                   "tone": tone})
    return counts


def judge_eyes(photo: Photo, face) -> Optional[np.ndarray]:
    """The eyes the judge and identity measures use: the true pupils, else the detector's eyes."""
    if photo.eyes is not None:
        return photo.eyes
    return None if face is None or face.eyes is None else np.asarray(face.eyes, dtype=np.float64)


def backdrop_change(before: np.ndarray, after: np.ndarray, region: Optional[np.ndarray],
                    step: int = 2) -> Optional[float]:
    """Mean change (grey levels) of the backdrop pixels in ``region`` (the crop square, see
    :func:`crop_region`). The backdrop is what a flood fill from the photo's two top corners
    reaches through steps of at most ``step`` levels between neighbours (a studio backdrop's
    smooth gradient, stopped by the hair's edge), so it does not depend on the swap's own mask.
    A pale halo around the head shows up here. None when the backdrop is not in ``region``."""
    import cv2

    if region is None or not region.any():
        return None
    a = np.asarray(before, np.float32)
    smooth = cv2.GaussianBlur(np.round(a).astype(np.uint8), (5, 5), 0)
    h, w = a.shape[:2]
    fill = np.zeros((h + 2, w + 2), np.uint8)
    flags = 8 | cv2.FLOODFILL_MASK_ONLY | (1 << 8)
    for seed in ((0, 0), (w - 1, 0)):
        if not fill[seed[1] + 1, seed[0] + 1]:
            cv2.floodFill(smooth, fill, seed, 0, (step,) * 3, (step,) * 3, flags)
    near = fill[1:-1, 1:-1].astype(bool) & region
    return float(np.abs(np.asarray(after, np.float32) - a)[near].mean()) if near.any() else None


def crop_region(shape: tuple[int, ...], transform) -> np.ndarray:
    """Bool HxW mask of the photo pixels under a crop square (``CropTransform``)."""
    import cv2

    region = np.zeros(shape[:2], np.uint8)
    cv2.fillConvexPoly(region, np.round(transform.corners()).astype(np.int32), 1)
    return region.astype(bool)


def _backdrop(img: np.ndarray, out: np.ndarray, info) -> Optional[float]:
    t = info.faces[0].transform if info.faces else None
    v = backdrop_change(img, out, crop_region(img.shape, t)) if t is not None else None
    return None if v is None else round(v, 3)


def backdrop_paint(before: np.ndarray, after: np.ndarray, changed: Optional[np.ndarray], colour) -> Optional[float]:
    """Share (%) of the pasted pixels (``changed``) that were the person in ``before`` (at least 48
    grey levels from the model's training backdrop ``colour``) and are that backdrop in ``after``
    (within 20 levels): the pale band a model paints along a jaw it narrows (see
    :func:`cyclekit.faces.segment.backdrop_guard`). None without a backdrop or a pasted region."""
    if colour is None or changed is None or not changed.any():
        return None
    flat = np.asarray(colour, np.float32).reshape(1, 1, 3)
    was = np.abs(np.asarray(before, np.float32)[..., :3] - flat).max(axis=2) >= 48.0
    now = np.abs(np.asarray(after, np.float32)[..., :3] - flat).max(axis=2) <= 20.0
    return float(100.0 * (was & now)[changed].mean())


def _mean(values: Sequence[Optional[float]]) -> Optional[float]:
    real = [v for v in values if v is not None]
    return float(np.mean(real)) if real else None


def _rate(flags: Sequence[bool]) -> Optional[float]:
    return None if not len(flags) else float(np.mean(flags))


def evaluate_swaps(photos: Sequence[Photo], faces: dict, translators: dict, *, judge=None, embedder=None,
                   detail: bool = True, params: Optional[FaceParams] = None, match: bool = True,
                   mask: str = "head", strength: Optional[float] = None, guard: bool = True, tone: bool = True) -> dict:
    """Swap every photo to the other gender and score the swaps.

    ``translators``: ``{"male": G(male -> female), "female": G(female -> male)}`` (Translators).
    Returns ``{"directions": {...}, "photos": [...], "swapped": {path: uint8 image}}`` where each
    direction has the judge's swap success (and ``sure_success``, the share it gives the target
    gender at least :data:`~cyclekit.faces.judge.SURE`), the do-nothing baseline (the untouched photo scored
    as a swap) and the judge's accuracy on the untouched photos, plus PSNR/SSIM inside the face,
    the fine texture on chin and jaw before and after (:func:`~cyclekit.faces.identity.lower_face_texture`),
    the change on the blend rim (:func:`cyclekit.faces.blend.rim_change`, grey levels; the rim is the
    hair's edge with the head mask, the crop's edge with a round one, so compare it within a mask),
    the change of the studio backdrop inside the crop (:func:`backdrop_change`, the halo), the
    cycle error with the other generator (:mod:`cyclekit.faces.cycle`: mean, and the limit these
    faces would set) and, with ``embedder``, the same-person rate and rank-1 identification.
    """
    from cyclekit.faces.cycle import cycle_limit_from
    from cyclekit.faces.identity import lower_face_texture, own_original_rank1, pixel_identity, same_person_rate
    from cyclekit.faces.judge import SURE, GenderJudge, face_chip
    from cyclekit.faces.pipeline import face_params_for, recommended_backdrop, swap_image

    judge = judge or GenderJudge()
    rows, swapped, emb = [], {}, {"orig": {}, "swap": {}}
    for p in photos:
        face = faces.get(str(p.path))
        eyes = judge_eyes(p, face)
        if face is None or eyes is None:
            rows.append({"photo": p.name, "gender": p.gender, "status": "no face"})
            continue
        img = p.load()
        tr = translators[p.gender]
        fp = params or face_params_for(tr)
        back = translators.get(DOMAINS[1 - DOMAINS.index(p.gender)])  # the generator back: the cycle error
        out, info = swap_image(img, tr, params=fp, faces=[face], detail=detail, match=match, mask=mask,
                               strength=strength, guard=guard, tone=tone, back=back)
        swapped[str(p.path)] = out
        before, after = judge.predict([face_chip(img, eyes), face_chip(out, eyes)])
        ident = pixel_identity(img, out, eyes)
        rows.append({"photo": p.name, "person": p.person, "gender": p.gender, "status": info.message,
                     "p_male_before": round(float(before), 4), "p_male_after": round(float(after), 4),
                     "judged_right_before": bool((before > 0.5) == (p.gender == "male")),
                     "swapped": bool((after > 0.5) == (p.gender != "male")),
                     "sure": bool((after if p.gender == "female" else 1.0 - after) >= SURE),
                     "psnr": round(ident["psnr"], 3), "ssim": round(ident["ssim"], 4),
                     "chin_texture_before": round(lower_face_texture(img, eyes), 3),
                     "chin_texture": round(lower_face_texture(out, eyes), 3),
                     "rim_change": round(255.0 * info.rim_change, 3), "backdrop_change": _backdrop(img, out, info),
                     "cycle_error": info.faces[0].cycle_error if info.faces else None,
                     "backdrop_paint": backdrop_paint(img, out, info.mask, recommended_backdrop(tr))})
        if embedder is not None:
            emb["orig"][p.name] = embedder.embed(img, eyes)
            emb["swap"][p.name] = embedder.embed(out, eyes)
    directions = {}
    for g in DOMAINS:
        other = DOMAINS[1 - DOMAINS.index(g)]
        rs = [r for r in rows if r["gender"] == g and "swapped" in r]
        d = {"photos": len(rs), "failed": sum(r["gender"] == g and "swapped" not in r for r in rows),
             "swap_success": _rate([r["swapped"] for r in rs]),
             "sure_success": _rate([r["sure"] for r in rs]),
             "do_nothing_success": _rate([not r["judged_right_before"] for r in rs]),
             "judge_accuracy_untouched": _rate([r["judged_right_before"] for r in rs]),
             "psnr_face": float(np.mean([r["psnr"] for r in rs])) if rs else None,
             "ssim_face": float(np.mean([r["ssim"] for r in rs])) if rs else None,
             # fine texture on chin and jaw (identity.lower_face_texture): stubble left behind, or grown
             "chin_texture_before": _mean([r["chin_texture_before"] for r in rs]),
             "chin_texture": _mean([r["chin_texture"] for r in rs]),
             # the halo: mean change (grey levels, 0-255) where the pasted face blends into the photo
             "rim_change": _mean([r["rim_change"] for r in rs]),
             "backdrop_change": _mean([r["backdrop_change"] for r in rs]),
             "backdrop_paint": _mean([r["backdrop_paint"] for r in rs]),
             # how far the faces are from the model's training faces (faces/cycle.py), grey levels
             "cycle_error": _mean([r["cycle_error"] for r in rs]),
             "cycle_limit": cycle_limit_from([r["cycle_error"] for r in rs])}
        if embedder is not None and rs:
            o = np.stack([emb["orig"][r["photo"]] for r in rs])
            s = np.stack([emb["swap"][r["photo"]] for r in rs])
            d["same_person_rate"] = same_person_rate(o, s)
            d["own_original_rank1"] = own_original_rank1(o, s) if len(rs) > 1 else None
        directions[f"{g}->{other}"] = d
    return {"directions": directions, "photos": rows, "swapped": swapped}


def swap_grid(photos: Sequence[Photo], faces: dict, swapped: dict, params: FaceParams, n: int = 8,
              size: int = 160) -> np.ndarray:
    """A uint8 grid: per row, pairs (original face | swapped face) of up to ``n`` women then ``n`` men,
    each cut around the detected face with the model's crop geometry at ``size`` px."""
    from cyclekit.faces.align import face_crop

    geo = FaceParams(margin=params.margin, align=params.align, size=size, detector=params.detector)
    tiles = []
    for g in reversed(DOMAINS):
        chosen = [p for p in photos if p.gender == g and str(p.path) in swapped][:n]
        for p in chosen:
            face = faces[str(p.path)]
            a, _ = face_crop(p.load(), face, geo)
            b, _ = face_crop(swapped[str(p.path)], face, geo)
            tiles.append(np.concatenate([a, np.full((size, 2, 3), 255, np.uint8), b], axis=1))
    if not tiles:
        raise DataError("no swapped photos to show")
    cols = 4
    blank = np.full_like(tiles[0], 255)
    tiles += [blank] * (-len(tiles) % cols)
    pad = np.full((size, 8, 3), 255, np.uint8)
    rows = [np.concatenate(sum(([t, pad] for t in tiles[i:i + cols]), [])[:-1], axis=1)
            for i in range(0, len(tiles), cols)]
    gap = np.full((8, rows[0].shape[1], 3), 255, np.uint8)
    return np.concatenate(sum(([r, gap] for r in rows), [])[:-1], axis=0)
