# Two commands do all set-up on a fresh machine:
#   make app    install, then start the app on http://localhost:8501
#   make test   install (test tools and Debian's chromium included), then run the tests
# For editing the app's code:
#   make dev    the app with file watching on: saving a source file reruns open sessions
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PORT   ?= 8501
# The one command line that serves the app (bench/common.py's app_command is the same,
# which tests/test_browser.py checks); every other setting is in .streamlit/config.toml.
SERVE  := $(PY) -m streamlit run streamlit_app.py --server.port $(PORT)

.PHONY: app dev test lint install install-dev browser

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed requirements-dev.txt
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

# Chromium for the browser test, from Debian's packages (Playwright's own download
# cannot work offline). Needs root. Without chromium `make test` fails and says why: a
# green run has run the browser test, unless BTMRI_SKIP_BROWSER=1 opts out of it.
export BTMRI_SKIP_BROWSER
browser:
	@if [ "$(BTMRI_SKIP_BROWSER)" = 1 ]; then \
	  echo "BTMRI_SKIP_BROWSER=1: make installs no chromium, and the browser tests are skipped"; \
	elif ! command -v chromium >/dev/null 2>&1; then \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null); \
	  command -v chromium >/dev/null 2>&1 || { \
	    echo "chromium could not be installed with apt-get (it needs root and Debian's package" \
	         "sources), so the browser test cannot run. Install chromium, or run" \
	         "'make test BTMRI_SKIP_BROWSER=1' to test without the browser." >&2; \
	    exit 1; }; \
	fi

app: install
	$(SERVE)

# Polling stats only the app's own source files; the watchdog watcher would watch the
# whole project folder recursively, .venv included.
dev: install
	@echo "Development server: file watching on (polling the app's source files, rerun on save)"
	$(SERVE) --server.fileWatcherType poll --server.runOnSave true

test: install-dev browser
	$(PY) -m ruff check .
	$(PY) -m pytest -q

lint: install-dev
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
