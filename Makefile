# Makefile - builds pandit (daemon + BPF skeletons), its tests, fuzzers and benchmarks.
# `make` builds build/pandit; `make test` and `make run` install missing Debian packages first.

BUILD    ?= build
CC       ?= gcc
CLANG    ?= clang
BPFTOOL  ?= bpftool
ARCH_INC := /usr/include/$(shell uname -m)-linux-gnu

WARN     := -Wall -Wextra -Werror
CFLAGS   ?= -O2 -g
CFLAGS   += -std=gnu11 $(WARN) -D_GNU_SOURCE -Isrc -I$(BUILD)/skel -MMD -MP
LDLIBS   := -lbpf -lelf -lz -lyaml -lcap -lpthread -lm
BPFFLAGS := -O2 -g -target bpf -mcpu=v3 -std=gnu11 $(WARN) -I$(ARCH_INC) -Ibpf

SRCS     := $(shell find src -name '*.c' ! -name main.c | sort)
OBJS     := $(SRCS:%.c=$(BUILD)/obj/%.o)
BPF_SRCS := $(wildcard bpf/*.bpf.c)
BPF_OBJS := $(BPF_SRCS:bpf/%.bpf.c=$(BUILD)/bpf/%.bpf.o)
SKELS    := $(BPF_SRCS:bpf/%.bpf.c=$(BUILD)/skel/%.skel.h)
LIB      := $(BUILD)/libpandit.a

UNIT_SRCS := $(wildcard tests/unit/test_*.c)
UNIT_BINS := $(UNIT_SRCS:tests/unit/%.c=$(BUILD)/tests/%)
BPFT_SRCS := $(wildcard tests/bpf/test_*.c)
BPFT_BINS := $(BPFT_SRCS:tests/bpf/%.c=$(BUILD)/tests/bpf_%)
TOOL_SRCS := $(wildcard tools/*.c)
TOOL_BINS := $(TOOL_SRCS:tools/%.c=$(BUILD)/%)

# sanitizer build of the library and unit tests (clang, ASan + UBSan)
SAN      := $(BUILD)/san
SANFLAGS := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
SAN_OBJS := $(SRCS:%.c=$(SAN)/obj/%.o)
SAN_UNIT := $(UNIT_SRCS:tests/unit/%.c=$(SAN)/tests/%)

# libFuzzer harnesses
FUZ      := $(BUILD)/fuzz
FUZFLAGS := -O1 -g -fno-omit-frame-pointer -fsanitize=fuzzer-no-link,address,undefined
FUZ_OBJS := $(SRCS:%.c=$(FUZ)/obj/%.o)
FUZ_SRCS := $(wildcard tests/fuzz/fuzz_*.c)
FUZ_BINS := $(FUZ_SRCS:tests/fuzz/%.c=$(FUZ)/%)
FUZZ_SECONDS ?= 20

.PHONY: all deps test run bench fuzz fuzz-smoke unit unit-san bpf-test integration integration-san clean
.DELETE_ON_ERROR:
# keep intermediate objects (BPF objects, test objects): no rebuilds, no rm noise
.SECONDARY:

all: $(BUILD)/pandit $(TOOL_BINS)

deps:
	@scripts/deps.sh

# --- BPF -------------------------------------------------------------------
$(BUILD)/bpf/%.bpf.o: bpf/%.bpf.c $(wildcard bpf/*.h) | $(BUILD)/bpf
	$(CLANG) $(BPFFLAGS) -c $< -o $@

$(BUILD)/skel/%.skel.h: $(BUILD)/bpf/%.bpf.o | $(BUILD)/skel
	$(BPFTOOL) gen skeleton $< name $(subst -,_,$*)_bpf > $@

# --- daemon ----------------------------------------------------------------
$(BUILD)/obj/%.o: %.c | $(SKELS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(LIB): $(OBJS)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/pandit: $(BUILD)/obj/src/main.o $(LIB)
	$(CC) $(CFLAGS) $^ -o $@ $(LDLIBS)

$(BUILD)/%: $(BUILD)/obj/tools/%.o $(LIB)
	$(CC) $(CFLAGS) $^ -o $@ $(LDLIBS)

# --- tests -----------------------------------------------------------------
$(BUILD)/tests/%: $(BUILD)/obj/tests/unit/%.o $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $^ -o $@ $(LDLIBS) -lcmocka

$(BUILD)/tests/bpf_%: $(BUILD)/obj/tests/bpf/%.o $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $^ -o $@ $(LDLIBS) -lcmocka

$(SAN)/obj/%.o: %.c | $(SKELS)
	@mkdir -p $(dir $@)
	$(CLANG) $(CFLAGS) $(SANFLAGS) -c $< -o $@

$(SAN)/libpandit.a: $(SAN_OBJS)
	@rm -f $@
	ar rcs $@ $^

$(SAN)/pandit: $(SAN)/obj/src/main.o $(SAN)/libpandit.a
	$(CLANG) $(CFLAGS) $(SANFLAGS) $^ -o $@ $(LDLIBS)

$(SAN)/tests/%: $(SAN)/obj/tests/unit/%.o $(SAN)/libpandit.a
	@mkdir -p $(dir $@)
	$(CLANG) $(CFLAGS) $(SANFLAGS) $^ -o $@ $(LDLIBS) -lcmocka

$(FUZ)/obj/%.o: %.c | $(SKELS)
	@mkdir -p $(dir $@)
	$(CLANG) $(CFLAGS) $(FUZFLAGS) -c $< -o $@

$(FUZ)/libpandit.a: $(FUZ_OBJS)
	@rm -f $@
	ar rcs $@ $^

$(FUZ)/fuzz_%: $(FUZ)/obj/tests/fuzz/fuzz_%.o $(FUZ)/libpandit.a
	$(CLANG) $(CFLAGS) -fsanitize=fuzzer,address,undefined $^ -o $@ $(LDLIBS)

unit: $(UNIT_BINS)
	@scripts/run-unit.sh unit $(UNIT_BINS)

unit-san: $(SAN_UNIT)
	@ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
		scripts/run-unit.sh unit-san $(SAN_UNIT)

bpf-test: $(BPFT_BINS)
	@scripts/run-unit.sh bpf-test $(BPFT_BINS)

fuzz-smoke: $(FUZ_BINS)
	@scripts/run-fuzz.sh 10 $(FUZ_BINS)

fuzz: $(FUZ_BINS)
	@scripts/run-fuzz.sh $(FUZZ_SECONDS) $(FUZ_BINS)

integration: all
	@scripts/run-integration.sh

# the integration suite once more against the daemon built with ASan + UBSan
integration-san: all $(SAN)/pandit
	@PANDIT_BIN=$(abspath $(SAN)/pandit) ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 \
		UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 scripts/run-integration.sh

test: deps
	@$(MAKE) --no-print-directory all
	@# -k: every suite runs and prints its summary even when an earlier one failed
	@$(MAKE) -k --no-print-directory unit unit-san bpf-test fuzz-smoke integration integration-san

run: deps
	@$(MAKE) --no-print-directory all
	@scripts/quickstart.sh

bench: deps
	@$(MAKE) --no-print-directory all
	@bench/run.sh

$(BUILD)/bpf $(BUILD)/skel:
	@mkdir -p $@

clean:
	rm -rf $(BUILD)

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
