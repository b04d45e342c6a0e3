#!/usr/bin/env bash
# Reads the log of `cargo test --workspace --no-fail-fast` and reports what
# ran, per layer: unit (no root), kernel (namespaces, netlink, nft, the
# hostname), hosted (multi-node tests of hosted applianced nodes), VM (the
# image in QEMU). Ends with a plain line "N passed, N failed[, N skipped]".
#
# Usage: test-report.sh LOG [CARGO_EXIT_STATUS]
#
# A test binary's layer comes from its source file, by file name:
# - qa/tests/image_boot.rs and qa/tests/vm_*.rs: VM;
# - other qa/tests/*.rs that check prerequisites (test_prereq): hosted;
# - appliance/*/tests/*.rs (and image/, services/) that check them: kernel;
# - everything else (unit tests in src/, doc-tests, other test files): unit.
# Two test files with one name in different layers are refused: cargo's log
# names a binary by its file name only.
#
# Fails (exit 1) when a test failed, a test binary did not finish (crashed,
# or never ran because the build failed), cargo failed, or a layer ran no
# test. A test skipped by the documented opt-out (APPLIANCE_TEST_SKIP, see
# qa/prereq) prints a "SKIPPED (opt-out ...)" line; those are counted apart,
# and a layer whose tests were all opted out is reported, not failed.
set -euo pipefail
cd "$(dirname "$0")/../.."

log=${1:?usage: test-report.sh LOG [CARGO_EXIT_STATUS]}
cargo_status=${2:-0}

map=$(mktemp)
trap 'rm -f "$map"' EXIT
add() { # stem layer file
  local prev
  prev=$(awk -v s="$1" '$1 == s { print $2 }' "$map")
  if [ -n "$prev" ] && [ "$prev" != "$2" ]; then
    echo "test-report: two test files named $1.rs in layers $prev and $2 ($3): rename one" >&2
    exit 1
  fi
  [ -n "$prev" ] || echo "$1 $2" >>"$map"
}
shopt -s nullglob
for f in qa/tests/*.rs; do
  stem=$(basename "$f" .rs)
  case "$stem" in
    image_boot | vm_*) add "$stem" vm "$f" ;;
    *) if grep -q 'test_prereq::' "$f"; then add "$stem" hosted "$f"; else add "$stem" unit "$f"; fi ;;
  esac
done
for f in appliance/*/tests/*.rs image/tests/*.rs services/*/tests/*.rs; do
  stem=$(basename "$f" .rs)
  if grep -q 'test_prereq::' "$f"; then add "$stem" kernel "$f"; else add "$stem" unit "$f"; fi
done

awk -v cargo_status="$cargo_status" '
  FNR == NR { layer_of[$1] = $2; next }
  function close_block() {
    if (cur != "" && !have_result) { crashed[++ncrashed] = cur; bad_layer[cur_layer]++ }
    cur = ""
  }
  /^ +Running / {
    close_block()
    # "Running tests/netns.rs (target/debug/deps/netns-0123abcd)"
    src = $2; bin = $NF; gsub(/[()]/, "", bin); sub(/.*\//, "", bin); sub(/-[0-9a-f]+$/, "", bin)
    cur_layer = "unit"
    if (src ~ /^tests\//) { stem = src; sub(/^tests\//, "", stem); sub(/\.rs$/, "", stem); if (stem in layer_of) cur_layer = layer_of[stem] }
    cur = bin " (" src ")"; have_result = 0; binaries[cur_layer]++
    next
  }
  /^ +Doc-tests / { close_block(); cur = "doc-tests " $2; cur_layer = "unit"; have_result = 0; binaries[cur_layer]++; next }
  # Anywhere in a line: libtest may have written part of a line before it.
  /SKIPPED \(opt-out / { skipped[cur_layer]++; next }
  /MISSING PREREQUISITE: / { sub(/.*MISSING PREREQUISITE: /, ""); missing[++nmissing] = cur ": " $0; next }
  /^test result: / {
    if (cur == "") next
    have_result = 1
    for (i = 1; i <= NF; i++) {
      n = $i + 0
      if ($(i + 1) ~ /^passed/) passed[cur_layer] += n
      if ($(i + 1) ~ /^failed/) { failed[cur_layer] += n; if (n > 0) failed_bins[++nfb] = cur }
      if ($(i + 1) ~ /^ignored/) ignored[cur_layer] += n
    }
    next
  }
  END {
    close_block()
    split("unit kernel hosted vm", layers, " ")
    printf "\n%-8s %9s %8s %8s %8s %8s\n", "layer", "binaries", "passed", "failed", "skipped", "ignored"
    status = 0
    for (i = 1; i <= 4; i++) {
      l = layers[i]
      ran = passed[l] - skipped[l]
      printf "%-8s %9d %8d %8d %8d %8d\n", l, binaries[l], ran, failed[l], skipped[l], ignored[l]
      tp += ran; tf += failed[l]; ts += skipped[l]
      if (ran + failed[l] == 0 && skipped[l] == 0) { empty[++nempty] = l; status = 1 }
    }
    for (i = 1; i <= nempty; i++) print "FAIL: the " empty[i] " layer ran no test"
    for (i = 1; i <= nfb; i++) print "failed in: " failed_bins[i]
    for (i = 1; i <= ncrashed; i++) { print "FAIL: test binary did not finish: " crashed[i]; status = 1 }
    if (nmissing > 0) {
      print "tests that cannot run on this machine (missing prerequisites):"
      for (i = 1; i <= nmissing; i++) print "  " missing[i]
    }
    if (tf > 0) status = 1
    if (cargo_status != 0) { print "FAIL: cargo test exited with status " cargo_status; status = 1 }
    line = tp " passed, " tf " failed"
    if (ts > 0) line = line ", " ts " skipped"
    print line
    exit status
  }
' "$map" "$log"
