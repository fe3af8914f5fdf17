"""The HTTP API: POST /v1/query, GET /healthz, and the OpenAPI page at /docs.

Errors are JSON: a ReverieError maps to its status with {"detail": message}; a body that fails
validation gets FastAPI's 422 naming the field.
"""

import time

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from ray import serve

from reverie.config import Settings
from reverie.errors import ReverieError
from reverie.schemas import GraphStats, Query, Verdict

api = FastAPI(title="Reverie", version="0.1.0", description="Ask a knowledge graph; get an answer with its chain and provenance.")


@api.exception_handler(ReverieError)
async def _reverie_error(_: Request, exc: ReverieError) -> JSONResponse:
    return JSONResponse(status_code=exc.status, content={"detail": exc.message})


@serve.deployment(ray_actor_options={"num_cpus": 0}, max_ongoing_requests=32)
@serve.ingress(api)
class ReverieAPI:
    def __init__(self, settings: dict):
        from reverie.pipeline import Pipeline

        self.settings = Settings(**settings)
        self.pipeline = Pipeline(self.settings)
        self.pipeline.services.warm_up()  # the first request should not pay for model loading

    @api.get("/healthz")
    def healthz(self) -> dict:
        from reverie.pipeline import get

        stats: GraphStats = get(self.pipeline.services.store.stats.remote())
        return {"status": "ok", "graph": stats.model_dump()}

    @api.post("/v1/query", response_model=Verdict)
    def query(self, query: Query) -> Verdict:
        # A sync endpoint: FastAPI runs it in its thread pool while it waits on the actors.
        return self.pipeline.answer(query)


def build_app(settings: Settings):
    return ReverieAPI.bind(settings.model_dump(mode="json"))


def run(settings: Settings, blocking: bool = False) -> str:
    """Start Serve on settings.host:settings.port and deploy the app; returns the base URL."""
    from reverie.actors import init_ray

    init_ray(settings)
    serve.start(http_options={"host": settings.host, "port": settings.port})
    serve.run(build_app(settings), name="reverie", route_prefix="/")
    url = f"http://{settings.host}:{settings.port}"
    if blocking:
        print(f"Reverie is serving on {url} (OpenAPI page: {url}/docs); Ctrl-C stops it", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            serve.shutdown()
    return url
