"""Bundles: a whole REVERIE_HOME packed into one folder that another machine imports (no Ray).

    manifest.json                      format, versions, the settings that shape answers, every file's size and sha256
    Modelfile, student.gguf            the distilled student and its Ollama recipe (when the home has a student)
    graph/snapshot.npz                 the graph and its vectors (entity and relation vectors, float32)
    graph/calibration.json             the embedding walker's confidence
    learning/reward_model.json         the reward model that refines verdicts' confidence (when fit)
    reasoners/<dataset>.{json,safetensors}     graph reasoners
    world_models/<dataset>.{json,safetensors}  world models (PyKEEN)
    image_tower.{json,safetensors}     the image tower and its codebook
    policies/<dataset>/policy.{json,safetensors}, world_model.*, reasoner.*, learned_facts.tsv
    datasets/<dataset>/*.txt           a policy's dataset when it is a folder, not a built-in name

Every network travels as safetensors (its tensors) beside JSON (everything else its checkpoint
holds, tensors named by key), never as a pickle. The vector index is not copied: it is the
snapshot's vectors in an engine's own files, and the store rebuilds it from the snapshot on import
(`GraphStore.open_index`), in whatever engine the importing home uses.

Import checks the whole bundle before it writes anything, builds the home in a staging folder
beside the target and renames it into place; a refused bundle leaves the target as it was.
docs/bundles.md is the user's page.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import shutil
import struct
import tempfile
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from reverie.atomic import atomic_write
from reverie.errors import ReverieError
from reverie.home import Home

FORMAT_VERSION = 1
MANIFEST_FILE = "manifest.json"
MODELFILE = "Modelfile"
STUDENT_GGUF = "student.gguf"
TENSOR_KEY = "__tensor__"  # in a network's JSON: {"__tensor__": name} stands where its checkpoint held a tensor
SUFFIXES = (".json", ".safetensors", ".npz", ".gguf", ".txt", ".tsv")
"""The only kinds of file a bundle holds (and the Modelfile): data, never code."""
DATASET_FILES = ("train.txt", "graph.txt", "dev.txt", "valid.txt", "test.txt")
ANSWER_SETTINGS = (
    "link_top_k",
    "link_min_score",
    "max_subgraph_nodes",
    "walker",
    "rollouts",
    "hops",
    "walker_temperature",
    "stop_bias",
    "walker_inverse_bias",
    "confidence_threshold",
    "calibration_questions",
    "alternatives",
    "llm_backends",
    "temperature",
    "top_k",
    "max_new_tokens",
    "image_candidates",
    "image_candidate_min_probability",
    "image_link_min_score",
)
"""The settings that shape answers: recorded in the manifest, and given back by `Reverie.load`."""
PACKAGES = ("reverie", "torch", "transformers", "ray", "gguf", "safetensors", "numpy")

# SmolLM2's chat template (ChatML) in Ollama's Go-template syntax
OLLAMA_TEMPLATE = """{{- range .Messages }}<|im_start|>{{ .Role }}
{{ .Content }}<|im_end|>
{{ end }}<|im_start|>assistant
"""
STOP_STRINGS = ("<|im_end|>", "<|im_start|>")


class BundleError(ReverieError):
    """A bundle that cannot be written or read as it is: the message names the file and the reason."""

    status = 400


@dataclass
class Manifest:
    """What manifest.json says of a bundle."""

    reverie_version: str
    created: str
    packages: dict[str, str | None]
    settings: dict[str, Any]
    datasets: list[dict[str, Any]]
    graph: dict[str, Any] = field(default_factory=dict)
    """Counts of entities, relations and facts, and the sources the facts came from."""
    files: list[dict[str, Any]] = field(default_factory=list)
    student: bool = False
    format: int = FORMAT_VERSION

    def to_json(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "reverie_version": self.reverie_version,
            "created": self.created,
            "packages": self.packages,
            "settings": self.settings,
            "datasets": self.datasets,
            "graph": self.graph,
            "student": self.student,
            "files": self.files,
        }

    @classmethod
    def from_json(cls, data: Any, where: Path) -> "Manifest":
        if not isinstance(data, dict):
            raise BundleError(f"{where}: not a bundle manifest (a JSON object)")
        if data.get("format") != FORMAT_VERSION:
            raise BundleError(
                f"{where}: unknown bundle format version {data.get('format')!r} (this Reverie reads {FORMAT_VERSION})"
            )
        try:
            files = [
                {"path": str(f["path"]), "size": int(f["size"]), "sha256": str(f["sha256"])} for f in data["files"]
            ]
            return cls(
                reverie_version=str(data["reverie_version"]),
                created=str(data["created"]),
                packages=dict(data["packages"]),
                settings=dict(data["settings"]),
                datasets=list(data["datasets"]),
                graph=dict(data.get("graph") or {}),
                files=files,
                student=bool(data.get("student", False)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise BundleError(f"{where}: a malformed manifest ({type(exc).__name__}: {exc})") from None


# ------------------------------------------------------------------ networks <-> safetensors + JSON


def _flatten(value: Any, name: str, tensors: dict[str, Any]) -> Any:
    """A torch checkpoint's payload as JSON, each tensor put into `tensors` under its key path."""
    import torch

    if isinstance(value, torch.Tensor):
        tensors[name] = value.detach().cpu().contiguous().clone()  # safetensors refuses shared storage
        return {TENSOR_KEY: name}
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise BundleError(f"{name}: a checkpoint with non-text keys cannot travel as JSON")
        return {k: _flatten(v, f"{name}/{k}" if name else k, tensors) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_flatten(v, f"{name}/{i}", tensors) for i, v in enumerate(value)]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise BundleError(f"{name}: a {type(value).__name__} in a checkpoint cannot travel as JSON")


