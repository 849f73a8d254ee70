"""Readable names for the two domains of a dataset, recorded in releases (``horse``, ``zebra``)."""
from __future__ import annotations

import json
import re
from pathlib import Path

FACES_JSON = "faces.json"  # written by `cyclekit data faces`; may name its domains
_GENERIC_FOLDERS = {"traina", "trainb", "testa", "testb", "a", "b", ""}


def domain_names(data_cfg) -> tuple[str, str]:
    """The names of domain A and B for a :class:`~cyclekit.config.DataConfig`.

    In order: a ``"domains"`` entry in ``DATAROOT/faces.json``; the folder names of ``dir_a`` and
    ``dir_b`` when they are not generic (``trainA``...); ``horse2zebra`` -> (horse, zebra) from the
    dataroot's name; else ``("A", "B")``.
    """
    root = Path(data_cfg.dataroot) if data_cfg.dataroot else None
    if root is not None and (root / FACES_JSON).is_file():
        try:
            names = json.loads((root / FACES_JSON).read_text(encoding="utf-8")).get("domains")
        except (ValueError, AttributeError, OSError):
            names = None
        if isinstance(names, list) and len(names) == 2 and all(isinstance(n, str) and n for n in names):
            return names[0], names[1]
    a = Path(data_cfg.dir_a).name if data_cfg.dir_a else ""
    b = Path(data_cfg.dir_b).name if data_cfg.dir_b else ""
    if a.lower() not in _GENERIC_FOLDERS and b.lower() not in _GENERIC_FOLDERS and a != b:
        return a, b
    m = re.fullmatch(r"([A-Za-z][\w-]*?)2([A-Za-z][\w-]*)", root.stem if root is not None else "")
    if m:
        return m.group(1), m.group(2)
    return "A", "B"
