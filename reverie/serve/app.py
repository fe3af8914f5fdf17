"""The HTTP API on Ray Serve: a FastAPI ingress over three deployments, composed by handles.

    ReverieAPI (ingress, FastAPI) --handle--> Pipeline    link, retrieve, dream (rollout tasks), arbitrate;
                                 |                          ingest, feedback, entity views
                                 |                          --handle--> TextEncoder   (encode)
                                 |                          --handle--> ImageEncoder  (images -> vectors)
                                 |                          --handle--> LLM           (verbalize)
                                 +--handle--> LLM           streamed answers, Ollama generation

Pipeline and TextEncoder autoscale (see config.yaml beside this file); the graph store, arbiter,
memory and feedback log stay single named actors, because the embedded Qdrant store takes a lock.
Errors are JSON: a ReverieError maps to its status with {"detail": message}; a body that fails
validation gets 422 naming the field. Request bodies are parsed as JSON, form data or text:
nothing a client sends is unpickled.
"""

import json
import re
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from pydantic import ValidationError
from ray import serve
from ray.exceptions import RayTaskError
from ray.serve.handle import DeploymentHandle

from reverie.config import Settings, offline_hub
from reverie.errors import IngestError, ReverieError, UnsupportedMediaError
from reverie.llm.verbalizer import Verbalizer
from reverie.schemas import EntityView, Feedback, FeedbackRecord, GraphStats, IngestReport, IngestRequest, Query, Verdict
from reverie.serve import ollama_api, openai_api
from reverie.serve.guard import Guard, RequestRecorder
from reverie.serve.metrics import PROMETHEUS_TEXT, cluster_metrics

APP_NAME = "reverie"
SSE = "text/event-stream"

api = FastAPI(title="Reverie", version="0.1.0", description="Ask a knowledge graph; get an answer with its chain and provenance.")


def _openapi() -> dict:
    """FastAPI's schema, plus the models of bodies these routes parse by hand (JSON or multipart)."""
    if api.openapi_schema is None:
        schema = FastAPI.openapi(api)
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        for model in (Query, IngestRequest):
            body = model.model_json_schema(ref_template="#/components/schemas/{model}")
            components.update(body.pop("$defs", {}))
            components[model.__name__] = body
        api.openapi_schema = schema
    return api.openapi_schema


api.openapi = _openapi


@api.exception_handler(ReverieError)
async def _reverie_error(request: Request, exc: ReverieError) -> JSONResponse:
    if request.url.path in openai_api.PATHS:
        return JSONResponse(status_code=exc.status, content=openai_api.error_body(exc.message, exc.status))
    content = {"detail": exc.message}
    if request.url.path.startswith("/api/"):
        content["error"] = exc.message  # the key Ollama clients read
    return JSONResponse(status_code=exc.status, content=content)


async def _result(response):
    """Await a deployment's reply, re-raising the user's error rather than Ray's wrapper."""
    from reverie.pipeline import user_error

    try:
        return await response
    except RayTaskError as exc:
        raise user_error(exc) from None


def _validation_error(exc: ValidationError) -> RequestValidationError:
    """A pydantic error in a body parsed by hand, shaped as FastAPI's own 422 (loc starts at body)."""
    errors = [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False, include_context=False, include_input=False)]
    return RequestValidationError(errors)


def _sse(event: str, data: dict) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


@serve.deployment(name="TextEncoder", ray_actor_options={"num_cpus": 0},
                  autoscaling_config={"min_replicas": 1, "max_replicas": 2, "target_ongoing_requests": 8})
class EncoderDeployment:
    def __init__(self, threads: int):
        import torch

        from reverie.encoders import TextEncoder

        offline_hub()
        torch.set_num_threads(threads)  # Ray gives a replica that reserves no CPU one thread
        self.encoder = TextEncoder()

    def encode(self, texts: list[str]) -> np.ndarray:
        return self.encoder.encode(texts)


@serve.deployment(name="ImageEncoder", ray_actor_options={"num_cpus": 0}, max_ongoing_requests=16)
class ImageEncoderDeployment:
    """The image tower, hosted as the text encoder is; it loads on the first image (a server
    without a trained tower still starts, and an image question says how to get one)."""

    def __init__(self, settings: dict):
        import torch

        from reverie.encoders.image import ImageEncoder, tower_path

        self.settings = Settings(**settings)
        torch.set_num_threads(self.settings.model_threads)
        self.encoder = ImageEncoder(tower_path(self.settings), self.settings.max_image_pixels, arch=self.settings.clip_arch)

    def encode(self, images: list[bytes]) -> np.ndarray:
        return self.encoder.encode(images)

    def codebook(self) -> np.ndarray | None:
        return self.encoder.codebook()


