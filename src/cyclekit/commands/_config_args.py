"""Config fields as command-line flags: ``--foo-bar`` sets field ``foo_bar`` of its section.

Flags default to ``None`` (argparse.SUPPRESS is not used so ``--dry-run`` can show them), and
only the flags the user gave override the preset / ``--config`` file / checkpoint config.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Iterable, Optional

from cyclekit.config import CHOICES, SECTIONS, Config, field_index, load_config, set_field, yes_no_choice
from cyclekit.errors import ConfigError

PRESET_DIR = Path(__file__).resolve().parent.parent / "presets"


def field_help() -> dict[str, str]:
    """Each field's description: the comment after it in ``cyclekit/config.py`` (the one source of
    the ``--help`` texts, so code and documentation cannot drift apart)."""
    import inspect
    import re

    out: dict[str, str] = {}
    for cls in SECTIONS.values():
        for line in inspect.getsource(cls).splitlines():
            m = re.match(r"\s+(\w+): [^=]+=.*?  # (.+)$", line)
            if m:
                out[m.group(1)] = m.group(2).strip()
    return out


# --precision of the commands that translate (translate, swap, serve): runtime.inference_plan
INFER_PRECISION_HELP = ("auto: bf16 (NHWC) on CPUs with native bf16, fp32 (TF32) on Ampere+ GPUs, fp16 on "
                        "older GPUs, else fp32 (onnxruntime: fp32)")


def add_config_arguments(parser: argparse.ArgumentParser, sections: Iterable[str] = ("model", "data", "train")) -> None:
    described = field_help()
    for section in sections:
        cls = SECTIONS[section]
        group = parser.add_argument_group(f"{section} options (config section '{section}')")
        for f in dataclasses.fields(cls):
            flag = "--" + f.name.replace("_", "-")
            default = f.default
            kwargs: dict = {"dest": f"cfg_{f.name}", "default": None}
            if f.type in (bool, "bool"):
                kwargs["type"] = _parse_bool
                kwargs["metavar"] = "BOOL"
            elif f.name in CHOICES:
                kwargs["choices"] = CHOICES[f.name]
                kwargs["type"] = lambda text, name=f.name: yes_no_choice(name, text)
            else:
                kwargs["type"] = {"int": int, "float": float, "str": str}.get(str(f.type), str)
                kwargs["metavar"] = {"int": "N", "float": "X"}.get(str(f.type), "TEXT")
            text = described.get(f.name, "").replace("%", "%%")
            kwargs["help"] = f"{text} (default: {default!r})" if text else f"(default: {default!r})"
            group.add_argument(flag, **kwargs)


def _parse_bool(text: str) -> bool:
    low = text.lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")


def list_presets() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.json"))


def load_preset(name: str) -> Config:
    path = PRESET_DIR / f"{name}.json"
    if not path.is_file():
        raise ConfigError(f"unknown preset {name!r}; available: {', '.join(list_presets())}")
    return load_config(path)


def overrides_from_args(args: argparse.Namespace) -> dict:
    out = {}
    for name in field_index():
        value = getattr(args, f"cfg_{name}", None)
        if value is not None:
            out[name] = value
    return out


def resolve_config(args: argparse.Namespace, base: Optional[Config] = None) -> Config:
    """base (or preset, or --config file, or defaults) + command-line overrides, validated."""
    if base is not None:
        cfg = base
    elif getattr(args, "config", None):
        cfg = load_config(args.config)
    elif getattr(args, "preset", None):
        cfg = load_preset(args.preset)
    else:
        cfg = Config()
    for name, value in overrides_from_args(args).items():
        set_field(cfg, name, value)
    return cfg.validate()


def print_config(cfg: Config) -> None:
    print(json.dumps(cfg.to_dict(), indent=2))
