#!/usr/bin/env bash
# Whole reproducibility (`make repro-full`, outside CI: two release builds
# from scratch). One snapshot of the source (the work tree's tracked and
# untracked, not ignored, files; or git revision REPRO_REV when set) is
# unpacked at two different paths, its release binaries are built in two target directories at two
# different paths, each build makes its own image and baseline, and every
# artefact is compared (compare-outputs.sh). When the images differ, the
# binaries are compared too and the differing ELF sections named.
#
# Paths are kept out of the binaries with --remap-path-prefix (the source
# tree, the target directory and CARGO_HOME each map to a fixed name); the
# image's timestamps come from image.toml's source_date_epoch (or
# SOURCE_DATE_EPOCH when set, the same for both builds).
#
# REPRO_WORK (default /tmp/appliance-repro) holds both trees; it is replaced.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
cargo=${CARGO:-cargo}
work=${REPRO_WORK:-${TMPDIR:-/tmp}/appliance-repro}
cargo_home=${CARGO_HOME:-$HOME/.cargo}
started=$(date +%s)

rm -rf "$work"
mkdir -p "$work"
if [ -n "${REPRO_REV:-}" ]; then
    source_desc="revision $(git rev-parse "$REPRO_REV")"
    git archive "$REPRO_REV" >"$work/source.tar"
else
    source_desc="work tree at $(git rev-parse HEAD)$(git diff --quiet HEAD || echo ' with local changes')"
    git ls-files -z -co --exclude-standard |
        while IFS= read -r -d '' f; do if [ -e "$f" ]; then printf '%s\0' "$f"; fi; done |
        tar --null -T - -cf "$work/source.tar"
fi
# The package cache is an input, not an output: both builds share it.
mkdir -p "$work/debs"

# side NAME SRC TARGET: unpack HEAD at SRC, build in TARGET, image into NAME/out.
side() {
    local name=$1 src=$2 target=$3
    local out="$work/$name/out"
    mkdir -p "$src" "$out"
    tar -xf "$work/source.tar" -C "$src"
    local flags="--remap-path-prefix=$src=/build/appliance"
    flags+=" --remap-path-prefix=$target=/build/target"
    flags+=" --remap-path-prefix=$cargo_home=/build/cargo"
    echo "repro-full: [$name] building the release binaries in $target"
    (
        cd "$src"
        CARGO_TARGET_DIR=$target RUSTFLAGS=$flags \
            $cargo build --release --locked \
            -p applianced -p demo-portal -p demo-audit -p appliance-image
    )
    echo "repro-full: [$name] building the image into $out"
    local mkimage=("$target/release/mkimage")
    local common=(--config "$src/image/image.toml" --workspace "$src"
        --bin-dir "$target/release" --cache "$work/debs")
    (cd "$src" && "${mkimage[@]}" build --out "$out" "${common[@]}")
    (cd "$src" && "${mkimage[@]}" baseline --out "$out/baseline" "${common[@]}")
}

side a "$work/a/src" "$work/a/target"
side b "$work/b/checkout-two/appliance" "$work/b/tgt"
built=$(date +%s)

status=0
image/scripts/compare-outputs.sh "$work/a/out" "$work/b/out" || status=$?

if [ "$status" -ne 0 ]; then
    echo "repro-full: comparing the release binaries"
    for bin in applianced portal audit mkimage; do
        x="$work/a/target/release/$bin"
        y="$work/b/tgt/release/$bin"
        if cmp -s "$x" "$y"; then
            echo "same     $bin"
            continue
        fi
        echo "DIFFERS  $bin; sections that differ:"
        for s in $(readelf -SW "$x" | sed -n 's/^ *\[ *[0-9]*\] \([^ ]*\) .*/\1/p'); do
            [ "$s" = NULL ] && continue
            objcopy -O binary --only-section="$s" "$x" "$work/sa" 2>/dev/null || continue
            objcopy -O binary --only-section="$s" "$y" "$work/sb" 2>/dev/null || continue
            cmp -s "$work/sa" "$work/sb" || echo "           $s ($(stat -c %s "$work/sa") / $(stat -c %s "$work/sb") bytes)"
        done
        echo "         strings naming the build paths:"
        strings -a "$x" | grep -E "$work|/root/.cargo|/work/" | sort -u | head -5 | sed 's/^/           /' || true
    done
    if command -v diffoscope >/dev/null; then
        echo "repro-full: diffoscope of applianced into $work/diffoscope.txt"
        diffoscope --text "$work/diffoscope.txt" \
            "$work/a/target/release/applianced" "$work/b/tgt/release/applianced" || true
    fi
fi
echo "repro-full: $source_desc; builds took $((built - started)) s, $(($(date +%s) - started)) s in all"
exit "$status"
