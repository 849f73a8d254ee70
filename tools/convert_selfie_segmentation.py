"""Turn MediaPipe's selfie segmentation model (a ``.tflite`` file) into the files cyclekit ships.

The model (Apache 2.0, 250 KB) lies in the ``mediapipe`` wheel at
``mediapipe/modules/selfie_segmentation/selfie_segmentation.tflite``. cyclekit runs it with PyTorch
(:mod:`cyclekit.faces.person`), so it needs neither TensorFlow Lite nor MediaPipe at run time. This
script, run once by a maintainer, reads the flatbuffer with the ``tflite`` package and writes:

* ``graph.json``: the operators in order, each with its input and output tensor numbers and its
  options (padding, strides, activation, sizes);
* ``model.safetensors``: the constant tensors (the weights, float16 as in the file; the
  ``DEQUANTIZE`` operators that turn them into float32 are folded away here).

    pip install tflite==2.18.0
    python tools/convert_selfie_segmentation.py selfie_segmentation.tflite src/cyclekit/faces/models/selfie_segmentation
"""
from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np


def convert(src: Path, out: Path) -> None:
    import tflite
    from safetensors.numpy import save_file
    from tflite.BuiltinOperator import BuiltinOperator
    from tflite.Padding import Padding

    opnames = {v: k for k, v in vars(BuiltinOperator).items() if not k.startswith("_")}
    padnames = {v: k for k, v in vars(Padding).items() if not k.startswith("_")}
    acts = {0: "NONE", 1: "RELU", 3: "RELU6"}
    raw = src.read_bytes()
    model = tflite.Model.GetRootAsModel(raw, 0)
    graph = model.Subgraphs(0)

    def data(index: int):
        t = graph.Tensors(index)
        buf = model.Buffers(t.Buffer()).DataAsNumpy()
        if isinstance(buf, int) or buf.size == 0:
            return None
        dtype = {0: np.float32, 1: np.float16, 2: np.int32}[t.Type()]
        return np.frombuffer(buf.tobytes(), dtype=dtype).reshape(t.ShapeAsNumpy())

    consts: dict[str, np.ndarray] = {}
    ops = []
    for j in range(graph.OperatorsLength()):
        op = graph.Operators(j)
        code = model.OperatorCodes(op.OpcodeIndex())
        name = opnames[max(code.BuiltinCode(), code.DeprecatedBuiltinCode())]
        ins, outs = [int(i) for i in op.InputsAsNumpy()], [int(i) for i in op.OutputsAsNumpy()]
        for i in ins:
            value = data(i)
            if value is not None and value.dtype != np.int32:
                consts[str(i)] = np.ascontiguousarray(value)
        if name == "DEQUANTIZE":  # fp16 weights -> float32: kept as float16, widened at load
            consts[str(outs[0])] = consts.pop(str(ins[0]))
            continue
        opts: dict = {}
        if name in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            cls = tflite.Conv2DOptions if name == "CONV_2D" else tflite.DepthwiseConv2DOptions
            o = cls()
            o.Init(op.BuiltinOptions().Bytes, op.BuiltinOptions().Pos)
            opts = dict(padding=padnames[o.Padding()], stride=[o.StrideH(), o.StrideW()],
                        dilation=[o.DilationHFactor(), o.DilationWFactor()], act=acts[o.FusedActivationFunction()])
        elif name in ("ADD", "MUL"):
            o = tflite.AddOptions() if name == "ADD" else tflite.MulOptions()
            o.Init(op.BuiltinOptions().Bytes, op.BuiltinOptions().Pos)
            opts = dict(act=acts[o.FusedActivationFunction()])
        elif name == "AVERAGE_POOL_2D":
            o = tflite.Pool2DOptions()
            o.Init(op.BuiltinOptions().Bytes, op.BuiltinOptions().Pos)
            opts = dict(padding=padnames[o.Padding()], stride=[o.StrideH(), o.StrideW()],
                        kernel=[o.FilterHeight(), o.FilterWidth()], act=acts[o.FusedActivationFunction()])
        elif name == "RESIZE_BILINEAR":
            o = tflite.ResizeBilinearOptions()
            o.Init(op.BuiltinOptions().Bytes, op.BuiltinOptions().Pos)
            opts = dict(size=[int(v) for v in data(ins[1])], align_corners=bool(o.AlignCorners()),
                        half_pixel_centers=bool(o.HalfPixelCenters()))
            ins = ins[:1]
        elif name == "CUSTOM":
            name = code.CustomCode().decode()
            require_custom = {"Convolution2DTransposeBias"}
            if name not in require_custom:
                sys.exit(f"unsupported custom operator {name}")
            padding, sw, sh = np.frombuffer(op.CustomOptionsAsNumpy().tobytes(), np.int32)
            opts = dict(padding={1: "SAME", 2: "VALID"}[int(padding)], stride=[int(sh), int(sw)])
        ops.append(dict(op=name, inputs=ins, outputs=outs, **opts))
    shapes = {str(i): [int(v) for v in graph.Tensors(i).ShapeAsNumpy()]
              for i in [int(graph.Inputs(0)), int(graph.Outputs(0))]}
    doc = dict(format="cyclekit-op-graph/1", source=src.name, source_sha256=hashlib.sha256(raw).hexdigest(),
               input=int(graph.Inputs(0)), output=int(graph.Outputs(0)), shapes=shapes, ops=ops)
    out.mkdir(parents=True, exist_ok=True)
    (out / "graph.json").write_text(json.dumps(doc, indent=1) + "\n")
    save_file(consts, str(out / "model.safetensors"))
    print(f"{len(ops)} operators, {len(consts)} constants -> {out}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    convert(Path(sys.argv[1]), Path(sys.argv[2]))
