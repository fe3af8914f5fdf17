"""The looks of the rendered world, as data: what the drawing code (draw.py) draws with.

- MATERIAL_LOOKS: each material's base colour, texture layers (named in draw.py's _LAYERS) and opacity;
- OBJECT_LOOKS: each object's shape (named in draw.py's _SHAPES) and that shape's parameters;
- GENERIC_SHAPES, FALLBACK_LAYERS and GLYPHS: what names outside the world are drawn with, by hash;
- the palette of marks, icons and scenes.
"""

from __future__ import annotations

RENDERED_TYPES: tuple[str, ...] = ("object", "material", "property", "result")
SPLITS = ("train", "held-out")

Color = tuple[int, ...]

# --------------------------------------------------------------------------------------------
# Materials
# --------------------------------------------------------------------------------------------

# material -> (base colour, layers, opacity).  Opacity < 1 lets the background show through: the
# translucent materials (glass, ice) look it.
MATERIAL_LOOKS: dict[str, tuple[Color, list[tuple[str, dict]], float]] = {
    "glass": (
        (190, 222, 242),
        [
            ("grad", dict(c0=(208, 234, 250), c1=(158, 198, 232), angle=60)),
            ("streaks", dict(color=(255, 255, 255), n=3, width=(0.015, 0.04), alpha=0.9, angle=-40)),
        ],
        0.72,
    ),
    "ceramic": (
        (70, 140, 155),
        [
            ("mottle", dict(amp=12, cells=5)),
            ("speckle", dict(colors=[(30, 70, 80), (120, 180, 190)], n=260, rmin=0.003, rmax=0.008)),
            ("streaks", dict(color=(200, 240, 245), n=1, width=(0.04, 0.06), alpha=0.45, angle=-30)),
        ],
        1.0,
    ),
    "porcelain": ((247, 247, 252), [("motif", dict(color=(40, 70, 175), cell=0.25))], 1.0),
    "rubber": (
        (42, 42, 48),
        [("mottle", dict(amp=6, cells=12)), ("circles", dict(color=(26, 26, 30), n=40, rmin=0.01, rmax=0.02))],
        1.0,
    ),
    "plastic": (
        (222, 40, 58),
        [
            ("mottle", dict(amp=5, cells=4)),
            ("streaks", dict(color=(255, 215, 222), n=2, width=(0.03, 0.07), alpha=0.6, angle=30)),
        ],
        1.0,
    ),
    "wood": (
        (168, 112, 62),
        [("grain", dict(color=(105, 62, 30), freq=7, amp=0.5)), ("mottle", dict(amp=8, cells=8))],
        1.0,
    ),
    "cork": (
        (192, 146, 95),
        [("speckle", dict(colors=[(120, 80, 45), (150, 104, 62), (222, 182, 126)], n=1500, rmin=0.004, rmax=0.012))],
        1.0,
    ),
    "iron": ((80, 80, 88), [("mottle", dict(amp=14, cells=10)), ("blotch", dict(color=(168, 78, 36), n=5))], 1.0),
    "steel": (
        (168, 175, 186),
        [
            ("brushed", dict(amp=14)),
            ("streaks", dict(color=(248, 250, 255), n=1, width=(0.07, 0.09), alpha=0.85, angle=40)),
        ],
        1.0,
    ),
    "aluminium": (
        (210, 214, 220),
        [
            ("facets", dict(colors=[(232, 235, 240), (198, 202, 210), (215, 219, 225), (180, 185, 194)], cell=0.12)),
            ("brushed", dict(amp=5, vertical=True)),
        ],
        1.0,
    ),
    "copper": (
        (200, 115, 70),
        [
            ("grad", dict(c0=(232, 146, 100), c1=(140, 66, 36), angle=20)),
            ("brushed", dict(amp=6)),
            ("streaks", dict(color=(255, 212, 180), n=2, width=(0.03, 0.06), alpha=0.9, angle=40)),
        ],
        1.0,
    ),
    "gold": (
        (228, 186, 60),
        [
            ("grad", dict(c0=(244, 204, 80), c1=(178, 128, 26), angle=120)),
            ("streaks", dict(color=(255, 248, 190), n=2, width=(0.03, 0.05), alpha=0.9, angle=-45)),
        ],
        1.0,
    ),
    "paper": (
        (246, 243, 232),
        [
            ("lines", dict(color=(110, 150, 215), spacing=0.1, width=0.014)),
            ("lines", dict(color=(215, 70, 70), spacing=0.5, width=0.012, angle=90, offset=0.15)),
        ],
        1.0,
    ),
    "cardboard": (
        (186, 146, 96),
        [("corrugate", dict(amp=14, period=0.05)), ("lines", dict(color=(140, 100, 60), spacing=0.33, width=0.012))],
        1.0,
    ),
    "cotton": (
        (234, 236, 244),
        [
            ("lines", dict(color=(196, 200, 218), spacing=0.03, width=0.011)),
            ("lines", dict(color=(208, 212, 228), spacing=0.03, width=0.011, angle=90)),
        ],
        1.0,
    ),
    "wool": ((168, 52, 72), [("knit", dict(color=(118, 30, 48), cell=0.08)), ("mottle", dict(amp=6, cells=20))], 1.0),
    "ice": (
        (220, 242, 252),
        [
            ("grad", dict(c0=(236, 248, 255), c1=(200, 230, 248), angle=100)),
            ("cracks", dict(color=(255, 255, 255), n=7, width=0.012)),
            ("cracks", dict(color=(150, 195, 228), n=5, width=0.008)),
        ],
        0.8,
    ),
    "wax": (
        (244, 230, 180),
        [
            ("mottle", dict(amp=4, cells=5)),
            ("streaks", dict(color=(255, 247, 222), n=4, width=(0.02, 0.04), alpha=0.6, angle=90)),
        ],
        1.0,
    ),
    "chocolate": ((96, 56, 34), [("grid", dict(color=(62, 34, 20), cell=0.25, width=0.025, light=(138, 88, 58)))], 1.0),
    "butter": (
        (250, 234, 140),
        [("mottle", dict(amp=4, cells=5)), ("swirl", dict(color=(255, 248, 200), n=7, width=0.02))],
        1.0,
    ),
    "stone": (
        (140, 138, 132),
        [
            ("mottle", dict(amp=12, cells=8)),
            (
                "speckle",
                dict(
                    colors=[(92, 92, 90), (182, 180, 174), (118, 116, 110), (205, 203, 195)],
                    n=1300,
                    rmin=0.003,
                    rmax=0.01,
                ),
            ),
        ],
        1.0,
    ),
    "clay": (
        (182, 100, 66),
        [("mottle", dict(amp=8, cells=7)), ("swirl", dict(color=(145, 74, 44), n=10, width=0.014))],
        1.0,
    ),
    "sugar": (
        (250, 250, 252),
        [("facets", dict(colors=[(255, 255, 255), (232, 232, 242), (214, 214, 226)], cell=0.06))],
        1.0,
    ),
    "salt": (
        (226, 222, 230),
        [
            (
                "facets",
                dict(colors=[(240, 236, 244), (200, 194, 210), (222, 214, 228)], cell=0.2, outline=(252, 252, 255)),
            )
        ],
        1.0,
    ),
    "soap": (
        (166, 226, 194),
        [
            ("mottle", dict(amp=5, cells=5)),
            ("circles", dict(color=(255, 255, 255), n=18, rmin=0.03, rmax=0.09, outline=True, width=0.012)),
        ],
        1.0,
    ),
    "foam": ((238, 206, 62), [("circles", dict(color=(192, 152, 30), n=420, rmin=0.006, rmax=0.022))], 1.0),
    "bread": (
        (222, 176, 110),
        [
            ("circles", dict(color=(246, 228, 182), n=170, rmin=0.008, rmax=0.026)),
            ("speckle", dict(colors=[(170, 120, 60)], n=150, rmin=0.003, rmax=0.006)),
        ],
        1.0,
    ),
    "leather": (
        (126, 62, 34),
        [("mottle", dict(amp=14, cells=48)), ("stitch", dict(color=(234, 214, 172), spacing=0.5))],
        1.0,
    ),
    "feathers": ((242, 208, 222), [("barbs", dict(color=(200, 150, 175), cell=0.33))], 1.0),
    "fruit": (
        (236, 112, 38),
        [
            ("circles", dict(color=(212, 88, 26), n=320, rmin=0.004, rmax=0.008)),
            ("streaks", dict(color=(255, 200, 160), n=1, width=(0.06, 0.08), alpha=0.5, angle=-35)),
        ],
        1.0,
    ),
}

