"""Bundles: export a home, import it on "another machine" (a fresh home), get the same verdicts;
damaged or tampered bundles are refused and write nothing."""

from __future__ import annotations

import importlib.metadata
import io
import json
import pickle
import shutil
import zipfile

import numpy as np
import pytest

from reverie.bundle import MANIFEST_FILE, BundleError, check_bundle, export_bundle, import_bundle, modelfile
from testkit.datasets import write_toy_dataset

WORLD_QUESTIONS = (
    "What happens when you drop a glass cup?",
    "What happens when you heat a chocolate bar?",
)
TOY_QUESTIONS = ("who is the grandparent of p12", "who is the parent of p30")


def _tiny_policy_home(settings, toy_folder) -> None:
    """A policy folder for the toy graph with a world model and a reasoner beside it (tiny, untrained or
    barely trained: the test is that they travel, not that they are good), plus an image tower."""
    from reverie.agents.path_policy.config import PolicyMeta
    from reverie.agents.path_policy.net import PathPolicyNet
    from reverie.agents.path_policy.train import save_policy_folder
    from reverie.agents.path_policy.walkgraph import WalkGraph
    from reverie.data.kg import load_dataset
    from reverie.encoders.image_tower import ImageConfig, ImageTokenizer
    from reverie.models.graph_reasoner import train_reasoner
    from reverie.models.reasoner_config import ReasonerConfig
    from reverie.models.world_model import WorldModel, WorldModelConfig

    data = load_dataset(str(toy_folder))
    home = settings.paths
    world_model = WorldModel.train(data, WorldModelConfig(dim=8, epochs=2)).save(home.world_model(data.name))
    reasoner = train_reasoner(data, ReasonerConfig(dim=8, heads=1, layers=2, epochs=1, minutes=0.01))
    reasoner.save(home.reasoner(data.name))
    meta = PolicyMeta(dataset=data.name, dataset_arg=str(toy_folder))
    graph = WalkGraph.from_dataset(data, max_actions=meta.env.max_actions, seed=meta.env.graph_seed)
    meta.entities, meta.relations = list(graph.id2entity), list(graph.id2relation)
    net = PathPolicyNet(graph.num_entities, graph.num_relation_ids)
    save_policy_folder(home.policy(data.name), net, meta, world_model, home.reasoner(data.name))
    ImageTokenizer(ImageConfig(backbone="lite", image_size=32, width=8, layers=2)).save(home.image_tower)


def _verdicts(settings, questions, datasets=()):
    """The verdicts of `questions` in the home of `settings` (after ingesting `datasets` there)."""
    from reverie.pipeline import Pipeline
    from reverie.schemas import Query

    pipeline = Pipeline(settings)
    try:
        for dataset in datasets:
            pipeline.ingest_dataset(dataset)
        return [pipeline.answer(Query(question=q, seed=0, rollouts=48, verbalize=False)) for q in questions]
    finally:
        pipeline.services.stop()


def _summary(verdict) -> dict:
    """What must be the same in both homes: the answer, the walker, the candidates and every chain step."""
    return {
        "answer": verdict.answer_entity,
        "sure": verdict.sure,
        "policy": verdict.policy,
        "candidates": [(c.answer, c.votes, round(c.score, 5)) for c in verdict.candidates],
        "chains": [
            [(s.what, s.action, s.result, s.edge_id, s.source) for s in chain.steps]
            for chain in [verdict.chain, *(c.best_chain for c in verdict.candidates)]
            if chain is not None
        ],
    }


@pytest.fixture(scope="module")
def source(ray_cluster, tmp_path_factory):
    """(settings, verdicts, bundle path) of a home with the world and a toy graph, a policy, networks."""
    from reverie.config import Settings
    from reverie.data.kg import load_dataset

    root = tmp_path_factory.mktemp("bundle")
    toy = root / "data" / "toyfamily"
    write_toy_dataset(toy)
    settings = Settings(home=root / "source-home")
    _tiny_policy_home(settings, toy)
    datasets = [load_dataset("world"), load_dataset(str(toy))]
    verdicts = _verdicts(settings, WORLD_QUESTIONS + TOY_QUESTIONS, datasets)
    bundle = root / "bundle"
    export_bundle(settings, bundle)
    shutil.rmtree(toy)  # "another machine": the toy dataset's folder is not there; the bundle carries it
    return settings, verdicts, bundle


