# coprocess: build the library, run every test, install.
#   make build      release build of target/release/libcoprocess.so (+ include/api.h)
#   make test       everything: cargo tests, header check, C harness, C harness under valgrind
#   make ctest      the C harness against the real library
#   make valgrind   the C harness under valgrind memcheck (zero errors, zero leaks)
#   make demo       the Go gateway demo: Redis, an upstream echo service and the gateway on 127.0.0.1
#   make go-test    the Go host's tests (race detector on): binding package, gateway, demo directory
#   make go-bench   Go benchmarks: cgo round trip vs pure Go vs marshal+unmarshal, 1 and 2 CPUs
#   make c-demo     the C demo host dispatching a few Objects through the library
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
VALGRIND := valgrind --quiet --error-exitcode=99 --leak-check=full --show-leak-kinds=definite,indirect,possible \
	--errors-for-leak-kinds=definite,indirect,possible
CTESTS := $(patsubst ctests/%.c,$(BUILD)/%,$(wildcard ctests/test_*.c))

setup:
	@bash scripts/setup.sh

.PHONY: setup all build test rust-test check-header ctest valgrind demo c-demo install pc clean \
	go-build go-test go-bench go-pb gateway-demo

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

demo: setup
	$(MAKE) gateway-demo

test: setup
	$(MAKE) rust-test check-header ctest valgrind go-test

# ---- The Go host (go/): offline module mode over Debian's Go packages (see go/go.mod).
GO ?= go
GOBIN_DIR := $(CURDIR)/$(BUILD)/go
GOENV := PKG_CONFIG_PATH=$(CURDIR)/$(BUILD)/pkgconfig GOPROXY=off GOFLAGS=-mod=mod GOTOOLCHAIN=local
BENCHTIME ?= 2s
BENCHCOUNT ?= 5

go-build: pc
	cd go && $(GOENV) $(GO) build -o $(GOBIN_DIR)/ ./cmd/gateway ./cmd/demo ./cmd/echo

go-test: pc
	@cd go && test -z "$$(gofmt -l .)" || { echo "gofmt needed:"; gofmt -l .; exit 1; }
	cd go && $(GOENV) $(GO) vet ./...
	cd go && $(GOENV) GODEBUG=cgocheck=2 $(GO) test -race -count=1 ./...

go-bench: pc
	cd go && $(GOENV) $(GO) test -run '^$$' -bench . -benchmem -benchtime $(BENCHTIME) -count $(BENCHCOUNT) -cpu 1,2 ./coprocess/

gateway-demo: go-build
	$(GOBIN_DIR)/demo -dir go/demo -gateway $(GOBIN_DIR)/gateway

# Regenerate go/pb (committed) with a protoc-gen-go built from Debian's protobuf sources.
go-pb:
	@mkdir -p $(BUILD)/protoc-gen-go
	GO111MODULE=off GOPATH=$(CURDIR)/$(BUILD)/protoc-gen-go:/usr/share/gocode GOBIN=$(CURDIR)/$(BUILD)/protoc-gen-go/bin \
	  $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go
	PATH=$(CURDIR)/$(BUILD)/protoc-gen-go/bin:$$PATH protoc -Iproto --go_out=go/pb --go_opt=paths=source_relative proto/coprocess.proto

# pkg-config file for in-tree builds (cgo: PKG_CONFIG_PATH=$(CURDIR)/build/pkgconfig).
pc: build
	@mkdir -p $(BUILD)/pkgconfig
	@printf 'libdir=%s\nincludedir=%s\n\nName: coprocess\nDescription: native gateway plugin middleware (coprocess ABI)\nVersion: 0.1.0\nLibs: -L$${libdir} -Wl,-rpath,$${libdir} -lcoprocess\nCflags: -I$${includedir}\n' \
	  "$(LIBDIR)" "$(CURDIR)/include" > $(BUILD)/pkgconfig/coprocess.pc

install: build
	install -d $(DESTDIR)$(PREFIX)/lib $(DESTDIR)$(PREFIX)/include/coprocess $(DESTDIR)$(PREFIX)/lib/pkgconfig
	install -m 0755 $(LIB) $(DESTDIR)$(PREFIX)/lib/libcoprocess.so
	install -m 0644 include/api.h $(DESTDIR)$(PREFIX)/include/coprocess/api.h
	printf 'prefix=%s\nlibdir=$${prefix}/lib\nincludedir=$${prefix}/include/coprocess\n\nName: coprocess\nDescription: native gateway plugin middleware (coprocess ABI)\nVersion: 0.1.0\nLibs: -L$${libdir} -lcoprocess\nCflags: -I$${includedir}\n' \
	  "$(PREFIX)" > $(DESTDIR)$(PREFIX)/lib/pkgconfig/coprocess.pc

clean:
	rm -rf $(BUILD)
	$(CARGO) clean
