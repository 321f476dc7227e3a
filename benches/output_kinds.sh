#!/usr/bin/env bash
# Benchmark: what each kind of output costs on top of the encode. Runs
# fieldcastd on one 720p30 test stream (x264 veryfast 3 Mbit/s + AAC) with
# no output, then with one output of each kind in turn (SRT to
# srt-live-transmit, RTMP to nginx, WHIP to the aiortc receiver, a
# recording), and prints CPU seconds over the window, the CPU added by the
# output, and the daemon's peak memory.
#
# Figures, not pass/fail: run it on an idle machine (`make bench`).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
DURATION=${BENCH_SECONDS:-20}
WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

scripts/install-deps.sh >/dev/null
scripts/install-test-peers.sh
cargo build --release -q -p fieldcast-appliance
BIN=$PWD/target/release/fieldcastd
PY=${FIELDCAST_PEERS_VENV:-/opt/fieldcast-test-peers/venv}/bin/python
TICK=$(getconf CLK_TCK)

cpu_seconds() { awk -v t="$TICK" '{print ($14 + $15) / t}' "/proc/$1/stat"; }
peak_mib() { awk '/VmHWM/ {printf "%.1f", $2 / 1024}' "/proc/$1/status"; }
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

MQTT_PORT=$(port)
printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\n' "$MQTT_PORT" > "$WORK/mosq.conf"
mosquitto -c "$WORK/mosq.conf" >/dev/null 2>&1 & PIDS+=($!)

SRT_PORT=$(port)
srt-live-transmit -q "srt://:$SRT_PORT?mode=listener" file://con > /dev/null 2>&1 & PIDS+=($!)

RTMP_PORT=$(port)
mkdir -p "$WORK/nginx/logs"
cat > "$WORK/nginx/nginx.conf" <<EOF
load_module /usr/lib/nginx/modules/ngx_rtmp_module.so;
daemon off; master_process off; worker_processes 1;
error_log $WORK/nginx/logs/error.log; pid $WORK/nginx/nginx.pid;
events { worker_connections 64; }
rtmp { server { listen 127.0.0.1:$RTMP_PORT; chunk_size 4096;
  application live { live on; } } }
EOF
nginx -c "$WORK/nginx/nginx.conf" -p "$WORK/nginx" >/dev/null 2>&1 & PIDS+=($!)

WHIP_PORT=$(port)
"$PY" appliance/tests/peers/whip_server.py --port "$WHIP_PORT" --out "$WORK/whip.mkv" >/dev/null 2>&1 & PIDS+=($!)
sleep 2

run() { # name [target]
  local name=$1 target=${2:-}
  { printf '[device]\nid = "bench"\ndata_dir = "%s/data-%s"\n[mqtt]\nurl = "mqtt://127.0.0.1:%s"\n' "$WORK" "$name" "$MQTT_PORT"
    printf '[[inputs]]\nname = "main"\n[inputs.encode]\nwidth = 1280\nheight = 720\nframerate = 30\nbitrate_kbps = 3000\ngop_frames = 60\nprofile = "high"\naudio_bitrate_kbps = 128\n'
    if [ -n "$target" ]; then
      printf '[[outputs]]\nid = "o"\nstream = "main"\ntarget = "%s"\n' "$target"
    fi
  } > "$WORK/$name.toml"
  RUST_LOG=warn "$BIN" --config "$WORK/$name.toml" > "$WORK/$name.log" 2>&1 & local pid=$!
  PIDS+=($pid)
  sleep 5 # warm-up: pipelines built, connections up
  local c0; c0=$(cpu_seconds "$pid")
  sleep "$DURATION"
  local c1; c1=$(cpu_seconds "$pid")
  CPU=$(awk -v a="$c0" -v b="$c1" 'BEGIN {printf "%.2f", b - a}')
  MEM=$(peak_mib "$pid")
  kill "$pid"; wait "$pid" 2>/dev/null || true
}

printf '%-10s %10s %12s %10s\n' "output" "cpu_s" "added_cpu_s" "peak_MiB"
run none
BASE=$CPU
printf '%-10s %10s %12s %10s\n' none "$CPU" "-" "$MEM"
for kind in srt rtmp whip recording; do
  case $kind in
    srt) t="srt://127.0.0.1:$SRT_PORT?mode=caller" ;;
    rtmp) t="rtmp://127.0.0.1:$RTMP_PORT/live/bench" ;;
    whip) t="http://127.0.0.1:$WHIP_PORT/whip/bench" ;;
    recording) t="$WORK/rec/\$datetime.ts?segment=10" ;;
  esac
  run "$kind" "$t"
  printf '%-10s %10s %12s %10s\n' "$kind" "$CPU" "$(awk -v a="$BASE" -v b="$CPU" 'BEGIN {printf "%.2f", b - a}')" "$MEM"
done
echo "(CPU seconds over ${DURATION} s of 720p30; 'added' is over the encode alone)"
