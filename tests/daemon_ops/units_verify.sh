#!/bin/sh
# units_verify - the generated systemd units (build-time copies in
# <build>/systemd/) pass `systemd-analyze verify` without a single message,
# keep the settings the daemon's protocols rely on, and stay at or below an
# exposure of 1.0 in `systemd-analyze security --offline=true`.
#
#   units_verify.sh UNIT_DIR DAEMON_BINARY EXPECTED_EXECSTART_BINARY
#
# verify insists that ExecStart= names an existing executable; the installed
# path usually does not exist yet, so the check runs on a copy whose
# ExecStart points at the daemon in the build tree.  The original's path is
# checked separately against what the build was configured with.
# Exit 77 (ctest SKIP_RETURN_CODE) when systemd-analyze is absent.
set -u
name=units_verify
unitdir=$1 daemon=$2 want_exec=$3

fail() { echo "FAIL $name: $*"; exit 1; }
command -v systemd-analyze >/dev/null 2>&1 || {
	echo "SKIP $name: systemd-analyze is not installed (apt-get install systemd)"; exit 77; }
[ -x "$daemon" ] || fail "the daemon binary $daemon is not there; build target umapd-server first"

for u in umapd.service umapd.socket; do
	[ -f "$unitdir/$u" ] || fail "$unitdir/$u was not generated"
done

# The settings the daemon depends on, in the generated (not copied) files.
svc=$unitdir/umapd.service sock=$unitdir/umapd.socket
has() { grep -qx -- "$2" "$1" || fail "$(basename "$1") lacks the line '$2'"; }
has "$svc" "Type=notify"
has "$svc" "NotifyAccess=main"
has "$svc" "Requires=umapd.socket"
has "$svc" "SystemCallArchitectures=native"
has "$svc" "CapabilityBoundingSet="
has "$svc" "RestrictAddressFamilies=AF_UNIX"
has "$sock" "ListenStream=/run/umapd/umapd.sock"
grep -q '^WatchdogSec=[1-9]' "$svc" || fail "umapd.service has no WatchdogSec="
exec_line=$(grep '^ExecStart=' "$svc") || fail "umapd.service has no ExecStart="
case "$exec_line" in
"ExecStart=$want_exec "*|"ExecStart=$want_exec") ;;
*) fail "'$exec_line' does not start the configured $want_exec" ;;
esac
grep -q '@[A-Z_]*@' "$svc" "$sock" && fail "an @VARIABLE@ was left unsubstituted: $(grep -h '@[A-Z_]*@' "$svc" "$sock")"
# The daemon needs no capability at all (clients pass their descriptors).
grep -v '^#' "$svc" | grep -qi 'CAP_SYS_PTRACE\|CAP_SYS_ADMIN' && fail "umapd.service grants a capability it does not need"
# userfaultfd must stay allowed by the system-call filter.
grep '^SystemCallFilter=[^~]' "$svc" | grep -q userfaultfd || fail "SystemCallFilter does not allow userfaultfd"

tmp=$(mktemp -d) || fail "mktemp"
trap 'rm -rf "$tmp"' EXIT
sed "s|^ExecStart=$want_exec|ExecStart=$daemon|" "$svc" >"$tmp/umapd.service"
cp "$sock" "$tmp/umapd.socket"
out=$(cd "$tmp" && systemd-analyze verify ./umapd.service ./umapd.socket 2>&1)
rc=$?
[ $rc -eq 0 ] || fail "systemd-analyze verify exited $rc: $out"
[ -z "$out" ] || fail "systemd-analyze verify printed: $out"

# security --offline appeared in systemd 250; older ones only analyse loaded units.
score=skipped
if systemd-analyze security --help 2>&1 | grep -q -- '--offline'; then
	sec=$(cd "$tmp" && systemd-analyze security --offline=true --threshold=10 ./umapd.service 2>&1)
	rc=$?
	score=$(printf '%s\n' "$sec" | sed -n 's/.*Overall exposure level for umapd.service: \([0-9.]*\).*/\1/p')
	[ -n "$score" ] || fail "systemd-analyze security printed no score (exit $rc): $(printf '%s\n' "$sec" | tail -3)"
	awk -v s="$score" 'BEGIN { exit !(s <= 1.0) }' ||
		fail "exposure $score is above 1.0; what is exposed: $(printf '%s\n' "$sec" | grep '^✗')"
fi
echo "PASS $name: verify clean for umapd.service and umapd.socket, ExecStart=$want_exec, exposure $score"
