#!/usr/bin/env bash
# Long run: do audio and video stay together for hours? Runs the drift test
# of capture/tests/audio.rs (a test pattern and ALSA audio from a virtual
# sound card, through x264 and AAC, measured from the encoded frames) for
# BENCH_DRIFT_SECS (default one hour) with the card's crystal
# BENCH_DRIFT_PPM off (default +100 ppm, a poor but real one: 360 ms an
# hour if nothing corrected it), and prints its figures.
#
# Figures, and the test's own check (every drift within one video frame).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

scripts/install-deps.sh >/dev/null
FIELDCAST_DRIFT_SECS=${BENCH_DRIFT_SECS:-3600} \
FIELDCAST_DRIFT_PPM=${BENCH_DRIFT_PPM:-100} \
  cargo test --release --locked -q -p fieldcast-capture --test audio -- \
    --exact audio_and_video_do_not_drift_apart --nocapture
