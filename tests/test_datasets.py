"""Readers: every format, every error names file:line, and nothing half-read is returned."""

import json

import pytest

from reverie.data.kg import dataset_names, load_dataset, read_file, read_kg_folder
from reverie.errors import DatasetNotFoundError, IngestError


def test_tsv_reads_triples_with_line_sources(tmp_path):
    path = tmp_path / "facts.tsv"
    path.write_text("# comment\nglass cup\tmade of\tglass\n\nglass\tis\tbrittle\t0.9\n")
    triples, entities = read_file(path)
    assert [(t.head, t.relation, t.tail) for t in triples] == [
        ("glass cup", "made of", "glass"),
        ("glass", "is", "brittle"),
    ]
    assert triples[0].source == "facts.tsv:2" and triples[1].confidence == 0.9
    assert entities == []


def test_csv_skips_header(tmp_path):
    path = tmp_path / "facts.csv"
    path.write_text("head,relation,tail\na,b,c\n")
    triples, _ = read_file(path)
    assert [(t.head, t.relation, t.tail) for t in triples] == [("a", "b", "c")]


def test_jsonl_triples_and_entities(tmp_path):
    path = tmp_path / "facts.jsonl"
    lines = [
        {"entity": {"name": "glass", "type": "material", "description": "hard and clear"}},
        {"head": "glass cup", "relation": "made of", "tail": "glass", "confidence": 0.5},
    ]
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    triples, entities = read_file(path)
    assert entities[0].type == "material"
    assert triples[0].confidence == 0.5 and triples[0].source == "facts.jsonl:2"


@pytest.mark.parametrize(
    "name, text, reason",
    [
        ("bad.tsv", "a\tb\tc\nonly\ttwo\n", "bad.tsv:2: expected 3 columns"),
        ("bad.tsv", "a\tb\tc\na\t \tc\n", "bad.tsv:2: relation"),
        ("bad.tsv", "a\tb\tc\t2.0\n", "bad.tsv:1: confidence"),
        ("bad.jsonl", '{"head": "a", "relation": "b", "tail": "c"}\n{not json\n', "bad.jsonl:2: invalid JSON"),
        ("bad.jsonl", '{"head": "a", "relation": "b"}\n', "bad.jsonl:1: tail"),
        ("bad.jsonl", '{"head": "a", "relation": "b", "tail": "c", "colour": 1}\n', "bad.jsonl:1: unknown keys"),
    ],
)
def test_malformed_line_names_file_and_line(tmp_path, name, text, reason):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(IngestError) as info:
        read_file(path)
    assert reason in info.value.message


def test_missing_and_unsupported_files(tmp_path):
    with pytest.raises(IngestError, match="no such file"):
        read_file(tmp_path / "nope.tsv")
    (tmp_path / "x.parquet").write_text("")
    with pytest.raises(IngestError, match="unsupported file type"):
        read_file(tmp_path / "x.parquet")


def test_pykeen_datasets_by_name():
    umls = load_dataset("umls")
    assert len(umls.train) == 5216 and len(umls.dev) == 652 and len(umls.test) == 661
    assert umls.graph is umls.train
    assert load_dataset("kinship").name == "kinships"  # MINERVA's spelling works too
    assert {"world", "umls", "kinships", "nations"} <= set(dataset_names())


def test_folder_layout_uses_graph_for_walking(tmp_path):
    (tmp_path / "train.txt").write_text("a\tr\tb\n")
    (tmp_path / "graph.txt").write_text("a\tr\tb\nb\tr\tc\n")
    (tmp_path / "dev.txt").write_text("c\tr\ta\n")
    (tmp_path / "test.txt").write_text("b\tr\ta\n")
    ds = read_kg_folder(tmp_path)
    assert len(ds.graph) == 2 and len(ds.train) == 1 and len(ds.dev) == 1 and len(ds.test) == 1


def test_unknown_dataset_is_a_clear_error(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="unknown dataset 'freebase'"):
        load_dataset("freebase")
    with pytest.raises(DatasetNotFoundError, match="needs train.txt"):
        load_dataset(str(tmp_path))
