"""The chat code the Ollama and OpenAI faces share: a prompt or a conversation turned into a reply's
items (its text pieces, then a Finish), by the `reverie` model, the fractal network or the LLM. Each face writes the items
in its own wire format (ollama_api, openai_api), so the two cannot drift."""

import time
from collections.abc import AsyncIterator

from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from ray.exceptions import RayTaskError

from reverie.llm.base import Finish
from reverie.schemas import Query, Verdict
from reverie.serve import ollama_api
from reverie.serve.calls import Deployments, read


async def generate_items(deployments: Deployments, request: ollama_api.GenerateRequest) -> AsyncIterator:
    """One prompt: the reasoning model's reply or the LLM's pieces, then a Finish."""
    model = ollama_api.generating_model(request.model)
    request.refuse_unsupported()
    image = ollama_api.one_image(request.images, model)
    sampling = request.options.sampling()
    structured = ollama_api.structured_output(request.format, model)
    if model == ollama_api.REASONING_MODEL:
        return await _reasoned(deployments, request.prompt, sampling, "prompt", image)
    if model == ollama_api.FRACTAL_MODEL:
        return await _fractal(deployments, request.prompt, sampling)
    return await _generated(deployments, request.prompt, request.system, {**sampling, **structured}, model)


async def chat_items(
    deployments: Deployments, request: ollama_api.ChatRequest, user: str | None = None
) -> AsyncIterator:
    """One chat: the reasoning model's reply or the LLM's pieces, then a Finish."""
    model = ollama_api.generating_model(request.model)
    request.refuse_unsupported()
    image = ollama_api.one_image(request.messages[-1].images, model)
    try:
        system, prompt = request.system_and_prompt()
    except ValueError as exc:
        raise RequestValidationError(
            [{"type": "value_error", "loc": ("body", "messages"), "msg": str(exc), "input": None}]
        ) from None
    sampling = request.options.sampling()
    structured = ollama_api.structured_output(request.format, model)
    if model == ollama_api.REASONING_MODEL:
        return await _reasoned(
            deployments, request.messages[-1].content, sampling, "messages", image, request.session_id(user)
        )
    if model == ollama_api.FRACTAL_MODEL:
        last = next(m.content for m in reversed(request.messages) if m.role == "user")
        return await _fractal(deployments, last, sampling)
    return await _generated(deployments, prompt, system, {**sampling, **structured}, model)


async def _reasoned(
    deployments: Deployments,
    question: str,
    sampling: dict,
    field: str,
    image: str | None = None,
    session_id: str | None = None,
) -> AsyncIterator:
    """The reasoning model's reply: the dreams run before the reply opens (so that errors are
    4xx); then the LLM's answer sentence streams token by token, then the chain, then a Finish
    counting words. stop and num_predict cut the reply as they would an LLM's."""
    started = time.perf_counter()
    try:
        query = Query(question=question, seed=sampling["seed"], image=image, session_id=session_id, verbalize=False)
    except ValidationError as exc:
        raise RequestValidationError(
            [{"type": "value_error", "loc": ("body", field), "msg": exc.errors()[0]["msg"], "input": None}]
        ) from None
    verdict: Verdict = await read(deployments.pipeline.answer, query)
    reasoned = time.perf_counter()

    async def reply() -> AsyncIterator[str]:
        from reverie.llm.verbalize import first_sentence

        if verdict.route == "small-talk":  # plain chat: the LLM's reply, streamed
            from reverie.answer import SMALL_TALK_SYSTEM

            options = {
                k: v for k, v in sampling.items() if k in ("temperature", "top_k", "top_p", "seed") and v is not None
            }
            async for item in deployments.llm.options(stream=True).generate.remote(
                question, SMALL_TALK_SYSTEM, options
            ):
                if isinstance(item, str):
                    yield item
            return
        if verdict.chain is None:  # the graph does not say: its own sentence, no LLM to make it sound sure
            yield verdict.answer
        else:
            written = ollama_api.FirstSentence()
            answer = ""
            async for item in deployments.llm.options(stream=True).stream_answer.remote(
                verdict.resolved_question or query.question, verdict.chain, query.seed
            ):
                if "token" in item:
                    yield written.feed(item["token"])
                else:
                    answer = item["answer"]
            if (
                first_sentence(written.text[: written.sent]) != answer
            ):  # the checked sentence is not what the model wrote
                yield f"\n\n(Checked against the chain, the answer is: {answer})"
        for line in ollama_api.chain_lines(verdict):
            yield "\n" + line

    async def items() -> AsyncIterator:
        limits = ollama_api.ReplyLimits(sampling["stop"], sampling["num_predict"])
        pieces = reply()
        try:
            async for piece in pieces:
                if piece := limits.feed(piece):
                    yield piece
                if limits.ended:
                    break
        finally:
            await pieces.aclose()
        if tail := limits.flush():
            yield tail
        yield Finish(
            prompt_tokens=ollama_api.words(query.question),
            completion_tokens=ollama_api.words(limits.text),
            reason=limits.reason,
            prompt_ns=int((reasoned - started) * 1e9),
            completion_ns=int((time.perf_counter() - reasoned) * 1e9),
        )

    return items()


async def _fractal(deployments: Deployments, message: str, sampling: dict) -> AsyncIterator:
    """The fractal network's reply to one message (greedy unless a temperature is given; seeded),
    then a Finish counting words. Its reply is whole before the reply opens, so errors (no network
    yet: 404) are HTTP errors; stop strings cut it, and "length" says it ran to num_predict words."""
    from reverie.models.fractal_qa import words as tokens

    started = time.perf_counter()
    limit = sampling["num_predict"] or ollama_api.FRACTAL_WORDS
    text: str = await read(deployments.fractal.reply, message, sampling["temperature"] or 0.0, sampling["seed"], limit)
    replied = time.perf_counter()
    limits = ollama_api.ReplyLimits(sampling["stop"], None)
    said = limits.feed(text) + limits.flush()
    reason = "length" if not limits.stops.stopped and len(tokens(text)) >= limit else "stop"

    async def items() -> AsyncIterator:
        if said:
            yield said
        yield Finish(
            prompt_tokens=ollama_api.words(message),
            completion_tokens=ollama_api.words(said),
            reason=reason,
            prompt_ns=0,
            completion_ns=int((replied - started) * 1e9),
        )

    return items()


async def _generated(
    deployments: Deployments, prompt: str, system: str | None, options: dict, model: str
) -> AsyncIterator:
    """The LLM's pieces, then its Finish. The first is awaited here, so that a failure before
    the reply opens (no backend can answer) is an HTTP error rather than an error line."""
    backend = ollama_api.GENERATING_BACKENDS[model]
    items = deployments.llm.options(stream=True).generate.remote(prompt, system, options, backend)
    try:
        first = await items.__anext__()
    except RayTaskError as exc:
        from reverie.pipeline import user_error

        raise user_error(exc) from None

    async def chained() -> AsyncIterator:
        yield first
        async for item in items:
            yield item

    return chained()
