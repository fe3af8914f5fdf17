"""The OpenAI face over real HTTP on 127.0.0.1, driven by the official `openai` client."""
import numpy as np
import openai
import pytest
from servers import API_KEY

from reverie.graph_store.world import SAMPLE_QUESTION

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def client(served):
    return openai.OpenAI(base_url=f"{served[0]}/v1", api_key=API_KEY, max_retries=0, timeout=120)


def test_models_lists_reasoning_llm_and_embeddings(client):
    assert {m.id for m in client.models.list()} == {"reverie", "smollm2:135m", "all-minilm-l6-v2"}


def test_chat_with_the_reasoning_model(client):
    reply = client.chat.completions.create(model="reverie", seed=0, messages=[{"role": "user", "content": SAMPLE_QUESTION}])
    text = reply.choices[0].message.content
    assert reply.choices[0].finish_reason == "stop" and reply.object == "chat.completion"
    assert "glass cup --[made of]--> glass" in text and "brittle --[when dropped on a hard floor]--> shatters" in text


def test_streamed_chat_joins_to_the_whole_reply(client):
    messages = [{"role": "user", "content": SAMPLE_QUESTION}]
    whole = client.chat.completions.create(model="reverie", seed=0, messages=messages).choices[0].message.content
    chunks = list(client.chat.completions.create(model="reverie", seed=0, messages=messages, stream=True))
    assert chunks[0].choices[0].delta.role == "assistant" and chunks[-1].choices[0].finish_reason == "stop"
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == whole


def test_embeddings_are_minilm_vectors(client, encoder):
    reply = client.embeddings.create(model="all-minilm-l6-v2", input=["glass cup", "rubber ball"])
    vectors = np.array([d.embedding for d in reply.data], np.float32)
    assert vectors.shape == (2, 384)
    assert np.allclose(vectors, encoder.encode(["glass cup", "rubber ball"]), atol=1e-4)


def test_errors_in_openai_shape(client):
    with pytest.raises(openai.NotFoundError) as missing:
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert "not found" in missing.value.body["message"]
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="text-embedding-3-small", input="x")
    with pytest.raises(openai.UnprocessableEntityError):
        client.chat.completions.create(model="reverie", messages=[{"role": "user", "content": "Quarterly mortgage refinancing schedule for 2031?"}])
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=client.base_url, api_key="wrong", max_retries=0).models.list()
