"""The cycle error: how far a face is from what a swap model knows (cyclekit.faces.cycle)."""
from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

skdata = pytest.importorskip("skimage.data")
pytest.importorskip("cv2")

from cyclekit.config import ModelConfig  # noqa: E402
from cyclekit.errors import CheckpointError  # noqa: E402
from cyclekit.faces.cycle import LIMIT_FACTOR, MEASURE, cycle_error, cycle_limit_from, face_region, patch_means, recorded_limit  # noqa: E402
from cyclekit.faces.detect_haar import HaarDetector  # noqa: E402
from cyclekit.faces.pipeline import swap_image  # noqa: E402
from cyclekit.faces.strength import cycle_fields, cycle_limits  # noqa: E402
from cyclekit.infer.translator import Translator  # noqa: E402


def test_cycle_error_is_the_miss_in_the_worst_patch_of_the_face_in_grey_levels():
    region = face_region(128, 0.4)
    assert region[64, 64] and not region[0, 0] and not region[64, 2] and 0.2 < region.mean() < 0.5
    values = np.arange(30.0).reshape(5, 6)
    means = patch_means(values, 3)
    assert means.shape == (3, 4) and means[1, 2] == pytest.approx(values[1:4, 2:5].mean())
    shown = np.random.default_rng(0).random((128, 128, 3), dtype=np.float32)
    assert cycle_error(shown, shown, 0.4) == 0.0
    back = shown + 0.1  # missed by 25.5 grey levels over the whole face ...
    back[:20, :20] = back[-20:, -20:] = 0.0  # ... and by anything at all in the corners, which do not count
    assert cycle_error(shown, back, 0.4) == pytest.approx(25.5, abs=0.01)
    blotch = shown.copy()  # a blotch of 100 grey levels the size of an eye (a 17 px patch here) ...
    blotch[50:67, 40:57] += 100 / 255.0
    assert cycle_error(shown, blotch, 0.4) == pytest.approx(100.0, abs=0.01)  # ... counts in full, not diluted
    blotch = shown.copy()
    blotch[110:127, 40:57] += 100 / 255.0  # below the chin, more than half a patch from the face: it does not count
    assert cycle_error(shown, blotch, 0.4) == 0.0


def _slow_cycle_error(shown, back, margin):
    """The definition, patch by patch: every square of PATCH's side centred on a pixel of the face region."""
    from cyclekit.faces.cycle import PATCH

    size = shown.shape[0]
    side = max(3, int(round(PATCH * size / (1.0 + 2.0 * margin))) | 1)
    h = side // 2
    diff = np.abs(back.astype(np.float64) - shown).mean(axis=2)
    region = face_region(size, margin)
    return 255.0 * max(diff[y - h:y + h + 1, x - h:x + h + 1].mean()
                       for y in range(h, size - h) for x in range(h, size - h) if region[y, x])


