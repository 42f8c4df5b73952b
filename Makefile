# fff build entry points. `make demo` and `make test` install what is missing
# (scripts/bootstrap.sh) and can run on a fresh machine.

# giouring reaches into the runtime with go:linkname; current Go refuses that
# unless the linker check is off. Every go command below inherits this.
export GOFLAGS += -ldflags=-checklinkname=0

GO       ?= go
BIN      := $(CURDIR)/bin
FUZZTIME ?= 10s
# Packages whose concurrency matters run under the race detector.
RACE_PKGS := ./ffrecord/... ./internal/... ./server/...

.PHONY: all build lib test test-python test-go test-fuse-dev test-race test-fdb vet-fdb fuzz demo bench lint deps clean chaos

all: build

deps:
	@scripts/bootstrap.sh go

build: deps
	@mkdir -p $(BIN)
	$(GO) build -o $(BIN)/ ./cmd/...

# The C API (docs/capi.md): build/libfff.so and the cgo-generated
# build/libfff.h (C programs include libfff/capi/fff.h).
lib: deps
	@mkdir -p $(CURDIR)/build
	$(GO) build -buildmode=c-shared -o $(CURDIR)/build/libfff.so ./libfff/capi

lint: deps
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

test: lint vet-fdb test-go test-fuse-dev test-race fuzz test-python

# The Python package against a real local cluster (tests/python; docs/python.md).
test-python: deps
	@scripts/bootstrap.sh python
	.venv/bin/python -m pytest -q tests/python

# gotestsum (a go.mod tool) prints a dot per finished test, so the long
# end-to-end packages show progress, and repeats every failure at the end.
# The .venv (python) is for the chaos test's fff.torch DataLoader.
test-go: deps
	@scripts/bootstrap.sh test python
	$(GO) tool gotestsum --format dots -- -count=1 ./...

# The long form of the replication chaos test (tests/chaos_test.go; `make test`
# runs its reduced form): about ten minutes of kill -9s, restarts and SIGSTOPs
# of storage nodes under writers, readers and an fff.torch DataLoader (from
# the .venv that `scripts/bootstrap.sh python` makes). FFF_CHAOS_SEED=N
# replays another seed, FFF_CHAOS_KEEP=1 keeps the cluster's data and logs.
chaos: deps
	@scripts/bootstrap.sh python
	FFF_CHAOS_LONG=1 $(GO) test -count=1 -timeout 40m -run '^TestChaos$$' -v ./tests/

# test-go mounts through FUSE over io_uring where the kernel has it (the
# tests turn fuse.enable_uring on, as root); this runs every test that
# mounts once more through /dev/fuse (docs/fuse.md, "Transports").
FUSE_TESTS = ^Test(FUSE|SecurityMount|CLIEdgesMountTwice)
test-fuse-dev: deps
	FFF_TEST_FUSE_TRANSPORT=dev $(GO) tool gotestsum --format dots -- -count=1 -run '$(FUSE_TESTS)' ./tests/

test-race: deps
	$(GO) test -count=1 -race $(RACE_PKGS)

# The KV conformance suite against a real FoundationDB cluster (docs/kv.md).
# Needs libfdb_c (the foundationdb-clients package) and FDB_CLUSTER_FILE.
test-fdb: deps
	@test -n "$$FDB_CLUSTER_FILE" || { echo "test-fdb: set FDB_CLUSTER_FILE to your cluster file (e.g. /etc/foundationdb/fdb.cluster)" >&2; exit 2; }
	$(GO) test -count=1 -tags fdb ./server/kv/...

# Type-checks the FDB backend without libfdb_c, against a declarations-only header.
vet-fdb: deps
	CGO_CFLAGS=-I$(CURDIR)/server/kv/fdbkv/testdata/fdbcstub $(GO) vet -tags fdb ./server/kv/... ./cmd/fffd

fuzz: deps
	@FUZZTIME=$(FUZZTIME) scripts/fuzz.sh

demo: build
	@scripts/demo.sh

bench: build
	@scripts/bootstrap.sh bench python demo
	$(GO) run ./bench $(BENCHFLAGS)

clean:
	rm -rf $(BIN)
