# mxu — the two commands of the quick start, and the rest.
#   make run      install dependencies, build, run a node with the examples
#   make check    install dependencies, build, run every test ("N passed, N failed")
.PHONY: all deps build run check quick-check bench fuzz format lint clean

BUILD ?= build
FUZZ_SECONDS ?= 60
RUN_ARGS ?=

all: build

deps:
	@sh scripts/deps.sh

$(BUILD)/build.ninja:
	meson setup $(BUILD)

build: deps $(BUILD)/build.ninja
	@ninja -C $(BUILD)

# The examples, and every block of the catalogue (catalog/*/, docs/catalog.md).
CATALOG_DEPLOYS = $(foreach d,$(sort $(dir $(wildcard catalog/*/mxu.yaml))),--deploy $(d:/=))

run: build
	@sh scripts/run.sh $(BUILD) --deploy examples/hello --deploy examples/echo \
		--deploy examples/json-transform $(CATALOG_DEPLOYS) $(RUN_ARGS)

check: deps
	@sh scripts/check.sh

quick-check: deps
	@QUICK=1 sh scripts/check.sh

bench: build
	@sh scripts/deps.sh --bench
	@sh bench/run.sh

# Each fuzz target for FUZZ_SECONDS (default 60): make fuzz FUZZ_SECONDS=600
fuzz: deps
	@sh scripts/fuzz.sh $(FUZZ_SECONDS)

format:
	@git ls-files '*.c' '*.h' | xargs clang-format -i

lint:
	@sh scripts/lint.sh

clean:
	rm -rf build build-asan build-fuzz build-check.log build-check.log.lines
