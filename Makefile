# coprocess: build the library, run every test, install.
#   make build      release build of target/release/libcoprocess.so (+ include/api.h)
#   make test       everything: cargo tests, header check, C harness, C harness under valgrind
#   make ctest      the C harness against the real library
#   make valgrind   the C harness under valgrind memcheck (zero errors, zero leaks)
#   make demo       the Go gateway demo: Redis, an upstream echo service and the gateway on 127.0.0.1
#   make go-test    the Go host's tests (race detector on): binding package, gateway, demo directory
#   make go-bench   Go benchmarks: cgo round trip vs pure Go vs marshal+unmarshal, 1 and 2 CPUs
#   make c-demo     the C demo host dispatching a few Objects through the library
#   make bench-compare  Dispatch vs its floors, embedded Python, gRPC and the Go benchmarks: one table
#                   (bench/results.md); `make bench-smoke` only checks the Python peer's verdicts
#   make grpc-test  the gRPC server (grpc/): its Rust tests, then Go's gRPC client against the binary
#   make grpc-bench HMAC-auth dispatch in-process vs through the gRPC server (unix socket, TCP)
#   make install    PREFIX=/usr/local: library, header and coprocess.pc

PREFIX ?= /usr/local
CC ?= cc
CARGO ?= cargo
BUILD := build
LIBDIR := $(CURDIR)/target/release
LIB := $(LIBDIR)/libcoprocess.so
PB := $(BUILD)/pb
CFLAGS_STRICT := -std=c99 -Wall -Wextra -Werror -O1 -g
CINC := -Iinclude -I$(PB) -Ictests
# -rdynamic puts the host functions the programs define into their dynamic symbol table,
# where the library's weak imports find them.
CLINK := -L$(LIBDIR) -Wl,-rpath,$(LIBDIR) -lcoprocess -lprotobuf-c -rdynamic
VALGRIND := valgrind --quiet --error-exitcode=99 --suppressions=$(CURDIR)/ctests/valgrind.supp --leak-check=full --show-leak-kinds=definite,indirect,possible \
	--errors-for-leak-kinds=definite,indirect,possible
CTESTS := $(patsubst ctests/%.c,$(BUILD)/%,$(wildcard ctests/test_*.c))

setup:
	@bash scripts/setup.sh

.PHONY: setup all build test fmt-check rust-test check-header check-symbols ctest valgrind asan examples doc stress fuzz \
	demo c-demo install pc clean go-build go-test go-bench go-pb gateway-demo \
	bench-compare bench-smoke bench-driver bench-py \
	grpc-build grpc-test grpc-bench

all: build

build:
	$(CARGO) build --release --locked

$(LIB): build

rust-test:
	$(CARGO) test --release --locked

# A fresh build must not change the committed header.
check-header: build
	@if git rev-parse --git-dir >/dev/null 2>&1; then \
	  git diff --exit-code -- include/api.h || { echo "include/api.h is stale: commit the regenerated header"; exit 1; }; \
	  echo "include/api.h matches a fresh build"; fi
	$(CC) -std=c99 -Wall -Wextra -Werror -pedantic -fsyntax-only -Iinclude -x c include/api.h

$(PB)/coprocess.pb-c.c $(PB)/coprocess.pb-c.h: proto/coprocess.proto
	@mkdir -p $(PB)
	protoc-c --c_out=$(PB) -Iproto proto/coprocess.proto

$(BUILD)/pb.o: $(PB)/coprocess.pb-c.c
	$(CC) -O1 -g -c -I$(PB) $< -o $@

$(BUILD)/harness.o: ctests/harness.c ctests/harness.h include/api.h $(PB)/coprocess.pb-c.h
	$(CC) $(CFLAGS_STRICT) $(CINC) -c $< -o $@

$(BUILD)/test_%: ctests/test_%.c $(BUILD)/harness.o $(BUILD)/pb.o build
	$(CC) $(CFLAGS_STRICT) $(CINC) $< $(BUILD)/harness.o $(BUILD)/pb.o $(CLINK) -o $@

# Defines no host function: no -rdynamic needed, none to find.
$(BUILD)/nohost: ctests/nohost.c $(BUILD)/pb.o build
	$(CC) $(CFLAGS_STRICT) $(CINC) $< $(BUILD)/pb.o -L$(LIBDIR) -Wl,-rpath,$(LIBDIR) -lcoprocess -lprotobuf-c -o $@

ctest: $(CTESTS) $(BUILD)/nohost
	@set -e; for t in $(CTESTS) $(BUILD)/nohost; do echo "== $$t"; $$t; done

