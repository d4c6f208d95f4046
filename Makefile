# fastvideo-hf: `make demo` runs the main job end to end on tiny offline models; `make test` runs the tests.
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
# The exact versions `make setup` installs, written by `make lock` from an environment where the suite passed.
LOCK := requirements/lock.txt
# The throwaway environment `make check-latest` tries the newest allowed versions in.
LATEST_VENV ?= .venv-latest
# torch as the lock pins it: the CPU build, which pip takes from this machine's disk. check-latest keeps it too,
# since PyPI's newer Linux wheels are CUDA builds of several GB; try another with TORCH_SPEC=torch==X.
TORCH_SPEC ?= $(shell grep '^torch==' $(LOCK))
DEMO_DIR ?= demo_outputs
PYTEST_WORKERS ?= 2

.PHONY: setup demo test bench lint clean check-latest lock

setup: $(VENV)/.installed

# A new lock or new ranges rebuild the environment from scratch, so it holds exactly the lock (nothing left over).
$(VENV)/.installed: pyproject.toml $(LOCK)
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --constraint $(LOCK) -e ".[dev]"
	$(PY) requirements/lock.py check --lock $(LOCK)
	touch $@

# The newest versions pyproject.toml's ranges allow, in a throwaway environment: the suite must pass there, and
# the packages that differ from the lock are listed. A failure here is tomorrow's broken fresh machine: fix the code
# (or bound the range), then `make lock`.
check-latest:
	rm -rf $(LATEST_VENV)
	$(PYTHON) -m venv $(LATEST_VENV)
	$(LATEST_VENV)/bin/python -m pip install --quiet "$(TORCH_SPEC)"
	$(LATEST_VENV)/bin/python -m pip install --quiet --upgrade-strategy eager -e ".[dev]"
	$(LATEST_VENV)/bin/python requirements/lock.py diff --lock $(LOCK)
	$(LATEST_VENV)/bin/python -m pytest -n $(PYTEST_WORKERS) -q tests
	@echo "check-latest: the suite passes with the newest allowed versions (listed above where they differ)"

# Rewrite the lock from the environment check-latest just tested (it runs first, so only a passing one is locked),
# then rebuild .venv from the new lock.
lock: check-latest
	$(LATEST_VENV)/bin/python requirements/lock.py write --lock $(LOCK)
	$(MAKE) setup

# The main job end to end on the tiny model: data -> latents -> LoRA and full finetune -> video + loss curve.
# The data is mixed (landscape, portrait and square clips of 1 to 12 s, still images), so preprocessing buckets it
# by aspect and length and cuts long videos into clips; validation takes the most common video bucket's size.
DEMO_MODEL := $(DEMO_DIR)/tiny-wan-t2v
DEMO_TRAIN_FLAGS := --pretrained_model_name_or_path $(DEMO_MODEL) --dataset_name $(DEMO_DIR)/latents \
	--max_train_steps 80 --train_batch_size 2 --checkpointing_steps 40 --validation_steps 40 \
	--validation_prompt "A red circle moves from left to right over a black background." \
	--validation_num_inference_steps 8 \
	--caption_dropout 0.1 --seed 0
ACCELERATE := $(VENV)/bin/accelerate launch --num_processes 1 --num_machines 1 --mixed_precision no --dynamo_backend no

demo: setup
	rm -rf $(DEMO_DIR)
	$(VENV)/bin/fastvideo-hf demo-data --output $(DEMO_DIR)/raw --num_videos 6 --with_bad_inputs --mixed
	$(VENV)/bin/fastvideo-hf tiny-model --task t2v --output $(DEMO_MODEL)
	$(VENV)/bin/fastvideo-hf preprocess --pretrained_model_name_or_path $(DEMO_MODEL) \
		--data_dir $(DEMO_DIR)/raw --output_dir $(DEMO_DIR)/latents \
		--resolution_buckets 64x96,96x64,80x80 --frame_buckets 1,9,17 --frame_extraction chunk \
		--fps 16 --samples_per_file 4
	$(VENV)/bin/fastvideo-hf inspect $(DEMO_DIR)/latents
	$(ACCELERATE) training_scripts/train_wan_lora.py $(DEMO_TRAIN_FLAGS) \
		--output_dir $(DEMO_DIR)/lora --learning_rate 2e-3 --rank 16 --lora_alpha 16
	$(ACCELERATE) training_scripts/train_wan.py $(DEMO_TRAIN_FLAGS) --output_dir $(DEMO_DIR)/full --learning_rate 1e-3
	$(VENV)/bin/fastvideo-hf generate --pretrained_model_name_or_path $(DEMO_MODEL) --lora $(DEMO_DIR)/lora \
		--prompt "A red circle moves from left to right over a black background." \
		--height 64 --width 96 --num_frames 17 --num_inference_steps 8 --output $(DEMO_DIR)/lora_video.mp4
	$(VENV)/bin/fastvideo-hf plot-loss lora=$(DEMO_DIR)/lora/logs full=$(DEMO_DIR)/full/logs \
		--output $(DEMO_DIR)/loss_curve.png
	# image-to-video on a tiny Wan2.1 I2V model: first-frame latents + CLIP features, then a short LoRA run
	# (one bucket, one clip per video; the still images are skipped: they have no motion to learn)
	$(VENV)/bin/fastvideo-hf tiny-model --task i2v --model wan2.1 --output $(DEMO_DIR)/tiny-wan-i2v
	$(VENV)/bin/fastvideo-hf preprocess --task i2v --pretrained_model_name_or_path $(DEMO_DIR)/tiny-wan-i2v \
		--data_dir $(DEMO_DIR)/raw --output_dir $(DEMO_DIR)/latents-i2v \
		--height 64 --width 96 --num_frames 17 --fps 16 --samples_per_file 4
	$(ACCELERATE) training_scripts/train_wan_lora.py --pretrained_model_name_or_path $(DEMO_DIR)/tiny-wan-i2v \
		--dataset_name $(DEMO_DIR)/latents-i2v --output_dir $(DEMO_DIR)/lora-i2v --max_train_steps 20 \
		--train_batch_size 2 --learning_rate 2e-3 --rank 16 --lora_alpha 16 --validation_steps 1000 --seed 0

test: setup
	$(PY) -m pytest -n $(PYTEST_WORKERS) --durations=10 tests

bench: setup
	$(PY) bench/preprocess.py
	$(PY) bench/train.py
	$(PY) bench/vsa.py

lint: setup
	$(VENV)/bin/ruff check src tests bench training_scripts requirements
	$(VENV)/bin/ruff format --check src tests bench training_scripts requirements

clean:
	rm -rf $(DEMO_DIR) bench/results $(LATEST_VENV)