def _unflatten(value: Any, tensors: dict[str, Any]) -> Any:
    if isinstance(value, dict):
        if set(value) == {TENSOR_KEY}:
            return tensors[value[TENSOR_KEY]]
        return {k: _unflatten(v, tensors) for k, v in value.items()}
    if isinstance(value, list):
        return [_unflatten(v, tensors) for v in value]
    return value


def _write_network(payload: Any, stem: Path) -> list[Path]:
    """`payload` (a checkpoint's content) as stem.safetensors + stem.json; returns both paths."""
    from safetensors.torch import save_file

    tensors: dict[str, Any] = {}
    structure = _flatten(payload, "", tensors)
    stem.parent.mkdir(parents=True, exist_ok=True)
    weights, config = stem.with_suffix(".safetensors"), stem.with_suffix(".json")
    save_file(tensors, str(weights))
    config.write_text(json.dumps({"checkpoint": structure}, indent=1, sort_keys=True))
    return [config, weights]


def _read_network(stem: Path) -> Any:
    """The checkpoint's content back from stem.safetensors + stem.json (no pickle is read)."""
    from safetensors.torch import load_file

    config, weights = stem.with_suffix(".json"), stem.with_suffix(".safetensors")
    try:
        structure = json.loads(config.read_text())["checkpoint"]
        return _unflatten(structure, load_file(str(weights)))
    except Exception as exc:  # safetensors raises its own SafetensorError on a bad header
        raise BundleError(f"{config.name}: cannot rebuild the network ({type(exc).__name__}: {exc})") from None


def _torch_payload(path: Path) -> Any:
    """A checkpoint the home's own code wrote, read with torch's weights-only loader."""
    import torch

    return torch.load(path, map_location="cpu", weights_only=True)


def _save_payload(payload: Any, path: Path) -> Path:
    import torch

    from reverie.atomic import atomic_file

    with atomic_file(path) as handle:
        torch.save(payload, handle)
    return path


# What each kind of single-file network is, in the home: (load it, save it). The import rebuilds the
# object with the project's own loader (which checks every shape) and saves it with its own save.
def _reasoner_io() -> tuple[Callable, Callable]:
    from reverie.models.graph_reasoner import GraphReasoner

    return GraphReasoner.load, lambda obj, path: obj.save(path)


def _world_model_io() -> tuple[Callable, Callable]:
    from reverie.models.world_model import WorldModel

    return WorldModel.load, lambda obj, path: obj.save(path)


def _image_tower_io() -> tuple[Callable, Callable]:
    from reverie.encoders.image_tower import ImageTokenizer

    return ImageTokenizer.load, lambda obj, path: obj.save(Path(path))


