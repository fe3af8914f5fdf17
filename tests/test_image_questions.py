"""Image questions and image ingest on the session's Ray cluster, through the Pipeline and over
HTTP on 127.0.0.1, with an image tower trained here on the rendered world (a short run)."""

import base64
import io
import json

import httpx
import numpy as np
import pytest
from PIL import Image

from reverie.encoders.image import ImageEncoder
from reverie.encoders.image_tower import ImageModelMissingError
from testkit.servers import AUTH

pytestmark = pytest.mark.ray
QUESTION = "What happens if I drop this?"


def render_bytes(name: str, type_: str = "object", seed: int = 0) -> bytes:
    from reverie.data.render import render

    out = io.BytesIO()
    render(name, type_, seed=seed, split="held-out").save(out, format="PNG")
    return out.getvalue()


@pytest.fixture(scope="module")
def image_tower(world_settings, encoder):
    """A lite tower trained for about a minute and a half, saved where the world home's encoders
    look; with the world question whose object's held-out render this tower links right."""
    import torch

    from reverie.data.world import world_questions
    from reverie.encoders.image import tower_path
    from reverie.encoders.image_training import ClipTrainConfig, WorldTexts, train_image_tower

    torch.set_num_threads(2)
    tokenizer, report = train_image_tower(
        ClipTrainConfig(renders_per_entity=5, epochs=10, codebook_size=32), encoder, progress=False
    )
    tokenizer.save(tower_path(world_settings))
    texts = WorldTexts.encode(encoder)
    for question in world_questions():
        obj = question.chain[0][0]
        vec = tokenizer.encode([render_bytes(obj)])[0]
        if texts.entity_names[int(np.argmax(texts.entity_vecs @ vec))] == obj:
            return report, question
    pytest.fail("the short run linked no world question's object right")


def test_a_short_training_run_beats_chance_by_a_wide_margin(image_tower):
    report, _ = image_tower
    chance = 1 / report["candidates"]
    assert report["held_out_top1"] > 20 * chance and report["held_out_top5"] > 0.3


def test_a_home_without_a_tower_says_how_to_get_one(tmp_path):
    with pytest.raises(ImageModelMissingError, match="reverie train clip"):
        ImageEncoder(tmp_path / "image_tower.pt").encode_images([render_bytes("glass cup")])


def this_question(question) -> str:
    """The world question with its object named "this": the image must say what it is."""
    from reverie.data.world import ACTION_QUESTIONS

    return ACTION_QUESTIONS[question.chain[-1][1]].format(a="this")


def test_image_question_through_the_pipeline(world_pipeline, image_tower):
    from reverie.schemas import Query

    _, question = image_tower
    obj = question.chain[0][0]
    verdict = world_pipeline.answer(
        Query(
            question=this_question(question),
            image=base64.b64encode(render_bytes(obj)).decode(),
            seed=0,
            verbalize=False,
        )
    )
    assert verdict.image is not None and verdict.image.entity == obj
    assert verdict.image.token is None  # the world home holds no image yet, so no codebook
    assert verdict.linked[0].how == "image" and verdict.linked[0].name == obj
    assert verdict.answer_entity == question.answer
    # the chain is the question's own, or the same facts from a look-alike the image may show too
    assert [(s.action, s.result) for s in verdict.chain.steps] == [(a, r) for _, a, r in question.chain]
    assert verdict.chain.steps[0].what in [c.name for c in verdict.image.candidates]


@pytest.fixture(scope="module")
def two_actions(image_tower, world_settings, encoder):
    """An object the short-trained tower links right from a held-out render, with two actions
    the world answers differently for it: [(the question with "this", its answer in words)] x 2."""
    from reverie.data.world import action_questions
    from reverie.encoders.image import tower_path
    from reverie.encoders.image_tower import ImageTokenizer
    from reverie.encoders.image_training import WorldTexts

    tokenizer = ImageTokenizer.load(tower_path(world_settings))
    texts = WorldTexts.encode(encoder)
    by_object: dict[str, dict[frozenset, object]] = {}
    for q in action_questions():
        if q.answers and q.wording == 0:
            by_object.setdefault(q.obj, {}).setdefault(q.answers, q)
    for obj, questions in by_object.items():
        if len(questions) < 2:
            continue
        vec = tokenizer.encode([render_bytes(obj)])[0]
        if texts.entity_names[int(np.argmax(texts.entity_vecs @ vec))] == obj:
            return obj, list(questions.values())[:2]
    pytest.fail("the short run linked no object with two answered actions right")


def test_an_image_asked_two_actions_gets_the_answers_the_words_get(world_pipeline, two_actions):
    from reverie.schemas import Query

    obj, questions = two_actions
    image = base64.b64encode(render_bytes(obj)).decode()
    answers = []
    for q in questions:
        in_words = world_pipeline.answer(Query(question=q.text, seed=0, verbalize=False))
        shown = world_pipeline.answer(Query(question=q.this_text, image=image, seed=0, verbalize=False))
        assert shown.candidates[0].answer == in_words.answer_entity and in_words.answer_entity in q.answers
        assert shown.answer_entity == (in_words.answer_entity if shown.sure else None)
        assert shown.image.candidates[0].name == obj and obj in shown.candidates[0].subjects
        assert shown.candidates[0].best_chain.steps[0].what == obj  # the likeliest subject's chain is shown
        assert sum(c.probability for c in shown.image.candidates) == pytest.approx(1.0, abs=1e-3)
        answers.append(shown.candidates[0].answer)
    assert answers[0] != answers[1]  # the rest of the question, not the image, chose the chain


