"""`reverie chat`: an interactive session in the terminal, as `ollama run` is one.

Every message is one turn of one conversation (a session id per chat, a new one after /clear), so
a follow-up ("and if you heat it?") leans on the answers before it. The commands are Ollama's
(/set, /show, /clear, /bye), the first chat's (/temp, /tokens, /stream, /help, /quit) and Reverie's
own (/why, /image, /rate). `parse_command` turns a line into a `Command` and is pure; `run_chat`
reads lines and answers them. No Ray here: the API starts it on its first call.

On a terminal, lines are edited and remembered with the standard library's readline (the history
in REVERIE_HOME/chat_history); piped in, each line is a turn with no prompt, and the answers alone
go to stdout, so a file of questions can be scripted.
"""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

HISTORY_LENGTH = 1000
PROMPT, CONTINUATION = ">>> ", "... "
QUOTES = '"""'  # opens and closes a multi-line message, as in `ollama run`
DIM, PLAIN = "\x1b[2m", "\x1b[0m"


@dataclass(frozen=True)
class Parameter:
    """A sampling parameter `/set parameter` takes, with its range (None: unbounded)."""

    kind: type
    low: float | None
    high: float | None
    help: str


PARAMETERS = {
    "temperature": Parameter(float, 0.0, 2.0, "how creative a reply is (0 is greedy)"),
    "num_predict": Parameter(int, 1, 1024, "the most tokens a reply may have"),
    "top_k": Parameter(int, 1, None, "sample from the k likeliest tokens"),
    "seed": Parameter(int, None, None, "the same seed gives the same rollouts and reply"),
}
RATINGS = ("good", "bad", "neutral")
SHOWABLE = ("parameters", "system", "info")

HELP = {
    None: [
        "Available Commands:",
        "  /set            Set session variables (/set parameter, /set system, /set verbose, /set quiet)",
        "  /show           Show session information (/show parameters, /show system, /show info)",
        "  /temp VALUE     Set the temperature (= /set parameter temperature VALUE)",
        "  /tokens N       Set the most tokens a reply may have (= /set parameter num_predict N)",
        "  /stream on|off  Stream the answer's words as they come, or print it whole",
        "  /image PATH     Ask the next message about this image",
        "  /why            Show the last answer's chain, with provenance, and the alternatives",
        "  /rate good|bad [note]  Rate the last answer (it joins the feedback dataset)",
        "  /clear          Clear the conversation (a new session)",
        "  /bye, /quit     Exit",
        "  /?, /help       Help for a command (/? set, /? show)",
        "",
        f"Use {QUOTES} to begin a multi-line message.",
    ],
    "set": [
        "Available Commands:",
        "  /set parameter NAME VALUE  Set a parameter (/set parameter lists them)",
        "  /set system TEXT           Set the system message (TEXT may be a multi-line block)",
        "  /set verbose               Show timings and tokens/s after each answer",
        "  /set quiet                 Disable verbose",
    ],
    "show": [
        "Available Commands:",
        "  /show parameters  The parameters set in this session",
        "  /show system      The system message",
        "  /show info        The home, the graph's size, the policy and the LLM backends",
    ],
    "parameter": ["Available Parameters:"]
    + [f"  /set parameter {name} <{p.kind.__name__}>".ljust(40) + p.help for name, p in PARAMETERS.items()],
}


