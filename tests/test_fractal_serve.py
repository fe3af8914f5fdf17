"""The fractal network served (issue 28), over real HTTP on 127.0.0.1 against the session's app
(which runs with an API key): Reverie's /v1/fractal routes, the `fractal` model on the OpenAI and
Ollama faces, `talk` against the live OpenAI face, and the page's Fractal view in headless Chromium.

The networks trained here are small (a dozen pairs, or the world's facts for one epoch), so the
module costs seconds of training. The home is the session's: the network is removed at the end, so
that the other modules see the model lists they expect.
"""

from __future__ import annotations

import json
import time

import httpx
import openai
import pytest

from reverie.fractal import FRACTAL_MODEL, FractalAssistant, talk
from testkit.servers import API_KEY

pytestmark = pytest.mark.ray

PAIRS = [
    {"question": "What is a glass cup made of?", "answer": "glass"},
    {"question": "What happens when a glass cup is dropped?", "answer": "it shatters"},
    {"question": "What colour is the sky?", "answer": "blue"},
    {"question": "What do cats drink?", "answer": "milk"},
    {"question": "Where do fish live?", "answer": "in the water"},
    {"question": "What is ice made of?", "answer": "frozen water"},
    {"question": "What do bees make?", "answer": "honey"},
    {"question": "What does a rubber ball do when dropped?", "answer": "it bounces"},
]
OTHER_PAIRS = [
    {"question": "Who wrote the song?", "answer": "the band"},
    {"question": "What is the capital of the moon?", "answer": "no capital"},
]
MESSAGE = "What is a glass cup made of?"


def wait_trained(http: httpx.Client, timeout: float = 180) -> dict:
    """GET /v1/fractal until the training ends; its status then."""
    deadline = time.monotonic() + timeout
    while True:
        status = http.get("/v1/fractal").json()
        if status["training"]["state"] != "running":
            return status
        assert time.monotonic() < deadline, status["training"]
        time.sleep(0.2)


def train(http: httpx.Client, **body) -> dict:
    started = http.post("/v1/fractal/train", json=body)
    assert started.status_code == 202, started.text
    assert started.json()["state"] == "running"
    status = wait_trained(http)
    assert status["training"]["state"] == "done", status["training"]
    return status


@pytest.fixture(scope="module")
def home(served, http):
    """The served home, without a fractal network before the module and after it."""
    from reverie.home import Home

    home = Home(served[1].home)

    def clear():
        wait_trained(http)
        for path in (home.fractal, home.fractal_plot):
            path.unlink(missing_ok=True)

    clear()
    yield home
    clear()


@pytest.fixture(scope="module")
def local(home, encoder):
    """The same network read in this process: what the server's replies must be."""
    return FractalAssistant(home.root, encode=encoder.encode)


@pytest.fixture(scope="module")
def trained(home, http):
    """The status once the home's network is trained on PAIRS over HTTP."""
    return train(http, pairs=PAIRS, epochs=30)


def test_before_training_nothing_is_served(home, http):
    status = http.get("/v1/fractal").json()
    assert status["trained"] is False and status["training"]["state"] in ("idle", "done")
    assert FRACTAL_MODEL not in {m["id"] for m in http.get("/v1/models").json()["data"]}
    assert FRACTAL_MODEL not in {m["name"] for m in http.get("/api/tags").json()["models"]}
    chat = http.post("/v1/fractal/chat", json={"message": MESSAGE})
    assert chat.status_code == 404 and "train one" in chat.json()["detail"]
    completion = http.post(
        "/v1/chat/completions", json={"model": "fractal", "messages": [{"role": "user", "content": "hi"}]}
    )
    assert completion.status_code == 404 and "no fractal network" in completion.json()["error"]["message"]
    assert http.get("/v1/fractal/state").status_code == 404
    assert http.get("/v1/fractal/plot.png").status_code == 404


