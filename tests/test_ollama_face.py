"""The Ollama face over real HTTP on 127.0.0.1, driven by the official `ollama` client (and httpx
where the client hides the wire)."""

import asyncio
import json
import time

import httpx
import numpy as np
import ollama
import pytest

from reverie.data.world import NO_FACT_QUESTION, SAMPLE_QUESTION
from reverie.llm.chain import BackendUnavailable, Finish
from reverie.serve import ollama_api
from testkit.servers import API_KEY, AUTH

pytestmark = pytest.mark.ray

GREEDY = {"temperature": 0, "num_predict": 8}


@pytest.fixture(scope="module")
def client(base_url):
    return ollama.Client(host=base_url, headers=AUTH, timeout=120)


@pytest.fixture(scope="module")
def openai_client(base_url):
    import openai

    return openai.OpenAI(base_url=f"{base_url}/v1", api_key=API_KEY, max_retries=0)


# ---------- what clients probe first ----------
def test_liveness_probe_and_version(http):
    alive = http.get("/")
    assert (
        alive.status_code == 200
        and alive.text == "Ollama is running"
        and alive.headers["content-type"].startswith("text/plain")
    )
    assert http.head("/").status_code == 200
    version = http.get("/api/version").json()
    assert version["version"] == ollama_api.OLLAMA_VERSION and version["reverie"]["version"] == "0.1.0"
    assert {"POST /api/show", "GET /api/ps", "POST /api/embed", "POST /api/chat"} <= set(
        version["reverie"]["endpoints"]
    )


def test_tags_show_and_ps(client):
    assert {m.model for m in client.list().models} == {"reverie", "smollm2:135m", "all-minilm-l6-v2"}
    llm = client.show("smollm2:135m")
    assert llm.details.family == "llama" and llm.details.parameter_size == "135M" and llm.capabilities == ["completion"]
    assert (
        llm.modelinfo["llama.context_length"] == 8192
        and "<|im_start|>" in llm.template
        and "temperature" in llm.parameters
    )
    assert client.show("reverie:latest").capabilities == ["completion", "vision"]
    assert client.show("all-minilm-l6-v2").capabilities == ["embedding"]
    with pytest.raises(ollama.ResponseError) as missing:
        client.show("llama3.2")
    assert missing.value.status_code == 404 and "not found" in missing.value.error
    running = {m.model: m for m in client.ps().models}
    assert set(running) == {"reverie", "smollm2:135m", "all-minilm-l6-v2"}
    assert running["smollm2:135m"].size > 50_000_000 and running["smollm2:135m"].size_vram == 0
    assert running["smollm2:135m"].expires_at.year == 9999


def test_the_student_is_served_under_its_own_name_where_the_home_holds_one(client, served, openai_client):
    """`reverie-student` is listed once the home holds a student, answers with that student (the
    reply the backend gives in this process), and leaves `smollm2:135m` to the bundled model."""
    import shutil

    from reverie.home import Home
    from reverie.llm import LocalLLM, Sampling
    from reverie.llm.student import StudentLLM
    from reverie.models.student import StudentShape, build_student, save_student, weight_count

    _, settings = served
    assert "reverie-student" not in {m.model for m in client.list().models}
    teacher = LocalLLM(settings.paths.models)
    tiny = build_student(teacher, StudentShape(hidden=32, layers=1, heads=2, kv_heads=1, intermediate=64), seed=3)
    folder = Home(settings.home).student
    save_student(tiny, teacher._loaded()[1], folder, {"weights": weight_count(tiny)})
    try:
        listed = {m.model: m for m in client.list().models}
        assert listed["reverie-student"].size == (folder / "model.safetensors").stat().st_size
        assert listed["reverie-student"].details.parameter_size == f"{weight_count(tiny) / 1e6:.1f}M"
        assert "reverie-student" in {m.id for m in openai_client.models.list()}
        here = StudentLLM(folder).generate("Name a colour.", None, Sampling(temperature=0, top_k=1, max_new_tokens=8))
        there = client.generate(model="reverie-student", prompt="Name a colour.", options=GREEDY)
        assert there.response == here and there.eval_count <= 8
        bundled = client.generate(model="smollm2:135m", prompt="Name a colour.", options=GREEDY)
        assert bundled.response != here and bundled.response.strip()
    finally:
        shutil.rmtree(folder)
    assert "reverie-student" not in {m.model for m in client.list().models}


