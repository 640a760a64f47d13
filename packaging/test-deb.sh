#!/usr/bin/env bash
# make deb-test: install build/deb/*.deb on this machine with dpkg, check the unit with
# systemd-analyze, run the installed server the way its unit does and call it over gRPC,
# build and run a C and a cgo program against the installed library with pkg-config, stop
# the server, remove and purge the packages and check that nothing is left.
#
# Idempotent: a previous run's server (by the pid it recorded) and packages are removed first.
# Needs root (dpkg -i, adduser); re-runs itself with sudo otherwise. Without systemd as PID 1
# (a container) the server is started by this script with the unit's ExecStart, User, Group,
# RuntimeDirectory, UMask, LimitNOFILE and NoNewPrivileges/CapabilityBoundingSet, and the
# unit's seccomp settings are checked on an strace of it (test/syscall-audit.py); with
# systemd, postinst starts the real service and the script checks that one.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
if [ "$(id -u)" != 0 ]; then
	command -v sudo >/dev/null || { echo "deb-test: needs root (dpkg -i, adduser) and there is no sudo" >&2; exit 1; }
	exec sudo --preserve-env=CARGO_TARGET_DIR,PATH "$0" "$@"
fi

DEBS=$ROOT/build/deb
WORK=$ROOT/build/deb-test
DISPATCH=${CARGO_TARGET_DIR:-$ROOT/target}/release/examples/dispatch
PACKAGES=(coprocess-grpc libcoprocess)
UNIT=coprocess-grpc.service
SVC_USER=coprocess-grpc
BIN=/usr/bin/coprocess-grpc
PIDFILE=$WORK/server.pid
STATE_FILES=(/etc/passwd /etc/group /etc/shadow /etc/gshadow /etc/ld.so.cache)
# adduser/deluser leave the previous account databases in these: put back what was there.
BACKUP_FILES=(/etc/passwd- /etc/group- /etc/shadow- /etc/gshadow-)

step() { printf '== deb-test: %s\n' "$*"; }
fail() {
	printf 'deb-test: FAIL: %s\n' "$*" >&2
	exit 1
}

LIB_DEB=$(ls "$DEBS"/libcoprocess_*.deb 2>/dev/null | head -1)
GRPC_DEB=$(ls "$DEBS"/coprocess-grpc_*.deb 2>/dev/null | head -1)
[ -n "$LIB_DEB" ] && [ -n "$GRPC_DEB" ] || fail "no packages under build/deb: run make deb"
[ -x "$DISPATCH" ] || fail "$DISPATCH is missing: cargo build --release --locked -p coprocess-grpc --example dispatch"
command -v systemd-analyze >/dev/null || fail "systemd-analyze is missing (the systemd package; make setup)"

SYSTEMD=0
[ -d /run/systemd/system ] && SYSTEMD=1

# dpkg refuses to run while another dpkg or apt holds its lock: wait for it (a shared machine).
dpkg_locked() {
	local i err
	for i in $(seq 60); do
		if err=$(dpkg "$@" 2>&1); then
			[ -z "$err" ] || printf '%s\n' "$err" | sed 's/^/    /'
			return 0
		fi
		case $err in
		*"frontend lock"* | *"database lock"* | *"locked by another process"*) sleep 2 ;;
		*)
			printf '%s\n' "$err" >&2
			return 1
			;;
		esac
	done
	fail "dpkg stayed locked for 2 minutes"
}

installed() { dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null | grep -qvx 'not-installed'; }

# The server this script started, by the pid it recorded (only if that pid still runs it).
our_server_pid() {
	[ -f "$PIDFILE" ] || return 1
	local pid
	pid=$(cat "$PIDFILE")
	[ -n "$pid" ] && [ -e "/proc/$pid" ] || return 1
	case $(readlink "/proc/$pid/exe" 2>/dev/null) in
	"$BIN" | "$BIN (deleted)") echo "$pid" ;;
	*) return 1 ;;
	esac
}

