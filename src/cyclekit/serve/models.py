"""The models a server offers: discovered once, loaded on first use, shared by every request.

``--model`` may name one model (a run directory, a release folder or its ``model.safetensors``)
or a folder whose sub-folders are models; each is offered under its folder name. Only the
small ``config.json`` files are read at start-up; weights are loaded the first time a model and
direction are asked for, and at most ``max_loaded`` translators stay in memory (least recently
used ones are dropped), so a folder of many models cannot exhaust memory either.

In a folder, a model that cannot be used (an unreadable ``config.json``, weights that do not
load when :meth:`ModelStore.preload` tries them) is skipped with one warning line; only when no
model is left does the server refuse to start, with one line saying why.
"""
from __future__ import annotations

import logging
import os
import threading
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Union

from cyclekit.errors import CheckpointError, UserError

log = logging.getLogger(__name__)

DIRECTIONS = ("AtoB", "BtoA")


@dataclass
class ModelEntry:
    """One offered model: a release (both directions) or an exported ``.onnx`` file (one direction)."""

    name: str
    release: Path
    in_channels: int
    image_size: int
    generator: str
    domains: tuple[str, str]
    directions: tuple[str, ...] = DIRECTIONS
    onnx: bool = False  # an exported file: always run with onnxruntime
    face: bool = False  # trained on face crops (a face_margin): the page starts in face swap mode

    def info(self) -> dict[str, Any]:
        a, b = self.domains
        labels = {"AtoB": f"{a} → {b}", "BtoA": f"{b} → {a}"}
        return {"name": self.name, "channels": self.in_channels, "image_size": self.image_size,
                "generator": self.generator, "domains": {"A": a, "B": b}, "format": "onnx" if self.onnx else "release",
                "directions": [{"id": d, "label": labels[d]} for d in self.directions], "face": self.face}


def _why(exc: BaseException) -> str:
    """One line for a model that failed: a UserError's sentence, else the type and message."""
    text = str(exc) if isinstance(exc, UserError) else f"{type(exc).__name__}: {exc}"
    return " ".join(text.split())[:500]


def discover(path: Union[str, Path]) -> dict[str, ModelEntry]:
    """One model, or every model one level below ``path``; raise :class:`CheckpointError` if none.

    A broken model in a folder is skipped with a warning; a single model given directly fails.
    """
    from cyclekit.release import load_release_config, release_domains, resolve_release

    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"model not found: {path} (give a run directory, a release folder, "
                              "an exported .onnx file, or a folder of them)")
    if path.is_file() and path.suffix.lower() == ".onnx":
        return {path.stem: _onnx_entry(path.stem, path)}
    single = True
    try:
        found = [(path, resolve_release(path))]
    except CheckpointError:
        single = False
        if not path.is_dir():
            raise
        found = []
        for child in sorted(p for p in path.iterdir() if not p.name.startswith(".")):
            if child.is_file() and child.suffix.lower() == ".onnx":
                found.append((child, child))
            elif child.is_dir():
                try:
                    found.append((child, resolve_release(child)))
                except CheckpointError:
                    continue
        if not found:
            raise CheckpointError(
                f"no model in {path}: expected config.json + model.safetensors there, in {path}/model, "
                "or in its sub-folders (one per model), or exported .onnx files; train one with "
                "`cyclekit train`") from None
    out: dict[str, ModelEntry] = {}
    for folder, release in found:
        if release.suffix.lower() == ".onnx":
            name = release.stem
        else:
            folder = Path(os.path.abspath(folder if folder.is_dir() else release))  # keeps symlink names
            name = folder.parent.name if folder.name == "model" else folder.name  # run/model -> run
        while name in out:
            name += "_"
        try:
            if release.suffix.lower() == ".onnx":
                out[name] = _onnx_entry(name, release)
                continue
            cfg = load_release_config(release)
            out[name] = ModelEntry(name, release, cfg.model.in_channels, cfg.model.image_size,
                                   cfg.model.generator, release_domains(release), face=cfg.model.face_margin > 0)
        except Exception as exc:
            if single:
                raise
            log.warning("skipping model %s: %s", name, _why(exc))
    if not out:
        raise CheckpointError(f"no usable model in {path}: every model there failed to load (see the "
                              "warnings above); fix or remove them, or train one with `cyclekit train`")
    return out


def _onnx_entry(name: str, path: Path) -> ModelEntry:
    """An exported generator: its metadata says the direction and the network it came from."""
    from cyclekit.errors import require

    require("onnxruntime", "onnx", f"serving the ONNX file {path}")
    from cyclekit.infer.onnx_backend import config_from_metadata, info_from_metadata, make_session
    from cyclekit.release import info_domains

    session = make_session(path, "cpu")
    meta = session.get_modelmeta().custom_metadata_map
    cfg, direction, _ = config_from_metadata(meta, session, str(path))
    domains = info_domains(info_from_metadata(meta, str(path))) or ("A", "B")
    return ModelEntry(name, path, cfg.in_channels, cfg.image_size, cfg.generator, domains,
                      directions=(direction,), onnx=True, face=cfg.face_margin > 0)


