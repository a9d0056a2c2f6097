# Meridian. Two commands matter: `make run` and `make test`.
SHELL := /bin/bash
export PATH := /usr/local/go/bin:$(HOME)/go/bin:$(PATH)
# The module has no cgo; CGO_ENABLED=1 is for the race detector alone
# (go test -race needs cgo). `make nocgo` proves the static build.
export CGO_ENABLED := 1
GO ?= go
# Count-based budgets: a wall-clock -fuzztime races the coordinator in Go 1.26
# (golang/go#75804) and fails with a bare "context deadline exceeded".
# Short runs do not minimize new inputs (scripts/fuzz.sh): minimization is
# outside the count budget and could take a minute per input.
FUZZTIME ?= 20000x
FUZZMINIMIZE ?= 0

.PHONY: bench-results run test lint vet staticcheck unit nocgo nocgo-short fuzz-short fuzz bench bench-memory sim sim-long build binaries proto proto-check accuracy txn-long txn-long-etcd bench-smoke

build:
	$(GO) build ./...

# The binaries into bin/, built as they are released (internal/release:
# static, without gRPC's request tracing); what the benchmarks run.
binaries:
	CGO_ENABLED=0 $(GO) build -tags grpcnotrace -o bin/ ./cmd/...

# A demonstration: no sources, this host's clock served as a local reference
# (intervals relative to it, not UTC; the log and `meridianctl status` say so).
run:
	$(GO) run ./cmd/meridiand --local-stratum 10

test: proto-check lint unit nocgo-short bench-smoke fuzz-short

lint: vet staticcheck

vet:
	@test -z "$$(gofmt -l .)" || { echo 'gofmt needed:'; gofmt -l .; exit 1; }
	$(GO) vet ./...

staticcheck:
	$(GO) tool staticcheck ./...

unit:
	$(GO) test -race -count=1 -timeout 20m ./...

# Without cgo: everything builds, and the packages that read the host's
# clocks (the vDSO caller and everything above it) pass their tests.
# `make nocgo` runs the whole suite that way.
NOCGO_PKGS := ./clock/... ./truetime/... ./client/... ./hlc/... ./internal/archtest/ ./daemon/
nocgo-short:
	CGO_ENABLED=0 $(GO) build ./...
	CGO_ENABLED=0 $(GO) test -count=1 $(NOCGO_PKGS)

nocgo:
	CGO_ENABLED=0 $(GO) build ./...
	CGO_ENABLED=0 $(GO) test -count=1 -timeout 30m ./...

# Short runs of every fuzz target (each package's Fuzz* functions).
fuzz-short:
	@FUZZTIME=$(FUZZTIME) FUZZMINIMIZE=$(FUZZMINIMIZE) ./scripts/fuzz.sh

fuzz:
	@FUZZTIME=2000000x FUZZMINIMIZE=60s ./scripts/fuzz.sh

bench:
	$(GO) test -run '^$$' -bench . -benchmem -count=1 ./...
	$(MAKE) bench-results

# Every meridian-bench subcommand with full settings (about 15 minutes; root,
# chrony, linuxptp, iproute2 and /dev/net/tun for ptp-server and accuracy)
# into $(BENCH_OUT), then bench/RESULTS.md and its plots rendered from
# $(BENCH_OUT)/results.json (nothing in it is typed in).
BENCH_OUT ?= bench/out
# Taken when make starts: the commit the binaries are built from.
BENCH_COMMIT := $(shell git rev-parse --short HEAD 2>/dev/null)$(shell git diff --quiet HEAD 2>/dev/null || echo +uncommitted)
bench-results:
	rm -rf $(BENCH_OUT)
	CGO_ENABLED=0 $(GO) build -tags grpcnotrace -o bin/meridiand ./cmd/meridiand
	$(GO) build -o bin/meridian-bench ./cmd/meridian-bench
	$(GO) build -o bin/ntpfloor ./interop/testdata/ntpfloor
	./bin/meridian-bench ntp-server --duration 5s --rounds 5 --servers bare,bare-rx,meridiand,chronyd --bare bin/ntpfloor --out $(BENCH_OUT)
	./bin/meridian-bench ptp-server --meridiand bin/meridiand --out $(BENCH_OUT)
	./bin/meridian-bench truetime --meridiand bin/meridiand --out $(BENCH_OUT)
	./bin/meridian-bench commit-wait --out $(BENCH_OUT)
	./bin/meridian-bench sim --worlds 200 --seed 1 --out $(BENCH_OUT)
	./bin/meridian-bench accuracy --meridiand bin/meridiand --measure 60s --out $(BENCH_OUT)
	./bin/meridian-bench stability --out $(BENCH_OUT)
	./bin/meridian-bench report --out $(BENCH_OUT) --markdown bench/RESULTS.md \
	  --run "commit $(BENCH_COMMIT), $$(date -u +%Y-%m-%dT%H:%MZ), $$(nproc) cores ($$(uname -r)); reproduce: make bench-results"