stop_our_server() {
	local pid
	pid=$(our_server_pid) || {
		rm -f "$PIDFILE"
		return 0
	}
	kill -TERM "$pid" 2>/dev/null || true
	for _ in $(seq 100); do
		[ -e "/proc/$pid" ] || break
		sleep 0.1
	done
	if [ -e "/proc/$pid" ]; then kill -KILL "$pid" 2>/dev/null || true; fi
	rm -f "$PIDFILE"
}

# Every process running the packaged binary, whoever started it.
server_processes() {
	local p exe
	for p in /proc/[0-9]*; do
		exe=$(readlink "$p/exe" 2>/dev/null) || continue
		case $exe in "$BIN" | "$BIN (deleted)") echo "${p#/proc/}" ;; esac
	done
}

purge_packages() {
	local present=() p
	for p in "${PACKAGES[@]}"; do
		if installed "$p"; then present+=("$p"); fi
	done
	((${#present[@]})) || return 0
	echo "    purging ${present[*]}"
	dpkg_locked --purge "${present[@]}"
}

# The runtime directory systemd would have made and removed; only without systemd, and only
# when it holds nothing but a stale socket.
remove_runtime_dir() {
	[ "$SYSTEMD" = 0 ] || return 0
	[ -d "$RUNTIME_DIR" ] || return 0
	find "$RUNTIME_DIR" -mindepth 1 ! -type s -print -quit | grep -q . && fail "$RUNTIME_DIR holds more than a socket"
	rm -rf "$RUNTIME_DIR"
}

# The account backups saved before the installation, restored once the live databases are
# back to what they were (so nothing of the test's user stays in them either).
restore_account_backups() {
	[ -d "$WORK/account-backups" ] || return 0
	sha256sum --status -c "$WORK/accounts.sha256" 2>/dev/null || return 0
	local f
	for f in "${BACKUP_FILES[@]}"; do
		if [ -e "$WORK/account-backups/$(basename "$f")" ]; then
			cp -p "$WORK/account-backups/$(basename "$f")" "$f"
		fi
	done
	rm -rf "$WORK/account-backups" "$WORK/accounts.sha256"
}

RUNTIME_DIR=/run/coprocess-grpc
cleanup() {
	local rc=$?
	trap - EXIT
	if [ "$rc" != 0 ]; then
		echo "deb-test: cleaning up after the failure"
		[ -f "$WORK/server.log" ] && { echo "-- server log:"; tail -20 "$WORK/server.log"; }
	fi
	stop_our_server
	purge_packages || true
	remove_runtime_dir || true
	restore_account_backups || true
	exit "$rc"
}

mkdir -p "$WORK"
SECONDS=0

step "a previous run's leftovers (server, packages)"
stop_our_server
purge_packages
remove_runtime_dir
restore_account_backups
[ -z "$(server_processes)" ] || fail "$BIN is running (pids $(server_processes | paste -sd' ')), not started by this test"
if getent passwd "$SVC_USER" >/dev/null; then fail "user $SVC_USER exists without the package"; fi
trap cleanup EXIT

# What the machine looks like before: every path the packages hold, the account databases,
# the systemd enablement state under /etc and /var/lib.
snapshot() {
	sha256sum "${STATE_FILES[@]}"
	find /etc/systemd/system -printf '%p %l\n' 2>/dev/null | LC_ALL=C sort
	find /var/lib/systemd -maxdepth 1 -name 'deb-systemd-*' -exec find {} -printf '%p %l\n' \; 2>/dev/null | LC_ALL=C sort
	ls /var/lib/dpkg/info | grep -E '^(libcoprocess|coprocess-grpc)(:[a-z0-9]+)?\.' || true
}
snapshot >"$WORK/before.state"
rm -rf "$WORK/account-backups" && mkdir -p "$WORK/account-backups"
sha256sum /etc/passwd /etc/group /etc/shadow /etc/gshadow >"$WORK/accounts.sha256"
for f in "${BACKUP_FILES[@]}"; do
	if [ -e "$f" ]; then cp -p "$f" "$WORK/account-backups/"; fi
done
: >"$WORK/preexisting"
for deb in "$LIB_DEB" "$GRPC_DEB"; do
	dpkg-deb --fsys-tarfile "$deb" | tar -t | sed 's|^\./|/|; s|/$||' | grep -v '^\.\?$' | grep -v '^$'
done | LC_ALL=C sort -u >"$WORK/contents"
while read -r path; do
	if [ -e "$path" ] || [ -L "$path" ]; then
		[ -d "$path" ] || fail "$path exists before the installation" # a directory (or /lib, a link to one)
		echo "$path" >>"$WORK/preexisting"
	fi
done <"$WORK/contents"

step "dpkg -i $(basename "$LIB_DEB") $(basename "$GRPC_DEB")"
dpkg_locked -i "$LIB_DEB" "$GRPC_DEB"
for p in "${PACKAGES[@]}"; do
	installed "$p" || fail "$p is not installed"
	[ "$(dpkg-query -W -f='${db:Status-Abbrev}' "$p")" = "ii " ] || fail "$p: status $(dpkg-query -W -f='${db:Status-Abbrev}' "$p")"
done
dpkg -L "${PACKAGES[@]}" | grep -v -e '^/\.$' -e '^$' | LC_ALL=C sort -u >"$WORK/listed"
cmp -s "$WORK/listed" "$WORK/contents" || {
	diff "$WORK/contents" "$WORK/listed"
	fail "dpkg -L differs from the packages' contents"
}
while read -r path; do [ -e "$path" ] || fail "$path (dpkg -L) is missing"; done <"$WORK/listed"

step "installed files"
MULTIARCH=$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || gcc -print-multiarch)
LIBSO=/usr/lib/$MULTIARCH/libcoprocess.so
for f in "$LIBSO" /usr/include/coprocess/api.h "/usr/lib/$MULTIARCH/pkgconfig/coprocess.pc" "$BIN" \
	/lib/systemd/system/$UNIT /etc/coprocess/coprocess-grpc.json /etc/coprocess/coprocess.json; do
	[ -f "$f" ] || fail "$f is not installed"
done
for f in "$LIBSO" "$BIN"; do
	if objdump -h "$f" | grep '\.debug_' | grep -qv '\.debug_gdb_scripts'; then fail "$f has debug sections"; fi
	if ldd "$f" | grep -q 'not found'; then fail "$f: $(ldd "$f" | grep 'not found')"; fi
done
want_version=$(dpkg-query -W -f='${Version}' coprocess-grpc)
[ "$("$BIN" --version)" = "coprocess-grpc $want_version" ] || fail "$BIN --version: $("$BIN" --version), package $want_version"
conffiles=$(dpkg-query -W -f='${Conffiles}' coprocess-grpc | awk 'NF {print $1}' | paste -sd' ')
[ "$conffiles" = "/etc/coprocess/coprocess-grpc.json /etc/coprocess/coprocess.json" ] || fail "conffiles: $conffiles"
[ "$(tr -d ' \n' </etc/coprocess/coprocess.json)" = "{}" ] || fail "the middleware configuration is not {}"
IFS=: read -r _ _ uid gid _ home shell < <(getent passwd "$SVC_USER") || fail "postinst created no user $SVC_USER"
[ "$uid" -lt 1000 ] && [ "$home" = /nonexistent ] && [ "$shell" = /usr/sbin/nologin ] ||
	fail "user $SVC_USER: uid $uid, home $home, shell $shell (want a system user without home or shell)"
[ "$(getent group "$SVC_USER" | cut -d: -f3)" = "$gid" ] || fail "the user's primary group is not $SVC_USER"
for f in /etc/coprocess/coprocess-grpc.json /etc/coprocess/coprocess.json; do
	[ "$(stat -c '%U:%G %a' "$f")" = "root:$SVC_USER 640" ] || fail "$f is $(stat -c '%U:%G %a' "$f"), want root:$SVC_USER 640"
done
[ -L /etc/systemd/system/multi-user.target.wants/$UNIT ] || fail "postinst did not enable $UNIT (deb-systemd-helper)"
echo "    user $SVC_USER (uid $uid), $UNIT enabled, conffiles $conffiles, binaries stripped, libraries resolved"

step "systemd-analyze verify /lib/systemd/system/$UNIT"
if ! out=$(systemd-analyze verify --man=no "/lib/systemd/system/$UNIT" 2>&1) || [ -n "$out" ]; then
	printf '%s\n' "$out"
	fail "systemd-analyze verify complained"
fi
exposure=$(systemd-analyze security --offline=yes --no-pager "/lib/systemd/system/$UNIT" 2>/dev/null | sed -n 's/.*Overall exposure level for [^:]*: *\([0-9.]*\) *\(.*\)/\1 \2/p')
echo "    accepted; systemd-analyze security --offline: exposure $exposure"
[ -n "$exposure" ] && awk -v e="${exposure%% *}" 'BEGIN {exit !(e <= 2.0)}' || fail "exposure $exposure above 2.0"

# The unit's settings, read from the installed file.
unit_value() { sed -n "s/^$1=//p" "/lib/systemd/system/$UNIT" | tail -1; }
EXEC_START=$(unit_value ExecStart)
EXEC_RELOAD=$(unit_value ExecReload)
U_USER=$(unit_value User)
U_GROUP=$(unit_value Group)
RUNTIME_DIR=/run/$(unit_value RuntimeDirectory)
RUNTIME_MODE=$(unit_value RuntimeDirectoryMode)
U_UMASK=$(unit_value UMask)
U_NOFILE=$(unit_value LimitNOFILE)
[ "$U_USER" = "$SVC_USER" ] && [ "$(unit_value CapabilityBoundingSet)" = "" ] && [ "$(unit_value NoNewPrivileges)" = yes ] ||
	fail "the unit's User/CapabilityBoundingSet/NoNewPrivileges changed: update this test"
read -ra ARGV <<<"$EXEC_START"
[ "${ARGV[0]}" = "$BIN" ] || fail "ExecStart runs ${ARGV[0]}, not $BIN"
SOCK=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get("unix", ""))' /etc/coprocess/coprocess-grpc.json)
[ -n "$SOCK" ] || fail "/etc/coprocess/coprocess-grpc.json names no unix socket"
[ "$(dirname "$SOCK")" = "$RUNTIME_DIR" ] || fail "the socket $SOCK is not in the RuntimeDirectory $RUNTIME_DIR"

# Start ExecStart as systemd would (RuntimeDirectory=, User=, Group=, UMask=, LimitNOFILE=,
# NoNewPrivileges=, CapabilityBoundingSet=, a clean environment, cwd /), logging to $1; any
# further arguments are a command the server runs under (strace); EXTRA_ARGS are appended to
# ExecStart's. Sets LAUNCH_PID (the background job), SERVER_PID (the server, from its
# "serving" line) and TCP (its TCP address, if any).
EXTRA_ARGS=()
start_server() {
	local log=$1
	shift
	install -d -o "$U_USER" -g "$U_GROUP" -m "$RUNTIME_MODE" "$RUNTIME_DIR"
	(
		cd /
		umask "$U_UMASK"
		ulimit -n "$NOFILE"
		exec setpriv --reuid="$U_USER" --regid="$U_GROUP" --init-groups --no-new-privs \
			--inh-caps=-all --bounding-set=-all \
			env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 \
			USER="$U_USER" LOGNAME="$U_USER" HOME=/nonexistent SHELL=/usr/sbin/nologin \
			RUNTIME_DIRECTORY="$RUNTIME_DIR" "$@" "${ARGV[@]}" ${EXTRA_ARGS[@]+"${EXTRA_ARGS[@]}"}
	) </dev/null >"$log" 2>&1 &
	LAUNCH_PID=$!
	echo "$LAUNCH_PID" >"$PIDFILE"
	SERVER_PID=
	for _ in $(seq 100); do
		SERVER_PID=$(sed -n 's/.*"msg":"serving".*"pid":\([0-9]*\).*/\1/p' "$log" | head -1)
		[ -S "$SOCK" ] && [ -n "$SERVER_PID" ] && break
		[ -e "/proc/$LAUNCH_PID" ] || {
			cat "$log"
			fail "the server exited at startup"
		}
		sleep 0.1
	done
	[ -S "$SOCK" ] && [ -n "$SERVER_PID" ] || fail "no socket at $SOCK or no 'serving' line after 10 s"
	echo "$SERVER_PID" >"$PIDFILE"
	TCP=$(sed -n 's/.*"msg":"serving".*"tcp":"\([^"]*\)".*/\1/p' "$log" | head -1)
}

# ExecReload= with $MAINPID, then wait for the server's 'configuration reloaded' line in $1.
reload_server() {
	local log=$1 lines
	lines=$(wc -l <"$log")
	read -ra RELOAD <<<"${EXEC_RELOAD//\$MAINPID/$SERVER_PID}"
	"${RELOAD[@]}"
	for _ in $(seq 50); do
		tail -n +"$((lines + 1))" "$log" | grep -q 'configuration reloaded' && break
		sleep 0.1
	done
	tail -n +"$((lines + 1))" "$log" | grep -q 'configuration reloaded' || fail "no 'configuration reloaded' in the log after SIGHUP"
	[ -e "/proc/$SERVER_PID" ] || fail "the server died on reload"
}

# SIGTERM (systemd's KillSignal=), then the exit status, the log and the socket.
stop_server() {
	local log=$1 status=0
	kill -TERM "$SERVER_PID"
	wait "$LAUNCH_PID" || status=$?
	rm -f "$PIDFILE"
	[ "$status" = 0 ] || fail "the server exited with status $status after SIGTERM"
	grep -q '"msg":"stopped"' "$log" || fail "no 'stopped' line in the server log"
	[ ! -e "$SOCK" ] || fail "the server left its socket $SOCK"
}

if [ "$SYSTEMD" = 1 ]; then
	step "the service postinst started (systemd is running)"
	systemctl is-active --quiet "$UNIT" || fail "$UNIT is not active: $(systemctl status --no-pager "$UNIT" 2>&1 | tail -5)"
	SERVER_PID=$(systemctl show -p MainPID --value "$UNIT")
	NOFILE=$U_NOFILE
else
	# A container may cap the hard limit below LimitNOFILE (raising it needs CAP_SYS_RESOURCE
	# in the initial user namespace): then the server gets the cap, and the test says so.
	NOFILE=$U_NOFILE
	if ! (ulimit -n "$U_NOFILE") 2>/dev/null; then
		NOFILE=$(ulimit -Hn)
		echo "    note: LimitNOFILE=$U_NOFILE is above this machine's hard limit; the server gets $NOFILE"
	fi
	step "$EXEC_START (as $U_USER:$U_GROUP, umask $U_UMASK, nofile $NOFILE, no new privileges, no capabilities)"
	start_server "$WORK/server.log"
	[ "$SERVER_PID" = "$LAUNCH_PID" ] || fail "the server (pid $SERVER_PID) is not the process started (pid $LAUNCH_PID)"
fi
[ -n "$SERVER_PID" ] && [ "$SERVER_PID" != 0 ] || fail "no server pid"
[ "$(stat -c %U "/proc/$SERVER_PID")" = "$U_USER" ] || fail "the server runs as $(stat -c %U "/proc/$SERVER_PID")"
grep -q '^CapEff:[[:space:]]*0*$' "/proc/$SERVER_PID/status" && grep -q '^CapBnd:[[:space:]]*0*$' "/proc/$SERVER_PID/status" &&
	grep -q '^NoNewPrivs:[[:space:]]*1$' "/proc/$SERVER_PID/status" || fail "the server has capabilities or may gain privileges"
[ "$(awk '/^Max open files/ {print $4}' "/proc/$SERVER_PID/limits")" = "$NOFILE" ] || fail "the server's open file limit is not $NOFILE"
[ "$(stat -c '%U:%G %a' "$RUNTIME_DIR")" = "$U_USER:$U_GROUP $RUNTIME_MODE" ] || [ "$(stat -c '%U:%G 0%a' "$RUNTIME_DIR")" = "$U_USER:$U_GROUP $RUNTIME_MODE" ] ||
	fail "$RUNTIME_DIR is $(stat -c '%U:%G %a' "$RUNTIME_DIR")"
[ "$(stat -c '%U:%G %a' "$SOCK")" = "$U_USER:$U_GROUP 770" ] || fail "$SOCK is $(stat -c '%U:%G %a' "$SOCK"), want $U_USER:$U_GROUP 770"
echo "    pid $SERVER_PID as $U_USER, CapEff/CapBnd 0, NoNewPrivs 1, socket $SOCK $(stat -c '%U:%G %a' "$SOCK")"

step "gRPC health check and Dispatch over $SOCK"
"$DISPATCH" --unix "$SOCK" --header X-Deb-Test=grpc
# The gateway's user gets in through the group (adduser tyk coprocess-grpc); others do not.
setpriv --reuid=nobody --regid=nogroup --groups="$U_GROUP" "$DISPATCH" --unix "$SOCK" --header X-Deb-Test=member >/dev/null ||
	fail "a member of group $U_GROUP cannot dispatch"
if err=$(setpriv --reuid=nobody --regid=nogroup --clear-groups "$DISPATCH" --unix "$SOCK" 2>&1); then
	fail "user nobody (not in group $U_GROUP) could dispatch"
fi
case $err in *ermission*) ;; *) fail "user nobody was refused for another reason: $err" ;; esac
echo "    a member of group $U_GROUP dispatches; user nobody is refused (permission denied)"

