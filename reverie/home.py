"""The one layout of REVERIE_HOME: every folder and file Reverie keeps there is named here, and
everything else asks `Home` for it.

    graph/snapshot.npz           the knowledge graph (networkx, written then renamed)
    graph/calibration.json       the embedding walker's confidence, fit on questions made from the graph
    qdrant/                      the embedded vector index (one process holds its lock)
    qdrant/reverie-server.json   the `reverie serve` holding this home: its URL and key (owner-only)
    feedback/                    ratings of verdicts, a dataset (JSONL)
    models/                      the bundled LLM's safetensors copy; models/clip/image_tower.pt, the image tower
    models/student/              the distilled student LLM (safetensors, config, tokenizer, its card)
    models/fractal.safetensors   the fractal network (`reverie fractal train`), its card inside; fractal.png its plot
    sentences/<teacher>.jsonl    answer sentences a teacher LLM wrote for the student, cached once
    world_models/<dataset>.pt    a dataset's knowledge-graph embedding (PyKEEN)
    reasoners/<dataset>.pt       a dataset's graph reasoner
    policies/<dataset>/          a trained path policy, self-contained
    datasets/<dataset>/          a policy's dataset folder that came in a bundle (train/dev/test.txt)
    tuner/                       the learning-rate control agent
    embeddings/<corpus>-<embedder>.npy  a headline corpus, embedded once
    runs/<kind>-<name>-...jsonl  training curves, as the web page plots them
    tune/                        Ray Tune's experiments
    config.yaml                  optional settings (REVERIE_* variables win)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

LEARNED_FACTS_FILE = "learned_facts.tsv"  # in a policy's folder: facts folded in since it was trained


@dataclass(frozen=True)
class Home:
    root: Path

    def __init__(self, root: str | os.PathLike[str]):
        object.__setattr__(self, "root", Path(root))

    @property
    def graph(self) -> Path:
        return self.root / "graph"

    @property
    def snapshot(self) -> Path:
        return self.graph / "snapshot.npz"

    @property
    def calibration(self) -> Path:
        """The embedding walker's answer calibrator, refit once an ingest grows the graph by 5%."""
        return self.graph / "calibration.json"

    @property
    def qdrant(self) -> Path:
        return self.root / "qdrant"

    @property
    def server(self) -> Path:
        """The note of the `reverie serve` that holds this home, beside the store's lock: the CLI
        asks it over HTTP instead of starting Ray (readable by the owner only: it holds the key)."""
        return self.qdrant / "reverie-server.json"

    @property
    def feedback(self) -> Path:
        return self.root / "feedback"

    @property
    def models(self) -> Path:
        """Model caches: the bundled LLM's safetensors copy, and the image tower under clip/."""
        return self.root / "models"

    @property
    def image_tower(self) -> Path:
        """Where `reverie train clip` saves the image tower."""
        return self.models / "clip" / "image_tower.pt"

    @property
    def student(self) -> Path:
        """The student LLM `reverie train student` distils: a transformers folder (safetensors)."""
        return self.models / "student"

    @property
    def fractal(self) -> Path:
        """The fractal network `reverie fractal train` grows: one safetensors file, its card inside."""
        return self.models / "fractal.safetensors"

    @property
    def fractal_plot(self) -> Path:
        """The fractal network's complexity, node count and depth over training (PNG)."""
        return self.models / "fractal.png"

    @property
    def conversation_memory(self) -> Path:
        """The conversational memory `reverie train memory` trains (else the one Reverie ships is used)."""
        return self.models / "memory"

    def router(self, name: str) -> Path:
        """A message router (`spiking`: the hub, or `mlp`), trained on first use."""
        return self.models / "hub" / name

    def sentences(self, teacher: str) -> Path:
        """The answer sentences `teacher` wrote for the student's prompts, one JSON record a line."""
        return self.root / "sentences" / f"{teacher}.jsonl"

    def world_model(self, dataset: str) -> Path:
        return self.root / "world_models" / f"{dataset}.pt"

    def reasoner(self, dataset: str) -> Path:
        return self.root / "reasoners" / f"{dataset}.pt"

    @property
    def policies(self) -> Path:
        return self.root / "policies"

    def policy(self, dataset: str) -> Path:
        """A trained path policy's folder."""
        return self.policies / dataset

    def dataset(self, name: str) -> Path:
        """A dataset folder a bundle brought (a policy's dataset that was a folder, not a built-in name)."""
        return self.root / "datasets" / name

    @property
    def reward_model(self) -> Path:
        """The reward model fit on every rating (`reverie learn --from-feedback`): it refines verdicts' confidence."""
        return self.root / "learning" / "reward_model.json"

    def learning(self, dataset: str) -> Path:
        """What the online learner keeps of a policy's learning from use: its replay buffer, reward
        model, EWC anchor, facts folded in and state (the versions themselves sit in the policy's folder)."""
        return self.root / "learning" / dataset

    @property
    def lr_control(self) -> Path:
        """The learning-rate control agent's folder (named `tuner` on disk, as homes already hold it)."""
        return self.root / "tuner"

    def embeddings(self, corpus: str, embedder: str) -> Path:
        return self.root / "embeddings" / f"{corpus}-{embedder}.npy"

    @property
    def runs(self) -> Path:
        return self.root / "runs"

    @property
    def tune(self) -> Path:
        return self.root / "tune"

    @property
    def config_file(self) -> Path:
        return self.root / "config.yaml"

    @property
    def chat_history(self) -> Path:
        """The lines typed into `reverie chat`, for readline's history."""
        return self.root / "chat_history"
