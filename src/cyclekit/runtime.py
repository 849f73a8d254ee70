"""Where and how tensors compute: device, precision, threads, backend flags and torch.compile.

One place decides these for training, inference, evaluation and serving (figures behind the
choices: ``benchmarks/run.py``, BENCHMARKS.md):

* **Device** (:func:`pick_device`): ``auto`` is the GPU when CUDA is available, else the CPU.
* **Precision** (:func:`resolve_precision`): ``auto`` picks bf16 autocast on a CPU with native
  bf16 (AVX512-BF16 or AMX tiles) unless the model is too small to gain
  (:data:`CPU_BF16_MIN_MACS`), bf16 on CUDA GPUs that have it (Ampere and later) and fp16 with a
  gradient scaler on older GPUs; fp32 otherwise (a CPU without native bf16 only emulates it).
  Losses, master weights and optimizer state stay fp32 during training. Inference
  (:func:`prepare_inference_net`) runs reduced precision NHWC, on CPU with bf16 weights; on a
  GPU with TF32 its ``auto`` is fp32 (:func:`inference_plan`).
* **Backend flags** (:func:`setup_backend`): cudnn autotuning and TF32 on CUDA; nothing on CPU.
* **torch.compile** (:class:`CompiledModule`): each network compiled on its own, its generated code
  cached on disk under ``~/.cache/cyclekit/inductor`` unless ``TORCHINDUCTOR_CACHE_DIR`` is set;
  if compiling fails (no C++ compiler, an unsupported operation) one warning is logged and the
  network runs eagerly with the same results. Wrappers share the wrapped modules' parameters, so
  checkpoints keep their plain keys.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Optional

import torch
from torch import nn

from cyclekit.config import CHOICES
from cyclekit.errors import ConfigError

log = logging.getLogger(__name__)

PRECISIONS = CHOICES["precision"]
_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


# ---------------------------------------------------------------------- device and threads
def pick_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; ``cuda`` without a GPU is a one-line error."""
    if name not in CHOICES["device"]:
        raise ConfigError(f"--device: {name!r} is not one of {', '.join(CHOICES['device'])}")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda was asked for but no CUDA GPU is available; use --device cpu")
    return torch.device(name)


def set_threads(threads: int) -> None:
    """Use ``threads`` CPU threads for torch (0 = leave PyTorch's default: one per core).

    With the default, warns when other jobs already keep cores busy: torch's OpenMP threads
    spin-wait for each other, and one that shares its core with another process stalls them all
    (BENCHMARKS.md, "Timings behind code choices": 2 threads on 2 cores, one of them busy,
    trained 5x to 18x slower than 1 thread)."""
    if threads > 0:
        torch.set_num_threads(threads)
        return
    busy = busy_cores()
    n = torch.get_num_threads()
    if busy >= 1 and n > 1 and n + busy > (os.cpu_count() or n):
        log.warning("about %d of %d CPU cores are busy with other jobs; torch's %d threads would "
                    "wait on each other there: pass --threads %d for a much faster run", busy, os.cpu_count() or n,
                    n, max(1, (os.cpu_count() or n) - busy))


def busy_cores(window: float = 0.2) -> int:
    """Cores other processes keep busy right now: the non-idle share of all cores over ``window``
    seconds from ``/proc/stat``, rounded (0 where there is no ``/proc/stat``). Sampled while this
    process is idle, so it counts only the others."""
    import time

    def sample() -> tuple[int, int]:
        with open("/proc/stat", encoding="ascii") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
        return sum(fields), fields[3] + (fields[4] if len(fields) > 4 else 0)  # total, idle + iowait

    try:
        t0, i0 = sample()
        time.sleep(window)
        t1, i1 = sample()
    except (OSError, ValueError, IndexError):
        return 0
    if t1 <= t0:
        return 0
    return int(round((1.0 - (i1 - i0) / (t1 - t0)) * (os.cpu_count() or 1)))


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
# save (the measurements behind the threshold: BENCHMARKS.md, "Timings behind code choices").
CPU_BF16_MIN_MACS = 0.2e9