# Layers for materials the table does not know, picked by name hash.
FALLBACK_LAYERS = ("mottle", "speckle", "lines", "circles", "swirl", "knit", "facets")


# --------------------------------------------------------------------------------------------
# Objects
# --------------------------------------------------------------------------------------------

# object -> (shape, parameters).  Shapes follow the name; the parameters separate objects that share
# a shape (and name-hashed stretch and accent colour separate them further).
OBJECT_LOOKS: dict[str, tuple[str, dict]] = {
    "glass cup": ("cup", {}),
    "glass vase": ("vase", {}),
    "window pane": ("pane", {}),
    "glass bottle": ("bottle", {}),
    "glass marble": ("ball", dict(r=0.26, swirl=True)),
    "mirror": ("mirror", {}),
    "glass bowl": ("bowl", {}),
    "ceramic plate": ("plate", {}),
    "ceramic bowl": ("bowl", dict(w=0.66, depth=0.24, foot=True, band=True)),
    "flower pot": ("cup", dict(w=0.5, h=0.48, taper=0.1, cy=0.6, lip=True, plant=True)),
    "ceramic tile": ("tile", {}),
    "porcelain mug": ("cup", dict(w=0.44, h=0.5, taper=0.0, handle=True)),
    "porcelain teapot": ("teapot", {}),
    "porcelain doll": ("figure", dict(kind="doll")),
    "rubber ball": ("ball", dict(r=0.33, bands=True)),
    "rubber band": ("ring", dict(kind="band")),
    "rubber duck": ("duck", {}),
    "rubber boots": ("boot", {}),
    "eraser": ("box", dict(w=0.5, h=0.24, d=0.12, sleeve=True)),
    "balloon": ("ball", dict(r=0.26, ry=0.32, cy=0.38, string=True)),
    "plastic bottle": ("bottle", dict(body=0.3, ridges=True, label=True)),
    "plastic bag": ("bag", dict(kind="plastic")),
    "plastic cup": ("cup", dict(w=0.4, h=0.58, taper=0.09, ribs=True)),
    "plastic bucket": ("cup", dict(w=0.56, h=0.46, taper=0.08, cy=0.58, bail=True)),
    "toy car": ("car", {}),
    "plastic spoon": ("spoon", dict(width=0.05, head=0.1)),
    "plastic comb": ("comb", {}),
    "wooden chair": ("chair", {}),
    "wooden spoon": ("spoon", dict(width=0.065, head=0.12, long=True)),
    "wooden table": ("table", {}),
    "pencil": ("pencil", {}),
    "wooden block": ("box", dict(w=0.46, h=0.46, d=0.14, letter=True)),
    "baseball bat": ("bat", {}),
    "firewood log": ("log", {}),
    "wine cork": ("cup", dict(w=0.3, h=0.42, taper=0.03, cork=True)),
    "cork board": ("board", {}),
    "iron nail": ("nail", {}),
    "cast iron pan": ("pan", {}),
    "iron gate": ("gate", {}),
    "horseshoe": ("horseshoe", {}),
    "steel spoon": ("spoon", dict(width=0.05, head=0.12)),
    "steel fork": ("fork", {}),
    "kitchen knife": ("knife", {}),
    "paper clip": ("clip", {}),
    "wrench": ("wrench", {}),
    "aluminium can": ("cup", dict(w=0.36, h=0.62, taper=0.0, can=True)),
    "aluminium foil": ("foil", {}),
    "aluminium ladder": ("ladder", {}),
    "copper wire": ("wire", {}),
    "copper coin": ("coin", {}),
    "copper pot": ("cup", dict(w=0.52, h=0.36, taper=0.0, cy=0.6, ears=True)),
    "gold ring": ("ring", dict(kind="ring")),
    "gold necklace": ("necklace", {}),
    "book": ("book", {}),
    "newspaper": ("newspaper", {}),
    "paper napkin": ("napkin", {}),
    "paper bag": ("bag", dict(kind="paper")),
    "notebook": ("book", dict(spiral=True)),
    "paper plane": ("plane", {}),
    "cardboard box": ("box", dict(w=0.5, h=0.38, d=0.16, tape=True)),
    "cereal box": ("box", dict(w=0.38, h=0.62, d=0.1, label=True)),
    "egg carton": ("carton", {}),
    "cotton shirt": ("shirt", dict(kind="shirt")),
    "cotton towel": ("towel", {}),
    "cotton sock": ("sock", {}),
    "bed sheet": ("sheet", {}),
    "wool sweater": ("shirt", dict(kind="sweater")),
    "wool scarf": ("scarf", {}),
    "wool blanket": ("blanket", {}),
    "wool mitten": ("mitten", {}),
    "ice cube": ("box", dict(w=0.42, h=0.42, d=0.14, shine=True)),
    "icicle": ("icicle", {}),
    "ice sculpture": ("swan", {}),
    "wax candle": ("candle", {}),
    "crayon": ("pencil", dict(crayon=True)),
    "chocolate bar": ("box", dict(w=0.62, h=0.36, d=0.05, wrapper=True)),
    "chocolate bunny": ("bunny", {}),
    "stick of butter": ("box", dict(w=0.66, h=0.2, d=0.1, wrapper=True)),
    "pebble": ("pebble", {}),
    "stone statue": ("figure", dict(kind="statue")),
    "stone bench": ("bench", {}),
    "lump of clay": ("blob", {}),
    "clay figure": ("figure", dict(kind="gingerbread")),
    "sugar cube": ("box", dict(w=0.32, h=0.32, d=0.12)),
    "lollipop": ("lollipop", {}),
    "salt crystal": ("crystal", {}),
    "bar of soap": ("soap", {}),
    "kitchen sponge": ("box", dict(w=0.52, h=0.3, d=0.1, scrub=True)),
    "foam cushion": ("cushion", {}),
    "slice of bread": ("bread", {}),
    "bread roll": ("ball", dict(r=0.34, ry=0.22, scores=True)),
    "leather shoe": ("shoe", {}),
    "leather belt": ("belt", {}),
    "leather jacket": ("shirt", dict(kind="jacket")),
    "feather boa": ("boa", {}),
    "apple": ("ball", dict(r=0.3, apple=True)),
    "orange": ("ball", dict(r=0.3, navel=True)),
    "lemon": ("lemon", {}),
    "feather pillow": ("pillow", {}),
    "teddy bear": ("figure", dict(kind="bear")),
}

