# Edge runtime targets (included by the Makefile; PY, STAMP, VENV come from there).
MODEL ?= models/demo_int8.tflite
SOURCE ?= synthetic
ARGS ?=

.PHONY: run bench-pipeline soak bench-postprocess display display-venv
DISPLAY_VENV := .venv-display
DISPLAY_STAMP := $(DISPLAY_VENV)/.installed

# OpenCV's GUI build and the headless one both install `cv2`: the window gets its own small environment.
$(DISPLAY_STAMP): requirements/display.txt
	@test -x $(DISPLAY_VENV)/bin/python || $(PYTHON) -m venv $(DISPLAY_VENV)
	$(DISPLAY_VENV)/bin/python -m pip install --quiet -r requirements/display.txt
	@touch $@

display-venv: $(DISPLAY_STAMP)  ## .venv-display: the edge runtime with OpenCV's GUI build (no TensorFlow), for --display

display: $(DISPLAY_STAMP)  ## run MODEL on SOURCE in a desktop window (needs DISPLAY; q or Esc quits); ARGS=... for more flags
	$(DISPLAY_VENV)/bin/python -m edge run --model $(MODEL) --source $(SOURCE) --display $(ARGS)
run: $(STAMP)  ## run MODEL on SOURCE (default: demo model, synthetic camera) with live stats; ARGS=... for more flags
	$(PY) -m edge run --model $(MODEL) --source $(SOURCE) $(ARGS)

BENCH_VIDEO ?= bench/pipeline_640x480.mp4
BENCH_THREADS ?= 1

bench-pipeline: $(STAMP)  ## interpreter-only vs end-to-end FPS on a 640x480 mp4 (BENCH_VIDEO, written if missing), BENCH_THREADS=1 (bench/results/)
	$(PY) scripts/bench_pipeline.py --model $(MODEL) --video $(BENCH_VIDEO) --threads $(BENCH_THREADS)

soak: $(STAMP)  ## 10,000 frames through the pipeline, RSS growth after warm-up (bench/results/)
	$(PY) scripts/soak.py --model $(MODEL)

bench-postprocess: $(STAMP)  ## decode + NMS on an SSD300-sized output vs OpenCV's NMSBoxesBatched (bench/results/)
	$(PY) scripts/bench_postprocess.py
