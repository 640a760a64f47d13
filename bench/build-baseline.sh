#!/usr/bin/env bash
# Builds a baseline libcoprocess.so for `make bench-compare BASELINE=<git ref>`:
#   bench/build-baseline.sh REF DIR
# checks REF out (detached) in the git worktree DIR/src (added on first use, moved to REF after)
# and builds it with plain `cargo build --release --locked` at its root, as every commit of the
# library builds, into its own target dir DIR/target. Writes DIR/ref.txt (REF, commit, subject).
set -euo pipefail
ref=$1
dir=$(mkdir -p "$2" && cd "$2" && pwd)
cargo=${CARGO:-cargo}
commit=$(git rev-parse --verify --quiet "$ref^{commit}") || { echo "bench-baseline: $ref is not a commit here" >&2; exit 1; }
mkdir -p "$dir"
src=$dir/src
if [ -e "$src/.git" ]; then
  git -C "$src" checkout --quiet --force --detach "$commit"
  git -C "$src" clean --quiet -fdx
else
  rm -rf "$src"
  git worktree prune
  git worktree add --quiet --detach "$src" "$commit"
fi
echo "bench-baseline: $ref = $(git log -1 --format='%h %s' "$commit" | cut -c1-100)"
(cd "$src" && CARGO_TARGET_DIR="$dir/target" "$cargo" build --release --locked)
test -f "$dir/target/release/libcoprocess.so" || { echo "bench-baseline: no libcoprocess.so built at $ref" >&2; exit 1; }
printf '%s %s %s\n' "$ref" "$commit" "$(git log -1 --format=%s "$commit")" > "$dir/ref.txt"
