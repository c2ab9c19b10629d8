# Lattice: run `make run` to start a server, `make test` to run every check and test.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c

GO ?= go
STATICCHECK ?= honnef.co/go/tools/cmd/staticcheck@v0.8.2

.PHONY: run build test lint js-deps unit e2e-postgres bench

# Start a server with defaults: ./lattice-data, SQLite, http://127.0.0.1:8008.
run:
	$(GO) run ./cmd/lattice

build:
	$(GO) build -o bin/lattice ./cmd/lattice

# Everything CI checks: formatting, vet, staticcheck, all tests with the race detector
# (storage tests on both engines when LATTICE_TEST_POSTGRES is set; the matrix-js-sdk tests under
# Node), and the e2e suite again on PostgreSQL.
test: lint js-deps unit e2e-postgres

# matrix-js-sdk for the e2e tests that drive Lattice as Element does, pinned by its lockfile.
js-deps:
	npm ci --prefix e2e/js --no-audit --no-fund --loglevel=error

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...

unit:
	@log=$$(mktemp); trap 'rm -f "$$log"' EXIT; \
	$(GO) test -race -count=1 -v ./... > "$$log" 2>&1 || { grep -E -- '^(--- FAIL|FAIL|panic:|\s+\S+_test\.go:[0-9]+:)' "$$log" | head -200; echo "see the failures above"; exit 1; }; \
	grep -E '^(ok|FAIL|\?)\s' "$$log"; \
	echo "storage subtests passed: sqlite $$(grep -cE -- '--- PASS: .*/sqlite' "$$log"), postgres $$(grep -cE -- '--- PASS: .*/postgres' "$$log")"; \
	echo "tests: $$(grep -cE -- '^\s*--- PASS' "$$log") passed, $$(grep -cE -- '^\s*--- SKIP' "$$log") skipped"

e2e-postgres:
	@if [ -n "$${LATTICE_TEST_POSTGRES:-}" ]; then \
		LATTICE_E2E_DB=postgres $(GO) test -race -count=1 ./e2e/...; \
	else echo "LATTICE_TEST_POSTGRES unset: e2e on PostgreSQL not run"; fi

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...
