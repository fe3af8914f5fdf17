"""`reverie chat`: its commands parsed (pure), its loop over the real API (the session's local Ray)
and through the real server (Ray Serve over HTTP on 127.0.0.1), and the command itself, once through
a pseudo-terminal as a person types and once with piped lines."""

from __future__ import annotations

import io
import os
import pty
import re
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from reverie.chat import ChatSession, Command, CommandError, parse_command, run_chat, unquote

# ---------- parse_command: pure ----------


@pytest.mark.parametrize(
    "line, command",
    [
        ("/set parameter temperature 0.7", Command("parameter", ("temperature", 0.7))),
        ("/set parameter num_predict 64", Command("parameter", ("num_predict", 64))),
        ("/set parameter top_k 5", Command("parameter", ("top_k", 5))),
        ("/set parameter seed -3", Command("parameter", ("seed", -3))),
        ("/set system You are terse.", Command("system", ("You are terse.",))),
        ('/set system """\nYou are terse.\nVery.\n"""', Command("system", ("You are terse.\nVery.",))),
        ("/set verbose", Command("verbose", (True,))),
        ("/set quiet", Command("verbose", (False,))),
        ("/set", Command("help", ("set",))),
        ("/set parameter", Command("help", ("parameter",))),
        ("/show parameters", Command("show", ("parameters",))),
        ("/show system", Command("show", ("system",))),
        ("/show info", Command("show", ("info",))),
        ("/show", Command("help", ("show",))),
        ("/clear", Command("clear")),
        ("/bye", Command("bye")),
        ("/quit", Command("bye")),
        ("/temp 0.9", Command("parameter", ("temperature", 0.9))),
        ("/tokens 150", Command("parameter", ("num_predict", 150))),
        ("/stream on", Command("stream", (True,))),
        ("/stream OFF", Command("stream", (False,))),
        ("/help", Command("help", (None,))),
        ("/?", Command("help", (None,))),
        ("/? set", Command("help", ("set",))),
        ("/why", Command("why")),
        ("/image ~/cup.png", Command("image", ("~/cup.png",))),
        ('/image "my cup.png"', Command("image", ("my cup.png",))),
        ("/rate good", Command("rate", ("good", ""))),
        ("/rate bad the cup bounced", Command("rate", ("bad", "the cup bounced"))),
    ],
)
def test_parse_command(line, command):
    assert parse_command(line) == command


@pytest.mark.parametrize(
    "line, message",
    [
        ("/foo", "Unknown command '/foo'. Type /? for help."),
        ("/set parameter temperature hot", "temperature must be a number from 0 to 2, not 'hot'"),
        ("/set parameter temperature 3", "temperature must be a number from 0 to 2, not 3"),
        ("/set parameter temperature nan", "temperature must be a number from 0 to 2"),
        ("/set parameter num_predict 2.5", "num_predict must be a whole number from 1 to 1024, not '2.5'"),
        ("/set parameter top_k 0", "top_k must be a whole number, at least 1, not 0"),
        ("/set parameter seed", "seed must be a whole number, not ''"),
        ("/set parameter mirostat 2", "Unknown parameter 'mirostat'"),
        ("/set wordwrap", "Unknown /set 'wordwrap'"),
        ("/set system", "Usage: /set system TEXT"),
        ("/show modelfile", "Unknown /show 'modelfile'"),
        ("/temp", "temperature must be a number"),
        ("/tokens many", "num_predict must be a whole number"),
        ("/stream maybe", "Usage: /stream on|off"),
        ("/image", "Usage: /image PATH"),
        ("/rate great", "Usage: /rate good|bad [note]"),
    ],
)
def test_a_bad_command_is_one_line(line, message):
    with pytest.raises(CommandError) as caught:
        parse_command(line)
    assert message in caught.value.message
    assert "\n" not in caught.value.message


def test_unquote_takes_a_multi_line_block_or_plain_quotes():
    assert unquote('"""\nfirst line\nsecond line\n"""') == "first line\nsecond line"
    assert unquote('"""one line"""') == "one line"
    assert unquote('"a path with spaces.png"') == "a path with spaces.png"
    assert unquote("as it is") == "as it is"


# ---------- the loop, over the real API (the session's local Ray) and the real server ----------

QUESTION = "What happens when you drop a glass cup?"


