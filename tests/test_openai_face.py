"""The OpenAI face over real HTTP on 127.0.0.1, driven by the official `openai` client."""

import asyncio
import json

import numpy as np
import openai
import pytest

from reverie.data.world import NO_FACT_QUESTION, SAMPLE_QUESTION
from reverie.llm.chain import BackendUnavailable
from reverie.serve import openai_api
from testkit.servers import API_KEY

pytestmark = pytest.mark.ray

QUESTION = [{"role": "user", "content": SAMPLE_QUESTION}]


@pytest.fixture(scope="module")
def client(served):
    return openai.OpenAI(base_url=f"{served[0]}/v1", api_key=API_KEY, max_retries=0, timeout=120)


def test_models_lists_reasoning_llm_and_embeddings(client):
    assert {m.id for m in client.models.list()} == {"reverie", "smollm2:135m", "all-minilm-l6-v2"}
    assert client.models.retrieve("smollm2:135m").id == "smollm2:135m"


def test_streamed_chat_with_the_reasoning_model(client):
    """(test_ollama_face.py checks that a streamed reply joins to the whole one: one code serves both faces.)"""
    chunks = list(
        client.chat.completions.create(
            model="reverie", seed=0, messages=QUESTION, stream=True, stream_options={"include_usage": True}
        )
    )
    assert chunks[0].choices[0].delta.role == "assistant" and chunks[0].object == "chat.completion.chunk"
    assert chunks[-2].choices[0].finish_reason == "stop" and chunks[-1].choices == []
    contents = [c.choices[0].delta.content for c in chunks[:-1] if c.choices[0].delta.content]
    whole = "".join(contents)
    assert "glass cup --[made of]--> glass" in whole and "brittle --[when dropped on a hard floor]--> shatters" in whole
    assert len(contents) > 5  # the answer came token by token, then the chain
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (8, len(whole.split()))  # words


def test_the_reasoning_model_says_when_the_graph_does_not_say(client):
    reply = client.chat.completions.create(
        model="reverie", seed=0, messages=[{"role": "user", "content": NO_FACT_QUESTION}]
    )
    text = reply.choices[0].message.content
    assert text.startswith("The graph has no fact that answers this") and "Nearest chains" in text
    assert "glass cup" in text and reply.choices[0].finish_reason == "stop"


def test_chat_with_the_llm_reports_usage_and_length(client):
    reply = client.chat.completions.create(
        model="smollm2:135m", messages=[{"role": "user", "content": "Tell me about cats."}], max_tokens=6, temperature=0
    )
    assert (
        reply.choices[0].finish_reason == "length"
        and reply.usage.completion_tokens == 6
        and reply.usage.prompt_tokens > 6
    )
    as_json = client.chat.completions.create(
        model="smollm2:135m",
        temperature=0,
        max_tokens=60,
        response_format={"type": "json_object"},
        messages=[{"role": "user", "content": "Describe a cat as JSON with its name and colour."}],
    )
    assert isinstance(json.loads(as_json.choices[0].message.content), dict)


def test_legacy_completions_with_both_models(client):
    cut = client.completions.create(model="smollm2:135m", prompt="Tell me about cats.", max_tokens=6, temperature=0)
    assert (
        cut.object == "text_completion"
        and cut.choices[0].finish_reason == "length"
        and cut.usage.completion_tokens == 6
    )
    chunks = list(
        client.completions.create(
            model="smollm2:135m", prompt=["Tell me about cats."], max_tokens=6, temperature=0, stream=True
        )
    )
    assert len(chunks) > 2 and "".join(c.choices[0].text for c in chunks) == cut.choices[0].text
    assert chunks[-1].choices[0].finish_reason == "length"
    word = cut.choices[0].text.split()[1]
    stopped = client.completions.create(
        model="smollm2:135m", prompt="Tell me about cats.", max_tokens=6, temperature=0, stop=[word]
    )
    assert (
        stopped.choices[0].text == cut.choices[0].text[: cut.choices[0].text.index(word)]
        and stopped.choices[0].finish_reason == "stop"
    )
    answered = client.completions.create(model="reverie", prompt=SAMPLE_QUESTION, seed=0)
    assert "brittle --[when dropped on a hard floor]--> shatters" in answered.choices[0].text
    assert answered.choices[0].finish_reason == "stop" and answered.usage.prompt_tokens == 8


