"""Swap success by the independent judge on a folder of test faces (what `cyclekit eval` adds for
male/female data). Real London Set photos (CC BY 4.0, tests/fixtures/london/README.md)."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("cv2")
pytest.importorskip("onnxruntime")

from cyclekit.config import ModelConfig  # noqa: E402
from cyclekit.faces.judge_eval import domain_genders, judge_translations  # noqa: E402
from cyclekit.infer.translator import Translator  # noqa: E402
from cyclekit.io.images import load_image, to_tensor  # noqa: E402

FIX = Path(__file__).parent / "fixtures" / "london"
MEN, WOMEN = ["004_03.jpg", "005_03.jpg", "008_03.jpg"], ["001_03.jpg", "002_03.jpg", "003_03.jpg"]


def _data(tmp_path):
    for folder, names in (("testA", MEN), ("testB", WOMEN)):
        (tmp_path / folder).mkdir()
        for n in names:
            shutil.copy(FIX / n, tmp_path / folder / n)
    return tmp_path


def _replace_with(photo: str) -> Translator:
    """A stand-in 'perfect swap': every input becomes the same photo of the other gender."""
    target = to_tensor(load_image(FIX / photo, 3))[None]
    return Translator(lambda x: target.expand(x.shape[0], -1, -1, -1).clone(), ModelConfig(image_size=256))


def test_domain_names_give_genders():
    assert domain_genders(["men", "women"]) == ("male", "female")
    assert domain_genders(["Female", "male"]) == ("female", "male")
    assert domain_genders(["horse", "zebra"]) is None and domain_genders(["men", "man"]) is None


def test_do_nothing_scores_zero_and_a_real_swap_scores_high(tmp_path):
    data = _data(tmp_path)
    identity = Translator(lambda x: x, ModelConfig(image_size=256))
    r = judge_translations(data, {"AtoB": identity, "BtoA": identity}, ("male", "female"))
    for d in ("AtoB", "BtoA"):
        assert r[d]["judged"] == 3 and r[d]["judge_accuracy"] == 1.0
        assert r[d]["swap_success"] == 0.0 and r[d]["do_nothing"] == 0.0
    swapped = judge_translations(data, {"AtoB": _replace_with(WOMEN[0]), "BtoA": _replace_with(MEN[0])},
                                 ("male", "female"))
    assert swapped["AtoB"]["swap_success"] == 1.0 and swapped["BtoA"]["swap_success"] == 1.0
