"""The Ollama wire format, so any Ollama client can talk to Reverie: GET and HEAD / (the liveness
probe), /api/version, /api/tags, /api/show, /api/ps, /api/generate, /api/chat, /api/embed and the
older /api/embeddings.

Three models are offered:
- `reverie`: the whole reasoning way. The prompt (or the last user message) is the question;
  the reply is the answer sentence, as the LLM writes it, then the chain with its provenance.
- `smollm2:135m`: the bundled LLM itself (or whatever `llm_backends` names), for plain generation.
- `reverie-student`: the student distilled from the LLM (`reverie train student`), for plain
  generation; listed where the home holds one.
- `fractal`: the home's fractal network (`reverie fractal train`, or POST /v1/fractal/train), which
  answers the last user message on its own (no history, no system message); listed where the home
  holds one. It honours temperature, seed, num_predict (words) and stop.
- `all-minilm-l6-v2`: MiniLM, the text encoder, for embeddings only.

Replies stream as NDJSON by default, as Ollama's do; `"stream": false` gives one JSON object.
Every request field is honoured, accepted as having no effect here (said so where it is
declared), or refused with 400; a field Ollama does not define is a 422.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import time
from collections.abc import AsyncIterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from reverie.encoders.text import text_dim
from reverie.errors import NotFoundError, ReverieError
from reverie.fractal import FRACTAL_MODEL
from reverie.llm.base import Finish, StopStrings
from reverie.schemas import Verdict
from reverie.serve.fractal import REPLY_WORDS as FRACTAL_WORDS

REASONING_MODEL = "reverie"
LLM_MODEL = "smollm2:135m"
STUDENT_MODEL = "reverie-student"
EMBEDDING_MODEL = "all-minilm-l6-v2"
MODELS = (REASONING_MODEL, LLM_MODEL, STUDENT_MODEL, FRACTAL_MODEL, EMBEDDING_MODEL)
GENERATING_BACKENDS: dict[str, str | None] = {LLM_MODEL: None, STUDENT_MODEL: "student"}
"""The LLM backend that writes each plain-generation model's replies (None: the settings' fallback chain).
The fractal network is no LLM backend: reverie/serve/chat.py sends its requests to the Fractal deployment."""
OWN_TEXT_MODELS = (REASONING_MODEL, FRACTAL_MODEL)
"""Models that write their replies their own way: no system message, no `format`."""
# The Ollama version clients gate features on (structured outputs came in 0.5); the Ollama face
# serves endpoints of that version.
OLLAMA_VERSION = "0.6.0"
NDJSON = "application/x-ndjson"
# Ollama keeps a model loaded until expires_at; Reverie's stay loaded for the server's life.
NEVER = "9999-12-31T23:59:59Z"
# SmolLM2-135M reads 8192 tokens; the prompt is never truncated to a smaller num_ctx.
LLM_CONTEXT = 8192
SEED_MAX = 2**63 - 1  # seeds are 64-bit, as torch's generator takes them
# Samplers Reverie does not implement, at the value that leaves them off.
NEUTRAL_OPTIONS = {
    "repeat_penalty": 1.0,
    "presence_penalty": 0.0,
    "frequency_penalty": 0.0,
    "min_p": 0.0,
    "typical_p": 1.0,
    "tfs_z": 1.0,
    "mirostat": 0,
}


class OllamaOptions(BaseModel):
    """Ollama's options. Honoured: temperature, top_k, top_p, num_predict, seed, stop (the
    `reverie` model honours seed, num_predict and stop, counting its reply in words; the others
    do not apply to it: its sentence is decoded as the server's settings say).

    Accepted with no effect, because they tune how Ollama runs a model rather than what it writes:
    num_ctx (the prompt is never truncated; SmolLM2 reads 8192 tokens), num_keep, num_batch,
    num_gpu, main_gpu, low_vram, f16_kv, logits_all, vocab_only, use_mmap, use_mlock, numa,
    num_thread, embedding_only; and the settings of samplers left off (repeat_last_n,
    mirostat_tau, mirostat_eta, penalize_newline, which current Ollama ignores too).

    Refused with 400 when set to anything but their neutral value, because they would change the
    reply and Reverie does not implement them: repeat_penalty (1), presence_penalty (0),
    frequency_penalty (0), min_p (0), typical_p (1), tfs_z (1), mirostat (0). An option Ollama
    does not define is a 422.
    """

    model_config = ConfigDict(extra="forbid")

    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_k: int | None = Field(default=None, ge=1)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    num_predict: int | None = Field(
        default=None, ge=1, le=1024, description="Tokens to generate at most (the `reverie` model: words)."
    )
    seed: int | None = Field(default=None, ge=0, le=SEED_MAX)
    stop: list[str] | None = Field(
        default=None, max_length=16, description="The reply ends before the first of these strings."
    )
    # no effect here (see the docstring)
    num_ctx: int | None = None
    num_keep: int | None = None
    num_batch: int | None = None
    num_gpu: int | None = None
    main_gpu: int | None = None
    low_vram: bool | None = None
    f16_kv: bool | None = None
    logits_all: bool | None = None
    vocab_only: bool | None = None
    use_mmap: bool | None = None
    use_mlock: bool | None = None
    numa: bool | None = None
    num_thread: int | None = None
    embedding_only: bool | None = None
    repeat_last_n: int | None = None
    mirostat_tau: float | None = None
    mirostat_eta: float | None = None
    penalize_newline: bool | None = None
    # refused unless neutral
    repeat_penalty: float | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    min_p: float | None = None
    typical_p: float | None = None
    tfs_z: float | None = None
    mirostat: int | None = None

    def sampling(self) -> dict[str, Any]:
        """The options generation honours; refuses (400) a sampler Reverie does not implement."""
        changed = [name for name, neutral in NEUTRAL_OPTIONS.items() if getattr(self, name) not in (None, neutral)]
        if changed:
            raise ReverieError(
                f"options not supported: {', '.join(changed)} (Reverie samples with temperature, top_k, top_p, "
                "num_predict, seed and stop)"
            )
        return {
            "temperature": self.temperature,
            "top_k": self.top_k,
            "top_p": self.top_p,
            "num_predict": self.num_predict,
            "seed": self.seed,
            "stop": self.stop,
        }


FORMAT_DOC = (
    'Ollama\'s structured output, for `smollm2:135m`: "json" holds the reply to one JSON object; a schema of one '
    'string from a list ({"type": "string", "enum": [...]}) makes the reply one of them, JSON-encoded. Other '
    "schemas, and any format for `reverie`, are refused with 400."
)
IMAGES_DOC = "Base64 images, as Ollama takes them: the `reverie` model links one to the entity it shows; the text-only LLM refuses images."
KEEP_ALIVE_DOC = "Accepted with no effect: every model stays loaded for the server's life."
THINK_DOC = "Only false: no model here thinks aloud."


def one_image(images: list[str] | None, model: str) -> str | None:
    """The question's image; Reverie reasons about one subject, and the bundled LLM sees no images."""
    if not images:
        return None
    if model != REASONING_MODEL:
        raise ReverieError(f"model {model!r} does not support images; ask the {REASONING_MODEL!r} model")
    if len(images) > 1:
        raise ReverieError(f"send one image per question, not {len(images)}")
    return images[0]


