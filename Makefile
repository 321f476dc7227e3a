# Convenience targets; each is one script.
.PHONY: demo test bench

demo:
	scripts/demo.sh

test:
	scripts/test.sh

bench:
	benches/srt_fanout.sh
	benches/output_kinds.sh