def test_imported_home_gives_the_same_verdicts(source, tmp_path):
    from reverie.config import Settings

    settings, verdicts, bundle = source
    manifest = import_bundle(bundle, tmp_path / "imported")
    assert [d["name"] for d in manifest.datasets] == ["toyfamily"] and not manifest.datasets[0]["builtin"]
    imported = Settings(home=tmp_path / "imported")
    assert (imported.paths.qdrant).is_dir()  # the index was rebuilt from the snapshot by the store
    again = _verdicts(imported, WORLD_QUESTIONS + TOY_QUESTIONS)
    assert [v.policy for v in verdicts] == ["embedding-walker"] * 2 + ["path-policy:toyfamily"] * 2
    assert verdicts[0].answer_entity  # the world's question is answered, so equality below means something
    for before, after in zip(verdicts, again):
        assert _summary(after) == _summary(before)


def test_networks_round_trip_without_pickles(source, tmp_path):

    from reverie.encoders.image_tower import ImageTokenizer
    from reverie.models.graph_reasoner import GraphReasoner
    from reverie.models.world_model import WorldModel

    settings, _, bundle = source
    manifest = check_bundle(bundle)
    listed = {f["path"]: f for f in manifest.files}
    on_disk = {p.relative_to(bundle).as_posix() for p in bundle.rglob("*") if p.is_file()} - {MANIFEST_FILE}
    assert set(listed) == on_disk  # every file, with its checksum
    assert all(len(f["sha256"]) == 64 and f["size"] == (bundle / f["path"]).stat().st_size for f in manifest.files)
    assert not [p for p in listed if p.endswith((".pt", ".pkl", ".pth"))]
    assert {"graph/snapshot.npz", "policies/toyfamily/policy.safetensors", "image_tower.safetensors"} <= set(listed)
    assert not [p for p in listed if p.startswith("qdrant")]  # the index is rebuilt, never copied
    assert manifest.packages["torch"] == importlib.metadata.version("torch") and manifest.packages["gguf"]
    assert manifest.settings["rollouts"] == settings.rollouts
    assert "world" in manifest.graph["sources"] and manifest.graph["triples"] > 0
    assert any(source.startswith("toyfamily") for source in manifest.graph["sources"])

    home = tmp_path / "home"
    import_bundle(bundle, home)
    from reverie.home import Home

    old, new = settings.paths, Home(home)
    heads, relations = np.array([0, 1, 2]), np.array([0, 1, 0])
    for a, b in ((old.reasoner("toyfamily"), new.reasoner("toyfamily")),):
        np.testing.assert_array_equal(
            GraphReasoner.load(a).score_tails(heads, relations), GraphReasoner.load(b).score_tails(heads, relations)
        )
    np.testing.assert_array_equal(
        WorldModel.load(old.world_model("toyfamily")).score_tails(heads, relations),
        WorldModel.load(new.world_model("toyfamily")).score_tails(heads, relations),
    )
    image = np.random.default_rng(0).integers(0, 255, (40, 40, 3), dtype=np.uint8)
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    np.testing.assert_array_equal(
        ImageTokenizer.load(old.image_tower).encode([buffer.getvalue()]),
        ImageTokenizer.load(new.image_tower).encode([buffer.getvalue()]),
    )


def _rewrite_manifest(bundle, change) -> None:
    path = bundle / MANIFEST_FILE
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def _list_file(bundle, name) -> None:
    """Put `name` into the manifest with its true size and checksum (a tamperer who knows the format)."""
    from reverie.bundle import _sha256

    file = bundle / name
    _rewrite_manifest(
        bundle, lambda d: d["files"].append({"path": name, "size": file.stat().st_size, "sha256": _sha256(file)})
    )