step "reload: ${EXEC_RELOAD//\$MAINPID/$SERVER_PID}"
if [ "$SYSTEMD" = 1 ]; then
	systemctl reload "$UNIT"
else
	reload_server "$WORK/server.log"
fi
"$DISPATCH" --unix "$SOCK" --header X-Deb-Test=after-reload

step "C program against the installed library: cc abi.c \$(pkg-config --cflags --libs coprocess)"
unset PKG_CONFIG_PATH PKG_CONFIG_LIBDIR # the installed coprocess.pc, not an in-tree one
[ "$(pkg-config --modversion coprocess)" = "$(dpkg-query -W -f='${Version}' libcoprocess)" ] || fail "pkg-config --modversion coprocess: $(pkg-config --modversion coprocess)"
echo "    pkg-config --cflags --libs coprocess: $(pkg-config --cflags --libs coprocess)"
# shellcheck disable=SC2046
cc -std=c99 -Wall -Wextra -Werror packaging/test/abi.c $(pkg-config --cflags --libs coprocess) -o "$WORK/abi"
resolved=$(ldd "$WORK/abi" | awk '$1 == "libcoprocess.so" {print $3}')
[ "$resolved" = "$LIBSO" ] || [ "$(readlink -f "$resolved")" = "$(readlink -f "$LIBSO")" ] || fail "abi links libcoprocess.so from ${resolved:-nowhere}"
"$WORK/abi"

