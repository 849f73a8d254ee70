"""The tone shift (cyclekit.faces.tone): the model sees each face at its training faces' skin colour,
and the photo gets the model's change on the person's own tone."""
from __future__ import annotations

import numpy as np
import pytest
import torch

skdata = pytest.importorskip("skimage.data")
pytest.importorskip("cv2")

from cyclekit.config import ModelConfig  # noqa: E402
from cyclekit.errors import CheckpointError  # noqa: E402
from cyclekit.faces.align import crop_transform, warp_crop  # noqa: E402
from cyclekit.faces.detect_haar import HaarDetector  # noqa: E402
from cyclekit.faces.pipeline import face_params_for, swap_image  # noqa: E402
from cyclekit.io.images import LUMA  # noqa: E402
from cyclekit.faces.tone import (MAX_SHIFT, ToneMove, keep_natural_hue, keep_skin_colour, skin_colour, skin_region, to_tone,  # noqa: E402
                                 training_tone)
from cyclekit.infer.translator import Translator  # noqa: E402

TONE = [150, 110, 100]


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return skdata.astronaut()


@pytest.fixture(scope="module")
def faces(photo):
    found = HaarDetector().detect(photo)
    assert found
    return found[:1]


def test_skin_region_covers_the_middle_of_the_face_below_the_eyes():
    r = skin_region(128, 0.4)
    box = 128 / 1.8
    ys, xs = np.nonzero(r)
    assert abs(xs.mean() - 63.5) < 0.5 and ys.mean() > 63.5  # centred, a little below the box centre
    assert xs.max() - xs.min() < 0.6 * box and ys.min() > 63.5 - 0.25 * box  # the eyes (0.11 box up) are out
    assert not r[:20].any() and not r[:, :20].any()  # hair and background are out


def test_to_tone_moves_the_skin_to_the_tone_without_clipping_anything():
    crop = np.random.default_rng(0).uniform(0, 1, (64, 64, 3)).astype(np.float32)
    crop[skin_region(64, 0.4)] = [0.8, 0.3, 0.5]
    crop[0, 0], crop[0, 1] = 0.0, 1.0  # black and white pixels outside the skin
    assert np.allclose(skin_colour(crop, 0.4), [0.8, 0.3, 0.5])
    moved = to_tone(crop, 0.4, [153, 127.5, 127.5])  # red down, green up, blue unchanged
    assert np.allclose(skin_colour(moved, 0.4), [0.6, 0.5, 0.5], atol=1e-5)
    assert moved[0, 0, 0] == 0.0 and moved[0, 1, 0] < 1.0  # darker: a line through black
    assert moved[0, 0, 1] > 0.0 and moved[0, 1, 1] == 1.0  # lighter: a line through white
    assert np.allclose(moved[..., 2], crop[..., 2], atol=1e-6)
    ranks = np.argsort(crop[..., 0].ravel(), kind="stable")  # the order of values is kept: nothing clips
    assert np.all(np.diff(moved[..., 0].ravel()[ranks]) >= 0)
    far = to_tone(crop, 0.4, [0, 255, 128])  # moves at most MAX_SHIFT per channel
    assert np.allclose(skin_colour(far, 0.4), [0.8 - MAX_SHIFT, 0.3 + MAX_SHIFT, 128 / 255], atol=1e-5)
    move = ToneMove(crop, 0.4, [153, 127.5, 127.5])  # and back: undo is the exact inverse
    assert np.allclose(move.undo(move.apply(crop)), crop, atol=1e-5)


def test_keep_skin_colour_takes_out_the_mean_colour_change_over_the_skin_only():
    crop = np.full((64, 64, 3), 0.5, np.float32)
    new = crop + np.array([0.1, 0.05, 0.0], np.float32)  # lighter and warmer everywhere: a cast
    new[:8, :8] = [0.9, 0.2, 0.2]  # and a red patch outside the skin
    kept = keep_skin_colour(crop, new, 0.4)
    assert np.allclose(kept[skin_region(64, 0.4)], 0.5, atol=1e-6)
    assert np.allclose(kept[:8, :8], [0.8, 0.15, 0.2], atol=1e-6)


