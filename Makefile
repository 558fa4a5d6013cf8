# One-command entry points; each sets up its own .venv from nothing (python3 >= 3.11 and pip are all it needs).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install demo test test-fast lint clean

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[dev,postgres]'
	touch $(STAMP)

install: $(STAMP)

# The main job on the offline default: a small sweep that shows the method (Ray Tune + Optuna + MLflow in
# sqlite:///mlruns.db; sweeps/presets/demo.yaml), then the Pareto report of that sweep in reports/demo.
demo: $(STAMP)
	$(PY) sweeps/decathlon.py --preset demo
	$(PY) -m analysis.report --tracking-uri sqlite:///mlruns.db --experiment decathlon --out reports/demo

lint: $(STAMP)
	$(VENV)/bin/ruff check .

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/pytest -q

test-fast: $(STAMP)
	$(VENV)/bin/pytest -q -m "not slow and not cluster"

clean:
	rm -rf $(VENV) runs reports mlruns.db mlruns ray_results optuna_journal.log .pytest_cache
