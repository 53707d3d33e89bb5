# Build and test entry points. `make test` is what CI (.ci/run) runs.
GO ?= go
PKGS := ./...

.PHONY: all test fmt-check vet test-short build clean

all: test

## test: gofmt check, go vet, then every test with the race detector in random order
test: fmt-check vet
	$(GO) test -race -shuffle=on -count=1 $(PKGS)

## fmt-check: fail listing the files gofmt would change
fmt-check:
	@files="$$(gofmt -l .)"; \
	if [ -n "$$files" ]; then \
		echo "gofmt -l: these files need gofmt -w:"; echo "$$files"; exit 1; \
	fi

vet:
	$(GO) vet $(PKGS)

## test-short: quick run without the race detector; Dovecot tests skip if Dovecot is missing
test-short:
	$(GO) test -short -count=1 $(PKGS)

## build: static binary in bin/
build:
	CGO_ENABLED=0 $(GO) build -trimpath -o bin/xoauthd ./cmd/xoauthd

clean:
	rm -rf bin