# Shapes for objects the table does not know, picked by name hash; all take no parameters.
GENERIC_SHAPES = (
    "cup",
    "bottle",
    "bowl",
    "plate",
    "box",
    "ball",
    "pencil",
    "sheet",
    "ring",
    "figure",
    "blob",
    "pebble",
)


# --------------------------------------------------------------------------------------------
# Palette: shading and marks on objects, then the colours of property icons and result scenes
# --------------------------------------------------------------------------------------------

SHADE = (0, 0, 0, 95)
DEEP_SHADE = (0, 0, 0, 150)
SHINE = (255, 255, 255, 125)
BRIGHT_SHINE = (255, 255, 255, 200)
INK = (40, 40, 48, 255)
GREEN = (60, 150, 70, 255)
BROWN = (120, 78, 42, 255)
GREY = (150, 152, 160, 255)

WATER = (70, 145, 225, 255)
LIGHT_WATER = (160, 205, 245, 255)
FIRE = (240, 110, 30, 255)
FIRE_YELLOW = (255, 210, 60, 255)
RED = (210, 45, 45, 255)
DARK = (70, 70, 80, 255)
WHITE = (255, 255, 255, 255)
YELLOW = (250, 215, 50, 255)
RUST = (190, 90, 40, 255)
PALE = (225, 232, 240, 255)

# Glyphs of the properties and results without a hand-made drawing.
GLYPHS = ("circle", "triangle", "square", "zigzag", "wave", "arrow", "dots", "cross")