@pytest.mark.parametrize(
    "body, says",
    [
        ({"pairs": [{"question": "Where?"}]}, 'pairs, entry 0: needs exactly "question" and "answer"'),
        ({"pairs": [*PAIRS[:2], {"question": " ", "answer": "x"}]}, "pairs, entry 2: question must be non-empty text"),
        ({"pairs": []}, "must be a non-empty JSON list"),
    ],
)
def test_bad_pairs_get_422_and_nothing_starts(home, http, body, says):
    before = http.get("/v1/fractal").json()
    reply = http.post("/v1/fractal/train", json={**body, "epochs": 1})
    assert reply.status_code == 422 and says in reply.json()["detail"], reply.text
    assert http.get("/v1/fractal").json() == before
    assert not home.fractal.exists()


def test_bad_settings_get_422_naming_the_field(http):
    for body, field in (({"graphs": ["mars"]}, "graphs"), ({"epochs": 0}, "epochs"), ({"pair": PAIRS}, "pair")):
        reply = http.post("/v1/fractal/train", json=body)
        assert reply.status_code == 422 and field in {str(p) for e in reply.json()["detail"] for p in e["loc"]}
    assert http.post("/v1/fractal/chat", json={"message": MESSAGE, "temperature": 3}).status_code == 422


def test_train_over_http_then_the_status_shows_the_network(trained, http, home):
    assert trained["trained"] is True and trained["nodes"] >= 1 and trained["depth"] >= 1
    assert trained["weights"] > 0 and trained["complexity"] is not None
    assert trained["epochs"] == 30 and len(trained["history"]) == 30 and trained["trained_on"] == {"file": 8}
    job = trained["training"]
    assert (job["epoch"], job["epochs"], job["pairs"]) == (30, 30, 8) and job["report"]["nodes"] == trained["nodes"]
    assert home.fractal.is_file()
    plot = http.get("/v1/fractal/plot.png")
    assert plot.status_code == 200 and plot.headers["content-type"] == "image/png"
    assert plot.content.startswith(b"\x89PNG")


def test_chat_replies_as_the_network_does_in_this_process(trained, http, local):
    reply = http.post("/v1/fractal/chat", json={"message": MESSAGE})
    assert reply.status_code == 200 and reply.json()["model"] == FRACTAL_MODEL
    assert reply.json()["reply"] == local.reply(MESSAGE)
    sampled = [
        http.post("/v1/fractal/chat", json={"message": MESSAGE, "temperature": 1.5, "seed": 7}).json()["reply"]
        for _ in range(2)
    ]
    assert sampled[0] == sampled[1] == local.reply(MESSAGE, temperature=1.5, seed=7)
    assert http.post("/v1/fractal/chat", json={"message": "   "}).status_code == 400