def structured_output(format: str | dict[str, Any] | None, model: str) -> dict[str, Any]:
    """The generation options a `format` asks for: {"json_object": True}, {"choices": [...]}, or
    none; 400 for a format Reverie cannot hold the reply to."""
    if format in (None, ""):
        return {}
    if model == REASONING_MODEL:
        raise ReverieError(
            f"the {REASONING_MODEL!r} model replies in text: `format` is for {LLM_MODEL!r} "
            "(POST /v1/query gives the verdict as JSON)"
        )
    if model == FRACTAL_MODEL:
        raise ReverieError(f"the {FRACTAL_MODEL!r} model replies in text: `format` is for {LLM_MODEL!r}")
    if format == "json":
        return {"json_object": True}
    choices = choices_of(format)
    if choices is None:
        raise ReverieError(
            'format: Reverie holds a reply to "json" or to a schema of one string from a list '
            '({"type": "string", "enum": [...]}); other schemas are not supported'
        )
    return {"choices": choices}


def choices_of(format: str | dict[str, Any] | None) -> list[str] | None:
    """The strings a `format` schema allows, when it is one string from a list; else None."""
    if (
        not isinstance(format, dict)
        or format.get("type", "string") != "string"
        or set(format) - {"type", "enum", "title", "description"}
    ):
        return None
    enum = format.get("enum")
    if isinstance(enum, list) and enum and all(isinstance(c, str) and c for c in enum):
        return enum
    return None


class GenerateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1)
    prompt: str = Field(
        default="", description='The prompt; empty only loads the model (done_reason "load"), as in Ollama.'
    )
    system: str | None = Field(
        default=None, description="A system message (`smollm2:135m`); the `reverie` model refuses one."
    )
    stream: bool = True
    format: str | dict[str, Any] | None = Field(default=None, description=FORMAT_DOC)
    options: OllamaOptions = Field(default_factory=OllamaOptions)
    images: list[str] | None = Field(default=None, description=IMAGES_DOC)
    keep_alive: float | str | None = Field(default=None, description=KEEP_ALIVE_DOC)
    think: bool | str | None = Field(default=None, description=THINK_DOC)
    raw: bool | None = Field(default=None, description="Only false: the model's chat template is always applied.")
    suffix: str | None = Field(default=None, description="Refused: no model here fills in the middle.")
    template: str | None = Field(default=None, description="Refused: the model's own chat template is used.")
    context: list[int] | None = Field(
        default=None, description="Refused: Reverie returns no token context; use /api/chat."
    )

    def refuse_unsupported(self) -> None:
        refused = [
            name
            for name, value in (
                ("raw", self.raw),
                ("suffix", self.suffix),
                ("template", self.template),
                ("context", self.context),
                ("think", self.think),
            )
            if value
        ]
        if refused:
            raise ReverieError(f"not supported: {', '.join(refused)}")
        if self.system and model_name(self.model) in OWN_TEXT_MODELS:
            raise ReverieError(f"the {model_name(self.model)!r} model takes no system message")


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "user", "assistant", "tool"]
    content: str = ""
    images: list[str] | None = Field(default=None, description=IMAGES_DOC)
    thinking: str | None = Field(default=None, description="An earlier reply's thinking: accepted, not read.")
    tool_calls: list[dict[str, Any]] | None = Field(default=None, description="Refused: tools are not supported.")
    tool_name: str | None = Field(default=None, description="Refused: tools are not supported.")


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1)
    messages: list[ChatMessage] = Field(
        default_factory=list, description="The conversation; empty only loads the model, as in Ollama."
    )
    stream: bool = True
    format: str | dict[str, Any] | None = Field(default=None, description=FORMAT_DOC)
    options: OllamaOptions = Field(default_factory=OllamaOptions)
    tools: list[dict[str, Any]] | None = Field(default=None, description="Refused: tools are not supported.")
    keep_alive: float | str | None = Field(default=None, description=KEEP_ALIVE_DOC)
    think: bool | str | None = Field(default=None, description=THINK_DOC)

    def refuse_unsupported(self) -> None:
        if self.tools or any(m.role == "tool" or m.tool_calls or m.tool_name for m in self.messages):
            raise ReverieError("tools are not supported")
        if self.think:
            raise ReverieError("not supported: think")

    def system_and_prompt(self) -> tuple[str | None, str]:
        """The system messages joined, and the conversation so far ending at the last user turn."""
        system = "\n".join(m.content for m in self.messages if m.role == "system") or None
        turns = [m for m in self.messages if m.role in ("user", "assistant")]
        if not turns or turns[-1].role != "user":
            raise ValueError("the last message must be the user's")
        if len(turns) == 1:
            return system, turns[0].content
        history = "\n".join(f"{m.role.capitalize()}: {m.content}" for m in turns[:-1])
        return system, f"{history}\nUser: {turns[-1].content}"

    def session_id(self, user: str | None = None) -> str:
        """The conversation's session for the `reverie` model: its model, system messages and first
        user message (and the client's user id, when it sends one). Every turn of a chat UI's
        conversation resends these, so each turn lands in the session the first one started, and a
        follow-up that names nothing continues from the last answer's subject."""
        opening = [m.content for m in self.messages if m.role == "system"]
        opening += [next(m.content for m in self.messages if m.role == "user")]
        key = json.dumps([model_name(self.model), user, opening])
        return "chat-" + hashlib.sha256(key.encode()).hexdigest()[:32]


class ShowRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field(default="", description="The model to describe.")
    name: str = Field(default="", description="The older name of `model`.")
    verbose: bool | None = Field(
        default=None, description="Accepted; the reply is the same (no tokenizer arrays are listed)."
    )


class EmbedRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1)
    input: str | list[str] = Field(description="A text or a list of texts.")
    truncate: bool | None = Field(
        default=None, description="Only true (the default): MiniLM reads the first 128 tokens of each text."
    )
    dimensions: int | None = Field(
        default=None, description="Refused unless it is MiniLM's width (384): its vectors are that wide."
    )
    options: OllamaOptions | None = Field(
        default=None, description="Accepted with no effect: embedding samples nothing."
    )
    keep_alive: float | str | None = Field(default=None, description=KEEP_ALIVE_DOC)

    def texts(self) -> list[str]:
        if self.truncate is False:
            raise ReverieError("truncate: false is not supported: MiniLM reads the first 128 tokens of each text")
        if self.dimensions not in (None, text_dim()):
            raise ReverieError(f"dimensions: {EMBEDDING_MODEL} gives {text_dim()}-d vectors only")
        return embedding_texts(self.input)


class EmbeddingsRequest(BaseModel):
    """The older /api/embeddings: one prompt, one vector."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1)
    prompt: str = Field(min_length=1)
    options: OllamaOptions | None = Field(
        default=None, description="Accepted with no effect: embedding samples nothing."
    )
    keep_alive: float | str | None = Field(default=None, description=KEEP_ALIVE_DOC)


def embedding_texts(texts: str | list[str]) -> list[str]:
    texts = [texts] if isinstance(texts, str) else texts
    if not texts or len(texts) > 2048:
        raise ReverieError("input must hold 1 to 2048 texts")
    return texts


def model_name(requested: str) -> str:
    """The model Reverie serves under `requested` ("reverie:latest" is "reverie"), or a 404."""
    name = requested.removesuffix(":latest")
    if name not in MODELS:
        raise NotFoundError(f"model {requested!r} not found; this server has {', '.join(map(repr, MODELS))}")
    return name


def generating_model(requested: str) -> str:
    """A model that writes replies (not the embedding model), or a 404 / 400."""
    name = model_name(requested)
    if name == EMBEDDING_MODEL:
        raise ReverieError(
            f"{EMBEDDING_MODEL!r} only embeds: use /api/embed, or the {REASONING_MODEL!r} or {LLM_MODEL!r} model"
        )
    return name


def embedding_model(requested: str) -> str:
    name = model_name(requested)
    if name != EMBEDDING_MODEL:
        raise ReverieError(f"{name!r} does not embed: use {EMBEDDING_MODEL!r}")
    return name


def _file_size(find) -> int:
    try:
        return find().stat().st_size
    except (OSError, RuntimeError, ReverieError):  # a missing model package shows where the model loads
        return 0


def _llm_file():
    from reverie.llm.local import bundled_gguf_path

    return bundled_gguf_path()


def _student_file(settings) -> Path:
    from reverie.home import Home

    return Home(settings.home).student / "model.safetensors"


def _student_parameters(settings) -> str:
    """The student's weights in millions, from the card `reverie train student` writes beside it."""
    try:
        card = json.loads((_student_file(settings).parent / "student.json").read_text())
        return f"{card['weights'] / 1e6:.1f}M"
    except (OSError, ValueError, KeyError, TypeError):
        return "small"


def _fractal_file(settings) -> Path:
    from reverie.home import Home

    return Home(settings.home).fractal


