# Every target bootstraps .venv idempotently: the stamp file is rebuilt only when
# pyproject.toml changes, so repeated `make test` does not reinstall anything.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEMO_DB := datasets/demo.duckdb

.PHONY: demo test bench lint clean browser

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

$(DEMO_DB): | $(STAMP)
	$(BIN)/volreplay synth --db $(DEMO_DB) --scale small --hours 2 --seed 7

demo: $(STAMP) $(DEMO_DB)
	$(BIN)/volreplay demo --db $(DEMO_DB)

# The report's browser test needs Chromium: install Debian's where we can (root with apt-get,
# as in CI); elsewhere the test skips and says why.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing chromium for the browser test"; \
	    apt-get update -qq >/dev/null && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null \
	      || echo "chromium install failed: the browser test will skip"; \
	  else echo "chromium missing and not root: the browser test will skip"; fi; }

test: $(STAMP) browser
	$(BIN)/python -m pytest -q -m "not slow"

bench: $(STAMP)
	$(BIN)/volreplay bench

lint: $(STAMP)
	$(BIN)/ruff check replay calibration strategies hydra_plugins tests bench

clean:
	rm -rf $(VENV) $(DEMO_DB) .pytest_cache