def test_keep_natural_hue_keeps_brightness_and_the_skins_hue_outside_the_middle_of_the_face():
    skin = np.array([0.6, 0.45, 0.35], np.float32)
    crop = np.full((64, 64, 3), skin, np.float32)  # skin, with dark hair over the top rows
    crop[:12] = 0.12
    axis = skin - skin @ LUMA  # the skin's hue: warm
    magenta = np.array([0.12, -0.02, 0.1], np.float32)
    change = np.zeros_like(crop)
    change[:12] = magenta  # the model lightens the hair with a magenta sheen
    change[36:42, 26:38] = [0.05, -0.02, 0.03]  # and paints purplish lips in the middle of the face
    kept = keep_natural_hue(crop, crop + change, 0.4)
    hair = (kept - crop)[2:8, 20:44].reshape(-1, 3)
    assert np.allclose(hair @ LUMA, magenta @ LUMA, atol=1e-5)  # the same lightening ...
    colour = hair - (hair @ LUMA)[:, None]
    assert np.abs(np.cross(colour, axis)).max() < 1e-5  # ... and of its colour only the part along the skin's hue
    assert np.linalg.norm(colour, axis=1).max() < 0.5 * np.linalg.norm(magenta - magenta @ LUMA)
    assert np.allclose(kept[36:42, 26:38], crop[36:42, 26:38] + change[36:42, 26:38], atol=1e-6)  # the middle: as made
    brown = np.zeros_like(crop)
    brown[:12] = 0.1 + 0.5 * axis  # black hair lightened to brown: kept as made
    assert np.allclose(keep_natural_hue(crop, crop + brown, 0.4)[2:8], (crop + brown)[2:8], atol=1e-5)
    teal = np.zeros_like(crop)
    teal[:12] = 0.1 - 0.5 * axis  # lightened to a cool grey-blue: no bluer than grey
    cooled = keep_natural_hue(crop, crop + teal, 0.4)[2:8, 20:44]
    assert np.allclose(cooled, cooled[..., :1], atol=1e-5) and np.allclose(cooled @ LUMA, 0.22, atol=1e-5)
    for strength in (1.5, 2.0):  # the paste scales the change afterwards: still no bluer than grey
        scaled = crop + strength * (keep_natural_hue(crop, crop + teal, 0.4, strength) - crop)
        assert np.allclose(scaled[2:8, 20:44], scaled[2:8, 20:44, :1], atol=1e-5)
    grey = np.full((64, 64, 3), 0.6, np.float32)  # a grey photo has no skin hue: outside the middle only brightness
    tinted = keep_natural_hue(grey, grey + change, 0.4)[2:8, 20:44]
    assert np.allclose(tinted, tinted[..., :1], atol=1e-5)


def test_training_tone_is_the_mean_skin_colour():
    assert training_tone([]) is None
    assert training_tone([np.array([0.2, 0.4, 0.6]), np.array([0.4, 0.4, 0.4])]) == [77, 102, 128]