class ModelStore:
    """Translators by (model, direction), loaded lazily, LRU-capped, safe to call from any thread."""

    def __init__(self, path: Union[str, Path], backend: str = "torch", device: str = "cpu",
                 precision: str = "fp32", max_loaded: int = 4) -> None:
        self.path = Path(path)
        self.entries = discover(path)
        self.backend, self.device, self.precision = backend, device, precision
        self.max_loaded = max(1, max_loaded)
        self._cache: "OrderedDict[tuple[str, str], Any]" = OrderedDict()
        self._lock = threading.Lock()

    @property
    def default(self) -> str:
        return next(iter(self.entries))

    def preload(self) -> None:
        """Load every model once now (the last ``max_loaded`` stay loaded): a broken one fails here.

        With several models a broken one is dropped with a warning; if none loads, or the only
        model does not, :class:`CheckpointError` says why in one line.
        """
        from cyclekit.release import resolve_release

        try:  # a model given directly must load; in a folder, the others may still serve
            several = not (self.path.suffix.lower() == ".onnx" or resolve_release(self.path))
        except CheckpointError:
            several = True
        for name in list(self.entries):
            try:
                self.get(name, self.entries[name].directions[0])
            except Exception as exc:
                if not several:
                    raise CheckpointError(f"model {name} ({self.path}) does not load: {_why(exc)}") from None
                log.warning("skipping model %s: %s", name, _why(exc))
                del self.entries[name]
        if not self.entries:
            raise CheckpointError(f"no usable model in {self.path}: none of its models loads (see the warnings "
                                  "above); fix or remove them, or train one with `cyclekit train`")

    def _load(self, name: str, direction: str):
        from cyclekit.infer.translator import load_translator

        entry = self.entries[name]
        backend = "onnxruntime" if entry.onnx else self.backend
        kwargs: dict[str, Any] = {"device": self.device, "precision": self.precision}
        if entry.onnx:
            kwargs["precision"] = "fp32"  # an .onnx file runs in the precision it was exported in
        kwargs["backend"] = backend
        log.info("loading model %s (%s, %s backend)", name, direction, backend)
        return load_translator(entry.release, direction, **kwargs)

    def get(self, name: str, direction: str):
        if name not in self.entries:
            raise KeyError(name)
        if direction not in self.entries[name].directions:
            raise UserError(f"model {name} only translates {', '.join(self.entries[name].directions)}")
        key = (name, direction)
        with self._lock:  # one loader at a time; a model is never loaded twice
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
            translator = self._load(name, direction)
            self._cache[key] = translator
            while len(self._cache) > self.max_loaded:
                dropped, _ = self._cache.popitem(last=False)
                log.info("unloading model %s (%s) to stay within %d loaded", *dropped, self.max_loaded)
            return translator

    def loaded(self) -> list[str]:
        with self._lock:
            return [f"{n}:{d}" for n, d in self._cache]


# ---------------------------------------------------------------------- face swap
class FaceSwapper:
    """``swapper(image, translator, all_faces, back, strength) -> (image, faces swapped, message)``.

    Wraps :func:`cyclekit.faces.pipeline.swap_image` with one detector per worker thread (an
    OpenCV cascade is not safe to share between threads) and crop parameters cached per model.
    With ``back`` (the model's generator the other way) and a release that records a
    ``cycle_limit`` (measured as :func:`~cyclekit.faces.cycle.recorded_limit` expects), the
    message warns, as ``cyclekit swap`` does, when a face is unlike the model's training faces
    (:mod:`cyclekit.faces.cycle`).
    """

    def __init__(self, pipeline, detector: str = "auto") -> None:
        from cyclekit.faces.detectors import make_detector

        self.pipeline, self.detector_name, self._make = pipeline, detector, make_detector
        self._local = threading.local()
        self._params: "weakref.WeakKeyDictionary[Any, Any]" = weakref.WeakKeyDictionary()  # per loaded translator
        self.detector()  # fails now (e.g. OpenCV missing) rather than on a visitor's request

    def detector(self):
        if getattr(self._local, "detector", None) is None:
            self._local.detector = self._make(self.detector_name)
        return self._local.detector

    def __call__(self, image, translator, all_faces: bool = False, back=None, strength=None):
        from cyclekit.faces.cycle import recorded_limit, unlike_training_faces

        params = self._params.get(translator)
        if params is None:
            params = self._params[translator] = self.pipeline.face_params_for(translator, detector=self.detector_name)
        limit = recorded_limit(translator)
        out, info = self.pipeline.swap_image(image, translator, params=params, detector=self.detector(),
                                             all_faces=all_faces, back=back, strength=strength)
        errors = [f.cycle_error for f in info.faces if f.cycle_error is not None]
        warning = unlike_training_faces(max(errors, default=None), limit)
        return out, int(info.swapped), str(info.message) + (f"; {warning}" if warning else "")


def face_swap_support() -> tuple[Optional[Callable], str]:
    """``(FaceSwapper, "")`` when the face pipeline and its detector load, else ``(None, why not)``."""
    try:
        from cyclekit.faces import pipeline

        return FaceSwapper(pipeline), ""
    except UserError as exc:  # e.g. MissingDependencyError naming the extra to install
        return None, str(exc)
    except ImportError as exc:
        missing = getattr(exc, "name", "") or ""
        if missing.startswith("cyclekit"):
            return None, "this version of cyclekit has no face pipeline (cyclekit.faces.pipeline)"
        return None, (f"the face pipeline needs '{missing or exc}', which is not installed; "
                      "install it with: pip install 'cyclekit[faces]'")
    except Exception as exc:  # a broken optional module must not take the server down
        log.warning("face pipeline failed to load: %r", exc)
        return None, f"the face pipeline failed to load ({type(exc).__name__}: {exc})"
