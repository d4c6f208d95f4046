# fastvideo-hf: `make demo` runs the main job end to end on tiny offline models; `make test` runs the tests.
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
# The CPU build of torch (pip takes it from this machine's disk); an unpinned torch would pull a multi-GB CUDA build.
TORCH_SPEC ?= torch==2.13.0
DEMO_DIR ?= demo_outputs
PYTEST_WORKERS ?= 2

.PHONY: setup demo test bench lint clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@

demo: setup
	rm -rf $(DEMO_DIR)
	$(VENV)/bin/fastvideo-hf demo-data --output $(DEMO_DIR)/raw --num_videos 12 --with_bad_inputs
	$(VENV)/bin/fastvideo-hf tiny-model --task t2v --output $(DEMO_DIR)/tiny-wan-t2v
	$(VENV)/bin/fastvideo-hf preprocess --pretrained_model_name_or_path $(DEMO_DIR)/tiny-wan-t2v \
		--data_dir $(DEMO_DIR)/raw --output_dir $(DEMO_DIR)/latents \
		--height 64 --width 96 --num_frames 17 --fps 16 --samples_per_file 4
	$(VENV)/bin/fastvideo-hf inspect $(DEMO_DIR)/latents

test: setup
	$(PY) -m pytest -n $(PYTEST_WORKERS) --durations=10 tests

bench: setup
	$(PY) bench/preprocess.py

lint: setup
	$(VENV)/bin/ruff check src tests bench training_scripts
	$(VENV)/bin/ruff format --check src tests bench training_scripts

clean:
	rm -rf $(DEMO_DIR) bench/results