if command -v go >/dev/null; then
	step "cgo program against the installed library: #cgo pkg-config: coprocess"
	rm -rf "$WORK/gopath" && mkdir -p "$WORK/gopath/src/debtest"
	cp packaging/test/cgo/main.go "$WORK/gopath/src/debtest/"
	(cd "$WORK/gopath/src/debtest" && GO111MODULE=off GOPATH="$WORK/gopath" GOCACHE="$WORK/gocache" GOFLAGS= \
		GOPROXY=off GOTOOLCHAIN=local CGO_ENABLED=1 go build -o "$WORK/cgo-abi" .)
	"$WORK/cgo-abi"
else
	echo "== deb-test: go is not installed: the cgo build is skipped (make setup installs golang-go)"
fi

step "stop the server (SIGTERM, as systemctl stop)"
if [ "$SYSTEMD" = 1 ]; then
	systemctl stop "$UNIT"
else
	stop_server "$WORK/server.log"
	remove_runtime_dir

	# Nothing enforces the unit's seccomp settings without systemd: run the same ExecStart
	# (plus a TCP listener, as docs/packages.md shows how to add) under strace through the
	# same calls and check what it did against them.
	if command -v strace >/dev/null; then
		step "syscall audit: $EXEC_START --listen 127.0.0.1:0 under strace -f"
		EXTRA_ARGS=(--listen 127.0.0.1:0)
		start_server "$WORK/audit.log" strace -f -qq -o "$RUNTIME_DIR/strace.log"
		EXTRA_ARGS=()
		[ -n "$TCP" ] || fail "no TCP address in the 'serving' line"
		"$DISPATCH" --unix "$SOCK" --header X-Deb-Test=audit
		"$DISPATCH" --tcp "$TCP" --header X-Deb-Test=audit-tcp
		reload_server "$WORK/audit.log"
		"$DISPATCH" --unix "$SOCK" --header X-Deb-Test=audit-after-reload >/dev/null
		stop_server "$WORK/audit.log"
		mv "$RUNTIME_DIR/strace.log" "$WORK/strace.log"
		remove_runtime_dir
		python3 packaging/test/syscall-audit.py "/lib/systemd/system/$UNIT" "$WORK/strace.log"
	else
		echo "== deb-test: strace is not installed: the syscall audit is skipped (make setup installs it)"
	fi
