"""Captions of the rendered entities, made from the world's facts: the texts the image tower learns to match."""

from __future__ import annotations

from reverie.data.render.tables import RENDERED_TYPES
from reverie.data.world import FOUND_IN, IS, IS_A, MADE_OF, USED_FOR, build_world, with_article


def _join(words: list[str] | tuple[str, ...]) -> str:
    words = list(words)
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def captions() -> dict[str, list[str]]:
    """For each rendered entity, 3-6 short captions made from the world's facts."""
    entities, triples = build_world()
    out_edges: dict[str, dict[str, list[str]]] = {}
    causes: dict[str, list[tuple[str, str]]] = {}  # result -> (property, action)
    structural = {MADE_OF, IS, IS_A, FOUND_IN, USED_FOR}
    for t in triples:
        out_edges.setdefault(t.head, {}).setdefault(t.relation, []).append(t.tail)
        if t.relation not in structural:
            causes.setdefault(t.tail, []).append((t.head, t.relation))
    made_from: dict[str, list[str]] = {}
    for t in triples:
        if t.relation == MADE_OF:
            made_from.setdefault(t.tail, []).append(t.head)
    holders: dict[str, list[str]] = {}
    for e in entities:
        if e.type == "material":
            for prop in out_edges.get(e.name, {}).get(IS, []):
                holders.setdefault(prop, []).append(e.name)

    result: dict[str, list[str]] = {}
    for e in entities:
        if e.type not in RENDERED_TYPES:
            continue
        name, edges = e.name, out_edges.get(e.name, {})
        if e.type == "object":
            a = with_article(name)
            mats, props = edges.get(MADE_OF, []), edges.get(IS, [])
            caps = [a, f"a photo of {a} made of {_join(mats)}"]
            if edges.get(IS_A) and edges.get(FOUND_IN):
                caps.append(f"{with_article(edges[IS_A][0])} made of {_join(mats)} found in the {edges[FOUND_IN][0]}")
            if edges.get(USED_FOR):
                caps.append(f"{a} used for {edges[USED_FOR][0]}")
            if props:
                caps.append(f"{a}, which is {_join(props)}")
            if edges.get(FOUND_IN):
                caps.append(f"{a} in the {edges[FOUND_IN][0]}")
        elif e.type == "material":
            props = edges.get(IS, [])
            caps = [f"a piece of {name}", f"{name}, which is {_join(props[:2])}"]
            if edges.get(IS_A):
                caps.append(f"a close-up of {name}, {with_article(edges[IS_A][0])}")
            if len(props) > 2:
                caps.append(f"{name} is {_join(props)}")
            if made_from.get(name):
                caps.append(f"{name}, the material of {with_article(made_from[name][0])}")
        elif e.type == "property":
            caps = [f"something {name}", e.description]
            for action in edges:
                if action not in structural:
                    caps += [f"something {name} {res} {action}" for res in edges[action]]
            if holders.get(name):
                caps.append(f"{name}, like {_join(holders[name][:3])}")
        else:
            caps = [f"a thing that {name}"]
            actions = list(dict.fromkeys(action for _, action in causes.get(name, [])))
            caps += [f"something {name} {action}" for action in actions]
            caps.append(e.description)
            caps += [f"something {prop} {name} {action}" for prop, action in causes.get(name, [])]
        result[name] = list(dict.fromkeys(caps))[:6]
    return result
