"""`reverie chat`: its commands parsed (pure), its loop over a stand-in API (no Ray), and the
command itself, once through a pseudo-terminal as a person types and once with piped lines."""

from __future__ import annotations

import io
import os
import pty
import re
import select
import subprocess
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import SimpleNamespace

import pytest

from reverie.chat import ChatSession, Command, CommandError, parse_command, run_chat, unquote
from reverie.errors import NoMatchError
from reverie.llm.base import Finish

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


# ---------- the loop, over a stand-in API (no Ray) ----------


@dataclass
class FakeVerdict:
    """The fields of a Verdict the chat reads."""

    question: str
    answer: str
    route: str = "graph"
    chain: object | None = None
    candidates: list = field(default_factory=list)
    resolved_question: str | None = None
    session_id: str | None = None
    policy: str = "embedding-walker"
    timings_ms: dict = field(default_factory=lambda: {"encode": 1.0})
    id: str = "verdict-1"

    def model_copy(self, update):
        return replace(self, **update)


class FakeApi:
    """Answers "hello" as small talk, anything about a cup from the graph, and nothing else; says
    a reply as three pieces and a Finish."""

    def __init__(self):
        self.settings = SimpleNamespace(
            home=Path("/nowhere"),
            temperature=0.0,
            max_new_tokens=48,
            top_k=40,
            walker="auto",
            llm_backends=["local"],
            paths=SimpleNamespace(policies=Path("/nowhere/policies")),
        )
        self.asked, self.said, self.rated = [], [], []

    def warm_up(self, llm=True):
        pass

    def ask(self, message, image=None, **options):
        self.asked.append((message, image, options))
        if message == "hello":
            return FakeVerdict(message, "Hello.", route="small-talk", session_id=options["session_id"])
        if "cup" not in message and "heat" not in message:
            raise NoMatchError(f"no entity in the graph matches {message!r}")
        resolved = "What happens when you heat a glass cup?" if message.startswith("and") else None
        chain = SimpleNamespace(steps=[])
        return FakeVerdict(
            message, "It shatters.", chain=chain, resolved_question=resolved, session_id=options["session_id"]
        )

    def say(self, verdict, system=None, options=None):
        self.said.append((verdict.question, system, options))
        yield from ["It ", "sha"]
        if "interrupt" in verdict.question:  # as Ctrl-C arrives while the answer streams
            raise KeyboardInterrupt
        yield "tters."
        yield Finish(prompt_tokens=10, completion_tokens=3, reason="stop", prompt_ns=10**7, completion_ns=3 * 10**7)

    def query(self, message, image=None, **options):
        return SimpleNamespace(question=message, image=image, **options)

    def check_image(self, image):
        from reverie.images import load_image

        load_image(image, name=str(image))

    def feedback(self, verdict, rating, note=""):
        self.rated.append((verdict.id, rating, note))


def chat(lines: list[str], session: ChatSession | None = None) -> tuple[int, str, FakeApi]:
    api, out = FakeApi(), io.StringIO()
    status = run_chat(api, io.StringIO("".join(line + "\n" for line in lines)), out, tty=False, session=session)
    return status, out.getvalue(), api


def test_piped_lines_are_turns_of_one_conversation(capsys):
    status, out, api = chat(["What happens when you drop a glass cup?", "and if you heat it?", "hello"])
    assert status == 0
    assert out.splitlines() == ["It shatters.", "It shatters.", "It shatters."]  # streamed, no prompts
    sessions = {options["session_id"] for _, _, options in api.asked}
    assert len(sessions) == 1 and all(options["verbalize"] is False for _, _, options in api.asked)


def test_settings_reach_the_llm_and_the_rollouts(capsys):
    _, out, api = chat(["/set parameter seed 3", "/temp 0.5", "/set system Be brief.", "/show parameters", "hello"])
    assert api.said == [("hello", "Be brief.", {"seed": 3, "temperature": 0.5})]
    assert api.asked[0][2]["seed"] == 3
    assert re.search(r"seed\s+3", out) and re.search(r"temperature\s+0.5", out)


def test_no_stream_prints_the_verdicts_answer(capsys):
    _, out, api = chat(["/stream off", "What happens when you drop a glass cup?"])
    assert out.splitlines()[-1] == "It shatters." and api.said == []
    assert api.asked[0][2]["verbalize"] is True