def _rebuild_file(stem: Path, target: Path, io: Callable[[], tuple[Callable, Callable]]) -> None:
    """A bundled network, rebuilt and saved at `target` in the home's own format."""
    load, save = io()
    _save_payload(_read_network(stem), target)
    try:
        obj = load(target)
    except Exception as exc:  # the loaders raise what torch and PyKEEN raise on a mismatch
        raise BundleError(f"{stem.name}: the network does not rebuild ({type(exc).__name__}: {exc})") from None
    save(obj, target)


# ------------------------------------------------------------------ export


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def modelfile(settings: Any) -> str:
    """The Ollama Modelfile of a bundle's student: its GGUF, SmolLM2's chat template, Reverie's sampling."""
    lines = [
        f"FROM ./{STUDENT_GGUF}",
        f'TEMPLATE """{OLLAMA_TEMPLATE}"""',
        f"PARAMETER temperature {settings.temperature}",
        f"PARAMETER top_k {settings.top_k}",
        f"PARAMETER num_predict {settings.max_new_tokens}",
        *(f'PARAMETER stop "{stop}"' for stop in STOP_STRINGS),
    ]
    return "\n".join(lines) + "\n"


def _policy_dataset(folder: Path) -> tuple[str, str]:
    """(name, what load_dataset was given) of the policy in `folder`."""
    from reverie.agents.path_policy.net import read_policy_meta

    meta = read_policy_meta(folder)
    return meta.dataset, meta.dataset_arg or folder.name


def _export_policy(folder: Path, out: Path, datasets: dict[str, dict]) -> None:
    from reverie.agents.path_policy.bundle import REASONER_FILE, WORLD_MODEL_FILE
    from reverie.agents.path_policy.net import read_policy_config
    from reverie.checkpoints import load_weights
    from reverie.data.kg import dataset_names
    from reverie.home import LEARNED_FACTS_FILE

    config = read_policy_config(folder)
    _write_network({"config": config, "state_dict": load_weights(folder, config)}, out / "policy")
    for name in (WORLD_MODEL_FILE, REASONER_FILE):
        if (folder / name).is_file():
            _write_network(_torch_payload(folder / name), out / Path(name).stem)
    if (folder / LEARNED_FACTS_FILE).is_file():
        shutil.copyfile(folder / LEARNED_FACTS_FILE, out / LEARNED_FACTS_FILE)
    name, arg = _policy_dataset(folder)
    if arg.strip().lower() in dataset_names():
        datasets[name] = {"name": name, "builtin": True}
        return
    source = Path(arg).expanduser()
    if not source.is_dir():
        raise BundleError(f"{folder}: its dataset {arg!r} is neither a built-in name nor a folder here")
    files = [f for f in DATASET_FILES if (source / f).is_file()]
    copy = out.parent.parent / "datasets" / name  # out is <bundle>/policies/<name>
    copy.mkdir(parents=True, exist_ok=True)
    for f in files:
        shutil.copyfile(source / f, copy / f)
    datasets[name] = {"name": name, "builtin": False, "files": files}


def _home_of(home_or_settings: Any) -> tuple[Home, Any]:
    from reverie.config import Settings

    if isinstance(home_or_settings, Home):
        return home_or_settings, Settings(home=home_or_settings.root)
    return home_or_settings.paths, home_or_settings


def export_bundle(home: Any, path: str | os.PathLike, force: bool = False) -> Manifest:
    """Write the bundle of `home` (a Home, or Settings) to the folder `path`, which must not exist or be
    empty (`force`: an existing bundle there is replaced). Written beside it, then renamed into place."""
    home, settings = _home_of(home)
    target = Path(path).expanduser().resolve()
    if not home.snapshot.is_file():
        raise BundleError(f"{home.snapshot}: no graph in {home.root} to export (ingest something first)")
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        if not force:
            raise BundleError(f"{target}: exists and is not empty (--force replaces a bundle there)")
        if not (target / MANIFEST_FILE).is_file():
            raise BundleError(f"{target}: not a bundle (no {MANIFEST_FILE}); --force replaces bundles only")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.export-"))
    try:
        manifest = _export_into(home, settings, staging)
        if target.exists():
            old = target.with_name(f".{target.name}.old-{os.getpid()}")
            target.rename(old)
            staging.rename(target)
            shutil.rmtree(old)
        else:
            staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return manifest


