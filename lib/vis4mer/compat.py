"""Import timm on a CPU-only torch build.

timm imports torchvision, and the torchvision release that matches torch 2.13
(0.28.0) is only published as a CUDA build. Imported next to a CPU build of torch
it fails at import time with ``RuntimeError: operator torchvision::nms does not
exist``: ``torchvision/_meta_registrations.py`` registers fake (meta) kernels for
the operators its compiled extension would have defined, and the CUDA extension
cannot load against CPU torch, so those operators were never declared.

Declaring the missing operator *schemas* (no kernels) under the ``torchvision``
namespace before the import lets those registrations succeed. Everything timm
uses from torchvision (pure-Python transforms) then works; torchvision's compiled
ops (nms, roi_align, ...) and its image/video I/O stay unusable, and calling them
raises torch's usual "no kernel" error instead of failing silently.

The shim is applied only when torch is a CPU build *and* the plain import fails
for exactly this reason, so it never touches a working (CUDA) installation.
"""

from __future__ import annotations

import re
import sys
import types

import torch

from vis4mer._logging import log_once

# Schemas of the operators torchvision/_meta_registrations.py registers with
# torch.library.register_fake (everything else there goes through its
# `register_meta`, which is skipped when the extension is missing). Found by
# importing torchvision 0.28.0 against torch 2.13.0+cpu and reading the errors.
_MISSING_OP_SCHEMAS = {
    "nms": "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms": "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
}
_MISSING_OP_ERROR = re.compile(r"operator torchvision::(\w+) does not exist")

# The Library object must stay alive: its registrations are removed when it is
# garbage collected.
_shim_library: torch.library.Library | None = None


def _is_cpu_torch() -> bool:
    return torch.version.cuda is None and getattr(torch.version, "hip", None) is None


def _forget_torchvision_modules() -> None:
    """Drop half-imported torchvision modules so the retry re-executes them."""
    for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        del sys.modules[name]


def _define_missing_torchvision_ops() -> None:
    global _shim_library
    if _shim_library is not None:
        return
    library = torch.library.Library("torchvision", "DEF")
    for schema in _MISSING_OP_SCHEMAS.values():
        library.define(schema)
    _shim_library = library
    log_once(
        "compat",
        "torch is a CPU build and torchvision is not: declared torchvision::nms/qnms "
        "schemas so timm can import (torchvision's compiled ops stay unavailable)",
    )


def ensure_torchvision_importable() -> None:
    """Import torchvision, declaring the missing operator schemas first if needed.

    Also needed by torchcodec's decoder transforms, which import torchvision.
    """
    try:
        import torchvision  # noqa: F401
    except RuntimeError as error:
        match = _MISSING_OP_ERROR.search(str(error))
        if not (_is_cpu_torch() and match and match.group(1) in _MISSING_OP_SCHEMAS):
            raise
        _forget_torchvision_modules()
        _define_missing_torchvision_ops()
        import torchvision  # noqa: F401


def import_timm() -> types.ModuleType:
    """Return the timm module, first making torchvision importable on CPU torch.

    Idempotent: later calls return the already imported module.
    """
    if "timm" in sys.modules:
        return sys.modules["timm"]
    ensure_torchvision_importable()
    import timm

    return timm
