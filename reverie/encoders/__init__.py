"""Encoders: text (MiniLM). Torch only, no Ray."""

from reverie.encoders.text import TextEncoder

__all__ = ["TextEncoder"]
