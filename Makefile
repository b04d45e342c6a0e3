# The one task runner. Target names are fixed: image, test, bench, check, cluster.
CARGO ?= cargo
SHELL := /bin/bash
# Host tools (nft, sgdisk, mkfs.fat, sysctl) live in /usr/sbin, which a
# non-root PATH may lack: every target sees them.
export PATH := $(PATH):/usr/sbin:/sbin

.PHONY: all deps build image image-reproducible image-faults repro-full test check bench cluster clean

all: build

## Host packages (nftables, iproute2, protoc, ...), installed when missing.
deps:
	@qa/scripts/deps.sh

build: deps
	$(CARGO) build --workspace --bins

## All image formats into out/: raw, qcow2, VHDX, OVA, SHA256SUMS, image.json,
## and out/baseline/ (the same kernel with a busybox initramfs, for the bench).
## The builder installs the host tools it needs (gdisk, mtools, syslinux, ...).
image: deps
	$(CARGO) build --release -p applianced -p demo-portal -p demo-audit -p appliance-management
	$(CARGO) run --release -p appliance-image -- build --out out
	$(CARGO) run --release -p appliance-image -- baseline --out out/baseline

## Builds the image and the baseline a second time into out/repro (from the
## same release binaries, its own package cache) and compares every
## artefact byte for byte: the disk formats, SHA256SUMS, image.json and
## baseline/.
image-reproducible: image
	$(CARGO) run --release -p appliance-image -- build --out out/repro
	$(CARGO) run --release -p appliance-image -- baseline --out out/repro/baseline
	image/scripts/compare-outputs.sh out out/repro

## Whole reproducibility, outside CI (two release builds from scratch): one
## snapshot of the source (the work tree, or REPRO_REV=<git revision>)
## unpacked at two paths, built in two target directories, an image from
## each, every artefact compared; differing binary sections are named.
repro-full: deps
	image/scripts/repro-full.sh

## The image of the fault tests (qa/tests/vm_panic.rs) into out/faults/:
## applianced with the failpoints, built in its own target directory, so the
## release binaries of `image` never carry them.
image-faults: deps
	$(CARGO) build --release -p applianced -p demo-portal -p demo-audit -p appliance-management --features applianced/failpoints --target-dir target/faults
	$(CARGO) run --release -p appliance-image -- build --out out/faults --bin-dir target/faults/release --cache out/.cache

## Test builds carry the failpoints (qa/tests/rollback.rs injects failures
## through them); the same flags on the build and the test, or the test build
## would overwrite target/debug/applianced without them. Never for `image`.
TEST_FEATURES := --features applianced/failpoints

## Everything CI runs: formatting, lints, unit, kernel, hosted multi-node and
## VM tests. Every test binary runs even after a failure; the log goes to
## out/test.log, and qa/scripts/test-report.sh prints the tests run per layer
## and fails on a failed test, a test binary that did not finish, or an empty
## layer. A test whose prerequisites (root, nft, QEMU, OVMF, out/) are missing
## fails, unless opted out with APPLIANCE_TEST_SKIP=root|vm (qa/prereq).
test: deps check image-reproducible image-faults
	$(CARGO) build --workspace --bins $(TEST_FEATURES)
	@mkdir -p out
	$(CARGO) test --workspace $(TEST_FEATURES) --no-fail-fast -- --test-threads=2 2>&1 | tee out/test.log; \
	  qa/scripts/test-report.sh out/test.log $${PIPESTATUS[0]}

## cargo fmt and clippy (without and with the test-only failpoints), as on every commit, and the structure checks: no
## import loop between applianced's modules (applianced/tests/module_layers.rs);
## no crate depending on a program, no pure crate reaching the kernel
## (qa/tests/crate_layers.rs). Built with the test features, as `make test`.
check: deps
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy --workspace --all-targets $(TEST_FEATURES) -- -D warnings
	$(CARGO) test $(TEST_FEATURES) -p applianced -p qa --test module_layers --test crate_layers

## Figures into out/bench/ (see ../shared/BENCH.md).
bench: image
	$(CARGO) build --workspace --bins --release
	$(CARGO) run -p qa --release -- bench --out out/bench

## A local three-node cluster in network namespaces, to try (Ctrl-C stops it).
cluster: build
	$(CARGO) run -p qa -- cluster

clean:
	rm -rf out
	$(CARGO) clean
