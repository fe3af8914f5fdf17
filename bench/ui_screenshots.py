"""Screenshots of the web page's views, in headless Chromium, as a new user would see them:
bench/results/ui-{key,ask,graph,ingest,runs}.png, and bench/results/ui.md with how long each step
took in the browser.

A fresh REVERIE_HOME with the built-in world, real training runs logged by `reverie train policy`
(UMLS) and `reverie train tuner` (news headlines), then `reverie serve` with an API key and the
bundled LLM (testkit/serve_process.py), driven by Selenium in Debian's Chromium (testkit/browser.py).

    python -m bench.ui_screenshots [--iterations 6] [--home FOLDER]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from bench.common import RESULTS, fresh_home, write_table
from reverie.data.world import SAMPLE_QUESTION
from testkit.browser import WINDOW, chromium, drop_file, wait_for
from testkit.serve_process import ServeProcess, ingest_world
from testkit.servers import API_KEY

SECOND_QUESTION = "What happens when you drop a rubber ball?"  # asked first: the sample's figures are a warm server's
BROKEN = "lamp\tmade of\tbrass\nbrass\tis\tshiny\nbrass\twhen polished\n"  # line 3 has two fields


def until(driver, condition, timeout: float = 180) -> float:
    """Seconds until `condition(driver)` holds."""
    start = time.perf_counter()
    wait_for(driver, condition, timeout)
    return time.perf_counter() - start


def css(driver, selector: str):
    from selenium.webdriver.common.by import By

    return driver.find_elements(By.CSS_SELECTOR, selector)


def shot(driver, name: str) -> Path:
    """A PNG of the window, made taller first when the view is longer than it."""
    driver.set_window_size(WINDOW[0], max(WINDOW[1], driver.execute_script("return document.body.scrollHeight") + 40))
    time.sleep(0.5)  # the graphs redraw at the new size
    path = RESULTS / f"ui-{name}.png"
    driver.save_screenshot(str(path))
    driver.set_window_size(*WINDOW)
    return path


def train(home: Path, iterations: int) -> None:
    env = {**os.environ, "REVERIE_HOME": str(home), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    for command in (
        ["train", "policy", "--dataset", "umls", "--iterations", str(iterations), "--envs", "128"],
        ["train", "tuner", "--dataset", "news", "--budget", "100", "--iterations", str(iterations)],
    ):
        print("reverie", *command, flush=True)
        subprocess.run([sys.executable, "-m", "reverie.cli", *command], env=env, check=True, stdout=subprocess.DEVNULL)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=6, help="PPO iterations of each training run shown")
    parser.add_argument("--home", type=Path, help="a REVERIE_HOME this script made before: no new world and training")
    args = parser.parse_args()

    from reverie.encoders import TextEncoder

    home = args.home
    if home is None:
        home = fresh_home("ui")
        ingest_world(home, TextEncoder())
        train(home, args.iterations)
    RESULTS.mkdir(parents=True, exist_ok=True)
    rows = []
    server = ServeProcess(home, env={"REVERIE_LLM_BACKENDS": '["local"]'}).start()
    try:
        with chromium() as driver:
            driver.get(f"{server.url}/ui/#ask")
            rows.append(["key dialog shown", until(driver, lambda d: css(d, "#key-dialog[open]"))])
            shot(driver, "key")
            css(driver, "#key-input")[0].send_keys(API_KEY)
            css(driver, "#key-save")[0].click()
            rows.append(
                ["graph stats after the key", until(driver, lambda d: "entities" in css(d, "#graph-stats")[0].text)]
            )

            for label, question in (("first question", SECOND_QUESTION), ("sample question", SAMPLE_QUESTION)):
                field = css(driver, "#question")[0]
                field.clear()
                field.send_keys(question)
                css(driver, "#ask-button")[0].click()
                start = time.perf_counter()
                until(driver, lambda d: css(d, "#answer")[0].text.strip())
                rows.append([f"{label}: first words of the answer", time.perf_counter() - start])
                until(
                    driver, lambda d: css(d, "#chain .step") and "rollouts" in css(d, "#tree-summary")[0].text
                )  # cleared by the click
                rows.append([f"{label}: answer, chain and tree on screen", time.perf_counter() - start])
            css(driver, "#rate-note")[0].send_keys("the chain is the reason")
            css(driver, "#rate-good")[0].click()
            rows.append(
                ["rating saved", until(driver, lambda d: css(d, "#rate-status")[0].get_attribute("data-record-id"))]
            )
            shot(driver, "ask")

            css(driver, "#tab-graph")[0].click()
            css(driver, "#entity-search")[0].send_keys("glass cup")
            css(driver, "#entity-search-button")[0].click()
            rows.append(["search hits", until(driver, lambda d: css(d, "#search-results .hit"))])
            css(driver, "#search-results .hit")[0].click()
            rows.append(["entity expanded", until(driver, lambda d: css(d, "#entity-detail .fact"))])
            facts = len(css(driver, "#entity-detail .fact"))
            driver.execute_script("expandEntity('glass')")  # as a click on its node does
            until(driver, lambda d: len(css(d, "#entity-detail .fact")) != facts)
            time.sleep(1.0)
            shot(driver, "graph")

            css(driver, "#tab-ingest")[0].click()
            drop_file(driver, "lamps.tsv", BROKEN)
            rows.append(["ingest error shown", until(driver, lambda d: css(d, "#ingest-report .error"))])
            shot(driver, "ingest")

            css(driver, "#tab-runs")[0].click()
            rows.append(["runs listed", until(driver, lambda d: len(css(d, "#runs-list .run")) >= 2)])
            css(driver, "#runs-list .run")[-1].click()  # the older run: the policy's
            rows.append(["curve drawn", until(driver, lambda d: css(d, "#run-plot svg polyline"))])
            shot(driver, "runs")
    finally:
        server.close()
    write_table(
        "ui",
        "The web page in headless Chromium",
        "python -m bench.ui_screenshots",
        ["step", "seconds"],
        [[name, f"{seconds:.2f}"] for name, seconds in rows],
        notes="Screenshots: ui-key.png, ui-ask.png, ui-graph.png, ui-ingest.png, ui-runs.png in this folder. "
        "Seconds are wall time in the browser from the click to the element on screen, on this 2-core machine "
        "with the server, its Ray cluster and the bundled LLM sharing the cores.",
    )


if __name__ == "__main__":
    main()
