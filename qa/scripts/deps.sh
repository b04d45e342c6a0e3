#!/usr/bin/env bash
# Installs the host packages the build and the tests need, on Debian, once.
# Idempotent: does nothing when everything is present.
set -euo pipefail
# nft, sysctl and friends live in /usr/sbin, which a non-root PATH may lack.
export PATH="$PATH:/usr/sbin:/sbin"

need=()
command -v nft >/dev/null || need+=(nftables)
command -v ip >/dev/null || need+=(iproute2)
command -v protoc >/dev/null || need+=(protobuf-compiler)
command -v cc >/dev/null || need+=(gcc libc6-dev)
command -v make >/dev/null || need+=(make)
command -v tmux >/dev/null || need+=(tmux)
command -v curl >/dev/null || need+=(curl)
# qa/tests/management_api.rs: TLS 1.1 offered to the management port must fail.
command -v openssl >/dev/null || need+=(openssl)
command -v nsenter >/dev/null || need+=(util-linux)
command -v sysctl >/dev/null || need+=(procps)
# The VM tests: QEMU under software emulation, OVMF for UEFI, e2fsck on images.
command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
command -v qemu-img >/dev/null || need+=(qemu-utils)
[ -e /usr/share/OVMF/OVMF_CODE_4M.fd ] || need+=(ovmf)
command -v e2fsck >/dev/null || need+=(e2fsprogs)
# The web UI's browser tests (qa/web, qa/tests/web_ui.rs): Debian's chromium
# driven by playwright-core, which the tests install with npm ci (Node.js 20+).
command -v chromium >/dev/null || need+=(chromium)
command -v node >/dev/null || need+=(nodejs)
command -v npm >/dev/null || need+=(npm)
getent passwd nobody >/dev/null || { echo "user 'nobody' is missing: the demo services run as it" >&2; exit 1; }

if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "deps: not root, so nothing can be installed; missing packages: ${need[*]}." >&2
    echo "deps: run \`make deps\` as root once, or: sudo apt-get install ${need[*]}" >&2
    exit 1
  fi
  echo "installing: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get -o DPkg::Lock::Timeout=300 update -qq
  apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends "${need[@]}"
fi
if [ "$(id -u)" != 0 ]; then
  # Checked only: the packages are present. The kernel, hosted and VM tests
  # still need root; as this user they fail and say so (qa/prereq).
  echo "deps: not root: host packages checked, all present; the tests that need root will fail (run \`sudo make test\`)" >&2
fi
if ! command -v cargo >/dev/null; then
  echo "cargo is missing: install Rust (rustup) first" >&2
  exit 1
fi