@pytest.fixture(scope="module")
def api(world_pipeline, world_settings):
    """The Python API over the session's world home and Ray, as `reverie chat --local` builds it."""
    from reverie.api import Reverie

    api = Reverie.from_settings(world_settings)
    api._pipeline = world_pipeline
    return api


def chat(api, lines: list[str], session: ChatSession | None = None, stdout=None, **kwargs):
    """Piped `lines` chatted through: (exit status, stdout, the session with its last verdict)."""
    session = session or ChatSession()
    out = stdout if stdout is not None else io.StringIO()
    stdin = io.StringIO("".join(line + "\n" for line in lines))
    status = run_chat(api, stdin, out, tty=False, session=session, **kwargs)
    return status, out.getvalue(), session


def no_trouble(err: str) -> bool:
    return "reverie:" not in err and "Traceback" not in err


@pytest.mark.ray
def test_piped_lines_are_turns_of_one_conversation(api, capsys):
    status, out, session = chat(api, [QUESTION, "And if you heat it?", "/why", "hello"])
    err = capsys.readouterr().err
    assert status == 0 and no_trouble(err), err
    assert "shatter" in out.lower(), out  # the first answer, streamed
    # /why of the follow-up: the conversation's memory asked it of the glass cup
    asked = re.search(r"\(asked: (.*)\)", out)
    assert asked and "glass cup" in asked.group(1), out
    assert session.last.route == "small-talk" and session.last.answer.strip()  # small talk, answered
    assert session.last.session_id == session.session_id


@pytest.mark.ray
def test_settings_reach_the_llm_and_the_rollouts(api, capsys):
    lines = ["/set parameter seed 3", "/set parameter num_predict 2", "/set system Be brief.", "/set verbose"]
    status, out, session = chat(api, [*lines, "/show parameters", "hello", QUESTION])
    err = capsys.readouterr().err
    assert status == 0 and no_trouble(err), err
    assert re.search(r"seed\s+3", out) and re.search(r"num_predict\s+2", out)
    # the LLM got num_predict: small talk's reply stopped at 2 tokens
    said = int(re.search(r"^eval count:\s+(\d+) token", err, re.M).group(1))
    assert 1 <= said <= 2, err
    # the rollouts got the seed: the chat's verdict is the one seed 3 gives
    alone = api.ask(QUESTION, seed=3, verbalize=False)
    assert session.last.route == "graph"
    assert session.last.answer_entity == alone.answer_entity
    assert session.last.chain == alone.chain and session.last.candidates == alone.candidates


@pytest.mark.ray
def test_no_stream_prints_the_verdicts_answer(api, capsys):
    status, out, session = chat(api, ["/stream off", QUESTION])
    assert status == 0 and no_trouble(capsys.readouterr().err)
    assert out == f"Streaming off.\n{session.last.answer}\n"
    assert "shatter" in session.last.answer.lower()


@pytest.mark.ray
def test_clear_starts_a_new_session(api, capsys):
    session = ChatSession()
    first = session.session_id
    _, out, session = chat(api, [QUESTION, "/clear", "And if you heat it?"], session)
    assert "Cleared session context" in out and session.session_id != first
    # the follow-up has no conversation to lean on: not asked of the glass cup
    assert session.last is None or "glass cup" not in (session.last.resolved_question or "")


@pytest.mark.ray
def test_errors_are_one_line_and_the_chat_goes_on(api, capsys, tmp_path):
    not_an_image = tmp_path / "notes.png"
    not_an_image.write_text("not an image")
    status, out, session = chat(
        api,
        [
            "/foo",
            "/set parameter temperature hot",
            "/why",
            "/rate good",
            f"/image {tmp_path / 'missing.png'}",
            f"/image {not_an_image}",
            "What happens when you drop a zorblax quintic?",
            "/stream off",
            QUESTION,
        ],
    )
    errors = capsys.readouterr().err.splitlines()
    assert status == 0 and out.splitlines() == ["Streaming off.", session.last.answer]
    assert "shatter" in session.last.answer.lower()
    assert errors[0] == "Unknown command '/foo'. Type /? for help."
    assert "temperature must be a number" in errors[1]
    assert errors[2].startswith("No answer yet") and errors[3].startswith("No answer to rate")
    assert errors[4].startswith("reverie: ") and "no such file" in errors[4]
    assert errors[5].startswith("reverie: ") and "image" in errors[5]
    assert errors[6].startswith("reverie: ")  # nothing in the graph is a zorblax
    assert len(errors) == 7, errors


