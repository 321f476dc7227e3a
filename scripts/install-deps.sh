#!/usr/bin/env bash
# Installs what Fieldcast needs to build, run and test on Debian 12.
# Idempotent: a second run installs nothing new and exits quickly.
set -euo pipefail

PACKAGES=(
  # build
  build-essential pkg-config
  libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev
  # WebRTC (webrtcbin) and SDP bindings for WHIP outputs
  libgstreamer-plugins-bad1.0-dev
  # capture, encode and output elements
  gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good
  gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly gstreamer1.0-libav
  # clockoverlay (pango) for the test pattern's running clock
  gstreamer1.0-x
  # ALSA capture (alsasrc): sound cards and HDMI/SDI receivers' embedded
  # audio; alsa-utils to list devices (arecord -l / -L)
  gstreamer1.0-alsa alsa-utils
  # CSI cameras through libcamera (libcamerasrc)
  gstreamer1.0-libcamera
  # ICE for webrtcbin (WHIP outputs)
  gstreamer1.0-nice
  # control plane broker and clients
  mosquitto mosquitto-clients
  # libsrt headers and link library for media's own SRT sender (srt_ffi):
  # the GnuTLS flavour, the same libsrt GStreamer's SRT plugin loads
  libsrt-gnutls-dev
  # real SRT peers and media checks for tests and the demo
  srt-tools ffmpeg
  # RTMP receiver for the RTMP tests (nginx with the RTMP module) and the
  # TLS front that makes it an RTMPS server
  nginx-light libnginx-mod-rtmp stunnel4
  # the firmware's QEMU image and the HIL tests (image/build-qemu.sh,
  # hil-tests/): Debian root file systems, partitioning, ext4 images
  # written without mounting (mkfs.ext4 -d, debugfs), the emulator
  mmdebstrap fdisk e2fsprogs qemu-system-x86
  # the Python the test peers' venv is made from (scripts/install-test-peers.sh)
  python3 python3-venv
  # misc used by scripts
  curl ca-certificates procps
  # test certificates for the MQTT-over-TLS tests
  openssl
  # `ip`: the network-change tests make links in a namespace of their own
  iproute2
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

if [ "${#missing[@]}" -gt 0 ]; then
  echo "fieldcast: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# Debian starts mosquitto as a system service on install; Fieldcast's demo and
# tests start their own broker on their own ports, so the system one is left
# alone (it listens on 1883 and does not collide with ours).

if ! command -v cargo >/dev/null 2>&1; then
  if [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
  else
    echo "fieldcast: cargo not found; install Rust with rustup first" >&2
    exit 1
  fi
fi
