"""The HTTP API on Ray Serve: a FastAPI ingress over three deployments, composed by handles.

    ReverieAPI (ingress, FastAPI) --handle--> Pipeline    link, retrieve, dream (rollout tasks), arbitrate;
                                 |                          ingest, feedback, entity views
                                 |                          --handle--> Encoders      (texts and images -> vectors)
                                 |                          --handle--> LLM           (verbalize)
                                 +--handle--> LLM           streamed answers, Ollama generation
                                 +--handle--> Fractal     the fractal network: training, chat, its state
                                                            --handle--> Encoders

Pipeline and Encoders autoscale (see config.yaml beside this file); the graph store, arbiter,
memory and feedback log stay single named actors, because the embedded Qdrant store takes a lock.
The app is assembled here from the faces' routers (reverie/serve/faces: Reverie's, OpenAI's,
Ollama's). Errors are JSON in the shape of the face a path belongs to: a ReverieError maps to its
status with {"detail": message} on Reverie's routes, {"error": message} on Ollama's,
{"error": {"message", "type", "code"}} on OpenAI's; a body that fails validation gets 422 naming the field.
"""

import time

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from ray import serve
from ray.serve.api import RunTarget
from ray.serve.handle import DeploymentHandle
from starlette.exceptions import HTTPException as StarletteHTTPException

from reverie.actors import PASSIVE_THREADS
from reverie.config import Settings, offline_hub
from reverie.encoders.image import ImageEncoder
from reverie.errors import ReverieError
from reverie.llm.verbalizer import Verbalizer
from reverie.schemas import (
    EntityView,
    Feedback,
    FeedbackRecord,
    GraphStats,
    IngestReport,
    IngestRequest,
    Query,
    SearchResult,
    Verdict,
)
from reverie.serve.calls import Deployments, Readiness
from reverie.serve.faces import FACES, error_content, face
from reverie.serve.faces.face import STATUS_TEXT, excerpt
from reverie.serve.faces.reverie import FRACTAL_STATE_PATH
from reverie.serve.fractal import STATE_MAX_BYTES, FractalHost
from reverie.serve.guard import Guard, RequestRecorder, SitePolicy, Traffic, exposure

APP_NAME = "reverie"

api = FastAPI(
    title="Reverie", version="0.1.0", description="Ask a knowledge graph; get an answer with its chain and provenance."
)
for _face in FACES:
    api.include_router(_face.router)


def _openapi() -> dict:
    """FastAPI's schema, plus the models of bodies the routes parse by hand (JSON or multipart), the
    bearer scheme, and each route's error replies in its face's shape: 401 and 403 on every route,
    400, 413 and 422 on POST, 422 where FastAPI validates parameters, and those the route declares."""
    if api.openapi_schema is None:
        schema = FastAPI.openapi(api)
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        for model in (Query, IngestRequest):
            body = model.model_json_schema(ref_template="#/components/schemas/{model}")
            components.update(body.pop("$defs", {}))
            components[model.__name__] = body
        for each in FACES:
            components[each.error_name] = each.error_schema
        schema["components"]["securitySchemes"] = {
            "bearer": {
                "type": "http",
                "scheme": "bearer",
                "description": "`Authorization: Bearer <key>`, needed when the server runs with REVERIE_API_KEY.",
            }
        }
        schema["security"] = [{"bearer": []}]
        for each in FACES:
            body = {"$ref": f"#/components/schemas/{each.error_name}"}
            for route in each.router.routes:
                if not route.include_in_schema:
                    continue
                declared = {int(status) for status in route.responses if int(status) >= 400}
                for method in route.methods:
                    operation = schema["paths"][route.path_format][method.lower()]
                    validated = method == "POST" or "422" in operation["responses"]
                    statuses = {
                        401,
                        403,
                        *([400, 413] if method == "POST" else []),
                        *([422] if validated else []),
                        *declared,
                    }
                    for status in sorted(statuses):
                        operation["responses"][str(status)] = {
                            "description": STATUS_TEXT[status],
                            "content": {"application/json": {"schema": body}},
                        }
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
    """422 naming the fields, in the face's shape. What the client sent is quoted as a short
    excerpt, never whole (a 2 MB note would come back as 2 MB, and a deeply nested value would not
    even encode)."""
    return JSONResponse(
        status_code=422, content=face(request.url.path).invalid([_short_error(e) for e in exc.errors()])
    )


def _short_error(error: dict) -> dict:
    """One validation error as JSON, its input and context cut to excerpts."""
    short = {
        "type": error["type"],
        "loc": [p if isinstance(p, (int, str)) else str(p) for p in error["loc"]],
        "msg": excerpt(str(error["msg"]), 1000),
    }
    if "input" in error:
        short["input"] = excerpt(error["input"])
    if error.get("ctx"):
        short["ctx"] = {
            str(k): excerpt(v if isinstance(v, (bool, int, float, str)) or v is None else str(v))
            for k, v in error["ctx"].items()
        }
    return short


