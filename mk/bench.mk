# Multiplier sweep (issue 5): make bench, make bench-train. PY, STAMP, DATA, EPOCHS, SEED, TRAIN_ARGS come from the Makefile.
SWEEP_ALPHAS ?= 0.25,0.5,0.75,1.0
SWEEP_SIZES ?= 128,160,192,224,300
SWEEP_RUNS_DIR ?= runs/sweep
SWEEP_TRAIN_MINUTES ?= 30
BENCH_HOST ?= local
BENCH_ARGS ?=

.PHONY: bench bench-train

bench: $(STAMP)  ## alpha x input-size sweep: params, MACs, sizes, latency, FPS (+ mAP where trained) -> bench/results/<host>/ (BENCH_HOST=local)
	$(PY) scripts/bench_sweep.py --alphas $(SWEEP_ALPHAS) --sizes $(SWEEP_SIZES) --runs-dir $(SWEEP_RUNS_DIR) \
		--host $(BENCH_HOST) $(BENCH_ARGS)

bench-train: $(STAMP) data  ## train every sweep cell on $(DATA) into $(SWEEP_RUNS_DIR)/<cell> (long; SWEEP_TRAIN_MINUTES each)
	@failed=""; \
	while read -r alpha size cell; do \
		echo "== bench-train $$cell (alpha $$alpha, size $$size, at most $(SWEEP_TRAIN_MINUTES) min)"; \
		$(PY) -m train --data $(DATA) --alpha $$alpha --size $$size --epochs $(EPOCHS) --seed $(SEED) \
			--max-train-minutes $(SWEEP_TRAIN_MINUTES) --out $(SWEEP_RUNS_DIR)/$$cell $(TRAIN_ARGS) \
			|| failed="$$failed $$cell"; \
	done < <($(PY) scripts/bench_sweep.py --print-cells --alphas $(SWEEP_ALPHAS) --sizes $(SWEEP_SIZES)); \
	if [ -n "$$failed" ]; then echo "bench-train: failed cells:$$failed"; exit 1; fi; \
	echo "bench-train: all cells trained in $(SWEEP_RUNS_DIR); run 'make bench' to fill in the accuracy columns"
