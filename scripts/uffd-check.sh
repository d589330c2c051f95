#!/usr/bin/env bash
# uffd-check.sh - say whether this process may use userfaultfd, and how to
# allow it if not.  Exit 0 if it may, 1 if not.  It changes nothing.
set -uo pipefail

if [[ $EUID -eq 0 ]]; then
	echo "userfaultfd: running as root: allowed"
	exit 0
fi
unpriv=$(cat /proc/sys/vm/unprivileged_userfaultfd 2>/dev/null || echo "?")
if [[ "$unpriv" == 1 ]]; then
	echo "userfaultfd: vm.unprivileged_userfaultfd=1: allowed"
	exit 0
fi
if [[ -r /dev/userfaultfd && -w /dev/userfaultfd ]]; then
	echo "userfaultfd: /dev/userfaultfd is readable and writable: allowed (user-mode faults only)"
	exit 0
fi
cat >&2 <<MSG
userfaultfd: NOT allowed for user $(id -un) (vm.unprivileged_userfaultfd=$unpriv,
  no read/write access to /dev/userfaultfd).  Any one of these allows it:
  - run as root
  - sudo sysctl -w vm.unprivileged_userfaultfd=1
  - sudo setfacl -m u:$(id -un):rw /dev/userfaultfd   (or a group owning it, mode 0660)
MSG
exit 1
