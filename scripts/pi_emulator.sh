#!/usr/bin/env bash
# An emulated Raspberry Pi: an arm64 Debian 12 (bookworm, Python 3.11) userland run under qemu-user
# (Debian's qemu-user-static via binfmt_misc), with sshd listening on 127.0.0.1 inside a chroot.
#
#   scripts/pi_emulator.sh build    # once; cached in $PI_EMULATOR_CACHE (default .cache/pi-emulator)
#   scripts/pi_emulator.sh start    # builds if needed, starts sshd, prints PI=root@127.0.0.1:<port>
#   scripts/pi_emulator.sh stop     # stops sshd and unmounts /proc, /sys, /dev from the chroot
#   scripts/pi_emulator.sh status   # prints PI=... and exits 0 when running, exits 1 otherwise
#   scripts/pi_emulator.sh ssh CMD  # runs CMD on the emulated Pi over ssh
#
# systemd does not run as PID 1 in a chroot: the deploy detects that and skips the service with a message.
# Emulated speed is not Pi speed. Needs root (debootstrap, chroot, mount).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
CACHE="${PI_EMULATOR_CACHE:-$ROOT/.cache/pi-emulator}"
ROOTFS="$CACHE/rootfs"
PORT="${PI_EMULATOR_PORT:-2222}"
SUITE=bookworm
MIRROR="${PI_EMULATOR_MIRROR:-http://deb.debian.org/debian}"
# What a Raspberry Pi OS Lite image has that matters to the deploy (python3-apt: Ansible's apt module).
PACKAGES=openssh-server,python3,python3-venv,python3-pip,python3-apt,sudo,ca-certificates,procps,iproute2,systemd
KEY="$CACHE/id_ed25519"
PIDFILE=/run/sshd-pi-emulator.pid

log() { echo "pi-emulator: $*" >&2; }
die() { echo "pi-emulator: error: $*" >&2; exit 1; }

[[ $(id -u) -eq 0 ]] || die "needs root (debootstrap, chroot and mount); run it as root or with sudo"