@pytest.mark.parametrize("size,margin", [(128, 0.4), (64, 0.4), (33, 1.0), (9, 0.1), (256, 0.25), (127, 0.01)])
def test_the_worst_patch_is_found_as_a_patch_by_patch_search_finds_it(size, margin):
    rng = np.random.default_rng(size)
    shown, back = rng.random((size, size, 3), dtype=np.float32), rng.random((size, size, 3), dtype=np.float32)
    back[size // 3:size // 2, size // 3:size // 2] = 1.0  # one bright blotch off the middle
    assert cycle_error(shown, back, margin) == pytest.approx(_slow_cycle_error(shown, back, margin), abs=1e-3)


def test_odd_crops_give_a_number_or_a_clear_error():
    shown = np.zeros((8, 8, 3), np.float32)
    assert not face_region(8, 3.0).any()  # a tiny crop with a wide margin has no face ellipse ...
    assert cycle_error(shown, shown + 0.5, 3.0) == pytest.approx(127.5)  # ... and is measured in its middle
    lost = shown.copy()
    lost[0, 0, 0] = np.nan  # a model output that is not a number: no measure, no warning
    assert cycle_error(shown, lost, 0.4) is None
    with pytest.raises(ValueError, match="square"):
        cycle_error(np.zeros((128, 160, 3)), np.zeros((128, 160, 3)), 0.4)


def test_the_limit_is_a_multiple_of_the_training_peoples_95th_percentile_and_a_bad_one_is_refused(caplog):
    values = [4.0] * 19 + [100.0]
    assert cycle_limit_from(values) == pytest.approx(LIMIT_FACTOR * np.percentile(values, 95), abs=0.05)
    assert cycle_limit_from([5.0, 6.0, None]) == pytest.approx(LIMIT_FACTOR * 5.95, abs=0.05)
    assert cycle_limit_from([]) is None and cycle_limit_from([None]) is None
    rows = [{"strength": 1.0, "direction": "male->female", "cycle_limit": 14.2},
            {"strength": 1.0, "direction": "female->male", "cycle_limit": 12.0},
            {"strength": 1.3, "direction": "female->male", "cycle_limit": 12.0},
            {"strength": 1.0, "direction": "female->male", "cycle_limit": None}]
    assert cycle_limits(rows) == {"AtoB": 14.2, "BtoA": 12.0}
    assert cycle_fields(rows) == {"cycle_limit": {"AtoB": 14.2, "BtoA": 12.0}, "cycle_measure": MEASURE}
    cfg = ModelConfig(image_size=32)

    def limit(direction="AtoB", **info):
        return recorded_limit(Translator(lambda x: x, cfg, direction=direction, info=info))

    assert recorded_limit(Translator(lambda x: x, cfg)) is None
    assert limit("BtoA", cycle_limit={"AtoB": 3, "BtoA": 14.5}, cycle_measure=MEASURE) == 14.5
    assert limit(cycle_limit={"BtoA": 14.5}, cycle_measure=MEASURE) is None
    # a limit measured another way (a release from before session 34: the mean over the face) is not
    # compared, and the user is told once per model
    old = Translator(lambda x: x, cfg, info={"cycle_limit": {"AtoB": 3, "BtoA": 14.5}})
    with caplog.at_level(logging.WARNING, logger="cyclekit.faces.cycle"):
        assert recorded_limit(old) is None and recorded_limit(old) is None
    assert [r.getMessage().count("measured as the mean over the face") for r in caplog.records] == [1]
    assert limit(cycle_limit={"AtoB": 3, "BtoA": 14.5}, cycle_measure="mean") is None
    with pytest.raises(CheckpointError, match="cycle_limit"):  # a broken one is refused all the same
        limit(cycle_limit={"AtoB": "far"})
    for bad in (14.0, {"AtoB": -1}, {"AtoB": "high"}, {"AtoB": True}, {"AtoB": 300}, {"AtoB": 3, "BtoA": "x"},
                {"AtoB": 3, "sideways": 4}):
        with pytest.raises(CheckpointError, match="cycle_limit"):
            limit(cycle_limit=bad, cycle_measure=MEASURE)


def test_swap_measures_the_cycle_error_with_the_generator_back_and_changes_no_pixel_for_it():
    photo = skdata.astronaut()
    faces = HaarDetector().detect(photo)[:1]
    cfg = ModelConfig(image_size=128, face_margin=0.4)
    darker = Translator(lambda x: x - 0.2, cfg)  # a change the way back undoes exactly ...
    lighter = Translator(lambda x: x + 0.2, cfg, direction="BtoA")
    grey = Translator(lambda x: torch.zeros_like(x), cfg)  # ... and one that loses the face: blotches
    plain, info = swap_image(photo, darker, faces=faces, mask="round")
    assert info.faces[0].cycle_error is None  # not measured without the generator back
    out, info = swap_image(photo, darker, faces=faces, mask="round", back=lighter)
    assert np.array_equal(out, plain)  # measuring changes nothing
    assert info.faces[0].cycle_error < 6.0  # only where darkening clipped at black (3.7 in the worst patch: her hair)
    _, lost = swap_image(photo, grey, faces=faces, mask="round", back=lighter)
    assert lost.faces[0].cycle_error > 30.0


def test_cli_swap_warns_about_a_face_past_the_releases_cycle_limit(tmp_path, capsys):
    from cyclekit.cli import main
    from cyclekit.config import Config
    from cyclekit.io.images import save_image
    from cyclekit.nn import build_generator
    from cyclekit.release import save_release, update_release_info

    cfg = Config()
    cfg.model.ngf, cfg.model.n_blocks, cfg.model.image_size, cfg.model.face_margin = 4, 1, 64, 0.4
    torch.manual_seed(0)  # an untrained pair: the way back misses every face by far
    save_release(tmp_path / "run" / "model", cfg, build_generator(cfg.model), build_generator(cfg.model),
                 meta={"domains": ["male", "female"]})
    save_image(tmp_path / "photo.png", skdata.astronaut().astype(np.float32) / 255.0)
    args = ["swap", str(tmp_path / "photo.png"), "--model", str(tmp_path / "run"), "--detector", "haar",
            "--mask", "round"]
    update_release_info(tmp_path / "run", cycle_limit={"AtoB": 0.5, "BtoA": 0.5}, cycle_measure=MEASURE)
    assert main(args + ["--out", str(tmp_path / "a")]) == 0
    text = capsys.readouterr().out
    assert "photo.png: the face is unlike the model's training faces (cycle error" in text
    assert "0.5 at most on faces like them" in text
    update_release_info(tmp_path / "run", cycle_limit={"AtoB": 255.0, "BtoA": 255.0})
    assert main(args + ["--out", str(tmp_path / "b")]) == 0
    assert "unlike the model's training faces" not in capsys.readouterr().out
    update_release_info(tmp_path / "run", cycle_limit={"AtoB": "far"})
    assert main(args + ["--out", str(tmp_path / "c")]) != 0  # a bad limit is refused before any photo
    assert "cycle_limit" in capsys.readouterr().err and not (tmp_path / "c").exists()