def _fractal_parameters(settings) -> str:
    """The fractal network's weights, counted from its state file's tensor shapes."""
    from safetensors import safe_open

    try:
        with safe_open(str(_fractal_file(settings)), framework="pt") as handle:
            count = sum(math.prod(handle.get_slice(name).get_shape()) for name in handle.keys())
        return f"{count / 1e6:.2f}M"
    except Exception:  # noqa: BLE001 - a file being replaced or damaged: the listing still answers
        return "small"


def served_models(settings) -> tuple[str, ...]:
    """The models this server lists: every one, the student and the fractal network only where the home holds one."""
    held = {STUDENT_MODEL: _student_file, FRACTAL_MODEL: _fractal_file}
    return tuple(name for name in MODELS if name not in held or held[name](settings).is_file())


def _minilm_file():
    from reverie.encoders.text import bundled_minilm_path

    return bundled_minilm_path() / "model.safetensors"


# SmolLM2's chat template in Ollama's template language; the student shares its tokenizer and template.
CHAT_TEMPLATE = (
    "{{ if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n{{ end }}<|im_start|>user\n{{ .Prompt }}<|im_end|>\n"
    "<|im_start|>assistant\n"
)

MODEL_CARDS: dict[str, dict[str, Any]] = {
    REASONING_MODEL: {
        "details": {
            "parent_model": "",
            "format": "reverie",
            "family": "reverie",
            "families": ["reverie"],
            "parameter_size": "graph",
            "quantization_level": "none",
        },
        "capabilities": ["completion", "vision"],
        "model_info": {
            "general.architecture": "reverie",
            "general.description": "graph RAG: dream rollouts over a knowledge graph, "
            "an arbiter, and the answer put into words by the LLM",
        },
        "template": "{{ .Prompt }}",
        "size": lambda settings: 0,
    },
    LLM_MODEL: {
        "details": {
            "parent_model": "",
            "format": "gguf",
            "family": "llama",
            "families": ["llama"],
            "parameter_size": "135M",
            "quantization_level": "Q4_1",
        },
        "capabilities": ["completion"],
        "model_info": {
            "general.architecture": "llama",
            "general.parameter_count": 134_515_008,
            "llama.context_length": LLM_CONTEXT,
            "llama.embedding_length": 576,
            "llama.block_count": 30,
            "llama.vocab_size": 49152,
        },
        "template": CHAT_TEMPLATE,
        "size": lambda settings: _file_size(_llm_file),
    },
    STUDENT_MODEL: {
        "details": {
            "parent_model": LLM_MODEL,
            "format": "safetensors",
            "family": "llama",
            "families": ["llama"],
            "parameter_size": "small",  # read from the student's card when listed
            "quantization_level": "F16",
        },
        "capabilities": ["completion"],
        "model_info": {"general.architecture": "llama", "llama.vocab_size": 49152},
        "template": CHAT_TEMPLATE,
        "size": lambda settings: _file_size(lambda: _student_file(settings)),
    },
    FRACTAL_MODEL: {
        "details": {
            "parent_model": "",
            "format": "safetensors",
            "family": "fractal",
            "families": ["fractal"],
            "parameter_size": "small",  # read from the state file when listed
            "quantization_level": "F32",
        },
        "capabilities": ["completion"],
        "model_info": {
            "general.architecture": "fractal",
            "general.description": "a growing fractal network (VAE latent, a tree of nodes) over the message's "
            "MiniLM vector, and a word-level GRU that writes the reply; trained on Q&A pairs",
        },
        "template": "{{ .Prompt }}",
        "size": lambda settings: _file_size(lambda: _fractal_file(settings)),
    },
    EMBEDDING_MODEL: {
        "details": {
            "parent_model": "",
            "format": "safetensors",
            "family": "bert",
            "families": ["bert"],
            "parameter_size": "22M",
            "quantization_level": "F32",
        },
        "capabilities": ["embedding"],
        "model_info": {"general.architecture": "bert", "bert.context_length": 128, "bert.embedding_length": text_dim()},
        "template": "",
        "size": lambda settings: _file_size(_minilm_file),
    },
}


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


def _details(name: str, settings) -> dict[str, Any]:
    details = MODEL_CARDS[name]["details"]
    if name == STUDENT_MODEL:
        return {**details, "parameter_size": _student_parameters(settings)}
    if name == FRACTAL_MODEL:
        return {**details, "parameter_size": _fractal_parameters(settings)}
    return details


