# Build and test entry points. `make test` is what CI (.ci/run) runs.
GO ?= go
PKGS := ./...

.PHONY: all test test-go stages fmt-check tidy-check vet test-short build clean

all: test

## test: every check there is: test-go, then the image built and run as a
## sidecar with podman, and the Windows binary and service under Wine (both
## need root, podman and Wine; .ci/run installs them on a bare Debian 12)
test: test-go stages

## test-go: gofmt, go mod tidy and go vet checks, cross builds, then every Go
## test with the race detector in random order
test-go: fmt-check tidy-check vet cross
	$(GO) test -race -shuffle=on -count=1 $(PKGS)

## stages: .ci/container.sh and .ci/wine.sh; each fails on a failed check and
## skips loudly only where the machine cannot run containers or Wine
stages:
	bash .ci/container.sh
	bash .ci/wine.sh

## fmt-check: fail listing the files gofmt would change
fmt-check:
	@files="$$(gofmt -l .)"; \
	if [ -n "$$files" ]; then \
		echo "gofmt -l: these files need gofmt -w:"; echo "$$files"; exit 1; \
	fi

## tidy-check: fail when go.mod or go.sum is not what `go mod tidy` would write
tidy-check:
	@$(GO) mod tidy -diff || { echo "go mod tidy -diff: run go mod tidy"; exit 1; }

vet:
	$(GO) vet $(PKGS)

## test-short: quick run without the race detector; skips the tests that need Dovecot
test-short:
	$(GO) test -short -count=1 $(PKGS)

## build: static binary in bin/
build:
	CGO_ENABLED=0 $(GO) build -trimpath -o bin/xoauthd ./cmd/xoauthd

clean:
	rm -rf bin

## cross: build ./cmd/xoauthd with CGO_ENABLED=0 for every release platform; fails if any does not build
CROSS_PLATFORMS := linux/amd64 linux/arm64 windows/amd64 darwin/arm64
.PHONY: cross
cross:
	@dir="$$(mktemp -d)"; trap 'rm -rf "$$dir"' EXIT; failed=""; \
	for p in $(CROSS_PLATFORMS); do \
		os=$${p%/*}; arch=$${p#*/}; \
		printf 'cross: %-14s ' "$$p"; \
		if CGO_ENABLED=0 GOOS=$$os GOARCH=$$arch $(GO) build -trimpath -o "$$dir/xoauthd-$$os-$$arch" ./cmd/xoauthd; then \
			echo ok; \
		else \
			echo FAILED; failed="$$failed $$p"; \
		fi; \
	done; \
	if [ -n "$$failed" ]; then echo "cross: does not build for:$$failed"; exit 1; fi
