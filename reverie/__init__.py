"""Reverie: a reasoning sandbox on Ray."""
from reverie.torchvision_fix import install_import_hook

install_import_hook()  # before any library imports torchvision (see torchvision_fix.py)
