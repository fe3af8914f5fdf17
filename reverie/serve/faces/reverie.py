"""Reverie's own face: questions, ingest, feedback, the graph's views, training runs, the fractal
network (training, chat, its state and plot), health and metrics, and the web page's files. Errors are {"detail": message}; a 422 is FastAPI's list of the
failing fields. Request bodies are parsed as JSON or form data: nothing a client sends is unpickled."""

import asyncio
import hashlib
import json
import re
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi import Query as QueryParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, Response, StreamingResponse
from pydantic import BaseModel, ValidationError

from reverie.errors import IngestError, NotFoundError, ReverieError, UnsupportedMediaError
from reverie.fractal import FRACTAL_MODEL
from reverie.runs import list_runs, read_run
from reverie.schemas import (
    EntityView,
    Feedback,
    FeedbackRecord,
    GraphStats,
    IngestReport,
    IngestRequest,
    LearningStatus,
    PolicyLearning,
    Query,
    Run,
    RunSummary,
    SearchResult,
    Verdict,
)
from reverie.serve import ollama_api
from reverie.serve.calls import Deployments, DeploymentsDep, read, result
from reverie.serve.faces.face import SSE, Face, errors
from reverie.serve.fractal import FractalChat, FractalJob, FractalReply, FractalStatus, FractalTrain
from reverie.serve.metrics import PROMETHEUS_TEXT, cluster_metrics

router = APIRouter()
FACE = Face(
    router,
    error_name="Error",
    error_body=lambda status, message: {"detail": message},
    invalid_body=lambda errors: {"detail": errors},
    error_schema={
        "type": "object",
        "required": ["detail"],
        "properties": {
            "detail": {
                "anyOf": [
                    {"type": "string"},
                    {"type": "array", "items": {"$ref": "#/components/schemas/ValidationError"}},
                ]
            }
        },
    },
)
UI_DIR = Path(__file__).parent.parent / "ui"
# The page loads only its own files; styles may be inline because the graph library sets them.
UI_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; object-src 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}


def _form(model: type[BaseModel], files: dict[str, str]) -> dict:
    """A model's fields as multipart form fields, each by its JSON type; `files` (name: description) are file fields."""
    schema = model.model_json_schema()

    def json_type(field: dict) -> str:
        return next(option["type"] for option in field.get("anyOf", [field]) if option.get("type") != "null")

    properties = {
        name: {"type": "string", "format": "binary", "description": files[name]}
        if name in files
        else {"type": json_type(field)}
        for name, field in schema["properties"].items()
    }
    return {"type": "object", "required": schema["required"], "properties": properties}


def _body(model: type[BaseModel], form: dict) -> dict:
    """A route's request body for `openapi_extra`: the model as JSON, or the form as multipart form data."""
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}},
                "multipart/form-data": {"schema": form},
            },
        }
    }


QUERY_BODY = _body(Query, _form(Query, {"image": "an image (PNG, JPEG, GIF, BMP, WebP, TIFF) the question is about"}))
INGEST_BODY = _body(
    IngestRequest,
    {
        "type": "object",
        "required": ["file"],
        "properties": {
            "file": {
                "type": "string",
                "format": "binary",
                "description": "a .tsv, .txt, .csv or .jsonl file of triples",
            }
        },
    },
)


def _validation_error(exc: ValidationError) -> RequestValidationError:
    """A pydantic error in a body parsed by hand, shaped as FastAPI's own 422 (loc starts at body)."""
    errors = [
        {**e, "loc": ("body", *e["loc"])}
        for e in exc.errors(include_url=False, include_context=False, include_input=False)
    ]
    return RequestValidationError(errors)


def _sse(event: str, data: dict) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


