"""Inference: :mod:`.translator` (a generator ready to translate any image size, PyTorch or
onnxruntime) and :mod:`.stream` (images, folders and globs, streamed in bounded memory).
Nothing in this package imports training code."""