class CommandError(ValueError):
    """A command that cannot be done as typed: one line that says why, never a traceback."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class Command:
    """One slash command, parsed: `name` says what to do, `args` with what.

    parameter (NAME, VALUE) · system (TEXT,) · verbose (bool,) · stream (bool,) · show (WHAT,) ·
    help (TOPIC or None,) · image (PATH,) · rate (RATING, NOTE) · why · clear · bye
    """

    name: str
    args: tuple = ()


def parse_command(line: str) -> Command:
    """The command a line starting with "/" asks for; a CommandError (one line) when it asks for
    nothing known or with a bad value."""
    word, _, rest = line.strip().partition(" ")
    word, rest = word.lower(), rest.strip()
    if word in ("/bye", "/quit", "/exit"):
        return Command("bye")
    if word in ("/?", "/help"):
        topic = rest.split()[0].lower().lstrip("/") if rest else None
        return Command("help", (topic if topic in HELP else None,))
    if word == "/clear":
        return Command("clear")
    if word == "/why":
        return Command("why")
    if word == "/set":
        return _parse_set(rest)
    if word == "/show":
        if not rest:
            return Command("help", ("show",))
        what = rest.lower()
        if what not in SHOWABLE:
            raise CommandError(f"Unknown /show '{rest}': parameters, system or info.")
        return Command("show", (what,))
    if word == "/temp":
        return Command("parameter", ("temperature", parameter_value("temperature", rest)))
    if word == "/tokens":
        return Command("parameter", ("num_predict", parameter_value("num_predict", rest)))
    if word == "/stream":
        if rest.lower() not in ("on", "off"):
            raise CommandError("Usage: /stream on|off")
        return Command("stream", (rest.lower() == "on",))
    if word == "/image":
        if not rest:
            raise CommandError("Usage: /image PATH (the next message is asked about that image)")
        return Command("image", (unquote(rest),))
    if word == "/rate":
        rating, _, note = rest.partition(" ")
        if rating.lower() not in RATINGS:
            raise CommandError("Usage: /rate good|bad [note] (rates the last answer)")
        return Command("rate", (rating.lower(), note.strip()))
    raise CommandError(f"Unknown command '{word}'. Type /? for help.")


def _parse_set(rest: str) -> Command:
    what, _, value = rest.partition(" ")
    what, value = what.lower(), value.strip()
    if not what:
        return Command("help", ("set",))
    if what == "parameter":
        name, _, raw = value.partition(" ")
        if not name:
            return Command("help", ("parameter",))
        return Command("parameter", (name.lower(), parameter_value(name.lower(), raw.strip())))
    if what == "system":
        text = unquote(value)
        if not text:
            raise CommandError("Usage: /set system TEXT")
        return Command("system", (text,))
    if what in ("verbose", "quiet"):
        return Command("verbose", (what == "verbose",))
    raise CommandError(f"Unknown /set '{what}': parameter, system, verbose or quiet. Type /? set for help.")


def parameter_value(name: str, raw: str) -> float | int:
    """`raw` as the value of the parameter `name`, checked against its range."""
    if name not in PARAMETERS:
        raise CommandError(f"Unknown parameter '{name}': {', '.join(PARAMETERS)}.")
    parameter = PARAMETERS[name]
    noun = "a number" if parameter.kind is float else "a whole number"
    if parameter.low is not None and parameter.high is not None:
        noun += f" from {parameter.low:g} to {parameter.high:g}"
    elif parameter.low is not None:
        noun += f", at least {parameter.low:g}"
    try:
        value = parameter.kind(raw)
    except ValueError:
        raise CommandError(f"Couldn't set parameter: {name} must be {noun}, not '{raw}'.") from None
    too_low = parameter.low is not None and value < parameter.low
    if too_low or (parameter.high is not None and value > parameter.high) or value != value:  # NaN too
        raise CommandError(f"Couldn't set parameter: {name} must be {noun}, not {raw}.")
    return value


def unquote(text: str) -> str:
    """The text inside a multi-line block's triple quotes, or inside plain quotes; else as it is."""
    text = text.strip()
    if text.startswith(QUOTES):
        text = text[len(QUOTES) :]
        end = text.rfind(QUOTES)
        text = text[:end] if end >= 0 else text
    elif len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        text = text[1:-1]
    return text.strip()