@api.exception_handler(RecursionError)
async def _nested_too_deeply(request: Request, exc: RecursionError) -> JSONResponse:
    """A body nested past what Python's parsers recurse into (`[[[...]]]`): the client's error."""
    return _error(request, 400, "the request body is nested too deeply to parse")


@api.exception_handler(StarletteHTTPException)
async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    """Starlette's own errors (an unknown path 404, a wrong method 405) in the face's shape."""
    return _error(request, exc.status_code, str(exc.detail), getattr(exc, "headers", None))


# A replica that runs a torch model: no CPU reserved (the rollouts need the cores), threads that sleep when idle.
MODEL_HOST = {"num_cpus": 0, "runtime_env": {"env_vars": PASSIVE_THREADS}}


@serve.deployment(
    name="Encoders",
    ray_actor_options=MODEL_HOST,
    max_ongoing_requests=64,
    autoscaling_config={"min_replicas": 1, "max_replicas": 2, "target_ongoing_requests": 16},
)
class EncodersDeployment(ImageEncoder):
    """MiniLM and the image tower in one replica: each torch process costs ~150 MB before its first
    weight, and the two never load each other. A Pipeline replica sends its concurrent questions as
    one batch (reverie/batching.py). The tower loads at start when there is one (a server without a
    trained tower still starts, and an image question says how to get one)."""

    def __init__(self, settings: dict):
        import torch

        from reverie.encoders import TextEncoder
        from reverie.encoders.image import tower_path

        offline_hub()
        config = Settings(**settings)
        # One thread: a loaded server's concurrency comes from batches and replicas, and on a busy
        # machine a second intra-op thread mostly spins (one question took 300 ms of CPU, not 16).
        torch.set_num_threads(1)
        super().__init__(tower_path(config), config.max_image_pixels, arch=config.clip_arch)
        self.text = TextEncoder()
        if self.weights.is_file():
            self.tokenizer()  # so the first image question is as fast as the tenth

    def encode(self, texts: list[str]) -> np.ndarray:
        return self.text.encode(texts)


# The LLM actor's class, as a deployment: load before taking requests, not on the first question.
LLMDeployment = serve.deployment(name="LLM", ray_actor_options=MODEL_HOST, max_ongoing_requests=8)(Verbalizer)


@serve.deployment(
    name="Pipeline",
    ray_actor_options={"num_cpus": 0},
    health_check_period_s=10,
    health_check_timeout_s=60,
    max_ongoing_requests=32,
    autoscaling_config={"min_replicas": 1, "max_replicas": 2, "target_ongoing_requests": 16},
)
class PipelineDeployment:
    """The Pipeline: its rollouts run as Ray tasks, so a replica mostly waits and reserves no CPU."""

    def __init__(self, settings: dict, encoder: DeploymentHandle, llm: DeploymentHandle, images: DeploymentHandle):
        import ray

        from reverie.actors import Services
        from reverie.pipeline import Pipeline

        self.settings = Settings(**settings)
        self.pipeline = Pipeline(self.settings, Services.start(self.settings, encoder=encoder, llm=llm, images=images))
        ray.get(self.pipeline.services.store.open_index.remote())
        self.pipeline.load_conversation_models()

    def check_health(self) -> None:
        import ray

        ray.get(self.pipeline.services.store.stats.remote(), timeout=30)

    def answer(self, query: Query) -> Verdict:
        return self.pipeline.answer(query)

    def ingest(self, request: IngestRequest) -> IngestReport:
        return self.pipeline.ingest(request.triples, request.entities, source=request.source)

    def feedback(self, feedback: Feedback, client: str = "local") -> FeedbackRecord:
        return self.pipeline.feedback(feedback, client)

    def entity(self, name: str) -> EntityView:
        return self.pipeline.entity(name)

    def stats(self) -> GraphStats:
        return self.pipeline.stats()

    def search(self, text: str, limit: int) -> SearchResult:
        return self.pipeline.search(text, limit)

    def embed(self, texts: list[str]) -> np.ndarray:
        return self.pipeline.embed(texts)


@serve.deployment(name="Fractal", ray_actor_options=MODEL_HOST, num_replicas=1, max_ongoing_requests=16)
class FractalDeployment(FractalHost):
    """The home's fractal network (reverie/serve/fractal.py). One replica: a training runs in its
    thread, and every status call must see that training's progress. The network loads when first
    used; its questions are encoded by the Encoders deployment."""

    def __init__(self, settings: dict, encoder: DeploymentHandle):
        import torch

        from reverie.pipeline import get

        # One thread, as the encoders: the training must leave a core to the questions.
        torch.set_num_threads(1)
        config = Settings(**settings)
        super().__init__(
            config.home, encode=lambda texts: np.asarray(get(encoder.encode.remote(list(texts))), np.float32)
        )


