#!/usr/bin/env bash
# Builds the emulated Pi's image for scripts/pi_emulator.sh: build_image.sh OS OUT_DIR
#
# OUT_DIR gets disk.raw (ext4, label pi-root), Image + initrd.img (Debian's linux-image-arm64), id_ed25519 (the
# key the pi user and root accept), host_key.pub, packages.txt and, last, `ok`. The image is keyed by this
# file's contents, so any change here rebuilds it. Needs root: mmdebstrap into a chroot run by qemu-user.
set -euo pipefail

PI_OS=$1
IMAGE=$2
MIRROR="${PI_EMULATOR_MIRROR:-http://deb.debian.org/debian}"
# The build's own arm64 code runs on a Pi CPU model too (never qemu's `max`).
BUILD_CPU=cortex-a72
DISK_SIZE=8G
USER_NAME=pi

log() { echo "pi-emulator: $*" >&2; }
die() { echo "pi-emulator: error: $*" >&2; exit 1; }

[[ $(id -u) -eq 0 ]] || die "building the image needs root (mmdebstrap, chroot); run it as root or with sudo"

# What a Raspberry Pi OS Lite image has that matters to the deploy (python3-apt: Ansible's apt module), plus
# Debian's kernel for qemu's `virt` machine. python3-venv, python3-pip and python3-numpy are left to the deploy.
PACKAGES=(
    systemd-sysv udev dbus libpam-systemd linux-image-arm64 initramfs-tools
    openssh-server sudo python3 python3-apt ca-certificates procps iproute2 netbase less
)

host_packages() {
    local missing=()
    command -v mmdebstrap >/dev/null || missing+=(mmdebstrap)
    command -v arch-test >/dev/null || missing+=(arch-test)
    command -v eatmydata >/dev/null || missing+=(eatmydata)
    [[ -x /usr/bin/qemu-aarch64-static ]] || missing+=(qemu-user-static)
    command -v qemu-system-aarch64 >/dev/null || missing+=(qemu-system-arm)
    command -v qemu-img >/dev/null || missing+=(qemu-utils)
    command -v update-binfmts >/dev/null || missing+=(binfmt-support)
    command -v ssh-keygen >/dev/null || missing+=(openssh-client)
    command -v mkfs.ext4 >/dev/null || missing+=(e2fsprogs)
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
    [[ -e $dir/qemu-aarch64 ]] || update-binfmts --enable qemu-aarch64 2>/dev/null || true
    if [[ ! -e $dir/qemu-aarch64 ]]; then
        # F: the kernel opens the interpreter now, so it works inside the chroot without a copy.
        printf '%s' ':qemu-aarch64:M::\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00:\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff:/usr/bin/qemu-aarch64-static:F' \
            >"$dir/register"
    fi
    grep -q '^enabled' "$dir/qemu-aarch64" || die "binfmt_misc entry qemu-aarch64 is not enabled ($dir/qemu-aarch64)"
}

# Debian's arm64 vmlinuz may be an EFI zboot image (PE header + compressed Image) that qemu 7.2's -kernel
# cannot load: unpack it to the plain Image.
unpack_kernel() {
    python3 - "$1" "$2" <<'EOF'
import gzip, lzma, struct, sys
data = open(sys.argv[1], "rb").read()
if data[:2] == b"MZ" and data[4:8] == b"zimg":
    offset, size = struct.unpack_from("<II", data, 8)
    kind = data[24:32].rstrip(b"\0").decode()
    payload = data[offset : offset + size]
    if kind == "gzip":
        data = gzip.decompress(payload)
    elif kind in ("xzkern", "lzma"):
        data = lzma.decompress(payload)
    else:
        sys.exit(f"vmlinuz: EFI zboot payload compressed with {kind}: not supported here")
elif data[:2] == b"\x1f\x8b":
    data = gzip.decompress(data)
open(sys.argv[2], "wb").write(data)
EOF
}

unmount_under() {
    local m
    for m in $(awk -v d="$1" 'index($2, d) == 1 {print $2}' /proc/mounts | sort -r); do umount -l "$m"; done
}

