"""The Ollama face: the routes of Ollama's API that Reverie serves (the wire format is
reverie/serve/ollama_api.py), and Ollama's error shape {"error": message}, also on unknown paths
under /api/."""

import time
from importlib.metadata import version as package_version

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse, RedirectResponse, Response, StreamingResponse

from reverie.serve import ollama_api
from reverie.serve.calls import DeploymentsDep, read
from reverie.serve.chat import chat_items, generate_items
from reverie.serve.faces.face import Face, errors

router = APIRouter()
FACE = Face(
    router,
    error_name="OllamaError",
    error_body=lambda status, message: {"error": message},
    folders=("/api/",),
    error_schema={"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}},
)
STREAMED = {
    200: {
        "content": {ollama_api.NDJSON: {}},
        "description": "One JSON object, or with `stream` (the default) NDJSON lines.",
    }
}


def wants_page(method: str, path: str, accept: str) -> bool:
    """A browser opening the server's root (it accepts HTML; Ollama's probe does not)."""
    return method in ("GET", "HEAD") and path == "/" and "text/html" in accept


@router.head("/", response_class=PlainTextResponse)
@router.get("/", response_class=PlainTextResponse)
async def ollama_alive(request: Request) -> Response:
    """The liveness probe Ollama clients send before anything else; a browser goes on to the page."""
    if wants_page(request.method, request.url.path, request.headers.get("accept", "")):
        return RedirectResponse("/ui/", status_code=307)
    return PlainTextResponse("Ollama is running")


@router.get("/api/version")
async def ollama_version() -> dict:
    endpoints = [f"{method} {route.path}" for route in router.routes for method in sorted(route.methods)]
    return ollama_api.version(package_version("reverie"), endpoints)


@router.get("/api/tags")
async def ollama_tags(deployments: DeploymentsDep) -> dict:
    return ollama_api.tags(deployments.settings)


@router.post("/api/show", responses=errors(400, 404))
async def ollama_show(request: ollama_api.ShowRequest, deployments: DeploymentsDep) -> dict:
    return ollama_api.show(request, deployments.settings)


@router.get("/api/ps")
async def ollama_ps(deployments: DeploymentsDep) -> dict:
    return ollama_api.running(deployments.settings)


@router.post("/api/generate", responses={**STREAMED, **errors(400, 404, 409, 503)})
async def ollama_generate(request: ollama_api.GenerateRequest, deployments: DeploymentsDep):
    started = time.perf_counter()
    if not request.prompt and not request.images:
        ollama_api.generating_model(request.model)
        return ollama_api.loaded("generate", request.model)
    return await _reply("generate", request.model, request.stream, await generate_items(deployments, request), started)


@router.post("/api/chat", responses={**STREAMED, **errors(400, 404, 409, 503)})
async def ollama_chat(request: ollama_api.ChatRequest, deployments: DeploymentsDep):
    started = time.perf_counter()
    if not request.messages:
        ollama_api.generating_model(request.model)
        return ollama_api.loaded("chat", request.model)
    return await _reply("chat", request.model, request.stream, await chat_items(deployments, request), started)


@router.post("/api/embed", responses=errors(400, 404))
async def ollama_embed(request: ollama_api.EmbedRequest, deployments: DeploymentsDep) -> dict:
    started = time.perf_counter()
    ollama_api.embedding_model(request.model)
    texts = request.texts()
    vectors = await read(deployments.pipeline.embed, texts)
    # prompt_eval_count counts words, an approximation of MiniLM's tokens
    return {
        "model": request.model,
        "embeddings": vectors.tolist(),
        "total_duration": int((time.perf_counter() - started) * 1e9),
        "load_duration": 0,
        "prompt_eval_count": sum(ollama_api.words(t) for t in texts),
    }


@router.post("/api/embeddings", responses=errors(400, 404))
async def ollama_embeddings(request: ollama_api.EmbeddingsRequest, deployments: DeploymentsDep) -> dict:
    ollama_api.embedding_model(request.model)
    vectors = await read(deployments.pipeline.embed, [request.prompt])
    return {"embedding": vectors[0].tolist()}


async def _reply(kind, model: str, stream: bool, items, started: float):
    if stream:
        return StreamingResponse(ollama_api.ndjson_lines(kind, model, items, started), media_type=ollama_api.NDJSON)
    return await ollama_api.whole_reply(kind, model, items, started)