@router.get("/healthz", responses={503: {"description": "Still starting: a deployment's replicas are not up yet"}})
async def healthz(request: Request, deployments: DeploymentsDep):
    """Readiness, then liveness: 503 `{"status": "starting"}` until every deployment is up with its
    models loaded, then 200 with the graph's size once the Pipeline answers, and the other
    requests this replica is serving."""
    waiting = await deployments.readiness.waiting_for()
    if waiting:
        return JSONResponse({"status": "starting", "waiting_for": waiting}, status_code=503)
    stats: GraphStats = await read(deployments.pipeline.stats)
    traffic = getattr(request.app.state, "traffic", None)
    in_flight = max(0, traffic.in_flight - 1) if traffic is not None else 0  # less this request
    return {"status": "ok", "graph": stats.model_dump(), "requests_in_flight": in_flight}


@router.get("/metrics", response_class=PlainTextResponse)
async def metrics() -> PlainTextResponse:
    """Prometheus text: Ray's own metrics and Reverie's (ray_reverie_*), from every node."""
    return PlainTextResponse(await cluster_metrics(), media_type=PROMETHEUS_TEXT)


@router.post(
    "/v1/query",
    response_model=Verdict,
    openapi_extra=QUERY_BODY,
    responses={
        200: {
            "content": {SSE: {}},
            "description": "The Verdict, or with `stream: true` server-sent events: `token` events, then one `verdict` event.",
        },
        **errors(400, 409, 415),
    },
)
async def query(request: Request, deployments: DeploymentsDep):
    """A Query as JSON (an image as base64 in `image`), or as multipart form data: the Query's fields as form fields and the image as a file field `image`."""
    query = await _query(request)
    if not query.stream:
        verdict: Verdict = await read(deployments.pipeline.answer, query)
        # The Verdict is the Pipeline's own, already valid: sent as it is, not validated again.
        return Response(verdict.model_dump_json(), media_type="application/json")
    # Errors (no match, empty graph) must still be a 4xx, so the dreams finish before the stream opens.
    verdict: Verdict = await read(deployments.pipeline.answer, query.model_copy(update={"verbalize": False}))
    return StreamingResponse(_events(deployments, query, verdict), media_type=SSE)


async def _query(request: Request) -> Query:
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


async def _events(deployments: Deployments, query: Query, verdict: Verdict) -> AsyncIterator[bytes]:
    """`token` events, then the `verdict`. An LLM that fails once the stream is open cannot
    change the status: an `error` event says why, and the verdict keeps the chain's own sentence."""
    if query.verbalize and verdict.route == "small-talk":  # plain chat: the LLM's reply as it comes
        from reverie.answer import SMALL_TALK_SYSTEM

        start, said = time.perf_counter(), ""
        try:
            async for item in deployments.llm.options(stream=True).generate.remote(
                query.question, SMALL_TALK_SYSTEM, {"seed": query.seed} if query.seed is not None else {}
            ):
                if isinstance(item, str):
                    said += item
                    yield _sse("token", {"text": item})
            timings = {**verdict.timings_ms, "chat": round((time.perf_counter() - start) * 1000, 2)}
            if said.strip():
                verdict = verdict.model_copy(update={"answer": said.strip(), "backend": "llm", "timings_ms": timings})
        except Exception as exc:  # noqa: BLE001 - reported in the stream, whose 200 is already sent
            status, message = ollama_api.failure(exc)
            yield _sse("error", {"detail": message, "status": status})
    if query.verbalize and verdict.chain is not None:  # when the graph does not say, its sentence is final
        start = time.perf_counter()
        try:
            async for item in deployments.llm.options(stream=True).stream_answer.remote(
                verdict.resolved_question or query.question, verdict.chain, query.seed
            ):
                if "token" in item:
                    yield _sse("token", {"text": item["token"]})
                else:
                    timings = {**verdict.timings_ms, "verbalize": round((time.perf_counter() - start) * 1000, 2)}
                    verdict = verdict.model_copy(
                        update={"answer": item["answer"], "backend": item["backend"], "timings_ms": timings}
                    )
        except Exception as exc:  # noqa: BLE001 - reported in the stream, whose 200 is already sent
            status, message = ollama_api.failure(exc)
            yield _sse("error", {"detail": message, "status": status})
    yield _sse("verdict", verdict.model_dump(mode="json"))