# meridiand's memory (docs/memory.md): idle, under an open-loop NTP load of
# 100k requests/s for 10 s (meridiand and the generator on different CPUs),
# and with 1000 gRPC Watch streams; twice. make test runs a lighter load.
bench-memory:
	MERIDIAN_MEMORY_FULL=1 $(GO) test -count=2 -v -run '^TestMemory' ./interop/

# Every meridian-bench subcommand in reduced form (seconds each), checked for
# well-formed output with measured numbers; in make test (CI). First the NTP
# server's regression guard (~35 s): meridiand, chronyd and the bare
# responder (interop/testdata/ntpfloor) under the same load in one run, 5
# rounds of 2 s; it fails when a median ratio of replies per server-CPU-second
# falls below its floor minus the noise margin (cmd/meridian-bench/smoke.go)
# or any reply is bad (without chronyd its ratio is skipped, except under
# CI=true, where that fails). Then the smoke tests of the other subcommands.
bench-smoke:
	CGO_ENABLED=0 $(GO) build -tags grpcnotrace -o bin/meridiand ./cmd/meridiand
	$(GO) build -o bin/meridian-bench ./cmd/meridian-bench
	$(GO) build -o bin/ntpfloor ./interop/testdata/ntpfloor
	./bin/meridian-bench ntp-server --smoke --json --duration 2s --rounds 5 --bare bin/ntpfloor
	MERIDIAN_BENCH_SMOKE=1 $(GO) test -count=1 -v -timeout 10m -run 'Smoke' ./cmd/meridian-bench/

# Regenerate the gRPC API from api/**/*.proto with protoc (Debian's
# protobuf-compiler) and the plugin versions pinned as tools in go.mod.
PROTOS := $(shell find api -name '*.proto')
proto:
	@mkdir -p bin
	$(GO) build -o bin/protoc-gen-go google.golang.org/protobuf/cmd/protoc-gen-go
	$(GO) build -o bin/protoc-gen-go-grpc google.golang.org/grpc/cmd/protoc-gen-go-grpc
	protoc -I api --plugin=protoc-gen-go=bin/protoc-gen-go --plugin=protoc-gen-go-grpc=bin/protoc-gen-go-grpc \
	  --go_out=api --go_opt=paths=source_relative \
	  --go-grpc_out=api --go-grpc_opt=paths=source_relative $(PROTOS)

# CI: the committed generated code must be what `make proto` produces.
proto-check: proto
	@git diff --exit-code -- api || { echo 'generated code is stale: run make proto and commit'; exit 1; }
	@test -z "$$(git status --porcelain -- api)" || { echo 'untracked generated files:'; git status --porcelain -- api; exit 1; }

sim:
	$(GO) run ./cmd/meridian-sim run sim/scenarios

# The long campaign: the scenario matrix at 10× duration, then 20,000 random
# worlds (≥ 10⁸ checked reads); the first broken world is shrunk and printed.
sim-long:
	$(GO) run ./cmd/meridian-sim run --duration-scale 10 sim/scenarios
	$(GO) run ./cmd/meridian-sim fuzz --worlds 20000 --seed 1

# 10⁵ transactions (bank transfers and audits) from skewed-clock nodes on
# memory shards through the external-consistency and serializability checker.
TXN_LONG_TXNS ?= 100000
txn-long:
	MERIDIAN_TXN_LONG_TXNS=$(TXN_LONG_TXNS) $(GO) test -count=1 -timeout 30m -run '^TestLongRunBank$$' -v ./txn/

# Our NTP client against chronyd -x on four impaired paths (needs root,
# chrony, iproute2, /dev/net/tun): the table is logged and written as JSON.
# MERIDIAN_ACCURACY_SECONDS sets the measured span (default 120 s after a
# 30 s warm-up); MERIDIAN_ACCURACY_STRICT=1 asserts ours ≤ chrony's median.
ACCURACY_OUT ?= accuracy.json
accuracy:
	MERIDIAN_ACCURACY_OUT=$(abspath $(ACCURACY_OUT)) $(GO) test -count=1 -v -timeout 15m -run '^TestAccuracyVsChrony$$' ./interop/

# The same on etcd: bank transfers and audits with skewed clocks and commit
# wait over three independent 3-member embedded etcd clusters, through both
# checkers (TXN_LONG_TXNS transactions). make txn-long runs it first.
txn-long-etcd:
	MERIDIAN_TXN_LONG_TXNS=$(TXN_LONG_TXNS) $(GO) test -count=1 -v -timeout 90m -run '^TestDBOnThreeClusters$$' ./txn/etcd/
txn-long: txn-long-etcd
