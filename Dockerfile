# syntax=docker/dockerfile:1
#
# xoauthd in a distroless, non-root image: one static binary, CA certificates,
# nothing else (no shell; the health check is "xoauthd health").
#
# Build:
#   docker build -t xoauthd \
#     --build-arg VERSION="$(git describe --tags --always)" \
#     --build-arg COMMIT="$(git rev-parse --short HEAD)" .
#   (multi-arch: docker buildx build --platform linux/amd64,linux/arm64 ...)
#
# Volumes and files:
#   /etc/xoauthd/xoauthd.yaml  the configuration ($XOAUTHD_CONFIG). Mount the
#                              directory, not the file, so edits (rename,
#                              Kubernetes ConfigMap symlink swap) reach hot reload.
#   /var/lib/xoauthd           the token store (store.path:
#                              /var/lib/xoauthd/tokens.json). Its key belongs
#                              apart from this volume: a file in the mounted
#                              configuration directory (the default,
#                              /etc/xoauthd/store.key) or a secret.
#
# Run:
#   docker run -d --name xoauthd --read-only --cap-drop ALL \
#     -v /srv/xoauthd:/etc/xoauthd:ro -v xoauthd-state:/var/lib/xoauthd \
#     -p 127.0.0.1:1143:1143 -p 127.0.0.1:1587:1587 xoauthd
# Published ports reach the container's own address, not its loopback: the
# listeners must then listen on 0.0.0.0 (with local TLS, or allow_plaintext:
# true when only the host's 127.0.0.1 is published as above). A sidecar that
# shares the network namespace (deploy/) keeps 127.0.0.1.
# The health check asks admin.listen from the configuration (keep it set, e.g.
# 127.0.0.1:9925). Reload: docker kill -s HUP xoauthd, or edit the file.
# Stop: IMAP and POP3 sessions end at once, SMTP messages under way get up
# to 8 s (serve --drain), and serve exits within 9 s: inside docker stop's
# default 10 s. With a longer --drain, give docker stop -t at least 2 s more.

ARG GO_VERSION=1.26

FROM --platform=$BUILDPLATFORM golang:${GO_VERSION}-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod \
    go mod download
COPY . .
# Set by BuildKit for the platform being built (--platform).
ARG TARGETOS
ARG TARGETARCH
ARG VERSION=dev
ARG COMMIT=unknown
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=${TARGETOS} GOARCH=${TARGETARCH} \
    go build -trimpath -buildvcs=false \
      -ldflags "-s -w -X main.version=${VERSION} -X main.commit=${COMMIT}" \
      -o /out/xoauthd ./cmd/xoauthd \
 && mkdir -p /out/state

FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION=dev
ARG COMMIT=unknown
LABEL org.opencontainers.image.title="xoauthd" \
      org.opencontainers.image.description="OAuth 2.0 (XOAUTH2) proxy for legacy IMAP, POP3 and SMTP clients" \
      org.opencontainers.image.source="https://github.com/xoauthd/xoauthd" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${COMMIT}"
COPY --from=build /out/xoauthd /usr/local/bin/xoauthd
# An empty state directory owned by the nonroot user, so a new named volume
# starts out writable.
COPY --from=build --chown=65532:65532 /out/state /var/lib/xoauthd
ENV XOAUTHD_CONFIG=/etc/xoauthd/xoauthd.yaml
VOLUME ["/var/lib/xoauthd"]
WORKDIR /var/lib/xoauthd
USER 65532:65532
EXPOSE 1143 1110 1587
# Docker's own timeout is above health's --timeout (5s), so a hung daemon
# is reported by xoauthd health with its reason.
HEALTHCHECK --interval=30s --timeout=10s --start-period=15s --retries=3 \
  CMD ["/usr/local/bin/xoauthd", "health"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/xoauthd"]
CMD ["serve"]
