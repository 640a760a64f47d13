#!/usr/bin/env python3
"""Check an strace log of the server against the unit's seccomp-based settings.

Without systemd as PID 1 nothing enforces SystemCallFilter=, MemoryDenyWriteExecute=,
RestrictAddressFamilies=, RestrictNamespaces= or LockPersonality=, so make deb-test runs the
server under `strace -f` through startup, health checks, dispatches, a reload and SIGTERM,
and this script checks that nothing it did would have been refused:

  - every system call is in the unit's SystemCallFilter= set (the groups expanded by
    systemd-analyze syscall-filter; `~` lines remove, later plain lines add);
  - MemoryDenyWriteExecute: no mmap with PROT_WRITE|PROT_EXEC, no mprotect/pkey_mprotect
    adding PROT_EXEC, no shmat with SHM_EXEC;
  - RestrictAddressFamilies: socket()/socketpair() only in the listed families;
  - RestrictNamespaces: no unshare/setns, no clone with CLONE_NEW* (clone3 is answered with
    ENOSYS by systemd's filter, and glibc then falls back to clone);
  - LockPersonality: no personality() change.

usage: syscall-audit.py UNIT_FILE STRACE_LOG
"""

import re
import subprocess
import sys


def unit_values(path, key):
    values = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line.startswith(key + "="):
                values.append(line[len(key) + 1 :])
    return values


def expand(name, seen=None):
    """The system calls of a name: a group (@...) through systemd-analyze, or itself."""
    if not name.startswith("@"):
        return {name}
    seen = seen if seen is not None else set()
    if name in seen:
        return set()
    seen.add(name)
    out = subprocess.run(
        ["systemd-analyze", "syscall-filter", "--no-pager", name], check=True, capture_output=True, text=True
    ).stdout
    calls = set()
    for line in out.splitlines()[1:]:
        word = line.strip()
        if not word or word.startswith("#"):
            continue
        calls |= expand(word, seen)
    return calls


def allowed_calls(unit):
    allowed = None
    for value in unit_values(unit, "SystemCallFilter"):
        deny = value.startswith("~")
        names = set()
        for word in value.lstrip("~").split():
            names |= expand(word)
        if deny:
            allowed = (allowed if allowed is not None else set()) - names
        else:
            allowed = names if allowed is None else allowed | names
    return allowed


CALL = re.compile(r"^(\d+)\s+([a-z0-9_]+)\((.*)$")


def main():
    unit, log = sys.argv[1], sys.argv[2]
    allowed = allowed_calls(unit)
    families = set(" ".join(unit_values(unit, "RestrictAddressFamilies")).split())
    mdwe = "yes" in unit_values(unit, "MemoryDenyWriteExecute")
    namespaces = "yes" in unit_values(unit, "RestrictNamespaces")
    personality = "yes" in unit_values(unit, "LockPersonality")

    problems, used, used_families, seen_exec = [], {}, set(), False
    with open(log) as f:
        for line in f:
            m = CALL.match(line)
            if not m:
                continue
            name, args = m.group(2), m.group(3)
            if not seen_exec:
                # The filter is in force from the server's execve on.
                seen_exec = name == "execve"
                continue
            used[name] = used.get(name, 0) + 1
            if allowed is not None and name not in allowed:
                problems.append(f"{name} is outside SystemCallFilter: {line.strip()}")
            if mdwe:
                if name == "mmap" and "PROT_WRITE" in args and "PROT_EXEC" in args:
                    problems.append(f"MemoryDenyWriteExecute: W+X mapping: {line.strip()}")
                if name in ("mprotect", "pkey_mprotect") and "PROT_EXEC" in args:
                    problems.append(f"MemoryDenyWriteExecute: mprotect to executable: {line.strip()}")
                if name == "shmat" and "SHM_EXEC" in args:
                    problems.append(f"MemoryDenyWriteExecute: executable shared memory: {line.strip()}")
            if families and name in ("socket", "socketpair"):
                family = args.split(",", 1)[0].strip()
                used_families.add(family)
                if family not in families:
                    problems.append(f"RestrictAddressFamilies: {family}: {line.strip()}")
            if namespaces:
                if name in ("unshare", "setns") or (name == "clone" and "CLONE_NEW" in args):
                    problems.append(f"RestrictNamespaces: {line.strip()}")
            if personality and name == "personality" and not args.startswith("0xffffffff"):
                problems.append(f"LockPersonality: {line.strip()}")
    if not seen_exec or not used:
        problems.append(f"{log} shows no execve of the server, or nothing after it")
    for p in problems:
        print(f"syscall-audit: {p}", file=sys.stderr)
    if problems:
        return 1
    total = sum(used.values())
    print(
        f"    {total} system calls ({len(used)} distinct) after execve, all inside SystemCallFilter "
        f"({len(allowed) if allowed is not None else 'any'} allowed); no W+X memory; sockets "
        f"{' '.join(sorted(used_families)) or 'none'} (allowed: {' '.join(sorted(families))}); "
        "no namespaces; no personality change"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
