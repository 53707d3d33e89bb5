#!/usr/bin/env bash
# Checks read "[ condition ] && [ condition ] || fail ...": fail exits.
# shellcheck disable=SC2015
# CI stage: the Windows binary and its service, run under Wine.
#
#   1. xoauthd.exe version, validate (a good and a broken configuration)
#      and demo: the demo's IMAP, POP3 and SMTP answer curl from Linux.
#   2. The demo keeps running as the test's identity provider and mail
#      server; the service gets a configuration that uses them (the demo's,
#      with other listen ports, and a copy of its token store) in the
#      default place, %ProgramData%\xoauthd. Then service install, start,
#      an IMAP login and fetch and an SMTP submission through the service,
#      stop, uninstall, with the exit status of every command and the
#      service's state and exit codes (sc query) checked.
#   3. The demo stops on Ctrl-C (SIGINT): exit status 0 and its temporary
#      directory removed.
#
# Wine 8 specifics: Go 1.22+ needs ProcessPrng from bcryptprimitives.dll,
# which Wine 8 lacks, so a small DLL that forwards to SystemFunction036
# (RtlGenRandom) is built with mingw-w64 into the prefix's system32. Wine
# ends services when its last ordinary process exits: the running demo is
# that process. Its event log is a stub, so the service's log is not
# checked.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
stage_name=wine
# shellcheck source=.ci/lib.sh
. .ci/lib.sh

wine=$(command -v wine64 || echo /usr/lib/wine/wine64)
wineserver=$(command -v wineserver || echo /usr/lib/wine/wineserver)
mingw=x86_64-w64-mingw32-gcc
[ -x "$wine" ] || fail "wine64 is not installed (.ci/run installs it)"
command -v "$mingw" >/dev/null || fail "$mingw is not installed (.ci/run installs gcc-mingw-w64-x86-64-win32)"
if [ -x /usr/local/go/bin/go ] && ! command -v go >/dev/null; then
	PATH=/usr/local/go/bin:$PATH
fi
command -v go >/dev/null || fail "go is not installed"

work=$(mktemp -d /var/tmp/xoauthd-ci-wine.XXXXXX)
export WINEPREFIX=$work/prefix WINEDEBUG=-all WINEDLLOVERRIDES='mscoree,mshtml='
exe=$work/xoauthd.exe
svcdir=$WINEPREFIX/drive_c/ProgramData/xoauthd
demo_pid=

# win runs a Windows program; its exit status is the program's.
win() { "$wine" "$@"; }

demo_gone() { ! kill -0 "$demo_pid" 2>/dev/null; }

cleanup() {
	local rc=$?
	set +e
	if [ -f "$exe" ] && win "$exe" service stop >/dev/null 2>&1; then :; fi
	if [ -f "$exe" ]; then win "$exe" service uninstall >/dev/null 2>&1; fi
	if [ -n "$demo_pid" ] && kill -0 "$demo_pid" 2>/dev/null; then
		kill -INT "$demo_pid"
		eventually 20 demo_gone || kill -KILL "$demo_pid"
		wait "$demo_pid" 2>/dev/null
	fi
	if [ "$rc" -ne 0 ] && [ -f "$work/demo.err" ]; then
		echo "--- demo's log (last 30 lines)" >&2
		tail -n 30 "$work/demo.err" >&2
	fi
	"$wineserver" -k 2>/dev/null
	"$wineserver" -w 2>/dev/null
	rm -rf "$work"
	exit "$rc"
}
trap cleanup EXIT

step "$("$wine" --version), prefix"
if ! win wineboot --init >"$work/wineboot.log" 2>&1; then
	cat "$work/wineboot.log" >&2
	skip "Wine cannot create a prefix on this machine (wineboot --init failed)"
fi
# wineboot returns before the prefix is complete; wait until every process
# of the prefix has ended, or the service manager of the set-up races ours.
"$wineserver" -w

step "bcryptprimitives.dll with ProcessPrng (missing in Wine 8)"
cat >"$work/prng.c" <<'EOF'
#include <windows.h>

/* RtlGenRandom, exported by advapi32 as SystemFunction036. */
BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

/* ProcessPrng fills data with len random bytes; it never fails. */
BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len)
{
	while (len > 0) {
		ULONG n = len > 0x10000000 ? 0x10000000 : (ULONG)len;
		if (!SystemFunction036(data, n))
			return FALSE;
		data += n;
		len -= n;
	}
	return TRUE;
}
EOF
printf 'LIBRARY bcryptprimitives\nEXPORTS\n  ProcessPrng\n' >"$work/prng.def"
"$mingw" -shared -O2 -s -o "$WINEPREFIX/drive_c/windows/system32/bcryptprimitives.dll" \
	"$work/prng.c" "$work/prng.def" -ladvapi32

step "xoauthd.exe (GOOS=windows GOARCH=amd64)"
version=ci-wine-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
CGO_ENABLED=0 GOOS=windows GOARCH=amd64 go build -trimpath -ldflags "-X main.version=$version" -o "$exe" ./cmd/xoauthd

