#!/usr/bin/env bash
# Runs Fieldcast on this machine: a test pattern with a running clock and a
# 1 kHz tone, encoded with x264 + AAC, served as an SRT listener on :9000,
# controlled through a local mosquitto on 127.0.0.1:18830. Ctrl-C stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

scripts/install-deps.sh
cargo build --release -p fieldcast-appliance

STATE=.demo
MQTT_PORT=${FIELDCAST_DEMO_MQTT_PORT:-18830}
SRT_PORT=${FIELDCAST_DEMO_SRT_PORT:-9000}
mkdir -p "$STATE/data"

cat > "$STATE/mosquitto.conf" <<CONF
listener $MQTT_PORT 127.0.0.1
allow_anonymous true
persistence false
CONF
mosquitto -c "$STATE/mosquitto.conf" > "$STATE/mosquitto.log" 2>&1 &
BROKER=$!
trap 'kill $BROKER 2>/dev/null || true' EXIT
for _ in $(seq 50); do
  (exec 3<>"/dev/tcp/127.0.0.1/$MQTT_PORT") 2>/dev/null && break
  kill -0 "$BROKER" 2>/dev/null || break
  sleep 0.1
done
if ! kill -0 "$BROKER" 2>/dev/null; then
  echo "demo: mosquitto could not start on 127.0.0.1:$MQTT_PORT (in use?); set FIELDCAST_DEMO_MQTT_PORT" >&2
  cat "$STATE/mosquitto.log" >&2
  exit 1
fi

cat > "$STATE/fieldcast.toml" <<CONF
# Built-in defaults: 1280x720 at 30 fps, 3 Mbit/s H.264 High + AAC.
[device]
id = "demo"
data_dir = "$PWD/$STATE/data"

[mqtt]
url = "mqtt://127.0.0.1:$MQTT_PORT"

[[inputs]]
name = "main"

[[outputs]]
id = "program"
stream = "main"
target = "srt://:$SRT_PORT?mode=listener"
CONF

cat <<MSG

  Fieldcast demo: device "demo", stream "main".

  Watch it:        ffplay -fflags nobuffer 'srt://127.0.0.1:$SRT_PORT'
  Its MQTT tree:   mosquitto_sub -h 127.0.0.1 -p $MQTT_PORT -t 'fieldcast/demo/#' -v

  Start a second SRT destination (a listener on :9001), then watch it:
    mosquitto_rr -h 127.0.0.1 -p $MQTT_PORT -t fieldcast/demo/cmd/push.add -e demo/replies \\
      -m '{"id":"second","stream":"main","target":"srt://:9001?mode=listener"}'
    ffplay -fflags nobuffer 'srt://127.0.0.1:9001'
  Stop it:
    mosquitto_rr -h 127.0.0.1 -p $MQTT_PORT -t fieldcast/demo/cmd/push.stop -e demo/replies -m '{"id":"second"}'

  Record it in 10-second MPEG-TS segments, then change the bitrate live:
    mosquitto_rr -h 127.0.0.1 -p $MQTT_PORT -t fieldcast/demo/cmd/push.add -e demo/replies \
      -m '{"id":"rec","stream":"main","target":"$PWD/$STATE/data/recordings/\$stream/\$datetime.ts?segment=10"}'
    mosquitto_rr -h 127.0.0.1 -p $MQTT_PORT -t fieldcast/demo/cmd/encoder.set -e demo/replies \
      -m '{"input":"main","bitrate_kbps":1500}'

  Or with the operator CLI (docs/cli.md):
    ./target/release/fieldcast --broker mqtt://127.0.0.1:$MQTT_PORT state demo
    ./target/release/fieldcast --broker mqtt://127.0.0.1:$MQTT_PORT watch demo

  The MQTT contract: docs/mqtt.md. Ctrl-C stops the demo.

MSG
./target/release/fieldcastd --config "$STATE/fieldcast.toml"
