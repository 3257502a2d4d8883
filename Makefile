# cloudimages — `make run` starts everything on embedded defaults,
# `make test` runs the whole suite. Both install what they need into bin/.

GO       ?= go
TEMPORAL_CLI_VERSION := v1.5.1
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
BIN      := $(CURDIR)/bin
TEMPORAL := $(BIN)/temporal
TEMPORAL_SERVER := $(BIN)/temporal-server
GOTEST_FLAGS ?= -race -timeout 75m

.PHONY: all tools temporal-server build run test test-topology vet fmt-check bench clean web-test-deps test-deps

all: build

## tools: the pinned Temporal CLI (dev server + Temporal Web) in bin/
tools: $(TEMPORAL)

$(TEMPORAL):
	@mkdir -p $(BIN)
	@echo "installing temporal CLI $(TEMPORAL_CLI_VERSION) into bin/ (about 2 minutes the first time)"
	GOBIN=$(BIN) $(GO) install github.com/temporalio/cli/cmd/temporal@$(TEMPORAL_CLI_VERSION)

## temporal-server: a real Temporal server on PostgreSQL (tools/temporal-server, its own Go module) in
## bin/, for the production-topology test. Built like bin/temporal (and without CGO_ENABLED=0, so
## that it reuses the server packages `make tools` compiled): minutes the first time.
temporal-server: $(TEMPORAL_SERVER)

$(TEMPORAL_SERVER): tools/temporal-server/main.go tools/temporal-server/go.mod tools/temporal-server/go.sum
	@mkdir -p $(BIN)
	@echo "building the Temporal server (tools/temporal-server) into bin/ (minutes the first time)"
	cd tools/temporal-server && $(GO) build -ldflags "-s -w" -o $(TEMPORAL_SERVER) .

## web-test-deps: Debian's Chromium for the browser tests in web/, installed when missing
web-test-deps:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || { \
	  echo "installing chromium (Debian) for the browser tests"; \
	  sudo=; [ "$$(id -u)" = 0 ] || sudo=sudo; \
	  $$sudo apt-get update && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y chromium; }

## test-deps: Debian's qemu-img, xz, zstd and bzip2, which the disk image and decompression tests need, and Node.js, which runs tus-js-client in the upload tests, installed when missing
test-deps:
	@command -v qemu-img >/dev/null 2>&1 && command -v xz >/dev/null 2>&1 && command -v zstd >/dev/null 2>&1 && command -v bzip2 >/dev/null 2>&1 || { \
	  echo "installing qemu-utils, xz-utils, zstd and bzip2 (Debian) for the disk image and decompression tests"; \
	  sudo=; [ "$$(id -u)" = 0 ] || sudo=sudo; \
	  $$sudo apt-get update && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y qemu-utils xz-utils zstd bzip2; }
	@command -v node >/dev/null 2>&1 || { \
	  echo "installing nodejs (Debian) for the tus-js-client upload test"; \
	  sudo=; [ "$$(id -u)" = 0 ] || sudo=sudo; \
	  $$sudo apt-get update && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y nodejs; }

## build: the static cloudimages binary in bin/
build:
	@mkdir -p $(BIN)
	CGO_ENABLED=0 $(GO) build -ldflags "-s -w -X main.version=$(VERSION)" -o $(BIN)/cloudimages ./cmd/cloudimages

## run: everything on embedded defaults (Temporal dev server, worker, API + UI, two node agents)
run: tools build
	$(BIN)/cloudimages dev

vet:
	$(GO) vet ./...
	cd tools/temporal-server && $(GO) vet .

fmt-check:
	@out="$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))"; \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

TEST_ENV = CLOUDIMAGES_TEMPORAL_CLI=$(TEMPORAL) CLOUDIMAGES_BIN=$(BIN)/cloudimages CLOUDIMAGES_TEMPORAL_SERVER=$(TEMPORAL_SERVER)

## test: vet, gofmt, and the whole suite with -race (PostgreSQL tests, the topology's among them, need CLOUDIMAGES_TEST_POSTGRES_URL)
test: tools temporal-server build web-test-deps test-deps fmt-check vet
	$(TEST_ENV) $(GO) test $(GOTEST_FLAGS) ./...

## test-topology: only the production topology's fault suite (Temporal server on PostgreSQL, API ×2,
## workers ×2, two agents; needs CLOUDIMAGES_TEST_POSTGRES_URL); `make test` runs it too
test-topology: tools temporal-server build
	$(TEST_ENV) $(GO) test $(GOTEST_FLAGS) -run 'TestTopology' -v ./e2e/

## bench: throughput against curl and the other benchmarks; prints ratios
bench: tools build
	CLOUDIMAGES_TEMPORAL_CLI=$(TEMPORAL) CLOUDIMAGES_BIN=$(BIN)/cloudimages $(GO) run ./bench

clean:
	rm -rf $(BIN)/cloudimages .data
