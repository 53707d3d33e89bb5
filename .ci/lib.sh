# shellcheck shell=bash
# Helpers shared by the CI stages under .ci/ (sourced, not run).
# A stage prints its steps with the seconds since it began, fails with
# fail(), and skips with skip(): a banner nobody can miss, plus a line in
# $CI_SKIPS (when .ci/run sets it) that .ci/run repeats at the very end.

stage_name=${stage_name:-stage}
stage_start=$SECONDS

# step prints a step heading with the elapsed time of the stage.
step() { printf '\n==> [%s +%ds] %s\n' "$stage_name" $((SECONDS - stage_start)) "$*"; }

# fail reports a failed check and exits 1.
fail() {
	printf '\n*** [%s] FAILED: %s\n' "$stage_name" "$*" >&2
	exit 1
}

# skip reports that the machine cannot run this stage, loudly, and exits 0.
skip() {
	local line
	line=$(printf '%s SKIPPED: %s' "$stage_name" "$*")
	printf '\n%s\n!!! %s\n!!! Nothing of this stage was checked.\n%s\n\n' \
		"$(printf '!%.0s' {1..72})" "$line" "$(printf '!%.0s' {1..72})" >&2
	if [ -n "${CI_SKIPS:-}" ]; then
		printf '%s\n' "$line" >>"$CI_SKIPS"
	fi
	exit 0
}

# eventually runs a command until it succeeds, at most $1 seconds (polling
# every 0.2 s); it returns the command's last status.
eventually() {
	local limit=$1 rc=0
	shift
	local end=$((SECONDS + limit))
	while :; do
		rc=0
		"$@" && return 0 || rc=$?
		if [ "$SECONDS" -ge "$end" ]; then
			return "$rc"
		fi
		sleep 0.2
	done
}
