# The two set-up commands of the README: `make demo` (main job end to end) and `make test`.
# Both create the virtual environment in .venv when it is missing.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
SHARED ?= ../shared
OUT ?= runs/demo

$(BIN)/occtool: pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(BIN)/occtool

venv: $(BIN)/occtool

test: venv
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(BIN)/python -m pytest -q -n 2 --dist loadgroup

demo: venv
	PATH="$(CURDIR)/$(BIN):$$PATH" SHARED=$(SHARED) OUT=$(OUT) bash examples/lfw_masked_protocol.sh

.PHONY: venv test demo
