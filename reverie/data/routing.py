"""The labelled routing set: messages a person sends, each with the route the hub should send it on.

Four routes (reverie.models.hub.ROUTES):

- "graph": a self-contained question that names an entity of the built-in world, of UMLS or of
  Kinship ("What happens when you drop a glass cup?", "What does alga interact with?"); half of
  them come after an earlier question (a change of topic is still a graph question);
- "follow-up": a question that leans on the previous turn: a pronoun ("and if you heat it?"), a
  new subject with the last relation ("what about a rubber ball?"), or the last answer as the
  subject ("and what happens to that then?"); it always has a previous question;
- "image": a question about an attached image ("what is this?"); with an image attached, a message
  that names an entity is still "image" (the image says which thing is meant);
- "small-talk": greetings, thanks, chit-chat and questions about the assistant, with or without
  an earlier question.

Each route has several template families, and every family is split into training and test
wordings: no test message is worded as any training one, so the test accuracy says how the router
does on phrasings it never saw. Messages are generated from the templates with a seeded numpy
Generator, then lightly paraphrased (casing, punctuation, a filler word in front), so the same seed
gives the same set on every machine. Nothing is cached on disk; encoding the texts is the caller's.

No torch, no Ray: plain Python over reverie.data.world and the UMLS / Kinship triples.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import numpy as np

from reverie.data.kg import load_dataset
from reverie.data.world import ACTION_QUESTIONS, MATERIALS, OBJECTS, with_article

ROUTE_NAMES = ("graph", "follow-up", "image", "small-talk")
"""The routes, in the order reverie.models.hub.ROUTES keeps them."""

Split = Literal["train", "test"]

MESSAGES_PER_ROUTE = {"train": 800, "test": 320}
"""3,200 training and 1,280 test messages, about 2,000 and 900 distinct texts: MiniLM encodes
them in ~10 s on 2 free cores."""
PREVIOUS_SHARE = 0.5
"""The share of graph and small-talk messages that come after an earlier question."""
NAMED_IMAGE_SHARE = 0.25
"""The share of image messages worded as a graph question (naming an entity) with the image attached."""


@dataclass(frozen=True)
class RoutingMessage:
    """One message of the routing set: its text, the previous question of the conversation (None at
    the start of one), whether an image is attached, and the route it should take."""

    text: str
    previous: str | None
    has_image: bool
    route: str


def _display(name: str) -> str:
    """How a dataset name reads (as reverie.encoders.text.display; the data room imports no encoder)."""
    return name.replace("_", " ").strip()


# ------------------------------------------------------------------------------- the subjects


@dataclass(frozen=True)
class _Subjects:
    objects: tuple[str, ...]
    materials: tuple[str, ...]
    umls: tuple[tuple[str, str], ...]  # (entity, relation) pairs that occur in UMLS's training triples
    kinship: tuple[tuple[str, str], ...]


@lru_cache(maxsize=1)
def _subjects() -> _Subjects:
    umls = sorted({(t.head, t.relation) for t in load_dataset("umls").train})
    kinship = sorted({(t.head, t.relation) for t in load_dataset("kinships").train})
    return _Subjects(
        objects=tuple(row[0] for row in OBJECTS),
        materials=tuple(MATERIALS),
        umls=tuple((_display(h), _umls_verb(r)) for h, r in umls),
        kinship=tuple(kinship),
    )


def _umls_verb(relation: str) -> str:
    """A UMLS relation as a verb phrase after "does X": "interacts_with" -> "interact with"."""
    words = _display(relation).split()
    special = {"isa": "belong to", "co-occurs": "co-occur"}
    if words[0] in special:
        words[0] = special[words[0]]
    elif words[0].endswith("s") and not words[0].endswith("ss"):
        words[0] = words[0][:-1]
    else:  # a noun relation: "result_of" -> "be result of"
        words.insert(0, "be")
    return " ".join(words)


_YOU = "What happens when you "
_ACTIONS = tuple(action for action, template in ACTION_QUESTIONS.items() if template.startswith(_YOU))
"""The world's actions a person does ("drop", "heat"): their wording fits "if I ...", "if you ..."."""


def _action_rest(action: str, subject: str) -> str:
    """ "drop {a}" of "What happens when you drop {a}?", with `subject` in place of {a}."""
    return ACTION_QUESTIONS[action][len(_YOU) : -1].format(a=subject)


