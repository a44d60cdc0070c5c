#!/usr/bin/env bash
# An emulated Raspberry Pi: a booted arm64 Debian (trixie = Raspberry Pi OS 13 base, Python 3.13; or bookworm =
# Raspberry Pi OS 12 base, Python 3.11) under qemu-system-aarch64 with a Pi CPU model, Debian's own arm64 kernel
# and initrd, systemd as PID 1 and sshd as a service. SSH and the MJPEG port are forwarded to 127.0.0.1.
#
#   scripts/pi_emulator.sh build    # once per PI_OS and per version of this script; cached outside git
#   scripts/pi_emulator.sh start    # builds if needed, boots, waits for ssh, prints PI=pi@127.0.0.1:<port>
#   scripts/pi_emulator.sh stop     # powers the VM off (ACPI-less: over ssh, then SIGTERM to qemu)
#   scripts/pi_emulator.sh reset    # stop, and drop the VM's disk changes (a freshly flashed Pi)
#   scripts/pi_emulator.sh status   # prints PI=... and exits 0 when running, exits 1 otherwise
#   scripts/pi_emulator.sh ssh CMD  # runs CMD on the emulated Pi over ssh (as the pi user)
#   scripts/pi_emulator.sh env      # the state of the running VM, as shell assignments
#
# Settings (environment): PI_OS=trixie|bookworm (trixie), PI_CPU=cortex-a53|cortex-a72|cortex-a76 (cortex-a72:
# Pi 3 and Zero 2 W | Pi 4 | Pi 5; never qemu's `max`, which has every ISA extension and would hide an illegal
# instruction), PI_SMP (4), PI_RAM_MB (2048), PI_EMULATOR_PORT (ssh: 2222 trixie, 2223 bookworm),
# PI_EMULATOR_MJPEG_PORT (forwarded to the guest's 8080: 8080 trixie, 8081 bookworm), PI_EMULATOR_CACHE
# (~/.cache/edge-pi-emulator). Each release has its own VM (state-<os>/), so both can run at once.
#
# The image is keyed by this script's contents (a change rebuilds it) and holds a raw ext4 disk, the kernel and
# the initrd; each boot writes to a qcow2 overlay over it, kept across stop/start like a real SD card, dropped by
# reset. Emulated speed is not Pi speed. Needs root (mmdebstrap into a chroot run by qemu-user).
set -euo pipefail

SELF="$(readlink -f "$0")"
CACHE="${PI_EMULATOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/edge-pi-emulator}"
PI_OS="${PI_OS:-trixie}"
PI_CPU="${PI_CPU:-cortex-a72}"
PI_SMP="${PI_SMP:-4}"
PI_RAM_MB="${PI_RAM_MB:-2048}"
# Each release has its own VM state and ports, so both can run side by side.
case "$PI_OS" in
    trixie) DEFAULT_PORT=2222 DEFAULT_MJPEG_PORT=8080 ;;
    *) DEFAULT_PORT=2223 DEFAULT_MJPEG_PORT=8081 ;;
esac
PORT="${PI_EMULATOR_PORT:-$DEFAULT_PORT}"
MJPEG_PORT="${PI_EMULATOR_MJPEG_PORT:-$DEFAULT_MJPEG_PORT}"
BOOT_TIMEOUT_S="${PI_EMULATOR_BOOT_TIMEOUT:-600}"
USER_NAME=pi
STATE="$CACHE/state-$PI_OS"

log() { echo "pi-emulator: $*" >&2; }
die() { echo "pi-emulator: error: $*" >&2; exit 1; }

case "$PI_OS" in
    trixie | bookworm) ;;
    *) die "PI_OS=$PI_OS: expected trixie (Raspberry Pi OS 13, Python 3.13) or bookworm (12, Python 3.11)" ;;
esac
case "$PI_CPU" in
    cortex-a53 | cortex-a72 | cortex-a76) ;;
    *) die "PI_CPU=$PI_CPU: expected cortex-a53 (Pi 3, Zero 2 W), cortex-a72 (Pi 4) or cortex-a76 (Pi 5)" ;;
esac
[[ $PI_SMP =~ ^[1-4]$ ]] || die "PI_SMP=$PI_SMP: a Pi has 1 to 4 cores"
[[ $PI_RAM_MB =~ ^[0-9]+$ ]] && ((PI_RAM_MB >= 512)) || die "PI_RAM_MB=$PI_RAM_MB: expected 512 or more (MiB)"

KEY_ID="$(sha256sum "$(dirname "$SELF")/pi_emulator/build_image.sh" | cut -c1-12)"
IMAGE="$CACHE/$PI_OS-$KEY_ID"

BUILDER="$(dirname "$SELF")/pi_emulator/build_image.sh"

build() {
    if [[ -e $IMAGE/ok ]]; then
        log "image already built: $IMAGE"
        return
    fi
    "$BUILDER" "$PI_OS" "$IMAGE"
    # Older images of this OS (an earlier version of the builder) are dead weight.
    local old
    for old in "$CACHE/$PI_OS"-*; do
        [[ $old == "$IMAGE" || $old == *.partial ]] || rm -rf --one-file-system "$old"
    done
}

