# Edge runtime targets (included by the Makefile; PY, STAMP, VENV come from there).
MODEL ?= models/demo_int8.tflite
SOURCE ?= synthetic
ARGS ?=

.PHONY: run bench-pipeline soak bench-postprocess
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