def opens_block(line: str) -> bool:
    """Whether the line opens a multi-line block that it does not close: a message starting with
    triple quotes, or `/set system` with one."""
    stripped = line.strip()
    text = stripped.partition(" ")[2].strip().partition(" ")[2] if stripped.lower().startswith("/set ") else stripped
    return text.startswith(QUOTES) and text.count(QUOTES) == 1


def new_session_id() -> str:
    return f"chat-{uuid.uuid4().hex[:16]}"


@dataclass
class ChatSession:
    """What one chat keeps between turns: the settings the commands change and the conversation."""

    parameters: dict[str, float | int] = field(default_factory=dict)
    """The sampling parameters set (temperature, num_predict, top_k, seed); unset ones take the home's."""
    system: str | None = None
    """The system message the LLM's chat replies get (small talk); None for none."""
    verbose: bool = False
    """Print timings and tokens/s after each answer, as `ollama run --verbose` does."""
    stream: bool = True
    """Print the answer's words as the LLM says them, rather than the whole answer at the end."""
    session_id: str = field(default_factory=new_session_id)
    """The conversation's id: every turn is one turn of it, so follow-ups work."""
    last: Any = None
    """The last answer's Verdict, for /why and /rate."""
    image: str | None = None
    """An image path /image set, asked about with the next message."""

    def clear(self) -> None:
        """Forget the conversation: a new session, no last answer, no pending image."""
        self.session_id, self.last, self.image = new_session_id(), None, None

    def options(self) -> dict[str, float | int]:
        """The LLM's options (Ollama's names), those set only."""
        return dict(self.parameters)


