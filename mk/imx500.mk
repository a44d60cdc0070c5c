# Sony IMX500 (Raspberry Pi AI Camera): a second venv with Sony's toolchain, conversion, and its end-to-end test.
# Sony's converter needs TF 2.15 / Keras 2.15 / Python <= 3.11 and Java 17, so it lives in .venv-imx500, apart
# from .venv (TF 2.21 / Keras 3). See docs/IMX500.md.
IMX500_PYTHON ?= python3.11
IMX500_VENV := .venv-imx500
IMX500_PY := $(IMX500_VENV)/bin/python
IMX500_STAMP := $(IMX500_VENV)/.installed
IMX500_OUT ?= models/imx500
IMX500_CALIBRATION_IMAGES ?= 20
IMX500_ARGS ?=

.PHONY: setup-imx500 convert-imx500 test-imx500 _imx500-java

_imx500-java:
	@command -v java >/dev/null 2>&1 || { \
		echo "imx500: Java 17 is missing (Sony's imxconv-tf runs on it); installing openjdk-17-jre-headless with apt"; \
		if [ "$$(id -u)" = 0 ]; then apt-get install -y --no-install-recommends openjdk-17-jre-headless; \
		else sudo apt-get install -y --no-install-recommends openjdk-17-jre-headless; fi \
		|| { echo "imx500: could not install Java 17; install openjdk-17-jre-headless yourself and rerun"; exit 2; }; }

$(IMX500_STAMP): requirements/imx500.txt | _imx500-java
	@command -v $(IMX500_PYTHON) >/dev/null 2>&1 || { \
		echo "imx500: $(IMX500_PYTHON) not found; Sony's toolchain needs Python <= 3.11 (set IMX500_PYTHON=...)"; exit 2; }
	@test -x $(IMX500_PY) || $(IMX500_PYTHON) -m venv $(IMX500_VENV)
	$(IMX500_PY) -m pip install --quiet --upgrade pip
	$(IMX500_PY) -m pip install --quiet -r requirements/imx500.txt
	@touch $@

setup-imx500: $(IMX500_STAMP)  ## create .venv-imx500 (Python 3.11, TF 2.15, Sony MCT + imxconv-tf; Java 17 via apt if missing)

convert-imx500: $(STAMP) $(IMX500_STAMP) _convert-need-run  ## RUN -> IMX500_OUT/packerOut.zip + labels + intrinsics + memory/accuracy report
	$(PY) -m convert $(RUN) --target imx500 --out $(IMX500_OUT) --data $(DATA) \
		--calibration-images $(IMX500_CALIBRATION_IMAGES) --max-map-drop $(MAX_MAP_DROP) $(IMX500_ARGS)

test-imx500: $(STAMP) $(IMX500_STAMP)  ## end to end: tiny model (alpha 0.25 @ 96) -> packerOut.zip through Sony's converter, timed
	RUN_IMX500_TESTS=1 $(PY) -m pytest -q -s --durations=0 -m imx500 tests/convert/test_imx500.py