step "xoauthd.exe version"
out=$(win "$exe" version) || fail "version exited with $?"
echo "$out"
[[ "$out" == "xoauthd $version "*"windows/amd64)" ]] || fail "version printed $out"

# free_port prints a TCP port nothing on 127.0.0.1 listens on.
free_port() {
	local p
	for _ in $(seq 50); do
		p=$((20000 + RANDOM % 30000))
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			echo "$p"
			return
		fi
	done
	fail "no free port found"
}

step "xoauthd.exe demo: IMAP, POP3 and SMTP through it, with curl from Linux"
# Started directly (not through win), so that $! is Wine's process and
# SIGINT reaches the demo as Ctrl-C.
"$wine" "$exe" demo --imap "$(free_port)" --pop3 "$(free_port)" --smtp "$(free_port)" >"$work/demo.out" 2>"$work/demo.err" &
demo_pid=$!
demo_ready() { grep -qs 'xoauthd demo is running' "$work/demo.out"; }
eventually 60 demo_ready || fail "the demo did not start: $(cat "$work/demo.err")"
# The addresses as the demo prints them ("  IMAP       127.0.0.1:PORT   (no TLS)").
demo_addr() { sed -n "s/^  $1 *\([0-9.]*:[0-9]*\) .*/\1/p" "$work/demo.out"; }
imap=$(demo_addr IMAP) pop3=$(demo_addr POP3) smtp=$(demo_addr SMTP)
[ -n "$imap" ] && [ -n "$pop3" ] && [ -n "$smtp" ] || fail "the demo's instructions name no addresses: $(cat "$work/demo.out")"
curl_=(curl -sS --max-time 20)
welcome='Subject: Welcome to the xoauthd demo'

# check_mail IMAP POP3 SMTP WHAT: fetch the welcome message over IMAP and
# POP3, send a message over SMTP and read it back over IMAP.
check_mail() {
	local imap=$1 pop3=$2 smtp=$3 what=$4 out nonce
	out=$("${curl_[@]}" "imap://$imap/INBOX;UID=1" -u demo:demo) || fail "$what: IMAP fetch failed"
	grep -q "$welcome" <<<"$out" || fail "$what: IMAP fetch without the welcome message: $out"
	out=$("${curl_[@]}" "pop3://$pop3/1" -u demo:demo) || fail "$what: POP3 RETR failed"
	grep -q "$welcome" <<<"$out" || fail "$what: POP3 RETR without the welcome message: $out"
	if "${curl_[@]}" "imap://$imap/INBOX;UID=1" -u demo:wrong >/dev/null 2>&1; then
		fail "$what: IMAP login with a wrong password succeeded"
	fi
	nonce="$what-$$-$RANDOM"
	printf 'From: demo@contoso.test\r\nTo: demo@contoso.test\r\nSubject: %s\r\n\r\nUnder Wine.\r\n' "$nonce" |
		"${curl_[@]}" "smtp://$smtp" --mail-from demo@contoso.test --mail-rcpt demo@contoso.test -u demo:demo -T - ||
		fail "$what: SMTP submission failed"
	out=$("${curl_[@]}" "imap://$imap/INBOX?SUBJECT%20$nonce" -u demo:demo) || fail "$what: IMAP SEARCH failed"
	grep -Eq '^\* SEARCH [0-9]+' <<<"$out" || fail "$what: the message sent over SMTP is not in the INBOX: $out"
	echo "ok  $what: IMAP fetch, POP3 RETR, wrong password refused, SMTP submission read back over IMAP"
}
check_mail "$imap" "$pop3" "$smtp" demo

step "a configuration for the service in %ProgramData%\\xoauthd, from the demo's; xoauthd.exe validate"
demo_dir=$(find "$WINEPREFIX/drive_c/users" -maxdepth 4 -type d -name 'xoauthd-demo-*' | head -n 1)
[ -f "$demo_dir/xoauthd.yaml" ] || fail "the demo's directory was not found under the prefix's users"
mkdir -p "$svcdir"
ca_file=$(sed -n 's/.*ca_file: \([^,}]*\).*/\1/p' "$demo_dir/xoauthd.yaml" | head -n 1)
store_path=$(sed -n 's/^  path: \([^ ]*\)$/\1/p' "$demo_dir/xoauthd.yaml" | head -n 1)
[ -f "$demo_dir/$store_path" ] || fail "the demo's token store ($store_path) was not found"
# The same layout: the paths of the configuration are relative to it.
cp "$demo_dir/store.key" "$demo_dir/$ca_file" "$svcdir/"
mkdir -p "$(dirname "$svcdir/$store_path")"
cp "$demo_dir/$store_path" "$svcdir/$store_path"
s_imap=127.0.0.1:$(free_port) s_pop3=127.0.0.1:$(free_port) s_smtp=127.0.0.1:$(free_port)
sed -e "s/\(protocol: imap, listen: \)\"[^\"]*\"/\1\"$s_imap\"/" \
	-e "s/\(protocol: pop3, listen: \)\"[^\"]*\"/\1\"$s_pop3\"/" \
	-e "s/\(protocol: smtp, listen: \)\"[^\"]*\"/\1\"$s_smtp\"/" \
	-e "s/^admin: .*/admin: {listen: \"127.0.0.1:$(free_port)\"}/" \
	"$demo_dir/xoauthd.yaml" >"$svcdir/xoauthd.yaml"