@pytest.fixture(scope="module")
def image_home(world_settings, world_pipeline, image_tower, tmp_path_factory):
    """A second home with the world, so that ingested images leave the shared world home as it was."""
    from reverie.config import Settings
    from reverie.data.kg import load_dataset
    from reverie.encoders.image import tower_path
    from reverie.pipeline import Pipeline

    settings = Settings(home=tmp_path_factory.mktemp("image-home"), clip_weights=tower_path(world_settings))
    pipeline = Pipeline(settings)
    pipeline.ingest_dataset(load_dataset("world"))
    yield pipeline
    pipeline.services.stop()


def test_ingest_images_then_find_them_in_the_graph(image_home, tmp_path):
    """An image with a caption depicts what the caption names; a triplet's image depicts its nearest entity."""
    from reverie.graph_store.images import read_image_file

    (tmp_path / "duck.png").write_bytes(render_bytes("rubber duck", seed=3))
    (tmp_path / "shards.png").write_bytes(render_bytes("shatters", "result", seed=3))
    (tmp_path / "images.jsonl").write_text(
        "\n".join(
            json.dumps(x)
            for x in [
                {"image": "duck.png", "caption": "a yellow rubber duck in the bath"},
                {"what": "glass vase", "action": "when knocked off a shelf", "result": "shards.png"},
            ]
        )
    )
    lines = read_image_file(tmp_path / "images.jsonl")
    report = image_home.ingest_images(lines, source="images.jsonl")
    assert report.entities_added == 2 and report.triples_added == 3
    duck = image_home.entity(lines[0].image.name)
    assert duck.entity.type == "image" and duck.entity.token is not None
    assert [(f.relation, f.tail, f.source) for f in duck.outgoing] == [("depicts", "rubber duck", "images.jsonl:1")]
    shards = image_home.entity(lines[1].result.name)
    depicted = [(f.tail, f.source) for f in shards.outgoing if f.relation == "depicts"]
    assert (
        len(depicted) == 1
        and depicted[0][1] == "images.jsonl:2"
        and image_home.entity(depicted[0][0]).entity.type != "image"
    )
    assert ("glass vase", "when knocked off a shelf") in [(f.head, f.relation) for f in shards.incoming]
    # again: nothing new
    assert image_home.ingest_images(lines).triples_added == 0


# ---------- over HTTP ----------
@pytest.fixture(scope="module")
def http(served):
    with httpx.Client(base_url=served[0], headers=AUTH, timeout=120) as client:
        yield client


def test_image_question_over_http_multipart_and_base64(http, image_tower):
    _, question = image_tower
    obj = question.chain[0][0]
    picture = render_bytes(obj)
    reply = http.post(
        "/v1/query",
        data={"question": this_question(question), "seed": "0", "verbalize": "false"},
        files={"image": ("thing.png", picture, "image/png")},
    )
    assert reply.status_code == 200, reply.text
    verdict = reply.json()
    assert verdict["image"]["entity"] == obj and verdict["answer_entity"] == question.answer
    as_json = http.post(
        "/v1/query",
        json={
            "question": this_question(question),
            "seed": 0,
            "verbalize": False,
            "image": base64.b64encode(picture).decode(),
        },
    )
    assert as_json.status_code == 200, as_json.text
    assert as_json.json()["candidates"] == verdict["candidates"]


def test_image_question_over_the_ollama_face(http, image_tower):
    _, question = image_tower
    obj = question.chain[0][0]
    image = base64.b64encode(render_bytes(obj)).decode()
    reply = http.post(
        "/api/chat",
        json={
            "model": "reverie",
            "stream": False,
            "options": {"seed": 0},
            "messages": [{"role": "user", "content": this_question(question), "images": [image]}],
        },
    )
    assert reply.status_code == 200, reply.text
    assert f"The image shows {obj}" in reply.json()["message"]["content"]
    refused = http.post(
        "/api/generate", json={"model": "smollm2:135m", "prompt": "hi", "images": [image], "stream": False}
    )
    assert refused.status_code == 400 and "does not support images" in refused.json()["error"]


def test_bad_images_over_http_are_4xx_with_a_detail(http, image_tower):
    def ask(image: bytes):
        return http.post("/v1/query", data={"question": QUESTION}, files={"image": ("x.png", image, "image/png")})

    not_image = ask(b"GIF89a but not really an image")
    assert not_image.status_code == 415 and "not an image" in not_image.json()["detail"]
    big = io.BytesIO()
    Image.new("L", (1200, 1000)).save(big, format="PNG")  # 1.2 M pixels, over the test server's 1 M limit
    too_large = ask(big.getvalue())
    assert too_large.status_code == 413 and "limit" in too_large.json()["detail"]
    bad_b64 = http.post("/v1/query", json={"question": QUESTION, "image": "%%%"})
    assert bad_b64.status_code == 400 and "base64" in bad_b64.json()["detail"]
    wrong_type = http.post("/v1/query", content=b"question", headers={"content-type": "text/plain"})
    assert wrong_type.status_code == 415
