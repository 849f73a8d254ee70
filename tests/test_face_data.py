"""``cyclekit data faces``: CelebA-format files and two photo folders, made from a real photo."""
from __future__ import annotations

import json

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")
skdata = pytest.importorskip("skimage.data")

from cyclekit.io.images import load_image, save_image  # noqa: E402
from cyclekit.errors import ConfigError, DataError  # noqa: E402
from cyclekit.faces.params import FaceParams, read_faces_json  # noqa: E402

ATTRS = ["5_o_Clock_Shadow", "Arched_Eyebrows", "Eyeglasses", "Male", "Smiling", "Young"]


def face_photos(n: int, w: int = 178, h: int = 218) -> list[np.ndarray]:
    """CelebA-like photos of the astronaut: different crops, scales and flips (float [0, 1])."""
    photo = skdata.astronaut()
    out = []
    for i in range(n):
        x0, y0, side = 140 - 6 * i, 20 + 4 * i, 170 + 12 * i  # the face box is ~ (177, 66, 96, 96)
        crop = photo[y0:y0 + int(side * h / w), x0:x0 + side]
        crop = cv2.resize(crop, (w, h), interpolation=cv2.INTER_AREA)
        out.append((crop[:, ::-1] if i % 2 else crop).astype(np.float32) / 255.0)
    return out


def make_celeba(root, csv: bool = False):
    """img_align_celeba/ + attribute file + partition file with 7 rows; 000007 has no face."""
    photos = face_photos(6) + [np.full((218, 178, 3), 0.5, np.float32)]
    names = [f"{i + 1:06d}.jpg" for i in range(7)]
    for name, img in zip(names, photos):
        save_image(root / "img_align_celeba" / name, img)
    male = [1, -1, 1, -1, 1, -1, 1]
    part = [0, 0, 0, 0, 2, 2, 0]
    rng = np.random.default_rng(0)
    rows = []
    for name, m in zip(names, male):
        vals = [int(v) for v in rng.choice([-1, 1], size=len(ATTRS))]
        vals[ATTRS.index("Male")] = m
        rows.append((name, vals))
    if csv:
        (root / "list_attr_celeba.csv").write_text(
            "image_id," + ",".join(ATTRS) + "\n" + "".join(f"{n}," + ",".join(map(str, v)) + "\n" for n, v in rows))
        (root / "list_eval_partition.csv").write_text(
            "image_id,partition\n" + "".join(f"{n},{p}\n" for n, p in zip(names, part)))
    else:  # the official layout: count, names, then rows padded with two spaces
        body = "".join(f"{n} " + " ".join(f"{v:2d}" for v in vals) + "\n" for n, vals in rows)
        (root / "list_attr_celeba.txt").write_text(f"{len(rows)}\n" + " ".join(ATTRS) + " \n" + body)
        (root / "list_eval_partition.txt").write_text("".join(f"{n} {p}\n" for n, p in zip(names, part)))
    return root


def test_celeba_attribute_file_reader(tmp_path):
    from cyclekit.faces.prepare import read_celeba_attributes, read_celeba_partition

    make_celeba(tmp_path)
    names, rows = read_celeba_attributes(tmp_path / "list_attr_celeba.txt")
    assert names == ATTRS and len(rows) == 7 and rows["000002.jpg"][names.index("Male")] == -1
    assert read_celeba_partition(tmp_path / "list_eval_partition.txt")["000005.jpg"] == 2
    (tmp_path / "bad.txt").write_text("1\nA B\n000001.jpg 1\n")
    with pytest.raises(DataError, match="row 1"):
        read_celeba_attributes(tmp_path / "bad.txt")


