"""Deployment: ONNX export (fp32 / fp16), calibrated int8 quantisation and the onnxruntime backend.

* :mod:`cyclekit.export.onnx_export` - one self-contained ``.onnx`` file per generator, dynamic
  batch/height/width, checked and compared with PyTorch;
* :mod:`cyclekit.export.quantize` - static int8 (QDQ, per-channel) calibrated on real images,
  with measured per-layer sensitivity deciding which layers stay in float;
* :mod:`cyclekit.infer.onnx_backend` - ``OrtGenerator``, a drop-in generator for ``translate``,
  ``swap`` and ``serve`` (``--backend onnxruntime``), CPU or CUDA provider.

Nothing here is imported by ``cyclekit --help``; onnx / onnxruntime are optional
(``pip install 'cyclekit[onnx]'``).
"""