build() {
    host_packages
    binfmt
    mkdir -p "$(dirname "$IMAGE")"
    local tmp="$IMAGE.partial" start=$SECONDS
    unmount_under "$tmp"
    rm -rf --one-file-system "$tmp"
    mkdir -p "$tmp"
    local rootfs="$tmp/rootfs"
    log "mmdebstrap $PI_OS arm64 (under qemu-user with QEMU_CPU=$BUILD_CPU; ~10-15 min on 2 cores), log: $tmp/mmdebstrap.log"
    # eatmydata: no fsync per package (the image is written once); it is not left in the image.
    QEMU_CPU="$BUILD_CPU" mmdebstrap --arch=arm64 --variant=minbase --mode=root --format=directory \
        --include="$(
            IFS=,
            echo "${PACKAGES[*]}"
        )" \
        --hook-dir=/usr/share/mmdebstrap/hooks/eatmydata \
        --setup-hook='mkdir -p "$1/etc/dpkg/dpkg.cfg.d"' \
        --setup-hook='printf "path-exclude=/usr/share/man/*\npath-exclude=/usr/share/doc/*\npath-include=/usr/share/doc/*/copyright\npath-exclude=/usr/share/locale/*\n" >"$1/etc/dpkg/dpkg.cfg.d/01-pi-emulator-nodoc"' \
        --skip=cleanup/apt/lists \
        "$PI_OS" "$rootfs" "deb $MIRROR $PI_OS main" "deb $MIRROR $PI_OS-updates main" \
        "deb http://security.debian.org/debian-security $PI_OS-security main" \
        >"$tmp/mmdebstrap.log" 2>&1 || {
        unmount_under "$tmp" tail -n 40 "$tmp/mmdebstrap.log" >&2; die "mmdebstrap failed (log: $tmp/mmdebstrap.log)"; }
    ssh-keygen -q -t ed25519 -N '' -C pi-emulator -f "$tmp/id_ed25519"
    configure_rootfs "$rootfs" "$tmp/id_ed25519"
    local vmlinuz initrd
    vmlinuz=$(ls "$rootfs"/boot/vmlinuz-* | sort -V | tail -n 1)
    initrd=$(ls "$rootfs"/boot/initrd.img-* | sort -V | tail -n 1)
    unpack_kernel "$vmlinuz" "$tmp/Image"
    cp "$initrd" "$tmp/initrd.img"
    log "writing the ext4 disk image ($DISK_SIZE, sparse)"
    mkfs.ext4 -q -F -L pi-root -E root_owner=0:0 -d "$rootfs" "$tmp/disk.raw" "$DISK_SIZE"
    cut -d' ' -f1,2 "$rootfs/etc/ssh/ssh_host_ed25519_key.pub" >"$tmp/host_key.pub"
    chroot "$rootfs" dpkg-query -W -f='${Package} ${Version}\n' >"$tmp/packages.txt"
    rm -rf --one-file-system "$rootfs"
    rm -rf "$IMAGE"
    mv "$tmp" "$IMAGE"
    date -u +%FT%TZ >"$IMAGE/ok"
    log "built $IMAGE in $((SECONDS - start)) s"
}

configure_rootfs() {
    local fs=$1
    echo "pi-emulator" >"$fs/etc/hostname"
    printf '127.0.0.1\tlocalhost\n127.0.1.1\tpi-emulator\n::1\tlocalhost ip6-localhost ip6-loopback\n' >"$fs/etc/hosts"
    echo "LABEL=pi-root / ext4 defaults,noatime 0 1" >"$fs/etc/fstab"
    # Network: qemu's user-mode network gives DHCP and a DNS forwarder at 10.0.2.3.
    cat >"$fs/etc/systemd/network/10-wired.network" <<'EOF'
[Match]
Name=en* eth*

[Network]
DHCP=ipv4
EOF
    rm -f "$fs/etc/resolv.conf"
    echo "nameserver 10.0.2.3" >"$fs/etc/resolv.conf"
    chroot "$fs" systemctl enable systemd-networkd.service ssh.service >/dev/null 2>&1
    # Nothing in the background that takes the dpkg lock or the CPU in the middle of a test.
    chroot "$fs" systemctl mask apt-daily.timer apt-daily-upgrade.timer man-db.timer e2scrub_all.timer \
        fstrim.timer systemd-networkd-wait-online.service >/dev/null 2>&1
    # The deploy user: a Raspberry Pi OS-style `pi` with passwordless sudo and the video group.
    chroot "$fs" useradd --create-home --shell /bin/bash --groups sudo,video "$USER_NAME"
    echo "$USER_NAME ALL=(ALL) NOPASSWD: ALL" >"$fs/etc/sudoers.d/010_pi-nopasswd"
    chmod 440 "$fs/etc/sudoers.d/010_pi-nopasswd"
    cat >"$fs/etc/ssh/sshd_config.d/pi-emulator.conf" <<'EOF'
PermitRootLogin prohibit-password
PasswordAuthentication no
UseDNS no
EOF
    local key=$2 home
    for home in "/home/$USER_NAME" /root; do
        install -d -m 700 "$fs$home/.ssh"
        install -m 600 "$key.pub" "$fs$home/.ssh/authorized_keys"
    done
    chroot "$fs" chown -R "$USER_NAME:$USER_NAME" "/home/$USER_NAME/.ssh"
    # This workplace reaches package registries through a TLS-inspecting proxy: the guest trusts what the host
    # trusts (apt uses the system store; pip needs to be told, its own certifi bundle would not have it).
    if [[ -s /etc/ssl/certs/ca-certificates.crt ]]; then
        cp /etc/ssl/certs/ca-certificates.crt "$fs/usr/local/share/ca-certificates/host-trust.crt"
        chroot "$fs" update-ca-certificates >/dev/null 2>&1 || true
        printf '[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n' >"$fs/etc/pip.conf"
    fi
    chroot "$fs" ssh-keygen -A >/dev/null
    rm -f "$fs"/etc/ssh/ssh_host_{rsa,ecdsa}_key{,.pub}
}


build