class Chat:
    """The loop of one chat: reads lines, runs commands, answers messages.

    `api` is a `reverie.api.Reverie`; `server` a `reverie.client.Server` holding its home, which then
    answers instead (over HTTP, the whole answer at once). `explain` gives /why's lines of a Verdict
    (the CLI passes `reverie ask`'s own; the CLI imports this module, so this one cannot import it)."""

    def __init__(self, api, session: ChatSession, stdin: TextIO, stdout: TextIO, tty: bool, server=None, explain=None):
        self.api, self.session, self.server = api, session, server
        self.explain = explain or chain_lines
        self.stdin, self.stdout, self.tty = stdin, stdout, tty
        self.errors = stdout if tty else sys.stderr  # piped: stdout holds the answers alone

    # ---------- output ----------
    def say(self, text: str = "") -> None:
        self.stdout.write(text + "\n")
        self.stdout.flush()

    def note(self, text: str) -> None:
        """A line about the session (not an answer): dimmed on a terminal, to stderr when piped."""
        if self.tty:
            self.say(f"{DIM}{text}{PLAIN}")
        else:
            print(text, file=sys.stderr, flush=True)

    def error(self, text: str) -> None:
        print(text, file=self.errors, flush=True)

    # ---------- the loop ----------
    def run(self) -> int:
        try:
            self.start()
        except KeyboardInterrupt:  # while loading: leave quietly, as a shell expects of Ctrl-C
            self.say()
            return 130
        interrupted = False  # Ctrl-C at an empty prompt twice in a row exits
        while True:
            try:
                line = self.read()
            except EOFError:
                if self.tty:
                    self.say()
                return 0
            except KeyboardInterrupt:
                if not self.tty or interrupted:
                    self.say()
                    return 0
                self.say("\nUse Ctrl + d or /bye to exit.")
                interrupted = True
                continue
            interrupted = False
            if not line.strip():
                continue
            try:
                if line.lstrip().startswith("/"):
                    if self.command(line) == "bye":
                        return 0
                elif message := (unquote(line) if line.lstrip().startswith(QUOTES) else line.strip()):
                    self.answer(message)
            except KeyboardInterrupt:  # stops this answer (or command), not the session
                self.say()

    def start(self) -> None:
        settings = self.api.settings
        home = settings.home
        if self.tty:
            self.history(settings.paths.chat_history)
        if self.server is not None:
            self.note(f"Asking the reverie serve at {self.server.url}, which holds {home}: answers come whole.")
        else:
            if self.tty:
                self.say(f"Loading the home {home} …")
            self.api.warm_up(llm=True)
        if self.tty:
            self.note("Send a message (/? for help)")

    def history(self, path: Path) -> None:
        """Line editing, and the lines typed before (`Home.chat_history`), with readline."""
        try:
            import atexit
            import readline
        except ImportError:  # no readline on this Python: lines are still read, unedited
            return
        try:
            readline.read_history_file(path)
        except OSError:
            pass
        readline.set_history_length(HISTORY_LENGTH)

        def save() -> None:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                readline.write_history_file(path)
            except OSError:
                pass

        atexit.register(save)

    def read(self) -> str:
        """The next message or command: one line, or a multi-line block opened by triple quotes and
        read up to the line that closes it."""
        lines = [self.read_line(PROMPT)]
        if opens_block(lines[0]):
            while QUOTES not in lines[-1] or len(lines) == 1:
                lines.append(self.read_line(CONTINUATION))
        return "\n".join(lines)

    def read_line(self, prompt: str) -> str:
        if self.tty:
            return input(prompt)  # readline's editing and history, when imported
        line = self.stdin.readline()
        if not line:
            raise EOFError
        return line.rstrip("\n")

    # ---------- commands ----------
    def command(self, line: str) -> str:
        """Runs a command; returns its name ("bye" ends the chat)."""
        try:
            command = parse_command(line)
            self.handlers()[command.name](*command.args)
        except CommandError as exc:
            self.error(exc.message)
            return "error"
        except self.user_errors() as exc:
            self.error(f"reverie: {one_line(exc)}")
            return "error"
        return command.name

    def handlers(self) -> dict[str, Any]:
        return {
            "bye": lambda: None,
            "help": self.do_help,
            "clear": self.do_clear,
            "parameter": self.do_parameter,
            "system": self.do_system,
            "verbose": self.do_verbose,
            "stream": self.do_stream,
            "show": self.do_show,
            "why": self.do_why,
            "image": self.do_image,
            "rate": self.do_rate,
        }

    def do_help(self, topic: str | None) -> None:
        self.say("\n".join(HELP[topic]))

    def do_clear(self) -> None:
        self.session.clear()
        self.say("Cleared session context")

    def do_parameter(self, name: str, value: float | int) -> None:
        self.session.parameters[name] = value
        self.say(f"Set parameter '{name}' to '{value}'")

    def do_system(self, text: str) -> None:
        self.session.system = text
        self.say("Set system message.")

    def do_verbose(self, on: bool) -> None:
        self.session.verbose = on
        self.say("Set 'verbose' mode." if on else "Set 'quiet' mode.")

    def do_stream(self, on: bool) -> None:
        self.session.stream = on
        if on and self.server is not None:
            self.say("Streaming on; answers through the server still come whole.")
        else:
            self.say(f"Streaming {'on' if on else 'off'}.")

    def do_show(self, what: str) -> None:
        if what == "parameters":
            self.say("\n".join(self.parameter_lines()))
        elif what == "system":
            self.say(self.session.system or "No system message was specified.")
        else:
            self.say("\n".join(self.info_lines()))

    def parameter_lines(self) -> list[str]:
        settings = self.api.settings
        defaults = {
            "temperature": settings.temperature,
            "num_predict": settings.max_new_tokens,
            "top_k": settings.top_k,
        }
        lines = []
        if self.session.parameters:
            lines.append("User defined parameters:")
            lines += [f"{name:<30} {value}" for name, value in self.session.parameters.items()]
        unset = {k: v for k, v in defaults.items() if k not in self.session.parameters}
        if unset:
            lines.append("The home's defaults:")
            lines += [f"{name:<30} {value}" for name, value in unset.items()]
        return lines

    def info_lines(self) -> list[str]:
        settings = self.api.settings
        stats = self.graph_stats()
        trained = sorted(p.name for p in settings.paths.policies.glob("*") if (p / "config.json").is_file())
        policy = f"walker {settings.walker}; trained path policies: {', '.join(trained) or 'none'}"
        if self.session.last is not None and self.session.last.route != "small-talk":
            policy += f"; the last answer's: {self.session.last.policy}"
        where = f"the reverie serve at {self.server.url}" if self.server is not None else "this process (local Ray)"
        return [
            f"  {'home':<14}{settings.home}",
            f"  {'graph':<14}{stats.entities} entities, {stats.relations} relations, {stats.triples} triples",
            f"  {'policy':<14}{policy}",
            f"  {'LLM backends':<14}{', '.join(settings.llm_backends)}",
            f"  {'answered by':<14}{where}",
            f"  {'session':<14}{self.session.session_id}",
        ]

    def graph_stats(self):
        from reverie.schemas import GraphStats

        if self.server is not None:
            return GraphStats.model_validate(self.server.health()["graph"])
        return self.api.stats()

    def do_why(self) -> None:
        verdict = self.session.last
        if verdict is None:
            raise CommandError("No answer yet: ask something first.")
        if verdict.route == "small-talk":
            self.say("That was small talk: no chain in the graph answered it.")
            return
        lines = self.explain(verdict) if verdict.candidates else [f"Q: {verdict.question}", f"A: {verdict.answer}"]
        if verdict.resolved_question and verdict.resolved_question != verdict.question:
            lines.insert(1, f"   (asked: {verdict.resolved_question})")
        lines.insert(1, f"   route: {verdict.route}")
        self.say("\n".join(lines))

    def do_image(self, path: str) -> None:
        path = str(Path(path).expanduser())
        self.api.check_image(path)  # an ImageError (one line) for a missing file or a non-image
        self.session.image = path
        self.say(f"The next message is asked about {path}.")

    def do_rate(self, rating: str, note: str) -> None:
        from reverie.schemas import Feedback, FeedbackRecord

        verdict = self.session.last
        if verdict is None or verdict.route == "small-talk":
            raise CommandError("No answer to rate: ask the graph something first.")
        if self.server is not None:
            rated = Feedback.model_validate(
                {"verdict_id": verdict.id, "rating": rating, "note": note, "verdict": verdict}
            )
            body = rated.model_dump_json().encode()
            FeedbackRecord.model_validate(self.server.request("POST", "/v1/feedback", body))
        else:
            self.api.feedback(verdict, rating, note)
        self.say(f"Rated the last answer {rating}: it joins the feedback dataset.")

    # ---------- answers ----------
    @staticmethod
    def user_errors() -> tuple[type[BaseException], ...]:
        from pydantic import ValidationError

        from reverie.errors import ReverieError

        return (ReverieError, ValidationError)

    def answer(self, message: str) -> None:
        """Asks the message as the conversation's next turn and prints the answer (streamed when on)."""
        session, started = self.session, time.perf_counter()
        image, session.image = session.image, None
        stream = session.stream and self.server is None
        try:
            verdict = self.ask(message, image, verbalize=not stream)
            session.last = verdict
            finish = None
            if stream and (verdict.route == "small-talk" or verdict.chain is not None):
                said, finish = self.stream(verdict)
                if said.strip():  # what /why shows and /rate rates is what was said
                    session.last = verdict.model_copy(update={"answer": said.strip()})
            else:  # a graph answer that is not sure says so itself, with no LLM
                self.say(verdict.answer)
        except self.user_errors() as exc:
            self.error(f"reverie: {one_line(exc)}")
            return
        if self.tty and verdict.resolved_question and verdict.resolved_question != message:
            self.say(f"{DIM}(asked: {verdict.resolved_question}){PLAIN}")
        if session.verbose:
            self.note("\n".join(timing_lines(time.perf_counter() - started, verdict, finish)))
        if self.tty:
            self.say()

    def ask(self, message: str, image: str | None, verbalize: bool):
        options = {"session_id": self.session.session_id, "seed": self.session.parameters.get("seed")}
        if self.server is not None:
            return self.server.ask(self.api.query(message, image=image, verbalize=verbalize, **options))
        return self.api.ask(message, image=image, verbalize=verbalize, **options)

    def stream(self, verdict) -> tuple[str, Any]:
        """Prints the reply's words as the LLM says them; returns the text and the generation's Finish
        (None when stopped). Ctrl-C stops the reply (and the LLM), not the chat."""
        from reverie.llm.base import Finish

        pieces, said, finish = (
            self.api.say(verdict, system=self.session.system, options=self.session.options()),
            [],
            None,
        )
        try:
            for piece in pieces:
                if isinstance(piece, Finish):
                    finish = piece
                    continue
                said.append(piece)
                self.stdout.write(piece)
                self.stdout.flush()
        except KeyboardInterrupt:
            said = []  # an answer cut short is not what /why shows
        finally:
            pieces.close()
            self.say()
        return "".join(said), finish


