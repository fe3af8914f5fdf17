"""Conversation memory: the turns of each session, so a follow-up question can lean on the last answer."""

from __future__ import annotations

from collections import OrderedDict

from pydantic import BaseModel


class Turn(BaseModel):
    question: str
    answer_entity: str
    """Empty when the graph did not say."""
    linked: list[str]
    subject: str = ""
    """The entity the turn was about (where its answer's walks started)."""
    posed: str = ""
    """The self-contained question asked (the question itself unless the memory rewrote a follow-up)."""


class SessionMemory:
    """Recent turns per session, least recently used sessions evicted first."""

    def __init__(self, max_sessions: int = 1000, max_turns: int = 20):
        self.max_sessions = max_sessions
        self.max_turns = max_turns
        self._sessions: OrderedDict[str, list[Turn]] = OrderedDict()

    def remember(self, session_id: str, turn: Turn) -> None:
        turns = self._sessions.pop(session_id, [])
        turns = (turns + [turn])[-self.max_turns :]
        self._sessions[session_id] = turns
        while len(self._sessions) > self.max_sessions:
            self._sessions.popitem(last=False)

    def recall(self, session_id: str) -> list[Turn]:
        return list(self._sessions.get(session_id, []))
