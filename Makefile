# One-command entry points; each sets up its own .venv from nothing (python3 >= 3.11 and pip are all it needs).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install system-deps demo ui test test-fast lint clean

SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[dev,postgres,ui,export]'
	touch $(STAMP)

install: $(STAMP)

# The main job on the offline default: a small sweep that shows the method (Ray Tune + Optuna + MLflow in
# sqlite:///mlruns.db; sweeps/presets/demo.yaml), then the Pareto report of that sweep in reports/demo.
demo: $(STAMP)
	$(PY) sweeps/decathlon.py --preset demo
	$(PY) -m analysis.report --tracking-uri sqlite:///mlruns.db --experiment decathlon --out reports/demo

# What users see: the MLflow UI (the experiment's runs table) and optuna-dashboard on the local stores, on
# 127.0.0.1; prints the URLs, Ctrl-C stops both. UI_ARGS passes flags, e.g. UI_ARGS='--mlflow-port 0'.
ui: $(STAMP)
	$(PY) -m analysis.ui $(UI_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .

# What the tests start besides Python: PostgreSQL's server (Debian's package; run as its own user) and iproute2 (the
# rehearsal's network namespaces) for the cluster tests; Chromium and its driver for the browser tests (Selenium
# drives /usr/bin/chromium; it cannot download a browser here). Installed only when missing.
system-deps:
	@{ command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; } && command -v ip >/dev/null || \
	  { $(SUDO) apt-get update -q && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends postgresql iproute2; }
	@{ [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; } || \
	  { $(SUDO) apt-get update -q && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q chromium chromium-driver; }

# PYTHONFAULTHANDLER: a native crash prints every thread's Python stack, even at interpreter exit
test: $(STAMP) system-deps
	$(VENV)/bin/ruff check .
	PYTHONFAULTHANDLER=1 $(VENV)/bin/pytest -q

test-fast: $(STAMP)
	$(VENV)/bin/pytest -q -m "not slow and not cluster"

clean:
	rm -rf $(VENV) runs reports mlruns.db mlruns.db.lock mlruns ray_results optuna_journal.log .pytest_cache .services .rehearsal
