#!/usr/bin/env bash
# A bad setting prints one clear line and the program runs unpaged; with
# UMAPD_PRELOAD_LOG=1 what was intercepted is shown.
NAME=config_error
source "$(dirname "$0")/lib.sh" "$@"
[[ -n "$PY" ]] || t_skip "python3 is not installed (Debian package python3)"

head -c $((4 << 20)) /dev/urandom >"$WORK/a.dat"
prog='import mmap,sys,hashlib; f=open(sys.argv[1],"rb"); m=mmap.mmap(f.fileno(),0,prot=mmap.PROT_READ); print(hashlib.sha256(m[:]).hexdigest())'
want=$($PY -c "$prog" "$WORK/a.dat")
got=$(env LD_PRELOAD="$PRELOAD" UMAPD_PRELOAD_FILES="$WORK/*.dat" UMAPD_PRELOAD_MIN=12Q $PY -c "$prog" "$WORK/a.dat" 2>"$WORK/err") ||
	t_fail "the program failed with a bad setting: $(cat "$WORK/err")"
[[ "$got" == "$want" ]] || t_fail "output differs with a bad setting"
[[ $(wc -l <"$WORK/err") -eq 1 ]] || t_fail "expected one line on stderr, got: $(cat "$WORK/err")"
grep -q 'UMAPD_PRELOAD_MIN="12Q" is invalid' "$WORK/err" || t_fail "the line does not name the setting: $(cat "$WORK/err")"
got=$(env LD_PRELOAD="$PRELOAD" UMAPD_PRELOAD_FILES="$WORK/*.dat" UMAPD_PRELOAD_LOG=1 UMAPD_BUFSIZE=1M $PY -c "$prog" "$WORK/a.dat" 2>"$WORK/log") ||
	t_fail "the program failed under the preload library: $(cat "$WORK/log")"
[[ "$got" == "$want" ]] || t_fail "output differs when paged"
grep -q "paging $WORK/a.dat" "$WORK/log" || t_fail "UMAPD_PRELOAD_LOG=1 did not show the mapping: $(cat "$WORK/log")"
t_pass "bad setting: one line, unpaged, same output; UMAPD_PRELOAD_LOG shows the paged mapping"
