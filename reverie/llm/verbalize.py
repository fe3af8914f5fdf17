"""One answer sentence from a reasoning chain, said by an LLM and checked against the chain.

The bundled 135M model is fluent but unreliable: it rambles past one sentence, invents facts, and
sometimes denies the very answer it was given. So only its first sentence is kept, and only when
that sentence names the answer and adds no denial the chain lacks; otherwise a sentence built
from the chain itself is returned, with backend "template".
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, MutableMapping
from typing import TYPE_CHECKING

from reverie.edges import parse_relation_label
from reverie.llm.base import BackendUnavailable, Sampling
from reverie.llm.chain import FallbackChain, StreamedAnswer
from reverie.schemas import Chain, Step

if TYPE_CHECKING:
    from reverie.config import Settings

log = logging.getLogger(__name__)

TEMPLATE_BACKEND = "template"
# Only a reply's first sentence is kept, so its generation stops where that sentence ends (the
# stop string is cut off; `verbalize` puts the full stop back). It halves the tokens generated.
SENTENCE_ENDS = (". ", "! ", "? ", "\n")

# A sentence ends at . ! or ? followed by a space or the end; "3.5" does not end one.
_FIRST_SENTENCE = re.compile(r"^(.+?[.!?])(?=\s|$)", re.S)
_NEGATION = re.compile(r"\b(no|not|never|cannot|none)\b|n['’]t\b", re.I)


def step_fact(step: Step) -> str:
    """The stored fact behind a step, as "what action result".

    A step walked against the stored direction states the stored fact, result first, so the
    text never claims the reverse relation (e.g. "glass made of glass cup").
    """
    if not step.inverse:
        return f"{step.what} {step.action} {step.result}"
    relation, _ = parse_relation_label(step.action)
    return f"{step.result} {relation} {step.what}"


def build_prompt(question: str, chain: Chain) -> tuple[str, str]:
    """(system, user) messages: the chain's facts and answer in the system, the question as user.

    This layout made SmolLM2-135M state the answer most often among the layouts tried.
    """
    facts = " ".join(f"{step_fact(step)}." for step in chain.steps)
    system = (
        f"Facts: {facts}\nAnswer the user's question in one sentence, using the facts. The answer is: {chain.answer}."
    )
    return system, question


def template_sentence(question: str, chain: Chain) -> str:
    """A sentence made from the chain alone: the answer, then each fact that leads to it."""
    answer = chain.answer[:1].upper() + chain.answer[1:]
    facts = [step_fact(step) for step in chain.steps]
    if not facts:
        return f"{answer}."
    if len(facts) == 1:
        return f"{answer} — because {facts[0]}."
    return f"{answer} — because " + "; ".join(facts[:-1]) + f"; and {facts[-1]}."


def no_fact_sentence(nearest: list[Chain]) -> str:
    """What a verdict says when the graph does not say: that, then the nearest chain's facts,
    offered as what the graph does hold rather than as an answer."""
    if not nearest or not nearest[0].steps:
        return "The graph has no fact that answers this."
    facts = "; ".join(step_fact(step) for step in nearest[0].steps)
    return f"The graph has no fact that answers this. The nearest it holds: {facts}."


def first_sentence(text: str) -> str:
    text = text.strip()
    match = _FIRST_SENTENCE.match(text)
    sentence = match.group(1) if match else text.split("\n", 1)[0]
    return sentence.strip().strip('"').strip()


def grounded_sentence(text: str, question: str, chain: Chain) -> str | None:
    """The first sentence of a model's reply when the chain supports it, else None.

    Supported means: it names the answer more often than the question does (a sentence that only
    repeats "rubber ball" has not said "rubber"), and it has no negation unless the chain has one
    (the model likes to answer "No, it does not ...").
    """
    sentence = first_sentence(text)
    answer = chain.answer.lower()
    if not sentence or sentence.lower().count(answer) <= question.lower().count(answer):
        return None
    chain_text = " ".join([step_fact(step) for step in chain.steps] + [chain.answer])
    if _NEGATION.search(sentence) and not _NEGATION.search(chain_text):
        return None
    return sentence


def verbalize(
    answers: list[tuple[str, Chain, int | None]],
    llm_chain: FallbackChain,
    settings: Settings,
    replies: MutableMapping[tuple, tuple[str, str]] | None = None,
) -> list[tuple[str, str]]:
    """(sentence, backend) for each (question, chain, seed): the model's grounded first sentence,
    else the template sentence. The replies not in `replies` (a cache of model replies, by prompt,
    and by seed when sampling) are generated as one batch and added to it.

    When every backend is unavailable the template answers too, so a question still gets a reply;
    the backend "template" says so, and nothing is cached.
    """
    sampled = settings.temperature > 0
    keys = [(*build_prompt(question, chain), seed if sampled else None) for question, chain, seed in answers]
    replies = {} if replies is None else replies
    missing = list(dict.fromkeys(key for key in keys if key not in replies))
    if missing:
        try:
            generated = llm_chain.generate_many(
                [(user, system, seed) for system, user, seed in missing],
                Sampling.from_settings(settings, stop=SENTENCE_ENDS),
            )
        except BackendUnavailable as exc:
            log.warning("no LLM could verbalize; using the template: %s", exc)
            return [(template_sentence(question, chain), TEMPLATE_BACKEND) for question, chain, _ in answers]
        replies.update(zip(missing, generated, strict=True))
    sentences = []
    for (question, chain, _), key in zip(answers, keys, strict=True):
        text, backend = replies[key]
        sentence = grounded_sentence(text, question, chain)
        if sentence is None:
            log.info("%s reply not grounded in the chain, using the template: %r", backend, text)
            sentences.append((template_sentence(question, chain), TEMPLATE_BACKEND))
        else:
            sentences.append((sentence if sentence.endswith((".", "!", "?")) else f"{sentence}.", backend))
    return sentences


def stream_verbalize(
    question: str, chain: Chain, llm_chain: FallbackChain, settings: Settings, seed: int | None = None
) -> StreamedAnswer:
    """The model's reply as it is written, with its backend once the first piece arrives.

    These are the raw pieces, not grounded: the check needs the whole sentence, and the pieces
    are already sent by then. A caller that needs the checked sentence passes the finished
    `.text` to `grounded_sentence` (None means: use `template_sentence`). When every backend is
    unavailable the stream is the template sentence, with backend "template".
    """
    system, user = build_prompt(question, chain)
    model_answer = llm_chain.stream(user, system, Sampling.from_settings(settings, seed=seed))

    def named_pieces() -> Iterator[tuple[str, str]]:
        pieces = iter(model_answer)
        try:
            first = next(pieces, "")
        except BackendUnavailable as exc:
            log.warning("no LLM could verbalize; using the template: %s", exc)
            yield TEMPLATE_BACKEND, template_sentence(question, chain)
            return
        yield model_answer.backend or "", first
        yield from ((model_answer.backend or "", piece) for piece in pieces)

    return StreamedAnswer(named_pieces())
