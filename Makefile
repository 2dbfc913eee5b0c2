# moeplan: one Makefile for everything.
#   make            build build/moeplan (CPU parts always; CUDA parts when nvcc is found)
#   make run        install missing packages, build, run the default plan search
#   make check      install missing packages, build, run every CPU test (plain,
#                   ASan+UBSan, multi-rank MPI); this is what .ci/run runs
#   make gpu-build  build the GPU tests (here); make gpu-test also runs them (on a machine with GPUs)
#   make bundle     build/moeplan plus the shared libraries it needs in build/lib (for the device machine)
#   make fuzz       build the libFuzzer harnesses (tests/fuzz/, clang) into build/fuzz and run each for
#                   FUZZ_SECONDS (default 600) on its corpus; FUZZERS="model plan" picks harnesses
# Variables: NO_CUDA=1 skips the CUDA parts; SAN=1 builds with ASan+UBSan into build/asan;
#            FUZZ=1 builds with clang, -fsanitize=fuzzer-no-link,address,undefined into build/fuzz.

CC       ?= gcc
BUILD    ?= build
CUDA_HOME ?= /usr/local/cuda
NVCC     := $(wildcard $(CUDA_HOME)/bin/nvcc)
MPICC    := $(shell command -v mpicc 2>/dev/null)

ifeq ($(SAN),1)
  BUILD    := build/asan
  SANFLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
  NO_CUDA  := 1
endif
ifeq ($(FUZZ),1)
  BUILD    := build/fuzz
  CC       := clang
  SANFLAGS := -fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
  NO_CUDA  := 1
endif
ifeq ($(NO_CUDA),1)
  NVCC :=
endif

MPI_CFLAGS := $(if $(MPICC),$(shell mpicc --showme:compile),)
MPI_LIBS   := $(if $(MPICC),$(shell mpicc --showme:link),)

CFLAGS  ?= -O2 -g
CFLAGS  += -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -Wvla -I. -I$(BUILD)/gen $(MPI_CFLAGS) $(SANFLAGS) -MMD -MP
LDLIBS  := -lcjson -lglpk -lhwloc $(MPI_LIBS) -lpthread -lm
# DT_RPATH (not RUNPATH) so that the libraries' own dependencies (libglpk ->
# libamd, libcolamd) are found in lib/ beside the binary on the device machine
LDFLAGS += $(SANFLAGS) -Wl,--disable-new-dtags -Wl,-rpath,'$$ORIGIN/lib'

