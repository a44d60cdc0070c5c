# Raspberry Pi deploy (issue 5): the emulated arm64 Pi, make deploy/rollback/pi-run/pi-bench/doctor, test-pi.
# PI=user@host[:port] (several separated by spaces: deployed in parallel). See docs/DEPLOY.md.

PI ?=
MODEL ?= models/demo_int8.tflite
MJPEG_PORT ?= 8080
PI_SOURCE ?= picamera2
BENCH_FRAMES ?= 100
ARGS ?=
PI_EMULATOR := scripts/pi_emulator.sh
PI_DRIVER = $(PY) deploy/pi.py
PI_REMOTE_ROOT := /opt/edge

.PHONY: pi-emulator pi-emulator-stop deploy rollback pi-run pi-bench doctor test-pi _pi-need

_pi-need:
	@test -n "$(PI)" || { echo "PI is empty: use PI=user@host[:port] (make pi-emulator prints one)"; exit 2; }

pi-emulator:  ## build (once, cached in .cache/pi-emulator) and start the emulated arm64 Pi; prints PI=...
	$(PI_EMULATOR) start

pi-emulator-stop:  ## stop the emulated Pi's sshd and unmount its chroot
	$(PI_EMULATOR) stop

deploy: $(STAMP) _pi-need  ## deploy edge + MODEL to PI=user@host[:port] [PI="h1 h2"] with Ansible
	$(PI_DRIVER) deploy --pi "$(PI)" --model "$(MODEL)" --mjpeg-port $(MJPEG_PORT) --source $(PI_SOURCE)

rollback: $(STAMP) _pi-need  ## make the previous model current again on PI
	$(PI_DRIVER) rollback --pi "$(PI)"

pi-run: $(STAMP) _pi-need  ## run the camera loop in the foreground on PI over ssh: ARGS="--source synthetic --frames 50"
	$(PI_DRIVER) run --pi "$(PI)" -- $(ARGS)

pi-bench: $(STAMP) _pi-need  ## run the edge loop benchmark on PI; results in bench/results/<host>/
	$(PI_DRIVER) bench --pi "$(PI)" --frames $(BENCH_FRAMES)

doctor: $(STAMP)  ## check a Pi (PI=...) or this machine: runtime wheel, NumPy ABI, picamera2, camera, governor, heat
	@if [ -n "$(PI)" ]; then $(PI_DRIVER) doctor --pi "$(PI)"; else $(PY) -m edge.doctor; fi

test-pi: $(STAMP)  ## deploy tests against the emulated Pi (builds it if needed; slow the first time)
	RUN_PI_TESTS=1 $(PY) -m pytest -q -m pi tests/deploy
