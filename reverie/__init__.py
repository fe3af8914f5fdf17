"""Reverie: a reasoning sandbox on Ray. `from reverie import Reverie` is the Python API (api.py)."""

from reverie.torchvision_fix import install_import_hook

install_import_hook()  # before any library imports torchvision (see torchvision_fix.py)


def __getattr__(name: str):
    # Loaded on first use: `import reverie` (every module of the package does it) stays light.
    if name == "Reverie":
        from reverie.api import Reverie

        return Reverie
    raise AttributeError(f"module 'reverie' has no attribute {name!r}")


__all__ = ["Reverie"]