# The LLM actor's class, as a deployment: load before taking requests, not on the first question.
LLMDeployment = serve.deployment(name="LLM", ray_actor_options={"num_cpus": 0}, max_ongoing_requests=8)(Verbalizer)


@serve.deployment(name="Pipeline", ray_actor_options={"num_cpus": 0}, health_check_period_s=10, health_check_timeout_s=60,
                  autoscaling_config={"min_replicas": 1, "max_replicas": 2, "target_ongoing_requests": 4})
class PipelineDeployment:
    """The Pipeline: its rollouts run as Ray tasks, so a replica mostly waits and reserves no CPU."""

    def __init__(self, settings: dict, encoder: DeploymentHandle, llm: DeploymentHandle, images: DeploymentHandle):
        import ray

        from reverie.actors import Services
        from reverie.pipeline import Pipeline

        self.settings = Settings(**settings)
        self.pipeline = Pipeline(self.settings, Services.start(self.settings, encoder=encoder, llm=llm, images=images))
        ray.get(self.pipeline.services.store.open_index.remote())

    def check_health(self) -> None:
        import ray

        ray.get(self.pipeline.services.store.stats.remote(), timeout=30)

    def answer(self, query: Query) -> Verdict:
        return self.pipeline.answer(query)

    def ingest(self, request: IngestRequest) -> IngestReport:
        return self.pipeline.ingest(request.triples, request.entities, source=request.source)

    def feedback(self, feedback: Feedback) -> FeedbackRecord:
        return self.pipeline.feedback(feedback)

    def entity(self, name: str) -> EntityView:
        return self.pipeline.entity(name)

    def stats(self) -> GraphStats:
        return self.pipeline.stats()

    def embed(self, texts: list[str]) -> np.ndarray:
        from reverie.pipeline import get

        return get(self.pipeline.services.encoder.encode.remote(texts))


_QUERY_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/Query"}},
            "multipart/form-data": {
                "schema": {"type": "object", "required": ["question"], "properties": {
                    "question": {"type": "string"},
                    "image": {"type": "string", "format": "binary", "description": "an image (PNG, JPEG, GIF, BMP, WebP, TIFF) the question is about"},
                    "branches": {"type": "integer"}, "hops": {"type": "integer"}, "session_id": {"type": "string"},
                    "verbalize": {"type": "boolean"}, "seed": {"type": "integer"}, "stream": {"type": "boolean"},
                }}
            },
        },
    }
}
_INGEST_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/IngestRequest"}},
            "multipart/form-data": {
                "schema": {"type": "object", "required": ["file"], "properties": {"file": {"type": "string", "format": "binary", "description": "a .tsv, .txt, .csv or .jsonl file of triples"}}}
            },
        },
    }
}


