"""ONNX export (fp32 / fp16), int8 quantisation and the onnxruntime backend, on tiny models."""
import json
import sys

import numpy as np
import pytest
import torch

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from cyclekit.cli import main  # noqa: E402
from cyclekit.io.images import load_image, save_image  # noqa: E402
from cyclekit.errors import MissingDependencyError, UserError  # noqa: E402


@pytest.fixture(scope="module")
def exported(tiny_release, tmp_path_factory):
    """The tiny release's G_AB exported through the CLI (fp32), and the command's output."""
    out = tmp_path_factory.mktemp("onnx") / "G_AB.onnx"
    import io
    from contextlib import redirect_stdout

    buf = io.StringIO()
    with redirect_stdout(buf):
        assert main(["export", str(tiny_release), "--format", "onnx", "--out", str(out)]) == 0
    return out, buf.getvalue()


def test_export_is_one_checked_file_with_dynamic_axes_and_parity(exported, tiny_release):
    import onnx

    from cyclekit.release import load_generator
    from cyclekit.export.onnx_export import onnx_parity, read_metadata

    path, printed = exported
    assert "max |onnxruntime - pytorch|" in printed
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no external .data file
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    assert all(i.data_location != onnx.TensorProto.EXTERNAL for i in model.graph.initializer)
    dims = [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", 3, "height", "width"]
    ops = {n.op_type for n in model.graph.node}
    assert {"Conv", "ConvTranspose", "InstanceNormalization", "Pad"} <= ops  # no decomposed norms
    pads = [n for n in model.graph.node if n.op_type == "Pad"]
    assert all(a.s == b"reflect" for n in pads for a in n.attribute if a.name == "mode")
    meta = read_metadata(model)
    assert meta["direction"] == "AtoB" and json.loads(meta["model_config"])["ngf"] == 4
    net, _ = load_generator(tiny_release, "AtoB")
    # two batch sizes and two spatial sizes through the same file
    assert onnx_parity(net, path, [(1, 3, 32, 32), (3, 3, 40, 56)]) < 1e-4


@pytest.mark.parametrize("option", [{"residual": True}, {"colour_gain": 0.5},
                                    {"colour_gain": 0.5, "colour_gain_mode": "chroma"},
                                    {"colour_gain": 0.5, "colour_gain_mode": "split"},
                                    {"colour_gain": 0.5, "colour_gain_mode": "split", "pixel_shuffle": True},
                                    {"pixel_shuffle": True, "input_skip": True}])
def test_residual_and_colour_gain_generators_export_with_parity(tmp_path, option):
    from cyclekit.config import ModelConfig
    from cyclekit.export.onnx_export import export_generator, onnx_parity
    from cyclekit.nn import build_generator, init_weights

    torch.manual_seed(0)
    cfg = ModelConfig(ngf=8, n_blocks=2, image_size=32, upsample="resize_conv", **option)
    net = init_weights(build_generator(cfg), "normal", 0.1).eval()
    path = export_generator(net, cfg, tmp_path / "g.onnx")
    assert onnx_parity(net, path, [(1, 3, 32, 32), (2, 3, 36, 44)]) < 1e-4


def test_fp16_and_fp32_export_of_the_compact_generator(tmp_path):
    import onnx

    from cyclekit.config import ModelConfig
    from cyclekit.export.onnx_export import export_generator, onnx_parity
    from cyclekit.nn import build_generator, init_weights

    torch.manual_seed(0)
    cfg = ModelConfig(generator="mobile_resnet", ngf=8, n_blocks=2, image_size=32)
    net = init_weights(build_generator(cfg), "normal", 0.1).eval()
    path16 = export_generator(net, cfg, tmp_path / "g16.onnx", precision="fp16")
    model = onnx.load(str(path16))
    onnx.checker.check_model(model, full_check=True)
    floats = [i for i in model.graph.initializer
              if i.data_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16)]
    assert floats and all(i.data_type == onnx.TensorProto.FLOAT16 for i in floats)
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT  # fp32 I/O
    try:  # onnxruntime's CPU provider may or may not have fp16 kernels for every op
        assert onnx_parity(net, path16, [(1, 3, 32, 32)]) < 2e-2
    except UserError as exc:
        pytest.skip(f"fp16 graph checked but not runnable on this CPU build: {exc}")
    path32 = export_generator(net, cfg, tmp_path / "g32.onnx")
    assert onnx_parity(net, path32, [(1, 3, 32, 32), (2, 3, 36, 44)]) < 1e-4
    assert path16.stat().st_size < 0.7 * path32.stat().st_size


