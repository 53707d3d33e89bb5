#!/usr/bin/env bash
# Checks read "[ condition ] && [ condition ] || fail ...": fail exits.
# shellcheck disable=SC2015
# CI stage: the container image, built from the project's Dockerfile and run
# as a sidecar, with podman, as root, without any registry.
#
#   1. Local stand-ins for the two base images the Dockerfile names (a Go
#      builder from this machine's Go and an offline module proxy; a
#      distroless-like runtime), then `podman build` of the Dockerfile as it
#      is, and checks of the image's metadata. The metadata is written to
#      $XOAUTHD_IMAGE_INSPECT (default: a temporary file) and `go test
#      ./deploy` compares the compose file and the Kubernetes manifests with
#      it.
#   2. A pod without a network (only its loopback, shared by its
#      containers, as in a Kubernetes pod): a "rig" container runs `xoauthd
#      demo` for its identity provider and mail server; the container under
#      test runs `xoauthd serve` read-only with all capabilities dropped,
#      with a configuration that uses the rig; a client container (busybox
#      and curl) talks IMAP, POP3 and SMTP to it on 127.0.0.1. Then the
#      health check, a live reload from an edit of the mounted
#      configuration, and `podman stop`: exit status 0 within the grace
#      period.
#
# Everything lives in a private podman storage in a temporary directory,
# removed at the end, so no image, container or pod is left behind.
# Environment: XOAUTHD_STOP_TIMEOUT (seconds podman stop waits before it
# kills; default podman's own default, 10).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
stage_name=container
# shellcheck source=.ci/lib.sh
. .ci/lib.sh

stop_timeout=${XOAUTHD_STOP_TIMEOUT:-10}
pod=xoauthd-ci
image=localhost/xoauthd:ci

# The two base images of the Dockerfile's FROM lines, under those names.
go_minor=$(sed -n 's/^ARG GO_VERSION=//p' Dockerfile)
builder_image=docker.io/library/golang:${go_minor}-bookworm
runtime_image=gcr.io/distroless/static-debian12:nonroot

for tool in podman runc unshare; do
	command -v "$tool" >/dev/null || fail "$tool is not installed (.ci/run installs it)"
done
if ! unshare --mount --uts --ipc --net --pid --fork true 2>/dev/null; then
	skip "this machine cannot create Linux namespaces (unshare failed), so it cannot run containers"
fi
if [ -x /usr/local/go/bin/go ] && ! command -v go >/dev/null; then
	PATH=/usr/local/go/bin:$PATH
fi
command -v go >/dev/null || fail "go is not installed"

work=$(mktemp -d /var/tmp/xoauthd-ci-container.XXXXXX)
export CONTAINERS_CONF=$work/containers.conf
mkdir -p "$work/tmp"
# Without systemd podman cannot schedule health checks and says so on every
# run and rm; the checks are run on demand here (podman healthcheck run).
pm() {
	TMPDIR=$work/tmp podman --root "$work/storage" --runroot "$work/run" --storage-driver overlay "$@" \
		2> >(grep -v 'unable to get systemd connection' >&2)
}

cleanup() {
	local rc=$?
	set +e
	if [ "$rc" -ne 0 ] && pm pod exists "$pod" 2>/dev/null; then
		for c in rig xoauthd client; do
			echo "--- logs of $c (last 40 lines)" >&2
			pm logs --tail 40 "$c" >&2 2>&1
		done
	fi
	# Everything lives in the private storage under $work (not podman
	# system reset: that also removes the machine's podman networks).
	pm pod rm -f -t 0 "$pod" >/dev/null 2>&1
	pm rm -af -v -t 0 >/dev/null 2>&1
	pm rmi -af >/dev/null 2>&1
	findmnt -rn -o TARGET | grep -F "$work/" | sort -r | xargs -r umount >/dev/null 2>&1
	rm -rf "$work"
	exit "$rc"
}
trap cleanup EXIT