def serving(deployments: Deployments, traffic: Traffic) -> FastAPI:
    """`api` as an ingress replica serves it: its routes find the replica's settings and handles on
    the app's state, and every request passes the Guard first."""
    settings = deployments.settings
    api.state.deployments, api.state.traffic = deployments, traffic
    api.add_middleware(
        Guard,
        site=SitePolicy.from_settings(settings),
        api_key=settings.api_key,
        max_body_bytes=settings.max_body_bytes,
        body_limits={FRACTAL_STATE_PATH: max(settings.max_body_bytes, STATE_MAX_BYTES)},
        recorder=RequestRecorder(),
        traffic=traffic,
    )
    return api


@serve.deployment(name="ReverieAPI", ray_actor_options={"num_cpus": 0}, max_ongoing_requests=64)
@serve.ingress()
class ReverieAPI:
    def __init__(self, settings: dict, pipeline: DeploymentHandle, llm: DeploymentHandle, fractal: DeploymentHandle):
        self.deployments = Deployments(Settings(**settings), pipeline, llm, Readiness(APP_NAME), fractal)
        self.traffic = Traffic()

    def __serve_build_asgi_app__(self) -> FastAPI:
        """The app this replica serves, once the constructor has run. It is built by a function of
        this module rather than here: Serve ships this class by value, with the globals it names."""
        return serving(self.deployments, self.traffic)

    def drain(self) -> int:
        """Refuse new requests from now on (503); the number still in flight."""
        self.traffic.draining = True
        return self.traffic.in_flight

    def in_flight(self) -> int:
        return self.traffic.in_flight


def build_app(settings: Settings):
    """The application graph: handles to the encoders and the LLM go into Pipeline, to the encoders
    into Fractal, and to Pipeline, the LLM and Fractal into the ingress."""
    config = settings.model_dump(mode="json")
    encoders = EncodersDeployment.bind(config)
    llm = LLMDeployment.bind(config, True)
    pipeline = PipelineDeployment.bind(config, encoders, llm, encoders)
    fractal = FractalDeployment.bind(config, encoders)
    return ReverieAPI.bind(config, pipeline, llm, fractal)


def app_builder(args: dict):
    """For `serve deploy` / `serve run` with config.yaml: REVERIE_* settings, overridden by the config's `args`."""
    return build_app(Settings(**(args or {})))


def run(settings: Settings, insecure: bool = False) -> str:
    """Start Serve on settings.host:settings.port and deploy the app; returns the base URL once every
    deployment is up. A host other machines can reach needs an API key, or `insecure` (a
    ReverieError before anything starts). `reverie serve` runs reverie/serve/lifecycle.py instead,
    which says each deployment as it becomes ready and stops cleanly on a signal."""
    exposure(settings.host, settings.api_key, insecure)
    return start(settings)


HELD: list = []  # handles to the actors `start` made, kept while this process serves


def start(settings: Settings, say=None) -> str:
    """Ray (joined or started), the home's store opened, then Serve and the app; `say` hears each
    deployment become ready."""
    from reverie.actors import init_ray, state_actor
    from reverie.pipeline import get

    init_ray(settings)
    # Created here, the graph store stays on this node, with its REVERIE_HOME; its handle is kept for
    # as long as this process serves (a named actor whose last handle goes is destroyed). Open the
    # snapshot and the index before Serve starts: a damaged snapshot or a home another process
    # holds stops the server with that error (one line from the CLI), not a failing replica.
    store = state_actor(settings, "store")
    HELD.append(store)
    get(store.open_index.remote())
    if settings.learn:
        from reverie.actors import learner_actor

        HELD.append(learner_actor(settings))
    serve.start(http_options={"host": settings.host, "port": settings.port})
    target = RunTarget(build_app(settings), name=APP_NAME, route_prefix="/")
    serve.run_many([target], wait_for_applications_running=False)
    wait_until_running(say)
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    return f"http://{host}:{settings.port}"


def wait_until_running(say=None, poll_s: float = 0.25) -> None:
    """Until the app runs (every deployment's replicas constructed: the models loaded), telling
    `say` each deployment as it becomes healthy; a deployment that fails to start raises."""
    from ray.serve.schema import ApplicationStatus

    started, seen = time.monotonic(), set()
    while True:
        app = serve.status().applications.get(APP_NAME)
        if app is not None:
            for name, deployment in app.deployments.items():
                if name not in seen and str(getattr(deployment.status, "value", deployment.status)) == "HEALTHY":
                    seen.add(name)
                    if say is not None:
                        say(f"  {name} ready ({time.monotonic() - started:.1f} s)")
            if app.status == ApplicationStatus.RUNNING:
                return
            if app.status == ApplicationStatus.DEPLOY_FAILED:
                raise RuntimeError(f"the Reverie app failed to deploy: {app.message}")
        time.sleep(poll_s)
