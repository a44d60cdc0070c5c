# Raspberry Pi deploy: the emulated Pi, make deploy/rollback/pi-run/pi-bench/doctor, test-pi.
# PI=user@host[:port] (several separated by spaces: deployed in parallel). See docs/DEPLOY.md.

PI ?=
MODEL ?= models/demo_int8.tflite
MJPEG_HOST ?= 0.0.0.0
MJPEG_PORT ?= 8080
PI_SOURCE ?= picamera2
# tflite: MODEL runs on the Pi's CPU; imx500: the IMX500_OUT folder of make convert-imx500 runs on the AI Camera.
TARGET ?= tflite
SERVICE_ARGS ?=
BENCH_FRAMES ?= 100
ARGS ?=
PI_EMULATOR := scripts/pi_emulator.sh
PI_DRIVER = $(PY) deploy/pi.py

# The emulated Pi: Raspberry Pi OS base release and Pi CPU model (scripts/pi_emulator.sh).
PI_OS ?= trixie
PI_CPU ?= cortex-a72
PI_OS_ALL := trixie bookworm
export PI_OS PI_CPU

.PHONY: pi-emulator pi-emulator-stop pi-emulator-reset deploy rollback pi-run pi-bench pi-url doctor test-pi test-pi-all _pi-need

_pi-need:
	@test -n "$(PI)" || { echo "PI is empty: use PI=user@host[:port] (make pi-emulator prints one)"; exit 2; }

pi-emulator:  ## boot the emulated Pi (PI_OS=trixie|bookworm, PI_CPU=cortex-a53|a72|a76; built once); prints PI=...
	$(PI_EMULATOR) start

pi-emulator-stop:  ## power the emulated Pi off (its disk is kept, like an SD card)
	$(PI_EMULATOR) stop

pi-emulator-reset:  ## power it off and drop its disk changes: the next boot is a freshly flashed Pi
	$(PI_EMULATOR) reset

deploy: $(STAMP) _pi-need  ## deploy edge + MODEL to PI=user@host[:port] [PI="h1 h2"] [SERVICE_ARGS="--fps 10"] [TARGET=imx500]
	$(PI_DRIVER) deploy --pi "$(PI)" --target $(TARGET) --model "$(if $(filter imx500,$(TARGET)),$(IMX500_OUT),$(MODEL))" --mjpeg-host $(MJPEG_HOST) --mjpeg-port $(MJPEG_PORT) --source $(PI_SOURCE) \
		--service-args="$(SERVICE_ARGS)"

rollback: $(STAMP) _pi-need  ## make the previous model current again on PI
	$(PI_DRIVER) rollback --pi "$(PI)"

pi-run: $(STAMP) _pi-need  ## run the camera loop in the foreground on PI over ssh: ARGS="--source synthetic --frames 50"
	$(PI_DRIVER) run --pi "$(PI)" -- $(ARGS)

pi-bench: $(STAMP) _pi-need  ## run the edge loop benchmark on PI; results in bench/results/<host>/
	$(PI_DRIVER) bench --pi "$(PI)" --frames $(BENCH_FRAMES)

pi-url: $(STAMP) _pi-need  ## print the camera stream's URL with its credentials (made by the deploy)
	@$(PI_DRIVER) url --pi "$(PI)" --mjpeg-port $(MJPEG_PORT)

doctor: $(STAMP)  ## check a Pi (PI=...) or this machine: runtime wheel, NumPy ABI, picamera2, camera, governor, heat
	@if [ -n "$(PI)" ]; then $(PI_DRIVER) doctor --pi "$(PI)"; else $(PY) -m edge.doctor; fi

test-pi: $(STAMP)  ## deploy tests on a freshly booted emulated Pi, PI_OS=trixie (default) or bookworm
	RUN_PI_TESTS=1 $(PY) -m pytest -q -s --durations=0 -m pi tests/deploy

test-pi-all: $(STAMP)  ## test-pi for every supported release in turn (trixie, bookworm)
	@set -e; for os in $(PI_OS_ALL); do echo "== test-pi PI_OS=$$os"; $(MAKE) --no-print-directory test-pi PI_OS=$$os; done