host_packages() {
    local missing=()
    command -v debootstrap >/dev/null || missing+=(debootstrap)
    [[ -x /usr/bin/qemu-aarch64-static ]] || missing+=(qemu-user-static)
    command -v update-binfmts >/dev/null || missing+=(binfmt-support)
    command -v ssh-keygen >/dev/null || missing+=(openssh-client)
    if ((${#missing[@]})); then
        log "installing host packages: ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
}

binfmt() {
    local dir=/proc/sys/fs/binfmt_misc
    [[ -e $dir/register ]] || mount -t binfmt_misc binfmt_misc "$dir" \
        || die "cannot mount binfmt_misc on $dir (a container needs --privileged)"
    if [[ ! -e $dir/qemu-aarch64 ]]; then
        log "registering qemu-aarch64 with binfmt_misc"
        update-binfmts --enable qemu-aarch64 2>/dev/null || true
    fi
    if [[ ! -e $dir/qemu-aarch64 ]]; then
        # F: the kernel opens the interpreter now, so it works inside the chroot without a copy.
        printf '%s' ':qemu-aarch64:M::\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00:\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff:/usr/bin/qemu-aarch64-static:F' \
            >"$dir/register"
    fi
    grep -q '^enabled' "$dir/qemu-aarch64" || die "binfmt_misc entry qemu-aarch64 is not enabled ($dir/qemu-aarch64)"
}

build() {
    if [[ -e $CACHE/rootfs.ok ]]; then
        log "rootfs already built: $ROOTFS"
        return
    fi
    host_packages
    binfmt
    mkdir -p "$CACHE"
    local tmp="$CACHE/rootfs.partial" start=$SECONDS
    unmount_all "$tmp"
    rm -rf --one-file-system "$tmp"
    log "debootstrap $SUITE arm64 into $tmp (several minutes under qemu)"
    debootstrap --arch=arm64 --variant=minbase --include="$PACKAGES" "$SUITE" "$tmp" "$MIRROR" \
        >"$CACHE/debootstrap.log" 2>&1 || { tail -n 30 "$CACHE/debootstrap.log" >&2; die "debootstrap failed (log: $CACHE/debootstrap.log)"; }
    cp /usr/bin/qemu-aarch64-static "$tmp/usr/bin/"
    echo pi-emulator >"$tmp/etc/hostname"
    # No ssh password logins; key only.
    cat >"$tmp/etc/ssh/sshd_config.d/pi-emulator.conf" <<'EOF'
PermitRootLogin prohibit-password
PasswordAuthentication no
UseDNS no
EOF
    chroot "$tmp" /usr/bin/ssh-keygen -A >/dev/null
    rm -f "$KEY" "$KEY.pub"
    ssh-keygen -q -t ed25519 -N '' -C pi-emulator -f "$KEY"
    install -d -m 700 "$tmp/root/.ssh"
    install -m 600 "$KEY.pub" "$tmp/root/.ssh/authorized_keys"
    mv "$tmp" "$ROOTFS"
    date -u +%FT%TZ >"$CACHE/rootfs.ok"
    log "built $ROOTFS in $((SECONDS - start)) s"
}

mount_all() {
    local fs=$1
    mountpoint -q "$fs/proc" || mount -t proc proc "$fs/proc"
    mountpoint -q "$fs/sys" || mount -t sysfs sysfs "$fs/sys"
    mountpoint -q "$fs/dev" || mount --bind /dev "$fs/dev"
    mountpoint -q "$fs/dev/pts" || mount --bind /dev/pts "$fs/dev/pts"
    mkdir -p "$fs/run/sshd"
    cp -L /etc/resolv.conf "$fs/etc/resolv.conf"
    # The emulated Pi sits on this machine's network: trust what this machine trusts (e.g. a proxy's CA),
    # for apt and for pip (whose own certifi bundle would not have it).
    if [[ -s /etc/ssl/certs/ca-certificates.crt ]]; then
        cp /etc/ssl/certs/ca-certificates.crt "$fs/etc/ssl/certs/ca-certificates.crt"
        printf '[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n' >"$fs/etc/pip.conf"
    fi
}

unmount_all() {
    local fs=$1 m
    [[ -d $fs ]] || return 0
    for m in dev/pts dev sys proc; do
        if mountpoint -q "$fs/$m"; then umount "$fs/$m" 2>/dev/null || umount -l "$fs/$m"; fi
    done
}

running_pid() {
    local pid
    [[ -s $ROOTFS$PIDFILE ]] || return 1
    pid=$(cat "$ROOTFS$PIDFILE")
    kill -0 "$pid" 2>/dev/null || return 1
    echo "$pid"
}

port_file() { echo "$CACHE/port"; }

print_pi() { echo "PI=root@127.0.0.1:$(cat "$(port_file)")"; }

start() {
    build
    binfmt
    if running_pid >/dev/null; then
        log "already running"
        print_pi
        return
    fi
    mount_all "$ROOTFS"
    rm -f "$ROOTFS$PIDFILE"
    chroot "$ROOTFS" /usr/sbin/sshd -p "$PORT" -o ListenAddress=127.0.0.1 -o PidFile="$PIDFILE" \
        || die "sshd did not start inside $ROOTFS (port $PORT in use? set PI_EMULATOR_PORT)"
    echo "$PORT" >"$(port_file)"
    # The host key of this rootfs, for an ssh that must not touch ~/.ssh/known_hosts.
    echo "[127.0.0.1]:$PORT $(cut -d' ' -f1,2 "$ROOTFS/etc/ssh/ssh_host_ed25519_key.pub")" >"$CACHE/known_hosts"
    local i
    for i in $(seq 1 60); do
        if remote true 2>/dev/null; then
            log "sshd up on 127.0.0.1:$PORT (emulated arm64: speed is not Pi speed)"
            print_pi
            return
        fi
        sleep 1
    done
    die "sshd started but ssh to 127.0.0.1:$PORT does not answer after 60 s"
}

remote() {
    ssh -i "$KEY" -p "$(cat "$(port_file)")" -o UserKnownHostsFile="$CACHE/known_hosts" \
        -o StrictHostKeyChecking=yes -o BatchMode=yes -o ConnectTimeout=10 root@127.0.0.1 "$@"
}

stop() {
    local pid
    if pid=$(running_pid); then
        kill "$pid"
        for _ in $(seq 1 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
        kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
        log "sshd stopped"
    else
        log "not running"
    fi
    # Whatever else still runs inside the chroot (ssh sessions, a foreground camera loop).
    local proc
    for proc in /proc/[0-9]*; do
        [[ $(readlink "$proc/root" 2>/dev/null) == "$ROOTFS" ]] && kill "${proc#/proc/}" 2>/dev/null
    done
    rm -f "$ROOTFS$PIDFILE"
    unmount_all "$ROOTFS"
}

case "${1:-}" in
    build) build ;;
    start) start ;;
    stop) stop ;;
    status) running_pid >/dev/null && print_pi ;;
    ssh) shift; remote "$@" ;;
    *) die "usage: $0 build|start|stop|status|ssh CMD (got '${1:-}')" ;;
esac