def _export_into(home: Home, settings: Any, out: Path) -> Manifest:
    with np.load(home.snapshot, allow_pickle=False) as data:  # a snapshot that reads, and holds no pickle
        meta = json.loads(bytes(data["meta"]).decode())
        graph = {
            "entities": len(meta.get("entities", [])),
            "relations": len(meta.get("relations", [])),
            "triples": int(len(data["heads"])) if "heads" in data.files else None,
            "sources": list(meta.get("sources", [])),
        }
    (out / "graph").mkdir()
    shutil.copyfile(home.snapshot, out / "graph" / home.snapshot.name)
    if home.calibration.is_file():
        shutil.copyfile(home.calibration, out / "graph" / home.calibration.name)
    if home.reward_model.is_file():
        (out / "learning").mkdir()
        shutil.copyfile(home.reward_model, out / "learning" / home.reward_model.name)
    for kind in ("reasoners", "world_models"):
        for pt in sorted((home.root / kind).glob("*.pt")):
            _write_network(_torch_payload(pt), out / kind / pt.stem)
    if home.image_tower.is_file():
        _write_network(_torch_payload(home.image_tower), out / "image_tower")
    datasets: dict[str, dict] = {}
    for config in sorted(home.policies.glob("*/config.json")):
        _export_policy(config.parent, out / "policies" / config.parent.name, datasets)
    has_student = (home.student / "config.json").is_file()
    if has_student:
        from reverie.models.student import write_gguf

        write_gguf(home.student, out / STUDENT_GGUF)
        (out / MODELFILE).write_text(modelfile(settings))
    manifest = Manifest(
        reverie_version=_version("reverie") or "unknown",
        created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        packages={p: _version(p) for p in PACKAGES},
        settings=settings.model_dump(mode="json", include=set(ANSWER_SETTINGS)),
        datasets=sorted(datasets.values(), key=lambda d: d["name"]),
        graph=graph,
        student=has_student,
    )
    manifest.files = [
        {"path": f.relative_to(out).as_posix(), "size": f.stat().st_size, "sha256": _sha256(f)}
        for f in sorted(p for p in out.rglob("*") if p.is_file())
    ]
    atomic_write(out / MANIFEST_FILE, json.dumps(manifest.to_json(), indent=2).encode())
    return manifest


# ------------------------------------------------------------------ checks


def _safe_relative(name: str, bundle: Path) -> Path:
    """The manifest's `name` as a path inside `bundle`; a BundleError for one that would leave it."""
    pure = PurePosixPath(name)
    if not name or "\\" in name or "\0" in name or pure.is_absolute() or ".." in pure.parts or name != pure.as_posix():
        raise BundleError(f"{bundle / MANIFEST_FILE}: the path {name!r} escapes the bundle or is not plain")
    return bundle / pure


def _is_pickle(path: Path) -> str | None:
    """Why `path` holds a pickle, or None. Read by its bytes only: nothing is unpickled."""
    with open(path, "rb") as handle:
        head = handle.read(4)
    if len(head) >= 2 and head[0] == 0x80 and 1 <= head[1] <= 5:
        return "a pickle (protocol header)"
    if head.startswith(b"PK"):
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
                for member in names:
                    if member.endswith((".pkl", ".pickle")) or PurePosixPath(member).name == "data.pkl":
                        return f"a zip holding the pickle {member!r} (a torch checkpoint)"
                if path.suffix == ".npz":
                    for member in names:
                        if not member.endswith(".npy"):
                            return f"an .npz holding {member!r}, which is not an array"
                        with archive.open(member) as npy:
                            version = np.lib.format.read_magic(npy)
                            read_header = (
                                np.lib.format.read_array_header_1_0
                                if version == (1, 0)
                                else np.lib.format.read_array_header_2_0
                            )
                            _, _, dtype = read_header(npy)
                        if dtype.hasobject:
                            return f"an .npz whose array {member!r} holds Python objects (pickles)"
        except (zipfile.BadZipFile, ValueError, OSError, struct.error) as exc:
            return f"an unreadable archive ({type(exc).__name__}: {exc})"
    return None