fi
[ -z "$(server_processes)" ] || fail "$BIN still runs: $(server_processes | paste -sd' ')"
if pgrep -u "$SVC_USER" >/dev/null; then fail "processes of $SVC_USER still run: $(pgrep -u "$SVC_USER" | paste -sd' ')"; fi

step "dpkg --remove: the conffiles and the user stay"
dpkg_locked --remove "${PACKAGES[@]}"
for f in /etc/coprocess/coprocess-grpc.json /etc/coprocess/coprocess.json; do [ -f "$f" ] || fail "dpkg --remove took the conffile $f"; done
for f in "$BIN" "$LIBSO" "/lib/systemd/system/$UNIT"; do [ ! -e "$f" ] || fail "dpkg --remove left $f"; done
getent passwd "$SVC_USER" >/dev/null || fail "dpkg --remove removed the user (purge should)"
[ "$(readlink /etc/systemd/system/$UNIT)" = /dev/null ] || fail "postrm remove did not mask $UNIT (deb-systemd-helper mask)"

step "dpkg --purge"
purge_packages
for p in "${PACKAGES[@]}"; do
	if installed "$p"; then fail "$p is still installed"; fi
	st=$(dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null || true)
	case $st in "" | "pn ") ;; *) fail "$p has dpkg status '$st' after the purge" ;; esac
