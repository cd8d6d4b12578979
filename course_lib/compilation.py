"""torch.compile where it works, eager where it does not: one warning, and training goes on.

    forward = CompiledOrEager(model)        # call it like the model; model.state_dict() is unchanged

Inductor compiles on the first call, and fails there where CUDA exists without a working Triton (older
GPUs, some platforms) or a CPU has no C++ compiler. A learner's run should not die of an optimisation:
the first failure to compile is reported once, as a warning that says why and what is lost (speed only),
and from then on the model runs eagerly. Errors of the model itself are not compile failures and still
raise.
"""

from __future__ import annotations

import warnings
from typing import Any, Callable

import torch
from torch import nn


class CompiledOrEager:
    """Calls `torch.compile(module)`; on a backend failure, warns once and calls `module` from then on."""

    def __init__(self, module: nn.Module, backend: str | Callable = "inductor"):
        self.module = module
        self.compiled: Callable | None = torch.compile(module, backend=backend)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.compiled is not None:
            try:
                return self.compiled(*args, **kwargs)
            except torch._dynamo.exc.BackendCompilerFailed as exc:
                self.compiled = None
                reason = " ".join(str(exc).split())[:300]
                warnings.warn(f"torch.compile failed on this machine, so the model runs without it (only slower): "
                              f"{reason}. Set compile=False in the config to skip the attempt.", RuntimeWarning,
                              stacklevel=2)
        return self.module(*args, **kwargs)


__all__ = ["CompiledOrEager"]
