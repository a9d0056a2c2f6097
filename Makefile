# Meridian. Two commands matter: `make run` and `make test`.
SHELL := /bin/bash
export PATH := /usr/local/go/bin:$(HOME)/go/bin:$(PATH)
export CGO_ENABLED := 1
GO ?= go
# Count-based budgets: a wall-clock -fuzztime races the coordinator in Go 1.26
# (golang/go#75804) and fails with a bare "context deadline exceeded".
FUZZTIME ?= 20000x

.PHONY: run test lint vet staticcheck unit fuzz-short fuzz bench sim sim-long build

build:
	$(GO) build ./...

run:
	$(GO) run ./cmd/meridiand

test: lint unit fuzz-short

lint: vet staticcheck

vet:
	@test -z "$$(gofmt -l .)" || { echo 'gofmt needed:'; gofmt -l .; exit 1; }
	$(GO) vet ./...

staticcheck:
	$(GO) tool staticcheck ./...

unit:
	$(GO) test -race -count=1 -timeout 20m ./...

# Short runs of every fuzz target (each package's Fuzz* functions).
fuzz-short:
	@FUZZTIME=$(FUZZTIME) ./scripts/fuzz.sh

fuzz:
	@FUZZTIME=2000000x ./scripts/fuzz.sh

bench:
	$(GO) test -run '^$$' -bench . -benchmem -count=1 ./...
	$(GO) build -o bin/meridiand ./cmd/meridiand
	$(GO) build -o bin/meridian-bench ./cmd/meridian-bench
	./bin/meridian-bench ntp-server --duration 10s

sim:
	$(GO) run ./cmd/meridian-sim run sim/scenarios

sim-long:
	$(GO) run ./cmd/meridian-sim run --duration-scale 10 sim/scenarios
