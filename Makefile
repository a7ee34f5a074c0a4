# segflow: `make run` starts the whole system on the embedded default, `make test` runs every check.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck unit integration bench clean tools

$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -c requirements.lock -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/segflow dev

lint: $(STAMP)
	$(BIN)/ruff check services tests bench
	$(BIN)/ruff format --check services tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

# Debian tools the tests and the benchmark drive (wrk: the load client; prometheus: the server
# `segflow dev --with-monitoring` runs, and promtool, which checks the alert rules). Installed
# where missing and apt can (these machines run as root); where it cannot, the tests that need
# one fail and name it.
DEBIAN_TOOLS := wrk prometheus
tools:
	@for tool in $(DEBIAN_TOOLS); do \
	  command -v $$tool >/dev/null && continue; \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get install -y -q --no-install-recommends $$tool >/dev/null 2>&1 || \
	      { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q --no-install-recommends $$tool >/dev/null 2>&1; } || \
	      echo "could not install $$tool (apt-get install $$tool)"; \
	  else echo "$$tool is missing: install it (Debian: apt-get install $$tool)"; fi; \
	done

# pytest exits 5 when it collected no tests; that is not a failure of the suite. The tests run
# in TEST_WORKERS processes (pytest-xdist), each with its own PostgreSQL and broker: most of a
# test's time is spent waiting on servers, so two workers on two cores nearly halve the run.
TEST_WORKERS ?= 2
test: lint typecheck tools
	$(BIN)/pytest -q -p no:cacheprovider -n $(TEST_WORKERS); rc=$$?; if [ $$rc -eq 5 ]; then exit 0; else exit $$rc; fi

unit: $(STAMP)
	$(BIN)/pytest -q tests/unit

integration: $(STAMP)
	$(BIN)/pytest -q tests/integration

# `make bench QUICK=1`: under 5 minutes on 2 cores; plain `make bench` stores 1M customers (long).
# Writes bench/results/latest.json and prepends a dated table to bench/RESULTS.md.
bench: $(STAMP) tools
	$(BIN)/python -m bench $(if $(QUICK),--quick,)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
