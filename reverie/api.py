"""Reverie from Python: `Reverie(home=...)`, the same code the CLI runs and the Serve app's Pipeline.

    from reverie import Reverie

    with Reverie(home="~/reverie-demo") as rv:
        rv.ingest(dataset="world")
        verdict = rv.ask("What happens when you drop a glass cup?", seed=0)
        print(verdict.answer_entity, [step.result for step in verdict.chain.steps])

Ray starts (or, with `address`, connects) on the first call that needs it; `close()` stops the
actors this object started. Errors a caller can fix are `reverie.errors.ReverieError`s, and a
config's bad values `ValueError`s, raised before Ray starts where they can be.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

from reverie.config import Settings
from reverie.errors import ReverieError
from reverie.schemas import Entity, FeedbackRecord, GraphStats, IngestReport, Query, Triple, Verdict

Progress = Callable[[int, int], None]


class Reverie:
    """One REVERIE_HOME, asked and taught from Python.

    `home`: the folder of the graph, vectors, policies and caches (default: REVERIE_HOME, else
    ~/.local/share/reverie). `address`: a running Ray cluster (`auto`, `ray://host:10001`); None
    starts a local one. Any other field of `reverie.config.Settings` may be given by keyword
    (`rollouts=128`, `llm_backends=["ollama", "local"]`); the rest come from REVERIE_* variables."""

    def __init__(self, home: str | Path | None = None, address: str | None = None, **settings: Any):
        given = {"home": home, "address": address, **settings}
        self.settings = Settings(**{k: v for k, v in given.items() if v is not None})
        self._pipeline = None

    @classmethod
    def from_settings(cls, settings: Settings) -> "Reverie":
        reverie = cls.__new__(cls)
        reverie.settings, reverie._pipeline = settings, None
        return reverie

    @property
    def pipeline(self):
        """The Pipeline over Ray's actors, started on first use."""
        if self._pipeline is None:
            from reverie.pipeline import Pipeline

            self._pipeline = Pipeline(self.settings)
        return self._pipeline

    # ---------- the graph ----------
    def ingest(
        self,
        path: str | Path | None = None,
        *,
        dataset: str | None = None,
        triples: Sequence[Triple | dict] | None = None,
        entities: Sequence[Entity | dict] = (),
        images: str | Path | None = None,
        progress: Progress | None = None,
    ) -> IngestReport:
        """Add facts from exactly one of: `path` (a .tsv/.txt/.csv/.jsonl file, or a folder with
        train/dev/test.txt), `dataset` (a name: world, umls, kinships, nations), `triples` (with
        optional typed `entities`), or `images` (a JSONL of images with captions or triplets).
        The whole input is read and checked before anything is written."""
        from reverie.data.kg import load_dataset, read_file

        if sum(x is not None for x in (path, dataset, triples, images)) != 1:
            raise ReverieError("give exactly one of path, dataset, triples or images")
        if images is not None:
            from reverie.graph_store.images import read_image_file

            lines = read_image_file(images, self.settings.max_image_pixels)
            return self.pipeline.ingest_images(lines, source=str(images), progress=progress)
        if triples is not None:
            facts = [t if isinstance(t, Triple) else Triple.model_validate(t) for t in triples]
            typed = [e if isinstance(e, Entity) else Entity.model_validate(e) for e in entities]
            return self.pipeline.ingest(facts, typed, source="python", progress=progress)
        if dataset is not None or Path(path).is_dir():
            kg = load_dataset(dataset or str(path))
            return self.pipeline.ingest(kg.graph, kg.entities, source=kg.name, progress=progress)
        facts, typed = read_file(path)
        return self.pipeline.ingest(facts, typed, source=str(path), progress=progress)

    def stats(self) -> GraphStats:
        return self.pipeline.stats()

    # ---------- asking ----------
    def ask(self, question: str | Query, image: str | Path | bytes | None = None, **options: Any) -> Verdict:
        """Answer a question: the best chain with its provenance, the alternatives, the timings.
        `image`: a file's path or its bytes (the question's subject). `options`: the fields of
        `reverie.schemas.Query` (rollouts, hops, seed, verbalize, session_id, tree). A `Query`
        (from `query`) is answered as it is."""
        query = question if isinstance(question, Query) else self.query(question, image, **options)
        return self.pipeline.answer(query)

    def ask_many(self, questions: Sequence[str], progress: Progress | None = None, **options: Any) -> list[Any]:
        """Answer questions one after another, question i with seed i (so two homes, or one asked
        twice, walk the same rollouts): a `reverie.compare.Answered` each, with the Verdict (None
        when the graph links nothing or reaches no answer) and the seconds the caller waited.
        `options`: the Query fields (rollouts, hops, verbalize). What `reverie compare` asks with."""
        import time

        from reverie.compare import Answered
        from reverie.errors import NoMatchError

        queries = [self.query(question, seed=i, **options) for i, question in enumerate(questions)]
        answered = []
        for query in queries:
            start = time.perf_counter()
            try:
                verdict, error = self.pipeline.answer(query), None
            except NoMatchError as exc:
                verdict, error = None, exc.message
            answered.append(Answered(verdict, time.perf_counter() - start, error))
            if progress:
                progress(len(answered), len(queries))
        return answered

    def say(self, verdict: Verdict, system: str | None = None, options: dict[str, Any] | None = None) -> Iterator[Any]:
        """A verdict's reply as the LLM writes it: text pieces, then one `reverie.llm.base.Finish`
        (token counts and durations). Small talk: the LLM's chat reply (`system`, and `options`:
        temperature, num_predict, top_k, seed). A graph answer: its answer sentence from the chain,
        and when the sentence the model wrote does not hold up against the chain, the checked one
        after it. Not sure: the verdict's own sentence. Close the iterator to stop early."""
        import time

        from reverie.answer import SMALL_TALK_SYSTEM
        from reverie.llm.base import Finish
        from reverie.llm.verbalize import first_sentence

        options = dict(options or {})
        if verdict.route == "small-talk":
            yield from self.pipeline.chat(verdict.question, system or SMALL_TALK_SYSTEM, options)
            return
        start, pieces, written = time.perf_counter(), 0, ""
        if verdict.chain is None:
            pieces, written = 1, verdict.answer
            yield verdict.answer
        else:
            question = verdict.resolved_question or verdict.question
            for item in self.pipeline.stream_answer(question, verdict.chain, options.get("seed")):
                if "token" in item:
                    pieces, written = pieces + 1, written + item["token"]
                    yield item["token"]
                elif item["answer"] != first_sentence(written):  # the model's sentence did not hold
                    yield f"\n(Checked against the chain, the answer is: {item['answer']})"
        yield Finish(
            prompt_tokens=len(verdict.question.split()),
            completion_tokens=pieces,
            reason="stop",
            completion_ns=int((time.perf_counter() - start) * 1e9),
        )

    def time_llm(self, prompts: Sequence[tuple[str, str]]) -> list[tuple[int, float]]:
        """(generated tokens, wall seconds) of each (system, user) prompt, streamed one at a time by
        this home's LLM actor as the verbaliser decodes it (the settings' sampling, its stop
        strings), its backends loaded first, outside the clock. Empty when no backend can answer."""
        import time

        from reverie.llm.base import BackendUnavailable, Finish
        from reverie.llm.verbalize import SENTENCE_ENDS
        from reverie.pipeline import get

        llm = self.pipeline.services.llm
        get(llm.warm_up.remote())
        options = {"stop": list(SENTENCE_ENDS)}  # the rest unset: the settings' temperature, top_k, max_new_tokens
        timed = []
        try:
            for system, user in prompts:
                start, tokens = time.perf_counter(), 0
                for ref in llm.generate.options(num_returns="streaming").remote(user, system, options):
                    item = get(ref)
                    tokens = item.completion_tokens if isinstance(item, Finish) else tokens
                timed.append((tokens, time.perf_counter() - start))
        except BackendUnavailable:
            return []
        return timed

    def query(self, question: str, image: str | Path | bytes | None = None, **options: Any) -> Query:
        """The Query `ask` answers, checked (the image too) without starting anything."""
        if image is not None:
            options["image"] = base64.b64encode(self.check_image(image)).decode()
        return Query(question=question, **options)

    def check_image(self, image: str | Path | bytes) -> bytes:
        """The image's bytes, once they are known to be an image within the size limit (an ImageError otherwise)."""
        from reverie.images import load_image

        load_image(image, self.settings.max_image_pixels, name="image" if isinstance(image, bytes) else str(image))
        return image if isinstance(image, bytes) else Path(image).read_bytes()

    def warm_up(self, llm: bool = True) -> None:
        """Start every actor and load its models (the LLM too unless `llm=False`), so that the first
        question's stage timings measure the work, not the start-up."""
        self.pipeline.services.warm_up(llm=llm)
        self.pipeline.load_conversation_models()

    def feedback(
        self, verdict: Verdict | str, rating: Literal["good", "bad", "neutral"], note: str = ""
    ) -> FeedbackRecord:
        """Rate a verdict (good, bad or neutral), kept as a dataset under `home`/feedback."""
        from reverie.schemas import Feedback

        if isinstance(verdict, Verdict):
            rated = Feedback(verdict_id=verdict.id, rating=rating, note=note, verdict=verdict)
        else:
            rated = Feedback(verdict_id=verdict, rating=rating, note=note)
        return self.pipeline.feedback(rated)

    # ---------- training and evaluation ----------
    def train_policy(
        self,
        dataset: str | Any,
        progress: Callable[[dict], None] | None = None,
        message: Callable[[str], None] | None = None,
        **config: Any,
    ) -> Path:
        """Train the path policy on a dataset with RLlib PPO (its world model first); returns the
        checkpoint's folder. `dataset`: a name or folder, or a whole `PolicyTrainConfig`. `config`:
        fields of `PolicyTrainConfig` (iterations, minutes, walks, seed) and its parts as dicts
        (env={"hops": 2}, net={"experts": 4})."""
        from reverie.actors import init_ray
        from reverie.agents.path_policy.config import PolicyTrainConfig
        from reverie.agents.path_policy.train import train_policy

        base = dataset if isinstance(dataset, PolicyTrainConfig) else PolicyTrainConfig(dataset=dataset)
        train_config = base.replace(**config)
        init_ray(self.settings)
        return train_policy(self.settings, train_config, progress=progress, message=message)

    def train_reasoner(
        self, dataset: str, config: Any = None, progress: Callable[[dict], None] | None = None, **fields: Any
    ):
        """Train the graph reasoner on a dataset and save it under `home`; a trained policy of the
        same dataset takes it into its arbiter (weights and temperature fit on dev). Returns the
        `GraphReasoner` (its `stats` hold the best dev MRR). `config`: a `ReasonerConfig`, or its
        fields by keyword (dim, layers, epochs, minutes, hide, seed, ...)."""
        import torch

        from reverie.agents.path_policy.train import attach_reasoner
        from reverie.models.graph_reasoner import train_reasoner
        from reverie.models.reasoner_config import ReasonerConfig
        from reverie.runs import RunLog

        reasoner_config = config if config is not None else ReasonerConfig(**fields)
        kg = kg_dataset(dataset)
        torch.set_num_threads(self.settings.model_threads)
        with RunLog(self.settings.home, "reasoner", kg.name) as run_log:  # its curve: the Runs view, TensorBoard
            reasoner = train_reasoner(kg, reasoner_config, progress=run_log.and_then(progress))
        path = reasoner.save(self.settings.paths.reasoner(kg.name))
        folder = self.settings.paths.policy(kg.name)
        if (folder / "config.json").is_file():
            try:
                attach_reasoner(folder, kg, path)
            except ValueError as exc:
                raise ReverieError(str(exc)) from None
        return reasoner

    def train_student(
        self,
        teacher: str = "local",
        graphs: Sequence[str] | None = None,
        per_graph: int = 1200,
        minutes: float = 12.0,
        kd_weight: float = 0.5,
        seed: int = 0,
        progress: bool = False,
        cached_only: bool = False,
        augment: int = 8,
    ) -> dict:
        """Distil the teacher LLM into the home's student (the "student" LLM backend), as `reverie
        train student` does; returns the student's card (weights, GGUF size, training time,
        held-out grounded share)."""
        from reverie.distil import distil_home

        return distil_home(
            self.settings, teacher, graphs, per_graph, minutes, kd_weight, seed, progress, cached_only, augment
        )

    def learn(
        self,
        dataset: str | None = None,
        from_feedback: bool = True,
        facts: list[Triple] | None = None,
        progress: Callable[[dict], None] | None = None,
        **config: Any,
    ) -> list[dict]:
        """One learner update of each trained policy (or of `dataset`'s): the reward model refit on the
        ratings, new ratings (`from_feedback`) and facts folded in since (`facts` are folded first) as
        experience, then PPO with prioritised replay and EWC, published as the policy's next version.
        `config`: fields of `LearnerConfig` (updates, minutes, replay, ewc, ...). Returns what each did."""
        from reverie.agents.path_policy.bundle import fold_facts
        from reverie.agents.path_policy.config import LearnerConfig
        from reverie.agents.path_policy.online import learn, trained_policies

        learner_config = LearnerConfig(**config)
        names = [dataset] if dataset else trained_policies(self.settings)
        if not names:
            raise ReverieError(
                f"no trained policy under {self.settings.paths.policies}: run `reverie train policy` first"
            )
        out = []
        for name in names:
            if facts:
                fold_facts(self.settings.paths.policy(name), facts)
            try:
                out.append(learn(self.settings, name, learner_config, from_feedback, progress))
            except (FileNotFoundError, ValueError) as exc:
                raise ReverieError(str(exc)) from None
        return out

    def learning(self) -> list[dict]:
        """Each trained policy's learning: its version, the ratings and facts consumed, the last update."""
        from reverie.agents.path_policy.online import learning_status

        return learning_status(self.settings)

    def evaluate(self, dataset: str, split: str = "test", beam: int | None = None) -> dict:
        """Filtered tail ranking of the dataset's split by its trained policy (Hits@1/3/10, MRR;
        AUC-PR for Countries), as Reverie's arbiter, the policy's paths alone, the world model alone
        and the reasoner alone (when trained)."""
        from reverie.agents.path_policy.bundle import load_bundle
        from reverie.agents.path_policy.evaluate import DEFAULT_BEAM, evaluate_bundle

        if beam is not None and beam < 1:
            raise ReverieError(f"the beam must be at least 1, got {beam}")
        kg = kg_dataset(dataset)
        folder = self.settings.paths.policy(kg.name)
        if not (folder / "config.json").is_file():
            raise ReverieError(
                f"no trained policy for {kg.name!r} in {folder}: train one first (`reverie train policy --dataset {dataset}`)"
            )
        bundle = load_bundle(folder, kg)
        return {
            "dataset": kg.name,
            "split": split,
            **evaluate_bundle(bundle, kg, split=split, beam=beam or DEFAULT_BEAM),
        }

    # ---------- bundles ----------
    def export(self, path: str | Path, force: bool = False):
        """Pack this home into the bundle folder `path` (docs/bundles.md): the graph and its vectors,
        the trained networks as safetensors, the student as GGUF with its Modelfile, and a manifest of
        versions, settings and checksums. `force` replaces an existing bundle there. Returns its Manifest."""
        from reverie.bundle import export_bundle

        return export_bundle(self.settings, path, force=force)

    @classmethod
    def load(cls, path: str | Path, home: str | Path | None = None, **settings: Any) -> "Reverie":
        """A Reverie on the bundle at `path`, imported into `home` (a new or empty folder; None: a fresh
        folder `bundles/<bundle's name>[-N]` inside the default home location, ~/.local/share/reverie).
        The bundle is checked whole first (a `reverie.bundle.BundleError` otherwise, nothing written).
        The settings that shaped the bundle's answers come with it; `settings` given here win."""
        from reverie.bundle import import_bundle
        from reverie.config import _default_home

        if home is None:
            name = Path(path).expanduser().resolve().name or "bundle"
            home = _default_home() / "bundles" / name
            for n in range(2, 10_000):
                if not home.exists() or not any(home.iterdir()):
                    break
                home = home.with_name(f"{name}-{n}")
        manifest = import_bundle(path, Path(home))
        return cls(home=home, **{**manifest.settings, **settings})

    # ---------- lifetime ----------
    def close(self) -> None:
        """Stop the actors this object started (the graph is already on disk)."""
        if self._pipeline is not None:
            self._pipeline.services.stop()
            self._pipeline = None

    def __enter__(self) -> "Reverie":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def kg_dataset(name: str):
    """A knowledge-graph dataset with a dev or test split, to learn and measure reasoning on."""
    from reverie.data.kg import load_dataset

    dataset = load_dataset(name)
    if not dataset.test and not dataset.dev:
        raise ReverieError(f"dataset {dataset.name!r} has no dev or test split to learn and measure reasoning on")
    return dataset