# ------------------------------------------------------------------------- the template families

# A family: a function of (rng, subjects) -> (text, domain). Each route's families are split in two
# lists, "train" and "test"; the domain ("world", "umls", "kinship") ties a follow-up to a previous
# question of its own domain.
_Family = Callable[[np.random.Generator, _Subjects], tuple[str, str]]


def _pick(rng: np.random.Generator, items):
    return items[int(rng.integers(len(items)))]


def _world(*wordings: str) -> _Family:
    """World questions about an object ({a}: with its article, {x}: bare) or a material ({m})."""

    def family(rng, s):
        obj = _pick(rng, s.objects)
        action = _pick(rng, _ACTIONS)
        text = _pick(rng, wordings).format(
            a=with_article(obj), x=obj, m=_pick(rng, s.materials), act=_action_rest(action, with_article(obj))
        )
        return text, "world"

    return family


def _umls(*wordings: str) -> _Family:
    def family(rng, s):
        entity, verb = _pick(rng, s.umls)
        return _pick(rng, wordings).format(e=entity, r=verb), "umls"

    return family


def _kinship(*wordings: str) -> _Family:
    def family(rng, s):
        person, term = _pick(rng, s.kinship)
        return _pick(rng, wordings).format(p=person, t=term), "kinship"

    return family


GRAPH: dict[Split, list[_Family]] = {
    "train": [
        _world("What happens when you {act}?", "What would happen if I {act}?", "Tell me what happens when you {act}."),
        _world("What is {a} made of?", "What material is {a} made of?", "Which materials make up {a}?"),
        _world("Where would I find {a}?", "Where is {a} found?", "What kind of thing is {a}?"),
        _world("What is {a} used for?", "What can {a} be used for?", "What properties does {m} have?"),
        _umls("What does {e} {r}?", "Which entity does {e} {r}?", "Tell me what {e} can {r}."),
        _kinship("Which entity does {p} {t}?", "Who does {p} {t}?", "Who is related to {p} by {t}?"),
    ],
    "test": [
        _world(
            "If you {act}, what happens?", "Suppose I {act}: what is the result?", "Can you say what occurs if I {act}?"
        ),
        _world("Which material is {a} made from?", "What stuff is {a} built out of?", "Is {m} brittle or flexible?"),
        _world("In which room is {a} usually kept?", "What category does {a} belong to?", "Describe what {m} is like."),
        _umls("Name something that {e} can {r}.", "What is it that {e} might {r}?", "In UMLS, what does {e} {r}?"),
        _kinship("Whom does {p} call {t}?", "Find the {t} relative of {p}.", "List who {p} is {t} to."),
    ],
}


def _follow_pronoun(*wordings: str) -> _Family:
    """A follow-up about the last subject, by a pronoun ("and if you heat it?")."""

    def family(rng, s):
        action = _pick(rng, _ACTIONS)
        return _pick(rng, wordings).format(act=_action_rest(action, "it")), "world"

    return family


def _follow_subject(domain: str, *wordings: str) -> _Family:
    """A follow-up that asks the last question of a new subject ("what about a rubber ball?")."""

    def family(rng, s):
        if domain == "world":
            subject = with_article(_pick(rng, s.objects))
        elif domain == "umls":
            subject = _pick(rng, s.umls)[0]
        else:
            subject = _pick(rng, s.kinship)[0]
        return _pick(rng, wordings).format(s=subject), domain

    return family


def _follow_answer(*wordings: str) -> _Family:
    """A follow-up that takes the last answer as its subject ("and what happens to that then?")."""

    def family(rng, s):
        return _pick(rng, wordings), _pick(rng, ["world", "umls", "kinship"])

    return family


