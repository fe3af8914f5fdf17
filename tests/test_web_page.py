"""The web page in a real browser: headless Chromium (Debian's) driven by Selenium, against the
session's Serve app over HTTP on 127.0.0.1, which runs with an API key. One browser for the module;
each test opens the page afresh in a new tab's session storage."""

from __future__ import annotations

import json

import pytest

from reverie.data.world import NO_FACT_QUESTION, SAMPLE_QUESTION
from testkit.browser import chromium, drop_file, wait_for
from testkit.servers import API_KEY

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def driver(served):
    with chromium() as driver:
        yield driver


def find(driver, css: str):
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, css)


def find_all(driver, css: str):
    from selenium.webdriver.common.by import By

    return driver.find_elements(By.CSS_SELECTOR, css)


def open_page(driver, base_url: str, view: str = "ask", key: str | None = API_KEY):
    """The page in a fresh tab state; with `key`, typed into the dialog the page opens for it."""
    driver.get(f"{base_url}/ui/#{view}")
    driver.execute_script("sessionStorage.clear()")
    driver.get("about:blank")
    driver.get(f"{base_url}/ui/#{view}")
    if key is not None:
        wait_for(driver, lambda d: find(d, "#key-dialog").get_attribute("open") is not None, 30)
        find(driver, "#key-input").send_keys(key)
        find(driver, "#key-save").click()
        wait_for(driver, lambda d: find(d, "#key-dialog").get_attribute("open") is None, 30)


def test_without_the_key_the_page_asks_for_it_once_and_keeps_it_for_the_tab(driver, base_url, http):
    open_page(driver, base_url, key=None)
    wait_for(driver, lambda d: find(d, "#key-dialog").get_attribute("open") is not None, 30)
    assert "API key" in find(driver, "#key-dialog").text
    find(driver, "#key-input").send_keys("not-the-key")
    find(driver, "#key-save").click()
    # the wrong key is refused (401 again) and the dialog comes back
    wait_for(driver, lambda d: find(d, "#key-dialog").get_attribute("open") is not None, 30)
    find(driver, "#key-input").clear()
    find(driver, "#key-input").send_keys(API_KEY)
    find(driver, "#key-save").click()
    entities = http.get("/healthz").json()["graph"]["entities"]
    wait_for(driver, lambda d: str(entities) in find(d, "#graph-stats").text, 30)
    assert driver.execute_script("return sessionStorage.getItem('reverie.apiKey')") == API_KEY
    assert driver.execute_script("return localStorage.length") == 0 and driver.get_cookies() == []
    # a reload in the same tab keeps the key: no dialog
    driver.refresh()
    wait_for(driver, lambda d: str(entities) in find(d, "#graph-stats").text, 30)
    assert find(driver, "#key-dialog").get_attribute("open") is None


def test_ask_see_the_chain_and_tree_then_rate_it_into_the_feedback_dataset(driver, base_url, served):
    from reverie.feedback import FeedbackLog

    open_page(driver, base_url, "ask")
    find(driver, "#question").send_keys(SAMPLE_QUESTION)
    find(driver, "#ask-button").click()
    wait_for(driver, lambda d: find_all(d, "#chain .step") and "rollouts" in find(d, "#tree-summary").text)
    steps = find_all(driver, "#chain .step")
    edge_ids = [s.get_attribute("data-edge-id") for s in steps]
    assert all(edge_ids) and all(e in s.get_attribute("title") for e, s in zip(edge_ids, steps))
    assert steps[0].text.startswith("glass cup") or "glass cup" in steps[0].text
    assert find(driver, "#answer").text.strip() and "confidence" in find(driver, "#confidence").text
    drawn = driver.execute_script("return document.querySelector('#chain-graph canvas') !== null")
    assert drawn, "the chain is drawn in the graph"
    find(driver, "#rate-note").send_keys("the chain is right")
    find(driver, "#rate-good").click()
    wait_for(driver, lambda d: find(d, "#rate-status").get_attribute("data-record-id") or "", 60)
    record_id = find(driver, "#rate-status").get_attribute("data-record-id")
    [record] = [r for r in FeedbackLog(served[1].paths.feedback).records() if r.id == record_id]
    assert (record.rating, record.note, record.question) == ("good", "the chain is right", SAMPLE_QUESTION)
    assert [s.edge_id for s in record.chain.steps] == edge_ids, "the chain rated is the chain on screen"
    assert record.chain.steps[-1].result == record.answer_entity


