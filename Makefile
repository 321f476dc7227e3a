# Convenience targets; each is one script.
.PHONY: demo test hil image bench bench-drift

demo:
	scripts/demo.sh

test:
	scripts/test.sh

# The firmware booted under QEMU and tested over the network (docs/hil.md).
# Another build of the firmware: make hil HIL_ARGS="--kernel K --image I".
hil:
	hil-tests/run $(HIL_ARGS)

# The QEMU image alone (its directory is printed).
image:
	image/build-qemu.sh

bench:
	benches/srt_fanout.sh
	benches/output_kinds.sh

# An hour of audio and video from a sound card 100 ppm fast: the A/V drift.
bench-drift:
	benches/av_drift.sh