def test_embed_is_minilm(client, encoder):
    texts = ["glass cup", "rubber ball"]
    reply = client.embed(model="all-minilm-l6-v2", input=texts)
    assert np.allclose(np.array(reply.embeddings, np.float32), encoder.encode(texts), atol=1e-4)
    assert reply.prompt_eval_count == 4 and reply.total_duration > 0
    assert np.allclose(
        client.embed(model="all-minilm-l6-v2", input="glass cup").embeddings[0], reply.embeddings[0], atol=1e-6
    )
    assert np.allclose(
        client.embeddings(model="all-minilm-l6-v2", prompt="glass cup").embedding, reply.embeddings[0], atol=1e-6
    )
    with pytest.raises(ollama.ResponseError) as not_an_encoder:
        client.embed(model="smollm2:135m", input="glass cup")
    assert not_an_encoder.value.status_code == 400


# ---------- the reasoning model ----------
def test_reverie_streams_its_answer_token_by_token(client):
    messages = [{"role": "user", "content": SAMPLE_QUESTION}]
    whole = client.chat(model="reverie", messages=messages, options={"seed": 0}, stream=False)
    text = whole.message.content
    assert "glass cup --[made of]--> glass" in text and "brittle --[when dropped on a hard floor]--> shatters" in text
    assert whole.done_reason == "stop" and whole.prompt_eval_count == len(SAMPLE_QUESTION.split()) == 8
    assert whole.eval_count == len(text.split()) and whole.prompt_eval_duration > 0 and whole.eval_duration > 0
    parts = list(client.chat(model="reverie", messages=messages, options={"seed": 0}, stream=True))
    answer_line = text.split("\n")[0]
    assert (
        sum(1 for p in parts if p.message.content and p.message.content in answer_line) > 3
    )  # the sentence came in tokens
    assert (
        "".join(p.message.content for p in parts) == text
        and parts[-1].done
        and parts[-1].eval_count == whole.eval_count
    )


def test_reverie_says_when_the_graph_does_not_say(client):
    reply = client.chat(model="reverie", messages=[{"role": "user", "content": NO_FACT_QUESTION}], options={"seed": 0})
    text = reply.message.content
    assert text.startswith("The graph has no fact that answers this") and "not an answer" in text
    assert "- glass cup -> [made of] glass" in text  # the nearest chains, offered as what the graph holds


def test_reverie_cuts_its_reply_at_stop_and_num_predict(client):
    stopped = client.generate(
        model="reverie",
        prompt=SAMPLE_QUESTION,
        options={"seed": 0, "num_predict": 100, "stop": ["Chain ("]},
        stream=False,
    )
    assert stopped.done_reason == "stop" and "shatter" in stopped.response.lower() and "-->" not in stopped.response
    # num_predict counts the reply's words, wherever the pieces break them
    limits = ollama_api.ReplyLimits(stop=["Chain ("], max_words=3)
    sent = [limits.feed(piece) for piece in ["When a gl", "ass cup is", " dropped"]]
    assert "".join(sent) == "When a glass" and limits.reason == "length" and limits.ended
    limits = ollama_api.ReplyLimits(stop=["Chain ("], max_words=None)
    sent = [limits.feed(piece) for piece in ["It shatters.\n\nCha", "in (walker):", "\n1. glass"]] + [limits.flush()]
    assert "".join(sent) == "It shatters.\n\n" and limits.reason == "stop" and limits.ended


def test_a_follow_up_in_a_chat_keeps_its_subject(client):
    """A chat UI resends the whole conversation each turn; the follow-up names nothing, so it is
    answered about the first turn's subject, remembered in the conversation's session."""
    first = [{"role": "user", "content": "What happens if I drop a glass cup?"}]
    opening = client.chat(model="reverie", messages=first, options={"seed": 0}, stream=False).message.content
    assert "1. glass cup --[" in opening
    follow_up = first + [
        {"role": "assistant", "content": opening},
        {"role": "user", "content": "and if I hit it with a hammer?"},
    ]
    reply = client.chat(model="reverie", messages=follow_up, options={"seed": 0}, stream=False).message.content
    assert "1. glass cup --[" in reply and "--> cracks" in reply and reply != opening
    # the same words opening another conversation have no subject to continue from
    with pytest.raises(ollama.ResponseError, match="no entity in the graph matches") as refused:
        client.chat(
            model="reverie",
            messages=[{"role": "user", "content": "and if I hit it with a hammer?"}],
            options={"seed": 0},
            stream=False,
        )
    assert 400 <= refused.value.status_code < 500


