#!/bin/bash
# End-to-end test of the .deb on a real systemd: builds the package (unless DEB= is given), boots a
# Debian container with systemd-nspawn for each release in $E2E_RELEASES (default: bookworm, Debian
# 12 with systemd 252, and trixie, Debian 13 with systemd 257; systemd is PID 1 there, this
# machine's PID 1 is not), installs the package and runs the same checks.sh inside each. Needs root.
#
#   tests/systemd/e2e.sh                 # or: make e2e
#   E2E_RELEASES=trixie tests/systemd/e2e.sh
#   DEB=dist/openclaw-gateway_0.2.0_amd64.deb tests/systemd/e2e.sh
#   OLD_DEB=path/to/openclaw-gateway_0.1.0_amd64.deb   # instead of building 0.1.0 from git
#
# Each root file system is made once with debootstrap (the mirror read from this machine's apt
# sources) and cached outside the repository, in /var/tmp/openclaw-e2e-<release>-<n> ($E2E_ROOTFS_DIR
# instead of /var/tmp; n changes when the package list does).
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
cd "$top"
RELEASES=${E2E_RELEASES:-bookworm trixie}
ROOTFS_DIR=${E2E_ROOTFS_DIR:-/var/tmp}
SUDO=$([ "$(id -u)" = 0 ] || echo sudo)

