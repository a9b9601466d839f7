# hashattention.cpp: the two commands of the README and a few conveniences.
#   make demo   set up everything (packages, model), build, run the demo
#   make test   set up everything, build, run all tests; fails when a test fails, skips or does not run
#               (scripts/ctest-check: only skips on its allow-list pass, printed with their reason);
#               the gemma label (the second architecture's real file, an optional download) is left out
#   make test-gemma   fetch Gemma 3 270M (scripts/setup --models gemma3), build, run the gemma tests
#   make bench-llamacpp   the side-by-side comparison with llama.cpp (sets up .venv-bench first)
JOBS ?= $(shell nproc)
BUILD_DIR := build
# ccache, once scripts/setup has installed it (looked up when a recipe runs, after setup): the cuda and
# gpu-check builds then reuse the cpu build's objects of the sources they share. The cache lives in the
# clone (.ccache/) unless CCACHE_DIR is set; the launcher is recorded when a build folder is configured.
CCACHE = $(shell command -v ccache 2>/dev/null)
CC_ENV = $(if $(CCACHE),CMAKE_CXX_COMPILER_LAUNCHER=ccache CMAKE_CUDA_COMPILER_LAUNCHER=ccache \
  CCACHE_DIR=$${CCACHE_DIR:-$(CURDIR)/.ccache} CCACHE_BASEDIR=$(CURDIR))

.PHONY: all setup build demo test test-unit test-gemma test-asan build-cuda bench bench-setup bench-llamacpp clean

all: build

setup:
	@bash scripts/setup --texts

build: setup
	@$(CC_ENV) cmake --preset cpu >/dev/null
	@$(CC_ENV) cmake --build $(BUILD_DIR) -j $(JOBS)

demo: build
	@bash scripts/demo

test: build
	@python3 scripts/ctest-check --build-dir $(BUILD_DIR) --output-on-failure -j $(JOBS) --timeout 900 -LE gemma

test-gemma: build
	@bash scripts/setup --models gemma3
	@python3 scripts/ctest-check --build-dir $(BUILD_DIR) --output-on-failure -j $(JOBS) --timeout 900 -L gemma

test-unit: build
	@python3 scripts/ctest-check --build-dir $(BUILD_DIR) --output-on-failure -j $(JOBS) -L unit

# Only what the unit tests need (the tool for the bad-input cases, the test-*-unit executables).
test-asan: setup
	@$(CC_ENV) cmake --preset asan >/dev/null
	@$(CC_ENV) cmake --build build-asan -j $(JOBS) --target hashattn_cli \
	  $$(ninja -C build-asan -t targets all | sed -n 's/^\(test-[a-z0-9-]*-unit\):.*/\1/p' | sort -u)
	@python3 scripts/ctest-check --build-dir build-asan --output-on-failure -j $(JOBS) -L unit --timeout 900

# The CUDA backend compiles without a GPU (sm_90 + PTX): library, the tool with --device cuda, cuda tests
# (kernels and the model on the GPU), CUDA benches, example; then exactly what scripts/gpu-check builds on
# the GPU machine (its GPU-only configuration).
build-cuda: setup
	@$(CC_ENV) cmake --preset cuda >/dev/null
	@$(CC_ENV) cmake --build build-cuda -j $(JOBS) --target hashattn hashattn_cli test-cuda-cuda test-gpu-cuda cuda-decode-bench \
	  cuda-e2e-bench example-paged-decode
	@$(CC_ENV) bash scripts/gpu-check out/gpu-build --build-only

bench: build
	@./build/bin/bench-attention --benchmark_repetitions=3 --benchmark_report_aggregates_only=true

# The benchmark peers (pinned llama-cpp-python built for this CPU, gguf) in .venv-bench; the first run
# compiles llama.cpp (long on 2 cores), later runs only check it.
bench-setup:
	@bash scripts/setup --texts --bench

# hashattn vs llama.cpp, same GGUF, threads and prompt (docs/PERFORMANCE.md); e.g.
#   make bench-llamacpp BENCH_ARGS="--runs 3 --hash models/smollm2-hash.gguf --only decode8000"
BENCH_ARGS ?= --runs 5 --threads 2
bench-llamacpp: build bench-setup
	@.venv-bench/bin/python scripts/bench-llamacpp.py $(BENCH_ARGS)

clean:
	rm -rf build build-asan build-cuda
