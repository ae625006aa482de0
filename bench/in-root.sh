#!/bin/bash
# The start-up figures of `make bench` inside a Debian root (`make bench-roots`): the same static
# binaries, run against that release's glibc and libsystemd. Debian 13's libsystemd loads its
# compression libraries lazily and links only libcap; Debian 12's pulls in six libraries, so the
# floor differs between them. Each root is the e2e's (tests/systemd/rootfs.sh, made once), run with
# systemd-nspawn without booting it, its own loopback, a throw-away overlay. Needs root.
#
#   bench/in-root.sh STATIC_BIN_DIR [RELEASE...]     # default: bookworm trixie
#   PEER=path/to/go-gateway RUNS=20 bench/in-root.sh .build-static/release trixie
#
# Prints bench.py's table for each release and writes it to bench/last-run-<release>.md.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
bin=$(cd "${1:?usage: bench/in-root.sh STATIC_BIN_DIR [RELEASE...]}" && pwd)
shift
releases=${*:-bookworm trixie}
RUNS=${RUNS:-10}
ROOTFS_DIR=${E2E_ROOTFS_DIR:-/var/tmp}
SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
. "$top/tests/systemd/rootfs.sh"

# what runs inside: the bench's Python, the binaries, the bind-and-exit floor built here (the
# roots have no Swift toolchain) and the peer when given
stage=$(mktemp -d /var/tmp/openclaw-bench-root.XXXXXX)
trap 'rm -rf "$stage"' EXIT
cp "$top"/bench/bench.py "$top"/bench/benchlib.py "$stage/"
mkdir "$stage/packaging"  # bench.py looks for ../packaging/order-coverage.sh; the roots have no nm
for b in openclaw-gateway gateway-load startup-floor; do
  [ -x "$bin/$b" ] || { echo "bench/in-root.sh: no $bin/$b (make bench builds it)" >&2; exit 2; }
  cp "$bin/$b" "$stage/"
done
swiftc -O -static-stdlib -o "$stage/minimal-bind" "$top/bench/minimal-bind/main.swift"
peer=()
if [ -n "${PEER:-}" ]; then
  cp "$PEER" "$stage/peer"
  peer=(--peer /mnt/bench/peer)
fi

for release in $releases; do
  rootfs=$(rootfs_of "$release")
  make_rootfs "$release"
  echo "# ==== start-up figures in $release ($rootfs)"
  $SUDO systemd-nspawn -q -D "$rootfs" --as-pid2 --register=no --keep-unit --private-network \
    --volatile=overlay --bind="$stage:/mnt/bench" -- \
    /usr/bin/python3 /mnt/bench/bench.py --bin /mnt/bench/openclaw-gateway --load /mnt/bench/gateway-load \
      --floor-server /mnt/bench/startup-floor --floor-bind /mnt/bench/minimal-bind "${peer[@]}" \
      --runs "$RUNS" --startup-only --label "$(. "$rootfs/etc/os-release"; echo "$PRETTY_NAME")" \
      --markdown "/mnt/bench/last-run-$release.md"
  cp "$stage/last-run-$release.md" "$top/bench/"
done
