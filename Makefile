# A fresh machine needs two commands: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# The Adult data when it lies beside the checkout, else a generated sample table.
DATA   ?= $(firstword $(wildcard ../shared/data/adult.csv) out/sample.csv)
TARGET ?= $(if $(findstring adult,$(DATA)),income,colour)
# Empty: the command line's default model (generators.DEFAULT_MODEL); `make demo MODEL=tvae` picks another.
MODEL  ?=
OUT    ?= out/demo

.PHONY: setup demo test bench gpu-check clean

setup: $(VENV)/.installed

# torch first, pinned: the CPU wheel on local disk, instead of a CUDA build that other requirements would pull.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

# The whole flow on 2 cores in a few minutes, with the flagship's defaults. A failed gate (exit 3) fails the demo.
demo: setup
	@[ -f "$(DATA)" ] || $(BIN)/python -m tabtwin.pipeline.sample_data "$(DATA)"
	$(BIN)/tabtwin run "$(DATA)" $(if $(MODEL),--model $(MODEL)) --target $(TARGET) \
		--out $(OUT)/runs --cache $(OUT)/cache --registry $(OUT)/registry

test: setup
	$(BIN)/pytest

bench: setup
	bash bench/peer_setup.sh
	bash bench/argn_setup.sh || echo "mostlyai-engine did not install: bench/quality.py records argn-peer as failed" >&2
	$(BIN)/python bench/encoder.py
	$(BIN)/python bench/generators.py
	$(BIN)/python bench/sampling.py
	$(BIN)/python bench/tvae_floor.py
	$(BIN)/python bench/evaluation_time.py
	$(BIN)/python bench/quality.py

# On a machine with an NVIDIA GPU and a CUDA build of torch in .venv: the tests on CUDA, one timed fit per model.
gpu-check:
	bash bench/gpu_check.sh

clean:
	rm -rf $(VENV) out .pytest_cache