@pytest.mark.parametrize("csv", [False, True])
def test_prepare_celeba_splits_by_attribute(tmp_path, csv):
    from cyclekit.faces.prepare import prepare_celeba

    root = make_celeba(tmp_path / "celeba", csv=csv)
    out = prepare_celeba(root, tmp_path / "faces", params=FaceParams(size=64, margin=0.3))
    counts = {s: sorted(p.name for p in (out / s).iterdir()) for s in ("trainA", "trainB", "testA", "testB")}
    # train rows 1-4 and 7 (7 has no face), test rows 5-6; Male=1 -> A
    assert counts == {"trainA": ["000001.png", "000003.png"], "trainB": ["000002.png", "000004.png"],
                      "testA": ["000005.png"], "testB": ["000006.png"]}
    assert load_image(out / "trainA" / "000001.png", 3).shape == (64, 64, 3)
    skipped = (out / "skipped.txt").read_text()
    assert "000007.jpg" in skipped and "no face" in skipped
    doc = json.loads((out / "faces.json").read_text())
    assert doc["margin"] == 0.3 and doc["size"] == 64 and doc["align"] is True and doc["skipped"] == 1
    assert doc["source"]["attribute"] == "Male" and doc["counts"]["trainA"] == 2
    assert doc["domains"] == ["male", "female"]  # carried into the release: the UI says male -> female
    from cyclekit.config import DataConfig
    from cyclekit.data.domains import domain_names

    assert domain_names(DataConfig(dataroot=str(out))) == ("male", "female")


def test_prepare_celeba_other_attribute_and_errors(tmp_path):
    from cyclekit.faces.prepare import prepare_celeba

    root = make_celeba(tmp_path / "celeba")
    with pytest.raises(ConfigError, match="Eyeglasses"):  # the message lists the valid names
        prepare_celeba(root, tmp_path / "x", attribute="Beard")
    out = prepare_celeba(root, tmp_path / "y", attribute="Smiling", params=FaceParams(size=32), limit=1,
                         val_to="skip")
    assert all(len(list((out / s).iterdir())) <= 1 for s in ("trainA", "trainB", "testA", "testB"))
    with pytest.raises(DataError, match="partition"):
        (root / "list_eval_partition.txt").unlink()
        prepare_celeba(root, tmp_path / "z")


def test_prepared_crops_are_the_swap_crops(tmp_path):
    """`data faces` and `swap` crop the same way: re-cropping the source gives the saved file."""
    from cyclekit.faces.align import face_crop
    from cyclekit.faces.detectors import make_detector
    from cyclekit.faces.prepare import prepare_folders

    photos = face_photos(4)
    for i, img in enumerate(photos):
        save_image(tmp_path / "men" / f"m{i}.png", img)
        save_image(tmp_path / "women" / f"w{i}.png", img[:, ::-1])
    params = FaceParams(size=96, margin=0.35)
    out = prepare_folders(tmp_path / "men", tmp_path / "women", tmp_path / "faces", params=params, test_fraction=0.25)
    saved = sorted((out / "trainA").glob("*.png")) + sorted((out / "testA").glob("*.png"))
    assert len(saved) == 4
    src = load_image(tmp_path / "men" / (saved[0].stem + ".png"), 3)
    crop, _ = face_crop(src, make_detector(params.detector).detect(src)[0], params)  # what swap does
    # data faces resamples the 8-bit photo in 8 bits (faster), swap in float: the area-averaged
    # pre-shrink rounds once more, so pixels may differ by one grey level after the final rounding
    assert np.abs(load_image(saved[0], 3) - crop).max() <= 2 / 255 + 1e-6


def test_prepare_folders_skips_photos_without_faces(tmp_path):
    from cyclekit.faces.prepare import prepare_folders

    photos = face_photos(5)
    for i, img in enumerate(photos[:3]):
        save_image(tmp_path / "men" / f"m{i}.jpg", img)
    save_image(tmp_path / "men" / "sub" / "m9.jpg", photos[3])  # nested folders are flattened
    save_image(tmp_path / "men" / "wall.png", np.asarray(skdata.brick(), np.float32)[..., None] / 255.0)
    save_image(tmp_path / "women" / "w0.png", photos[4])
    save_image(tmp_path / "women" / "w1.png", photos[0][:, ::-1])
    out = prepare_folders(tmp_path / "men", tmp_path / "women", tmp_path / "faces",
                          params=FaceParams(size=48), test_fraction=0.0)
    assert sorted(p.name for p in (out / "trainA").iterdir()) == ["m0.png", "m1.png", "m2.png", "sub__m9.png"]
    assert len(list((out / "trainB").iterdir())) == 2 and not any((out / "testA").iterdir())
    assert "wall.png\tno face found" in (out / "skipped.txt").read_text()
    assert read_faces_json(out).size == 48
    with pytest.raises(DataError, match="already holds"):
        prepare_folders(tmp_path / "men", tmp_path / "women", out)