@router.post("/v1/ingest", response_model=IngestReport, openapi_extra=INGEST_BODY, responses=errors(400, 415))
async def ingest(request: Request, deployments: DeploymentsDep) -> IngestReport:
    """Triples as JSON (IngestRequest), or a file as multipart form data (field `file`)."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "application/json":
        try:
            body = IngestRequest.model_validate_json(await request.body())
        except ValidationError as exc:
            raise _validation_error(exc) from None
    elif kind == "multipart/form-data":
        body = await _uploaded(request)
    else:
        raise UnsupportedMediaError(
            f"send application/json or multipart/form-data with a `file` field, not {kind or 'no content type'!r}"
        )
    return await result(deployments.pipeline.ingest.remote(body))


async def _file_field(request: Request):
    """The multipart form's `file` field (a starlette UploadFile); a 422 naming it when missing."""
    from starlette.datastructures import UploadFile

    upload = (await request.form()).get("file")
    if not isinstance(upload, UploadFile):
        raise RequestValidationError(
            [
                {
                    "type": "missing",
                    "loc": ("body", "file"),
                    "msg": "a file field named `file` is required",
                    "input": None,
                }
            ]
        )
    return upload


async def _uploaded(request: Request) -> IngestRequest:
    from reverie.data.kg import read_file

    upload = await _file_field(request)
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


@router.post("/v1/feedback", response_model=FeedbackRecord, responses=errors(400, 404))
async def feedback(feedback: Feedback, request: Request, deployments: DeploymentsDep) -> FeedbackRecord:
    """Rate a verdict (good, bad or neutral, with a note); kept as a dataset under REVERIE_HOME/feedback.
    Each rating records who sent it (a digest of the API key, else the address), so one client's
    volume cannot steer what the policy learns."""
    return await result(deployments.pipeline.feedback.remote(feedback, client_id(request)))


def client_id(request: Request) -> str:
    """Who sent a request: a digest of its bearer token when it has one, else its address."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return "key:" + hashlib.sha256(token.strip().encode()).hexdigest()[:16]
    return "addr:" + (request.client.host if request.client else "unknown")


@router.get("/v1/graph/entities/{entity_id:path}", response_model=EntityView, responses=errors(404))
async def entity(entity_id: str, deployments: DeploymentsDep) -> EntityView:
    return await read(deployments.pipeline.entity, entity_id)


@router.get("/v1/graph/search", response_model=SearchResult)
async def search(
    deployments: DeploymentsDep,
    q: str = QueryParam(min_length=1, max_length=200, description="A name, part of one, or a description."),
    limit: int = QueryParam(20, ge=1, le=100),
) -> SearchResult:
    """Entities whose names hold the text (whole name, then prefix, then anywhere), then the nearest by vector."""
    return await read(deployments.pipeline.search, q, limit)


@router.get("/v1/runs")
async def training_runs(deployments: DeploymentsDep) -> dict[str, list[RunSummary]]:
    """The training runs under REVERIE_HOME/runs (path policy, tuning agent), newest first."""
    return {"runs": await asyncio.to_thread(list_runs, deployments.settings.home)}


@router.get("/v1/learning", response_model=LearningStatus)
async def learning(deployments: DeploymentsDep) -> LearningStatus:
    """Each trained policy's learning from use: its version, the ratings and facts it took in, its last update."""
    from reverie.agents.path_policy.online import learning_status

    policies = await asyncio.to_thread(learning_status, deployments.settings)
    return LearningStatus(
        learner="beside the service" if deployments.settings.learn else "off",
        policies=[PolicyLearning.model_validate(p) for p in policies],
    )


@router.get("/v1/runs/{run_id}", response_model=Run, responses=errors(404))
async def training_run(run_id: str, deployments: DeploymentsDep) -> Run:
    """One run's numbers by iteration: the curves on the web page."""
    return await asyncio.to_thread(read_run, deployments.settings.home, run_id)


# ------------------------------------------------------------------------- the fractal network