valgrind: $(CTESTS) $(BUILD)/nohost
	@set -e; for t in $(CTESTS) $(BUILD)/nohost; do echo "== valgrind $$t"; $(VALGRIND) $$t; done

$(BUILD)/demo: ctests/demo.c $(BUILD)/harness.o $(BUILD)/pb.o build
	$(CC) $(CFLAGS_STRICT) $(CINC) $< $(BUILD)/harness.o $(BUILD)/pb.o $(CLINK) -o $@

c-demo: setup
	$(MAKE) $(BUILD)/demo
	$(BUILD)/demo

# An example plugin crate builds its own .so (export_plugin!) and the C harness dispatches to
# it through the same ABI; the example crates' own tests run too, and rustdoc must be clean.
EXAMPLE_LIB := $(LIBDIR)/librate_limit_plugin.so
examples:
	$(CARGO) test --release --locked -p hello-plugin -p rate-limit-plugin
	$(CARGO) build --release --locked -p rate-limit-plugin -p hello-plugin
	@for lib in $(EXAMPLE_LIB) $(LIBDIR)/libhello_plugin.so; do \
	  n=$$(nm -D --defined-only $$lib | grep -cwE 'Dispatch|DispatchEvent|Reload|CoProcessFree|CoProcessLastError|CoProcessAbiVersion'); \
	  test "$$n" = 6 || { echo "$$lib exports $$n of the 6 ABI symbols"; exit 1; }; done
	$(MAKE) $(BUILD)/example_rate_limit
	$(BUILD)/example_rate_limit
	$(VALGRIND) $(BUILD)/example_rate_limit

$(BUILD)/example_rate_limit: ctests/example_rate_limit.c $(BUILD)/harness.o $(BUILD)/pb.o
	$(CC) $(CFLAGS_STRICT) $(CINC) $< $(BUILD)/harness.o $(BUILD)/pb.o -L$(LIBDIR) -Wl,-rpath,$(LIBDIR) -l:librate_limit_plugin.so -lprotobuf-c -rdynamic -o $@

# The library's six exports and four weak host-function imports (docs/abi.md#exported-symbols).
check-symbols: build
	@n=$$(nm -D --defined-only $(LIB) | grep -cwE 'Dispatch|DispatchEvent|Reload|CoProcessFree|CoProcessLastError|CoProcessAbiVersion'); \
	  test "$$n" = 6 || { echo "libcoprocess.so exports $$n of the 6 ABI symbols"; exit 1; }
	@n=$$(nm -D --undefined-only $(LIB) | grep -wE 'TykTriggerEvent|CoProcessLog|TykStoreData|TykGetData|CoProcessStoreDataIfAbsent' | grep -c ' w '); \
	  test "$$n" = 5 || { echo "libcoprocess.so weakly imports $$n of the 5 host functions"; exit 1; }
	@echo "libcoprocess.so: 6 exports defined, 5 host functions imported weakly"

# The C harness built with clang's AddressSanitizer + LeakSanitizer (Debian's clang-14 and
# libclang-rt-14-dev). The Rust library is not instrumented, but ASan replaces malloc/free
# for the whole process, so a bad free, a double free or a leak of an answer buffer across
# the boundary is caught, and LSan checks every allocation at exit.
ASAN_CC ?= clang-14
ASAN_FLAGS := -std=c99 -Wall -Wextra -Werror -g -O1 -fsanitize=address -fno-omit-frame-pointer
asan: build $(PB)/coprocess.pb-c.c
	@mkdir -p $(BUILD)/asan
	@set -e; for t in $(wildcard ctests/test_*.c); do \
	  n=$$(basename $$t .c); \
	  $(ASAN_CC) $(ASAN_FLAGS) $(CINC) $$t ctests/harness.c $(PB)/coprocess.pb-c.c $(CLINK) -o $(BUILD)/asan/$$n; \
	  echo "== asan $$n"; ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:exitcode=98 $(BUILD)/asan/$$n; \
	done

# Concurrency stress through the real ABI (worker threads + a Reload loop).
$(BUILD)/stress: ctests/stress.c $(BUILD)/pb.o build
	$(CC) $(CFLAGS_STRICT) -D_POSIX_C_SOURCE=200809L $(CINC) $< $(BUILD)/pb.o $(CLINK) -pthread -o $@

stress: $(BUILD)/stress
	$(BUILD)/stress