for a in "$s_imap" "$s_pop3" "$s_smtp"; do
	grep -q "listen: \"$a\"" "$svcdir/xoauthd.yaml" || fail "the demo's configuration changed shape: no listener $a after rewriting it"
done
wincfg='C:\ProgramData\xoauthd\xoauthd.yaml'
out=$(win "$exe" validate --config "$wincfg") || fail "validate exited with $?: $out"
echo "$out"
[[ "$out" == ok:* ]] || fail "validate printed $out"
sed 's/protocol: pop3,/protocol: pop4,/' "$svcdir/xoauthd.yaml" >"$svcdir/broken.yaml"
rc=0
out=$(win "$exe" validate --config 'C:\ProgramData\xoauthd\broken.yaml' 2>&1) || rc=$?
rm "$svcdir/broken.yaml"
[ "$rc" = 1 ] && grep -q 'pop4' <<<"$out" && grep -Eq 'line [0-9]+|:[0-9]+' <<<"$out" ||
	fail "validate of a broken configuration: exit $rc, want 1 with the line of protocol: pop4; it printed: $out"
echo "ok  a broken configuration: exit 1, $(head -n 2 <<<"$out" | tail -n 1 | sed 's/^ *//')"

# sc_state prints the service's state and exit codes from sc query.
# (Wine's sc exits non-zero for a stopped service; the output counts.)
sc_state() {
	local out
	out=$(win sc query xoauthd 2>&1) || true
	awk '/STATE|EXIT_CODE/ {printf "%s=%s ", $1, $3} END {print ""}' <<<"$out"
}

# expect_state PATTERN WHEN: sc query's state matches the glob PATTERN
# within 15 s (Wine's sc may answer nothing right after a change).
expect_state() {
	# shellcheck disable=SC2053 # $1 is a glob
	state_is() { state=$(sc_state) && [[ "$state" == $1 ]]; }
	eventually 15 state_is "$1" || fail "$2: sc query says \"$state\", want $1; sc query: $(win sc query xoauthd 2>&1)"
	echo "ok  $2: $state"
}

step "xoauthd.exe service run from a console: refused with a hint"
rc=0
out=$(win "$exe" service run 2>&1) || rc=$?
[ "$rc" = 2 ] && grep -q 'only the Windows service manager starts this' <<<"$out" ||
	fail "service run from a console: exit $rc, want 2 with a hint; it printed: $out"
echo "ok  exit 2: $out"

step "xoauthd.exe service install"
out=$(win "$exe" service install 2>&1) || fail "service install exited with $?: $out"
echo "$out"
grep -qF "service run --config $wincfg" <<<"$out" || fail "service install does not run the default configuration: $out"
# Everything is below %ProgramData%\xoauthd, which install restricts itself.
if grep -q '^note: make sure' <<<"$out"; then
	fail "service install asks to restrict a directory below the one it restricted: $out"
fi
expect_state 'STATE=1 *' "after install"

step "xoauthd.exe service start, then mail through the service"
out=$(win "$exe" service start 2>&1) || fail "service start exited with $?: $out"
echo "$out"
expect_state 'STATE=4 *' "after start"
check_mail "$s_imap" "$s_pop3" "$s_smtp" service

step "xoauthd.exe service stop"
out=$(win "$exe" service stop 2>&1) || fail "service stop exited with $?: $out"
echo "$out"
expect_state 'STATE=1 WIN32_EXIT_CODE=0 SERVICE_EXIT_CODE=0 ' "after stop (exit codes 0)"
if "${curl_[@]}" "imap://$s_imap/" -u demo:demo >/dev/null 2>&1; then
	fail "the service still answers IMAP after it stopped"
fi
echo "ok  IMAP no longer answers"

step "xoauthd.exe service uninstall"
out=$(win "$exe" service uninstall 2>&1) || fail "service uninstall exited with $?: $out"
echo "$out"
if win sc query xoauthd >/dev/null 2>&1; then
	fail "sc query still finds the service after uninstall"
fi
rc=0
out=$(win "$exe" service start 2>&1) || rc=$?
[ "$rc" = 1 ] && grep -q 'not installed' <<<"$out" || fail "service start after uninstall: exit $rc: $out"
echo "ok  gone; service start says: $out"

step "the demo stops on Ctrl-C: exit status 0, temporary directory removed"
kill -INT "$demo_pid"
rc=0
wait "$demo_pid" || rc=$?
demo_pid=
[ "$rc" = 0 ] || fail "the demo exited with $rc: $(tail -n 3 "$work/demo.err")"
[ ! -e "$demo_dir" ] || fail "the demo left its temporary directory: $(ls "$demo_dir")"
echo "ok  exit 0, $(basename "$demo_dir") removed"

step "done in $((SECONDS - stage_start))s"