# crun (podman's default) fails on hybrid cgroups and the default rlimits
# exceed what a CI container may set; runc with cgroupfs and modest limits
# works everywhere podman does.
cat >"$CONTAINERS_CONF" <<'EOF'
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
EOF

step "podman $(podman --version | awk '{print $3}'), runc $(runc --version | awk 'NR==1{print $3}')"
pm info --format '{{.Host.OCIRuntime.Name}} {{.Store.GraphDriverName}} cgroups {{.Host.CgroupsVersion}}'

step "base images: $builder_image (this machine's Go, offline module proxy) and $runtime_image (stand-in)"
goroot=$(go env GOROOT)
go_have=$(go env GOVERSION)
case "$go_have" in
go"$go_minor" | go"$go_minor".*) ;;
*) fail "the Dockerfile builds with Go $go_minor (ARG GO_VERSION) but this machine has $go_have" ;;
esac
ctx=$work/builder
mkdir -p "$ctx"
# Hard links when the file system allows, a copy otherwise.
cp -al "$goroot" "$ctx/go" 2>/dev/null || cp -a "$goroot" "$ctx/go"
# go mod download fills a fresh module cache (from this machine's module
# cache when it holds the modules); its cache/download tree is a GOPROXY.
GOFLAGS=-modcacherw GOMODCACHE=$work/modcache \
	GOPROXY="file://$(go env GOMODCACHE)/cache/download,$(go env GOPROXY)" \
	go mod download
mv "$work/modcache/cache/download" "$ctx/goproxy"
chmod -R u+w "$work/modcache" && rm -rf "$work/modcache"
cp /bin/busybox "$ctx/busybox"
cat >"$ctx/Containerfile" <<'EOC'
FROM scratch
COPY go /usr/local/go
COPY goproxy /goproxy
COPY busybox /bin/busybox
RUN ["/bin/busybox", "sh", "-c", "/bin/busybox mkdir -p /usr/bin /sbin /usr/sbin /tmp /root /go && /bin/busybox --install -s /bin && /bin/busybox chmod 1777 /tmp"]
ENV PATH=/usr/local/go/bin:/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    GOPATH=/go HOME=/root GOPROXY=file:///goproxy GOSUMDB=off GOTOOLCHAIN=local
EOC
pm build --quiet --network none --format docker -t "$builder_image" "$ctx" >/dev/null
rm -rf "$ctx"

ctx=$work/runtime
mkdir -p "$ctx/root/etc/ssl/certs" "$ctx/root/tmp" "$ctx/home"
chmod 1777 "$ctx/root/tmp"
printf '%s\n' 'root:x:0:0:root:/root:/sbin/nologin' 'nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin' \
	'nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin' >"$ctx/root/etc/passwd"
printf '%s\n' 'root:x:0:' 'nobody:x:65534:' 'nonroot:x:65532:' >"$ctx/root/etc/group"
cp /etc/ssl/certs/ca-certificates.crt "$ctx/root/etc/ssl/certs/"
cat >"$ctx/Containerfile" <<'EOC'
FROM scratch
COPY root/ /
COPY --chown=65532:65532 home /home/nonroot
USER 65532:65532
WORKDIR /home/nonroot
EOC
pm build --quiet --network none --format docker -t "$runtime_image" "$ctx" >/dev/null
rm -rf "$ctx"

step "podman build of the Dockerfile (no network, no pulls)"
version=ci-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
pm build --pull=never --network none --format docker -t "$image" \
	--build-arg TARGETOS=linux --build-arg TARGETARCH=amd64 \
	--build-arg VERSION="$version" --build-arg COMMIT="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" \
	-f Dockerfile . 2>&1 | grep -v '^Copying \|^Writing manifest\|^Storing signatures' || true
pm image exists "$image" || fail "podman build did not produce $image"