# Fuzz smoke runs (cargo-fuzz on stable, no sanitizer): FUZZ_SECONDS per target. Long runs:
#   cd fuzz && cargo fuzz run -s none -O dispatch_structured -- -max_total_time=3600
FUZZ_SECONDS ?= 20
FUZZ_TARGETS := dispatch_bytes dispatch_structured dispatch_event wire_validate
fuzz:
	@command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --locked
	cd fuzz && $(CARGO) fuzz build -s none -O
	@set -e; for t in $(FUZZ_TARGETS); do \
	  mkdir -p fuzz/corpus/$$t; \
	  if [ -d fuzz/regressions/$$t ]; then (cd fuzz && $(CARGO) fuzz run -s none -O $$t regressions/$$t -- -runs=0); fi; \
	  (cd fuzz && $(CARGO) fuzz run -s none -O $$t corpus/$$t -- -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 > ../$(BUILD)/fuzz-$$t.log 2>&1) \
	    || { tail -40 $(BUILD)/fuzz-$$t.log; echo "fuzz target $$t failed; crash input under fuzz/artifacts/$$t"; exit 1; }; \
	  echo "$$t: $$(grep -h 'stat::number_of_executed_units' $(BUILD)/fuzz-$$t.log | awk '{print $$2}') executions, no crash"; \
	done

doc:
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --no-deps --locked -p coprocess

demo: setup
	$(MAKE) gateway-demo

# Formatting of every Rust crate (root workspace, fuzz/, bench/driver/), rustfmt.toml at the root.
fmt-check:
	$(CARGO) fmt --all --check
	cd fuzz && $(CARGO) fmt --check
	cd bench/driver && $(CARGO) fmt --check

test: setup
	$(MAKE) fmt-check rust-test check-header check-symbols ctest valgrind asan examples doc stress go-test grpc-test fuzz

# ---- The Go host (go/): offline module mode over Debian's Go packages (see go/go.mod).
GO ?= go
GOBIN_DIR := $(CURDIR)/$(BUILD)/go
GOENV := PKG_CONFIG_PATH=$(CURDIR)/$(BUILD)/pkgconfig GOPROXY=off GOFLAGS=-mod=mod GOTOOLCHAIN=local
BENCHTIME ?= 2s
BENCHCOUNT ?= 5

go-build: pc
	cd go && $(GOENV) $(GO) build -o $(GOBIN_DIR)/ ./cmd/gateway ./cmd/demo ./cmd/echo

# Every package but go/grpcclient, the gRPC server's client tests (make grpc-test runs them
# against the server binary).
go-test: pc
	@cd go && test -z "$$(gofmt -l .)" || { echo "gofmt needed:"; gofmt -l .; exit 1; }
	cd go && $(GOENV) $(GO) vet ./...
	cd go && $(GOENV) GODEBUG=cgocheck=2 $(GO) test -race -count=1 $$($(GOENV) $(GO) list ./... | grep -v '/grpcclient$$')

go-bench: pc
	cd go && $(GOENV) $(GO) test -run '^$$' -bench . -benchmem -benchtime $(BENCHTIME) -count $(BENCHCOUNT) -cpu 1,2 ./coprocess/

gateway-demo: go-build
	$(GOBIN_DIR)/demo -dir go/demo -gateway $(GOBIN_DIR)/gateway

# Regenerate go/pb (committed) with a protoc-gen-go built in the module from the same
# google.golang.org/protobuf sources (Debian's) the code links against.
go-pb:
	@mkdir -p $(BUILD)/protoc-gen-go
	cd go && $(GOENV) $(GO) build -o $(CURDIR)/$(BUILD)/protoc-gen-go/ google.golang.org/protobuf/cmd/protoc-gen-go
	PATH=$(CURDIR)/$(BUILD)/protoc-gen-go:$$PATH protoc -Iproto --go_out=go/pb --go_opt=paths=source_relative proto/coprocess.proto

# ---- make bench-compare: the library's Dispatch next to its floors and peers, one run,
# one table. Python peers run from a virtualenv under build/ (bench/requirements.txt, pinned);
# the native driver is its own cargo workspace (bench/driver). Not part of `make test`.
PYTHON ?= python3
BENCH := $(BUILD)/bench
BENCH_VENV := $(BENCH)/venv
BENCH_PY := $(BENCH_VENV)/bin/python
BENCH_DRIVER := $(BENCH)/target/release/coprocess-bench-driver
BENCH_ROUNDS ?= 7
BENCH_GO_BENCHTIME ?= 1s
BENCH_GO_COUNT ?= 3