FOLLOW_UP: dict[Split, list[_Family]] = {
    "train": [
        _follow_pronoun(
            "and if you {act}?", "what about if you {act}?", "and what if I {act}?", "ok, and if you {act}?"
        ),
        _follow_answer(
            "and what is that used for?",
            "and what is it made of?",
            "and where is it found?",
            "what kind of thing is it?",
        ),
        _follow_subject("world", "what about {s}?", "and {s}?", "how about {s}?"),
        _follow_subject("umls", "and for {s}?", "what about {s}?", "and {s}?"),
        _follow_subject("kinship", "and for {s}?", "how about {s}?", "and {s}?"),
        _follow_answer("and what happens to that then?", "and then what?", "and what does that do?", "why is that?"),
    ],
    "test": [
        _follow_pronoun("suppose you {act} then?", "and in case you {act}?", "right, and if we {act}?"),
        _follow_answer("so what is it for?", "and its material?", "where do people keep it?", "is it heavy?"),
        _follow_subject("world", "same question for {s}", "what if it were {s} instead?", "is that true of {s} too?"),
        _follow_subject("umls", "same for {s}?", "what if it were {s} instead?", "does that hold for {s} too?"),
        _follow_subject("kinship", "same for {s}?", "and what of {s}?", "does that hold for {s} too?"),
        _follow_answer("and after that?", "so what does that lead to?", "and what comes next?", "how come?"),
    ],
}


def _image(*wordings: str) -> _Family:
    def family(rng, s):
        action = _pick(rng, _ACTIONS)
        return _pick(rng, wordings).format(act=_action_rest(action, "this")), "image"

    return family


IMAGE: dict[Split, list[_Family]] = {
    "train": [
        _image("what is this?", "what is this thing?", "can you tell me what this is?", "what's this?"),
        _image("what happens if I {act}?", "what happens when you {act}?", "what would happen if I {act}?"),
        _image("what is it made of?", "what is this made of?", "what material is this?"),
        _image("where would I find this?", "what is this used for?", "what kind of object is this?"),
    ],
    "test": [
        _image("what am I looking at?", "identify this for me", "what's in the picture?", "what object is shown?"),
        _image("if you {act}, what happens?", "suppose I {act}: what then?", "tell me the result if I {act}"),
        _image("which material is this from?", "what stuff is the thing in the photo made of?"),
        _image("in which room does this belong?", "what is the pictured thing for?", "is this a tool or a toy?"),
    ],
}


def _small_talk(*wordings: str) -> _Family:
    def family(rng, s):
        return _pick(rng, wordings), "chat"

    return family


SMALL_TALK: dict[Split, list[_Family]] = {
    "train": [
        _small_talk("hello", "hi there", "hey", "hi", "good morning", "good afternoon", "hello there", "hey you"),
        _small_talk("thanks!", "thank you", "thank you so much", "cheers", "thanks a lot", "great, thanks"),
        _small_talk("how are you?", "how's it going?", "how is your day?", "are you doing well?", "nice to meet you"),
        _small_talk("who are you?", "what's your name?", "are you a robot?", "what can you do?", "who built you?"),
        _small_talk("tell me a joke", "say something funny", "I'm bored", "you're great", "that's cool", "lol"),
        _small_talk("bye for now", "goodbye", "see you later", "good night", "talk to you soon", "bye"),
    ],
    "test": [
        _small_talk("howdy", "greetings!", "yo", "good evening", "hiya", "morning!"),
        _small_talk("many thanks", "much appreciated", "I appreciate it", "thx", "ta very much"),
        _small_talk("how do you do?", "how have you been?", "what's up?", "everything ok with you?"),
        _small_talk("what are you?", "are you human?", "who made you?", "what are you able to help with?"),
        _small_talk("make me laugh", "know any good jokes?", "you are awesome", "haha nice", "wow"),
        _small_talk("farewell", "catch you later", "I have to go now", "have a nice day", "see ya"),
    ],
}

FAMILIES: dict[str, dict[Split, list[_Family]]] = {
    "graph": GRAPH,
    "follow-up": FOLLOW_UP,
    "image": IMAGE,
    "small-talk": SMALL_TALK,
}

# ----------------------------------------------------------------------------- paraphrasing

_FILLERS = ("", "", "", "", "ok ", "so ", "hey, ", "well, ", "um, ", "quick question: ")
"""Words a person may put in front of any message; the empty ones keep most messages as generated."""


def _paraphrase(rng: np.random.Generator, text: str) -> str:
    """A light rewording: a filler in front, the case of the first letter, the final mark."""
    filler = _pick(rng, _FILLERS)
    if filler and text[:1].isupper() and not text.startswith("I "):
        text = text[0].lower() + text[1:]
    text = filler + text
    roll = rng.random()
    if roll < 0.15 and text[-1:] in "?!.":
        text = text[:-1]
    elif roll < 0.25 and text[-1:] == "?":
        text += "?"
    if rng.random() < 0.3:
        text = text[0].upper() + text[1:] if rng.random() < 0.5 else text.lower()
    return text