step "image metadata, and the compose file and Kubernetes manifests against it (go test ./deploy -run TestImage)"
inspect=${XOAUTHD_IMAGE_INSPECT:-$work/image-inspect.json}
pm image inspect "$image" >"$inspect"
XOAUTHD_IMAGE_INSPECT=$inspect XOAUTHD_IMAGE_VERSION=$version \
	go test -count=1 -run '^TestImage' -v ./deploy/ 2>&1 | grep -E '^(=== RUN|--- |\s+\S+_test\.go|ok|FAIL|PASS)' ||
	fail "the image does not match the deployment files (go test ./deploy -run TestImage)"

step "client image: busybox and this machine's curl, from scratch"
ctx=$work/client
mkdir -p "$ctx/root/bin"
cp /bin/busybox "$ctx/root/bin/"
# curl and the shared libraries it loads (ldd lists them with paths).
mapfile -t libs < <(ldd "$(command -v curl)" | grep -o '/[^ ]*')
cp -L --parents "$(command -v curl)" "${libs[@]}" "$ctx/root/"
cat >"$ctx/Containerfile" <<'EOC'
FROM scratch
COPY root/ /
RUN ["/bin/busybox", "--install", "-s", "/bin"]
EOC
client_image=localhost/xoauthd-ci-client:latest
pm build --quiet --network none -t "$client_image" "$ctx" >/dev/null
rm -rf "$ctx"

step "pod without a network: rig (xoauthd demo: identity provider and mail server)"
# A uid-65532-owned directory per container, as a volume would be.
mkdir -p "$work/rig" "$work/etc" "$work/state"
chown 65532:65532 "$work/rig" "$work/state"
chmod 0700 "$work/rig" "$work/state"
hardening=(--read-only --cap-drop ALL --security-opt no-new-privileges)
pm pod create --name "$pod" --network none >/dev/null
pm run -d --pod "$pod" --name rig "${hardening[@]}" -e TMPDIR=/rig -v "$work/rig:/rig" \
	"$image" demo --imap 2143 --pop3 2110 --smtp 2587 --console 2925 >/dev/null
rig_ready() { pm logs rig 2>/dev/null | grep -q 'xoauthd demo is running'; }
eventually 60 rig_ready || fail "the rig (xoauthd demo) did not start"
demo_dir=$(find "$work/rig" -mindepth 1 -maxdepth 1 -type d -name 'xoauthd-demo-*')
# The demo's store path, relative to its configuration.
store_path=$(sed -n 's/^  path: \([^ ]*\)$/\1/p' "$demo_dir/xoauthd.yaml" | head -n 1)
[ -f "$demo_dir/xoauthd.yaml" ] && [ -f "$demo_dir/$store_path" ] && [ -f "$demo_dir/store.key" ] ||
	fail "the rig's directory lacks its configuration, token store ($store_path) or key: $(ls -R "$demo_dir")"

step "xoauthd serve: read-only, no capabilities, configuration mounted from a directory"
# The configuration is the demo's own (its identity provider, mail server,
# CA, password hash, and store key beside the configuration) with the
# listeners and the token store moved where the deployment files put them,
# and the admin endpoint the health check asks. The token store is a copy
# of the one the demo signed in with the authorization code flow, as
# `xoauthd login` would have left it.
ca_file=$(sed -n 's/.*ca_file: \([^,}]*\).*/\1/p' "$demo_dir/xoauthd.yaml" | head -n 1)
cp "$demo_dir/$ca_file" "$work/etc/"
sed -e 's/\(protocol: imap, listen: \)"[^"]*"/\1"127.0.0.1:1143"/' \
	-e 's/\(protocol: pop3, listen: \)"[^"]*"/\1"127.0.0.1:1110"/' \
	-e 's/\(protocol: smtp, listen: \)"[^"]*"/\1"127.0.0.1:1587"/' \
	-e "s|^  path: $store_path\$|  path: /var/lib/xoauthd/tokens.json|" \
	"$demo_dir/xoauthd.yaml" >"$work/etc/xoauthd.yaml"
