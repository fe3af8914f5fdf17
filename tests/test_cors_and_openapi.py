"""What a browser and an OpenAPI client see of the served app: CORS for localhost origins (the
default `cors_origin_regex`), and the OpenAPI page's bearer scheme and error replies."""

import httpx
import pytest

from testkit.servers import AUTH

pytestmark = pytest.mark.ray

LOCAL = "http://localhost:3000"


def preflight(base_url: str, origin: str) -> httpx.Response:
    """What a browser sends before a cross-origin POST with a key: no Authorization header."""
    return httpx.options(
        f"{base_url}/v1/chat/completions",
        timeout=30,
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )


def test_a_localhost_page_may_call_the_api(base_url):
    answered = preflight(base_url, LOCAL)
    assert answered.status_code == 200 and answered.headers["access-control-allow-origin"] == LOCAL
    assert "POST" in answered.headers["access-control-allow-methods"]
    assert "authorization" in answered.headers["access-control-allow-headers"].lower()
    assert (
        preflight(base_url, "http://127.0.0.1:8080").headers["access-control-allow-origin"] == "http://127.0.0.1:8080"
    )
    reply = httpx.get(f"{base_url}/api/tags", headers={**AUTH, "Origin": LOCAL}, timeout=30)
    assert reply.status_code == 200 and reply.headers["access-control-allow-origin"] == LOCAL
    unauthorised = httpx.get(
        f"{base_url}/api/tags", headers={"Origin": LOCAL}, timeout=30
    )  # the page can read why it failed
    assert unauthorised.status_code == 401 and unauthorised.headers["access-control-allow-origin"] == LOCAL


@pytest.mark.parametrize("origin", ["http://evil.example", "http://localhost.evil.example", "null"])
def test_another_origin_is_refused_without_cors_headers(base_url, origin):
    """Its preflight and its request, even with the key: 403 (tests/test_site_guard.py has the rest)."""
    refused = preflight(base_url, origin)
    assert refused.status_code == 403 and "access-control-allow-origin" not in refused.headers
    reply = httpx.get(f"{base_url}/api/tags", headers={**AUTH, "Origin": origin}, timeout=30)
    assert reply.status_code == 403 and "access-control-allow-origin" not in reply.headers


def test_openapi_declares_the_bearer_scheme_and_the_error_replies(base_url):
    spec = httpx.get(f"{base_url}/openapi.json", headers=AUTH, timeout=30).json()
    assert spec["components"]["securitySchemes"]["bearer"] == {
        **spec["components"]["securitySchemes"]["bearer"],
        "type": "http",
        "scheme": "bearer",
    }
    assert spec["security"] == [{"bearer": []}]

    def error_schema(path: str, method: str, status: int) -> str:
        return spec["paths"][path][method]["responses"][str(status)]["content"]["application/json"]["schema"][
            "$ref"
        ].rsplit("/", 1)[1]

    for path, methods in spec["paths"].items():
        for method, operation in methods.items():
            assert {"401", "403"} <= set(operation["responses"]), (method, path)
            if method == "post":
                assert {"400", "413", "422"} <= set(operation["responses"]), path
    assert error_schema("/v1/graph/entities/{entity_id}", "get", 404) == "Error"
    assert error_schema("/v1/query", "post", 409) == "Error" and error_schema("/v1/query", "post", 413) == "Error"
    assert (
        error_schema("/api/chat", "post", 404) == "OllamaError"
        and error_schema("/api/tags", "get", 401) == "OllamaError"
    )
    assert (
        error_schema("/v1/chat/completions", "post", 404) == "OpenAIError"
        and error_schema("/v1/models", "get", 401) == "OpenAIError"
    )
    assert spec["components"]["schemas"]["Error"]["required"] == ["detail"]
