"""The CLI's client of a running server, without a server: the note, a stale note, ingest in parts."""

from __future__ import annotations

import json
import socket
import stat
import subprocess
import sys

from reverie.client import ServerNote, _parts, forget_server, running_server
from reverie.config import Settings
from reverie.schemas import Entity, IngestRequest, Triple


def note(pid: int, url: str = "http://127.0.0.1:9") -> ServerNote:
    return ServerNote(url, pid, socket.gethostname(), "secret-key", 1_000_000, 0.0)


def test_the_note_is_written_for_its_owner_only_and_read_back(tmp_path):
    path = tmp_path / "qdrant" / "reverie-server.json"
    note(123).write(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert ServerNote.read(path) == note(123)
    path.write_text("{not json")
    assert ServerNote.read(path) is None


def test_a_note_left_by_a_dead_server_is_removed_and_the_cli_goes_its_own_way(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    settings = Settings(home=tmp_path)
    note(dead.pid).write(settings.paths.server)
    assert running_server(settings) is None
    assert not settings.paths.server.exists()


def test_a_live_process_that_does_not_answer_is_not_taken_for_a_server(tmp_path):
    import os

    settings = Settings(home=tmp_path)
    note(os.getpid(), url="http://127.0.0.1:9").write(settings.paths.server)  # port 9: nothing listens
    assert running_server(settings) is None
    forget_server(settings.paths.server, pid=os.getpid() + 1)  # not this note's writer: kept
    assert settings.paths.server.exists()
    forget_server(settings.paths.server, pid=os.getpid())
    assert not settings.paths.server.exists()


def test_an_ingest_is_sent_in_parts_under_the_body_limit():
    triples = [Triple(head=f"e{i}", relation="r", tail=f"e{i + 1}") for i in range(1000)]
    entities = [Entity(name="e500", type="thing"), Entity(name="e3", type="thing"), Entity(name="loner")]
    limit = 20_000
    parts = _parts(triples, entities, "facts.tsv", limit)
    assert len(parts) > 2
    assert [t for part in parts for t in part["triples"]] == triples  # all of them, in order
    for part in parts:
        body = IngestRequest.model_construct(**part).model_dump_json().encode()
        assert len(body) <= limit
    holder = {e.name: i for i, part in enumerate(parts) for e in part["entities"]}
    first_naming = {
        name: next(i for i, part in enumerate(parts) if any(name in (t.head, t.tail) for t in part["triples"]))
        for name in ("e500", "e3")
    }
    assert {name: holder[name] for name in first_naming} == first_naming
    assert holder["loner"] == len(parts) - 1  # named by no triple: sent with the last part
    assert json.loads(IngestRequest.model_construct(**parts[0]).model_dump_json())["source"] == "facts.tsv"
