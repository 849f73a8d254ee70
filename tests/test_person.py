"""The person segmenter (MediaPipe's selfie segmentation run with PyTorch) and the head masks made from it."""
from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("cv2")

from cyclekit.errors import CheckpointError  # noqa: E402
from cyclekit.io.images import LUMA, load_image  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures"


def test_the_segmenter_matches_the_tensorflow_lite_runtime():
    """Our PyTorch run of the converted graph against the original .tflite run by ai-edge-litert 2.3.0:
    the reference file holds its output for a studio photo and a darker, shifted one, rounded to 8
    bits at full resolution (a flipped or transposed kernel in the last, 2 x 2 transposed convolution
    moves single pixels by up to 0.9, which a pooled comparison would not see)."""
    from cyclekit.faces.person import SIDE, person_segmenter

    refs = np.load(FIXTURES / "selfie_segmentation_reference.npz")
    a = load_image(FIXTURES / "london" / "001_03.jpg", 3)
    b = np.roll(load_image(FIXTURES / "london" / "002_03.jpg", 3) * 0.5, 40, axis=1)
    out = person_segmenter()(np.stack([a, b]))
    assert out.shape == (2, SIDE, SIDE) and out.dtype == np.float32
    for got, name in zip(out, ("001_03", "002_03_dark_shifted")):
        assert np.abs(got * 255.0 - refs[name].astype(np.float32)).max() < 1.01, name  # the rounding, and 5e-5
        assert 0.3 < (got > 0.5).mean() < 0.6  # a head and shoulders, not everything or nothing
    with pytest.raises(ValueError, match="256 x 256"):
        person_segmenter()(np.zeros((128, 128, 3), np.float32))


