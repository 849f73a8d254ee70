"""Face detection on real photos (the London Set fixture): tight crops, tilts, large photos, no face."""
from __future__ import annotations

import csv
import json
import pickle
from pathlib import Path

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")

from cyclekit.faces.detect import Detection, Face, FaceDetector, implausible  # noqa: E402
from cyclekit.faces.detectors import make_detector

FIXTURES = Path(__file__).parent / "fixtures" / "london"
BACKENDS = ["haar", pytest.param("dlib", marks=pytest.mark.skipif(
    __import__("importlib").util.find_spec("dlib") is None, reason="dlib (cyclekit[faces]) not installed"))]


def neutral_photos() -> list[tuple[str, np.ndarray, np.ndarray]]:
    """``(name, RGB uint8 256x256, pupils [[x, y] image-left, [x, y] image-right])`` for the neutral photos."""
    out = []
    with open(FIXTURES / "eyes.csv", newline="") as f:
        for row in csv.DictReader(f):
            if row["file"].endswith("_03.jpg"):
                img = cv2.cvtColor(cv2.imread(str(FIXTURES / row["file"])), cv2.COLOR_BGR2RGB)
                eyes = np.array([[float(row["left_x"]), float(row["left_y"])],
                                 [float(row["right_x"]), float(row["right_y"])]])
                out.append((row["file"], img, eyes))
    assert len(out) >= 4
    return out


@pytest.fixture(scope="module")
def photos():
    return neutral_photos()


_detectors: dict = {}


def detector(name: str) -> FaceDetector:
    if name not in _detectors:
        _detectors[name] = make_detector(name)
    return _detectors[name]


def eye_error(face: Face, truth: np.ndarray) -> float:
    assert face.eyes is not None
    return float(np.linalg.norm(face.eyes - truth, axis=1).mean() / np.linalg.norm(truth[1] - truth[0]))


def tight_crop(img, eyes, width_ipd: float, w: int = 178, h: int = 218):
    """A CelebA-sized crop ``width_ipd`` inter-pupil distances wide: the face fills the image."""
    s = w / (width_ipd * np.linalg.norm(eyes[1] - eyes[0]))
    mid = eyes.mean(axis=0)
    m = np.array([[s, 0, (w - 1) / 2 - s * mid[0]], [0, s, 0.4 * h - s * mid[1]]])
    return cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE), eyes * s + m[:, 2]


def rotate(img, eyes, degrees):
    h, w = img.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0)
    return cv2.warpAffine(img, m, (w, h), borderMode=cv2.BORDER_REPLICATE), eyes @ m[:, :2].T + m[:, 2]


# ----------------------------------------------------------------------------- real photos
@pytest.mark.parametrize("backend", BACKENDS)
def test_eyes_within_a_tenth_of_the_eye_distance(photos, backend):
    for name, img, eyes in photos:
        faces = detector(backend).detect(img)
        assert faces, name
        assert eye_error(faces[0], eyes) < 0.1, name


@pytest.mark.parametrize("backend", BACKENDS)
def test_tight_crop_where_the_face_fills_the_image(photos, backend):
    """Crops 2 eye distances wide (CelebA-sized, the face fills the image; Haar needs the padded pass)."""
    for name, img, eyes in photos:
        crop, truth = tight_crop(img, eyes, 2.0)
        found = detector(backend).find(crop)
        assert found.faces, (name, found.passes)
        assert eye_error(found.faces[0], truth) < 0.1, name


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("degrees", [-30.0, 30.0])
def test_tilted_head(photos, backend, degrees):
    for name, img, eyes in photos[:3]:
        tilted, truth = rotate(img, eyes, degrees)
        faces = detector(backend).detect(tilted)
        assert faces, name
        assert eye_error(faces[0], truth) < 0.1, name
        assert abs(faces[0].eye_angle + degrees) < 6.0  # cv2 turns counter-clockwise for positive angles


@pytest.mark.parametrize("backend", BACKENDS)
def test_large_portrait_is_searched_downscaled(photos, backend):
    """A 1350x1800 portrait: detection runs on a <= 640 px copy, eyes come back in full-size pixels."""
    name, img, eyes = photos[0]
    k = 1350 / img.shape[1]
    big = cv2.copyMakeBorder(cv2.resize(img, (1350, 1350), interpolation=cv2.INTER_CUBIC), 0, 450, 0, 0,
                             cv2.BORDER_REPLICATE)
    found = detector(backend).find(big)
    assert found.passes == ["plain"]
    assert eye_error(found.faces[0], (eyes + 0.5) * k - 0.5) < 0.1


@pytest.mark.parametrize("backend", BACKENDS)
def test_no_face_is_refused_without_running_every_fallback(photos, backend):
    """The shirt and collar below the chin, and plain noise: no face, and a bounded number of passes."""
    _, img, _ = photos[3]
    collar = cv2.resize(img[190:], (512, 132), interpolation=cv2.INTER_CUBIC)
    noise = np.random.default_rng(0).integers(0, 256, (300, 400, 3), dtype=np.uint8)
    det = detector(backend)
    every = 2 + len(det.rotations)  # plain, padded, one per rotation
    for picture in (collar, noise):
        found = det.find(picture)
        assert found.faces == []
        assert len(found.passes) <= det.max_passes
        if backend == "dlib":  # no sub-threshold HOG response: the rotated passes are skipped
            assert found.passes == ["plain", "padded"] and len(found.passes) < every