def test_fractal_is_a_model_on_the_openai_and_ollama_faces(trained, http, base_url, local):
    greedy = local.reply(MESSAGE)
    assert FRACTAL_MODEL in {m["id"] for m in http.get("/v1/models").json()["data"]}
    [tag] = [m for m in http.get("/api/tags").json()["models"] if m["name"] == FRACTAL_MODEL]
    assert tag["details"]["family"] == "fractal" and tag["size"] == local.home.fractal.stat().st_size
    assert tag["details"]["parameter_size"] == f"{trained['weights'] / 1e6:.2f}M"

    client = openai.OpenAI(base_url=f"{base_url}/v1", api_key=API_KEY, max_retries=0, timeout=120)
    question = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": MESSAGE}]
    whole = client.chat.completions.create(model=FRACTAL_MODEL, messages=question, temperature=0)
    assert whole.choices[0].message.content == greedy and whole.model == FRACTAL_MODEL
    assert whole.usage.completion_tokens == len(greedy.split())
    chunks = list(client.chat.completions.create(model=FRACTAL_MODEL, messages=question, stream=True, seed=1))
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == greedy  # no temperature: greedy
    sampled = client.chat.completions.create(model=FRACTAL_MODEL, messages=question, temperature=1.5, seed=7)
    assert sampled.choices[0].message.content == local.reply(MESSAGE, temperature=1.5, seed=7)
    cut = client.chat.completions.create(model=FRACTAL_MODEL, messages=question, max_tokens=1)
    assert len(cut.choices[0].message.content.split()) <= 1
    assert cut.choices[0].finish_reason == ("length" if cut.choices[0].message.content else "stop")

    chat = http.post(
        "/api/chat",
        json={"model": "fractal:latest", "messages": [{"role": "user", "content": MESSAGE}], "stream": False},
    ).json()
    assert chat["message"]["content"] == greedy and chat["done"] and chat["done_reason"] == "stop"
    lines = [
        json.loads(line)
        for line in http.post("/api/generate", json={"model": FRACTAL_MODEL, "prompt": MESSAGE}).text.splitlines()
    ]
    assert "".join(line["response"] for line in lines) == greedy and lines[-1]["done"]
    refused = http.post(
        "/api/generate", json={"model": FRACTAL_MODEL, "prompt": MESSAGE, "format": "json", "stream": False}
    )
    assert refused.status_code == 400 and "replies in text" in refused.json()["error"]


def test_talk_with_the_llm_on_the_live_openai_face(trained, base_url, local):
    said = []
    lines = talk(local, server=base_url, model="smollm2:135m", turns=2, api_key=API_KEY, on_line=said.append)
    assert [(line.turn, line.speaker) for line in lines] == [
        (0, "opening"),
        (1, "smollm2:135m"),
        (1, FRACTAL_MODEL),
        (2, "smollm2:135m"),
        (2, FRACTAL_MODEL),
    ]
    assert said == lines and all(line.text.strip() for line in lines)
    assert lines[2].text == local.reply(lines[1].text, temperature=0.7, seed=1)


def test_state_download_upload_round_trip_and_a_bad_upload_changes_nothing(trained, http, local):
    saved = http.get("/v1/fractal/state")
    assert saved.status_code == 200 and saved.headers["content-type"] == "application/octet-stream"
    assert "fractal.safetensors" in saved.headers["content-disposition"]
    assert saved.content == local.home.fractal.read_bytes()
    greedy = local.reply(MESSAGE)

    for junk in (b"not a state file", b"", json.dumps(PAIRS).encode()):
        refused = http.put("/v1/fractal/state", content=junk, headers={"content-type": "application/octet-stream"})
        assert refused.status_code == 422 and "state" in refused.json()["detail"], refused.text
        assert "/tmp" not in refused.json()["detail"]  # the server's paths stay on the server
    assert http.get("/v1/fractal/state").content == saved.content, "a bad upload touches nothing"

    other = train(http, pairs=OTHER_PAIRS, epochs=3)
    assert http.get("/v1/fractal/state").content != saved.content and other["trained_on"] == {"file": 2}
    loaded = http.put("/v1/fractal/state", content=saved.content, headers={"content-type": "application/octet-stream"})
    assert loaded.status_code == 200 and loaded.json()["trained_on"] == {"file": 8}
    assert loaded.json()["nodes"] == trained["nodes"] and loaded.json()["history"] == trained["history"]
    assert http.get("/v1/fractal/state").content == saved.content
    assert http.post("/v1/fractal/chat", json={"message": MESSAGE}).json()["reply"] == greedy
    form = http.put("/v1/fractal/state", files={"file": ("fractal.safetensors", saved.content)})
    assert form.status_code == 200 and form.json()["trained_on"] == {"file": 8}