def test_embeddings_are_minilm_vectors(client, encoder):
    reply = client.embeddings.create(model="all-minilm-l6-v2", input=["glass cup", "rubber ball"])
    vectors = np.array([d.embedding for d in reply.data], np.float32)
    assert vectors.shape == (2, 384) and reply.usage.prompt_tokens == 4
    assert np.allclose(vectors, encoder.encode(["glass cup", "rubber ball"]), atol=1e-4)


def test_unsupported_fields_are_refused_with_400(client):
    tools = [{"type": "function", "function": {"name": "weather", "parameters": {"type": "object", "properties": {}}}}]
    for refused, says in [
        ({"tools": tools}, "tools are not supported"),
        ({"n": 2}, "n"),
        ({"presence_penalty": 0.5}, "presence_penalty"),
        ({"logprobs": True}, "logprobs"),
    ]:
        with pytest.raises(openai.BadRequestError) as caught:
            client.chat.completions.create(
                model="smollm2:135m", messages=[{"role": "user", "content": "hi"}], **refused
            )
        assert says in caught.value.body["message"] and caught.value.body["type"] == "invalid_request_error"
    with pytest.raises(openai.BadRequestError):
        client.completions.create(model="smollm2:135m", prompt="def f():", suffix="return 1")
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="reverie", messages=QUESTION, response_format={"type": "json_object"})
    with pytest.raises(openai.BadRequestError):  # a schema that is not a menu of strings
        client.chat.completions.create(
            model="smollm2:135m",
            messages=[{"role": "user", "content": "hi"}],
            response_format={
                "type": "json_schema",
                "json_schema": {
                    "name": "cat",
                    "schema": {"type": "object", "properties": {"name": {"type": "string"}}},
                },
            },
        )


def test_errors_in_openai_shape(client):
    with pytest.raises(openai.NotFoundError) as missing:
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert "not found" in missing.value.body["message"] and missing.value.body["code"] == 404
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="text-embedding-3-small", input="x")
    with pytest.raises(openai.UnprocessableEntityError):
        client.chat.completions.create(
            model="reverie", messages=[{"role": "user", "content": "Quarterly mortgage refinancing schedule for 2031?"}]
        )
    with pytest.raises(
        openai.UnprocessableEntityError
    ) as invalid:  # a field OpenAI does not define: 422, in OpenAI's shape
        client.chat.completions.create(
            model="smollm2:135m", messages=[{"role": "user", "content": "hi"}], extra_body={"colour": "red"}
        )
    assert "colour" in invalid.value.body["message"]
    with pytest.raises(openai.AuthenticationError) as unauthorised:
        openai.OpenAI(base_url=client.base_url, api_key="wrong", max_retries=0).models.list()
    assert unauthorised.value.body["type"] == "authentication_error"


def test_a_stream_that_fails_half_way_ends_with_an_error_event():
    """A failure after the reply opened is an SSE event {"error": {...}}, not a cut connection."""

    async def failing():
        yield "half a reply"
        raise BackendUnavailable("every LLM backend failed (local: gone)")

    async def events():
        return [chunk async for chunk in openai_api.sse_chunks("chat", "smollm2:135m", failing(), include_usage=False)]

    sent = [json.loads(e.decode().removeprefix("data: ")) for e in asyncio.run(events())]
    assert sent[1]["choices"][0]["delta"]["content"] == "half a reply"
    assert sent[-1] == {
        "error": {"message": "every LLM backend failed (local: gone)", "type": "server_error", "code": 503}
    }
