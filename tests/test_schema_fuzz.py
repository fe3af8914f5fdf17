"""Schemathesis against the live OpenAPI schema of the served app (the session's `served`, with its
API key): every route, with bodies that fit the schema and bodies that do not; no reply is a 5xx,
and every reply is one the schema declares (status code, content type, body).

The app serves the session's world graph, which other tests read, so a fuzzed ingest writes its
entities under a `fuzz ` prefix: the fuzzer still meets every shape of body, but no fuzzed name can
become a word that an exact-phrase link of another test's question would match.
"""

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from reverie.serve.app import api
from testkit.servers import AUTH

pytestmark = pytest.mark.ray

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
# The routes as the code declares them; test_the_live_schema_has_every_route checks the server agrees.
# Bodies that break the schema go to the routes that take a body: the others have nothing to break
# (their path parameters take any string).
ROUTES = sorted((method.upper(), path) for path, methods in api.openapi()["paths"].items() for method in methods)
WITH_BODY = {
    (method.upper(), path)
    for path, methods in api.openapi()["paths"].items()
    for method, op in methods.items()
    if "requestBody" in op
}
CASES = [
    (method, path, mode)
    for method, path in ROUTES
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    if mode == GenerationMode.POSITIVE or (method, path) in WITH_BODY
]
# Examples per route and mode: about a minute in all, since each is a real request through Serve
# and some (a question that links, a generation) run the pipeline or the LLM.
EXAMPLES = 20
PREFIX = "fuzz "


@pytest.fixture(scope="module")
def api_schema(served):
    url = served[0]
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json", headers=AUTH, timeout=60)
    schema.config.update(base_url=url, headers=AUTH)
    return schema


def _namespaced(name):
    return PREFIX + name if isinstance(name, str) and name.strip() else name


def keep_to_the_fuzz_namespace(case) -> None:
    """Prefix the entity names of a fuzzed JSON ingest (blank and non-string names stay as they
    are, so a body meant to be refused is still refused); hold a fuzzed fractal training that
    would start to one epoch of the graphs it names, at most the world (seconds, not minutes)."""
    if case.operation.path == "/v1/fractal/train" and isinstance(case.body, dict):
        if isinstance(case.body.get("epochs"), int) and case.body["epochs"] > 1:
            case.body["epochs"] = 1
        if case.body.get("graphs") is None or isinstance(case.body.get("graphs"), list) and case.body["graphs"]:
            case.body["graphs"] = ["world"] if case.body.get("pairs") is None else []
        return
    if case.operation.path != "/v1/ingest" or not isinstance(case.body, dict):
        return
    for triple in case.body.get("triples") or []:
        if isinstance(triple, dict):
            for side in ("head", "tail"):
                if side in triple:
                    triple[side] = _namespaced(triple[side])
    for entity in case.body.get("entities") or []:
        if isinstance(entity, dict) and "name" in entity:
            entity["name"] = _namespaced(entity["name"])


def test_the_live_schema_has_every_route(api_schema):
    live = sorted(
        (method.upper(), path) for path, methods in api_schema.raw_schema["paths"].items() for method in methods
    )
    assert live == ROUTES


@pytest.mark.parametrize("method, path, mode", CASES, ids=[f"{m} {p} {mode}" for m, p, mode in CASES])
def test_route_keeps_its_schema(api_schema, method, path, mode):
    operation = api_schema[path][method]

    @given(case=operation.as_strategy(mode))
    @settings(
        max_examples=EXAMPLES, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck)
    )
    def fuzz(case):
        keep_to_the_fuzz_namespace(case)
        case.call_and_validate(headers=AUTH, checks=CHECKS, timeout=120)

    fuzz()