need=()
command -v systemd-nspawn >/dev/null || need+=(systemd-container)
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v nsenter >/dev/null || need+=(util-linux)
if [ ${#need[@]} -gt 0 ]; then
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

# ---- the root file systems, once each (rootfs.sh: rootfs_of, make_rootfs)
. "$top/tests/systemd/rootfs.sh"
# debootstrap of each release in the background while the packages build
declare -A bootstrap_pid
for release in $RELEASES; do
  rootfs_of "$release" >/dev/null || exit 2
  make_rootfs "$release" &
  bootstrap_pid[$release]=$!
done

# ---- the package, and a higher version of it for the upgrade check
if [ -z "${DEB:-}" ]; then
  DEB=$(packaging/build-deb.sh | tail -1)
fi
# ---- the released 0.1.0 (its last commit on main), for the upgrade from it and the downgrade to
# it: built from git once and cached outside the repository (OLD_DEB= gives one instead).
RELEASED=61dd4c5638eb0a8b9b99a22eb618cd8f4726023f
if [ -z "${OLD_DEB:-}" ]; then
  OLD_DEB=/var/tmp/openclaw-e2e-released-${RELEASED:0:12}.deb
  if [ ! -s "$OLD_DEB" ]; then
    git cat-file -e "$RELEASED^{commit}" 2>/dev/null || git fetch -q origin "$RELEASED" 2>/dev/null \
      || { echo "e2e: commit $RELEASED (0.1.0) is not in this clone; clone without --depth" >&2; exit 2; }
    echo "# building the released 0.1.0 package from git (${RELEASED:0:12}, once)"
    old_work=$(mktemp -d /var/tmp/openclaw-e2e-released.XXXXXX)
    mkdir "$old_work/src"
    git archive "$RELEASED" | tar -xf - -C "$old_work/src"
    (cd "$old_work/src" && dpkg-buildpackage -us -uc -b >"$old_work/build.log" 2>&1) \
      || { tail -40 "$old_work/build.log" >&2; rm -rf "$old_work"; echo "e2e: building 0.1.0 failed" >&2; exit 1; }
    cp "$old_work"/openclaw-gateway_0.1.0_*.deb "$OLD_DEB.tmp" && mv "$OLD_DEB.tmp" "$OLD_DEB"
    rm -rf "$old_work"
  fi
fi
dist=$(mktemp -d /var/tmp/openclaw-e2e-dist.XXXXXX)
cp "$DEB" "$dist/current.deb"
cp "$OLD_DEB" "$dist/released.deb"
unpacked="$dist/unpacked"
dpkg-deb -R "$DEB" "$unpacked"
version=$(awk '/^Version:/ {print $2}' "$unpacked/DEBIAN/control")
sed -i "s/^Version: .*/Version: $version+e2e1/" "$unpacked/DEBIAN/control"
dpkg-deb -b "$unpacked" "$dist/upgrade.deb" >/dev/null
sed -i "s/^Version: .*/Version: $version+e2e2/" "$unpacked/DEBIAN/control"
dpkg-deb -b "$unpacked" "$dist/upgrade2.deb" >/dev/null
# the shipped binary as packaging/release.mk links it: PIE, bound at start, relocations packed
dynamic=$(readelf -d "$unpacked/usr/bin/openclaw-gateway")
for want in 'Flags: NOW PIE' '(RELR)'; do
  grep -qF "$want" <<<"$dynamic" || { echo "e2e: the packaged binary lacks '$want' in its dynamic section" >&2; exit 1; }
done
# ... and exporting main only (packaging/openclaw-gateway.exports): its dynamic symbols are its imports
exported=$(readelf --dyn-syms -W "$unpacked/usr/bin/openclaw-gateway" | awk '$7 != "UND" && $8 != "" && $5 == "GLOBAL"' | wc -l)
[ "$exported" -le 2 ] || { echo "e2e: the packaged binary exports $exported symbols, not main alone" >&2; exit 1; }
rm -rf "$unpacked"

# ---- for each release: boot, run the checks, power off
log=""
NSPID=""
LEADER=""
cleanup_dirs=("$dist")
IN() { nsenter -t "$LEADER" -a env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 "$@"; }
poweroff_container() {
  if [ -n "$NSPID" ] && kill -0 "$NSPID" 2>/dev/null; then
    [ -n "$LEADER" ] && IN systemctl --no-block poweroff >/dev/null 2>&1
    for _ in $(seq 100); do kill -0 "$NSPID" 2>/dev/null || break; sleep 0.1; done
    kill "$NSPID" 2>/dev/null || true
    wait "$NSPID" 2>/dev/null || true
  fi
  NSPID=""
  LEADER=""
}
finish() {
  poweroff_container
  rm -rf "${cleanup_dirs[@]}"
}
trap finish EXIT

check_release() {  # release: boot its root, run checks.sh, power off; the status of checks.sh
  local release=$1 rootfs state machine rc
  rootfs=$(rootfs_of "$release")
  log=$(mktemp /var/tmp/openclaw-e2e-nspawn-$release.XXXXXX.log)
  machine=openclaw-e2e-$release-$$
  setsid systemd-nspawn -D "$rootfs" --boot -M "$machine" --register=no --keep-unit \
    --console=pipe --private-network --volatile=overlay \
    --bind-ro="$dist:/mnt/dist" --bind-ro="$top/tests/systemd:/mnt/e2e" >"$log" 2>&1 </dev/null &
  NSPID=$!
  for _ in $(seq 200); do
    LEADER=$(pgrep -P "$NSPID" -x systemd || true)
    [ -n "$LEADER" ] && break
    kill -0 "$NSPID" 2>/dev/null || { cat "$log" >&2; echo "e2e: the $release container did not boot" >&2; return 1; }
    sleep 0.05
  done
  [ -n "$LEADER" ] || { cat "$log" >&2; echo "e2e: no systemd in the $release container" >&2; return 1; }
  state=""
  for _ in $(seq 100); do  # until PID 1 answers on its bus (it is still setting up right after exec)
    state=$(IN timeout 60 systemctl is-system-running --wait 2>/dev/null) && break
    [ -n "$state" ] && break
    sleep 0.1
  done
  echo "# $release container booted: $state; $(IN systemctl --version | head -1)"
  set +e
  IN /mnt/e2e/checks.sh /mnt/dist/current.deb /mnt/dist/upgrade.deb /mnt/dist/upgrade2.deb /mnt/dist/released.deb
  rc=$?
  set -e
  if [ $rc != 0 ]; then
    echo "# journal of the gateway units ($release):"
    IN journalctl --no-pager -n 60 -u 'openclaw-gateway*' | sed 's/^/#   /'
  fi
  poweroff_container
  rm -f "$log"
  return $rc
}

failed=()
for release in $RELEASES; do
  wait "${bootstrap_pid[$release]}" || { echo "e2e: no $release root file system" >&2; exit 2; }
  echo "# ==== $release"
  check_release "$release" || failed+=("$release")
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "e2e: checks failed on ${failed[*]}" >&2
  exit 1
fi
echo "# e2e passed on $RELEASES"