@serve.deployment(name="ReverieAPI", ray_actor_options={"num_cpus": 0}, max_ongoing_requests=64)
@serve.ingress(api)
class ReverieAPI:
    def __init__(self, settings: dict, pipeline: DeploymentHandle, llm: DeploymentHandle):
        self.settings = Settings(**settings)
        self.pipeline = pipeline
        self.llm = llm
        api.add_middleware(Guard, api_key=self.settings.api_key, max_body_bytes=self.settings.max_body_bytes, recorder=RequestRecorder())

    @api.get("/healthz")
    async def healthz(self) -> dict:
        stats: GraphStats = await _result(self.pipeline.stats.remote())
        return {"status": "ok", "graph": stats.model_dump()}

    @api.get("/metrics", response_class=PlainTextResponse)
    async def metrics(self) -> PlainTextResponse:
        """Prometheus text: Ray's own metrics and Reverie's (ray_reverie_*), from every node."""
        return PlainTextResponse(await cluster_metrics(), media_type=PROMETHEUS_TEXT)

    @api.post("/v1/query", response_model=Verdict, openapi_extra=_QUERY_BODY,
              responses={200: {"content": {SSE: {}}, "description": "The Verdict, or with `stream: true` server-sent events: `token` events, then one `verdict` event."}})
    async def query(self, request: Request):
        """A Query as JSON (an image as base64 in `image`), or as multipart form data: the Query's fields as form fields and the image as a file field `image`."""
        query = await self._query(request)
        if not query.stream:
            return await _result(self.pipeline.answer.remote(query))
        # Errors (no match, empty graph) must still be a 4xx, so the dreams finish before the stream opens.
        verdict: Verdict = await _result(self.pipeline.answer.remote(query.model_copy(update={"verbalize": False})))
        return StreamingResponse(self._events(query, verdict), media_type=SSE)

    async def _query(self, request: Request) -> Query:
        import base64

        from starlette.datastructures import UploadFile

        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind == "multipart/form-data":
            form = await request.form()
            fields = {k: v for k, v in form.items() if not isinstance(v, UploadFile)}
            upload = form.get("image")
            if isinstance(upload, UploadFile):
                fields["image"] = base64.b64encode(await upload.read()).decode()
        elif kind in ("application/json", ""):
            try:
                fields = json.loads(await request.body())
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise RequestValidationError([{"type": "json_invalid", "loc": ("body",), "msg": f"JSON decode error: {exc}", "input": None}]) from None
        else:
            raise UnsupportedMediaError(f"send application/json or multipart/form-data, not {kind!r}")
        try:
            return Query.model_validate(fields)
        except ValidationError as exc:
            raise _validation_error(exc) from None

    async def _events(self, query: Query, verdict: Verdict) -> AsyncIterator[bytes]:
        if query.verbalize:
            start = time.perf_counter()
            async for item in self.llm.options(stream=True).stream_answer.remote(query.question, verdict.chain, query.seed):
                if "token" in item:
                    yield _sse("token", {"text": item["token"]})
                else:
                    timings = {**verdict.timings_ms, "verbalize": round((time.perf_counter() - start) * 1000, 2)}
                    verdict = verdict.model_copy(update={"answer": item["answer"], "backend": item["backend"], "timings_ms": timings})
        yield _sse("verdict", verdict.model_dump(mode="json"))

    @api.post("/v1/ingest", response_model=IngestReport, openapi_extra=_INGEST_BODY)
    async def ingest(self, request: Request) -> IngestReport:
        """Triples as JSON (IngestRequest), or a file as multipart form data (field `file`)."""
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind == "application/json":
            try:
                body = IngestRequest.model_validate_json(await request.body())
            except ValidationError as exc:
                raise _validation_error(exc) from None
        elif kind == "multipart/form-data":
            body = await self._uploaded(request)
        else:
            raise UnsupportedMediaError(f"send application/json or multipart/form-data with a `file` field, not {kind or 'no content type'!r}")
        return await _result(self.pipeline.ingest.remote(body))

    @staticmethod
    async def _uploaded(request: Request) -> IngestRequest:
        from starlette.datastructures import UploadFile

        from reverie.graph_store.datasets import read_file

        form = await request.form()
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise RequestValidationError([{"type": "missing", "loc": ("body", "file"), "msg": "a file field named `file` is required", "input": None}])
        # The file keeps its name (made safe) so errors read "triples.tsv:3: ..." as in the CLI.
        name = re.sub(r"[^A-Za-z0-9._-]", "_", Path(upload.filename or "").name)[:100] or "upload.tsv"
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / name
            path.write_bytes(await upload.read())
            try:
                triples, entities = read_file(path)
            except IngestError as exc:
                raise IngestError(exc.message.replace(f"{folder}/", "")) from None
        if not triples:
            raise ReverieError(f"{name}: no triples in the file")
        return IngestRequest.model_construct(triples=triples, entities=entities, source=name)

    @api.post("/v1/feedback", response_model=FeedbackRecord)
    async def feedback(self, feedback: Feedback) -> FeedbackRecord:
        """Rate a verdict (good, bad or neutral, with a note); kept as a dataset under REVERIE_HOME/feedback."""
        return await _result(self.pipeline.feedback.remote(feedback))

    @api.get("/v1/graph/entities/{entity_id:path}", response_model=EntityView)
    async def entity(self, entity_id: str) -> EntityView:
        return await _result(self.pipeline.entity.remote(entity_id))

    # ---------- the OpenAI face ----------
    @api.get("/v1/models")
    async def openai_models(self) -> dict:
        return openai_api.models()

    @api.post("/v1/embeddings")
    async def openai_embeddings(self, request: openai_api.EmbeddingRequest) -> dict:
        openai_api.check_embedding_model(request.model)
        vectors = await _result(self.pipeline.embed.remote(request.texts()))
        return openai_api.embedding_reply(vectors, request.model)

    @api.post("/v1/chat/completions")
    async def openai_chat(self, request: openai_api.ChatCompletionRequest):
        """The `reverie` model reasons (the last user message is the question); `smollm2:135m` generates."""
        chat = ollama_api.ChatRequest(model=request.model, messages=request.ollama_messages(), stream=request.stream,
                                      options=ollama_api.OllamaOptions(**request.options()))
        pieces = await self._chat_pieces(chat)
        if request.stream:
            return StreamingResponse(openai_api.sse_chunks(request.model, pieces), media_type=SSE)
        return await openai_api.whole_reply(request.model, pieces)

    async def _chat_pieces(self, request: ollama_api.ChatRequest) -> AsyncIterator[str]:
        """One chat, the same for both faces: the reasoning model's reply or the LLM's pieces."""
        model = ollama_api.model_name(request.model)
        image = ollama_api.one_image(request.messages[-1].images, model)
        try:
            system, prompt = request.system_and_prompt()
        except ValueError as exc:
            raise RequestValidationError([{"type": "value_error", "loc": ("body", "messages"), "msg": str(exc), "input": None}]) from None
        if model == ollama_api.REASONING_MODEL:
            return await self._reasoned(request.messages[-1].content, request.options.seed, "messages", image)
        return self._generated(prompt, system, request.generation_options())

    # ---------- the Ollama face ----------
    @api.get("/api/tags")
    async def ollama_tags(self) -> dict:
        return ollama_api.tags()

    @api.get("/api/version")
    async def ollama_version(self) -> dict:
        return {"version": "0.6.0"}

    @api.post("/api/generate")
    async def ollama_generate(self, request: ollama_api.GenerateRequest):
        model = ollama_api.model_name(request.model)
        image = ollama_api.one_image(request.images, model)
        if model == ollama_api.REASONING_MODEL:
            pieces = await self._reasoned(request.prompt, request.options.seed, "prompt", image)
        else:
            pieces = self._generated(request.prompt, request.system, request.generation_options())
        return await self._ollama_reply("generate", request.model, request.stream, pieces)

    @api.post("/api/chat")
    async def ollama_chat(self, request: ollama_api.ChatRequest):
        pieces = await self._chat_pieces(request)
        return await self._ollama_reply("chat", request.model, request.stream, pieces)

    async def _reasoned(self, question: str, seed: int | None, field: str, image: str | None = None) -> AsyncIterator[str]:
        """The reasoning model's reply, computed before the reply opens so that errors are 4xx."""
        try:
            query = Query(question=question, seed=seed, image=image)
        except ValidationError as exc:
            raise RequestValidationError([{"type": "value_error", "loc": ("body", field), "msg": exc.errors()[0]["msg"], "input": None}]) from None
        verdict: Verdict = await _result(self.pipeline.answer.remote(query))

        async def pieces() -> AsyncIterator[str]:
            yield ollama_api.verdict_text(verdict)

        return pieces()

    async def _generated(self, prompt: str, system: str | None, options: dict) -> AsyncIterator[str]:
        async for piece in self.llm.options(stream=True).generate.remote(prompt, system, options):
            yield piece

    @staticmethod
    async def _ollama_reply(kind, model: str, stream: bool, pieces: AsyncIterator[str]):
        if stream:
            return StreamingResponse(ollama_api.ndjson_lines(kind, model, pieces), media_type=ollama_api.NDJSON)
        return await ollama_api.whole_reply(kind, model, pieces)


