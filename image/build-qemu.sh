#!/usr/bin/env bash
# Builds the QEMU test image of the firmware from Debian packages only
# (mmdebstrap), the daemon built from this checkout, and image/rootfs/:
#
#   disk.img   GPT: boot (kernel + initrd), rootA (the firmware, mounted
#              read-only), rootB (the other update slot, empty), data
#              (/data: the daemon's state, its config, and /var)
#   vmlinuz, initrd.img   the same kernel and initrd, for QEMU's -kernel
#   manifest       every package and version in the image
#   prune-report   why each package stays (image/prune.py), or that it went
#
# into $FIELDCAST_IMAGE_CACHE/<hash of every input>/ (default
# /var/cache/fieldcast/qemu), and prints that directory. Inputs unchanged:
# nothing is rebuilt. The equivalent Yocto machine is qemux86-64
# (docs/hil.md); its image can be booted by the same tests.
#
# Usage: image/build-qemu.sh [--test] [--release-binary PATH]
#   --test   add image/test-rootfs/ (the HIL tests' control channel: root on
#            the serial console, vivid loaded at boot, v4l2-ctl); never in
#            a product
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:/usr/sbin:/sbin:$PATH"

SUITE=bookworm
MIRROR=${FIELDCAST_DEBIAN_MIRROR:-http://deb.debian.org/debian}
CACHE=${FIELDCAST_IMAGE_CACHE:-/var/cache/fieldcast/qemu}
# Partition sizes in MiB; each root slot gets the firmware's size plus
# half again (room for an update to grow), at least ROOT_MIN_MB.
BOOT_MB=128
ROOT_MIN_MB=1024
DATA_MB=512

BIN=""
TEST=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --test) TEST=1; shift ;;
    --release-binary) BIN=$2; shift 2 ;;
    *) echo "build-qemu: unknown option $1" >&2; exit 2 ;;
  esac
done
if [[ -z "$BIN" ]]; then
  cargo build --release --locked -p fieldcast-appliance >&2
  BIN=target/release/fieldcastd
fi
CLI=$(dirname "$BIN")/fieldcast

for tool in mmdebstrap sfdisk mkfs.ext4; do
  command -v "$tool" >/dev/null || {
    echo "build-qemu: $tool is missing (scripts/install-deps.sh installs it)" >&2
    exit 1
  }
done

PACKAGES=$(grep -v '^\s*#' image/packages.txt | grep -v '^\s*$' | tr '\n' ',')
PACKAGES="${PACKAGES}linux-image-amd64,initramfs-tools"
# The test image's control channel sets vivid's controls with v4l2-ctl.
[[ $TEST == 1 ]] && PACKAGES="${PACKAGES},v4l-utils"
# Only the GStreamer plugins the firmware uses (gst-plugins.txt) are
# installed; the packages' other plugin files are never unpacked.
GST_DIR=/usr/lib/x86_64-linux-gnu/gstreamer-1.0
PLUGIN_OPTS=(--dpkgopt="path-exclude=$GST_DIR/*")
ELEMENTS=()
while read -r plugin elements; do
  PLUGIN_OPTS+=(--dpkgopt="path-include=$GST_DIR/libgst$plugin.so")
  read -ra els <<< "$elements"
  ELEMENTS+=("${els[@]}")