def tags(settings) -> dict[str, Any]:
    now = _now()
    return {
        "models": [
            {
                "name": name,
                "model": name,
                "modified_at": now,
                "size": MODEL_CARDS[name]["size"](settings),
                "digest": "",
                "details": _details(name, settings),
            }
            for name in served_models(settings)
        ]
    }


def running(settings) -> dict[str, Any]:
    """/api/ps: every model is loaded while the server runs, on the CPU (size_vram 0)."""
    return {
        "models": [
            {
                "name": name,
                "model": name,
                "size": MODEL_CARDS[name]["size"](settings),
                "digest": "",
                "details": _details(name, settings),
                "expires_at": NEVER,
                "size_vram": 0,
                "context_length": LLM_CONTEXT if name in GENERATING_BACKENDS else None,
            }
            for name in served_models(settings)
        ]
    }


def show(request: ShowRequest, settings) -> dict[str, Any]:
    """/api/show: a model's details; `parameters` are the sampling settings it runs with."""
    name = model_name(request.model or request.name)
    card = MODEL_CARDS[name]
    parameters = {}
    if name in GENERATING_BACKENDS:
        parameters = {
            "temperature": settings.temperature,
            "top_k": settings.top_k,
            "num_predict": settings.max_new_tokens,
            "stop": '"<|im_end|>"',
        }
    elif name == REASONING_MODEL:
        parameters = {"num_predict": settings.max_new_tokens, "rollouts": settings.rollouts, "hops": settings.hops}
    elif name == FRACTAL_MODEL:
        parameters = {"temperature": 0, "num_predict": FRACTAL_WORDS}
    modelfile = f"# Served by Reverie\nFROM {name}\n" + "".join(f"PARAMETER {k} {v}\n" for k, v in parameters.items())
    if card["template"]:
        modelfile += f'TEMPLATE """{card["template"]}"""\n'
    return {
        "modelfile": modelfile,
        "parameters": "\n".join(f"{k:<30} {v}" for k, v in parameters.items()),
        "template": card["template"],
        "details": _details(name, settings),
        "model_info": card["model_info"],
        "capabilities": card["capabilities"],
        "license": "Apache-2.0",
        "modified_at": _now(),
    }


def version(package_version: str, endpoints: list[str]) -> dict[str, Any]:
    """What clients gate features on (an Ollama version), and what this server really is."""
    return {"version": OLLAMA_VERSION, "reverie": {"version": package_version, "endpoints": endpoints}}


def loaded(kind: Literal["generate", "chat"], model: str) -> dict[str, Any]:
    """Ollama's reply to an empty prompt or conversation: the model is loaded (it always is here)."""
    reply = _chunk(kind, model, "", done=True)
    reply["done_reason"] = "load"
    return reply


def chain_lines(verdict: Verdict) -> list[str]:
    """What the `reverie` model's reply says after its answer sentence, line by line: the image's
    entity, then the chain with each step's provenance."""
    lines = ["", f"Chain ({verdict.policy}, confidence {verdict.confidence:.2f}):"]
    if verdict.image is not None:
        lines.insert(0, f"(The image shows {verdict.image.entity}, similarity {verdict.image.score:.2f}.)")
    if verdict.chain is None:  # the graph does not say: the nearest chains, none of them the answer
        lines[-1] = f"Nearest chains ({verdict.policy}, not an answer: confidence {verdict.confidence:.2f}):"
        for chain in verdict.alternatives:
            lines.append("- " + " -> ".join([chain.steps[0].what] + [f"[{s.action}] {s.result}" for s in chain.steps]))
        return lines
    for i, step in enumerate(verdict.chain.steps, 1):
        flag = " [imagined]" if step.imagined else ""
        lines.append(f"{i}. {step.what} --[{step.action}]--> {step.result}{flag} (source {step.source})")
    return lines


# A sentence ends at . ! or ? followed by a space, as verbalize.first_sentence cuts it.
_SENTENCE_END = re.compile(r"\S.*?[.!?](?=\s)", re.S)


