"""Make torchvision importable beside the CPU torch wheel.

The registry's torchvision is a CUDA build: its compiled ops (`torchvision/_C.so`) fail to load
next to CPU torch, and then `import torchvision` dies registering fake kernels for
`torchvision::nms` and `torchvision::qnms`, ops that were never defined. transformers and
open_clip import torchvision when it is installed, so they die too. Defining the two op schemas
first lets the import finish; only the compiled ops (detection boxes, which Reverie never uses)
stay missing. Nothing is done when the compiled ops load or torchvision is absent.

`import reverie` installs an import hook that runs the fix just before torchvision's first import,
in whatever process (a Ray worker, an RLlib env runner) and by whichever library (transformers,
open_clip, pykeen) it comes; until then nothing is imported, torch included.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys
from pathlib import Path

# The schemas torchvision's C++ library would define (torchvision/csrc/ops/nms.cpp, quantized/qnms).
SCHEMAS = {
    "nms": "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms": "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
}
_library = None  # the torch.library.Library that holds the schemas; kept alive for the process


def compiled_ops_path() -> Path | None:
    """torchvision's compiled op library, or None when torchvision is not installed."""
    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations)))
    found = sorted(folder.glob("_C*.so")) + sorted(folder.glob("_C*.pyd"))
    return found[0] if found else None


def needs_fix() -> bool:
    """True when torchvision is installed but its compiled ops cannot load into this torch."""
    if _library is not None or importlib.util.find_spec("torchvision") is None:
        return False
    import torch

    path = compiled_ops_path()
    if path is not None:
        try:
            torch.ops.load_library(str(path))
            return False
        except OSError:
            pass
    return not hasattr(torch.ops.torchvision, "nms")


def ensure_torchvision_importable() -> bool:
    """Define the missing op schemas when needed; returns whether it did. Call before the first
    import of torchvision, transformers or open_clip; calling again is free."""
    global _library
    if not needs_fix():
        return False
    import torch

    _library = torch.library.Library("torchvision", "DEF")
    for schema in SCHEMAS.values():
        _library.define(schema)
    return True


class _FixBeforeTorchvision(importlib.abc.MetaPathFinder):
    """Runs the fix when torchvision is first imported, then finds nothing itself: the usual
    finders import it. (It stays in sys.meta_path: removing a finder while the import system
    iterates that list would skip the next one.)"""

    done = False

    def find_spec(self, name, path=None, target=None):
        if name == "torchvision" and not self.done:
            self.done = True
            ensure_torchvision_importable()
        return None


def install_import_hook() -> None:
    if "torchvision" not in sys.modules and not any(isinstance(f, _FixBeforeTorchvision) for f in sys.meta_path):
        sys.meta_path.insert(0, _FixBeforeTorchvision())