def test_trainer_records_the_face_margin(tmp_path):
    """A model trained on `data faces` crops carries their margin; swap then uses it."""
    from conftest import tiny_config

    from cyclekit.release import load_release_config
    from cyclekit.faces.pipeline import face_params_for
    from cyclekit.faces.prepare import prepare_folders
    from cyclekit.commands.train import build_trainer
    from cyclekit.infer.translator import load_translator

    photos = face_photos(4)
    for i, img in enumerate(photos):
        save_image(tmp_path / "a" / f"a{i}.png", img)
        save_image(tmp_path / "b" / f"b{i}.png", img[:, ::-1] * 0.8)
    data = prepare_folders(tmp_path / "a", tmp_path / "b", tmp_path / "faces",
                           params=FaceParams(size=32, margin=0.27), test_fraction=0.0)
    run = build_trainer(tiny_config(data, tmp_path / "run", max_steps=1)).fit()
    assert load_release_config(run).model.face_margin == pytest.approx(0.27)
    params = face_params_for(load_translator(run, "AtoB", device="cpu"))
    assert params.margin == pytest.approx(0.27) and params.size == 32
    # the training crops' skin colour per direction (B's photos are 0.8 x A's) and their detector
    # travel in the release, where swap reads them; a resumed run's release keeps them
    from cyclekit.faces.pipeline import recommended_tone
    from cyclekit.release import release_info

    doc = json.loads((data / "faces.json").read_text())
    a, b = doc["tone"]["AtoB"], doc["tone"]["BtoA"]
    assert all(abs(0.8 * x - y) <= 2 for x, y in zip(a, b)) and sum(a) > 150
    info = release_info(run)
    assert info["face_tone"] == doc["tone"] and info["face_detector"] == doc["detector"]
    assert recommended_tone(load_translator(run, "BtoA", device="cpu")) == [float(v) for v in b]
    cfg = tiny_config(data, tmp_path / "run", max_steps=2)
    build_trainer(cfg, resume=True).fit()
    assert release_info(run)["face_tone"] == doc["tone"] and release_info(run)["global_step"] == 2
    # a malformed tone in faces.json is refused before training, naming the file and the field
    from cyclekit.errors import DataError
    from cyclekit.faces.params import dataset_release_info

    for bad in ({"AtoB": [300, 0, 0]}, [1, 2, 3], {"sideways": [1, 2, 3]}):
        (data / "faces.json").write_text(json.dumps({**doc, "tone": bad}))
        with pytest.raises(DataError, match=r"faces.json: tone .* is not"):
            dataset_release_info(data)


def test_cli_data_faces(tmp_path, capsys):
    from cyclekit.cli import main

    for i, img in enumerate(face_photos(2)):
        save_image(tmp_path / "men" / f"m{i}.png", img)
        save_image(tmp_path / "women" / f"w{i}.png", img[:, ::-1])
    rc = main(["data", "faces", "--a", str(tmp_path / "men"), "--b", str(tmp_path / "women"),
               "--out", str(tmp_path / "out"), "--size", "40", "--test-fraction", "0.5"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "trainA 1, trainB 1, testA 1, testB 1" in text and "0 skipped" in text
    assert main(["data", "faces", "--a", str(tmp_path / "men"), "--out", str(tmp_path / "o2")]) == 2
    assert main(["data", "faces", "--a", str(tmp_path / "men"), "--b", str(tmp_path / "women"),
                 "--out", str(tmp_path / "o3"), "--margin", "0"]) == 2