def resolve_precision(precision: str, device: torch.device, macs: Optional[float] = None) -> str:
    """``auto`` -> the fastest safe precision for ``device``; the others are checked and returned.

    CPU: bf16 when the CPU has native bf16 (see :func:`cpu_has_fast_bf16`) and the work is big
    enough to gain from it (``macs``: generator multiply-accumulates per forward pass, see
    :func:`generator_macs`; unknown = big enough), else fp32.
    CUDA: bf16 on Ampere or later, else fp16 (trained with a gradient scaler). Others: fp32.
    """
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
    (default: the model's ``image_size``), counted on the meta device (no memory)."""
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
    convolutions work in; fp32 stays NCHW. (Inference has no backward, so the instance-norm
    gradient issue of channels_last training does not arise.) ``auto`` on a GPU with TF32
    (Ampere and later) is fp32 NCHW: on an H200 bf16 autocast ran these generators at 0.77-0.83x
    of fp32 one image at a time and no faster in batches of 64 (BENCHMARKS.md, session 33).
    """
    device = torch.device(device)
    if precision == "auto" and device.type == "cuda" and cuda_has_bf16(device):
        return None, False
    dtype = precision_dtype(precision, device, macs)
    return dtype, dtype is not None


def prepare_inference_net(net: nn.Module, precision: str, device: torch.device, compile: bool = False,
                          macs: Optional[float] = None) -> tuple[nn.Module, Optional[torch.dtype], bool]:
    """An eval-mode generator set up for fast inference: ``(net, autocast dtype, channels_last)``.

    Follows :func:`inference_plan`. On CPU, bf16 runs without autocast: the weights are stored
    in bf16 and :class:`CastInputs` converts each batch (autocast would cast all the weights
    again on every call, its cast cache being off under ``inference_mode``, and its dispatch
    costs more). The arithmetic is the same: autocast runs every layer of these generators in
    bf16 too. The returned autocast dtype
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
    """Process-wide speed flags that do not change the maths beyond TF32 rounding.

    CUDA: ``cudnn.benchmark`` (the official code sets it; our shapes are fixed, so autotuning
    pays off after the first step) and TF32 for matmuls and convolutions.
    """
    if torch.device(device).type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.set_float32_matmul_precision("high")


# ---------------------------------------------------------------------- torch.compile


def ensure_compile_cache() -> Path:
    """Point Inductor's on-disk cache at ``~/.cache/cyclekit/inductor`` unless the user chose one."""
    if not os.environ.get("TORCHINDUCTOR_CACHE_DIR"):
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(base / "cyclekit" / "inductor")
    path = Path(os.environ["TORCHINDUCTOR_CACHE_DIR"])
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # read-only home: Inductor falls back to its own temp dir
        log.debug("cannot create the compile cache %s: %s", path, exc)
    return path


_warned_compile = False


def _warn_compile_failed(name: str, exc: BaseException) -> None:
    global _warned_compile
    msg = "torch.compile failed for %s (%s: %s); running it eagerly (same results, no speed-up)"
    first_line = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
    if not _warned_compile:
        _warned_compile = True
        log.warning(msg, name, type(exc).__name__, first_line)
    else:
        log.info(msg, name, type(exc).__name__, first_line)


class CompiledModule(nn.Module):
    """``module`` called through ``torch.compile``, or eagerly once compiling has failed.

    The compiled function is built lazily by PyTorch at the first call, so that is where a
    missing compiler or an unsupported operation shows up: the call is then retried eagerly,
    one warning is logged, and the wrapper stays eager. (An error the eager module raises too,
    e.g. a wrong input size, is raised as is.) ``_orig_mod`` is the wrapped module, as for
    ``torch.compile``, so :func:`cyclekit.release.unwrap` finds it.
    """

    def __init__(self, module: nn.Module, name: str = "", **compile_kwargs) -> None:
        super().__init__()
        self._orig_mod = module
        self.name = name or type(module).__name__
        self.failed = False
        compiled = None
        try:
            ensure_compile_cache()
            compiled = torch.compile(module, **compile_kwargs)
        except Exception as exc:  # torch.compile itself unavailable (e.g. unsupported Python)
            self.failed = True
            _warn_compile_failed(self.name, exc)
        object.__setattr__(self, "_compiled", compiled)  # not a registered submodule

    def forward(self, *args, **kwargs):
        if not self.failed:
            try:
                return self._compiled(*args, **kwargs)
            except Exception as exc:
                try:
                    out = self._orig_mod(*args, **kwargs)
                except Exception:
                    raise  # the eager module fails too: a real error, not a compiler problem
                self.failed = True
                _warn_compile_failed(self.name, exc)
                return out
        return self._orig_mod(*args, **kwargs)


class StepNets(nn.Module):
    """The four networks as seen by ``train_step`` (compiled views); the originals stay untouched."""

    def __init__(self, G_AB: nn.Module, G_BA: nn.Module, D_A: nn.Module, D_B: nn.Module) -> None:
        super().__init__()
        self.G_AB, self.G_BA, self.D_A, self.D_B = G_AB, G_BA, D_A, D_B


def compile_nets(nets: nn.Module, **compile_kwargs) -> StepNets:
    """Compiled views of ``nets.G_AB``, ``G_BA``, ``D_A``, ``D_B`` sharing their parameters."""
    return StepNets(*(CompiledModule(getattr(nets, n), name=n, **compile_kwargs)
                      for n in ("G_AB", "G_BA", "D_A", "D_B")))


def compile_for_inference(net: nn.Module, name: str = "generator") -> nn.Module:
    """An eval-mode generator compiled with weight freezing (constant-folded, prepacked
    convolutions), with the same eager fallback; for :class:`cyclekit.infer.translator.Translator`."""
    import torch._inductor.config as inductor_config

    inductor_config.freezing = True  # only affects graphs compiled under no_grad/inference_mode
    return CompiledModule(net, name=name)