@pytest.mark.ray
def test_a_multi_line_message_and_rating(api, world_settings, capsys):
    from reverie.feedback import FEEDBACK_FILE
    from reverie.schemas import FeedbackRecord

    lines = ['"""What happens', "when you drop a glass cup?", '"""', "/rate good nice", "/bye", "hello"]
    status, out, session = chat(api, lines)
    assert status == 0 and no_trouble(capsys.readouterr().err)
    assert "Rated the last answer good" in out
    verdict = session.last  # the rated answer: /bye ended the chat before "hello"
    assert verdict.question == "What happens\nwhen you drop a glass cup?" and verdict.route == "graph"
    dataset = (world_settings.paths.feedback / FEEDBACK_FILE).read_text().splitlines()
    records = [FeedbackRecord.model_validate_json(line) for line in dataset if line]
    rated = [r for r in records if r.verdict_id == verdict.id]
    assert len(rated) == 1 and rated[0].rating == "good" and rated[0].note == "nice"
    assert rated[0].question == verdict.question and rated[0].answer_entity == verdict.answer_entity


@pytest.mark.ray
def test_verbose_prints_ollamas_timings(api, capsys):
    chat(api, ["/set verbose", QUESTION])
    err = capsys.readouterr().err
    for label in ("total duration:", "prompt eval count:", "eval count:", "eval duration:", "graph stages (ms):"):
        assert label in err, err
    assert re.search(r"^eval rate:\s+\d+\.\d\d tokens/s$", err, re.M), err


class CtrlCOnTheFirstWord(io.StringIO):
    """A terminal where Ctrl-C is pressed as the first word of an answer arrives."""

    pressed = False

    def write(self, text: str) -> int:
        if text.strip() and not self.pressed:
            self.pressed = True
            raise KeyboardInterrupt
        return super().write(text)


@pytest.mark.ray
def test_ctrl_c_stops_the_answer_not_the_chat(api, capsys):
    stdout = CtrlCOnTheFirstWord()
    status, out, session = chat(api, [QUESTION, "hello"], stdout=stdout)
    assert status == 0 and stdout.pressed and no_trouble(capsys.readouterr().err)
    first, rest = out.split("\n", 1)
    assert first == ""  # the answer stopped at its first word: its line ended, nothing of it printed
    assert session.last.route == "small-talk" and rest.strip()  # the next line was answered


@pytest.mark.ray
def test_through_a_server_answers_come_whole(served, capsys, tmp_path):
    import os
    import socket

    from reverie.api import Reverie
    from reverie.client import ServerNote, running_server
    from reverie.config import Settings
    from testkit.servers import API_KEY

    url, settings = served
    # As `reverie serve` notes itself in its home, and `reverie chat` finds it there.
    client_home = Settings(home=tmp_path)
    note = ServerNote(url, os.getpid(), socket.gethostname(), API_KEY, settings.max_body_bytes, time.time())
    note.write(client_home.paths.server)
    server = running_server(client_home)
    assert server is not None and server.url == url.rstrip("/")

    api = Reverie.from_settings(settings)  # the CLI's: it builds queries, and starts no Ray of its own
    status, out, session = chat(api, [QUESTION, "And if you heat it?", "/why"], server=server)
    err = capsys.readouterr().err
    assert status == 0 and no_trouble(err) and f"Asking the reverie serve at {server.url}" in err, err
    assert api._pipeline is None
    assert "shatter" in out.splitlines()[0].lower(), out  # whole, on one line
    assert session.last.route == "follow-up" and "glass cup" in session.last.resolved_question
    assert session.last.session_id == session.session_id
    assert f"(asked: {session.last.resolved_question})" in out


# ---------- the command itself: a fresh home with the world ----------


