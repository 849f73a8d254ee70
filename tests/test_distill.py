"""The compact mobile_resnet generator and `cyclekit distill`."""
import json

import pytest
import torch

from cyclekit.cli import main
from cyclekit.config import ModelConfig
from cyclekit.errors import ConfigError
from cyclekit.nn import build_generator, count_macs, count_parameters


def test_compact_generator_is_15x_cheaper_than_resnet9_at_256():
    full = build_generator(ModelConfig(generator="resnet", n_blocks=9, ngf=64))
    small = build_generator(ModelConfig(generator="mobile_resnet", n_blocks=9, ngf=16))
    shape = (1, 3, 256, 256)
    full_macs, small_macs = count_macs(full, shape), count_macs(small, shape)
    assert abs(full_macs / 1e9 - 49.55) < 0.01  # GAN Compression counts 56.8 G (transposed convs at output size)
    assert full_macs / small_macs >= 15
    assert count_parameters(small) * 4 < 2e6  # even fp32 weights fit in 2 MB


def test_compact_generator_shapes_and_features():
    from cyclekit.nn.compact import MobileResnetGenerator

    net = build_generator(ModelConfig(generator="mobile_resnet", ngf=4, n_blocks=2, in_channels=1, out_channels=3))
    assert isinstance(net, MobileResnetGenerator)
    x = torch.rand(2, 1, 32, 48) * 2 - 1
    y, feat = net(x, return_features=True)
    assert y.shape == (2, 3, 32, 48) and feat.shape == (2, 16, 8, 12)
    assert y.abs().max() <= 1
    depthwise = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d) and m.groups > 1]
    assert len(depthwise) == 4 and all(m.groups == m.in_channels == 16 for m in depthwise)