def test_a_damaged_model_is_refused_in_one_line(tmp_path):
    """graph.json is checked before any weight is read; a damaged weight file is a CheckpointError too."""
    from cyclekit.faces.person import PersonSegmenter, model_dir

    folder = tmp_path / "seg"
    shutil.copytree(model_dir(), folder)
    good = (folder / "graph.json").read_text()
    weights = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(b"not read")  # never reached while the graph is wrong
    for damage, needle in ((lambda d: d["ops"][0].update(op="CUSTOM_EXEC"), "operator 0 is not one of"),
                           (lambda d: d["ops"][0].pop("stride"), "has no stride"),
                           (lambda d: d["ops"][0].update(act="TANH"), "activation"),
                           (lambda d: d.update(format="x"), "not a cyclekit-op-graph")):
        doc = json.loads(good)
        damage(doc)
        (folder / "graph.json").write_text(json.dumps(doc))
        with pytest.raises(CheckpointError, match=needle):
            PersonSegmenter(folder)
    (folder / "graph.json").write_text(good)
    (folder / "model.safetensors").write_bytes(weights[: len(weights) // 2])
    with pytest.raises(CheckpointError, match="reinstall cyclekit"):
        PersonSegmenter(folder)


def _in_a_dark_room(name: str):
    """A London studio photo with its backdrop (each row's colour at the photo's sides, above the
    shoulders) replaced by a dark brown, noisy "bookcase" as dark as the hair; and the hair."""
    img = load_image(FIXTURES / "london" / f"{name}.jpg", 3)
    row = np.concatenate([img[:, :6], img[:, -6:]], 1).mean(1)
    yy = np.mgrid[:256, :256][0]
    back = (np.abs(img - row[:, None]).max(2) < 0.08) & (yy < 190)
    room = np.array([0.20, 0.14, 0.10], np.float32) + np.random.default_rng(0).normal(0, 0.03, img.shape)
    return img, np.where(back[..., None], room, img).astype(np.float32), back


@pytest.mark.parametrize("name", ["001_03", "005_08"])
def test_dark_hair_before_a_dark_room_is_the_person(name):
    """GrabCut, the head mask before session 27, gave dark hair in front of a dark room to the
    background (a model then saw a bald head). The segmenter keeps the hair and leaves the room out;
    the mask the model sees takes the shoulders too, the mask a swap pastes through does not."""
    from cyclekit.faces.align import crop_transform, warp_crop
    from cyclekit.faces.detect_haar import HaarDetector
    from cyclekit.faces.params import FaceParams
    from cyclekit.faces.segment import photo_head_mask, photo_head_masks

    studio, dark, back = _in_a_dark_room(name)
    face = HaarDetector().detect(studio)[0]
    t = crop_transform(face, FaceParams(size=128))
    yy = np.mgrid[:256, :256][0]
    hair = (studio @ LUMA < 0.3) & ~back & (yy < face.eyes[:, 1].min() - 8)

    def in_crop(m):
        return warp_crop(np.repeat(m[..., None], 3, 2).astype(np.float32), t)[..., 0] > 0.99

    pasted, seen = photo_head_masks(dark, t, 0.4)
    assert pasted.shape == seen.shape == (128, 128) and pasted.dtype == np.float32
    assert np.array_equal(photo_head_mask(dark, t, 0.4, seen=True), seen)
    h, room = in_crop(hair), in_crop(back)
    assert h.sum() > 500 and room.sum() > 2000
    assert (seen[h] > 0.5).mean() > 0.95 and (pasted[h] > 0.5).mean() > 0.9
    assert (seen[room] > 0.5).mean() < 0.03 and (pasted[room] > 0.5).mean() < 0.03
    if name == "001_03":  # her white T-shirt fills the crop's bottom corners
        assert seen[-3:, :8].min() > 0.9 and pasted[-3:, :8].max() < 0.05


def test_the_segmenter_loads_once_and_gives_the_same_masks_in_worker_threads(monkeypatch):
    """The segmenter is loaded once and shared: the web server calls it from worker threads, and
    several may ask for it first at the same moment."""
    import cyclekit.faces.person as person
    from cyclekit.faces.align import crop_transform
    from cyclekit.faces.detect_haar import HaarDetector
    from cyclekit.faces.params import FaceParams
    from cyclekit.faces.segment import photo_head_masks

    img = load_image(FIXTURES / "london" / "004_03.jpg", 3)
    t = crop_transform(HaarDetector().detect(img)[0], FaceParams(size=128))
    monkeypatch.setattr(person, "_shared", None)
    loads = []
    real = person.PersonSegmenter
    monkeypatch.setattr(person, "PersonSegmenter", lambda: loads.append(1) or real())
    start, results = threading.Barrier(4), []

    def work():
        start.wait()
        results.append(photo_head_masks(img, t, 0.4))

    workers = [threading.Thread(target=work) for _ in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert len(loads) == 1 and len(results) == 4
    assert all(np.abs(a - b).max() < 1e-5 for r in results[1:] for a, b in zip(results[0], r))


def test_the_head_zone_fades_out_slowly_below_the_chin_only():
    """The pasted region's edge: a short ramp at the temples and crown, a long one from the chin
    down the neck, where a short one cut a model's jaw shadow into a grey band (London 001_03)."""
    from cyclekit.faces.segment import head_zone

    n, margin = 128, 0.4
    zone = head_zone(n, margin)
    box, c = n / (1 + 2 * margin), (n - 1) / 2
    chin = int(round(c + 0.5 * box))  # the detector box's bottom edge
    column, row = zone[:, n // 2], zone[int(round(c - 0.1 * box)), :]  # through the ellipse's centre
    assert zone[int(c), int(c)] == 1.0 and column[chin - 2] == 1.0
    fade_down = ((column > 0) & (column < 1))[int(c):].sum()
    fade_side = ((row > 0) & (row < 1))[: n // 2].sum()
    assert fade_down >= 14 and fade_side <= 7 and fade_down >= 2.5 * fade_side
    assert column[-1] == 0.0 and row[0] == 0.0  # nothing of the shoulders or the room beside the head
