# Convenience targets; each is one script.
.PHONY: demo test bench bench-drift

demo:
	scripts/demo.sh

test:
	scripts/test.sh

bench:
	benches/srt_fanout.sh
	benches/output_kinds.sh

# An hour of audio and video from a sound card 100 ppm fast: the A/V drift.
bench-drift:
	benches/av_drift.sh