def test_distill_writes_a_loadable_compact_release(tiny_release, tmp_path, capsys):
    from cyclekit.release import load_generator, load_release_config, resolve_release
    from cyclekit.nn.compact import MobileResnetGenerator
    from cyclekit.infer.translator import load_translator

    out = tmp_path / "student"
    rc = main(["distill", str(tiny_release), "--out", str(out), "--steps", "3", "--ngf", "4", "--n-blocks", "1",
               "--ndf", "4", "--log-every", "1", "--no-progress", "--threads", "1", "--device", "cpu"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "mobile_resnet" in printed and "fewer" in printed
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3]
    for key in ("AtoB_l1", "AtoB_feat", "AtoB_adv", "AtoB_D", "BtoA_l1"):
        assert all(r[key] >= 0 for r in rows) and key in rows[0]
    assert rows[0]["AtoB_feat"] > 0  # the ResNet teacher's block features are matched
    cfg = load_release_config(out)
    assert cfg.model.generator == "mobile_resnet" and cfg.model.ngf == 4
    for direction in ("AtoB", "BtoA"):
        net, gcfg = load_generator(out, direction)
        assert isinstance(net, MobileResnetGenerator) and gcfg.n_blocks == 1
    meta = json.loads((resolve_release(out) / "config.json").read_text())["cyclekit"]
    assert meta["distilled_directions"] == "AtoB,BtoA" and meta["global_step"] == 3
    tr = load_translator(out, "AtoB", device="cpu")
    assert tr(torch.zeros(1, 3, 30, 30)).shape == (1, 3, 30, 30)


def test_distill_one_direction_learns_the_teacher(tiny_release, tmp_path):
    """With only the L1 term, a few steps bring the student much closer to the teacher."""
    from cyclekit.train.distill import DistillConfig, distill

    out = distill(DistillConfig(teacher=str(tiny_release), out=str(tmp_path / "s"), directions="AtoB", ngf=4,
                                n_blocks=1, steps=20, lambda_adv=0.0, lambda_feat=0.0, lr=2e-3, log_every=1,
                                save_every=0, progress=False, threads=1, device="cpu"))
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert "BtoA_l1" not in rows[0]
    last = sum(r["AtoB_l1"] for r in rows[-5:]) / 5
    assert last < 0.8 * rows[0]["AtoB_l1"]
    meta = json.loads((out / "model" / "config.json").read_text())["cyclekit"]
    assert meta["distilled_directions"] == "AtoB"


def test_distill_options_are_validated(tiny_release, tmp_path):
    from cyclekit.train.distill import DistillConfig

    with pytest.raises(ConfigError, match="--directions"):
        DistillConfig(teacher="x", directions="sideways").validate()
    with pytest.raises(ConfigError, match="--ngf"):
        DistillConfig(teacher="x", ngf=0).validate()
    assert main(["distill", str(tmp_path / "missing"), "--out", str(tmp_path / "o")]) == 2


def test_distill_resumes_exactly_on_the_training_loop(tiny_release, tmp_path):
    """Stopped after 3 of 6 steps and resumed == 6 steps in one go (checkpoint, RNG, schedules, log)."""
    import functools

    from safetensors.torch import load_file

    from cyclekit.train.distill import DistillConfig, Distillation, distill, student_config, teacher_config
    from cyclekit.train.loop import Trainer
    from cyclekit.train.state import load_training_state

    def dc(out, resume=False):
        return DistillConfig(teacher=str(tiny_release), out=str(out), ngf=4, n_blocks=1, ndf=4, steps=6,
                             log_every=1, save_every=0, progress=False, threads=1, device="cpu", resume=resume)

    one = distill(dc(tmp_path / "one"))
    first = dc(tmp_path / "two")
    release, teacher_cfg = teacher_config(first)
    cfg = student_config(teacher_cfg, first)
    cfg.train.max_steps = 3  # stop half-way (the schedule still spans 6 steps)
    Trainer(cfg, objective=functools.partial(Distillation, dc=first, teacher=release)).fit()
    assert load_training_state(tmp_path / "two" / "checkpoints" / "last.pt")["global_step"] == 3
    two = distill(dc(tmp_path / "two", resume=True))
    wa, wb = load_file(str(one / "model" / "model.safetensors")), load_file(str(two / "model" / "model.safetensors"))
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    state = load_training_state(two / "checkpoints" / "last.pt")
    assert state["global_step"] == 6 and {"student_AtoB", "disc_BtoA", "adapter_AtoB"} <= set(state["nets"])
    rows = [json.loads(line) for line in (two / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, 7))
    ref = [json.loads(line) for line in (one / "metrics.jsonl").read_text().splitlines()]
    assert [r["AtoB_l1"] for r in rows] == [r["AtoB_l1"] for r in ref]


def test_distill_from_a_bare_release_needs_a_dataroot(tiny_release, tmp_path):
    import shutil

    from cyclekit.train.distill import DistillConfig, distill

    bare = tmp_path / "release"
    shutil.copytree(tiny_release / "model", bare)  # no run directory around it: no data recorded
    dc = DistillConfig(teacher=str(bare), out=str(tmp_path / "s"), ngf=4, n_blocks=1, ndf=4, steps=1,
                       progress=False, device="cpu")
    with pytest.raises(ConfigError, match="pass --dataroot"):
        distill(dc)
    dc.dataroot = json.loads((tiny_release / "config.json").read_text())["data"]["dataroot"]
    assert (distill(dc) / "model" / "model.safetensors").is_file()


def test_distill_carries_the_teachers_face_crops_but_not_its_strength(tiny_release, tmp_path):
    import shutil

    from cyclekit.release import release_info, update_release_info

    teacher = tmp_path / "teacher"
    shutil.copytree(tiny_release, teacher)
    face = {"face_tone": {"AtoB": [150, 110, 100]}, "face_backdrop": [209, 212, 212], "face_detector": "haar"}
    update_release_info(teacher, swap_strength={"AtoB": 1.3}, **face)
    out = tmp_path / "student"
    assert main(["distill", str(teacher), "--out", str(out), "--steps", "1", "--ngf", "4", "--n-blocks", "1",
                 "--ndf", "4", "--no-progress", "--threads", "1", "--device", "cpu"]) == 0
    info = release_info(out)
    assert {k: info.get(k) for k in face} == face and "swap_strength" not in info
