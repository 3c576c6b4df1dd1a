# minidet — build, test, bench.
#   make            build/libminidet.a, ./train, ./eval
#   make test       check the layer includes (scripts/check_layers.sh), build and run every tests/test_*.c
#                   (SAN=1: address+undefined sanitizers)
#   make deps       install the Debian packages needed to build and run
#   make deps-dev   add what scripts/ needs (python3-torchvision) for reference dumps
#   make MPI=1      the same with Open MPI (mpicc, build/mpi): data-parallel ./train and ./eval under mpirun
#                   (make test MPI=1 adds tests/test_mpi_*.c; with SAN=1 too: build/san/mpi, every rank sanitized)
#   make deps-mpi   install Open MPI (libopenmpi-dev, openmpi-bin)
#   make demo       the embedded default job
#   make bench      benchmarks (figures, not tests)
CC      ?= gcc
SAN     ?= 0
MPI     ?= 0
DEPS     = libopenblas-openmp-dev libcjson-dev libstb-dev libinih-dev pkg-config make gcc curl unzip ca-certificates
DEPS_DEV = python3-torchvision python3-numpy
DEPS_MPI = libopenmpi-dev openmpi-bin

CPPFLAGS = -Iinclude -I/usr/include/stb -I/usr/include/x86_64-linux-gnu/openblas-openmp -D_GNU_SOURCE
CFLAGS  ?= -std=c11 -O2 -g -Wall -Wextra -fopenmp
LDLIBS   = -lopenblas -lcjson -linih -lstb -lm -lpthread
LDFLAGS  = -fopenmp

ifeq ($(SAN),1)
BUILD   := build/san
CFLAGS  := -std=c11 -O1 -g -Wall -Wextra -fopenmp -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
LDFLAGS += -fsanitize=address,undefined
else
BUILD   := build
endif
ifeq ($(MPI),1)
# mpicc wraps $(CC) with Open MPI's include and link flags; objects go to their own tree
CC      := mpicc
CPPFLAGS += -DMD_MPI=1
BUILD   := $(BUILD)/mpi
endif

LIB_SRCS  := $(shell find src -name '*.c' -not -path 'src/cli/*' | sort)
LIB_OBJS  := $(LIB_SRCS:%.c=$(BUILD)/obj/%.o)
# tests/test_mpi_*.c start ./train under mpirun: only in the MPI build
TEST_SRCS := $(sort $(filter-out tests/test_mpi_%,$(wildcard tests/test_*.c)))
ifeq ($(MPI),1)
TEST_SRCS += $(sort $(wildcard tests/test_mpi_*.c))
endif
TEST_BINS := $(TEST_SRCS:tests/%.c=$(BUILD)/tests/%)
TEST_UTIL := tests/testutil.c
TOOLS     := $(patsubst src/cli/%.c,$(BUILD)/bin/%,$(wildcard src/cli/tool_*.c))

.PHONY: all lib test deps deps-dev deps-mpi deps-fuzz demo bench fuzz clean
ifeq ($(SAN),1)
all: lib $(BUILD)/bin/train $(BUILD)/bin/eval $(TOOLS)
else
all: lib train eval $(TOOLS)
endif
lib: $(BUILD)/libminidet.a

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/libminidet.a: $(LIB_OBJS)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(BUILD)/bin/%: src/cli/%.c $(BUILD)/libminidet.a
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) $< $(BUILD)/libminidet.a $(LDFLAGS) $(LDLIBS) -o $@

train: $(BUILD)/bin/train
	cp $< $@
eval: $(BUILD)/bin/eval
	cp $< $@

$(BUILD)/tests/%: tests/%.c $(TEST_UTIL) tests/testutil.h $(BUILD)/libminidet.a
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) -Itests $(CFLAGS) $< $(TEST_UTIL) $(BUILD)/libminidet.a $(LDFLAGS) $(LDLIBS) -o $@

# MPI=1 SAN=1: LeakSanitizer skips Open MPI's own allocations (tests/lsan_openmpi.supp, whose header says why
# the slow unwinder is needed); the options reach the ranks through mpirun's environment
ifeq ($(SAN)$(MPI),11)
TEST_ENV := ASAN_OPTIONS=fast_unwind_on_malloc=0 LSAN_OPTIONS=suppressions=$(CURDIR)/tests/lsan_openmpi.supp:print_suppressions=0
endif

test: all $(TEST_BINS)
	@sh scripts/check_layers.sh
	@$(TEST_ENV) MD_BIN=$(BUILD)/bin sh tests/run_tests.sh $(TEST_BINS)

deps:
	apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $(DEPS)

deps-mpi:
	DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $(DEPS_MPI)

deps-dev: deps
	DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $(DEPS_DEV)

# libFuzzer harnesses (clang): tests/fuzz/fuzz_*.c, corpora in tests/fuzz/corpus/<name>/.
# `make fuzz FUZZ_SECONDS=60` runs each harness for that long.
FUZZ_SECONDS ?= 60
FUZZ_CC      ?= clang
FUZZ_FLAGS    = -std=c11 -O1 -g -fopenmp=libgomp -fsanitize=address,undefined -fno-sanitize-recover=undefined
FUZZ_OBJS    := $(LIB_SRCS:%.c=build/fuzz/obj/%.o)
FUZZ_BINS    := $(patsubst tests/fuzz/%.c,build/fuzz/%,$(wildcard tests/fuzz/fuzz_*.c))
.SECONDARY: $(FUZZ_OBJS)
build/fuzz/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(CPPFLAGS) $(FUZZ_FLAGS) -fsanitize=fuzzer-no-link -MMD -MP -c $< -o $@
build/fuzz/%: tests/fuzz/%.c tests/fuzz/fuzz_common.h $(FUZZ_OBJS)
	$(FUZZ_CC) $(CPPFLAGS) $(FUZZ_FLAGS) -fsanitize=fuzzer $< $(FUZZ_OBJS) $(LDLIBS) -lgomp -o $@
fuzz: $(FUZZ_BINS)
	@FUZZ_SECONDS=$(FUZZ_SECONDS) sh scripts/fuzz.sh $(FUZZ_BINS)
deps-fuzz:
	DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends clang libclang-rt-14-dev

demo: all
	sh scripts/demo.sh

bench: all
	sh scripts/bench.sh

clean:
	rm -rf build train eval

-include $(LIB_OBJS:.o=.d)