def test_small_talk_with_the_reasoning_model_is_a_chat_reply(client):
    """ "hello" names nothing in the graph: the hub routes it to small talk and the LLM replies,
    with no chain, where it was once refused."""
    reply = client.chat(model="reverie", messages=[{"role": "user", "content": "hello!"}], stream=False)
    assert reply.message.content.strip() and "Chain (" not in reply.message.content
    streamed = list(client.chat(model="reverie", messages=[{"role": "user", "content": "thanks a lot!"}], stream=True))
    assert "".join(p.message.content for p in streamed).strip() and streamed[-1].done


# ---------- the bundled LLM ----------
def test_generation_reports_counts_and_a_true_done_reason(client):
    cut = client.generate(model="smollm2:135m", prompt="Tell me about cats.", options=GREEDY)
    assert cut.done_reason == "length" and cut.eval_count == 8 and cut.prompt_eval_count > 8
    assert cut.total_duration >= cut.prompt_eval_duration + cut.eval_duration > 0
    parts = list(
        client.chat(
            model="smollm2:135m",
            messages=[{"role": "user", "content": "Tell me about cats."}],
            stream=True,
            options=GREEDY,
        )
    )
    assert len(parts) > 2 and "".join(p.message.content for p in parts) == cut.response
    assert parts[-1].done_reason == "length" and parts[-1].eval_count == 8
    ended = client.generate(
        model="smollm2:135m", prompt="Name a colour.", options={"temperature": 0, "num_predict": 200}
    )
    assert ended.done_reason == "stop" and ended.eval_count < 200


def test_stop_and_top_p_are_honoured(client):
    free = client.generate(
        model="smollm2:135m", prompt="Tell me about cats.", options={"temperature": 0, "num_predict": 12}
    ).response
    word = free.split()[2]
    stopped = client.generate(
        model="smollm2:135m",
        prompt="Tell me about cats.",
        options={"temperature": 0, "num_predict": 12, "stop": [word]},
    )
    assert stopped.response == free[: free.index(word)] and stopped.done_reason == "stop"
    # a nucleus of almost no mass keeps only the likeliest token: hot sampling turns greedy
    narrow = client.generate(
        model="smollm2:135m",
        prompt="Tell me about cats.",
        options={"temperature": 1.5, "top_p": 1e-6, "seed": 3, "num_predict": 12},
    )
    assert narrow.response == free


def test_structured_output(client):
    menu = ["red", "green", "blue"]
    schema = {"type": "string", "enum": menu}
    reply = client.generate(model="smollm2:135m", prompt="Name a colour.", format=schema, options={"temperature": 0})
    assert json.loads(reply.response) in menu  # Ollama's structured output: JSON text
    pieces = [
        p.message.content
        for p in client.chat(
            model="smollm2:135m",
            messages=[{"role": "user", "content": "Name a colour."}],
            format=schema,
            stream=True,
            options={"temperature": 0},
        )
    ]
    assert "".join(pieces) == reply.response
    as_json = client.generate(
        model="smollm2:135m",
        prompt="Describe a cat as JSON with its name and colour.",
        format="json",
        options={"temperature": 0, "num_predict": 60},
    )
    assert isinstance(json.loads(as_json.response), dict) and as_json.done_reason == "stop"
    with pytest.raises(ollama.ResponseError) as other_schema:
        client.generate(
            model="smollm2:135m",
            prompt="Name a colour.",
            format={"type": "object", "properties": {"name": {"type": "string"}}},
        )
    assert other_schema.value.status_code == 400 and "not supported" in other_schema.value.error
    with pytest.raises(ollama.ResponseError) as on_reverie:
        client.generate(model="reverie", prompt=SAMPLE_QUESTION, format="json")
    assert on_reverie.value.status_code == 400


def test_an_empty_prompt_only_loads_the_model(client):
    assert client.generate(model="smollm2:135m", prompt="").done_reason == "load"
    assert client.chat(model="reverie", messages=[]).done_reason == "load"


