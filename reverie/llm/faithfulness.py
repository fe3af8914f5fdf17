"""How faithful an answer sentence is to the chain it says: the measures the student benchmark reports.

- answer inclusion: the sentence names the chain's answer (more often than the question does, as
  Reverie's grounding check counts it).
- chain grounding: the sentence passes Reverie's grounding check (reverie/llm/verbalize.py
  `grounded_sentence`: it names the answer and adds no denial the chain lacks) AND says nothing
  the chain, the question and the answer do not: at least GROUNDED_WORD_SHARE of its content words
  (words less function words, compared by a crude stem, so "shatters" is "shatter") occur in the
  chain's facts, the question or the answer. A sentence that brings in another entity or an
  invented consequence ("it shatters, causing the glass to shudder") fails it; one that rewords
  the facts with a word or two of its own passes.
- ROUGE-L: the longest common subsequence of lowercase word tokens, as an F-measure, between a
  sentence and a reference (the teacher's).

Pure Python: the benchmark and the tests use it on any backend's text.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

from reverie.llm.verbalize import first_sentence, grounded_sentence, step_fact

if TYPE_CHECKING:
    from reverie.schemas import Chain

GROUNDED_WORD_SHARE = 0.8


class AskedChain(Protocol):
    """A question and the chain that answers it (a sentences.SentencePrompt is one)."""

    @property
    def question(self) -> str: ...

    @property
    def chain(self) -> Chain: ...


"""The least share of a sentence's content words that the chain, question and answer must hold."""

_WORD = re.compile(r"[^\W_]+")  # letters and digits: "amino_acid" is two words, as the chain's text reads
# Words that carry no claim of their own: articles, pronouns, auxiliaries, prepositions, conjunctions,
# the words a sentence uses to link facts ("because", "so", "answer"), and the vague nouns of a
# class that name nothing ("bread is a type of food").
FUNCTION_WORDS = frozenset(
    """a an the this that these those it its it's they them their there here he she his her him you your we our i
    is are was were be been being am do does did done has have had having will would can could shall should may
    might must of in on at to from by with for as into onto over under about than then so because therefore thus
    hence since when whenever while if and or but nor not also too very just only which what who whom whose where
    why how answer question fact facts means mean called known one ones all any some each both either type types
    kind kinds sort form item items thing things""".split()
)


def words(text: str) -> list[str]:
    """Lowercase word tokens (letters and digits)."""
    return _WORD.findall(text.lower())


def _stem(word: str) -> str:
    # Enough to match a fact's "shatter" with a sentence's "shatters" or "shattered"; not a stemmer.
    for suffix, replacement in (("ies", "y"), ("ing", ""), ("ed", ""), ("es", ""), ("s", ""), ("ly", "")):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)] + replacement
    return word


def content_words(text: str) -> list[str]:
    """The stems of the words of `text` that are not function words."""
    return [_stem(word) for word in words(text) if word not in FUNCTION_WORDS]


def answer_included(sentence: str, question: str, chain: Chain) -> bool:
    """The first sentence names the chain's answer more often than the question does."""
    answer = chain.answer.lower()
    return first_sentence(sentence).lower().count(answer) > question.lower().count(answer)


def chain_grounded(sentence: str, question: str, chain: Chain) -> bool:
    """The first sentence passes Reverie's grounding check and at least GROUNDED_WORD_SHARE of its
    content words occur in the chain's facts, the question or the answer (see the module's doc)."""
    kept = grounded_sentence(sentence, question, chain)
    if kept is None:
        return False
    said = content_words(kept)
    if not said:
        return False
    known = set(content_words(" ".join([question, chain.answer, *(step_fact(step) for step in chain.steps)])))
    return sum(word in known for word in said) >= GROUNDED_WORD_SHARE * len(said)


def rouge_l(candidate: str, reference: str) -> float:
    """ROUGE-L F1: the longest common subsequence of the lowercase word tokens over their
    precision and recall; 0 when either has no words."""
    cand, ref = words(candidate), words(reference)
    if not cand or not ref:
        return 0.0
    previous = [0] * (len(ref) + 1)
    for token in cand:
        current = [0]
        for j, other in enumerate(ref):
            current.append(previous[j] + 1 if token == other else max(previous[j + 1], current[j]))
        previous = current
    common = previous[-1]
    if common == 0:
        return 0.0
    precision, recall = common / len(cand), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def faithfulness_report(
    prompts: Sequence[AskedChain], sentences: Sequence[str | None], references: Sequence[str | None] | None = None
) -> dict[str, float]:
    """Rates over the prompts of a model's replies (`sentences`, one per prompt; None for no reply):
    answer inclusion, chain grounding, and Reverie's grounded_sentence pass rate; with
    `references` (e.g. the teacher's replies), the mean ROUGE-L of each first sentence to its
    reference's (pairs without a reference left out)."""
    if len(prompts) != len(sentences) or (references is not None and len(references) != len(prompts)):
        raise ValueError("one sentence (and one reference) per prompt")
    n = len(prompts)
    if n == 0:
        raise ValueError("no prompts to report on")
    included = grounded = chained = 0
    for prompt, sentence in zip(prompts, sentences, strict=True):
        if sentence is None:
            continue
        included += answer_included(sentence, prompt.question, prompt.chain)
        grounded += grounded_sentence(sentence, prompt.question, prompt.chain) is not None
        chained += chain_grounded(sentence, prompt.question, prompt.chain)
    report = {
        "prompts": n,
        "answer_included": included / n,
        "chain_grounded": chained / n,
        "grounded_sentence": grounded / n,
    }
    if references is not None:
        pairs = [(s, r) for s, r in zip(sentences, references, strict=True) if s is not None and r is not None]
        report["rouge_l"] = sum(rouge_l(first_sentence(s), first_sentence(r)) for s, r in pairs) / max(1, len(pairs))
    return report