# The admin endpoint of the deployment files (the demo's, if it has one,
# also serves its console).
admin='admin: {listen: "127.0.0.1:9925"}'
if grep -q '^admin:' "$work/etc/xoauthd.yaml"; then
	sed -i "s/^admin:.*/$admin/" "$work/etc/xoauthd.yaml"
else
	printf '%s\n' "$admin" >>"$work/etc/xoauthd.yaml"
fi
for want in '127.0.0.1:1143"' '127.0.0.1:1110"' '127.0.0.1:1587"' 'path: /var/lib/xoauthd/tokens.json' "$admin"; do
	grep -qF "$want" "$work/etc/xoauthd.yaml" || fail "the demo's configuration changed shape: no $want after rewriting it"
done
chmod 0644 "$work/etc/"*
install -o 65532 -g 65532 -m 0400 "$demo_dir/store.key" "$work/etc/"
install -o 65532 -g 65532 -m 0600 "$demo_dir/$store_path" "$work/state/tokens.json"
pm run -d --pod "$pod" --name xoauthd "${hardening[@]}" --read-only-tmpfs=false \
	-v "$work/etc:/etc/xoauthd:ro" -v "$work/state:/var/lib/xoauthd" "$image" >/dev/null
pm run -d --pod "$pod" --name client "${hardening[@]}" "$client_image" sleep 3600 >/dev/null

step "health check (podman healthcheck run: the image's HEALTHCHECK)"
healthy() { pm healthcheck run xoauthd >/dev/null 2>&1; }
eventually 30 healthy || fail "podman healthcheck run xoauthd: $(pm healthcheck run xoauthd 2>&1)"
[ "$(pm inspect xoauthd --format '{{.State.Health.Status}}')" = healthy ] ||
	fail "health status after a passing check: $(pm inspect xoauthd --format '{{.State.Health.Status}}')"

step "the Kubernetes probes and the compose health check, run in the container"
probes=$(sed -n 's/.*exec: {command: \[\(.*\)\]}.*/\1/p' deploy/kubernetes/sidecar.yaml)
[ "$(printf '%s\n' "$probes" | grep -c .)" -ge 3 ] || fail "found fewer than 3 exec probes in deploy/kubernetes/sidecar.yaml"
compose_check=$(sed -n 's/^ *test: \[\(.*\)\]$/\1/p' deploy/docker-compose.yaml | sed 's/^"CMD", //')
[ -n "$compose_check" ] || fail "found no healthcheck test in deploy/docker-compose.yaml"
while IFS= read -r probe; do
	read -ra argv <<<"$(printf '%s' "$probe" | tr -d '",')"
	out=$(pm exec xoauthd "${argv[@]}" 2>&1) || fail "probe \`${argv[*]}\` failed: $out"
	echo "ok  ${argv[*]}"
done < <(printf '%s\n%s\n' "$probes" "$compose_check")

step "the client container: IMAP, POP3 and SMTP on the pod's loopback"
client() { pm exec client "$@"; }
curl_=(curl -sS --max-time 20)
out=$(client "${curl_[@]}" 'imap://127.0.0.1:1143/INBOX;UID=1' -u demo:demo) || fail "IMAP fetch through xoauthd failed"
grep -q 'Subject: Welcome to the xoauthd demo' <<<"$out" || fail "IMAP fetch: no welcome message in: $out"
echo "ok  IMAP login and fetch"
out=$(client "${curl_[@]}" 'pop3://127.0.0.1:1110/1' -u demo:demo) || fail "POP3 retrieval through xoauthd failed"
grep -q 'Subject: Welcome to the xoauthd demo' <<<"$out" || fail "POP3 RETR: no welcome message in: $out"
echo "ok  POP3 login and RETR"
if client "${curl_[@]}" 'imap://127.0.0.1:1143/INBOX;UID=1' -u demo:wrong >/dev/null 2>&1; then
	fail "IMAP login with a wrong password succeeded"