done
left=0
while read -r path; do
	grep -qxF "$path" "$WORK/preexisting" && continue
	if [ -e "$path" ] || [ -L "$path" ]; then
		echo "    left behind: $path"
		left=1
	fi
done <"$WORK/listed"
[ "$left" = 0 ] || fail "files of the packages are left"
[ ! -e /etc/coprocess ] || fail "/etc/coprocess is left"
[ ! -e "$RUNTIME_DIR" ] || fail "$RUNTIME_DIR is left"
if getent passwd "$SVC_USER" >/dev/null; then fail "user $SVC_USER is left"; fi
if getent group "$SVC_USER" >/dev/null; then fail "group $SVC_USER is left"; fi
if ldconfig -p | grep -q libcoprocess; then fail "the ld.so cache still lists libcoprocess"; fi
[ -z "$(server_processes)" ] || fail "$BIN still runs"
snapshot >"$WORK/after.state"
cmp -s "$WORK/before.state" "$WORK/after.state" || {
	diff "$WORK/before.state" "$WORK/after.state" || true
	fail "the account databases, the ld.so cache, the systemd enablement state or dpkg's info files changed"
}
restore_account_backups
echo "    no file, user, group, process, unit state or dpkg info left; /etc/passwd, group, shadow, gshadow"
echo "    (and their - backups) and /etc/ld.so.cache as before"

trap - EXIT
echo "deb-test: all checks passed in ${SECONDS}s"
