"""Training on many processes (:mod:`.ddp`, :mod:`.syncbn`) and CUDA-graph replay (:mod:`.graphs`)."""