# ----------------------------------------------------------------------------- plausibility and ranking
def test_implausible_faces_are_named():
    eyes = np.array([[130.0, 140.0], [170.0, 140.0]])
    good = Face(box=(100.0, 100.0, 100.0, 100.0), eyes=eyes)
    assert implausible(good) is None
    assert implausible(Face(box=good.box)) == "no eyes found"
    assert "height" in implausible(Face(box=good.box, eyes=eyes + [0, 45]))  # eyes near the chin
    assert "eye distance" in implausible(Face(box=good.box, eyes=np.array([[145.0, 140.0], [155.0, 140.0]])))
    assert "proportions" in implausible(Face(box=(100.0, 100.0, 200.0, 60.0), eyes=eyes))
    assert "nose" in implausible(Face(box=good.box, eyes=eyes, landmarks={"nose": np.array([150.0, 120.0])}))


class CollarDetector(FaceDetector):
    """A backend whose largest hit is a collar (no eyes) below a real face."""

    name = "collar"

    def _pass(self, rgb, strict):
        face = Face(box=(40.0, 20.0, 60.0, 60.0), eyes=np.array([[59.0, 43.0], [81.0, 43.0]]), source="collar")
        collar = Face(box=(10.0, 90.0, 120.0, 110.0), source="collar")
        return [collar, face], True


def test_dominant_face_is_plausible_not_largest():
    found = CollarDetector().find(np.zeros((200, 140, 3), np.uint8))
    assert len(found.faces) == 1 and found.faces[0].box == (40.0, 20.0, 60.0, 60.0)
    assert [why for _, why in found.rejected] == ["no eyes found"]
    assert found.passes == ["plain"]


def test_auto_falls_back_to_haar(monkeypatch, caplog):
    import sys

    import cyclekit.faces.detectors as detectors

    monkeypatch.setitem(sys.modules, "dlib", None)  # import dlib -> ImportError
    monkeypatch.setattr(detectors, "_fallback_noted", False)
    with caplog.at_level("INFO", logger="cyclekit.faces.detectors"):
        assert make_detector("auto").name == "haar"
    assert "Haar" in caplog.text and "dlib" in caplog.text
    from cyclekit.errors import ConfigError, MissingDependencyError

    with pytest.raises(MissingDependencyError, match=r"cyclekit\[faces\]"):
        make_detector("dlib")
    with pytest.raises(ConfigError, match="--detector"):
        make_detector("cnn")


@pytest.mark.parametrize("backend", BACKENDS)
def test_detectors_pickle_for_worker_processes(photos, backend):
    det = pickle.loads(pickle.dumps(detector(backend)))
    assert det.name == backend and det.detect(photos[0][1])


# ----------------------------------------------------------------------------- data preparation
class EyelessDetector(FaceDetector):
    """Finds one box without eyes in every image: an implausible face."""

    name = "eyeless"

    def _pass(self, rgb, strict):
        h, w = rgb.shape[:2]
        return [Face(box=(w / 4, h / 4, w / 2, h / 2), source="eyeless")], False


def test_prepare_pool_counts_skip_reasons(photos, tmp_path):
    from cyclekit.faces.params import FaceParams
    from cyclekit.faces.prepare import prepare_folders

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    for name, img, eyes in photos[:4]:
        cv2.imwrite(str(tmp_path / "a" / name), tight_crop(img, eyes, 2.2)[0][:, :, ::-1])
    cv2.imwrite(str(tmp_path / "a" / "small.jpg"), photos[0][1][:, :, ::-1])  # face box ~100 px < min_face
    cv2.imwrite(str(tmp_path / "a" / "noise.png"), np.random.default_rng(1).integers(0, 256, (218, 178, 3), np.uint8))
    (tmp_path / "a" / "broken.jpg").write_bytes(b"not a jpeg at all")
    cv2.imwrite(str(tmp_path / "b" / "w.jpg"), tight_crop(photos[1][1], photos[1][2], 2.2)[0][:, :, ::-1])
    out = prepare_folders(tmp_path / "a", tmp_path / "b", tmp_path / "out", workers=2, test_fraction=0.0,
                          params=FaceParams(size=48, min_face=150, detector="auto"))
    doc = json.loads((out / "faces.json").read_text())
    assert doc["skip_reasons"] == {"no face": 1, "too small": 1, "unreadable": 1}
    assert doc["counts"] == {"trainA": 4, "trainB": 1, "testA": 0, "testB": 0}
    assert doc["detector"] in ("dlib", "haar")  # what `auto` resolved to
    assert any("testA is empty" in w for w in doc["warnings"])
    lines = (out / "skipped.txt").read_text().splitlines()
    assert len(lines) == 3 and any(ln.endswith("no face found") for ln in lines)
    # an implausible candidate is counted as such, and nothing is written for it
    out2 = prepare_folders(tmp_path / "a", tmp_path / "b", tmp_path / "out2", workers=2, detector=EyelessDetector())
    doc2 = json.loads((out2 / "faces.json").read_text())
    assert doc2["skip_reasons"] == {"implausible face": 7, "unreadable": 1}
    assert not any((out2 / "trainA").iterdir())


def test_detection_object_defaults():
    d = Detection()
    assert d.faces == [] and d.rejected == [] and d.passes == []
