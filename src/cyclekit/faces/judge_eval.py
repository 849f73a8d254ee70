"""Swap success on a folder of face crops (``cyclekit eval`` on a ``data faces`` test set).

For every test crop of domain A (and B), the eyes are found on the untouched crop, the crop is
translated, and the independent judge (:mod:`.judge`) scores both on eye-aligned chips at the
same eye positions. Reported per direction: **swap success** (share of translated faces the
judge assigns to the target gender), the **do-nothing** baseline (the same share for the
untouched crops), the judge's **accuracy** on the untouched crops (how far to trust it here),
and how many crops had no detectable eyes.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np

from cyclekit.faces.judge import GenderJudge, gender_accuracy, swap_success

log = logging.getLogger(__name__)

_WORDS = {"male": "male", "males": "male", "man": "male", "men": "male", "boy": "male", "boys": "male",
          "female": "female", "females": "female", "woman": "female", "women": "female", "girl": "female",
          "girls": "female"}


def domain_genders(names: Sequence[str]) -> Optional[tuple[str, str]]:
    """``("male", "female")`` for domains named men/women, male/female, ...; None otherwise."""
    genders = tuple(_WORDS.get(str(n).strip().lower()) for n in names)
    if len(genders) != 2 or None in genders or genders[0] == genders[1]:
        return None
    return genders  # type: ignore[return-value]


def _u8(img: np.ndarray) -> np.ndarray:
    return np.round(np.clip(img, 0.0, 1.0) * 255.0).astype(np.uint8)


def judge_translations(dataroot: Union[str, Path], translators: dict, genders: tuple[str, str],
                       max_images: int = 0, detector=None, judge: Optional[GenderJudge] = None) -> dict:
    """``{"AtoB": {...}, "BtoA": {...}}`` for ``translators = {"AtoB": t, "BtoA": t}``."""
    from cyclekit.faces.detectors import make_detector
    from cyclekit.infer.translator import translate_array
    from cyclekit.io.images import list_images, load_image

    detector = detector or make_detector("auto")
    judge = judge or GenderJudge()
    out = {}
    for domain, direction, source in (("A", "AtoB", genders[0]), ("B", "BtoA", genders[1])):
        files = list_images(Path(dataroot) / f"test{domain}")[: max_images or None]
        before, after, no_eyes = [], [], 0
        for path in files:
            img = load_image(path, 3)
            faces = detector.detect(_u8(img))
            if not faces or faces[0].eyes is None:
                no_eyes += 1
                continue
            eyes = faces[0].eyes
            before.append(judge.judge(_u8(img), eyes))
            after.append(judge.judge(_u8(translate_array(translators[direction], img)), eyes))
        if not before:
            out[direction] = {"judged": 0, "no_eyes": no_eyes}
            continue
        out[direction] = {
            "source": source, "target": "female" if source == "male" else "male",
            "swap_success": swap_success(after, source), "do_nothing": swap_success(before, source),
            "judge_accuracy": gender_accuracy(before, source), "judged": len(before), "no_eyes": no_eyes,
        }
        log.info("%s: swap success %.1f%% (do-nothing %.1f%%) on %d faces", direction,
                 100 * out[direction]["swap_success"], 100 * out[direction]["do_nothing"], len(before))
    return out


def format_judge_lines(result: dict) -> list[str]:
    lines = []
    for direction, r in result.items():
        if not r.get("judged"):
            lines.append(f"{direction}: no test face with detectable eyes; swap success not measured")
            continue
        lines.append(f"{direction} ({r['source']} -> {r['target']}): swap success {r['swap_success']:.1%} "
                     f"(do-nothing {r['do_nothing']:.1%}; the judge is right on {r['judge_accuracy']:.1%} of the "
                     f"untouched crops; {r['judged']} faces, {r['no_eyes']} without eyes)")
    return lines
