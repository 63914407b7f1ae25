# Two commands do all the set-up: `make run` (the main job) and `make test` (the whole suite).
# Both create the virtual environment on first use and reuse it afterwards.
PYTHON ?= python3
VENV ?= .venv
# CPU machines and CI pin torch to the local CPU wheel; on a GPU box use `make CONSTRAINTS= ...`
# (or pip install -e '.[dev]' yourself) to get PyPI's CUDA build.
CONSTRAINTS ?= .ci/constraints-lock.txt
PIP_C = $(if $(CONSTRAINTS),-c $(CONSTRAINTS),)
STAMP = $(VENV)/.ssmcast-installed

.PHONY: run test venv lint clean-venv

$(STAMP): pyproject.toml $(CONSTRAINTS)
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -qq --upgrade pip
	$(VENV)/bin/python -m pip install -qq -e '.[dev]' $(PIP_C)
	touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	OMP_WAIT_POLICY=PASSIVE $(VENV)/bin/ssmcast train $(ARGS)

test: $(STAMP)
	OMP_WAIT_POLICY=PASSIVE $(VENV)/bin/python -m pytest -n 2 -q --nbmake tests notebooks $(PYTEST_ARGS)
	$(VENV)/bin/ruff check ssmcast tests benchmarks

lint: $(STAMP)
	$(VENV)/bin/ruff check ssmcast tests benchmarks

clean-venv:
	rm -rf $(VENV)