$(BENCH_VENV)/.installed: bench/requirements.txt bench/setup-venv.sh
	PYTHON=$(PYTHON) bash bench/setup-venv.sh $(BENCH_VENV)
	touch $@

# coprocess_pb2.py from Debian's protoc, the gRPC stubs from grpcio-tools.
$(BENCH)/py/.generated: proto/coprocess.proto $(BENCH_VENV)/.installed
	@mkdir -p $(BENCH)/py
	protoc -Iproto --python_out=$(BENCH)/py proto/coprocess.proto
	$(BENCH_PY) -m grpc_tools.protoc -Iproto --grpc_python_out=$(BENCH)/py proto/coprocess.proto
	touch $@

bench-py: $(BENCH)/py/.generated

bench-driver: build
	CARGO_TARGET_DIR=$(CURDIR)/$(BENCH)/target COPROCESS_LIBDIR=$(LIBDIR) \
	  $(CARGO) build --release --locked --manifest-path bench/driver/Cargo.toml

bench-smoke: bench-driver bench-py
	PYTHONPATH=$(BENCH)/py $(BENCH_PY) bench/objects.py $(BENCH)/objects
	PYTHONPATH=$(BENCH)/py $(BENCH_PY) bench/smoke.py $(BENCH_DRIVER) $(BENCH)/objects

bench-compare: setup
	$(MAKE) pc bench-driver bench-py
	$(GOENV) $(BENCH_PY) bench/compare.py --driver $(BENCH_DRIVER) --gen $(BENCH)/py --objects $(BENCH)/objects \
	  --out bench/results.md --rounds $(BENCH_ROUNDS) --go-benchtime $(BENCH_GO_BENCHTIME) --go-count $(BENCH_GO_COUNT)

# pkg-config file for in-tree builds (cgo: PKG_CONFIG_PATH=$(CURDIR)/build/pkgconfig).
pc: build
	@mkdir -p $(BUILD)/pkgconfig
	@printf 'libdir=%s\nincludedir=%s\n\nName: coprocess\nDescription: native gateway plugin middleware (coprocess ABI)\nVersion: 0.1.0\nLibs: -L$${libdir} -Wl,-rpath,$${libdir} -lcoprocess\nCflags: -I$${includedir}\n' \
	  "$(LIBDIR)" "$(CURDIR)/include" > $(BUILD)/pkgconfig/coprocess.pc

# ---- The gRPC server (grpc/, package coprocess-grpc). Built and tested only with -p: the root
# package's `exports` feature must not be unified into it. Its Go client tests are the package
# go/grpcclient of the Go module (grpc-go from Debian's packages, see go/go.mod), run against
# the binary named by COPROCESS_GRPC_BIN.
GRPC_BIN := $(LIBDIR)/coprocess-grpc

grpc-build:
	$(CARGO) build --release --locked -p coprocess-grpc

grpc-test: grpc-build pc
	$(CARGO) test --release --locked -p coprocess-grpc
	@cd go && test -z "$$(gofmt -l .)" || { echo "gofmt needed:"; gofmt -l .; exit 1; }
	cd go && $(GOENV) $(GO) vet ./...
	cd go && $(GOENV) COPROCESS_GRPC_BIN=$(GRPC_BIN) $(GO) test -count=1 -v ./grpcclient/

grpc-bench: grpc-build pc
	$(CARGO) bench --locked -p coprocess-grpc --bench grpc
	cd go && $(GOENV) COPROCESS_GRPC_BIN=$(GRPC_BIN) $(GO) test -run '^$$' -bench . -benchtime $(BENCHTIME) -count $(BENCHCOUNT) ./grpcclient/

install: build
	install -d $(DESTDIR)$(PREFIX)/lib $(DESTDIR)$(PREFIX)/include/coprocess $(DESTDIR)$(PREFIX)/lib/pkgconfig
	install -m 0755 $(LIB) $(DESTDIR)$(PREFIX)/lib/libcoprocess.so
	install -m 0644 include/api.h $(DESTDIR)$(PREFIX)/include/coprocess/api.h
	printf 'prefix=%s\nlibdir=$${prefix}/lib\nincludedir=$${prefix}/include/coprocess\n\nName: coprocess\nDescription: native gateway plugin middleware (coprocess ABI)\nVersion: 0.1.0\nLibs: -L$${libdir} -lcoprocess\nCflags: -I$${includedir}\n' \
	  "$(PREFIX)" > $(DESTDIR)$(PREFIX)/lib/pkgconfig/coprocess.pc

clean:
	rm -rf $(BUILD)
	$(CARGO) clean
