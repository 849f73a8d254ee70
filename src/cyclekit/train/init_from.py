"""``--init-from RELEASE``: start a new run from a release's generators (fine-tuning).

A release holds only the two generators (``model.safetensors``), so the discriminators, the
optimizers and the history pools start fresh; the generators, and so their weight average, start
from the release. The run's generator options must describe the same networks as the release's:
a mismatch is refused with the options to change, before any training.

Only a new run reads the release: ``--resume`` restores everything from the run's checkpoint.
"""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from torch import nn

from cyclekit.config import ModelConfig
from cyclekit.errors import CheckpointError, ConfigError
from cyclekit.nn.generators import READ_BY
from cyclekit.release import builtin_model, load_generator, load_release_config, release_info, resolve_release

log = logging.getLogger(__name__)

# ModelConfig fields that do not shape the generators: the discriminators start fresh, the
# initialisation is replaced by the release's weights, dropout has no weights (a fine-tune may add
# or drop it), and the crop size / face margin describe the training images.
NOT_GENERATOR = frozenset({"discriminator", "ndf", "d_layers", "d_scales", "d_norm", "d_spectral_norm",
                           "d_padding", "init", "init_gain", "image_size", "face_margin", "dropout"})


def generator_mismatch(ours: ModelConfig, theirs: ModelConfig) -> list[str]:
    """The names of the generator options that differ between two model configs (of those the
    release's generator reads)."""
    return [f.name for f in dataclasses.fields(ModelConfig)
            if f.name not in NOT_GENERATOR and theirs.generator in READ_BY.get(f.name, {theirs.generator})
            and getattr(ours, f.name) != getattr(theirs, f.name)]


def _flag(name: str, value) -> str:
    value = str(value).lower() if isinstance(value, bool) else value
    return f"--{name.replace('_', '-')} {value}"


def source_release(path: str) -> Path:
    """The release ``--init-from`` names: ``builtin`` is the gender-swap model the package ships
    (kept as the word in the run's config, so the config works on any machine)."""
    return resolve_release(builtin_model() if path == "builtin" else path)


def check_release(model: ModelConfig, path: str) -> Path:
    """The release folder ``path`` names, if its generators are the networks ``model`` describes;
    reads only its ``config.json``, so a wrong ``--init-from`` fails before the data is read."""
    try:
        release = source_release(path)
        theirs = load_release_config(release).model
    except CheckpointError as exc:
        raise ConfigError(f"--init-from: {exc}") from None
    names = generator_mismatch(model, theirs)
    if names:
        said = "; ".join(f"{n}: {getattr(model, n)!r} here, {getattr(theirs, n)!r} in the release" for n in names)
        flags = " ".join(_flag(n, getattr(theirs, n)) for n in names)
        raise ConfigError(f"--init-from {path}: the generator options differ from the release's ({said}); "
                          f"train with the release's: {flags}")
    return release


def load_pretrained_generators(nets: nn.Module, model: ModelConfig, path: str) -> Path:
    """Copy the release's G_AB and G_BA into ``nets`` (a CycleGANNets); returns the release folder."""
    release = check_release(model, path)
    for name, direction in (("G_AB", "AtoB"), ("G_BA", "BtoA")):
        net, _ = load_generator(release, direction)  # checks the weights against the release's config
        getattr(nets, name).load_state_dict(net.state_dict(), strict=True)
    step = release_info(release).get("global_step")
    log.info("generators start from %s%s; discriminators, optimizers and pools start fresh",
             release, f" (trained {step:,} steps)" if isinstance(step, int) else "")
    return release


# What a fine-tuned model keeps from the release it started from: weights made from licensed data
# stay bound by that licence (the built-in model's photos are CC BY 4.0: attribution required).
INHERITED = ("licence", "attribution")


def inherited_info(source: str, run_dir: str) -> dict:
    """The ``licence`` and ``attribution`` of the release a run is fine-tuned from, and what that
    release was (``fine_tuned_from``: its data and steps), for the run's own releases. A run that
    already wrote a release keeps what that one recorded (the source may have changed or gone);
    a new run reads the source."""
    try:
        own = release_info(run_dir)
    except CheckpointError:
        own = {}
    if "fine_tuned_from" in own or any(k in own for k in INHERITED):
        return {k: own[k] for k in (*INHERITED, "fine_tuned_from") if k in own}
    try:
        src = release_info(source_release(source))
    except CheckpointError:
        log.warning("--init-from %s is gone and %s has no release yet: its licence and attribution "
                    "are not carried into this run's release", source, run_dir)
        return {}
    out = {k: src[k] for k in INHERITED if k in src}
    base = {k: src[k] for k in ("data", "global_step") if k in src}
    if base:
        out["fine_tuned_from"] = base
    return out
