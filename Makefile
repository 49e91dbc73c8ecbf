# plugipay-sync. `make demo` and `make test` are the two commands a new user needs.
GO      ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT  ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS := -s -w -X main.Version=$(VERSION) -X main.Commit=$(COMMIT)

# The container's static binary. The Dockerfile runs `make static` and a test
# runs the same target, so the flags live here only.
STATIC_TAGS := osusergo,netgo,sqlite_omit_load_extension
STATIC_OUT  ?= bin/static/plugipay-sync

.PHONY: all build static demo demo-paygate demo-pin test test-e2e test-long tools vet fmt bench clean fuzz lint soak manifests

all: build

## build: the daemon, the emulator and the demo driver into bin/
build:
	$(GO) build -ldflags '$(LDFLAGS)' -o bin/ ./cmd/...

## static: fully static cgo build of the daemon (SQLite linked in), as in the image
static:
	CGO_ENABLED=1 $(GO) build -trimpath -tags '$(STATIC_TAGS)' \
		-ldflags '$(LDFLAGS) -linkmode external -extldflags "-static"' \
		-o $(STATIC_OUT) ./cmd/plugipay-sync

## demo: sample CRM data into a locally started emulator, five passes, no credentials
demo: build
	./bin/plugipay-demo --mock bin/plugipay-mock --sync bin/plugipay-sync

## demo-paygate: the same sample data into the PayGate-style fake (external id in metadata)
demo-paygate: build
	./bin/plugipay-demo --destination paygate --mock bin/plugipay-mock --sync bin/plugipay-sync

## demo-pin: link seeded Pin-style customers by email, then update only what differs
demo-pin: build
	./bin/plugipay-demo --destination pin --mock bin/plugipay-mock --sync bin/plugipay-sync

## tools: promtool and prometheus for the alert-rule and real-Prometheus tests (Debian's
## prometheus package; needs root). Without them those tests skip, except under CI=true.
tools:
	@if command -v promtool >/dev/null && command -v prometheus >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null; \
	else echo "make tools: install Debian's prometheus package (promtool, prometheus) to run the monitoring tests"; fi

## test: vet, then every test with the race detector, each named as it finishes (about two
## minutes here). The end-to-end tests that take minutes (kill -9 loops, chaos, a real
## Prometheus, backfills at the API's rate) skip under -short and run in test-e2e.
GOTESTSUM_VERSION ?= v1.13.0
GOTESTSUM := $(GO) run gotest.tools/gotestsum@$(GOTESTSUM_VERSION) --format testname --
test: tools vet
	$(GOTESTSUM) -race -short -count=1 ./...

## test-e2e: every test of the packages whose long tests make test skips (CI runs both).
## crm's flat-memory test runs on its own: it measures the heap, which a busy second
## core (the other packages' tests) makes noisy.
test-e2e: tools
	$(GOTESTSUM) -race -count=1 -timeout 25m ./cmd/... ./state/ ./internal/fleet/
	$(GOTESTSUM) -race -count=1 ./crm/

## test-long: the tests that run minutes at Plugipay's real rate limits (SDK throughput, adaptation)
test-long:
	PLUGIPAY_LONG_TESTS=1 $(GO) test -count=1 -v -run 'TestLong' -timeout 20m ./plugipay/...

## bench: the performance suite of issue 7 (seeded data in a temp dir, a few minutes); see BENCHMARKS.md
bench:
	$(GO) run ./cmd/plugipay-bench $(BENCH_FLAGS)

## fuzz: run each fuzz target for a number of inputs, FUZZ_SCALE times its base count (about
## 10 s each at 1 on a 2-core machine; make test runs only their seed corpora); a crasher
## is saved under the package's testdata/fuzz and then replays in make test. Counts, not
## -fuzztime durations: go1.26's fuzz coordinator can fail a target with "context deadline
## exceeded" when a duration ends mid-input (golang/go#75804, fixed in go1.27).
FUZZ_SCALE ?= 2
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzCSV$$' -fuzztime $$((100000 * $(FUZZ_SCALE)))x ./crm/
	$(GO) test -run '^$$' -fuzz '^FuzzJSONL$$' -fuzztime $$((100000 * $(FUZZ_SCALE)))x ./crm/
	$(GO) test -run '^$$' -fuzz '^FuzzCSVScanner$$' -fuzztime $$((15000 * $(FUZZ_SCALE)))x ./crm/
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeEnvelope$$' -fuzztime $$((100000 * $(FUZZ_SCALE)))x ./plugipay/
	$(GO) test -run '^$$' -fuzz '^FuzzConfig$$' -fuzztime $$((15000 * $(FUZZ_SCALE)))x ./cmd/plugipay-sync/

## lint: staticcheck at a pinned version, fetched through the Go module proxy
STATICCHECK_VERSION ?= v0.8.2
lint:
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) ./...

## soak: the daemon on a 1 s schedule under faults for SOAK_DURATION (issue 8); not in make test
SOAK_DURATION ?= 10m
soak:
	PLUGIPAY_SYNC_SOAK=$(SOAK_DURATION) $(GO) test -count=1 -v -run '^TestSoak$$' -timeout 2h ./cmd/plugipay-sync/

## manifests: regenerate the PrometheusRule and the dashboard ConfigMap in deploy/kubernetes
## from deploy/prometheus/alerts.yaml and deploy/grafana/plugipay-sync.json (a test checks them)
manifests:
	$(GO) test -count=1 -run '^TestGeneratedManifests$$' ./cmd/plugipay-sync/ -update

vet:
	$(GO) vet ./...
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$unformatted" ]; then echo "not gofmt-clean:"; echo "$$unformatted"; exit 1; fi

fmt:
	gofmt -w $$(git ls-files '*.go')

clean:
	rm -rf bin .demo