def test_a_question_the_graph_does_not_answer_is_shown_as_such(driver, base_url):
    open_page(driver, base_url, "ask")
    find(driver, "#question").clear()
    find(driver, "#question").send_keys(NO_FACT_QUESTION)
    find(driver, "#ask-button").click()
    wait_for(driver, lambda d: "does not say" in find(d, "#chain").text)
    assert find(driver, "#answer").text.startswith("The graph has no fact that answers this")
    assert "not sure" in find(driver, "#confidence").text
    assert find_all(driver, "#alternatives .alternative")  # the nearest chains, none of them the answer


def test_a_dropped_file_is_ingested_and_a_malformed_one_shows_its_line(driver, base_url, http):
    before = http.get("/healthz").json()["graph"]
    open_page(driver, base_url, "ingest")
    drop_file(driver, "broken.tsv", "lamp\tmade of\tbrass\nbrass\tis\n")  # line 2 has two fields
    wait_for(driver, lambda d: find_all(d, "#ingest-report .error"), 60)
    assert "broken.tsv:2" in find(driver, "#ingest-report .error").text
    assert http.get("/healthz").json()["graph"] == before, "nothing of a malformed file is written"
    drop_file(driver, "lamps.tsv", "web lamp\tmade of\tglass\n")
    wait_for(driver, lambda d: find_all(d, "#ingest-report .report-table"), 60)
    report = {
        row.find_element("css selector", "th").text: row.find_element("css selector", "td").text
        for row in find_all(driver, "#ingest-report .report-table tr")
    }
    assert (report["source"], report["triples added"], report["entities added"]) == ("lamps.tsv", "1", "1")
    after = http.get("/healthz").json()["graph"]
    assert after["triples"] == before["triples"] + 1
    wait_for(driver, lambda d: f"{after['entities']} entities" in find(d, "#graph-stats").text, 30)


def test_browse_the_graph_search_then_expand(driver, base_url, http):
    open_page(driver, base_url, "graph")
    find(driver, "#entity-search").send_keys("glass cup")
    find(driver, "#entity-search-button").click()
    wait_for(driver, lambda d: find_all(d, "#search-results .hit"), 60)
    hits = find_all(driver, "#search-results .hit")
    assert "glass cup" in hits[0].text
    hits[0].click()
    view = http.get("/v1/graph/entities/glass cup").json()
    facts = len(view["outgoing"]) + len(view["incoming"])
    wait_for(driver, lambda d: len(find_all(d, "#entity-detail .fact")) == facts, 60)
    neighbours = {f["tail"] for f in view["outgoing"]} | {f["head"] for f in view["incoming"]}
    shown = driver.execute_script("return document.querySelector('#graph-view canvas') !== null")
    assert shown and neighbours


def test_a_training_run_is_plotted(driver, base_url, served):
    from reverie.runs import RunLog

    log = RunLog(served[1].home, "policy", "umls")
    for i in range(1, 8):
        log(
            {
                "iteration": i,
                "episode_return_mean": 0.1 * i,
                "env_steps_per_s": 900.0 + i,
                "env_steps": 2000 * i,
                "elapsed": 3.0 * i,
            }
        )
    open_page(driver, base_url, "runs")
    wait_for(driver, lambda d: find_all(d, f'#runs-list .run[data-run-id="{log.id}"]'), 60)
    find(driver, f'#runs-list .run[data-run-id="{log.id}"]').click()
    wait_for(driver, lambda d: find_all(d, "#run-plot svg polyline"), 60)
    points = find(driver, "#run-plot svg polyline").get_attribute("points").split()
    assert len(points) == 7, json.dumps(points)