done < <(grep -v '^\s*#' image/gst-plugins.txt | grep -v '^\s*$')
# Every named package is a root of prune.py's walk.
KEEP=()
for p in ${PACKAGES//,/ }; do KEEP+=(--keep "$p"); done

# Everything that goes into the image decides its name.
KEY=$( {
  echo "$SUITE $MIRROR $BOOT_MB $ROOT_MIN_MB $DATA_MB $PACKAGES test=$TEST"
  sha256sum "$BIN" "$CLI" image/build-qemu.sh image/prune.py image/check-rootfs.sh image/gst-plugins.txt
  find image/rootfs image/test-rootfs -type f -print0 | sort -z | xargs -0 sha256sum
  find image/rootfs image/test-rootfs -printf '%p %m %l\n' | sort
} | sha256sum | cut -c1-16)
OUT="$CACHE/$KEY"
if [[ -f "$OUT/disk.img" && -f "$OUT/vmlinuz" && -f "$OUT/initrd.img" ]]; then
  echo "$OUT"
  exit 0
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/fieldcast-image.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
ROOT="$WORK/root"
echo "build-qemu: building $OUT (Debian $SUITE)" >&2

# The kernel's initrd needs the virtio disk and ext4 to find rootA.
mkdir -p "$WORK/hooks"
cat > "$WORK/hooks/initramfs-modules" <<'HOOK'
#!/bin/sh
set -e
printf 'virtio_pci\nvirtio_blk\nvirtio_net\next4\n' >> "$1/etc/initramfs-tools/modules"
echo 'MODULES=list' > "$1/etc/initramfs-tools/conf.d/fieldcast.conf"
HOOK
chmod +x "$WORK/hooks/initramfs-modules"

mmdebstrap --variant=minbase --mode=root \
  --aptopt='APT::Install-Recommends "false"' \
  --dpkgopt='path-exclude=/usr/share/doc/*' \
  --dpkgopt='path-include=/usr/share/doc/*/copyright' \
  --dpkgopt='path-exclude=/usr/share/man/*' \
  --dpkgopt='path-exclude=/usr/share/locale/*' \
  --setup-hook='mkdir -p "$1/etc/initramfs-tools/conf.d"' \
  --setup-hook="$WORK/hooks/initramfs-modules \"\$1\"" \
  "${PLUGIN_OPTS[@]}" \
  --include="$PACKAGES" \
  --customize-hook="cp -a image/rootfs/. \"\$1/\"" \
  --customize-hook="if [ $TEST = 1 ]; then cp -a image/test-rootfs/. \"\$1/\" && rm \"\$1/README\"; fi" \
  --customize-hook="install -m 0755 $BIN $CLI \"\$1/usr/bin/\"" \
  --customize-hook="python3 image/prune.py \"\$1\" ${KEEP[*]} --file /usr/bin/fieldcastd --file /usr/bin/fieldcast --report $WORK/prune-report" \
  --customize-hook="image/check-rootfs.sh \"\$1\" ${ELEMENTS[*]}" \
  --customize-hook='chroot "$1" systemd-sysusers' \
  --customize-hook='chroot "$1" systemctl enable fieldcastd.service systemd-networkd.service systemd-networkd-wait-online.service' \
  --customize-hook='echo fieldcast > "$1/etc/hostname"' \
  --customize-hook='mkdir -p "$1/data"' \
  --customize-hook='rm -f "$1/etc/machine-id" && touch "$1/etc/machine-id"' \
  --customize-hook='chroot "$1" update-initramfs -u -k all' \
  "$SUITE" "$ROOT" "$MIRROR" >&2

# What went in, before /var (dpkg's database) moves to the data partition.
chroot "$ROOT" dpkg-query -W -f '${Package} ${Version}\n' > "$WORK/manifest"

# The data partition starts with /var from the build and the daemon's
# directory; tmpfiles fills in the rest at first boot.
DATA="$WORK/data"
mkdir -p "$DATA"
cp -a "$ROOT/var" "$DATA/var"
find "$ROOT/var" -mindepth 1 -maxdepth 1 -exec rm -rf {} +
BOOT="$WORK/boot"
mkdir -p "$BOOT"
cp -L "$ROOT/vmlinuz" "$BOOT/vmlinuz"
cp -L "$ROOT/initrd.img" "$BOOT/initrd.img"

USED_MB=$(du -sm "$ROOT" | cut -f1)
ROOT_MB=$(( USED_MB * 3 / 2 ))
(( ROOT_MB < ROOT_MIN_MB )) && ROOT_MB=$ROOT_MIN_MB
echo "build-qemu: firmware ${USED_MB} MiB, root slots ${ROOT_MB} MiB each" >&2
mkfs.ext4 -q -F -L boot -d "$BOOT" "$WORK/boot.img" "${BOOT_MB}M"
mkfs.ext4 -q -F -L rootA -d "$ROOT" "$WORK/rootA.img" "${ROOT_MB}M"
mkfs.ext4 -q -F -L rootB "$WORK/rootB.img" "${ROOT_MB}M"
mkfs.ext4 -q -F -L data -d "$DATA" "$WORK/data.img" "${DATA_MB}M"

# GPT with 1 MiB alignment; partitions named as fstab and the kernel
# command line find them.
DISK="$WORK/disk.img"
TOTAL_MB=$((1 + BOOT_MB + 2 * ROOT_MB + DATA_MB + 1))
truncate -s "${TOTAL_MB}M" "$DISK"
sfdisk -q "$DISK" <<PARTS
label: gpt
start=1MiB, size=${BOOT_MB}MiB, name=boot
size=${ROOT_MB}MiB, name=rootA
size=${ROOT_MB}MiB, name=rootB
size=${DATA_MB}MiB, name=data
PARTS
offset=1
for part in boot rootA rootB data; do
  dd if="$WORK/$part.img" of="$DISK" bs=1M seek="$offset" conv=notrunc,sparse status=none
  size=$(( $(stat -c %s "$WORK/$part.img") / 1048576 ))
  offset=$((offset + size))
done

mkdir -p "$OUT.tmp"
mv "$DISK" "$BOOT/vmlinuz" "$BOOT/initrd.img" "$OUT.tmp/"
printf '%s\n' "$PACKAGES" | tr ',' '\n' > "$OUT.tmp/packages"
mv "$WORK/manifest" "$WORK/prune-report" "$OUT.tmp/"
rm -rf "$OUT"
mv "$OUT.tmp" "$OUT"
# Older images go: each is over a gigabyte. The three newest stay.
ls -1td "$CACHE"/*/ 2>/dev/null | tail -n +4 | xargs -r rm -rf
echo "build-qemu: $(du -sh --apparent-size "$OUT/disk.img" | cut -f1) disk, $(du -sh "$OUT/disk.img" | cut -f1) used" >&2
echo "$OUT"
