#!/usr/bin/env python3
"""probe_json - `umapd-probe --json` must be valid JSON with the documented keys.

Usage: probe_json.py <path to umapd-probe>.  Runs the program under its own
timeout (the watchdog: a hang fails with the step it stood in), parses its
output, checks every key and value type, that --help and the table output
exit 0, and that a bad argument exits 2.  Prints one line when it passes.
"""
import json
import os
import subprocess
import sys

TIMEOUT = 40  # seconds per run; each probe check has 5 s, they run in parallel


def fail(msg):
    print(f"FAIL probe_json: {msg}")
    sys.exit(1)


def run(args, env=None):
    try:
        return subprocess.run(args, capture_output=True, text=True, timeout=TIMEOUT, env=env)
    except subprocess.TimeoutExpired:
        fail(f"watchdog: {' '.join(args)} did not finish in {TIMEOUT} s")


def main():
    exe = sys.argv[1]
    r = run([exe, "--json"])
    if r.returncode != 0:
        fail(f"--json exited {r.returncode}: {r.stderr}")
    try:
        d = json.loads(r.stdout)
    except json.JSONDecodeError as e:
        fail(f"--json output does not parse: {e}\n{r.stdout}")

    def need(obj, key, types, where):
        if key not in obj:
            fail(f"{where}: no key {key!r} in {sorted(obj)}")
        if not isinstance(obj[key], types):
            fail(f"{where}.{key}: {obj[key]!r} is not {types}")
        return obj[key]

    need(d, "kernel", str, "top")
    u = need(d, "userfaultfd", dict, "top")
    for k in ("available", "dev_userfaultfd", "syscall", "user_mode_only"):
        need(u, k, bool, "userfaultfd")
    for k in ("error", "dev_userfaultfd_error", "syscall_error", "user_mode_only_error"):
        need(u, k, (str, type(None)), "userfaultfd")
    int(need(u, "api_features", str, "userfaultfd"), 16)
    f = need(d, "features", dict, "top")
    for k in ("wp", "wp_unpopulated", "event_fork", "event_remap", "event_remove", "event_unmap",
              "poison", "move", "wp_hugetlbfs_shmem", "minor_shmem", "exact_address"):
        need(f, k, bool, "features")
    s = need(d, "sysctl", dict, "top")
    for k in ("vm.unprivileged_userfaultfd", "kernel.io_uring_disabled"):
        need(s, k, (int, type(None)), "sysctl")
    w = need(d, "write_out", dict, "top")
    need(w, "tmp_dir", str, "write_out")
    need(w, "fs_type", str, "write_out")
    need(w, "direct_io_error", (str, type(None)), "write_out")
    need(w, "timeout_ms", int, "write_out")
    need(w, "user_mode_only", bool, "write_out")
    paths = need(w, "paths", dict, "write_out")
    for p in ("pwrite", "pwrite_direct", "io_uring", "io_uring_direct", "libaio_direct"):
        e = need(paths, p, dict, "write_out.paths")
        res = need(e, "result", str, f"paths.{p}")
        if res not in ("safe", "hangs", "error", "unavailable"):
            fail(f"paths.{p}.result is {res!r}")
        need(e, "errno", (str, type(None)), f"paths.{p}")
        need(e, "elapsed_us", (int, float), f"paths.{p}")
        need(e, "wp_seen", (bool, type(None)), f"paths.{p}")
    ev = need(d, "eviction", dict, "top")
    need(ev, "setting", str, "eviction")
    need(ev, "valid", bool, "eviction")
    mode = need(ev, "mode", (str, type(None)), "eviction")
    if mode not in ("direct", "bounce"):
        fail(f"eviction.mode is {mode!r} with UMAPD_EVICT_COPY unset")
    need(ev, "auto_mode", str, "eviction")
    need(ev, "reason", str, "eviction")
    if u["available"] and f["wp"]:
        if paths["pwrite"]["result"] != "safe" or mode != "direct":
            fail(f"pwrite is {paths['pwrite']['result']}, eviction {mode}, on kernel {d['kernel']}")

    # An invalid setting is reported, not fatal to the program.
    env = dict(os.environ, UMAPD_EVICT_COPY="sideways")
    r2 = run([exe, "--json"], env)
    if r2.returncode != 0:
        fail(f"--json with an invalid UMAPD_EVICT_COPY exited {r2.returncode}")
    ev2 = json.loads(r2.stdout)["eviction"]
    if ev2["valid"] or ev2["mode"] is not None or "auto, direct or bounce" not in ev2["reason"]:
        fail(f"invalid UMAPD_EVICT_COPY reported as {ev2}")

    for args, want in (([exe], 0), ([exe, "--help"], 0), ([exe, "--bogus"], 2)):
        r3 = run(args)
        if r3.returncode != want:
            fail(f"{' '.join(args[1:]) or '(no arguments)'} exited {r3.returncode}, want {want}")
    table = run([exe]).stdout
    for word in ("userfaultfd", "pwrite", "eviction:"):
        if word not in table:
            fail(f"table output lacks {word!r}:\n{table}")

    print(f"PASS probe_json: kernel {d['kernel']}, paths "
          + ", ".join(f"{p}={paths[p]['result']}" for p in paths)
          + f", eviction {mode}; table, --help and bad argument exit as documented")


if __name__ == "__main__":
    main()
