# Two entry points: `make run` (the daemon on the embedded default) and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run test lint bench check clean system-deps

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@ $(VENV)/.installed

run: $(VENV)/.installed
	mkdir -p var
	$(BIN)/kpimon run -c config.example.yaml

check: $(VENV)/.installed
	$(BIN)/kpimon check -c config.example.yaml

# The suite runs the real Prometheus, promtool, Alertmanager and PostgreSQL
# (Debian's packages); tests start their own servers on loopback ports.
system-deps:
	@command -v prometheus >/dev/null && command -v promtool >/dev/null \
	  && command -v prometheus-alertmanager >/dev/null \
	  && ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { \
	  $(SUDO) apt-get update -q && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends \
	    prometheus prometheus-alertmanager postgresql; }

test: $(VENV)/.installed-dev system-deps
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

bench: $(VENV)/.installed-dev
	$(BIN)/python -m bench
	$(BIN)/python -m bench.ingest
	$(BIN)/python -m bench.notify
	$(BIN)/python -m bench.nab

clean:
	rm -rf $(VENV) var build *.egg-info
