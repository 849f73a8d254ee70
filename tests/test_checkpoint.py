"""Release files and training state: safe to load, atomic to write, clear when wrong."""
import json

import pytest
import torch

from cyclekit.checkpoint import (
    load_generator, load_release_config, load_training_state, resolve_release, save_training_state,
)
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
    save_training_state(path, {"step": 1, "w": torch.ones(3)})

    def crash(obj, f, *a, **k):
        with open(f, "wb") as fh:
            fh.write(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError):
        save_training_state(path, {"step": 2, "w": torch.zeros(3)})
    monkeypatch.undo()
    state = load_training_state(path)
    assert state["step"] == 1 and torch.equal(state["w"], torch.ones(3))

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"x": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="cannot load"):
        load_training_state(tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="no training state"):
        load_training_state(tmp_path / "missing.pt")