def cli_env(home: Path) -> dict[str, str]:
    # As a user's shell has it: no Ray auth mode (this session's own Ray may have set one here).
    env = {k: v for k, v in os.environ.items() if k != "RAY_AUTH_MODE"}
    return {**env, "REVERIE_HOME": str(home), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TERM": "dumb"}


@pytest.fixture(scope="module")
def world_home(tmp_path_factory, encoder):
    """The world, written without Ray as `reverie ingest --dataset world` writes it (the CLI's
    ingest has its own tests; a Ray of its own here would only cost the chats' time)."""
    from testkit.serve_process import ingest_world

    home = tmp_path_factory.mktemp("chat-home")
    ingest_world(home, encoder)
    # What a home makes on first use, made once here rather than inside the chats' time: the bundled
    # LLM's safetensors copy (~20 s). The message router is the one Reverie ships.
    from reverie.config import Settings
    from reverie.llm.local import LocalLLM

    LocalLLM(Settings(home=home).paths.models).load()
    return home


class Terminal:
    """`reverie chat` on a pseudo-terminal: what it wrote is read up to the next prompt."""

    def __init__(self, home: Path, *args: str):
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: the command, as a person's shell starts it
            os.execve(sys.executable, [sys.executable, "-m", "reverie.cli", "chat", *args], cli_env(home))
        self.seen = ""

    def until(self, pattern: str, timeout: float) -> str:
        """The output up to and including `pattern` (a regex), waiting at most `timeout` seconds."""
        deadline, start = time.monotonic() + timeout, len(self.seen)
        while not (found := re.search(pattern, self.seen[start:])):
            ready, _, _ = select.select([self.fd], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                raise AssertionError(f"no {pattern!r} within {timeout} s; got:\n{self.seen[start:]}")
            try:
                chunk = os.read(self.fd, 4096).decode(errors="replace")
            except OSError:  # the child ended
                chunk = ""
            if not chunk:
                raise AssertionError(f"the chat ended before {pattern!r}; got:\n{self.seen[start:]}")
            self.seen += chunk.replace("\r\n", "\n")
        end = start + found.end()
        return self.seen[start:end]

    def send(self, line: str, timeout: float = 30) -> str:
        """Types a line; what the chat answered, up to its next prompt."""
        os.write(self.fd, (line + "\n").encode())
        said = self.until(r"\n>>> ", timeout).removesuffix(">>> ")
        return said.split("\n", 1)[1] if said.startswith(line) else said  # the echoed line dropped

    def exit_status(self, timeout: float = 30) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                return os.waitstatus_to_exitcode(status)
            try:  # keep the pty drained so the child never blocks writing
                if select.select([self.fd], [], [], 0.2)[0]:
                    os.read(self.fd, 4096)
            except OSError:
                pass
        os.kill(self.pid, 9)
        raise AssertionError("the chat did not exit")


@pytest.mark.slow
def test_chat_in_a_terminal(world_home):
    terminal = Terminal(world_home, "--local")
    try:
        terminal.until(r"Loading", 30)
        terminal.until(r">>> ", 120)

        answer = terminal.send("What happens when you drop a glass cup?", 60)
        assert "shatter" in answer.lower(), answer

        assert "Set parameter 'seed' to '3'" in terminal.send("/set parameter seed 3")
        assert re.search(r"seed\s+3", terminal.send("/show parameters"))

        follow_up = terminal.send("and if you heat it?", 60)  # checked at the end, the rest checked first

        hello = terminal.send("hello", 60)
        assert hello.strip() and "reverie:" not in hello and "Traceback" not in hello, hello

        why = terminal.send("/why")  # the last answer was small talk: that, in one line
        assert "small talk" in why, why
        terminal.send("What happens when you drop a glass cup?", 60)
        why = terminal.send("/why")
        assert re.search(r"1\. glass cup --\[.*\]--> ", why) and "edge " in why, why

        unknown = terminal.send("/foo")
        assert unknown.strip().splitlines() == ["Unknown command '/foo'. Type /? for help."]

        os.write(terminal.fd, b"half a line\x03")  # Ctrl-C at the prompt: the line is dropped, the chat goes on
        assert "Use Ctrl + d or /bye to exit." in terminal.until(r"\n>>> ", 10)

        os.write(terminal.fd, b"/bye\n")
        assert terminal.exit_status() == 0

        assert "reverie:" not in follow_up and "Traceback" not in follow_up, follow_up
        assert "glass" in follow_up.lower(), follow_up  # asked about the glass cup, as the conversation had it
    finally:
        try:
            os.kill(terminal.pid, 9)
            os.waitpid(terminal.pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        os.close(terminal.fd)


@pytest.mark.slow
def test_piped_questions_print_one_answer_each(world_home):
    questions = "What happens when you drop a glass cup?\nWhat happens when you heat a chocolate bar?\n"
    result = subprocess.run(
        [sys.executable, "-m", "reverie.cli", "chat", "--no-stream", "--local"],
        input=questions,
        env=cli_env(world_home),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr
    answers = result.stdout.splitlines()
    assert len(answers) == 2, result.stdout
    assert "shatter" in answers[0].lower() and "melt" in answers[1].lower(), answers
