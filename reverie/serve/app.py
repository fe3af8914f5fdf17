"""The HTTP API on Ray Serve: a FastAPI ingress over three deployments, composed by handles.

    ReverieAPI (ingress, FastAPI) --handle--> Pipeline    link, retrieve, dream (rollout tasks), arbitrate;
                                 |                          ingest, feedback, entity views
                                 |                          --handle--> TextEncoder   (encode)
                                 |                          --handle--> ImageEncoder  (images -> vectors)
                                 |                          --handle--> LLM           (verbalize)
                                 +--handle--> LLM           streamed answers, Ollama generation

Pipeline and TextEncoder autoscale (see config.yaml beside this file); the graph store, arbiter,
memory and feedback log stay single named actors, because the embedded Qdrant store takes a lock.
Errors are JSON in the shape of the face a path belongs to (guard.error_content): a ReverieError
maps to its status with {"detail": message} on Reverie's routes, {"error": message} on Ollama's,
{"error": {"message", "type", "code"}} on OpenAI's; a body that fails validation gets 422 naming the field. Request bodies are parsed as JSON, form data or text:
nothing a client sends is unpickled.
"""

import asyncio
import json
import re
import tempfile
import time
from collections.abc import AsyncIterator
from importlib.metadata import version as package_version
from pathlib import Path

import numpy as np
from fastapi import FastAPI, Query as QueryParam, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response, StreamingResponse
from pydantic import ValidationError
from ray import serve
from ray.exceptions import RayActorError, RayTaskError
from ray.serve.handle import DeploymentHandle
from starlette.exceptions import HTTPException as StarletteHTTPException

from reverie.actors import PASSIVE_THREADS
from reverie.config import Settings, offline_hub
from reverie.errors import IngestError, NotFoundError, ReverieError, UnsupportedMediaError
from reverie.llm.chain import Finish
from reverie.llm.verbalizer import Verbalizer
from reverie.runs import list_runs, read_run
from reverie.schemas import (EntityView, Feedback, FeedbackRecord, GraphStats, IngestReport, IngestRequest, Query, Run, RunSummary,
                             SearchResult, Verdict)
from reverie.serve import ollama_api, openai_api
from reverie.serve.guard import Guard, RequestRecorder, SitePolicy, error_content, excerpt, exposure, face, wants_page
from reverie.serve.metrics import PROMETHEUS_TEXT, cluster_metrics

APP_NAME = "reverie"
SSE = "text/event-stream"
UI_DIR = Path(__file__).parent / "ui"
# The page loads only its own files; styles may be inline because the graph library sets them.
UI_HEADERS = {"Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; object-src 'none'; frame-ancestors 'none'",
              "X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache"}

api = FastAPI(title="Reverie", version="0.1.0", description="Ask a knowledge graph; get an answer with its chain and provenance.")


# The error bodies of each face, and the statuses a route can answer with besides 401 (every
# route, with an API key set), 403 (every route: a foreign Host or Origin) and, for POST, 400
# (a body that cannot be parsed), 413 and 422.
_ERROR_SCHEMAS = {
    "reverie": {"type": "object", "required": ["detail"], "properties": {"detail": {"anyOf": [
        {"type": "string"}, {"type": "array", "items": {"$ref": "#/components/schemas/ValidationError"}}]}}},
    "ollama": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}},
    "openai": {"type": "object", "required": ["error"], "properties": {"error": {
        "type": "object", "required": ["message", "type", "code"],
        "properties": {"message": {"type": "string"}, "type": {"type": "string"}, "code": {"type": "integer"}}}}},
}
_ERROR_NAMES = {"reverie": "Error", "ollama": "OllamaError", "openai": "OpenAIError"}
_ROUTE_ERRORS = {
    "/v1/query": [400, 409, 415], "/v1/ingest": [400, 415], "/v1/feedback": [400, 404], "/v1/graph/entities/{entity_id}": [404],
    "/v1/runs/{run_id}": [404],
    "/v1/models/{model_id}": [404], "/v1/embeddings": [400, 404], "/v1/chat/completions": [400, 404, 409, 503],
    "/v1/completions": [400, 404, 409, 503], "/api/show": [400, 404], "/api/embed": [400, 404], "/api/embeddings": [400, 404],
    "/api/generate": [400, 404, 409, 503], "/api/chat": [400, 404, 409, 503],
}
_STATUS_TEXT = {400: "Refused: a body that cannot be parsed (nested too deeply), or a field or value Reverie does not support", 401: "Missing or wrong API key",
                403: "Refused: a Host the server does not answer to, or an Origin not allowed (docs/security.md)", 404: "Not found",
                409: "The knowledge graph is empty", 413: "The request body is over the limit", 415: "Unsupported media type",
                422: "The body fails validation, or (questions) no entity matches", 503: "No LLM backend can answer"}


