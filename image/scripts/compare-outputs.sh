#!/usr/bin/env bash
# Compares two image builds' output directories artefact by artefact:
# every file SHA256SUMS lists (raw, qcow2, VHDX, OVA), SHA256SUMS itself,
# image.json, and every file of baseline/. A file missing on either side,
# or differing, fails with its name; a differing file also gets its first
# differing byte. Used by `make image-reproducible` and `make repro-full`.
#
#   compare-outputs.sh A B
set -euo pipefail

if [ $# -ne 2 ]; then
    echo "usage: $0 OUT_A OUT_B" >&2
    exit 2
fi
a=$1
b=$2

for d in "$a" "$b"; do
    for f in SHA256SUMS image.json baseline/vmlinuz baseline/initrd.img; do
        if [ ! -f "$d/$f" ]; then
            echo "compare-outputs: $d/$f is missing" >&2
            exit 1
        fi
    done
done

# The artefact set: the names both checksum files list, the two
# descriptions, and both baseline directories' files.
files=$(
    {
        awk '{ sub(/^\*/, "", $2); print $2 }' "$a/SHA256SUMS" "$b/SHA256SUMS"
        echo SHA256SUMS
        echo image.json
        (cd "$a" && find baseline -type f)
        (cd "$b" && find baseline -type f)
    } | LC_ALL=C sort -u
)

differ=0
count=0
for f in $files; do
    count=$((count + 1))
    if [ ! -f "$a/$f" ] || [ ! -f "$b/$f" ]; then
        echo "MISSING  $f (only in $([ -f "$a/$f" ] && echo "$a" || echo "$b"))"
        differ=$((differ + 1))
    elif cmp -s "$a/$f" "$b/$f"; then
        echo "same     $f ($(stat -c %s "$a/$f") bytes)"
    else
        echo "DIFFERS  $f: $(cmp "$a/$f" "$b/$f" 2>&1 | head -1)"
        differ=$((differ + 1))
    fi
done

if [ "$differ" -ne 0 ]; then
    echo "compare-outputs: $differ of $count artefacts differ between $a and $b" >&2
    exit 1
fi
echo "compare-outputs: all $count artefacts of $a and $b are byte-identical"