running_pid() {
    local pid
    [[ -s $STATE/qemu.pid ]] || return 1
    pid=$(cat "$STATE/qemu.pid")
    kill -0 "$pid" 2>/dev/null || return 1
    echo "$pid"
}

print_pi() { echo "PI=$USER_NAME@127.0.0.1:$(cat "$STATE/port")"; }

remote() {
    ssh -i "$STATE/id_ed25519" -p "$(cat "$STATE/port")" -o UserKnownHostsFile="$STATE/known_hosts" \
        -o StrictHostKeyChecking=yes -o BatchMode=yes -o ConnectTimeout=10 -o LogLevel=ERROR \
        "$USER_NAME@127.0.0.1" "$@"
}

start() {
    build
    if running_pid >/dev/null; then
        log "already running ($PI_OS on $(cat "$STATE/cpu"))"
        print_pi
        return
    fi
    mkdir -p "$STATE"
    local overlay="$STATE/overlay.qcow2"
    if [[ ! -e $overlay || $(cat "$STATE/image" 2>/dev/null) != "$IMAGE" ]]; then
        rm -f "$overlay"
        qemu-img create -q -f qcow2 -b "$IMAGE/disk.raw" -F raw "$overlay"
        echo "$IMAGE" >"$STATE/image"
    fi
    cp "$IMAGE/id_ed25519" "$STATE/id_ed25519"
    chmod 600 "$STATE/id_ed25519"
    echo "[127.0.0.1]:$PORT $(cat "$IMAGE/host_key.pub")" >"$STATE/known_hosts"
    echo "$PORT" >"$STATE/port"
    echo "$MJPEG_PORT" >"$STATE/mjpeg_port"
    echo "$PI_CPU" >"$STATE/cpu"
    rm -f "$STATE/qemu.pid"
    : >"$STATE/console.log"
    log "booting $PI_OS on $PI_CPU x$PI_SMP, ${PI_RAM_MB} MiB (emulated: speed is not Pi speed); console: $STATE/console.log"
    qemu-system-aarch64 -machine virt -cpu "$PI_CPU" -smp "$PI_SMP" -m "$PI_RAM_MB" \
        -kernel "$IMAGE/Image" -initrd "$IMAGE/initrd.img" \
        -append "root=LABEL=pi-root rw console=ttyAMA0 net.ifnames=0 quiet" \
        -drive "if=none,id=root,file=$overlay,format=qcow2,discard=unmap" -device virtio-blk-pci,drive=root \
        -netdev "user,id=net0,hostfwd=tcp:127.0.0.1:$PORT-:22,hostfwd=tcp:127.0.0.1:$MJPEG_PORT-:8080" \
        -device virtio-net-pci,netdev=net0 -device virtio-rng-pci \
        -display none -serial "file:$STATE/console.log" -monitor "unix:$STATE/monitor.sock,server,nowait" \
        -pidfile "$STATE/qemu.pid" -daemonize \
        || die "qemu did not start (port $PORT or $MJPEG_PORT in use? set PI_EMULATOR_PORT / PI_EMULATOR_MJPEG_PORT)"
    wait_ssh "$BOOT_TIMEOUT_S"
    print_pi
}

wait_ssh() {
    local deadline=$((SECONDS + $1))
    while ((SECONDS < deadline)); do
        running_pid >/dev/null || { tail -n 30 "$STATE/console.log" >&2; die "qemu exited during boot"; }
        if remote 'systemctl is-system-running --wait >/dev/null 2>&1; true' 2>/dev/null; then
            log "up: systemd running, sshd on 127.0.0.1:$(cat "$STATE/port") (booted in $((SECONDS - deadline + $1)) s)"
            return
        fi
        sleep 3
    done
    tail -n 30 "$STATE/console.log" >&2
    die "no ssh answer on 127.0.0.1:$(cat "$STATE/port") after $1 s (console: $STATE/console.log)"
}

stop() {
    local pid
    if ! pid=$(running_pid); then
        log "not running"
        return
    fi
    remote 'sudo systemctl poweroff' >/dev/null 2>&1 || true
    local i
    for i in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
    if kill -0 "$pid" 2>/dev/null; then
        kill "$pid"
        sleep 2
        kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
    fi
    rm -f "$STATE/qemu.pid"
    log "stopped"
}

reset() {
    stop
    rm -f "$STATE/overlay.qcow2" "$STATE/image"
    log "disk changes dropped: the next start boots a freshly built $PI_OS"
}

case "${1:-}" in
    build) build ;;
    start) start ;;
    stop) stop ;;
    reset) reset ;;
    status) running_pid >/dev/null && print_pi ;;
    ssh) shift; remote "$@" ;;
    env)
        running_pid >/dev/null || exit 1
        echo "PI=$USER_NAME@127.0.0.1:$(cat "$STATE/port")"
        echo "PI_EMULATOR_OS=$PI_OS"
        for f in cpu port mjpeg_port; do echo "PI_EMULATOR_${f^^}=$(cat "$STATE/$f")"; done
        echo "PI_EMULATOR_STATE=$STATE"
        ;;
    *) die "usage: $0 build|start|stop|reset|status|ssh CMD|env (got '${1:-}')" ;;
esac
