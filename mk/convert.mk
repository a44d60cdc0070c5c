# Conversion targets (included by the Makefile; PY, STAMP, RUN, DATA come from there).
QUANT ?= int8
CONVERT_OUT ?= models/demo_$(QUANT).tflite
CALIBRATION_IMAGES ?= 300
MAX_MAP_DROP ?= 1.0
COMPARE ?= float32,float16,dynamic,int8
CONVERT_ARGS ?=

.PHONY: convert convert-builtin convert-rpicam _convert-need-run

_convert-need-run:
	@test -f $(RUN)/best.keras || { echo "no $(RUN)/best.keras: run 'make train' first (or pass RUN=runs/NAME)"; exit 2; }

convert: $(STAMP) _convert-need-run  ## RUN -> CONVERT_OUT (int8) + accuracy table (.accuracy.md/.json); fails if int8 loses > MAX_MAP_DROP mAP points
	$(PY) -m convert $(RUN) --quant $(QUANT) --out $(CONVERT_OUT) --data $(DATA) \
		--calibration-images $(CALIBRATION_IMAGES) --max-map-drop $(MAX_MAP_DROP) --compare $(COMPARE) $(CONVERT_ARGS)

convert-builtin: $(STAMP) _convert-need-run  ## RUN -> models/demo_$(QUANT)_builtin.tflite (+ .labels.txt) for picamera2/pycoral; the file itself is scored and gated
	$(PY) -m convert $(RUN) --quant $(QUANT) --postprocess builtin --out models/demo_$(QUANT)_builtin.tflite \
		--data $(DATA) --calibration-images $(CALIBRATION_IMAGES) --max-map-drop $(MAX_MAP_DROP) $(CONVERT_ARGS)

convert-rpicam: $(STAMP) _convert-need-run  ## RUN -> models/demo_rpicam.tflite (300x300, 10 detections) + rpicam labels + object_detect_tf JSON
	$(PY) -m convert $(RUN) --target rpicam-apps --out models/demo_rpicam.tflite \
		--data $(DATA) --calibration-images $(CALIBRATION_IMAGES) --max-map-drop $(MAX_MAP_DROP) $(CONVERT_ARGS)