CORE_SRC := $(wildcard core/*.c)
LIB_SRC  := $(CORE_SRC) $(wildcard simulator/*.c planner/*.c executor/*.c kernels/*.c)
CLI_SRC  := $(wildcard cli/*.c)
CU_SRC   := $(wildcard kernels/*.cu executor/*.cu)
TEST_SRC := $(wildcard tests/test_*.c)
MPITEST_SRC := $(wildcard tests/mpi/test_*.c)
GPUTEST_SRC := $(wildcard tests/gpu/test_*.cu)
BENCH_SRC := $(wildcard bench/*.c)
CATALOG  := $(sort $(wildcard models/*.json)) $(sort $(wildcard topologies/*.json))

LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/obj/%.o) $(BUILD)/obj/gen/catalog_data.o
CLI_OBJ  := $(CLI_SRC:%.c=$(BUILD)/obj/%.o)
TESTS    := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
MPITESTS := $(MPITEST_SRC:tests/mpi/%.c=$(BUILD)/tests/mpi/%)
BENCHES  := $(BENCH_SRC:bench/%.c=$(BUILD)/bench/%)
# libFuzzer harnesses (tests/fuzz/fuzz_NAME.c): replay_NAME (any compiler, runs the committed
# corpus in make check) and, with FUZZ=1, fuzz_NAME (clang + libFuzzer)
FUZZ_NAMES := $(sort $(patsubst tests/fuzz/fuzz_%.c,%,$(filter-out tests/fuzz/fuzz_util.c,$(wildcard tests/fuzz/fuzz_*.c))))
REPLAYS  := $(FUZZ_NAMES:%=$(BUILD)/tests/fuzz/replay_%)
FUZZ_BINS := $(FUZZ_NAMES:%=$(BUILD)/fuzzers/fuzz_%)
FUZZ_SECONDS ?= 600
FUZZERS  ?= $(FUZZ_NAMES)

ifneq ($(NVCC),)
  NVCCFLAGS := -O3 -g -std=c++17 -gencode arch=compute_90,code=sm_90 -I. -Xcompiler -Wall,-Wextra,-Werror $(MPI_CFLAGS)
  CU_OBJ    := $(CU_SRC:%.cu=$(BUILD)/obj/%.cu.o)
  CUDA_LIBS := -L$(CUDA_HOME)/lib64 -lcublasLt -lcublas -lnccl -lcudart -lstdc++ -Wl,-rpath,$(CUDA_HOME)/lib64
  CFLAGS    += -DMOEPLAN_HAVE_CUDA -I$(CUDA_HOME)/include
  GPUTESTS  := $(GPUTEST_SRC:tests/gpu/%.cu=$(BUILD)/gpu-tests/%)
  PARTS     := core simulator planner executor(cpu+cuda) kernels(cpu+cuda) cli
else
  PARTS     := core simulator planner executor(cpu) kernels(cpu) cli  [no nvcc: CUDA parts skipped]
endif

.PHONY: all run check test test-san test-mpi gpu-build gpu-test bench bundle deps clean fuzz fuzz-build
all: $(BUILD)/moeplan $(TESTS) $(MPITESTS) $(BENCHES) $(REPLAYS)
	@echo "moeplan: built $(PARTS) into $(BUILD)/"

deps:
	@scripts/install-deps.sh

$(BUILD)/gen/catalog_data.c: $(BUILD)/tools/embed $(CATALOG)
	@mkdir -p $(dir $@)
	$(BUILD)/tools/embed $(CATALOG) > $@.tmp && mv $@.tmp $@

$(BUILD)/tools/embed: tools/embed.c
	@mkdir -p $(dir $@)
	$(CC) -std=c11 -O2 -Wall -Wextra -Werror -o $@ $<

$(BUILD)/obj/gen/catalog_data.o: $(BUILD)/gen/catalog_data.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c -o $@ $<

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c -o $@ $<

$(BUILD)/obj/%.cu.o: %.cu
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCCFLAGS) -c -o $@ $<

$(BUILD)/libmoeplan.a: $(LIB_OBJ) $(CU_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/moeplan: $(CLI_OBJ) $(BUILD)/libmoeplan.a
	$(CC) $(LDFLAGS) -o $@ $(CLI_OBJ) $(BUILD)/libmoeplan.a $(CUDA_LIBS) $(LDLIBS)

$(BUILD)/tests/%: tests/%.c $(BUILD)/libmoeplan.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(BUILD)/libmoeplan.a $(CUDA_LIBS) -lcmocka $(LDLIBS)

# the multi-rank suites share tests/mpi/exec_test_harness.c (the more specific
# pattern wins over $(BUILD)/tests/% for them; the object is named as a target
# so that make does not pass that pattern over for the shorter chain)
MPIHARNESS_OBJ := $(BUILD)/obj/tests/mpi/exec_test_harness.o
$(MPIHARNESS_OBJ): tests/mpi/exec_test_harness.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c -o $@ $<

$(BUILD)/tests/mpi/%: tests/mpi/%.c $(MPIHARNESS_OBJ) $(BUILD)/libmoeplan.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(MPIHARNESS_OBJ) $(BUILD)/libmoeplan.a $(CUDA_LIBS) -lcmocka $(LDLIBS)

$(BUILD)/bench/%: bench/%.c $(BUILD)/libmoeplan.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(BUILD)/libmoeplan.a $(CUDA_LIBS) $(LDLIBS)

$(BUILD)/tests/fuzz/replay_%: tests/fuzz/replay.c tests/fuzz/fuzz_%.c tests/fuzz/fuzz_util.c tests/fuzz/fuzz_util.h $(BUILD)/libmoeplan.a
	@mkdir -p $(dir $@)
	$(CC) $(filter-out -MMD -MP,$(CFLAGS)) $(LDFLAGS) -o $@ tests/fuzz/replay.c tests/fuzz/fuzz_$*.c tests/fuzz/fuzz_util.c $(BUILD)/libmoeplan.a $(CUDA_LIBS) $(LDLIBS)

$(BUILD)/fuzzers/fuzz_%: tests/fuzz/fuzz_%.c tests/fuzz/fuzz_util.c tests/fuzz/fuzz_util.h $(BUILD)/libmoeplan.a
	@mkdir -p $(dir $@)
	$(CC) $(filter-out -MMD -MP,$(CFLAGS)) $(LDFLAGS) -fsanitize=fuzzer -o $@ tests/fuzz/fuzz_$*.c tests/fuzz/fuzz_util.c $(BUILD)/libmoeplan.a $(LDLIBS)

fuzz-build: $(FUZZ_BINS)

# builds with clang (scripts/install-deps.sh fuzz installs it), then runs each harness in turn
fuzz:
	@scripts/install-deps.sh fuzz
	@$(MAKE) --no-print-directory FUZZ=1 fuzz-build
	@scripts/run-fuzz.sh build/fuzz $(FUZZ_SECONDS) $(FUZZERS)

# GPU tests: nvcc compiles, the C compiler links (nvcc rejects -Wl, options)
$(BUILD)/obj/tests/gpu/%.cu.o: tests/gpu/%.cu
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCCFLAGS) -c -o $@ $<

$(BUILD)/gpu-tests/%: $(BUILD)/obj/tests/gpu/%.cu.o $(BUILD)/libmoeplan.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -Wl,-rpath,'$$ORIGIN/../lib' -o $@ $< $(BUILD)/libmoeplan.a $(CUDA_LIBS) $(LDLIBS)

run: deps
	@$(MAKE) --no-print-directory all
	$(BUILD)/moeplan search --model mixtral-8x22b --cluster dgx-h100 --gpus 128

test: all
	@scripts/run-tests.sh $(BUILD)

test-san:
	@$(MAKE) --no-print-directory SAN=1 all
	@scripts/run-tests.sh build/asan

check: deps
	@$(MAKE) --no-print-directory all
	@$(MAKE) --no-print-directory SAN=1 all
	@scripts/run-tests.sh $(BUILD) build/asan

gpu-build: all $(GPUTESTS)

gpu-test: gpu-build
	@scripts/run-gpu-tests.sh $(BUILD)

bundle: gpu-build
	@scripts/bundle-libs.sh $(BUILD)

clean:
	rm -rf build

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
