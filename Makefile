# Fresh-machine entry points: `make demo` (set up + run the main job) and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.setup-stamp

.PHONY: setup demo test lint clean

setup: $(STAMP)

$(STAMP): requirements.txt requirements-nodeps.txt setup.py setup.cfg package.xml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "setup needs $(PYTHON) (the ROS 2 Kilted wheels are built for CPython 3.11)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip "setuptools>=70" wheel
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps -r requirements-nodeps.txt
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	@test -x $(BIN)/depth_node && test -x $(BIN)/depth-ros
	touch $(STAMP)

demo: setup
	$(BIN)/depth-ros demo --out out/demo

test: setup
	$(BIN)/python -m pytest -q tests

lint: setup
	$(BIN)/ruff check depth_ros tests launch

clean:
	rm -rf $(VENV) out build install log
