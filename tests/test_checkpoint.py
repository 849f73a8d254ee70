"""Release files and training state: safe to load, atomic to write, clear when wrong."""
import json

import pytest
import torch

from cyclekit.release import load_generator, load_release_config, resolve_release
from cyclekit.train.state import load_training_state, save_training_state
from cyclekit.errors import CheckpointError


def test_release_loads_without_training_code_or_pickle(tiny_release):
    release = resolve_release(tiny_release)
    assert release == tiny_release / "model"
    doc = json.loads((release / "config.json").read_text())
    assert doc["cyclekit"]["global_step"] == 4 and doc["model"]["ngf"] == 4
    net, cfg = load_generator(tiny_release, "BtoA")
    assert not net.training and cfg.in_channels == 3
    # The weights are exactly the trainer's generator.
    state = load_training_state(tiny_release / "checkpoints" / "last.pt")
    for k, v in net.state_dict().items():
        assert torch.equal(v, state["nets"]["G_BA"][k])
    # A .safetensors path works too; its keys carry no wrapper prefixes.
    from safetensors.torch import load_file

    keys = load_file(str(release / "model.safetensors")).keys()
    assert all(k.startswith(("G_AB.", "G_BA.")) and "module." not in k and "_orig_mod" not in k for k in keys)
    load_generator(release / "model.safetensors", "AtoB")


def test_missing_and_broken_releases_are_clear(tmp_path, tiny_release):
    with pytest.raises(CheckpointError, match="not found"):
        load_generator(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="no release"):
        load_generator(tmp_path / "empty")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text((tiny_release / "model" / "config.json").read_text())
    (bad / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="cannot read"):
        load_generator(bad)
    doc = json.loads((tiny_release / "model" / "config.json").read_text())
    doc["model"]["ngf"] = 8
    (bad / "config.json").write_text(json.dumps(doc))
    (bad / "model.safetensors").write_bytes((tiny_release / "model" / "model.safetensors").read_bytes())
    with pytest.raises(CheckpointError, match="does not match"):
        load_generator(bad)
    assert load_release_config(tiny_release).model.ngf == 4


def test_training_state_is_weights_only_and_atomic(tmp_path, monkeypatch):
    path = tmp_path / "ck" / "last.pt"
    base = {"config": "{}", "nets": {}, "opt_G": {}, "opt_D": {}, "epoch": 0, "global_step": 1}
    save_training_state(path, {**base, "step": 1, "w": torch.ones(3)})

    def crash(obj, f, *a, **k):
        with open(f, "wb") as fh:
            fh.write(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError, match=r"cannot write .*last\.pt"):
        save_training_state(path, {**base, "step": 2, "w": torch.zeros(3)})
    monkeypatch.undo()
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]  # no temp file left behind
    state = load_training_state(path)
    assert state["step"] == 1 and torch.equal(state["w"], torch.ones(3))

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"x": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="not a safe cyclekit training state") as err:
        load_training_state(tmp_path / "evil.pt")
    assert "weights_only" not in str(err.value)  # never advise unsafe loading
    torch.save({"weights": torch.ones(2)}, tmp_path / "foreign.pt")  # a torch file, not ours
    with pytest.raises(CheckpointError, match="not a cyclekit training state"):
        load_training_state(tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="no training state"):
        load_training_state(tmp_path / "missing.pt")


def test_release_translates_without_importing_training_code(tiny_release):
    """A fresh interpreter loads the release and translates; no cyclekit.train module is imported."""
    import subprocess
    import sys

    script = (
        "import sys, torch\n"
        "from cyclekit.infer.translator import load_translator\n"
        f"tr = load_translator({str(tiny_release)!r}, 'AtoB', device='cpu', precision='fp32')\n"
        "y = tr(torch.zeros(1, 3, 30, 30))\n"
        "assert y.shape == (1, 3, 30, 30), y.shape\n"
        "print(sorted(m for m in sys.modules if m == 'cyclekit.train' or m.startswith('cyclekit.train.')))\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_release_records_domain_names(tiny_release, tmp_path):
    from cyclekit.config import DataConfig
    from cyclekit.data.domains import domain_names
    from cyclekit.release import release_domains

    assert release_domains(tiny_release) == ("A", "B")  # trainA/trainB in a folder without a X2Y name
    assert json.loads((tiny_release / "model" / "config.json").read_text())["cyclekit"]["domains"] == ["A", "B"]
    assert domain_names(DataConfig(dataroot=str(tmp_path / "horse2zebra"))) == ("horse", "zebra")
    assert domain_names(DataConfig(dir_a="/d/cats", dir_b="/d/dogs")) == ("cats", "dogs")
    assert domain_names(DataConfig(dir_a="/d/trainA", dir_b="/d/trainB")) == ("A", "B")
    faces = tmp_path / "celeb2anime"
    faces.mkdir()
    (faces / "faces.json").write_text(json.dumps({"margin": 0.3, "domains": ["photo", "anime"]}))
    assert domain_names(DataConfig(dataroot=str(faces))) == ("photo", "anime")
