"""The image half without Ray: the torchvision fix, the tokenizer (one contract for every
backbone), image input checks, the codebook, checkpoints, image JSONL files, image entities in
the store, and a short training run that must beat chance by a wide margin on held-out renders."""

import io
import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from reverie.config import Settings
from reverie.encoders.image_tower import BACKBONES, Codebook, ImageConfig, ImageModelMissingError, ImageTokenizer
from reverie.errors import IngestError, NoMatchError, ReverieError
from reverie.images import ImageError, ImageTooLargeError, UnsupportedImageError, decode_base64, load_image


def png(size=(40, 30), colour=(200, 30, 30), mode="RGB") -> bytes:
    out = io.BytesIO()
    Image.new(mode, size, colour if mode == "RGB" else 1).save(out, format="PNG" if mode != "F" else "TIFF")
    return out.getvalue()


def noise_images(n, seed=0, size=(50, 40)):
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)) for _ in range(n)]


# ---------- the torchvision fix ----------
def test_torchvision_transformers_and_open_clip_import_after_import_reverie():
    code = (
        "import sys, reverie\n"
        "print('torch' in sys.modules)\n"  # the hook is cheap: nothing imported until torchvision is
        "import torchvision, open_clip\n"
        "from transformers import BertModel\n"
        "from reverie.torchvision_fix import needs_fix\n"
        "print(needs_fix())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["False", "False"]  # torch not imported by the hook; once fixed, never again


def test_without_the_fix_the_broken_torchvision_fails_to_import():
    from reverie.torchvision_fix import compiled_ops_path

    code = (
        "import torch\n"
        "try:\n    torch.ops.load_library(r'%s')\nexcept OSError:\n    print('broken')\nelse:\n    print('fine')\n"
    ) % compiled_ops_path()
    state = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120).stdout.strip()
    plain = subprocess.run([sys.executable, "-c", "import torchvision"], capture_output=True, text=True, timeout=300)
    if state == "broken":  # this machine's torchvision: the fix is what makes it import
        assert plain.returncode != 0 and "torchvision::nms" in plain.stderr
    else:
        assert plain.returncode == 0


# ---------- the tokenizer: one contract for every backbone ----------
@pytest.mark.parametrize("backbone", sorted(BACKBONES))
def test_tokenizer_contract(backbone):
    import torch

    torch.manual_seed(0)
    tokenizer = ImageTokenizer(ImageConfig(backbone=backbone))
    images = noise_images(5)
    vecs = tokenizer.encode(images, batch_size=2)
    assert vecs.shape == (5, 384) and vecs.dtype == np.float32
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    # batching does not change a vector; the same image gives the same vector
    assert np.allclose(tokenizer.encode(images, batch_size=5), vecs, atol=1e-5)
    assert np.allclose(tokenizer.encode([images[3]])[0], vecs[3], atol=1e-5)
    # different images differ; bytes and PIL images are the same input
    assert not np.allclose(vecs[0], vecs[1])
    raw = io.BytesIO()
    images[0].save(raw, format="PNG")
    assert np.allclose(tokenizer.encode([raw.getvalue()])[0], vecs[0], atol=1e-5)
    with pytest.raises(TypeError):
        tokenizer.encode(raw.getvalue())


@pytest.mark.parametrize("backbone", sorted(BACKBONES))
def test_checkpoint_round_trip(backbone, tmp_path):
    tokenizer = ImageTokenizer(ImageConfig(backbone=backbone))
    images = noise_images(3, seed=1)
    vecs = tokenizer.encode(images)
    tokenizer.codebook = Codebook.fit(np.concatenate([vecs, -vecs]), 2)
    tokenizer.save(tmp_path / "tower.pt")
    loaded = ImageTokenizer.load(tmp_path / "tower.pt")
    assert loaded.config == tokenizer.config
    assert np.allclose(loaded.encode(images), vecs, atol=1e-5)
    assert (loaded.tokens(vecs) == tokenizer.tokens(vecs)).all()


