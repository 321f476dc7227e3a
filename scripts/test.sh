#!/usr/bin/env bash
# Runs every test: formatting, lints, unit tests and the integration tests
# against real peers on loopback (mosquitto, srt-live-transmit, ffmpeg,
# ffprobe, nginx-rtmp, stunnel, an aiortc WHIP receiver), and the
# hardware-in-the-loop tests on the firmware image under QEMU (hil-tests/).
# Installs what it needs first.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

scripts/install-deps.sh
scripts/install-test-peers.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --all-targets --locked --exclude hil-tests
# The firmware under QEMU, last and with its report shown: each test's
# time, boot to online and to the first SRT packet (docs/hil.md).
hil-tests/run