def build_app(settings: Settings):
    """The application graph: handles to the encoders and the LLM go into Pipeline, and to Pipeline and the LLM into the ingress."""
    config = settings.model_dump(mode="json")
    encoder = EncoderDeployment.bind(settings.model_threads)
    llm = LLMDeployment.bind(config, True)
    images = ImageEncoderDeployment.bind(config)
    pipeline = PipelineDeployment.bind(config, encoder, llm, images)
    return ReverieAPI.bind(config, pipeline, llm)


def app_builder(args: dict):
    """For `serve deploy` / `serve run` with config.yaml: REVERIE_* settings, overridden by the config's `args`."""
    return build_app(Settings(**(args or {})))


def run(settings: Settings, blocking: bool = False) -> str:
    """Start Serve on settings.host:settings.port and deploy the app; returns the base URL."""
    from reverie.actors import init_ray, state_actors

    init_ray(settings)
    state_actors(settings)  # created here, the graph store and feedback log stay on this node, with its REVERIE_HOME
    serve.start(http_options={"host": settings.host, "port": settings.port})
    serve.run(build_app(settings), name=APP_NAME, route_prefix="/")
    url = f"http://{settings.host}:{settings.port}"
    if blocking:
        print(f"Reverie is serving on {url} (OpenAPI page: {url}/docs); Ctrl-C stops it", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            serve.shutdown()
    return url