def _openapi() -> dict:
    """FastAPI's schema, plus the models of bodies these routes parse by hand (JSON or multipart),
    the bearer scheme, and each route's error replies in its face's shape."""
    if api.openapi_schema is None:
        schema = FastAPI.openapi(api)
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        for model in (Query, IngestRequest):
            body = model.model_json_schema(ref_template="#/components/schemas/{model}")
            components.update(body.pop("$defs", {}))
            components[model.__name__] = body
        for kind, name in _ERROR_NAMES.items():
            components[name] = _ERROR_SCHEMAS[kind]
        schema["components"]["securitySchemes"] = {"bearer": {
            "type": "http", "scheme": "bearer", "description": "`Authorization: Bearer <key>`, needed when the server runs with REVERIE_API_KEY."}}
        schema["security"] = [{"bearer": []}]
        for path, operations in schema["paths"].items():
            body = {"$ref": f"#/components/schemas/{_ERROR_NAMES[face(path)]}"}
            for method, operation in operations.items():
                validated = method == "post" or "422" in operation.get("responses", {})
                statuses = {401, 403, *([400, 413] if method == "post" else []), *([422] if validated else []), *_ROUTE_ERRORS.get(path, [])}
                for status in sorted(statuses):
                    operation.setdefault("responses", {})[str(status)] = {
                        "description": _STATUS_TEXT[status], "content": {"application/json": {"schema": body}}}
        api.openapi_schema = schema
    return api.openapi_schema


api.openapi = _openapi


def _error(request: Request, status: int, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse(status_code=status, content=error_content(request.url.path, status, message), headers=headers)


@api.exception_handler(ReverieError)
async def _reverie_error(request: Request, exc: ReverieError) -> JSONResponse:
    return _error(request, exc.status, exc.message)


@api.exception_handler(RequestValidationError)
async def _invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
    """422 naming the fields: FastAPI's list under `detail` on Reverie's routes, one message in the
    faces' shapes. What the client sent is quoted as a short excerpt, never whole (a 2 MB note
    would come back as 2 MB, and a deeply nested value would not even encode)."""
    errors = [_short_error(e) for e in exc.errors()]
    if face(request.url.path) == "reverie":
        return JSONResponse(status_code=422, content={"detail": errors})
    message = "; ".join(f"{'.'.join(str(part) for part in e['loc'])}: {e['msg']}" for e in errors)
    return _error(request, 422, excerpt(message, 1000))


def _short_error(error: dict) -> dict:
    """One validation error as JSON, its input and context cut to excerpts."""
    short = {"type": error["type"], "loc": [p if isinstance(p, (int, str)) else str(p) for p in error["loc"]], "msg": excerpt(str(error["msg"]), 1000)}
    if "input" in error:
        short["input"] = excerpt(error["input"])
    if error.get("ctx"):
        short["ctx"] = {str(k): excerpt(v if isinstance(v, (bool, int, float, str)) or v is None else str(v)) for k, v in error["ctx"].items()}
    return short


@api.exception_handler(RecursionError)
async def _nested_too_deeply(request: Request, exc: RecursionError) -> JSONResponse:
    """A body nested past what Python's parsers recurse into (`[[[...]]]`): the client's error."""
    return _error(request, 400, "the request body is nested too deeply to parse")


@api.exception_handler(StarletteHTTPException)
async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    """Starlette's own errors (an unknown path 404, a wrong method 405) in the face's shape."""
    return _error(request, exc.status_code, str(exc.detail), getattr(exc, "headers", None))


async def _result(response):
    """Await a deployment's reply, re-raising the user's error rather than Ray's wrapper."""
    from reverie.pipeline import user_error

    try:
        return await response
    except RayTaskError as exc:
        raise user_error(exc) from None


async def _read(method, *args):
    """A read-only call to a deployment (a question, a view, stats, embeddings), sent once more if
    the replica that had it died: Serve routes the second try to a live or new replica. Writes
    (ingest, feedback) are never sent twice."""
    try:
        return await _result(method.remote(*args))
    except RayActorError:  # the replica died or is unreachable; the request itself did nothing wrong
        return await _result(method.remote(*args))


def _validation_error(exc: ValidationError) -> RequestValidationError:
    """A pydantic error in a body parsed by hand, shaped as FastAPI's own 422 (loc starts at body)."""
    errors = [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False, include_context=False, include_input=False)]
    return RequestValidationError(errors)


