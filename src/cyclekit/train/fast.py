"""Fast paths for training and inference (issue 5), each switchable, none changing the maths.

What this module decides and sets up, and why (figures: benchmarks/run.py, BENCHMARKS.md):

* **Precision.** ``resolve_precision("auto", device, macs)`` picks bf16 autocast on a CPU with
  native bf16 (AVX512-BF16 or AMX tiles; 2.1-2.7x per training step on the official networks,
  where fp32 eager already runs near the fp32 peak) unless the model is too small to gain
  (:data:`CPU_BF16_MIN_MACS`), bf16 on CUDA GPUs that have it (Ampere and later) and fp16 with a
  gradient scaler on older GPUs; fp32 otherwise. Losses, master weights and optimizer state stay
  fp32 during training. Inference (:func:`prepare_inference_net`) runs NHWC, on CPU with bf16
  weights.
* **Backend flags** (:func:`setup_backend`): cudnn autotuning (the official code sets it too) and
  TF32 matmuls/convolutions on CUDA; nothing on CPU, where PyTorch already uses every core.
* **Optimizers** (:func:`make_optimizers`): the paper's two Adams (both generators jointly, both
  discriminators jointly), fused kernels where the device has them (CPU and CUDA), and for CUDA
  graphs a device-tensor learning rate so that the scheduler can change it between replays.
* **channels_last** (:func:`guard_instance_norm`): works around a PyTorch instance-norm gradient
  bug that channels_last training at batch 1 would otherwise hit.
* **torch.compile** (:mod:`cyclekit.train.compiled`): each network compiled separately, cached on
  disk, falling back to eager with one warning.
* **CUDA graphs** (:mod:`cyclekit.train.graphs`): the whole fixed-shape training step replayed as
  one graph; chosen by :func:`make_step_fn` when ``cuda_graphs`` is on and the step allows it.
"""
from __future__ import annotations

import logging
import os
from typing import Callable, Optional

import torch
from torch import nn

from cyclekit.train.compiled import (  # noqa: F401  (re-exported: the compile fast path)
    CompiledModule, StepNets, compile_for_inference, compile_nets, ensure_compile_cache,
)

log = logging.getLogger(__name__)

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


# ---------------------------------------------------------------------- precision
def cpu_has_fast_bf16() -> bool:
    """True when this CPU computes bf16 natively (AVX512-BF16 or AMX tiles) through oneDNN.

    Without those instructions bf16 is emulated and slower than fp32. ``CYCLEKIT_CPU_BF16=0/1``
    overrides the detection (e.g. to compare both on one machine).
    """
    env = os.environ.get("CYCLEKIT_CPU_BF16", "").strip()
    if env in ("0", "1"):
        return env == "1"
    cpu = getattr(torch, "cpu", None)
    native = False
    for probe in ("_is_amx_tile_supported", "_is_avx512_bf16_supported"):
        fn = getattr(cpu, probe, None)
        try:
            native = native or bool(fn and fn())
        except Exception:  # pragma: no cover - very old torch or unusual build
            pass
    if not native:
        return False
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except Exception:  # pragma: no cover
        return False


def cuda_has_bf16(device: Optional[torch.device] = None) -> bool:
    """Native bf16 tensor cores: compute capability 8.0 (Ampere) or later."""
    if not torch.cuda.is_available():
        return False
    major, _ = torch.cuda.get_device_capability(device)
    return major >= 8


# Below this many generator multiply-accumulates per forward pass (batch included), bf16 does
# not pay on CPU: converting and re-laying out tensors costs more than the faster convolutions
# save. Measured per training step against fp32 (2 cores, AMX): ResNet-6 ngf 16 @ 32 px (0.04
# GMAC) 0.77x; ngf 32 @ 32 (0.14) 0.95x / 1.08x; ngf 16 @ 64 (0.15) 1.10x / 1.05x; ngf 32 @ 64
# (0.57, the quickstart) 1.30x / 1.02x; ResNet-9 ngf 64 @ 128 (12.4) 2.3x.
CPU_BF16_MIN_MACS = 0.2e9


def resolve_precision(precision: str, device: torch.device, macs: Optional[float] = None) -> str:
    """``auto`` -> the fastest safe precision for ``device``; the others are checked and returned.

    CPU: bf16 when the CPU has native bf16 (see :func:`cpu_has_fast_bf16`) and the work is big
    enough to gain from it (``macs``: generator multiply-accumulates per forward pass, see
    :func:`generator_macs`; unknown = big enough), else fp32.
    CUDA: bf16 on Ampere or later, else fp16 (trained with a gradient scaler). Others: fp32.
    """
    from cyclekit.errors import ConfigError

    device = torch.device(device)
    if precision not in PRECISIONS:
        raise ConfigError(f"--precision: {precision!r} is not one of {', '.join(PRECISIONS)}")
    if precision == "auto":
        if device.type == "cuda":
            return "bf16" if cuda_has_bf16(device) else "fp16"
        if device.type == "cpu":
            small = macs is not None and macs < CPU_BF16_MIN_MACS
            return "bf16" if cpu_has_fast_bf16() and not small else "fp32"
        return "fp32"
    if precision == "fp16" and device.type != "cuda":
        raise ConfigError("--precision fp16 needs a CUDA GPU; use bf16 (or auto) on CPU")
    if precision == "bf16" and device.type == "cpu" and not cpu_has_fast_bf16():
        log.warning("this CPU has no native bf16 (AVX512-BF16/AMX): bf16 will be slower than fp32")
    return precision


