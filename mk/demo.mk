# make demo (issue 5): the whole pipeline on the built-in synthetic data into demo/ in at most ~20 min on 2 cores.
# DATA, NUM_IMAGES, VAL_FRACTION, SEED, RUN, ALPHA, SIZE, EPOCHS, TRAIN_ARGS come from the Makefile; MAX_MAP_DROP and
# CALIBRATION_IMAGES from mk/convert.mk. The demo-only knobs are here, nowhere else.
DEMO_DIR ?= demo
DEMO_FRAMES ?= 300
DEMO_SWEEP_ALPHAS ?= 0.25,0.5
DEMO_SWEEP_SIZES ?= 128,160
DEMO_ARGS ?=

.PHONY: demo

demo: $(STAMP)  ## data -> train (as make train) -> int8 + accuracy table -> edge loop -> demo/ (frames, GIF, reports, sweep plot)
	$(PY) scripts/demo.py --data $(DATA) --num-images $(NUM_IMAGES) --val-fraction $(VAL_FRACTION) --seed $(SEED) --run $(RUN) \
		--alpha $(ALPHA) --size $(SIZE) --epochs $(EPOCHS) --augment $(AUGMENT) \
		--max-train-minutes $(TRAIN_MINUTES) --train-args "$(TRAIN_ARGS)" --out $(DEMO_DIR) \
		--frames $(DEMO_FRAMES) --sweep-alphas $(DEMO_SWEEP_ALPHAS) --sweep-sizes $(DEMO_SWEEP_SIZES) \
		$(if $(CALIBRATION_IMAGES),--calibration-images $(CALIBRATION_IMAGES)) \
		$(if $(MAX_MAP_DROP),--max-map-drop $(MAX_MAP_DROP)) $(DEMO_ARGS)