def _sse(event: str, data: dict) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


# A replica that runs a torch model: no CPU reserved (the rollouts need the cores), threads that sleep when idle.
MODEL_HOST = {"num_cpus": 0, "runtime_env": {"env_vars": PASSIVE_THREADS}}


@serve.deployment(name="TextEncoder", ray_actor_options=MODEL_HOST, max_ongoing_requests=64,
                  autoscaling_config={"min_replicas": 1, "max_replicas": 2, "target_ongoing_requests": 16})
class EncoderDeployment:
    """MiniLM. A Pipeline replica sends its concurrent questions as one batch (reverie/batching.py)."""

    def __init__(self):
        import torch

        from reverie.encoders import TextEncoder

        offline_hub()
        # One thread: a loaded server's concurrency comes from batches and replicas, and on a busy
        # machine a second intra-op thread mostly spins (one question took 300 ms of CPU, not 16).
        torch.set_num_threads(1)
        self.encoder = TextEncoder()

    def encode(self, texts: list[str]) -> np.ndarray:
        return self.encoder.encode(texts)


@serve.deployment(name="ImageEncoder", ray_actor_options=MODEL_HOST, max_ongoing_requests=16)
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
LLMDeployment = serve.deployment(name="LLM", ray_actor_options=MODEL_HOST, max_ongoing_requests=8)(Verbalizer)


