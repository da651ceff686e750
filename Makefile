# Ember — developer commands. `make run` and `make test` are the contract the
# README promises; .ci/run calls `make test`.
GO      ?= go
BIN     := bin/ember
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)

.PHONY: build run test test-short bench fhir-package onnxruntime generate fuzz vet clean conformance console-vendor

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/ember

# Build and serve on the embedded PostgreSQL under ./.ember (created on first run).
run: build
	./$(BIN) serve

# Every test, against one ephemeral PostgreSQL for the whole run. testreport
# prints failures and package lines, then `N passed, N failed, N skipped` and
# each skip's reason; under CI=true a skipped test fails the run.
test: fhir-package vet
	$(GO) run ./internal/testreport -- $(GO) run ./internal/pgtest/withdb -- $(GO) test -json -count=1 -timeout 20m ./...

# -short skips the slow tests on purpose, so skips never fail this run.
test-short: vet
	$(GO) run ./internal/testreport -fail-on-skip=false -- $(GO) run ./internal/pgtest/withdb -- $(GO) test -json -count=1 -short ./...

vet:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet ./...

# Load benchmark against a freshly started server; prints `name value unit` lines.
# Its data is the repository's testdata/. ONLY selects scenarios, e.g.
# `make bench ONLY='import33k'` (ember-bench's -only).
ONLY ?=
bench: build
	$(GO) run ./cmd/ember-bench -ember $(BIN) $(if $(ONLY),-only '$(ONLY)')

# The conformance self-check (conformance/runner): a fresh Ember on its own
# PostgreSQL, loaded with Synthea and the US Core 6.1 examples, checked by
# `ember conformance run`'s suites; fails unless every applicable check
# passes. JUnit XML in bin/conformance-junit.xml. CI runs it (.ci/run).
conformance: build
	$(GO) run ./conformance/runner/selfcheck -ember $(BIN) -junit bin/conformance-junit.xml

# The official FHIR R4 definitions and examples (npm pack, cached).
fhir-package:
	@$(GO) run ./internal/fhirpkg/fetch >/dev/null

# The ONNX Runtime shared library inference loads, next to bin/ember as
# bin/libonnxruntime.so: `npm pack onnxruntime-node@1.30.0` (cached, checked
# against its integrity; never `npm install`), Linux .so only. Idempotent.
onnxruntime:
	@$(GO) run ./internal/onnxlib/install -out bin/libonnxruntime.so >/dev/null

generate: fhir-package
	$(GO) generate ./...

# Ember Console's vendored libraries (uPlot, DOMPurify): npm pack at the
# versions console/vendor.json pins, copied with their licences under
# console/static/vendor, SHA-256s written back to the manifest. Commit both:
# console's tests hold the committed files to those hashes.
console-vendor:
	$(GO) run ./console/vendorgen

FUZZTIME ?= 60s
fuzz:
	$(GO) test ./fhir -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME)
	$(GO) test ./fhir -run '^$$' -fuzz '^FuzzValidate$$' -fuzztime $(FUZZTIME)
	$(GO) test ./fhir/validate -run '^$$' -fuzz '^FuzzDateTime$$' -fuzztime $(FUZZTIME)
	$(GO) test ./fhir/index -run '^$$' -fuzz '^FuzzExtract$$' -fuzztime $(FUZZTIME)
	$(GO) test ./fhir/index -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime $(FUZZTIME)
	$(GO) test ./fhir/index -run '^$$' -fuzz '^FuzzParseDateRange$$' -fuzztime $(FUZZTIME)
	$(GO) test ./fhir/shape -run '^$$' -fuzz '^FuzzSummary$$' -fuzztime $(FUZZTIME)
	$(GO) test ./fhir/patch -run '^$$' -fuzz '^FuzzJSONPatch$$' -fuzztime $(FUZZTIME)
	$(GO) test ./fhir/patch -run '^$$' -fuzz '^FuzzFHIRPathPatch$$' -fuzztime $(FUZZTIME)
	$(GO) test ./fhir/xml -run '^$$' -fuzz '^FuzzUnmarshal$$' -fuzztime $(FUZZTIME)
	$(GO) test ./fhir/xml -run '^$$' -fuzz '^FuzzMarshal$$' -fuzztime $(FUZZTIME)
	$(GO) test ./dicom/dimse -run '^$$' -fuzz FuzzPDU -fuzztime $(FUZZTIME)
	$(GO) test ./dicom/dimse -run '^$$' -fuzz FuzzIdentifier -fuzztime $(FUZZTIME)
	$(GO) test ./smart/scope -run '^$$' -fuzz FuzzParse -fuzztime $(FUZZTIME)
	$(GO) run ./internal/pgtest/withdb -- $(GO) test ./internal/hostile -run '^$$' -fuzz '^FuzzHTTP$$' -fuzztime $(FUZZTIME)

clean:
	rm -rf bin
