"""`cyclekit eval` as a user runs it: odd sizes, tiny and broken test images, bad options."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from cyclekit.cli import main
from cyclekit.io.images import save_image

FAST = ["--classifier-steps", "5", "--classifier-size", "16", "--kid-subsets", "2", "--features", "classifier",
        "--device", "cpu", "--out"]


@pytest.fixture()
def odd_world(tiny_world, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(tiny_world, data)
    save_image(data / "testA" / "tiny.png", np.full((3, 2, 3), 0.5))  # a valid 3x2 image
    return data


def test_eval_at_native_size_with_tiny_images(tiny_release, odd_world, tmp_path, capsys):
    assert main(["eval", str(tiny_release), "--data", str(odd_world), "--size", "0", *FAST, str(tmp_path / "e")]) == 0
    assert (tmp_path / "e" / "metrics.json").is_file()


def test_eval_skips_a_broken_test_image_only_when_asked(tiny_release, odd_world, tmp_path, capsys):
    (odd_world / "testB" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnope")
    assert main(["eval", str(tiny_release), "--data", str(odd_world), *FAST, str(tmp_path / "e1")]) == 2
    err = capsys.readouterr().err
    assert "broken.png" in err and "--skip-bad" in err and "Traceback" not in err
    assert main(["eval", str(tiny_release), "--data", str(odd_world), "--skip-bad", *FAST, str(tmp_path / "e2")]) == 0


def test_eval_refuses_a_negative_size(tiny_release, odd_world, tmp_path, capsys):
    assert main(["eval", str(tiny_release), "--data", str(odd_world), "--size", "-5", *FAST, str(tmp_path / "e")]) == 2
    assert "--size must be" in capsys.readouterr().err