@serve.deployment(name="Pipeline", ray_actor_options={"num_cpus": 0}, health_check_period_s=10, health_check_timeout_s=60,
                  max_ongoing_requests=32, autoscaling_config={"min_replicas": 1, "max_replicas": 2, "target_ongoing_requests": 16})
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

    def search(self, text: str, limit: int) -> SearchResult:
        return self.pipeline.search(text, limit)

    def embed(self, texts: list[str]) -> np.ndarray:
        return self.pipeline.embed(texts)


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
        api.add_middleware(Guard, site=SitePolicy.from_settings(self.settings), api_key=self.settings.api_key,
                           max_body_bytes=self.settings.max_body_bytes, recorder=RequestRecorder())

    @api.get("/healthz")
    async def healthz(self) -> dict:
        stats: GraphStats = await _read(self.pipeline.stats)
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
            verdict: Verdict = await _read(self.pipeline.answer, query)
            # The Verdict is the Pipeline's own, already valid: sent as it is, not validated again.
            return Response(verdict.model_dump_json(), media_type="application/json")
        # Errors (no match, empty graph) must still be a 4xx, so the dreams finish before the stream opens.
        verdict: Verdict = await _read(self.pipeline.answer, query.model_copy(update={"verbalize": False}))
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
            try:  # pydantic's JSON parser: a body nested too deeply is a 422, not a RecursionError
                return Query.model_validate_json(await request.body())
            except ValidationError as exc:
                raise _validation_error(exc) from None
        else:
            raise UnsupportedMediaError(f"send application/json or multipart/form-data, not {kind!r}")
        try:
            return Query.model_validate(fields)
        except ValidationError as exc:
            raise _validation_error(exc) from None

    async def _events(self, query: Query, verdict: Verdict) -> AsyncIterator[bytes]:
        """`token` events, then the `verdict`. An LLM that fails once the stream is open cannot
        change the status: an `error` event says why, and the verdict keeps the chain's own sentence."""
        if query.verbalize:
            start = time.perf_counter()
            try:
                async for item in self.llm.options(stream=True).stream_answer.remote(query.question, verdict.chain, query.seed):
                    if "token" in item:
                        yield _sse("token", {"text": item["token"]})
                    else:
                        timings = {**verdict.timings_ms, "verbalize": round((time.perf_counter() - start) * 1000, 2)}
                        verdict = verdict.model_copy(update={"answer": item["answer"], "backend": item["backend"], "timings_ms": timings})
            except Exception as exc:  # noqa: BLE001 - reported in the stream, whose 200 is already sent
                status, message = ollama_api.failure(exc)
                yield _sse("error", {"detail": message, "status": status})
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

        from reverie.data.kg import read_file

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
        return await _read(self.pipeline.entity, entity_id)

    @api.get("/v1/graph/search", response_model=SearchResult)
    async def search(self, q: str = QueryParam(min_length=1, max_length=200, description="A name, part of one, or a description."),
                     limit: int = QueryParam(20, ge=1, le=100)) -> SearchResult:
        """Entities whose names hold the text (whole name, then prefix, then anywhere), then the nearest by vector."""
        return await _read(self.pipeline.search, q, limit)

    # ---------- training runs and the web page ----------
    @api.get("/v1/runs")
    async def training_runs(self) -> dict[str, list[RunSummary]]:
        """The training runs under REVERIE_HOME/runs (path policy, tuning agent), newest first."""
        return {"runs": await asyncio.to_thread(list_runs, self.settings.home)}

    @api.get("/v1/runs/{run_id}", response_model=Run)
    async def training_run(self, run_id: str) -> Run:
        """One run's numbers by iteration: the curves on the web page."""
        return await asyncio.to_thread(read_run, self.settings.home, run_id)

    @api.api_route("/ui", methods=["GET", "HEAD"], include_in_schema=False)
    @api.api_route("/ui/{name:path}", methods=["GET", "HEAD"], include_in_schema=False)
    async def page(self, name: str = "") -> FileResponse:
        """The web page and its files: static, in the package, public (the page asks for the key itself)."""
        path = (UI_DIR / (name or "index.html")).resolve()
        if UI_DIR.resolve() not in path.parents or not path.is_file():
            raise NotFoundError(f"no page file {name!r}")
        return FileResponse(path, headers=UI_HEADERS)

    # ---------- the OpenAI face ----------
    @api.get("/v1/models")
    async def openai_models(self) -> dict:
        return openai_api.models()

    @api.get("/v1/models/{model_id:path}")
    async def openai_model(self, model_id: str) -> dict:
        return openai_api.model(model_id)

    @api.post("/v1/embeddings")
    async def openai_embeddings(self, request: openai_api.EmbeddingRequest) -> dict:
        ollama_api.embedding_model(request.model)
        request.refuse_unsupported()
        texts = ollama_api.embedding_texts(request.input)
        vectors = await _read(self.pipeline.embed, texts)
        return openai_api.embedding_reply(vectors, request, texts)

    @api.post("/v1/chat/completions", responses={200: {"content": {SSE: {}}, "description": "A chat.completion, or with `stream: true` chat.completion.chunk events, then [DONE]."}})
    async def openai_chat(self, request: openai_api.ChatCompletionRequest):
        """The `reverie` model reasons (the last user message is the question); `smollm2:135m` generates."""
        request.refuse_unsupported()
        chat = ollama_api.ChatRequest(model=request.model, messages=request.ollama_messages(), format=request.ollama_format(),
                                      options=ollama_api.OllamaOptions(**request.options()))
        return await self._openai_reply("chat", request, await self._chat_items(chat, user=request.user))

    @api.post("/v1/completions", responses={200: {"content": {SSE: {}}, "description": "A text_completion, or with `stream: true` text_completion events, then [DONE]."}})
    async def openai_completions(self, request: openai_api.CompletionRequest):
        """Legacy completions: the `reverie` model answers the prompt as a question; `smollm2:135m` continues it."""
        request.refuse_unsupported()
        generate = ollama_api.GenerateRequest(model=request.model, prompt=request.text(), options=ollama_api.OllamaOptions(**request.options()))
        return await self._openai_reply("text", request, await self._generate_items(generate))

    @staticmethod
    async def _openai_reply(kind, request: openai_api.Sampling, items: AsyncIterator):
        if request.stream:
            return StreamingResponse(openai_api.sse_chunks(kind, request.model, items, request.include_usage()), media_type=SSE)
        return await openai_api.whole_reply(kind, request.model, items)

    # ---------- the Ollama face ----------
    @api.get("/", response_class=PlainTextResponse)
    @api.head("/", response_class=PlainTextResponse)
    async def ollama_alive(self, request: Request) -> Response:
        """The liveness probe Ollama clients send before anything else; a browser goes on to the page."""
        if wants_page(request.method, request.url.path, request.headers.get("accept", "")):
            return RedirectResponse("/ui/", status_code=307)
        return PlainTextResponse("Ollama is running")

    @api.get("/api/version")
    async def ollama_version(self) -> dict:
        return ollama_api.version(package_version("reverie"))

    @api.get("/api/tags")
    async def ollama_tags(self) -> dict:
        return ollama_api.tags()

    @api.post("/api/show")
    async def ollama_show(self, request: ollama_api.ShowRequest) -> dict:
        return ollama_api.show(request, self.settings)

    @api.get("/api/ps")
    async def ollama_ps(self) -> dict:
        return ollama_api.running()

    @api.post("/api/generate", responses={200: {"content": {ollama_api.NDJSON: {}}, "description": "One JSON object, or with `stream` (the default) NDJSON lines."}})
    async def ollama_generate(self, request: ollama_api.GenerateRequest):
        started = time.perf_counter()
        if not request.prompt and not request.images:
            ollama_api.generating_model(request.model)
            return ollama_api.loaded("generate", request.model)
        return await self._ollama_reply("generate", request.model, request.stream, await self._generate_items(request), started)

    @api.post("/api/chat", responses={200: {"content": {ollama_api.NDJSON: {}}, "description": "One JSON object, or with `stream` (the default) NDJSON lines."}})
    async def ollama_chat(self, request: ollama_api.ChatRequest):
        started = time.perf_counter()
        if not request.messages:
            ollama_api.generating_model(request.model)
            return ollama_api.loaded("chat", request.model)
        return await self._ollama_reply("chat", request.model, request.stream, await self._chat_items(request), started)

    @api.post("/api/embed")
    async def ollama_embed(self, request: ollama_api.EmbedRequest) -> dict:
        started = time.perf_counter()
        ollama_api.embedding_model(request.model)
        texts = request.texts()
        vectors = await _read(self.pipeline.embed, texts)
        # prompt_eval_count counts words, an approximation of MiniLM's tokens
        return {"model": request.model, "embeddings": vectors.tolist(), "total_duration": int((time.perf_counter() - started) * 1e9),
                "load_duration": 0, "prompt_eval_count": sum(ollama_api.words(t) for t in texts)}

    @api.post("/api/embeddings")
    async def ollama_embeddings(self, request: ollama_api.EmbeddingsRequest) -> dict:
        ollama_api.embedding_model(request.model)
        vectors = await _read(self.pipeline.embed, [request.prompt])
        return {"embedding": vectors[0].tolist()}

    async def _generate_items(self, request: ollama_api.GenerateRequest) -> AsyncIterator:
        """One prompt, the same for both faces: the reasoning model's reply or the LLM's pieces, then a Finish."""
        model = ollama_api.generating_model(request.model)
        request.refuse_unsupported()
        image = ollama_api.one_image(request.images, model)
        sampling = request.options.sampling()
        structured = ollama_api.structured_output(request.format, model)
        if model == ollama_api.REASONING_MODEL:
            return await self._reasoned(request.prompt, sampling, "prompt", image)
        return await self._generated(request.prompt, request.system, {**sampling, **structured})

    async def _chat_items(self, request: ollama_api.ChatRequest, user: str | None = None) -> AsyncIterator:
        """One chat, the same for both faces: the reasoning model's reply or the LLM's pieces, then a Finish."""
        model = ollama_api.generating_model(request.model)
        request.refuse_unsupported()
        image = ollama_api.one_image(request.messages[-1].images, model)
        try:
            system, prompt = request.system_and_prompt()
        except ValueError as exc:
            raise RequestValidationError([{"type": "value_error", "loc": ("body", "messages"), "msg": str(exc), "input": None}]) from None
        sampling = request.options.sampling()
        structured = ollama_api.structured_output(request.format, model)
        if model == ollama_api.REASONING_MODEL:
            return await self._reasoned(request.messages[-1].content, sampling, "messages", image, request.session_id(user))
        return await self._generated(prompt, system, {**sampling, **structured})

    async def _reasoned(self, question: str, sampling: dict, field: str, image: str | None = None,
                        session_id: str | None = None) -> AsyncIterator:
        """The reasoning model's reply: the dreams run before the reply opens (so that errors are
        4xx); then the LLM's answer sentence streams token by token, then the chain, then a Finish
        counting words. stop and num_predict cut the reply as they would an LLM's."""
        started = time.perf_counter()
        try:
            query = Query(question=question, seed=sampling["seed"], image=image, session_id=session_id, verbalize=False)
        except ValidationError as exc:
            raise RequestValidationError([{"type": "value_error", "loc": ("body", field), "msg": exc.errors()[0]["msg"], "input": None}]) from None
        verdict: Verdict = await _read(self.pipeline.answer, query)
        reasoned = time.perf_counter()

        async def reply() -> AsyncIterator[str]:
            from reverie.llm.verbalize import first_sentence

            written = ollama_api.FirstSentence()
            answer = ""
            async for item in self.llm.options(stream=True).stream_answer.remote(query.question, verdict.chain, query.seed):
                if "token" in item:
                    yield written.feed(item["token"])
                else:
                    answer = item["answer"]
            if first_sentence(written.text[: written.sent]) != answer:  # the checked sentence is not what the model wrote
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
            yield Finish(prompt_tokens=ollama_api.words(query.question), completion_tokens=ollama_api.words(limits.text),
                         reason=limits.reason, prompt_ns=int((reasoned - started) * 1e9), completion_ns=int((time.perf_counter() - reasoned) * 1e9))

        return items()

    async def _generated(self, prompt: str, system: str | None, options: dict) -> AsyncIterator:
        """The LLM's pieces, then its Finish. The first is awaited here, so that a failure before
        the reply opens (no backend can answer) is an HTTP error rather than an error line."""
        items = self.llm.options(stream=True).generate.remote(prompt, system, options)
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

    @staticmethod
    async def _ollama_reply(kind, model: str, stream: bool, items: AsyncIterator, started: float):
        if stream:
            return StreamingResponse(ollama_api.ndjson_lines(kind, model, items, started), media_type=ollama_api.NDJSON)
        return await ollama_api.whole_reply(kind, model, items, started)