def chain_lines(verdict) -> list[str]:
    """/why's lines when no `explain` is given: the question, the answer and its chain's steps."""
    lines = [f"Q: {verdict.question}", f"A: {verdict.answer}"]
    if verdict.chain is not None:
        lines += [
            f"  {i}. {s.what} --[{s.action}]--> {s.result}   (edge {s.edge_id}, source {s.source})"
            for i, s in enumerate(verdict.chain.steps, 1)
        ]
    return lines


def one_line(exc: BaseException) -> str:
    """A user error in one line: a ReverieError's message, a validation error's first complaint."""
    from pydantic import ValidationError

    from reverie.errors import ReverieError

    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        field_name = ".".join(str(p) for p in first["loc"])
        return f"{field_name}: {first['msg']}" if field_name else first["msg"]
    message = exc.message if isinstance(exc, ReverieError) else str(exc)
    return (message.splitlines() or [""])[0]


def duration(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{seconds * 1e6:.1f}µs"
    return f"{seconds * 1000:.1f}ms" if seconds < 1 else f"{seconds:.3f}s"


def timing_lines(total_s: float, verdict, finish) -> list[str]:
    """What `/set verbose` prints after an answer, in `ollama run --verbose`'s words, and the graph's stages."""
    lines = [f"{'total duration:':<22}{duration(total_s)}"]
    if finish is not None:
        if finish.load_ns:
            lines.append(f"{'load duration:':<22}{duration(finish.load_ns / 1e9)}")
        for label, tokens, ns in (
            ("prompt eval", finish.prompt_tokens, finish.prompt_ns),
            ("eval", finish.completion_tokens, finish.completion_ns),
        ):
            lines.append(f"{label + ' count:':<22}{tokens} token(s)")
            if ns:
                lines.append(f"{label + ' duration:':<22}{duration(ns / 1e9)}")
                lines.append(f"{label + ' rate:':<22}{tokens / (ns / 1e9):.2f} tokens/s")
    if verdict.timings_ms:
        stages = ", ".join(f"{name} {ms:.0f}" for name, ms in verdict.timings_ms.items())
        lines.append(f"{'graph stages (ms):':<22}{stages}")
    return lines


def run_chat(
    api,
    stdin: TextIO,
    stdout: TextIO,
    tty: bool,
    session: ChatSession | None = None,
    server=None,
    explain: Callable[[Any], list[str]] | None = None,
) -> int:
    """Chat until /bye, Ctrl-D (end of input) or a second Ctrl-C; returns the exit status.

    `api`: a `reverie.api.Reverie`; `tty`: whether a person types (prompts, readline, the loading
    line); `server`: a running `reverie serve` of the home to ask instead of `api`'s own Ray."""
    return Chat(api, session or ChatSession(), stdin, stdout, tty, server=server, explain=explain).run()
