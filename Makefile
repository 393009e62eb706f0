# Fresh-machine entry points: `make demo` (the main job, end to end) and `make test`.
CUDA ?= auto
PYTEST_ARGS ?=
BENCH ?=

.PHONY: setup test gtest pytest demo bench clean

setup:
	CUDA=$(CUDA) bash toolchain/setup.sh

test: setup
	bash toolchain/run_tests.sh $(PYTEST_ARGS)

demo: setup
	bin/python tools/demo.py

bench: setup
	bin/python tools/bench.py $(BENCH)

clean:
	rm -rf .caffe .venv out