def build_app(settings: Settings):
    """The application graph: handles to the encoders and the LLM go into Pipeline, and to Pipeline and the LLM into the ingress."""
    config = settings.model_dump(mode="json")
    encoder = EncoderDeployment.bind()
    llm = LLMDeployment.bind(config, True)
    images = ImageEncoderDeployment.bind(config)
    pipeline = PipelineDeployment.bind(config, encoder, llm, images)
    return ReverieAPI.bind(config, pipeline, llm)


def app_builder(args: dict):
    """For `serve deploy` / `serve run` with config.yaml: REVERIE_* settings, overridden by the config's `args`."""
    return build_app(Settings(**(args or {})))


def run(settings: Settings, blocking: bool = False, insecure: bool = False) -> str:
    """Start Serve on settings.host:settings.port and deploy the app; returns the base URL. A host
    other machines can reach needs an API key, or `insecure` (a ReverieError before anything starts)."""
    from reverie.actors import init_ray, state_actors
    from reverie.pipeline import get

    reach = exposure(settings.host, settings.api_key, insecure)
    init_ray(settings)
    store = state_actors(settings)["store"]  # created here, the graph store and feedback log stay on this node, with its REVERIE_HOME
    # Open the snapshot and the index before Serve starts: a damaged snapshot or a home another
    # process holds stops the server with that error (one line from the CLI), not a failing replica.
    get(store.open_index.remote())
    serve.start(http_options={"host": settings.host, "port": settings.port})
    serve.run(build_app(settings), name=APP_NAME, route_prefix="/")
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    url = f"http://{host}:{settings.port}"
    if blocking:
        print(f"Reverie is serving on {url} (web page: {url}/ui/, OpenAPI page: {url}/docs); {reach}; Ctrl-C stops it", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            serve.shutdown()
    return url
