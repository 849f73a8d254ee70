"""Static int8 quantisation (QDQ) of an exported generator that keeps its quality.

Recipe (onnxruntime ``quantize_static``, QDQ format, Jacob et al. 2018 style integer inference):

* **Calibration on real training images of the generator's input domain** (``trainA`` for
  ``AtoB``): activation ranges come from the images the model will see, not from noise.
* **Per-channel weights** (``per_channel=True``): the convolution filters of a CycleGAN
  generator differ in scale by orders of magnitude; one scale per tensor wastes most of the
  int8 range on the small ones.
* **Only convolutions are quantised** (``Conv``; ``ConvTranspose`` optionally); instance norm,
  reflection padding, ReLU, residual additions and tanh stay in float, so the per-image
  statistics of instance norm are computed exactly. The transposed convolutions stay in float
  by default: on a trained ResNet-9 they were the two most harmful layers (one alone took the
  output to 35.6 dB) and onnxruntime's int8 ConvTranspose was slower than its float one.
* **The layers that hurt quality stay in float**, measured, not guessed: :func:`layer_sensitivity`
  quantises one layer at a time and records the PSNR of the output against the fp32 output;
  :func:`auto_exclude` then keeps the most harmful layers in float until the whole model reaches
  a target PSNR (35 dB by default) on held-out images, and reports every step.

Activations are unsigned int8 (``QUInt8``) and weights signed (``QInt8``): the fast ``U8S8`` path
of onnxruntime's x86 kernels. One calibration pass is cached and shared by all trial
quantisations, so a sensitivity sweep costs one quantisation + evaluation per layer.
"""
from __future__ import annotations

import contextlib
import io
import logging
import tempfile
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np

from cyclekit.errors import DataError, require

log = logging.getLogger(__name__)

QUANT_OPS = ("Conv",)  # add "ConvTranspose" to quantise the upsampling layers too
CALIB_METHODS = ("minmax", "percentile", "entropy")


# --------------------------------------------------------------------------- data
def load_arrays(files: Sequence[Union[str, Path]], channels: int, size: int) -> list[np.ndarray]:
    """Images as ``[1, C, size, size]`` float32 in [-1, 1]: shorter side resized to ``size``, centre crop."""
    from cyclekit.io.images import load_image
    from cyclekit.data.transforms import resize

    out = []
    for f in files:
        img = load_image(f, channels)
        h, w = img.shape[:2]
        s = size / min(h, w)
        nh, nw = max(size, round(h * s)), max(size, round(w * s))
        img = resize(img, nw, nh)
        top, left = (nh - size) // 2, (nw - size) // 2
        img = img[top:top + size, left:left + size]
        out.append(np.ascontiguousarray(img.transpose(2, 0, 1)[None] * 2.0 - 1.0, dtype=np.float32))
    return out


def domain_images(model_path: Union[str, Path], direction: str = "AtoB",
                  folder: Optional[Union[str, Path]] = None) -> list[Path]:
    """The training images of the generator's input domain (trainA for AtoB), or ``folder``'s."""
    from cyclekit.data.datasets import resolve_domain_dirs
    from cyclekit.io.images import list_images
    from cyclekit.release import training_config

    if folder is None:
        cfg = training_config(model_path)
        if cfg is None:
            raise DataError(f"{model_path} does not say which images it was trained on (a release shipped "
                            "without its run directory); give calibration images of the input domain with --calib-dir")
        try:
            dir_a, dir_b = resolve_domain_dirs(cfg.data, "train")
        except DataError as exc:
            raise DataError(f"{exc}; give calibration images of the input domain with --calib-dir") from None
        folder = dir_a if direction == "AtoB" else dir_b
    files = list_images(folder)
    if not files:
        raise DataError(f"no calibration images in {folder}; pass --calib-dir with images of the input domain")
    return files


def split_images(files: Sequence[Path], n_calib: int, n_eval: int, seed: int = 0) -> tuple[list, list]:
    """Disjoint random calibration and evaluation subsets (evaluation may be empty)."""
    rng = np.random.default_rng(seed)
    order = [files[i] for i in rng.permutation(len(files))]
    n_calib = min(n_calib, max(1, len(order) - n_eval) if n_eval else len(order))
    return order[:n_calib], order[n_calib:n_calib + n_eval]


def _reader(arrays: list[np.ndarray], input_name: str):
    from onnxruntime.quantization import CalibrationDataReader

    class ArrayReader(CalibrationDataReader):
        def __init__(self) -> None:
            self.i = 0

        def get_next(self):
            if self.i >= len(arrays):
                return None
            self.i += 1
            return {input_name: arrays[self.i - 1]}

        def __len__(self) -> int:
            return len(arrays)

        def rewind(self) -> None:
            self.i = 0

        def set_range(self, start_index: int, end_index: int) -> None:
            self.i = start_index

    return ArrayReader()


