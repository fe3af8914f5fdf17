"""The OpenAI face: the routes of OpenAI's API that Reverie serves (the wire format is
reverie/serve/openai_api.py, carried out by the chat code the Ollama face runs too), and OpenAI's
error shape {"error": {"message", "type", "code"}}."""

from fastapi import APIRouter
from fastapi.responses import StreamingResponse

from reverie.serve import ollama_api, openai_api
from reverie.serve.calls import DeploymentsDep, read
from reverie.serve.chat import chat_items, generate_items
from reverie.serve.faces.face import SSE, Face, errors

router = APIRouter()
FACE = Face(
    router,
    error_name="OpenAIError",
    error_body=openai_api.error_body,
    error_schema={
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["message", "type", "code"],
                "properties": {"message": {"type": "string"}, "type": {"type": "string"}, "code": {"type": "integer"}},
            }
        },
    },
)


@router.get("/v1/models")
async def openai_models(deployments: DeploymentsDep) -> dict:
    return openai_api.models(deployments.settings)


@router.get("/v1/models/{model_id:path}", responses=errors(404))
async def openai_model(model_id: str) -> dict:
    return openai_api.model(model_id)


@router.post("/v1/embeddings", responses=errors(400, 404))
async def openai_embeddings(request: openai_api.EmbeddingRequest, deployments: DeploymentsDep) -> dict:
    ollama_api.embedding_model(request.model)
    request.refuse_unsupported()
    texts = ollama_api.embedding_texts(request.input)
    vectors = await read(deployments.pipeline.embed, texts)
    return openai_api.embedding_reply(vectors, request, texts)


@router.post(
    "/v1/chat/completions",
    responses={
        200: {
            "content": {SSE: {}},
            "description": "A chat.completion, or with `stream: true` chat.completion.chunk events, then [DONE].",
        },
        **errors(400, 404, 409, 503),
    },
)
async def openai_chat(request: openai_api.ChatCompletionRequest, deployments: DeploymentsDep):
    """The `reverie` model reasons (the last user message is the question); `smollm2:135m` generates."""
    request.refuse_unsupported()
    chat = ollama_api.ChatRequest(
        model=request.model,
        messages=request.ollama_messages(),
        format=request.ollama_format(),
        options=ollama_api.OllamaOptions(**request.options()),
    )
    return await _reply("chat", request, await chat_items(deployments, chat, user=request.user))


@router.post(
    "/v1/completions",
    responses={
        200: {
            "content": {SSE: {}},
            "description": "A text_completion, or with `stream: true` text_completion events, then [DONE].",
        },
        **errors(400, 404, 409, 503),
    },
)
async def openai_completions(request: openai_api.CompletionRequest, deployments: DeploymentsDep):
    """Legacy completions: the `reverie` model answers the prompt as a question; `smollm2:135m` continues it."""
    request.refuse_unsupported()
    generate = ollama_api.GenerateRequest(
        model=request.model, prompt=request.text(), options=ollama_api.OllamaOptions(**request.options())
    )
    return await _reply("text", request, await generate_items(deployments, generate))


async def _reply(kind, request: openai_api.Sampling, items):
    if request.stream:
        return StreamingResponse(
            openai_api.sse_chunks(kind, request.model, items, request.include_usage()), media_type=SSE
        )
    return await openai_api.whole_reply(kind, request.model, items)