@pytest.fixture(scope="module")
def wide_release(tiny_world, tmp_path_factory):
    """An untrained but wider (ngf 16) release so weights dominate the file size."""
    from cyclekit.release import save_release
    from cyclekit.config import generator_config_for
    from conftest import tiny_config
    from cyclekit.nn import build_generator, init_weights

    root = tmp_path_factory.mktemp("wide")
    cfg = tiny_config(tiny_world, root, ngf=16, n_blocks=1)
    torch.manual_seed(1)
    nets = [init_weights(build_generator(generator_config_for(cfg.model, d)), "normal", 0.05) for d in ("AtoB", "BtoA")]
    with torch.no_grad():  # trained-like biases (init_weights zeroes them, and zero biases get dropped)
        for net in nets:
            for name, p in net.named_parameters():
                if name.endswith("bias"):
                    p.normal_(0.0, 0.05)
    cfg.save(root / "config.json")  # a run directory: the run's config beside its release
    return save_release(root / "model", cfg, *nets)


def test_int8_quantisation_writes_qdq_with_float_layers_and_report(wide_release, tmp_path, capsys):
    import onnx

    from cyclekit.release import load_generator
    from cyclekit.export.onnx_export import onnx_cost
    from cyclekit.nn import count_parameters

    out = tmp_path / "g.int8.onnx"
    rc = main(["export", str(wide_release), "--out", str(out), "--precision", "int8", "--calib-images", "4",
               "--eval-images", "2", "--sensitivity", "--float-layers", "head.conv,stem.conv"])
    assert rc == 0
    assert "int8" in capsys.readouterr().out
    model = onnx.load(str(out))
    onnx.checker.check_model(model)
    ops = [n.op_type for n in model.graph.node]
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops
    producer = {o: n for n in model.graph.node for o in n.output}
    convs = {n.name: n for n in model.graph.node if n.op_type == "Conv"}
    quantized = {k for k, n in convs.items()
                 if n.input[1] in producer and producer[n.input[1]].op_type == "DequantizeLinear"}
    assert "head.conv" not in quantized and "stem.conv" not in quantized
    assert {"down1.conv", "down2.conv", "blocks.0.conv1.conv"} <= quantized
    n_params = count_parameters(load_generator(wide_release, "AtoB")[0])
    assert onnx_cost(out, 32)["params"] == n_params
    assert out.stat().st_size < 0.5 * 4 * n_params  # well under the fp32 weights alone
    report = json.loads(out.with_suffix(".quant.json").read_text())
    assert report["float_layers"] == ["head.conv", "stem.conv"]
    assert {r["layer"] for r in report["sensitivity"]} == set(convs)
    assert 10 < report["psnr_db"] <= 100


def test_auto_exclusion_keeps_worst_layers_in_float(wide_release, tmp_path):
    from cyclekit.export.onnx_export import export_release
    from cyclekit.export.quantize import (
        Int8Quantizer, auto_exclude, domain_images, load_arrays, run_model, split_images,
    )

    fp32 = export_release(wide_release, tmp_path / "g.onnx")
    calib_files, eval_files = split_images(domain_images(wide_release, "AtoB"), 4, 2)
    calib, evals = load_arrays(calib_files, 3, 32), load_arrays(eval_files, 3, 32)
    q = Int8Quantizer(fp32, calib, workdir=tmp_path)
    rep = auto_exclude(q, evals, run_model(fp32, evals), target_db=1000.0, max_float=2)
    assert len(rep["trials"]) == 3 and not rep["reached"]
    worst = [r["layer"] for r in rep["sensitivity"][:2]]
    assert rep["trials"][2]["float_layers"] == worst
    assert rep["psnr_db"] == max(t["psnr_db"] for t in rep["trials"])


def test_translate_with_onnxruntime_backend_matches_torch(exported, tiny_release, tmp_path):
    src = tmp_path / "in"
    rng = np.random.default_rng(0)
    save_image(src / "odd.png", rng.random((30, 46, 3)))  # not a multiple of 4: pad and crop
    save_image(src / "b.png", rng.random((32, 32, 3)))
    base = ["translate", str(src), "--device", "cpu"]
    assert main(base + ["--model", str(tiny_release), "--out", str(tmp_path / "torch")]) == 0
    assert main(base + ["--model", str(tiny_release), "--out", str(tmp_path / "ort"), "--backend", "onnxruntime"]) == 0
    assert main(base + ["--model", str(exported[0]), "--out", str(tmp_path / "file"), "--backend", "onnxruntime"]) == 0
    for name in ("odd.png", "b.png"):
        ref = load_image(tmp_path / "torch" / name, 3)
        for other in ("ort", "file"):
            img = load_image(tmp_path / other / name, 3)
            assert img.shape == ref.shape
            assert np.abs(img - ref).max() <= 1 / 255 + 1e-6


def test_onnx_file_needs_the_onnxruntime_backend(exported):
    from cyclekit.infer.translator import load_translator

    with pytest.raises(UserError, match="--backend onnxruntime"):
        load_translator(exported[0], device="cpu")


def test_missing_onnxruntime_is_a_clear_error(exported, tiny_release, monkeypatch, capsys, tmp_path):
    from cyclekit.infer.translator import load_translator

    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import now raises ImportError
    with pytest.raises(MissingDependencyError, match=r"cyclekit\[onnx\]"):
        load_translator(exported[0], backend="onnxruntime", device="cpu")
    save_image(tmp_path / "x.png", np.zeros((8, 8, 3)))
    rc = main(["translate", str(tmp_path / "x.png"), "--model", str(tiny_release), "--out",
               str(tmp_path / "o"), "--backend", "onnxruntime"])
    assert rc == 2 and "pip install 'cyclekit[onnx]'" in capsys.readouterr().err