FRACTAL_STATE_PATH = "/v1/fractal/state"
STATE_TYPE = "application/octet-stream"
STATE_BODY = {
    "requestBody": {
        "required": True,
        "description": "A state file, as GET /v1/fractal/state gives one (a safetensors file, its card inside).",
        "content": {
            STATE_TYPE: {"schema": {"type": "string", "format": "binary", "minLength": 1}},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {"file": {"type": "string", "format": "binary", "description": "the state file"}},
                }
            },
        },
    }
}


@router.get("/v1/fractal", response_model=FractalStatus)
async def fractal_status(deployments: DeploymentsDep) -> dict:
    """The home's fractal network (trained or not; its nodes, depth, complexity, weights and history
    by epoch), and the last training's progress (`training`): poll it while one runs."""
    return await read(deployments.fractal.status)


@router.post("/v1/fractal/train", status_code=202, response_model=FractalJob, responses=errors(409))
async def fractal_train(body: FractalTrain, deployments: DeploymentsDep) -> dict:
    """Train a new fractal network in the background on Q&A pairs (a file's, as JSON) and/or the
    graphs' facts; 202 with the training's progress, which GET /v1/fractal follows. The network in
    use keeps answering until the new one replaces it. Bad pairs are a 422 naming the entry, and
    nothing starts; a training already running is a 409."""
    return await result(deployments.fractal.train.remote(body.pairs, body.graphs, body.epochs, body.seed))


@router.delete("/v1/fractal/train", response_model=FractalJob)
async def fractal_stop(deployments: DeploymentsDep) -> dict:
    """Stop the running training after its epoch; what it learned so far becomes the home's network."""
    return await result(deployments.fractal.stop.remote())


@router.post("/v1/fractal/chat", response_model=FractalReply, responses=errors(404))
async def fractal_chat(body: FractalChat, deployments: DeploymentsDep) -> FractalReply:
    """The fractal network's reply to a message (greedy at temperature 0, else sampled)."""
    reply = await read(deployments.fractal.reply, body.message, body.temperature, body.seed, body.max_words)
    return FractalReply(model=FRACTAL_MODEL, reply=reply)


@router.get(
    FRACTAL_STATE_PATH,
    response_class=Response,
    responses={200: {"content": {STATE_TYPE: {}}, "description": "The state file."}, **errors(404)},
)
async def fractal_state(deployments: DeploymentsDep) -> Response:
    """The home's fractal network as one file (safetensors, its card inside), to keep or load elsewhere."""
    data = await read(deployments.fractal.state)
    return Response(
        data, media_type=STATE_TYPE, headers={"Content-Disposition": 'attachment; filename="fractal.safetensors"'}
    )


@router.put(
    FRACTAL_STATE_PATH, response_model=FractalStatus, openapi_extra=STATE_BODY, responses=errors(400, 409, 413, 422)
)
async def fractal_load(request: Request, deployments: DeploymentsDep) -> dict:
    """Make an uploaded state file the home's network (the body is the file; multipart form data
    with a `file` field works too). A file that is not a fractal state is a 422, and the home's
    network stays as it was; a training running is a 409."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "multipart/form-data":
        data = await (await _file_field(request)).read()
    else:
        data = await request.body()
    return await result(deployments.fractal.load.remote(data))


@router.get(
    "/v1/fractal/plot.png",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}, "description": "The plot."}, **errors(404)},
)
async def fractal_plot(deployments: DeploymentsDep) -> Response:
    """Loss, complexity (spectral entropy), nodes and depth of the home's network by epoch, as a PNG."""
    return Response(await read(deployments.fractal.plot), media_type="image/png", headers={"Cache-Control": "no-cache"})


@router.api_route("/ui", methods=["GET", "HEAD"], include_in_schema=False)
@router.api_route("/ui/{name:path}", methods=["GET", "HEAD"], include_in_schema=False)
async def page(name: str = "") -> FileResponse:
    """The web page and its files: static, in the package, public (the page asks for the key itself)."""
    path = (UI_DIR / (name or "index.html")).resolve()
    if UI_DIR.resolve() not in path.parents or not path.is_file():
        raise NotFoundError(f"no page file {name!r}")
    return FileResponse(path, headers=UI_HEADERS)
