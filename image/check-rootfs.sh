#!/usr/bin/env bash
# Checks a firmware root file system after prune.py: every GStreamer
# element the firmware uses loads, the daemon links, and no GUI library is
# left. Fails naming what is wrong.
#
# Usage: image/check-rootfs.sh ROOT ELEMENT...
set -euo pipefail
ROOT=$1
shift
fail=0

# Elements: loaded by GStreamer itself, in the image, with a registry of
# its own that does not stay behind.
REG=/tmp/fieldcast-check-registry.bin
missing=()
for el in "$@"; do
  # (not --exists: that also wants the plugin at GStreamer's version,
  # which libnice's plugin is not)
  chroot "$ROOT" env GST_REGISTRY=$REG gst-inspect-1.0 "$el" > /dev/null 2>&1 || missing+=("$el")
done
rm -f "$ROOT$REG"
if ((${#missing[@]})); then
  echo "check-rootfs: GStreamer elements missing from the image: ${missing[*]}" >&2
  for el in "${missing[@]}"; do
    chroot "$ROOT" env GST_REGISTRY=$REG GST_DEBUG=2 gst-inspect-1.0 "$el" 2>&1 | tail -n 5 >&2 || true
  done
  ls "$ROOT/usr/lib/x86_64-linux-gnu/gstreamer-1.0/" >&2
  rm -f "$ROOT$REG"
  fail=1
fi

# The daemon links (prune.py checked everything else it kept).
if ldd_out=$(chroot "$ROOT" ldd /usr/bin/fieldcastd 2>&1) && ! grep -q "not found" <<< "$ldd_out"; then
  :
else
  echo "check-rootfs: /usr/bin/fieldcastd does not link in the image:" >&2
  echo "$ldd_out" >&2
  fail=1
fi

# No GUI: toolkits, X11/Wayland clients, GL/Vulkan, 2D graphics and fonts.
gui=$(chroot "$ROOT" dpkg-query -W -f '${Package}\n' |
  grep -E '^(libgtk|libgdk|libsdl|libgl1|libglx|libegl|libgles|libgbm|libwayland|libx11|libxcb|libxext|libxrender|libcairo|libpango|librsvg|libvulkan|mesa-|libllvm|libdrm-(amdgpu|intel|nouveau|radeon)|libavcodec|libavfilter|libavdevice|fonts-|adwaita|hicolor)' || true)
if [[ -n "$gui" ]]; then
  echo "check-rootfs: GUI and desktop packages in the image: $(echo $gui)" >&2
  fail=1
fi
exit $fail
