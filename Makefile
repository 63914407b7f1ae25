# Two commands do all the set-up: `make run` (the main job) and `make test` (the whole suite).
# Both create the virtual environment on first use and reuse it afterwards.
PYTHON ?= python3
VENV ?= .venv
# Every package is pinned by CONSTRAINTS (the verified set). Which torch build comes with it:
#   TORCH=cpu (default)  torch's CPU-only wheel from PyTorch's own index, TORCH_INDEX (about 190 MB); no CUDA
#                        libraries. Where that index is unreachable (CI: only PyPI) pip says so after a few retries
#                        and the next step takes torch from PyPI or a local wheel.
#   TORCH=cuda           PyPI's default build of the same torch: a 0.5 GB wheel plus the nvidia-* CUDA packages,
#                        triton and cuda-toolkit (about 5.5 GB in all).
# `make TORCH=cuda run ARGS=trainer=gpu` on a GPU box; `make clean-venv` first to switch an existing .venv.
TORCH ?= cpu
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
CONSTRAINTS ?= .ci/constraints-lock.txt
TORCH_VERSION = $(shell sed -n 's/^torch==//p' $(CONSTRAINTS) 2>/dev/null)
PIP_C = $(if $(CONSTRAINTS),-c $(CONSTRAINTS),)
STAMP = $(VENV)/.ssmcast-installed

.PHONY: run test venv lint clean-venv data

$(STAMP): pyproject.toml $(CONSTRAINTS)
	@case "$(TORCH)" in cpu|cuda) ;; *) echo "TORCH must be cpu or cuda, not '$(TORCH)'" >&2; exit 2;; esac
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -qq --upgrade pip
	$(if $(filter cpu,$(TORCH)),$(VENV)/bin/python -m pip install -qq --retries 2 --timeout 15 \
		--index-url $(TORCH_INDEX) "torch$(if $(TORCH_VERSION),==$(TORCH_VERSION),)" \
		|| echo "note: $(TORCH_INDEX) is unreachable; torch comes from the default index below" >&2,)
	$(VENV)/bin/python -m pip install -qq -e '.[dev]' $(PIP_C)
	@$(VENV)/bin/python -c "import torch; print('torch', torch.__version__, '(CUDA build)' if torch.version.cuda else '(CPU build)')"
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

# Download every dataset of the registry into data/ (sha256-verified; data files are never committed).
# Copy from a local folder instead: make data DATA_ARGS="--from ../shared/data"; see data/README.md.
data: $(STAMP)
	$(VENV)/bin/ssmcast data fetch --all $(DATA_ARGS)

# The documentation site (mkdocs.yml; API pages from the docstrings, the notebooks rendered as stored, not run).
# `make docs` serves it with live reload on 127.0.0.1:8000 only; `make docs-build` builds it into site/ in strict
# mode (any warning, e.g. a broken cross-reference or docstring, fails), as CI does.
.PHONY: docs docs-build
# without it mkdocs-material prints a banner about its successor on every run
DOCS_ENV = NO_MKDOCS_2_WARNING=1

docs: $(STAMP)
	$(DOCS_ENV) $(VENV)/bin/mkdocs serve --dev-addr 127.0.0.1:8000

docs-build: $(STAMP)
	$(DOCS_ENV) $(VENV)/bin/mkdocs build --strict
