"""The built-in world drawn as pictures (PIL), for the image tower's training and tests. No Ray.

- tables.py: the looks, as data: materials' colours and texture layers, objects' shapes and their
  parameters, the palette.
- draw.py: the drawing code: textures, silhouettes, icons and scenes, and each render's variation
  (`render`, `render_set`, `rendered_entities`).
- captioning.py: each rendered entity's captions, from the world's facts.
"""

from reverie.data.render.captioning import captions
from reverie.data.render.draw import _background, _plain_render, render, render_set, rendered_entities  # noqa: F401  (tests check these two alone)
from reverie.data.render.tables import RENDERED_TYPES, SPLITS

__all__ = ["RENDERED_TYPES", "SPLITS", "captions", "render", "render_set", "rendered_entities"]