# -------------------------------------------------------------------------------- the set


CONVERSATION_SHARE = 0.4
"""Of the follow-ups (and a share of the graph questions, as topic switches), those drawn from the
generated conversations (reverie/data/conversations.py, the same split): the wordings the memory
resolves, "Name what this one isa.", must not look like small talk to the hub."""


def _conversation_turns(split: Split, seed: int) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(follow-ups, topic switches) of the split's generated conversations, each as (text, previous turn)."""
    from reverie.data.conversations import CONVERSATION_GRAPHS, conversation_graph, conversations

    leaning: list[tuple[str, str]] = []
    switching: list[tuple[str, str]] = []
    for name in CONVERSATION_GRAPHS:
        for conv in conversations(conversation_graph(name), split, 60, seed):
            for last, turn in zip(conv.turns, conv.turns[1:], strict=False):
                (switching if turn.kind == "topic-switch" else leaning).append((turn.text, last.text))
    return leaning, switching


def routing_messages(split: Split, seed: int = 0) -> list[RoutingMessage]:
    """The routing set's `split`: MESSAGES_PER_ROUTE[split] messages of each route, in a shuffled
    order, the same for the same seed. The test split uses only test wordings (seed + 1 draws
    them, so the two splits are also drawn independently)."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', not {split!r}")
    rng = np.random.default_rng(seed if split == "train" else seed + 1)
    subjects = _subjects()
    count = MESSAGES_PER_ROUTE[split]

    def draw(families: list[_Family]) -> tuple[str, str]:
        text, domain = _pick(rng, families)(rng, subjects)
        return _paraphrase(rng, text), domain

    # The graph questions first: the earlier turns of every conversation are drawn from them, so
    # a previous question costs no extra encoding.
    graph = [draw(GRAPH[split]) for _ in range(count)]
    graph_texts = [text for text, _ in graph]
    by_domain: dict[str, list[str]] = {}
    for text, domain in graph:
        by_domain.setdefault(domain, []).append(text)

    def previous_question(domain: str | None = None) -> str:
        """A graph question of this split (of `domain` when given) as the conversation's last turn."""
        return _pick(rng, by_domain[domain] if domain is not None else graph_texts)

    leaning, switching = _conversation_turns(split, seed)
    messages: list[RoutingMessage] = []
    previous: str | None
    for text, _domain in graph:
        if rng.random() < CONVERSATION_SHARE:  # a topic switch in a conversation: still a graph question
            text, previous = switching[int(rng.integers(len(switching)))]
        else:
            previous = previous_question() if rng.random() < PREVIOUS_SHARE else None
        messages.append(RoutingMessage(text, previous, False, "graph"))
    for _ in range(count):
        if rng.random() < CONVERSATION_SHARE:  # a follow-up of the generated conversations, after its last turn
            text, previous = leaning[int(rng.integers(len(leaning)))]
            messages.append(RoutingMessage(text, previous, False, "follow-up"))
            continue
        text, domain = draw(FOLLOW_UP[split])
        messages.append(RoutingMessage(text, previous_question(domain), False, "follow-up"))
    for _ in range(count):
        if rng.random() < NAMED_IMAGE_SHARE:
            text = _pick(rng, graph_texts)  # a graph question's wording, with an image attached
        else:
            text, _domain = draw(IMAGE[split])
        previous = previous_question() if rng.random() < PREVIOUS_SHARE else None
        messages.append(RoutingMessage(text, previous, True, "image"))
    for _ in range(count):
        text, _domain = draw(SMALL_TALK[split])
        previous = previous_question() if rng.random() < PREVIOUS_SHARE else None
        messages.append(RoutingMessage(text, previous, False, "small-talk"))
    order = rng.permutation(len(messages))
    return [messages[i] for i in order]


def message_texts(messages: list[RoutingMessage]) -> list[str]:
    """Every distinct text the messages need encoded (their own and their previous questions), sorted."""
    return sorted({m.text for m in messages} | {m.previous for m in messages if m.previous is not None})