class FirstSentence:
    """The model's streamed reply, passed on up to the end of its first sentence: the part the
    grounding check keeps (the model rambles on after it)."""

    def __init__(self):
        self.text = ""
        self.sent = 0
        self.ended = False

    def feed(self, piece: str) -> str:
        if self.ended:
            return ""
        self.text += piece
        match = _SENTENCE_END.search(self.text)
        end = match.end() if match else len(self.text)
        self.ended = match is not None
        out, self.sent = self.text[self.sent : end], end
        return out


class ReplyLimits:
    """`stop` and `num_predict` applied to a reply that is not an LLM's own stream (the `reverie`
    model's): the reply ends before a stop string, or after `max_words` words ("length")."""

    def __init__(self, stop: list[str] | None, max_words: int | None):
        self.stops = StopStrings(stop or ())
        self.max_words = max_words
        self.text = ""
        self.reason: Literal["stop", "length"] = "stop"

    @property
    def ended(self) -> bool:
        return self.stops.stopped or self.reason == "length"

    def feed(self, piece: str) -> str:
        return self._counted(self.stops.feed(piece))

    def flush(self) -> str:
        return self._counted(self.stops.flush())

    def _counted(self, out: str) -> str:
        if self.reason == "length":
            return ""
        if self.max_words is not None:
            found = list(re.finditer(r"\S+", self.text + out))
            if len(found) > self.max_words:
                out = out[: found[self.max_words - 1].end() - len(self.text)]
                self.reason = "length"
        self.text += out
        return out


def words(text: str) -> int:
    """The `reverie` model's token count: words, an approximation (its reply is not one model's tokens)."""
    return len(text.split())


def failure(exc: BaseException) -> tuple[int, str]:
    """(status, message) of an error met once a reply is streaming: the user's error inside
    Ray's wrapper, or a server error named by its type."""
    from ray.exceptions import RayTaskError

    from reverie.pipeline import user_error

    if isinstance(exc, RayTaskError):
        exc = user_error(exc)
    if isinstance(exc, ReverieError):
        return exc.status, exc.message
    return 500, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _chunk(kind: Literal["generate", "chat"], model: str, text: str, done: bool) -> dict[str, Any]:
    reply: dict[str, Any] = {"model": model, "created_at": _now(), "done": done}
    if kind == "chat":
        reply["message"] = {"role": "assistant", "content": text}
    else:
        reply["response"] = text
    return reply


def _final(kind: Literal["generate", "chat"], model: str, text: str, finish: Finish, started: float) -> dict[str, Any]:
    reply = _chunk(kind, model, text, done=True)
    reply.update(
        {
            "done_reason": finish.reason,
            "total_duration": int((time.perf_counter() - started) * 1e9),
            "load_duration": finish.load_ns,
            "prompt_eval_count": finish.prompt_tokens,
            "prompt_eval_duration": finish.prompt_ns,
            "eval_count": finish.completion_tokens,
            "eval_duration": finish.completion_ns,
        }
    )
    return reply


async def ndjson_lines(
    kind: Literal["generate", "chat"], model: str, items: AsyncIterator[str | Finish], started: float
) -> AsyncIterator[bytes]:
    """A streamed reply: one line per piece, then a final line with done true and the counts. A
    failure once the reply is open is a last line {"error": ...}, as Ollama sends one."""
    try:
        async for item in items:
            if isinstance(item, Finish):
                yield (json.dumps(_final(kind, model, "", item, started)) + "\n").encode()
            else:
                yield (json.dumps(_chunk(kind, model, item, done=False)) + "\n").encode()
    except Exception as exc:  # noqa: BLE001 - the status is sent; the client reads the error line
        yield (json.dumps({"error": failure(exc)[1]}) + "\n").encode()


async def whole_reply(
    kind: Literal["generate", "chat"], model: str, items: AsyncIterator[str | Finish], started: float
) -> dict[str, Any]:
    parts: list[str] = []
    async for item in items:
        if isinstance(item, Finish):
            return _final(kind, model, "".join(parts), item, started)
        parts.append(item)
    raise RuntimeError("a reply ended without its Finish")
