"""Tests for the synthetic world renderer (reverie.data.render); fast, no Ray."""

from __future__ import annotations

import random

import numpy as np
import pytest
from PIL import Image

from reverie.data import render as R
from reverie.data.world import MATERIALS, PROPERTIES, build_world


@pytest.fixture(scope="module")
def entities() -> list[tuple[str, str]]:
    return R.rendered_entities()


@pytest.fixture(scope="module")
def caps() -> dict[str, list[str]]:
    return R.captions()


def test_render_is_deterministic_rgb_of_requested_size():
    a = R.render("glass cup", "object", 5)
    b = R.render("glass cup", "object", 5)
    assert a.mode == "RGB" and a.size == (64, 64)
    assert a.tobytes() == b.tobytes()
    small = R.render("brittle", "property", 1, "held-out", size=32)
    assert small.mode == "RGB" and small.size == (32, 32)
    assert small.tobytes() == R.render("brittle", "property", 1, "held-out", size=32).tobytes()


def test_seeds_and_splits_change_the_render():
    base = R.render("steel fork", "object", 0).tobytes()
    assert R.render("steel fork", "object", 1).tobytes() != base
    assert R.render("steel fork", "object", 0, "held-out").tobytes() != base


@pytest.mark.parametrize(
    "args",
    [
        ("kitchen", "place", 0, "train", 64),  # a type that is not rendered
        ("glass cup", "gadget", 0, "train", 64),
        ("glass cup", "object", 0, "test", 64),  # unknown split
        ("glass cup", "object", 0, "train", 15),  # too small
        ("glass cup", "object", 0, "train", 8),
        ("glass", "object", 0, "train", 64),  # a world material asked for as an object
    ],
)
def test_bad_arguments_raise_value_error(args):
    with pytest.raises(ValueError):
        R.render(*args)


def test_rendered_entities_are_exactly_the_rendered_types(entities):
    world, _ = build_world()
    expected = [(e.name, e.type) for e in world if e.type in R.RENDERED_TYPES]
    assert entities == expected
    assert {t for _, t in entities} == set(R.RENDERED_TYPES)
    assert {n for n, t in entities if t == "material"} == set(MATERIALS)
    assert {n for n, t in entities if t == "property"} == set(PROPERTIES)
    assert not [e for e in world if e.type not in R.RENDERED_TYPES and (e.name, e.type) in set(entities)]


def test_render_set_counts_and_names(entities):
    images, names = R.render_set(3, names=["steel spoon", "glass", "shatters"], size=16)
    assert names == ["steel spoon"] * 3 + ["glass"] * 3 + ["shatters"] * 3
    assert len(images) == 9 and all(im.size == (16, 16) and im.mode == "RGB" for im in images)
    assert len({im.tobytes() for im in images}) == 9  # every render of an entity differs
    images, names = R.render_set(1, size=16)
    assert names == [n for n, _ in entities] and len(images) == len(entities)
    with pytest.raises(ValueError):
        R.render_set(1, names=["kitchen"])


def test_captions_cover_every_entity_from_the_facts(entities, caps):
    assert set(caps) == {n for n, _ in entities}
    for name, lines in caps.items():
        assert 3 <= len(lines) <= 6, (name, lines)
        assert name in lines[0], (name, lines)
        assert len(set(lines)) == len(lines)
    assert caps["glass cup"][:3] == [
        "a glass cup",
        "a photo of a glass cup made of glass",
        "a container made of glass found in the kitchen",
    ]
    for material, (_, props) in MATERIALS.items():
        assert any(p in line for line in caps[material] for p in props), material
    assert "brittle: breaks into pieces instead of bending" in caps["brittle"]
    assert "something shatters when dropped on a hard floor" in caps["shatters"]
    assert "a thing that shatters" in caps["shatters"]


def _small(img: Image.Image) -> np.ndarray:
    return np.asarray(img.resize((16, 16), Image.Resampling.BOX), np.float32) / 255


def _min_pair(arrays: np.ndarray) -> tuple[float, int, int]:
    flat = arrays.reshape(len(arrays), -1)
    sq = (flat * flat).sum(1)
    d = np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2 * flat @ flat.T, 0))
    np.fill_diagonal(d, np.inf)
    i, j = np.unravel_index(np.argmin(d), d.shape)
    return float(d[i, j]), int(i), int(j)


def test_mean_renders_of_all_entities_are_distinct(entities):
    means = np.stack([np.mean([_small(R.render(n, t, s, size=32)) for s in range(4)], axis=0) for n, t in entities])
    assert len({m.tobytes() for m in means}) == len(entities)
    dist, i, j = _min_pair(means)
    assert dist > 0.2, (entities[i], entities[j], dist)


def test_identities_are_distinct_on_a_plain_background(entities):
    # The canonical drawing (no pose, jitter or background) must separate every pair of entities,
    # including objects of the same material and shape family.
    plain = np.stack([_small(R._plain_render(n, t, 32)) for n, t in entities])
    dist, i, j = _min_pair(plain)
    assert dist > 0.3, (entities[i], entities[j], dist)
    names = [n for n, _ in entities]
    spoon, fork = plain[names.index("steel spoon")], plain[names.index("steel fork")]
    assert np.abs(spoon - fork).sum() > 5


def test_objects_share_their_materials_texture():
    # A glass object is pale blue like glass, a wooden one brown like wood: the texture carries over.
    def body_colour(name, type_):
        a = np.asarray(R._plain_render(name, type_, 32), np.float32).reshape(-1, 3)
        body = a[np.abs(a - 128).sum(1) > 30]  # off the grey background
        return body.mean(0)

    glass, wood = body_colour("glass", "material"), body_colour("wood", "material")
    for obj, own, other in (("glass bowl", glass, wood), ("wooden block", wood, glass)):
        c = body_colour(obj, "object")
        assert np.linalg.norm(c - own) < np.linalg.norm(c - other), obj


def test_split_backgrounds_are_disjoint_in_style():
    # Train backgrounds are smooth (solid or gradients); held-out ones have hard edges.
    def max_step(split, seed):
        rng = random.Random(seed)
        bg = R._background(rng, np.random.default_rng(seed), split, 64)
        return max(np.abs(np.diff(bg, axis=0)).max(), np.abs(np.diff(bg, axis=1)).max())

    assert all(max_step("train", s) < 8 for s in range(40))
    assert sum(max_step("held-out", s) > 8 for s in range(40)) >= 36


def test_unknown_names_fall_back_to_generic_drawings():
    for type_ in R.RENDERED_TYPES:
        img = R.render("zorblax", type_, 0, size=16)
        assert img.size == (16, 16) and img.mode == "RGB"
