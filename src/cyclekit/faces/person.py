"""Which pixels of a photo are the person: MediaPipe's selfie segmentation network, run with PyTorch.

GrabCut (colour models seeded from the crop geometry) lost dark hair in front of dark rooms, kept
bookcases and curtains beside the head, and found no shoulders at all; the model it prepared for
then saw a blotchy head with a dark aura on its studio backdrop. MediaPipe's selfie segmentation
(Apache 2.0; Google's MobileNetV3-style encoder-decoder, 256 x 256 RGB in [0, 1], a person
probability per pixel out) was trained for exactly this: head, hair and shoulders against any
room. Its 250 KB of weights ship in ``models/selfie_segmentation`` with their licence, converted
from the ``.tflite`` file by ``tools/convert_selfie_segmentation.py``; this module runs that graph
of ordinary operators (convolutions, hard-swish, squeeze-excite, bilinear upsampling, one
transposed convolution) with ``torch.nn.functional``, so neither TensorFlow Lite nor MediaPipe is
needed. ``tests/test_person.py`` checks it against outputs of the original runtime.
"""
from __future__ import annotations

import json
import threading
from importlib import resources
from pathlib import Path
from typing import Optional, Union

import numpy as np

from cyclekit.errors import CheckpointError

SIDE = 256  # the network's input and output side
MAX_OPS, MAX_CONSTANTS = 1000, 1000
ACTIVATIONS = ("NONE", "RELU", "RELU6")  # fused activations the converter writes
OPS = frozenset({"CONV_2D", "DEPTHWISE_CONV_2D", "ADD", "MUL", "RELU", "HARD_SWISH", "LOGISTIC",
                 "AVERAGE_POOL_2D", "RESIZE_BILINEAR", "Convolution2DTransposeBias"})


def model_dir() -> Path:
    return Path(str(resources.files("cyclekit.faces") / "models" / "selfie_segmentation"))


def _check_graph(doc) -> dict:
    """``graph.json`` as read, refused (CheckpointError) unless every operator is one this runner
    knows, with integer tensor numbers and the options it needs: checked before any weight is read."""
    def fail(why: str):
        raise CheckpointError(f"selfie segmentation graph.json: {why}; reinstall cyclekit")

    if not isinstance(doc, dict) or doc.get("format") != "cyclekit-op-graph/1":
        fail("not a cyclekit-op-graph/1 file")
    ops = doc.get("ops")
    if not isinstance(ops, list) or not 0 < len(ops) <= MAX_OPS:
        fail("no operator list")
    def pair(value) -> bool:
        return isinstance(value, list) and len(value) == 2 and all(isinstance(v, int) and 0 < v <= 4 * SIDE for v in value)

    for k, op in enumerate(ops):
        if not isinstance(op, dict) or op.get("op") not in OPS:
            fail(f"operator {k} is not one of {', '.join(sorted(OPS))}")
        name = op["op"]
        for key in ("inputs", "outputs"):
            if not isinstance(op.get(key), list) or not all(isinstance(i, int) and i >= 0 for i in op[key]):
                fail(f"operator {k} has no {key}")
        if op.get("act", "NONE") not in ACTIVATIONS:
            fail(f"operator {k} has an activation this runner does not know ({op.get('act')!r})")
        if name in ("CONV_2D", "DEPTHWISE_CONV_2D", "AVERAGE_POOL_2D", "Convolution2DTransposeBias"):
            if not pair(op.get("stride")):
                fail(f"operator {k} ({name}) has no stride")
            if op.get("padding") not in ("SAME", "VALID"):
                fail(f"operator {k} ({name}) has no padding")
        if name in ("CONV_2D", "DEPTHWISE_CONV_2D") and not pair(op.get("dilation", [1, 1])):
            fail(f"operator {k} ({name}) has a bad dilation")
        if name == "AVERAGE_POOL_2D" and (op["padding"] != "VALID" or not pair(op.get("kernel"))):
            fail(f"operator {k} pools with padding or without a kernel size, which this runner does not do")
        if name == "RESIZE_BILINEAR" and (not pair(op.get("size"))
                                          or not (op.get("align_corners") or op.get("half_pixel_centers"))):
            fail(f"operator {k} resizes without a size, or with TensorFlow's legacy corner rule")
    if not isinstance(doc.get("input"), int) or not isinstance(doc.get("output"), int):
        fail("no input or output tensor")
    return doc


