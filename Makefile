# hashattention.cpp: the two commands of the README and a few conveniences.
#   make demo   set up everything (packages, model), build, run the demo
#   make test   set up everything, build, run all tests; fails when a test fails, skips or does not run
#               (scripts/ctest-check: only skips on its allow-list pass, printed with their reason)
JOBS ?= $(shell nproc)
BUILD_DIR := build

.PHONY: all setup build demo test test-unit test-asan build-cuda bench clean

all: build

setup:
	@bash scripts/setup --texts

build: setup
	@cmake --preset cpu >/dev/null
	@cmake --build $(BUILD_DIR) -j $(JOBS)

demo: build
	@bash scripts/demo

test: build
	@python3 scripts/ctest-check --build-dir $(BUILD_DIR) --output-on-failure -j $(JOBS) --timeout 900

test-unit: build
	@python3 scripts/ctest-check --build-dir $(BUILD_DIR) --output-on-failure -j $(JOBS) -L unit

# Only what the unit tests need (the tool for the bad-input cases, the test-*-unit executables).
test-asan: setup
	@cmake --preset asan >/dev/null
	@cmake --build build-asan -j $(JOBS) --target hashattn_cli \
	  $$(ninja -C build-asan -t targets all | sed -n 's/^\(test-[a-z0-9-]*-unit\):.*/\1/p' | sort -u)
	@python3 scripts/ctest-check --build-dir build-asan --output-on-failure -j $(JOBS) -L unit --timeout 900

# The CUDA backend compiles without a GPU (sm_90 + PTX): library, cuda tests, CUDA bench, example.
build-cuda: setup
	@cmake --preset cuda >/dev/null
	@cmake --build build-cuda -j $(JOBS) --target hashattn test-cuda-cuda cuda-decode-bench example-paged-decode

bench: build
	@./build/bin/bench-attention --benchmark_repetitions=3 --benchmark_report_aggregates_only=true

clean:
	rm -rf build build-asan build-cuda
