# qwq — the two commands: `make up` (run it) and `make test` (check it). Works from a fresh clone on Debian.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# Debian packages the test suite runs for real: an exporter to scrape, a Docker-API engine (podman) and what
# test images are built from, a DNS server, databases, a browser for dashboard tests and screenshots.
TEST_DEBS := prometheus-node-exporter podman runc busybox-static dnsmasq-base postgresql mariadb-server \
	redis-server chromium chromium-driver
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: up test install install-test test-deps lint unit bench screenshot clean

up: install  ## create the venv, install qwq, run it on the default store
	$(BIN)/qwq up

test: install-test test-deps lint  ## install test services and run the whole suite
	$(BIN)/pytest

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(BIN)/pip install --quiet -e '.[test]'
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $@

test-deps:  ## Debian packages the tests start (skipped when already there)
	@missing=$$(for p in $(TEST_DEBS); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing $$missing"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

lint: install-test
	$(BIN)/ruff check .
	$(BIN)/mypy

unit: install-test  ## fast tests only
	$(BIN)/pytest -m "not slow and not service"

bench: install  ## the benchmarks; each prints its figures
	$(BIN)/python benchmarks/bench_ingest.py
	$(BIN)/python benchmarks/bench_query.py
	$(BIN)/python benchmarks/bench_overhead.py
	$(BIN)/python benchmarks/bench_containers.py
	$(BIN)/python benchmarks/bench_sites.py
	$(BIN)/python benchmarks/bench_rules.py
	$(BIN)/python benchmarks/bench_alert_noise.py
	$(BIN)/python benchmarks/bench_forecast.py
	$(BIN)/python benchmarks/bench_anomaly.py
	$(BIN)/python benchmarks/eval_forecast.py
	$(BIN)/python benchmarks/eval_detection.py

screenshot: install  ## regenerate docs/dashboard.png (needs chromium)
	$(BIN)/python docs/screenshot.py docs/dashboard.png

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build *.egg-info
