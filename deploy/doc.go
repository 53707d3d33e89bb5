// Package deploy holds the files that run xoauthd in production: a
// Kubernetes sidecar (kubernetes/sidecar.yaml), three Kubernetes replicas
// sharing a Redis token store (kubernetes/replicas-redis.yaml), Docker Compose
// (docker-compose.yaml with compose/config/xoauthd.yaml) and a hardened
// systemd unit (systemd/xoauthd.service with systemd/xoauthd.sysusers).
// README.md explains installing xoauthd as a service on Linux and Windows,
// as a sidecar, when to use the Redis backend, and how to reload it.
//
// The package has no code. Its tests parse these files, the Dockerfile and
// the embedded configurations, and check them against the command line and
// the configuration loader, so that none of them rots unnoticed.
package deploy
