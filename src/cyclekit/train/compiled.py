"""torch.compile with a disk cache and an eager fallback (issue 5).

Each network is compiled on its own (Inductor), its generated code cached on disk under
``~/.cache/cyclekit/inductor`` unless ``TORCHINDUCTOR_CACHE_DIR`` is set (a second run starts in
seconds instead of a minute or two on a small CPU). If compiling fails (no C++ compiler, an
unsupported operation, an old Python) one warning is logged and the network runs eagerly, with
the same results. The wrappers share the wrapped modules' parameters, so nothing needs copying
back and checkpoints keep their plain keys.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

import torch
from torch import nn

log = logging.getLogger(__name__)


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
    ``torch.compile``, so :func:`cyclekit.checkpoint.unwrap` finds it.
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
    convolutions), with the same eager fallback; for :class:`cyclekit.translate.Translator`."""
    import torch._inductor.config as inductor_config

    inductor_config.freezing = True  # only affects graphs compiled under no_grad/inference_mode
    return CompiledModule(net, name=name)