def check_bundle(path: str | os.PathLike) -> Manifest:
    """The manifest of the bundle at `path` once every check passes; a BundleError naming the file and
    the reason at the first that fails. Checks: the format version; every path stays in the folder;
    every listed file is there with its size and sha256; no file, link or folder beside them that the
    manifest does not list; only data files (no pickle, by magic bytes and zip members)."""
    bundle = Path(path).expanduser().resolve()
    where = bundle / MANIFEST_FILE
    if not bundle.is_dir():
        raise BundleError(f"{bundle}: no bundle there (not a folder)")
    if not where.is_file():
        raise BundleError(f"{where}: missing; not a bundle")
    try:
        data = json.loads(where.read_text())
    except (OSError, ValueError) as exc:
        raise BundleError(f"{where}: not readable JSON ({exc})") from None
    manifest = Manifest.from_json(data, where)
    listed: dict[Path, dict] = {}
    for entry in manifest.files:
        file = _safe_relative(entry["path"], bundle)
        if file in listed or file == where:
            raise BundleError(f"{where}: {entry['path']!r} is listed twice")
        listed[file] = entry
    for found in sorted(bundle.rglob("*")):
        if found.is_symlink():
            raise BundleError(f"{found}: a link; a bundle holds plain files only")
        if found.is_file() and found != where and found not in listed:
            raise BundleError(f"{found}: a file not in the manifest")
    for file, entry in listed.items():
        name = entry["path"]
        if not file.is_file():
            raise BundleError(f"{file}: missing (the manifest lists it)")
        if not (file.suffix in SUFFIXES or file.name == MODELFILE):
            raise BundleError(f"{file}: not a kind of file a bundle holds ({', '.join(SUFFIXES)}, Modelfile)")
        if file.stat().st_size != entry["size"]:
            raise BundleError(f"{file}: {file.stat().st_size} bytes, the manifest says {entry['size']} (damaged)")
        if _sha256(file) != entry["sha256"]:
            raise BundleError(f"{file}: checksum mismatch (sha256 differs from the manifest's): damaged or changed")
        reason = _is_pickle(file)
        if reason is not None:
            raise BundleError(f"{file}: {reason}; a bundle never holds pickles")
        if name.startswith("policies/") and file.name == "policy.json" and file.parent.parent != bundle / "policies":
            raise BundleError(f"{file}: a policy must sit at policies/<dataset>/")
    if manifest.student and not (bundle / STUDENT_GGUF).is_file():
        raise BundleError(f"{bundle / STUDENT_GGUF}: missing (the manifest says the bundle has a student)")
    return manifest


# ------------------------------------------------------------------ import


def import_bundle(path: str | os.PathLike, home: Any) -> Manifest:
    """Import the bundle at `path` into `home` (a Home, Settings or folder), which must not exist or be
    empty: an import never replaces a home's state (remove or move the old home first). Everything is
    checked, then built in a staging folder beside the home and renamed into place: a refused bundle
    writes nothing. The vector index is rebuilt from the snapshot by the store's own code."""
    if isinstance(home, Home):
        root = home.root
    elif isinstance(home, (str, os.PathLike)):
        root = Path(home)
    else:  # Settings
        root = home.home
    root = Path(root).expanduser().resolve()
    bundle = Path(path).expanduser().resolve()
    manifest = check_bundle(bundle)
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise BundleError(f"{root}: the home exists and is not empty; import into a new or empty folder")
    if root == bundle or bundle in root.parents:
        raise BundleError(f"{root}: the home cannot lie inside the bundle")
    root.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=root.parent, prefix=f".{root.name}.import-"))
    try:
        _import_into(bundle, manifest, Home(staging), root)
        _check_graph(staging)
        _write_settings(manifest, Home(staging))
        if root.exists():
            root.rmdir()  # empty, checked above
        staging.rename(root)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _open_index(root)
    return manifest


