# netplug — see README.md. Every target is a thin wrapper around a script or a go command.
SHELL := /bin/bash
IMAGE ?= localhost/netplug/netplug-controller
TAG ?= dev
OVERLAY ?= containerd
GOLANGCI_LINT_VERSION ?= v2.6.2
TOOLS_BIN ?= /var/cache/netplug/tools/golangci-lint-$(GOLANGCI_LINT_VERSION)
export IMAGE TAG OVERLAY
# CI runs with a bare environment: make sure the Go toolchain is found.
export PATH := $(PATH):/usr/local/go/bin

.PHONY: all build test lint unit e2e e2e-run fuzz cover cluster-up cluster-down image image-tar \
        manifests deploy undeploy demo bench soak clean

all: build

build: ## Build the controller and the kubectl plugin (kubectl-netplug) into bin/.
	CGO_ENABLED=0 go build -trimpath -o bin/netplug-controller ./cmd/netplug-controller
	CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=$(TAG)" -o bin/kubectl-netplug ./cmd/kubectl-netplug

test: lint unit e2e ## What CI runs: lint, unit tests with -race, then the e2e suite on a real cluster.

lint: ## gofmt, go vet, golangci-lint, and go.mod/go.sum exactly as `go mod tidy` leaves them.
	@go mod tidy -diff >/dev/null || { echo "go.mod/go.sum are not tidy; run go mod tidy:"; go mod tidy -diff; exit 1; }
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	go vet ./...
	go vet -tags e2e ./e2e/...
	@[ -x $(TOOLS_BIN)/golangci-lint ] || GOBIN=$(TOOLS_BIN) go install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION)
	$(TOOLS_BIN)/golangci-lint run --build-tags e2e ./...

unit: ## Unit tests with the race detector.
	go test -race -count=1 ./cmd/... ./pkg/... ./e2e/report/...

cover: ## Per-package coverage of the unit tests.
	go test -count=1 -cover ./pkg/... ./e2e/report/...

fuzz: ## Fuzz the annotation parser (FUZZTIME=2m by default).
	go test ./pkg/attachment -run '^$$' -fuzz FuzzParseSelection -fuzztime $${FUZZTIME:-2m}

e2e: ## Bring the local cluster up, deploy netplug, run the e2e suite, tear down.
	hack/run/e2e.sh

e2e-run: ## Run the e2e suite against an already running local cluster (make cluster-up image deploy OVERLAY=local).
	set -a && . $${CLUSTER_DIR:-/var/lib/netplug-e2e}/env && set +a && go test -tags e2e -count=1 -p 1 -timeout 40m -v ./e2e/... $${E2E_ARGS:-}

cluster-up: ## Local single-node cluster from real binaries (etcd, apiserver, kubelet, containerd, Multus).
	hack/cluster/up.sh

cluster-down: ## Stop the local cluster and remove everything it left on the host.
	hack/cluster/down.sh

image: ## Build the image without a registry or Docker engine and import it into the local containerd.
	hack/build/image.sh

image-tar: ## Build the image tarball only (_out/netplug-controller.tar), without importing it.
	hack/build/image.sh --no-import

manifests: ## Render one YAML for IMAGE:TAG and OVERLAY (containerd, crio, local) into _out/netplug.yaml.
	hack/build/manifests.sh

deploy: manifests ## Apply the rendered YAML to the current KUBECONFIG.
	kubectl apply -f _out/netplug.yaml
	kubectl -n netplug-system rollout status ds/netplug --timeout=120s

undeploy: manifests ## Let netplug release terminating pods (2 min at most), delete it, strip its finalizer from every pod, delete the rest.
	hack/run/undeploy.sh

bench: ## Hot-plug latency, burst throughput and footprint against raw Multus /delegate (see README "Performance").
	hack/run/bench.sh

soak: ## Churn and faults on the local cluster, then count leaks and drift (see README "Soak").
	hack/run/soak.sh

demo: ## Fresh machine to a hot-plugged interface in one command.
	hack/run/demo.sh

clean:
	rm -rf bin _out