def precision_dtype(precision: str, device: torch.device, macs: Optional[float] = None) -> Optional[torch.dtype]:
    """The autocast dtype for ``precision`` on ``device`` (None = plain fp32)."""
    return _DTYPES[resolve_precision(precision, device, macs)]


def generator_macs(model_cfg, batch: int = 1, size: Optional[int] = None) -> Optional[float]:
    """Multiply-accumulates of one generator forward pass on ``batch`` images of ``size`` px
    (default: the model's ``image_size``), counted on the meta device (no memory, ~10 ms)."""
    try:
        from cyclekit.nn import build_generator, count_macs

        with torch.device("meta"):
            net = build_generator(model_cfg)
        side = int(size or model_cfg.image_size)
        return float(count_macs(net, (batch, model_cfg.in_channels, side, side)))
    except Exception as exc:  # an exotic config: fall back to "big enough"
        log.debug("could not count generator MACs: %s", exc)
        return None


def inference_plan(precision: str, device: torch.device, macs: Optional[float] = None) -> tuple[Optional[torch.dtype], bool]:
    """(autocast dtype, channels_last) for translating with ``precision`` on ``device``.

    Reduced precision runs NHWC, the layout oneDNN's bf16 (AMX) and cuDNN's tensor-core
    convolutions work in (on the CPU here: ResNet-9 @ 256 with bf16 weights 2.94x over fp32 NHWC,
    2.89x NCHW). fp32 stays NCHW. (Inference has no backward, so the instance-norm gradient issue
    of :func:`guard_instance_norm` does not arise.)
    """
    dtype = precision_dtype(precision, device, macs)
    return dtype, dtype is not None


def prepare_inference_net(net: nn.Module, precision: str, device: torch.device, compile: bool = False,
                          macs: Optional[float] = None) -> tuple[nn.Module, Optional[torch.dtype], bool]:
    """An eval-mode generator set up for fast inference: ``(net, autocast dtype, channels_last)``.

    Follows :func:`inference_plan`. On CPU, bf16 runs without autocast: the weights are stored
    in bf16 and :class:`CastInputs` converts each batch (autocast would cast all ~11M weights
    again on every call, its cast cache being off under ``inference_mode``, and its dispatch costs
    ~8% more; measured 2.7x instead of 2.4x over fp32 for ResNet-9 @ 256). The arithmetic is the
    same: autocast runs every layer of these generators in bf16 too. The returned autocast dtype
    is then None; ``net.compute_dtype`` says what runs. ``compile=True`` compiles with frozen
    weights (:func:`compile_for_inference`).
    """
    device = torch.device(device)
    dtype, channels_last = inference_plan(precision, device, macs)
    compute = dtype or torch.float32
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    if dtype is torch.bfloat16 and device.type == "cpu":
        net, dtype = CastInputs(net.to(torch.bfloat16), torch.bfloat16), None
    if compile:
        net = compile_for_inference(net)
    net.compute_dtype = compute
    return net, dtype, channels_last


class CastInputs(nn.Module):
    """Run ``net`` (weights already in ``dtype``) on inputs converted to ``dtype``."""

    def __init__(self, net: nn.Module, dtype: torch.dtype) -> None:
        super().__init__()
        self.net, self.compute_dtype = net, dtype
        self.size_multiple = getattr(net, "size_multiple", 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.to(self.compute_dtype))


# ---------------------------------------------------------------------- backend flags
def setup_backend(device: torch.device) -> None:
    """Process-wide speed flags that do not change the training maths beyond TF32 rounding.

    CUDA: ``cudnn.benchmark`` (the official code sets it; our shapes are fixed, so autotuning
    pays off after the first step) and TF32 for matmuls and convolutions (PyTorch already
    defaults convolutions to TF32; the networks have no matmuls to speak of).
    """
    if torch.device(device).type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.set_float32_matmul_precision("high")


# ---------------------------------------------------------------------- optimizers
def supports_fused_adam(device: torch.device) -> bool:
    """Fused Adam kernels exist for CPU and CUDA tensors (PyTorch 2.4+)."""
    return torch.device(device).type in ("cpu", "cuda") and torch.__version__ >= "2.4"