def test_swap_shows_the_model_the_face_at_its_directions_tone_and_pastes_its_change_on_the_persons_own(
        photo, faces, monkeypatch):
    import cyclekit.faces.pipeline as pipeline

    monkeypatch.setattr(pipeline, "keep_natural_hue", lambda crop, new, *rest: new)  # its own test, above
    seen = []

    def redder(x):  # +0.1 red (in [0, 1] units) on the crop's right half, -0.1 on its left: no mean change
        seen.append(x.clone())
        side = torch.where(torch.arange(x.shape[-1]) >= x.shape[-1] // 2, 0.2, -0.2)
        return x + torch.stack([side, 0 * side, 0 * side]).view(1, 3, 1, -1)

    cfg = ModelConfig(image_size=128, face_margin=0.4)
    shifted = Translator(redder, cfg, info={"face_tone": {"AtoB": TONE, "BtoA": [130, 100, 90]}})
    plain = Translator(redder, cfg)
    out, info = swap_image(photo, shifted, faces=faces, mask="round", detail=True, match=False)
    ref, _ = swap_image(photo, plain, faces=faces, mask="round", detail=True, match=False)
    fed = (seen[0][0].permute(1, 2, 0).numpy() + 1.0) / 2.0
    unshifted = (seen[1][0].permute(1, 2, 0).numpy() + 1.0) / 2.0
    params = face_params_for(plain)
    crop = warp_crop(photo.astype(np.float32) / 255.0, crop_transform(faces[0], params))
    assert np.allclose(skin_colour(fed, 0.4) * 255, TONE, atol=1.0)  # the model saw its inputs' training tone
    assert np.allclose(unshifted, crop, atol=1e-4)  # without face_tone: the crop as it is
    # without face_tone the change lands as it is. Measured where neither the crop nor the output
    # clipped, away from the paste's edges and from the face's middle, on each side of it.
    mid = info.mask & (photo.max(axis=2) < 0.8 * 255) & (photo.min(axis=2) > 0.2 * 255)
    cx = faces[0].box[0] + faces[0].box[2] / 2.0
    xs = np.arange(photo.shape[1])[None, :]
    right, left = mid & (xs > cx + 8), mid & (xs < cx - 8)
    assert right.sum() > 2000 and left.sum() > 2000

    def change(img, where):
        return np.median(img.astype(int)[where] - photo.astype(int)[where], axis=0)

    assert np.allclose(change(ref, right), [25.5, 0, 0], atol=1.0)
    assert np.allclose(change(ref, left), [-25.5, 0, 0], atol=1.0)
    # with it, the change made at the tone is moved back to the person's colours: this face is
    # brighter than the tone, so the move darkened red by want / have and the red change is
    # scaled back up by have / want (not pasted 1 / ratio too weak, as before session 29)
    move = ToneMove(crop, 0.4, TONE)
    assert move.want[0] < move.have[0] - 0.05
    red = 25.5 * move.have[0] / move.want[0]
    moved = change(out, right)
    assert abs(moved[0] - red) <= 2.0 and abs(change(out, left)[0] + red) <= 2.0
    assert np.abs(moved[1:]).max() <= 1.0
    # and so detail mode and the model's output moved back (detail=False) land the same change
    raw, _ = swap_image(photo, shifted, faces=faces, mask="round", detail=False)
    assert np.allclose(change(raw, right), moved, atol=2.0)
    # a change of colour over the whole face is a cast, and is taken out (keep_skin_colour)
    cast = Translator(lambda x: x + torch.tensor([0.2, 0.1, -0.1]).view(1, 3, 1, 1), cfg, info=shifted.info)
    tinted, _ = swap_image(photo, cast, faces=faces, mask="round", detail=True, match=False)
    back = warp_crop(tinted.astype(np.float32) / 255.0, crop_transform(faces[0], params))
    assert np.abs((back - crop)[skin_region(128, 0.4)].mean(axis=0) * 255).max() <= 1.0
    # model_output mode pastes the model's output moved back to the person's colour: with a model
    # that changes nothing, the same as without a tone
    still, plain_still = Translator(lambda x: x, cfg, info=shifted.info), Translator(lambda x: x, cfg)
    out2, _ = swap_image(photo, still, faces=faces, mask="round", detail=False)
    ref2, _ = swap_image(photo, plain_still, faces=faces, mask="round", detail=False)
    assert np.abs(out2.astype(int) - ref2.astype(int))[info.mask].max() <= 2
    # the other direction's generator sees the other domain's training tone
    seen.clear()
    other = Translator(redder, cfg, direction="BtoA", info={"face_tone": {"AtoB": TONE, "BtoA": [130, 100, 90]}})
    swap_image(photo, other, faces=faces, mask="round")
    fed_b = (seen[0][0].permute(1, 2, 0).numpy() + 1.0) / 2.0
    assert np.allclose(skin_colour(fed_b, 0.4) * 255, [130, 100, 90], atol=1.0)
    # tone=False (cyclekit swap --no-tone) feeds the crop unshifted
    seen.clear()
    swap_image(photo, shifted, faces=faces, mask="round", tone=False)
    assert np.allclose((seen[0][0].permute(1, 2, 0).numpy() + 1.0) / 2.0, crop, atol=1e-4)


def test_an_identity_model_changes_nothing_with_a_tone_and_a_bad_tone_is_refused(photo, faces):
    cfg = ModelConfig(image_size=128, face_margin=0.4)
    tr = Translator(lambda x: x, cfg, info={"face_tone": {"AtoB": TONE}, "face_backdrop": [209, 212, 212]})
    out, info = swap_image(photo, tr, faces=faces)
    assert info.swapped == 1 and np.abs(out.astype(int) - photo.astype(int)).max() <= 1
    for bad in (TONE, {"AtoB": [1, 2]}, {"AtoB": [0, 0, 300]}, {"AtoB": "skin"}, {"AtoB": [True, 0, 0]}):
        with pytest.raises(CheckpointError, match="face_tone"):
            swap_image(photo, Translator(lambda x: x, cfg, info={"face_tone": bad}), faces=faces)


def test_cli_swap_no_tone_reaches_the_pipeline(photo, tmp_path, monkeypatch):
    from cyclekit.cli import main
    from cyclekit.faces import pipeline
    from cyclekit.io.images import save_image

    calls = []
    real = pipeline.swap_image

    def spy(*args, **kwargs):
        calls.append(kwargs.get("tone"))
        return real(*args, **kwargs)

    monkeypatch.setattr("cyclekit.faces.batch.swap_image", spy)
    save_image(tmp_path / "a.png", photo / 255.0)
    assert main(["swap", str(tmp_path / "a.png"), "--model", "identity", "-o", str(tmp_path / "o/")]) == 0
    assert main(["swap", str(tmp_path / "a.png"), "--model", "identity", "--no-tone", "-o", str(tmp_path / "p/")]) == 0
    assert calls == [True, False] and (tmp_path / "p" / "a.png").is_file()


def test_a_release_with_a_bad_tone_for_the_other_direction_is_refused_before_any_photo(photo, tmp_path, capsys):
    import json

    from cyclekit.cli import main
    from cyclekit.faces.evaluate_swap import builtin_model
    from cyclekit.io.images import save_image

    model = tmp_path / "model"
    model.mkdir()
    for f in builtin_model().iterdir():
        (model / f.name).write_bytes(f.read_bytes())
    doc = json.loads((model / "config.json").read_text())
    doc["cyclekit"]["face_tone"]["BtoA"] = [0, 0, 999]
    (model / "config.json").write_text(json.dumps(doc))
    save_image(tmp_path / "a.png", photo / 255.0)
    assert main(["swap", str(tmp_path / "a.png"), "--model", str(model), "-o", str(tmp_path / "o/")]) == 2
    err = capsys.readouterr().err
    assert "face_tone" in err and "config.json" in err and not (tmp_path / "o" / "a.png").exists()


def test_the_tone_moves_the_person_only_and_the_studio_background_stays_as_shot():
    """A studio photo's background near the backdrop colour is shown to the model as it is: the tone
    move (here a large one, towards a cool blue skin) tints the person only. Before, the moved
    background reached the model tinted (a green studio behind a pink-skinned man, London 172_08)."""
    from pathlib import Path

    from cyclekit.faces.segment import on_backdrop, photo_head_masks
    from cyclekit.io.images import load_image

    photo = load_image(Path(__file__).parent / "fixtures" / "london" / "004_03.jpg", 3)  # float RGB in [0, 1]
    backdrop = [int(round(v * 255)) for v in photo[:40, :40].reshape(-1, 3).mean(0)]
    faces = HaarDetector().detect(photo)
    seen = []

    def spy(x):
        seen.append(x.clone())
        return x

    cfg = ModelConfig(image_size=128, face_margin=0.4)
    tone = [110, 130, 170]
    tr = Translator(spy, cfg, info={"face_tone": {"AtoB": tone}, "face_backdrop": backdrop})
    swap_image(photo, tr, faces=faces[:1])
    fed = (seen[0][0].permute(1, 2, 0).numpy() + 1.0) / 2.0
    t = crop_transform(faces[0], face_params_for(tr))
    crop = warp_crop(photo, t)
    head, view = photo_head_masks(photo, t, 0.4)
    view = np.maximum(view, head)
    assert np.allclose(skin_colour(fed, 0.4) * 255, tone, atol=1.5)  # the person moved to the tone
    away = view < 0.01
    assert away.sum() > 2000
    studio = on_backdrop(crop, view, backdrop)  # as shot where near the backdrop, else the backdrop itself
    assert np.abs(fed[away] - studio[away]).max() * 255 < 1.0  # untinted (before: up to 20 levels off)
