#!/usr/bin/env bash
# Benchmark: the cost of the media core. Pushes one 720p30 test stream
# (x264 veryfast 3 Mbit/s + AAC) to 1 and to 4 SRT receivers for 30 s, once
# with fieldcastd and once with a single gst-launch-1.0 pipeline doing the
# same job (x264enc, tee, 1 or 4 mpegtsmux ! srtsink branches), and prints
# CPU time and peak memory of each and their ratio. Then measures the time
# from an MQTT push.start to the first byte at an SRT receiver.
#
# Figures, not pass/fail: run it on an idle machine (`make bench`).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
DURATION=${BENCH_SECONDS:-30}
WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

scripts/install-deps.sh >/dev/null
cargo build --release -q -p fieldcast-appliance
BIN=$PWD/target/release/fieldcastd
TICK=$(getconf CLK_TCK)

cpu_seconds() { # utime + stime of a process, in seconds
  awk -v t="$TICK" '{print ($14 + $15) / t}' "/proc/$1/stat"
}
peak_mib() { awk '/VmHWM/ {printf "%.1f", $2 / 1024}' "/proc/$1/status"; }

MQTT_PORT=$((20000 + RANDOM % 10000))
printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\n' "$MQTT_PORT" > "$WORK/mosq.conf"
mosquitto -c "$WORK/mosq.conf" >/dev/null 2>&1 & PIDS+=($!)
sleep 0.5

receivers() { # N base_port: start N srt-live-transmit listeners discarding data
  for i in $(seq 1 "$1"); do
    srt-live-transmit -q "srt://:$(($2 + i))?mode=listener" file://con > /dev/null 2>&1 & PIDS+=($!)
  done
  sleep 0.5
}

# Sets CPU (seconds over the window) and MEM (peak MiB) of a process.
measure() { # pid
  sleep 3 # warm-up: pipelines built, connections up
  local c0; c0=$(cpu_seconds "$1")
  sleep "$DURATION"
  local c1; c1=$(cpu_seconds "$1")
  CPU=$(awk -v a="$c0" -v b="$c1" 'BEGIN {printf "%.2f", b - a}')
  MEM=$(peak_mib "$1")
}

run_daemon() { # N base_port
  local n=$1 base=$2
  receivers "$n" "$base"
  { printf '[device]\nid = "bench"\ndata_dir = "%s/data-%s"\n[mqtt]\nurl = "mqtt://127.0.0.1:%s"\n' "$WORK" "$n" "$MQTT_PORT"
    printf '[[inputs]]\nname = "main"\n[inputs.encode]\nwidth = 1280\nheight = 720\nframerate = 30\nbitrate_kbps = 3000\ngop_frames = 60\nprofile = "high"\naudio_bitrate_kbps = 128\n'
    for i in $(seq 1 "$n"); do
      printf '[[outputs]]\nid = "o%s"\nstream = "main"\ntarget = "srt://127.0.0.1:%s?mode=caller"\n' "$i" "$((base + i))"
    done
  } > "$WORK/bench-$n.toml"
  RUST_LOG=warn "$BIN" --config "$WORK/bench-$n.toml" > "$WORK/daemon-$n.log" 2>&1 & local pid=$!
  PIDS+=($pid)
  measure "$pid"
  kill "$pid"; wait "$pid" 2>/dev/null || true
}

run_gst() { # N base_port
  local n=$1 base=$2
  receivers "$n" "$base"
  local p="videotestsrc is-live=true pattern=smpte ! video/x-raw,width=1280,height=720,framerate=30/1 ! clockoverlay ! videoconvert ! video/x-raw,format=I420 ! x264enc tune=zerolatency speed-preset=veryfast bitrate=3000 key-int-max=60 bframes=0 ! video/x-h264,profile=high ! h264parse config-interval=-1 ! tee name=v"
  p="$p audiotestsrc is-live=true wave=sine freq=1000 volume=0.1 ! audioconvert ! audioresample ! audio/x-raw,rate=48000,channels=2 ! avenc_aac bitrate=128000 ! aacparse ! tee name=a"
  for i in $(seq 1 "$n"); do
    p="$p v. ! queue ! mpegtsmux name=m$i alignment=7 ! srtsink uri=srt://127.0.0.1:$((base + i)) sync=false a. ! queue ! m$i."
  done
  # shellcheck disable=SC2086
  gst-launch-1.0 -q $p > "$WORK/gst-$n.log" 2>&1 & local pid=$!
  PIDS+=($pid)
  measure "$pid"
  kill "$pid"; wait "$pid" 2>/dev/null || true
}

echo "Fieldcast SRT fan-out benchmark: 1280x720 30 fps x264 veryfast 3 Mbit/s + AAC, ${DURATION} s per run, $(nproc) cores"
printf '%-12s %14s %14s %14s %14s %10s\n' outputs "fieldcastd cpu" "gst-launch cpu" "fieldcastd MiB" "gst-launch MiB" "cpu ratio"
base=$((30000 + RANDOM % 10000))
for n in 1 4; do
  run_daemon "$n" "$base"; dcpu=$CPU dmem=$MEM; base=$((base + 10))
  run_gst "$n" "$base"; gcpu=$CPU gmem=$MEM; base=$((base + 10))
  ratio=$(awk -v a="$dcpu" -v b="$gcpu" 'BEGIN {if (b > 0) printf "%.2f", a / b; else print "n/a"}')
  printf '%-12s %13ss %13ss %14s %14s %10s\n' "$n" "$dcpu" "$gcpu" "$dmem" "$gmem" "$ratio"
done

# Time from an MQTT push.start to the first byte at the receiver.
port=$((base + 1))
srt-live-transmit -q "srt://:$port?mode=listener" file://con > "$WORK/first.ts" 2>/dev/null & PIDS+=($!)
{ printf '[device]\nid = "bench"\ndata_dir = "%s/data-start"\n[mqtt]\nurl = "mqtt://127.0.0.1:%s"\n' "$WORK" "$MQTT_PORT"
  printf '[[inputs]]\nname = "main"\n[inputs.encode]\nwidth = 1280\nheight = 720\nframerate = 30\nbitrate_kbps = 3000\ngop_frames = 60\nprofile = "high"\naudio_bitrate_kbps = 128\n'
  printf '[[outputs]]\nid = "late"\nstream = "main"\ntarget = "srt://127.0.0.1:%s?mode=caller"\nenabled = false\n' "$port"
} > "$WORK/start.toml"
RUST_LOG=warn "$BIN" --config "$WORK/start.toml" > "$WORK/daemon-start.log" 2>&1 & PIDS+=($!)
sleep 4
times=()
for round in 1 2 3; do
  : > "$WORK/first.ts"
  t0=$(date +%s%N)
  mosquitto_rr -h 127.0.0.1 -p "$MQTT_PORT" -t fieldcast/bench/cmd/push.start -e bench/r -m '{"id":"late"}' > /dev/null
  while [ ! -s "$WORK/first.ts" ]; do sleep 0.005; done
  t1=$(date +%s%N)
  times+=("$(( (t1 - t0) / 1000000 ))")
  mosquitto_rr -h 127.0.0.1 -p "$MQTT_PORT" -t fieldcast/bench/cmd/push.stop -e bench/r -m '{"id":"late"}' > /dev/null
  sleep 1
done
echo "MQTT push.start to first byte at the receiver: ${times[*]} ms (3 rounds)"