def _same_pad(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """TensorFlow's SAME padding (before, after) along one side: the extra pixel goes after."""
    total = max((-(-size // stride) - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


class PersonSegmenter:
    """``segmenter(rgb)``: person probability (``H x W`` float32 in [0, 1]) of float RGB images in
    [0, 1] (``SIDE x SIDE x 3``, or a batch ``N x SIDE x SIDE x 3``)."""

    def __init__(self, folder: Union[str, Path, None] = None) -> None:
        import torch
        from safetensors import SafetensorError, safe_open

        folder = Path(folder) if folder else model_dir()
        try:
            doc = _check_graph(json.loads((folder / "graph.json").read_text()))
            with safe_open(str(folder / "model.safetensors"), framework="pt") as f:
                keys = list(f.keys())
                if len(keys) > MAX_CONSTANTS:
                    raise CheckpointError(f"{folder}: {len(keys)} constants, more than a segmenter has")
                consts = {int(k): f.get_tensor(k).float() for k in keys}
        except (OSError, ValueError, SafetensorError) as exc:
            raise CheckpointError(f"selfie segmentation model in {folder}: {exc}; reinstall cyclekit") from None
        self.ops, self.input, self.output = doc["ops"], doc["input"], doc["output"]
        # weights to PyTorch's layouts, once: TFLite keeps OHWI (conv), 1HWC (depthwise), OHWI (transposed)
        self.consts = {}
        for op in self.ops:
            if op["op"] in ("ADD", "MUL") and any(i in consts for i in op["inputs"]):
                raise CheckpointError("selfie segmentation graph: an elementwise operator on a constant, "
                                      "which this runner does not lay out")
            if len(op["inputs"]) > 1 and op["inputs"][1] in consts:
                w = consts[op["inputs"][1]]
                if op["op"] in ("CONV_2D", "DEPTHWISE_CONV_2D"):
                    w = w.permute(3, 0, 1, 2) if op["op"] == "DEPTHWISE_CONV_2D" else w.permute(0, 3, 1, 2)
                elif op["op"] == "Convolution2DTransposeBias":
                    if list(w.shape[1:3]) != op["stride"]:  # run below as non-overlapping blocks
                        raise CheckpointError(f"selfie segmentation graph: a transposed convolution whose "
                                              f"kernel {list(w.shape[1:3])} is not its stride {op['stride']}")
                    w = w.permute(3, 0, 1, 2)
                self.consts[op["inputs"][1]] = w.contiguous()
        for k, v in consts.items():
            self.consts.setdefault(k, v)
        self._torch = torch

    def _conv(self, op, x, w, b):
        F = self._torch.nn.functional
        sh, sw = op["stride"]
        dh, dw = op.get("dilation", [1, 1])
        if op["padding"] == "SAME":
            top, bottom = _same_pad(x.shape[2], w.shape[2], sh, dh)
            left, right = _same_pad(x.shape[3], w.shape[3], sw, dw)
            x = F.pad(x, (left, right, top, bottom))
        groups = x.shape[1] if op["op"] == "DEPTHWISE_CONV_2D" else 1
        return F.conv2d(x, w, b, stride=(sh, sw), dilation=(dh, dw), groups=groups)

    def _run(self, x):
        torch = self._torch
        F = torch.nn.functional
        values = dict(self.consts)
        values[self.input] = x
        for op in self.ops:
            name, args = op["op"], [values.get(i) for i in op["inputs"]]
            if any(a is None for a in args):
                raise CheckpointError(f"selfie segmentation graph: operator {name} reads a tensor nothing wrote")
            if name in ("CONV_2D", "DEPTHWISE_CONV_2D"):
                y = self._conv(op, args[0], args[1], args[2] if len(args) > 2 else None)
            elif name == "Convolution2DTransposeBias":  # MediaPipe's op: kernel == stride, no overlap
                sh, sw = op["stride"]
                y = F.conv_transpose2d(args[0], args[1], args[2], stride=(sh, sw))
            elif name == "ADD":
                y = args[0] + args[1]
            elif name == "MUL":
                y = args[0] * args[1]
            elif name == "RELU":
                y = F.relu(args[0])
            elif name == "HARD_SWISH":
                y = F.hardswish(args[0])
            elif name == "LOGISTIC":
                y = torch.sigmoid(args[0])
            elif name == "AVERAGE_POOL_2D":
                y = F.avg_pool2d(args[0], tuple(op["kernel"]), tuple(op["stride"]))
            else:  # RESIZE_BILINEAR with half-pixel centres is PyTorch's align_corners=False
                y = F.interpolate(args[0], size=tuple(op["size"]), mode="bilinear",
                                  align_corners=bool(op.get("align_corners")))
            act = op.get("act", "NONE")
            if act == "RELU":
                y = F.relu(y)
            elif act == "RELU6":
                y = F.relu6(y)
            values[op["outputs"][0]] = y
        return values[self.output]

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        torch = self._torch
        a = np.asarray(rgb, np.float32)
        single = a.ndim == 3
        a = a[None] if single else a
        if a.shape[1:] != (SIDE, SIDE, 3):
            raise ValueError(f"the person segmenter takes {SIDE} x {SIDE} RGB images, got {a.shape[1:]}")
        with torch.inference_mode():
            y = self._run(torch.from_numpy(np.ascontiguousarray(a)).permute(0, 3, 1, 2))
        out = y[:, 0].clamp(0.0, 1.0).numpy().astype(np.float32)
        return out[0] if single else out


_lock = threading.Lock()
_shared: Optional[PersonSegmenter] = None


def person_segmenter() -> PersonSegmenter:
    """The shipped segmenter, loaded once per process (thread-safe)."""
    global _shared
    with _lock:
        if _shared is None:
            _shared = PersonSegmenter()
        return _shared