# --------------------------------------------------------------------------- quantise
class Int8Quantizer:
    """Quantise one fp32 ONNX generator many ways from one cached calibration pass."""

    def __init__(self, fp32_path: Union[str, Path], calib: list[np.ndarray], op_types: Sequence[str] = QUANT_OPS,
                 method: str = "minmax", per_channel: bool = True, workdir: Optional[Path] = None) -> None:
        require("onnxruntime", "onnx", "int8 quantisation")
        if method not in CALIB_METHODS:
            raise ValueError(f"calibration method must be one of {CALIB_METHODS}, got {method!r}")
        if not calib:
            raise DataError("int8 quantisation needs at least one calibration image")
        self.fp32_path, self.calib, self.method, self.per_channel = Path(fp32_path), calib, method, per_channel
        self.op_types = list(op_types)
        self._tmp = tempfile.TemporaryDirectory(prefix="cyclekit-quant-") if workdir is None else None
        self.workdir = Path(self._tmp.name) if workdir is None else Path(workdir)
        # ranges are collected for the inputs/outputs of the op types to quantise: one cache per set
        self.cache = self.workdir / f"calib-{method}-{'-'.join(sorted(self.op_types))}.json"
        import onnx

        self.model = onnx.load(str(self.fp32_path))
        self.nodes = [(n.name, n.op_type) for n in self.model.graph.node if n.op_type in self.op_types]

    def quantize(self, out_path: Union[str, Path], exclude: Sequence[str] = (),
                 only: Optional[Sequence[str]] = None) -> Path:
        """Write a QDQ model with every candidate node but ``exclude`` (or just ``only``) in int8."""
        from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

        method = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
                  "entropy": CalibrationMethod.Entropy}[self.method]
        extra = {"ActivationSymmetric": False, "WeightSymmetric": True}
        if self.method == "percentile":
            extra["CalibPercentile"] = 99.999
        name = self.model.graph.input[0].name
        with _quiet_quantizer():
            quantize_static(
                str(self.fp32_path), str(out_path), _reader(self.calib, name), quant_format=QuantFormat.QDQ,
                op_types_to_quantize=self.op_types, per_channel=self.per_channel, reduce_range=False,
                activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                nodes_to_quantize=list(only) if only else None, nodes_to_exclude=list(exclude),
                calibrate_method=method, extra_options=extra, calibration_cache_path=str(self.cache),
            )
        return Path(out_path)

    def close(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()


class _DropPreprocessHint(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-process" not in record.getMessage()


@contextlib.contextmanager
def _quiet_quantizer():
    """onnxruntime's quantizer logs a pre-processing hint on the root logger at every call and the
    percentile calibrator prints to stdout; neither is useful here."""
    hint = _DropPreprocessHint()
    logging.getLogger().addFilter(hint)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        logging.getLogger().removeFilter(hint)


def mean_psnr(ref: list[np.ndarray], out: list[np.ndarray]) -> float:
    """Mean per-image PSNR (dB) between generator outputs in [-1, 1], on the [0, 1] scale."""
    vals = []
    for a, b in zip(ref, out):
        mse = float(np.mean(((a.astype(np.float64) - b.astype(np.float64)) / 2.0) ** 2))
        vals.append(100.0 if mse <= 1e-10 else min(100.0, 10 * np.log10(1.0 / mse)))
    return float(np.mean(vals))


def run_model(path_or_session, arrays: list[np.ndarray], threads: int = 0) -> list[np.ndarray]:
    from cyclekit.infer.onnx_backend import make_session

    sess = path_or_session if hasattr(path_or_session, "run") else make_session(path_or_session, "cpu", threads)
    name = sess.get_inputs()[0].name
    return [sess.run(None, {name: a})[0] for a in arrays]


def layer_sensitivity(q: Int8Quantizer, eval_arrays: list[np.ndarray], reference: list[np.ndarray],
                      progress: bool = False) -> list[dict]:
    """PSNR against fp32 when only one layer is int8, for every candidate layer (worst first)."""
    from tqdm.auto import tqdm

    rows = []
    for name, op in tqdm(q.nodes, disable=not progress, desc="sensitivity", unit="layer"):
        path = q.quantize(q.workdir / "one.onnx", only=[name])
        rows.append({"layer": name, "op": op, "psnr_db": round(mean_psnr(reference, run_model(path, eval_arrays)), 3)})
    return sorted(rows, key=lambda r: r["psnr_db"])


def auto_exclude(q: Int8Quantizer, eval_arrays: list[np.ndarray], reference: list[np.ndarray],
                 target_db: float = 35.0, max_float: Optional[int] = None, sensitivity: Optional[list] = None,
                 progress: bool = False) -> dict:
    """Keep the most harmful layers in float until the int8 model reaches ``target_db`` vs fp32.

    First every candidate layer is quantised; only if that misses the target is the per-layer
    sensitivity measured (unless given) and the worst layers kept in float one by one. Returns a
    report: the sensitivity table (if measured), every trial (float layers -> PSNR) and the chosen
    float layers (the first trial that reaches the target, else the best one seen).
    """
    max_float = len(q.nodes) if max_float is None else max_float
    trials, excluded = [], []
    best = None
    for k in range(0, max_float + 1):
        if k > 0:
            if sensitivity is None:
                sensitivity = layer_sensitivity(q, eval_arrays, reference, progress)
            excluded = [r["layer"] for r in sensitivity[:k]]
        path = q.quantize(q.workdir / "trial.onnx", exclude=excluded)
        db = mean_psnr(reference, run_model(path, eval_arrays))
        trials.append({"float_layers": list(excluded), "psnr_db": round(db, 3)})
        log.info("int8 with %d layer(s) in float: %.2f dB vs fp32", len(excluded), db)
        if best is None or db > best[1] + 1e-6:
            best = (list(excluded), db)
        if db >= target_db or k >= len(q.nodes):
            break
    chosen, db = best if trials[-1]["psnr_db"] < target_db else (trials[-1]["float_layers"], trials[-1]["psnr_db"])
    return {"target_db": target_db, "sensitivity": sensitivity or [], "trials": trials, "float_layers": chosen,
            "psnr_db": round(db, 3), "reached": db >= target_db}