def test_clear_starts_a_new_session(capsys):
    _, _, api = chat(["hello", "/clear", "hello"])
    assert api.asked[0][2]["session_id"] != api.asked[1][2]["session_id"]


def test_errors_are_one_line_and_the_chat_goes_on(capsys, tmp_path):
    not_an_image = tmp_path / "notes.png"
    not_an_image.write_text("not an image")
    status, out, _ = chat(
        [
            "/foo",
            "/set parameter temperature hot",
            "/why",
            "/rate good",
            f"/image {tmp_path / 'missing.png'}",
            f"/image {not_an_image}",
            "What is a quasar?",
            "hello",
        ]
    )
    errors = capsys.readouterr().err.splitlines()
    assert status == 0 and out.splitlines() == ["It shatters."]
    assert errors[0] == "Unknown command '/foo'. Type /? for help."
    assert "temperature must be a number" in errors[1]
    assert errors[2].startswith("No answer yet") and errors[3].startswith("No answer to rate")
    assert errors[4].startswith("reverie: ") and "no such file" in errors[4]
    assert errors[5].startswith("reverie: ") and "image" in errors[5]
    assert errors[6].startswith("reverie: no entity in the graph matches")
    assert len(errors) == 7


def test_a_multi_line_message_and_rating(capsys):
    _, _, api = chat(['"""What happens', "when you drop a glass cup?", '"""', "/rate bad it bounced", "/bye", "hello"])
    assert api.asked[0][0] == "What happens\nwhen you drop a glass cup?"
    assert api.rated == [("verdict-1", "bad", "it bounced")]
    assert len(api.asked) == 1  # /bye ended the chat


def test_verbose_prints_ollamas_timings(capsys):
    chat(["/set verbose", "hello"])
    err = capsys.readouterr().err
    for label in ("total duration:", "prompt eval count:", "eval count:", "eval rate:"):
        assert label in err
    assert "100.00 tokens/s" in err  # 3 tokens in 30 ms


def test_ctrl_c_stops_the_answer_not_the_chat(capsys):
    status, out, api = chat(["What happens when you drop a glass cup? interrupt", "hello"])
    assert status == 0 and out.splitlines() == ["It sha", "It shatters."]


class FakeServer:
    """A `reverie serve` holding the home: answers whole."""

    url = "http://127.0.0.1:8000"

    def __init__(self, api: FakeApi):
        self.api = api

    def ask(self, query):
        return self.api.ask(query.question, query.image, session_id=query.session_id, verbalize=query.verbalize)


def test_through_a_server_answers_come_whole(capsys):
    api, out = FakeApi(), io.StringIO()
    server = FakeServer(api)
    lines = "What happens when you drop a glass cup?\nand if you heat it?\n"
    assert run_chat(api, io.StringIO(lines), out, tty=False, server=server) == 0
    assert out.getvalue().splitlines()[:2] == ["It shatters.", "It shatters."] and api.said == []
    assert [options["verbalize"] for _, _, options in api.asked] == [True, True]
    assert len({options["session_id"] for _, _, options in api.asked}) == 1


# ---------- the command itself: a fresh home with the world ----------


def cli_env(home: Path) -> dict[str, str]:
    # As a user's shell has it: no Ray auth mode (this session's own Ray may have set one here).
    env = {k: v for k, v in os.environ.items() if k != "RAY_AUTH_MODE"}
    return {**env, "REVERIE_HOME": str(home), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TERM": "dumb"}


@pytest.fixture(scope="module")
def world_home(tmp_path_factory):
    home = tmp_path_factory.mktemp("chat-home")
    result = subprocess.run(
        [sys.executable, "-m", "reverie.cli", "ingest", "--dataset", "world", "--quiet", "--local"],
        env=cli_env(home),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    # What a home makes on first use, made once here rather than inside the chats' time: the bundled
    # LLM's safetensors copy (~20 s) and the message router (30-60 s on 2 cores, trained on the first message).
    from reverie.config import Settings
    from reverie.encoders import TextEncoder
    from reverie.llm.local import LocalLLM
    from reverie.models.hub import router_for_home

    settings = Settings(home=home)
    LocalLLM(settings.paths.models).load()
    router_for_home(settings.paths.router(settings.router), settings.router, TextEncoder().encode)
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