def _relist(bundle, name) -> None:
    """Give a changed file its new size and checksum in the manifest."""
    _rewrite_manifest(
        bundle, lambda d: d["files"].__setitem__(slice(None), [f for f in d["files"] if f["path"] != name])
    )
    _list_file(bundle, name)


def _wrong_shape(bundle):
    """A policy whose config no longer fits its weights, consistently listed: it fails only when rebuilt,
    after the staging folder was made."""
    name = "policies/toyfamily/policy.json"
    data = json.loads((bundle / name).read_text())
    data["checkpoint"]["config"]["net"]["num_entities"] += 1
    (bundle / name).write_text(json.dumps(data))
    _relist(bundle, name)


def _flip_a_byte(bundle):
    path = bundle / "policies" / "toyfamily" / "policy.safetensors"
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x01
    path.write_bytes(bytes(data))


def _torch_pickle(bundle):
    import torch

    torch.save({"weights": torch.zeros(2)}, bundle / "reasoners" / "evil.safetensors")
    _list_file(bundle, "reasoners/evil.safetensors")


def _raw_pickle(bundle):
    (bundle / "graph" / "extra.json").write_bytes(pickle.dumps({"a": 1}))
    _list_file(bundle, "graph/extra.json")


def _pickled_npz(bundle):
    buffer = io.BytesIO()
    np.savez(buffer, meta=np.array([{"a": 1}], dtype=object))
    (bundle / "graph" / "other.npz").write_bytes(buffer.getvalue())
    _list_file(bundle, "graph/other.npz")


def _zip_with_pkl(bundle):
    with zipfile.ZipFile(bundle / "graph" / "more.npz", "w") as archive:
        archive.writestr("archive/data.pkl", pickle.dumps([1]))
    _list_file(bundle, "graph/more.npz")


def _escape(bundle):
    (bundle.parent / "outside.json").write_text("{}")
    _list_file(bundle, "../outside.json")


TAMPERINGS = {
    "checksum": (_flip_a_byte, "checksum mismatch"),
    "missing": (lambda b: (b / "graph" / "calibration.json").unlink(), "missing"),
    "unlisted": (lambda b: (b / "graph" / "notes.txt").write_text("hi"), "not in the manifest"),
    "torch-pickle": (_torch_pickle, "pickle"),
    "raw-pickle": (_raw_pickle, "pickle"),
    "npz-objects": (_pickled_npz, "pickles"),
    "zip-pkl": (_zip_with_pkl, "pickle"),
    "escape": (_escape, "escapes"),
    "absolute": (
        lambda b: _rewrite_manifest(b, lambda d: d["files"].append(dict(d["files"][0], path="/etc/passwd"))),
        "escapes",
    ),
    "format": (lambda b: _rewrite_manifest(b, lambda d: d.update(format=99)), "unknown bundle format version 99"),
    "wrong-shape": (_wrong_shape, "the policy does not rebuild"),
    "link": (lambda b: (b / "graph" / "link.json").symlink_to(b / "graph" / "calibration.json"), "a link"),
}


@pytest.mark.parametrize("kind", TAMPERINGS)
def test_tampered_bundles_are_refused_and_write_nothing(source, tmp_path, kind):
    _, _, bundle = source
    copy = tmp_path / "bundle"
    shutil.copytree(bundle, copy)
    tamper, reason = TAMPERINGS[kind]
    tamper(copy)
    home = tmp_path / "homes" / "target"
    with pytest.raises(BundleError, match=reason):
        import_bundle(copy, home)
    assert not home.exists()
    homes = tmp_path / "homes"
    assert not homes.exists() or not list(homes.iterdir())  # no staging folder left behind either