fi
echo "ok  IMAP login with a wrong password refused"
nonce="sidecar-$$-$RANDOM"
printf 'From: demo@contoso.test\r\nTo: demo@contoso.test\r\nSubject: %s\r\n\r\nThrough the sidecar.\r\n' "$nonce" |
	pm exec -i client "${curl_[@]}" smtp://127.0.0.1:1587 --mail-from demo@contoso.test \
		--mail-rcpt demo@contoso.test -u demo:demo -T - || fail "SMTP submission through xoauthd failed"
out=$(client "${curl_[@]}" 'imap://127.0.0.1:1143/INBOX;UID=2' -u demo:demo) || fail "IMAP fetch of the sent message failed"
grep -q "Subject: $nonce" <<<"$out" || fail "the message sent over SMTP is not UID 2 in the INBOX: $out"
echo "ok  SMTP submission, the message read back over IMAP"

step "live reload: an account added by editing the mounted configuration"
metric() { client "${curl_[@]}" http://127.0.0.1:9925/metrics | sed -n "s/^$1 //p"; }
reloads_before=$(metric 'xoauthd_config_reloads_total{result="success"}')
if client "${curl_[@]}" 'imap://127.0.0.1:1143/INBOX;UID=1' -u ci-reload:demo >/dev/null 2>&1; then
	fail "the login ci-reload works before it was added"
fi
hash=$(sed -n "s/^ *password_hash: \('.*'\)$/\1/p" "$work/etc/xoauthd.yaml")
[ -n "$hash" ] || fail "no password_hash in the configuration"
# An editor's save: a new file renamed over the old one.
sed "/^accounts:\$/a\\  - {login: ci-reload, password_hash: $hash, identity: demo@contoso.test, mailbox: demo@contoso.test, provider: demo}" \
	"$work/etc/xoauthd.yaml" >"$work/etc/.xoauthd.yaml.new"
chmod 0644 "$work/etc/.xoauthd.yaml.new"
mv "$work/etc/.xoauthd.yaml.new" "$work/etc/xoauthd.yaml"
new_login() { client "${curl_[@]}" 'imap://127.0.0.1:1143/INBOX;UID=1' -u ci-reload:demo >/dev/null 2>&1; }
eventually 30 new_login || fail "the account added to the mounted configuration cannot log in after 30 s"
reloads_after=$(metric 'xoauthd_config_reloads_total{result="success"}')
[ "${reloads_after:-0}" -gt "${reloads_before:-0}" ] ||
	fail "xoauthd_config_reloads_total{result=\"success\"} did not grow: ${reloads_before:-none} -> ${reloads_after:-none}"
echo "ok  ci-reload logs in after the edit (reloads: ${reloads_before:-0} -> $reloads_after)"
healthy || fail "unhealthy after the reload"

step "podman stop -t $stop_timeout with a session open: drain, exit status 0"
# A logged-in IMAP session that stays open (nc keeps reading).
pm exec -d client sh -c '{ printf "a1 LOGIN demo demo\r\n"; sleep 600; } | nc 127.0.0.1 1143' >/dev/null
open_sessions() { [ "$(metric 'xoauthd_connections_open{protocol="imap"}')" = 1 ]; }
eventually 20 open_sessions || fail "the IMAP session for the drain did not open: $(client "${curl_[@]}" http://127.0.0.1:9925/metrics | grep connections_open)"
stop_begin=$SECONDS
pm stop -t "$stop_timeout" xoauthd >/dev/null
stop_took=$((SECONDS - stop_begin))
exit_code=$(pm inspect xoauthd --format '{{.State.ExitCode}}')
echo "podman stop took ${stop_took}s; exit status $exit_code"
pm logs --tail 5 xoauthd
[ "$exit_code" = 0 ] || fail "xoauthd exited with $exit_code after podman stop -t $stop_timeout (137: killed at the end of the grace period)"
pm logs xoauthd 2>&1 | grep -q 'stopping: no new connections' || fail "xoauthd did not log that it drains"

step "done in $((SECONDS - stage_start))s"