def _import_into(bundle: Path, manifest: Manifest, home: Home, final_root: Path) -> None:
    from reverie.agents.path_policy.bundle import REASONER_FILE, WORLD_MODEL_FILE
    from reverie.home import LEARNED_FACTS_FILE

    home.graph.mkdir(parents=True)
    shutil.copyfile(bundle / "graph" / home.snapshot.name, home.snapshot)
    if (bundle / "graph" / home.calibration.name).is_file():
        shutil.copyfile(bundle / "graph" / home.calibration.name, home.calibration)
    if (bundle / "learning" / home.reward_model.name).is_file():
        home.reward_model.parent.mkdir(parents=True)
        shutil.copyfile(bundle / "learning" / home.reward_model.name, home.reward_model)
    for stem in _stems(bundle / "reasoners"):
        _rebuild_file(stem, home.reasoner(stem.name), _reasoner_io)
    for stem in _stems(bundle / "world_models"):
        _rebuild_file(stem, home.world_model(stem.name), _world_model_io)
    if (bundle / "image_tower.json").is_file():
        home.image_tower.parent.mkdir(parents=True, exist_ok=True)
        _rebuild_file(bundle / "image_tower", home.image_tower, _image_tower_io)
    local_datasets = {}
    for entry in manifest.datasets:
        if not entry.get("builtin"):
            name = str(entry["name"])
            source = _safe_relative(f"datasets/{name}", bundle)
            if source.parent != bundle / "datasets":
                raise BundleError(f"{bundle / MANIFEST_FILE}: the dataset name {name!r} is not a plain name")
            shutil.copytree(source, home.dataset(name))
            local_datasets[name] = Home(final_root).dataset(name)
    for policy in sorted((bundle / "policies").glob("*/policy.json")):
        folder = home.policy(policy.parent.name)
        folder.mkdir(parents=True)
        for name, io in ((WORLD_MODEL_FILE, _world_model_io), (REASONER_FILE, _reasoner_io)):
            if (policy.parent / Path(name).with_suffix(".json")).is_file():
                _rebuild_file(policy.parent / Path(name).stem, folder / name, io)
        if (policy.parent / LEARNED_FACTS_FILE).is_file():
            shutil.copyfile(policy.parent / LEARNED_FACTS_FILE, folder / LEARNED_FACTS_FILE)
        _rebuild_policy(policy.with_suffix(""), folder, local_datasets)
    if manifest.student:
        from reverie.models.student import student_from_gguf

        try:
            student_from_gguf(bundle / STUDENT_GGUF, home.student)
        except BundleError:
            raise
        except Exception as exc:
            raise BundleError(
                f"{bundle / STUDENT_GGUF}: the student does not load ({type(exc).__name__}: {exc})"
            ) from None


def _stems(folder: Path) -> list[Path]:
    return [p.with_suffix("") for p in sorted(folder.glob("*.json"))]


def _rebuild_policy(stem: Path, folder: Path, local_datasets: dict[str, Path]) -> None:
    """The path policy's net rebuilt from its config, its weights loaded (every shape checked) and
    saved by `save_policy`; a folder dataset's meta points at the home's copy."""
    from reverie.agents.path_policy.config import PolicyMeta
    from reverie.agents.path_policy.net import PathPolicyNet, save_policy

    payload = _read_network(stem)
    try:
        config = payload["config"]
        net = PathPolicyNet.from_config(config["net"])
        net.load_state_dict(payload["state_dict"])
        meta = PolicyMeta.from_json(config["meta"])
    except Exception as exc:  # what torch raises on a shape or key mismatch
        raise BundleError(
            f"{stem.with_suffix('.json')}: the policy does not rebuild ({type(exc).__name__}: {exc})"
        ) from None
    if meta.dataset in local_datasets:
        meta.dataset_arg = str(local_datasets[meta.dataset])
    save_policy(net, folder, meta=meta)


def _write_settings(manifest: Manifest, home: Home) -> None:
    """The bundle's answer-shaping settings that differ from the defaults, as the home's config.yaml
    (read when REVERIE_HOME is this home; REVERIE_* variables still win)."""
    import yaml

    from reverie.config import Settings

    fields = Settings.model_fields
    changed = {
        name: value
        for name, value in manifest.settings.items()
        if name in ANSWER_SETTINGS and value != fields[name].get_default(call_default_factory=True)
    }
    if changed:
        try:
            Settings(home=home.root, **changed)
        except ValueError as exc:
            raise BundleError(f"{MANIFEST_FILE}: its settings are not valid here ({exc})") from None
        atomic_write(home.config_file, yaml.safe_dump(changed, sort_keys=True).encode())


def _check_graph(root: Path) -> None:
    """The imported snapshot loads whole in the store (its own consistency checks)."""
    from reverie.config import Settings
    from reverie.graph_store import GraphStore

    try:
        GraphStore(Settings(home=root)).stats()
    except ReverieError as exc:
        raise BundleError(f"graph/snapshot.npz: {exc.message}") from None


def _open_index(root: Path) -> None:
    """Build the home's vector index from its snapshot now, so the first question does not wait."""
    from reverie.config import Settings
    from reverie.graph_store import GraphStore

    store = GraphStore(Settings(home=root))
    try:
        store.open_index()
    finally:
        store.close()