def test_bad_configs_and_missing_checkpoints(tmp_path):
    with pytest.raises(ReverieError, match="unknown image backbone"):
        ImageConfig(backbone="vgg")
    with pytest.raises(ReverieError, match="multiple of 32"):
        ImageConfig(backbone="resnet", image_size=48)
    with pytest.raises(ImageModelMissingError, match="reverie train clip"):
        ImageTokenizer.load(tmp_path / "none.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ImageModelMissingError, match="not a Reverie image-tower checkpoint"):
        ImageTokenizer.load(tmp_path / "junk.pt")


def test_clip_train_config_refuses_bad_settings():
    from reverie.encoders.image_training import ClipTrainConfig

    for bad, message in [
        (dict(views=3), "multiple of views"),
        (dict(augment="wild"), "unknown augment"),
        (dict(margin=1.5), "margin must be"),
        (dict(ema=1.0), "ema must be"),
        (dict(views=0), "views must be at least 1"),
    ]:
        with pytest.raises(ReverieError, match=message):
            ClipTrainConfig(**bad)


# ---------- the calibrated link temperature ----------
def test_fit_link_scale_minimises_the_links_nll():
    from reverie.encoders.image_training import fit_link_scale, link_nll

    rng = np.random.default_rng(0)
    entities = rng.standard_normal((40, 16))
    entities /= np.linalg.norm(entities, axis=1, keepdims=True)
    names = [f"e{i}" for i in range(40)]
    truth = rng.integers(0, 40, 300)
    images = entities[truth] + 0.3 * rng.standard_normal((300, 16))
    images /= np.linalg.norm(images, axis=1, keepdims=True)
    scale = fit_link_scale(images, [names[t] for t in truth], names, entities)
    scores = images @ entities.T
    assert scale > 0
    assert link_nll(scale, scores, truth) < min(
        link_nll(scale * 0.8, scores, truth), link_nll(scale * 1.25, scores, truth)
    )
    with pytest.raises(ReverieError, match="outside the candidates"):
        fit_link_scale(images[:1], ["nobody"], names, entities)
    with pytest.raises(ReverieError, match="one name per image"):
        fit_link_scale(images[:2], names[:1], names, entities)


def test_training_fits_the_link_scale_and_the_checkpoint_keeps_it(tmp_path, encoder):
    import torch

    from reverie.encoders.image_training import ClipTrainConfig, train_image_tower

    torch.manual_seed(0)
    tokenizer, report = train_image_tower(
        ClipTrainConfig(renders_per_entity=1, epochs=1, held_out_per_entity=1, codebook_size=4),
        encoder,
        progress=False,
    )
    assert report["link_scale"] > 0 and tokenizer.link_scale == report["link_scale"]
    tokenizer.save(tmp_path / "tower.pt")
    assert ImageTokenizer.load(tmp_path / "tower.pt").link_scale == report["link_scale"]
    # a checkpoint from before the scale was fit loads, with no scale
    state = torch.load(tmp_path / "tower.pt", weights_only=True)
    del state["meta"]["link_scale"]
    torch.save(state, tmp_path / "old.pt")
    assert ImageTokenizer.load(tmp_path / "old.pt").link_scale is None
    assert ImageTokenizer(ImageConfig()).link_scale is None


# ---------- image input ----------
def test_load_image_accepts_modes_and_refuses_bad_input(tmp_path):
    assert load_image(png()).mode == "RGB"
    assert load_image(png(mode="L")).size == (40, 30)
    rgba = io.BytesIO()
    Image.new("RGBA", (4, 4), (0, 0, 0, 0)).save(rgba, format="PNG")
    assert load_image(rgba.getvalue()).getpixel((0, 0)) == (255, 255, 255)  # transparent reads as white
    with pytest.raises(UnsupportedImageError, match="not an image"):
        load_image(b"hello, this is text")
    with pytest.raises(ImageError, match="empty"):
        load_image(b"")
    with pytest.raises(ImageTooLargeError, match="limit") as too_large:
        load_image(png(size=(200, 200)), max_pixels=10_000)
    assert too_large.value.status == 413
    with pytest.raises(UnsupportedImageError, match="mode 'F'"):
        load_image(png(mode="F"))
    with pytest.raises(ImageError, match="no such file"):
        load_image(tmp_path / "missing.png")
    truncated = png(size=(64, 64))[:-30]
    with pytest.raises(ImageError):
        load_image(truncated)
    with pytest.raises(ImageError, match="base64"):
        decode_base64("not base64 at all!")
    assert decode_base64("data:image/png;base64," + __import__("base64").b64encode(b"abc").decode()) == b"abc"


def test_codebook_assigns_nearest_centroid():
    rng = np.random.default_rng(0)
    centres = np.eye(384, dtype=np.float32)[:4]
    points = np.concatenate([c + 0.05 * rng.standard_normal((20, 384)).astype(np.float32) for c in centres])
    points /= np.linalg.norm(points, axis=1, keepdims=True)
    book = Codebook.fit(points, 4)
    tokens = book.tokens(points)
    # each cluster gets one token of its own
    assert len(set(tokens)) == 4 and all(len(set(tokens[i * 20 : (i + 1) * 20])) == 1 for i in range(4))
    assert np.allclose(book.vectors(tokens[:1]), book.centroids[tokens[0]])
    with pytest.raises(ReverieError, match="needs 1.."):
        Codebook.fit(points, 1000)


# ---------- image JSONL files ----------
def write_images(folder, lines, images=("cup.png", "ball.png")):
    for i, name in enumerate(images):
        (folder / name).write_bytes(png(colour=(40 * i, 100, 200)))
    path = folder / "images.jsonl"
    path.write_text("\n".join(json.dumps(line) if isinstance(line, dict) else line for line in lines) + "\n")
    return path


def test_read_image_file_lines_and_errors(tmp_path):
    from reverie.graph_store.images import ImageRef, read_image_file

    lines = read_image_file(
        write_images(
            tmp_path,
            [
                {"image": "cup.png", "caption": "a glass cup"},
                {"image": "ball.png", "entity": "rubber ball"},
                {"what": "cup.png", "action": "when dropped", "result": "shatters"},
            ],
        )
    )
    assert [line.where for line in lines] == ["images.jsonl:1", "images.jsonl:2", "images.jsonl:3"]
    assert isinstance(lines[2].what, ImageRef) and lines[2].result == "shatters"
    assert lines[2].what.name == lines[0].image.name and lines[0].image.name.startswith("image:cup.png#")
    cases = [
        ({"image": "nope.png", "caption": "x"}, "images.jsonl:2: no such image file"),
        ({"image": "cup.png"}, "images.jsonl:2: an image needs"),
        ({"image": "cup.png", "caption": ""}, "images.jsonl:2: 'caption' must be"),
        ({"what": "cup.png", "action": "x"}, "images.jsonl:2: expected"),
        ("{not json", "images.jsonl:2: invalid JSON"),
        ({"image": "notes.txt", "caption": "x"}, "images.jsonl:2: notes.txt: not an image"),
    ]
    (tmp_path / "notes.txt").write_text("plain text")
    for bad, message in cases:
        path = write_images(tmp_path, [{"image": "cup.png", "caption": "a glass cup"}, bad])
        with pytest.raises(IngestError, match=message.replace("(", r"\(")):
            read_image_file(path)


# ---------- image entities in the store ----------
def test_store_tokens_image_entities_and_links_images_to_things(tmp_path, encoder):
    from reverie.graph_store import GraphStore
    from reverie.schemas import Entity, Triple

    store = GraphStore(Settings(home=tmp_path))
    facts = [
        Triple(head="glass cup", relation="made of", tail="glass"),
        Triple(head="rubber ball", relation="made of", tail="rubber"),
    ]
    plan = store.plan(facts)
    store.apply(plan, encoder.encode(plan.entity_texts), encoder.encode(plan.relation_texts))
    cup_vec = encoder.encode(["glass cup"])[0]
    # an image whose vector sits at "glass cup": the image entity itself is not a link target
    image = Entity(name="image:cup.png#00000000", type="image", description="a cup")
    plan = store.plan([Triple(head=image.name, relation="depicts", tail="glass cup")], [image])
    vecs = np.stack([cup_vec if e.type == "image" else encoder.encode([e.name])[0] for e in plan.entities])
    with pytest.raises(ReverieError, match="codebook"):
        store.apply(plan, vecs, encoder.encode(plan.relation_texts))
    assert store.get_entity(image.name) is None  # nothing stored half-way
    codebook = np.stack([cup_vec, encoder.encode(["rubber ball"])[0]])
    store.apply(plan, vecs, encoder.encode(plan.relation_texts), codebook)
    assert store.get_entity(image.name).token == 0
    links, token = store.link_image(cup_vec, 3, 0.2)
    assert links[0].name == "glass cup" and links[0].how == "image" and token == 0
    assert all(link.type != "image" for link in links)
    with pytest.raises(NoMatchError, match="links to no entity"):
        store.link_image(-cup_vec, 3, 0.99)
    # the codebook and tokens are stored with the graph
    store.close()
    again = GraphStore(Settings(home=tmp_path))
    assert again.get_entity(image.name).token == 0
    assert np.allclose(again.image_tokens(codebook), [0, 1])
    again.close()


# ---------- real open_clip weights, bridged by a map fit on text ----------
def test_fit_map_recovers_a_linear_map():
    from reverie.encoders.open_clip_bridge import fit_map

    rng = np.random.default_rng(0)
    source = rng.standard_normal((500, 16)).astype(np.float32)
    truth = rng.standard_normal((16, 8)).astype(np.float32)
    assert np.allclose(fit_map(source, source @ truth, ridge=1e-6), truth, atol=1e-3)


def test_open_clip_checkpoint_with_its_architecture_needs_no_training(tmp_path, encoder):
    """A tiny open_clip model stands in for real weights (none can be downloaded here): its
    checkpoint loads through ImageEncoder with REVERIE_CLIP_ARCH, and images come out in MiniLM's space."""
    import open_clip
    import torch

    from reverie.encoders.image import ImageEncoder
    from reverie.encoders.open_clip_bridge import OpenClipBridge

    config = tmp_path / "reverie-tiny-clip.json"
    config.write_text(
        json.dumps(
            {
                "embed_dim": 64,
                "vision_cfg": {"image_size": 32, "layers": 1, "width": 64, "patch_size": 8},
                "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 1},
            }
        )
    )
    open_clip.add_model_config(str(config))
    torch.manual_seed(0)
    torch.save(open_clip.create_model("reverie-tiny-clip").state_dict(), tmp_path / "tiny.pt")
    bridge = OpenClipBridge(str(config), tmp_path / "tiny.pt", text_encoder=encoder, codebook_size=8)
    vecs = bridge.encode(noise_images(3))
    assert vecs.shape == (3, 384) and np.allclose(np.linalg.norm(vecs, axis=1), 1, atol=1e-5)
    assert bridge.codebook.size == 8 and bridge.name == "open_clip:reverie-tiny-clip"
    hosted = ImageEncoder(tmp_path / "tiny.pt", arch=str(config))
    assert np.allclose(hosted.encode_images([png()]), bridge.encode([load_image(png())]), atol=1e-5)
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(ImageModelMissingError, match="not an open_clip"):
        OpenClipBridge(str(config), tmp_path / "junk.pt", text_encoder=encoder)
    with pytest.raises(ReverieError, match="unknown open_clip architecture"):
        OpenClipBridge("ViT-Nope", tmp_path / "tiny.pt", text_encoder=encoder)