def test_info_counts_onnx_like_pytorch(exported, tiny_release, capsys):
    assert main(["info", str(tiny_release), "--size", "64"]) == 0
    torch_line = capsys.readouterr().out.splitlines()[0]
    assert main(["info", str(exported[0]), "--size", "64"]) == 0
    onnx_line = capsys.readouterr().out
    for field in ("params=", "MACs@64px="):
        value = lambda s: s.split(field)[1].split()[0]  # noqa: E731
        assert value(torch_line) == value(onnx_line)


def test_cuda_provider_missing_is_a_clear_error():
    import onnxruntime

    from cyclekit.errors import ConfigError
    from cyclekit.infer.onnx_backend import pick_providers

    assert pick_providers("cpu") == ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        assert pick_providers("cuda")[0] == "CUDAExecutionProvider"
    else:
        assert pick_providers("auto") == ["CPUExecutionProvider"]
        with pytest.raises(ConfigError, match="onnxruntime-gpu"):
            pick_providers("cuda")


def test_onnx_file_carries_its_release_settings_and_direction(tiny_release, tmp_path, capsys):
    """An exported face model swaps like its release: domain names, face_tone, backdrop and strength
    travel in the file's metadata, and the file's own direction picks them, whatever --direction says."""
    import shutil

    import onnx

    from cyclekit.errors import CheckpointError
    from cyclekit.export.onnx_export import read_metadata, save_onnx, set_metadata
    from cyclekit.faces.pipeline import check_face_release, recommended_backdrop, recommended_strength, recommended_tone
    from cyclekit.infer.translator import load_translator
    from cyclekit.release import direction_label, release_info, resolve_release, update_release_info
    from cyclekit.serve.models import discover

    release = tmp_path / "release"
    shutil.copytree(resolve_release(tiny_release), release)
    face = {"domains": ["male", "female"], "face_tone": {"AtoB": [150, 110, 100], "BtoA": [160, 130, 120]},
            "face_backdrop": [209, 212, 212], "swap_strength": {"AtoB": 1.3, "BtoA": 1.15}}
    update_release_info(release, **face)
    out = tmp_path / "G_BA.onnx"
    assert main(["export", str(release), "--direction", "BtoA", "--out", str(out), "--no-parity"]) == 0
    carried = json.loads(read_metadata(onnx.load(str(out)))["release_info"])
    assert carried == {k: v for k, v in release_info(release).items() if k not in ("epoch", "global_step")}

    tr = load_translator(out, "AtoB", device="cpu", backend="onnxruntime")  # the file is BtoA: it wins
    assert tr.direction == "BtoA" and tr.info == carried
    check_face_release(tr)
    assert recommended_strength(tr) == 1.15 and recommended_tone(tr) == [160, 130, 120]
    assert recommended_backdrop(tr) == [209, 212, 212]
    assert direction_label(out, tr.direction, tr.info) == "BtoA (female -> male)"
    assert discover(out)["G_BA"].domains == ("male", "female")

    model = onnx.load(str(out))  # a damaged block is refused with the file's name, not half-used
    for bad in ("[1, 2", "[" * 200000 + "]" * 200000):  # broken; nested deeper than Python's stack
        set_metadata(model, {**read_metadata(model), "release_info": bad})
        save_onnx(model, tmp_path / "bad.onnx")
        with pytest.raises(CheckpointError, match=r"bad\.onnx.*release_info"):
            load_translator(tmp_path / "bad.onnx", "BtoA", device="cpu", backend="onnxruntime")
    old = {k: v for k, v in read_metadata(model).items() if k != "release_info"}  # a file from before
    del model.metadata_props[:]
    set_metadata(model, old)
    save_onnx(model, tmp_path / "old.onnx")
    tr = load_translator(tmp_path / "old.onnx", "BtoA", device="cpu", backend="onnxruntime")
    assert tr.info == {} and recommended_strength(tr) == 1.0 and direction_label(tmp_path / "old.onnx", "BtoA") == "BtoA"


def test_export_carries_names_and_face_settings_not_local_paths(tiny_release, tmp_path):
    """Only what a user of the file needs travels: no training step counts or a teacher's local path;
    a release that kept its domain names only in its training config still names them."""
    import shutil

    from cyclekit.export.onnx_export import export_info
    from cyclekit.release import resolve_release, update_release_info

    release = tmp_path / "release"
    shutil.copytree(resolve_release(tiny_release), release)
    update_release_info(release, distilled_from="/home/someone/runs/teacher", face_tone={"AtoB": [1, 2, 3]},
                        attribution="CC BY 4.0: someone")
    info = export_info(release)
    assert "distilled_from" not in info and "global_step" not in info
    assert info["face_tone"] == {"AtoB": [1, 2, 3]} and info["attribution"] == "CC BY 4.0: someone"
    assert "cyclekit_version" in info