def make_optimizers(nets: nn.Module, cfg, device: torch.device, fused: Optional[bool] = None,
                    cuda_graphs: bool = False) -> tuple[torch.optim.Adam, torch.optim.Adam]:
    """The paper's two Adams (lr, betas from ``cfg``): G_AB+G_BA jointly and D_A+D_B jointly.

    ``fused=None`` uses the fused kernel where the device has one (one kernel per step instead
    of a Python loop over ~100 parameter tensors). ``cuda_graphs=True`` makes the optimizers
    capturable, with the learning rate a device tensor that LR schedulers update in place.
    Mathematically the same update as the official per-parameter Adam.
    """
    import itertools

    device = torch.device(device)
    if fused is None:
        fused = supports_fused_adam(device)
    kwargs: dict = dict(lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))
    if fused:
        kwargs["fused"] = True
    elif device.type == "cuda":
        kwargs["foreach"] = True
    if cuda_graphs:
        kwargs["capturable"] = True
    groups = (
        itertools.chain(nets.G_AB.parameters(), nets.G_BA.parameters()),
        itertools.chain(nets.D_A.parameters(), nets.D_B.parameters()),
    )
    opts = []
    for params in groups:
        lr = torch.tensor(cfg.lr, device=device) if cuda_graphs else cfg.lr
        opt = torch.optim.Adam(params, **{**kwargs, "lr": lr})
        opt.register_load_state_dict_post_hook(_keep_kernel_choice(kwargs, device if cuda_graphs else None))
        opts.append(opt)
    return opts[0], opts[1]


def _keep_kernel_choice(kwargs: dict, lr_device: Optional[torch.device]):
    """``Optimizer.load_state_dict`` restores the saved groups' fused/foreach/capturable flags and
    lr type too; keep this run's choice instead (a checkpoint may come from another device or
    mode), and move the step counters where that choice wants them."""
    flags = {k: kwargs.get(k, None if k != "capturable" else False) for k in ("fused", "foreach", "capturable")}

    def hook(opt: torch.optim.Optimizer) -> None:
        for group in opt.param_groups:
            group.update(flags)
            for key in ("lr", "initial_lr"):
                if key in group:
                    value = float(group[key])
                    group[key] = torch.tensor(value, device=lr_device) if lr_device is not None else value
            on_device = bool(flags["fused"] or flags["capturable"])
            for p in group["params"]:
                st = opt.state.get(p, {})
                if torch.is_tensor(st.get("step")):
                    st["step"] = st["step"].to(p.device if on_device else "cpu", torch.float32)

    return hook


# ---------------------------------------------------------------------- channels_last
def _contiguous_grad(grad: torch.Tensor) -> torch.Tensor:
    return grad.contiguous()


def _instance_norm_grad_hook(module: nn.Module, inputs, output: torch.Tensor) -> None:
    if output.requires_grad:
        output.register_hook(_contiguous_grad)


def guard_instance_norm(module: nn.Module) -> int:
    """Make every instance norm in ``module`` receive NCHW-contiguous output gradients.

    PyTorch 2.13 on CPU computes wrong input gradients in ``instance_norm``'s backward when the
    batch has one image and the incoming gradient is channels_last (which is what the following
    channels_last convolution sends back): off by more than the gradient's own size, in float64
    too. Forward is unaffected; batch norm and batches of 2+ are unaffected. Converting that
    gradient to the standard layout first gives the correct result (checked in
    tests/test_fast_paths.py). Returns the number of layers guarded; idempotent.
    """
    n = 0
    for m in module.modules():
        if isinstance(m, nn.modules.instancenorm._InstanceNorm) and not getattr(m, "_cyclekit_guarded", False):
            m.register_forward_hook(_instance_norm_grad_hook)
            m._cyclekit_guarded = True
            n += 1
    return n


# ---------------------------------------------------------------------- the step
def cuda_graphs_blockers(state, cfg, device: torch.device) -> list[str]:
    """Why the training step cannot be captured as a CUDA graph here ([] = it can)."""
    why = []
    if torch.device(device).type != "cuda":
        why.append("no CUDA device")
    if state.scaler is not None:
        why.append("fp16 needs a gradient scaler, whose inf check syncs with the host (use bf16)")
    if getattr(state, "grad_sync", None) is not None:
        why.append("multi-process gradient all-reduce")
    if state.gan_loss.mode == "wgangp":
        why.append("the WGAN-GP penalty (double backward)")
    for opt in (state.opt_G, state.opt_D):
        if not all(g.get("capturable") for g in opt.param_groups):
            why.append("optimizers not built capturable (fast.make_optimizers(..., cuda_graphs=True))")
            break
    return why


def make_step_fn(state, cfg, device: torch.device) -> Callable:
    """The training-step callable ``fn(state, real_A, real_B, cfg) -> losses`` for this config.

    With ``cfg.compile`` the networks in ``state`` are replaced by compiled views (the trainer's
    own modules, which it saves, are not touched). With ``cfg.cuda_graphs`` on a GPU the step is
    captured as a CUDA graph after a few eager warm-up steps; when that is impossible the reason
    is logged and the eager step is used.
    """
    from cyclekit.train.step import train_step

    if getattr(cfg, "channels_last", False):
        guard_instance_norm(state.nets)
    if getattr(cfg, "compile", False):
        state.nets = compile_nets(state.nets)
    if getattr(cfg, "cuda_graphs", False):
        blockers = cuda_graphs_blockers(state, cfg, device)
        if blockers:
            log.warning("CUDA graphs off: %s", "; ".join(blockers))
        else:
            from cyclekit.train.graphs import GraphedStep

            return GraphedStep(state)
    return train_step