# ---------- refusals and errors, in Ollama's shape ----------
@pytest.mark.parametrize(
    "path, body, says",
    [
        (
            "/api/chat",
            {
                "model": "smollm2:135m",
                "messages": [{"role": "user", "content": "hi"}],
                "tools": [{"type": "function", "function": {"name": "weather"}}],
            },
            "tools are not supported",
        ),
        (
            "/api/generate",
            {"model": "smollm2:135m", "prompt": "hi", "options": {"repeat_penalty": 1.3}},
            "repeat_penalty",
        ),
        ("/api/generate", {"model": "smollm2:135m", "prompt": "def f():", "suffix": "return 1"}, "suffix"),
        ("/api/generate", {"model": "smollm2:135m", "prompt": "hi", "raw": True}, "raw"),
        ("/api/generate", {"model": "smollm2:135m", "prompt": "hi", "images": ["aGk="]}, "does not support images"),
    ],
)
def test_unsupported_fields_are_refused_with_400(http, path, body, says):
    reply = http.post(path, json={**body, "stream": False})
    assert reply.status_code == 400 and says in reply.json()["error"] and set(reply.json()) == {"error"}


def test_options_without_effect_are_accepted(client):
    reply = client.generate(
        model="smollm2:135m",
        prompt="Name a colour.",
        keep_alive="5m",
        options={**GREEDY, "num_ctx": 2048, "num_thread": 2, "repeat_penalty": 1.0},
    )
    assert reply.done and reply.response


def test_errors_are_ollamas_shape(client, http, base_url):
    with pytest.raises(ollama.ResponseError) as missing:
        client.chat(model="llama3.2", messages=[{"role": "user", "content": "hi"}])
    assert missing.value.status_code == 404 and "not found" in missing.value.error
    with pytest.raises(ollama.ResponseError) as unmatched:
        client.generate(model="reverie", prompt="Quarterly mortgage refinancing schedule for 2031?", stream=False)
    assert unmatched.value.status_code == 422 and "no entity" in unmatched.value.error
    for reply, status in [
        (http.post("/api/generate", json={"model": "smollm2:135m", "prompt": "hi", "options": {"colour": 1}}), 422),
        (http.post("/api/chat", json={"model": "smollm2:135m", "messages": "hi"}), 422),
        (http.post("/api/pull", json={"model": "x"}), 404),
        (httpx.get(f"{base_url}/api/tags"), 401),
    ]:
        assert reply.status_code == status and set(reply.json()) == {"error"}, reply.text
    assert (
        "options.colour"
        in http.post("/api/generate", json={"model": "smollm2:135m", "options": {"colour": 1}}).json()["error"]
    )


def test_a_stream_that_fails_half_way_ends_with_an_error_line():
    """What Ollama sends when a reply breaks after it has started: a last line {"error": ...},
    which the official client raises, rather than a cut connection."""

    async def failing():
        yield "half a reply"
        raise BackendUnavailable("every LLM backend failed (local: gone)")

    async def lines():
        return [
            json.loads(line)
            async for line in ollama_api.ndjson_lines("chat", "smollm2:135m", failing(), time.perf_counter())
        ]

    sent = asyncio.run(lines())
    assert sent[0]["message"]["content"] == "half a reply" and sent[-1] == {
        "error": "every LLM backend failed (local: gone)"
    }

    async def whole():
        async def finished():
            yield "a reply"
            yield Finish(prompt_tokens=3, completion_tokens=2, reason="length")

        return await ollama_api.whole_reply("generate", "smollm2:135m", finished(), time.perf_counter())

    final = asyncio.run(whole())
    assert (
        final["response"] == "a reply"
        and final["done_reason"] == "length"
        and (final["prompt_eval_count"], final["eval_count"]) == (3, 2)
    )


def test_reverie_ollama_backend_needs_the_key_and_the_model(base_url):
    """Reverie's Ollama backend against Reverie (its generation contract is in test_llm.py)."""
    from reverie.llm.base import Sampling
    from reverie.llm.ollama_backend import OllamaLLM

    with pytest.raises(BackendUnavailable, match="401"):
        OllamaLLM(base_url, "smollm2:135m", timeout_s=60, api_key="wrong").generate(
            "hi", None, Sampling(temperature=0.0, top_k=40, max_new_tokens=8)
        )
    with pytest.raises(BackendUnavailable, match="no model 'llama3.2'"):
        OllamaLLM(base_url, "llama3.2", timeout_s=60, api_key=API_KEY).load()
