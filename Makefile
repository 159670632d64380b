# A fresh machine needs two commands: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# The Adult data when it lies beside the checkout, else a generated sample table.
DATA   ?= $(firstword $(wildcard ../shared/data/adult.csv) out/sample.csv)
OUT    ?= out/demo

.PHONY: setup demo test bench clean

setup: $(VENV)/.installed

# torch first, pinned: the CPU wheel on local disk, instead of a CUDA build that other requirements would pull.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

demo: setup
	@[ -f "$(DATA)" ] || $(BIN)/python -m pipeline.sample_data "$(DATA)"
	$(BIN)/tabtwin schema "$(DATA)" --out "$(OUT)/metadata.json"
	$(BIN)/tabtwin encode "$(DATA)" --metadata "$(OUT)/metadata.json" --out "$(OUT)"

test: setup
	$(BIN)/pytest

bench: setup
	$(BIN)/python bench/encoder.py

clean:
	rm -rf $(VENV) out .pytest_cache
