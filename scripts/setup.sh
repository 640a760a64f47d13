#!/usr/bin/env bash
# Installs what a fresh Debian machine lacks to build and test coprocess. Idempotent: only
# missing packages are installed, so it is cheap to run before every build.
set -euo pipefail

PACKAGES=(
  build-essential pkg-config git
  protobuf-c-compiler libprotobuf-c-dev   # C test harness (protobuf-c)
  valgrind clang-14 libclang-rt-14-dev    # memcheck and ASan/LSan runs of the C harness
  protobuf-compiler golang-go golang-google-protobuf-dev golang-github-google-go-cmp-dev  # Go host
  redis-server golang-github-gomodule-redigo-dev                                        # Redis store
  prometheus                              # Go gateway metrics tests: a real Prometheus server and promtool
  golang-google-grpc-dev golang-github-golang-protobuf-1-5-dev golang-google-genproto-dev \
  golang-golang-x-net-dev golang-golang-x-sys-dev golang-golang-x-text-dev golang-golang-x-oauth2-dev  # go/grpcclient (go/go.mod replaces)
  openssl python3                         # independent signature verifiers in tests
  systemd adduser strace                  # make deb-test: systemd-analyze verify, the system user, the syscall audit
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  SUDO=""
  if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: cargo (Rust 1.88 or newer) is required: install it with rustup" >&2
  exit 1
fi
echo "setup: all build and test dependencies present"