def test_import_refuses_a_home_with_state_and_the_cli_says_so(source, tmp_path, capsys):
    from reverie.cli import main

    _, _, bundle = source
    home = tmp_path / "home"
    home.mkdir()
    (home / "keep.txt").write_text("mine")
    assert main(["import", str(bundle), "--home", str(home)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("reverie: error: ") and "not empty" in err and len(err.splitlines()) == 1
    assert sorted(p.name for p in home.iterdir()) == ["keep.txt"]
    # an empty folder is a fresh home
    assert main(["import", str(bundle), "--home", str(tmp_path / "empty")]) == 0


def test_export_refuses_to_overwrite_unless_forced(source, tmp_path, capsys):
    from reverie.cli import main
    from reverie.config import Settings

    _, _, bundle = source
    home = tmp_path / "home"  # the source's toy dataset folder is gone: export the imported home, which keeps a copy
    import_bundle(bundle, home)
    target = tmp_path / "out"
    assert main(["export", str(target), "--home", str(home)]) == 0
    assert main(["export", str(target), "--home", str(home)]) == 2
    assert "--force" in capsys.readouterr().err
    assert main(["export", str(target), "--home", str(home), "--force"]) == 0
    assert {f["path"] for f in check_bundle(target).files} == {f["path"] for f in check_bundle(bundle).files}
    settings = Settings(home=home)
    other = tmp_path / "papers"
    other.mkdir()
    (other / "thesis.txt").write_text("not a bundle")
    with pytest.raises(BundleError, match="not a bundle"):
        export_bundle(settings, other, force=True)
    assert (other / "thesis.txt").read_text() == "not a bundle"


def test_modelfile_runs_the_student_in_ollama():
    from reverie.config import Settings

    text = modelfile(Settings(temperature=0.3, top_k=7, max_new_tokens=33))
    lines = text.splitlines()
    assert lines[0] == "FROM ./student.gguf"
    assert "PARAMETER temperature 0.3" in lines and "PARAMETER top_k 7" in lines and "PARAMETER num_predict 33" in lines
    assert 'PARAMETER stop "<|im_end|>"' in lines
    assert "<|im_start|>{{ .Role }}" in text and text.count('"""') == 2


def _untrained_student(folder) -> None:
    """A tiny untrained llama student with SmolLM2's tokenizer (the bundle's job is to carry it, not to
    judge it), saved as `train_student` saves one; no teacher is loaded."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from reverie.llm.local import bundled_gguf_path
    from reverie.models.student import save_student

    gguf = bundled_gguf_path()
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=8,
        max_position_embeddings=256,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(0)
    save_student(LlamaForCausalLM(config).float(), tokenizer, folder, {"training_seconds": 0.0})


@pytest.mark.slow
def test_a_bundle_with_a_student_carries_its_gguf_and_modelfile(source, tmp_path):
    """The student travels as GGUF beside its Modelfile and comes back as a folder that transformers
    loads and that writes the same greedy tokens."""
    import torch

    from reverie.home import Home
    from reverie.models.student import load_student

    _, _, bundle = source
    home = Home(tmp_path / "home")
    import_bundle(bundle, home.root)
    _untrained_student(home.student)
    out = tmp_path / "with-student"
    manifest = export_bundle(home, out)
    assert manifest.student and "student.gguf" in {f["path"] for f in manifest.files}
    assert (out / "Modelfile").read_text().splitlines()[0] == "FROM ./student.gguf"
    again = Home(tmp_path / "again")
    import_bundle(out, again.root)
    tokens = []
    for folder in (home.student, again.student):
        model, tokenizer = load_student(folder)
        prompt = tokenizer("The answer is", return_tensors="pt").input_ids
        with torch.inference_mode():
            tokens.append(model.generate(prompt, max_new_tokens=8, do_sample=False)[0].tolist())
    assert tokens[0] == tokens[1]


def test_python_api_exports_and_loads(source, tmp_path, monkeypatch):
    from reverie import Reverie

    settings, _, bundle = source
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))  # where a home=None import goes
    first = Reverie.load(bundle, rollouts=17)
    assert first.settings.home == (tmp_path / "data" / "reverie" / "bundles" / bundle.name).resolve()
    assert first.settings.rollouts == 17 and first.settings.hops == settings.hops
    second = Reverie.load(bundle)  # the first folder is taken now: the next one is fresh
    assert second.settings.home.name == f"{bundle.name}-2"
    manifest = second.export(tmp_path / "again")
    assert {f["path"] for f in manifest.files} == {f["path"] for f in check_bundle(bundle).files}
    with pytest.raises(BundleError, match="not empty"):
        Reverie.load(bundle, home=first.settings.home)