def test_one_training_at_a_time_on_the_graphs_facts(trained, http, home):
    """The world's facts for one epoch (hundreds of pairs: the first is still encoding its
    questions when the second asks), then the file's network is put back."""
    saved = http.get("/v1/fractal/state").content
    first = http.post("/v1/fractal/train", json={"graphs": ["world"], "epochs": 1})
    assert first.status_code == 202
    second = http.post("/v1/fractal/train", json={"pairs": PAIRS, "epochs": 1})
    assert second.status_code == 409 and "training" in second.json()["detail"]
    busy = http.put("/v1/fractal/state", content=saved)
    assert busy.status_code == 409
    status = wait_trained(http)
    assert status["training"]["state"] == "done" and status["trained_on"] == {"world": status["training"]["pairs"]}
    assert status["training"]["pairs"] > 500 and status["training"]["report"]["held_out"] > 0
    assert http.put("/v1/fractal/state", content=saved).status_code == 200


def test_every_write_needs_the_key_and_deep_bodies_get_a_4xx(trained, base_url, http):
    for method, path in (("POST", "/v1/fractal/train"), ("POST", "/v1/fractal/chat"), ("PUT", "/v1/fractal/state")):
        reply = httpx.request(method, base_url + path, json={"message": "hi"}, timeout=30)
        assert reply.status_code == 401 and "API key" in reply.json()["detail"]
    for path in ("/v1/fractal/train", "/v1/fractal/chat"):
        deep = "[" * 25_000 + "]" * 25_000
        reply = http.post(path, content=deep.encode(), headers={"content-type": "application/json"})
        assert 400 <= reply.status_code < 500 and reply.status_code != 413, reply.text[:200]


# ------------------------------------------------------------------------------------ the page


@pytest.fixture(scope="module")
def driver(served):
    from testkit.browser import chromium

    with chromium() as driver:
        yield driver


def test_the_fractal_view_trains_on_a_file_and_chats(trained, driver, base_url, http, local, tmp_path):
    from selenium.webdriver.common.by import By

    from testkit.browser import wait_for

    def find(css: str):
        return driver.find_element(By.CSS_SELECTOR, css)

    driver.get(f"{base_url}/ui/#fractal")
    driver.execute_script("sessionStorage.clear()")
    driver.get("about:blank")
    driver.get(f"{base_url}/ui/#fractal")
    wait_for(driver, lambda d: find("#key-dialog").get_attribute("open") is not None, 30)
    find("#key-input").send_keys(API_KEY)
    find("#key-save").click()
    wait_for(driver, lambda d: "nodes" in find("#fractal-summary").text, 30)

    qa = tmp_path / "qa.json"
    qa.write_text(json.dumps(PAIRS[:4]))
    find("#fractal-file").send_keys(str(qa))
    find("#fractal-epochs").clear()
    find("#fractal-epochs").send_keys("12")
    find("#fractal-train").click()
    wait_for(driver, lambda d: "done: 12 epochs on 4 pairs" in find("#fractal-progress-text").text, 120)
    assert find("#fractal-progress").get_attribute("value") == "12"
    status = http.get("/v1/fractal").json()
    assert status["trained_on"] == {"file": 4} and status["epochs"] == 12
    wait_for(driver, lambda d: f"{status['nodes']} nodes" in find("#fractal-summary").text, 30)
    wait_for(driver, lambda d: (find("#fractal-plot").get_attribute("src") or "").startswith("blob:"), 30)
    assert driver.execute_script("return document.querySelector('#fractal-plot').naturalWidth") > 0

    find("#fractal-message").send_keys(MESSAGE)
    find("#fractal-send").click()
    wait_for(driver, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#fractal-chat .bubble.fractal")) == 1, 60)
    bubble = find("#fractal-chat .bubble.fractal").text
    assert bubble == local.reply(MESSAGE), "greedy at the slider's 0"

    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"question": "q"}]))
    find("#fractal-file").send_keys(str(bad))
    find("#fractal-train").click()
    wait_for(driver, lambda d: "entry 0" in find("#fractal-error").text, 30)
    assert http.get("/v1/fractal").json()["trained_on"] == {"file": 4}, "a bad file trains nothing"
