#!/bin/bash
# End-to-end test of the .deb on a real systemd: builds the package (unless DEB= is given), boots a
# Debian bookworm container with systemd-nspawn (systemd is PID 1 there; this machine's PID 1 is
# not), installs the package and runs checks.sh inside. Needs root.
#
#   tests/systemd/e2e.sh                 # or: make e2e
#   DEB=dist/openclaw-gateway_0.2.0_amd64.deb tests/systemd/e2e.sh
#   OLD_DEB=path/to/openclaw-gateway_0.1.0_amd64.deb   # instead of building 0.1.0 from git
#
# The root file system is made once with debootstrap (the mirror read from this machine's apt
# sources) and cached outside the repository, in $E2E_ROOTFS (default /var/tmp/openclaw-e2e-bookworm-3;
# the number changes when the package list does).
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
cd "$top"
ROOTFS=${E2E_ROOTFS:-/var/tmp/openclaw-e2e-bookworm-3}
SUDO=$([ "$(id -u)" = 0 ] || echo sudo)

need=()
command -v systemd-nspawn >/dev/null || need+=(systemd-container)
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v nsenter >/dev/null || need+=(util-linux)
if [ ${#need[@]} -gt 0 ]; then
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

# ---- the root file system, once
if [ ! -f "$ROOTFS/.openclaw-e2e-ready" ]; then
  mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
  [ -n "$mirror" ] || mirror=$(awk '/^deb / {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
  [ -n "$mirror" ] || { echo "e2e: no Debian mirror in this machine's apt sources" >&2; exit 2; }
  echo "# building the container root file system in $ROOTFS (once)"
  rm -rf "$ROOTFS.tmp"
  $SUDO debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus,dbus-user-session,iproute2,python3,procps,man-db \
    bookworm "$ROOTFS.tmp" "$mirror" >/var/tmp/openclaw-e2e-debootstrap.log 2>&1 \
    || { tail -20 /var/tmp/openclaw-e2e-debootstrap.log >&2; exit 2; }
  echo e2e >"$ROOTFS.tmp/etc/hostname"
  touch "$ROOTFS.tmp/.openclaw-e2e-ready"
  rm -rf "$ROOTFS"
  mv "$ROOTFS.tmp" "$ROOTFS"
fi

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
cleanup_dirs=("$dist")
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

# ---- boot, run the checks, power off
log=$(mktemp /var/tmp/openclaw-e2e-nspawn.XXXXXX.log)
machine=openclaw-e2e-$$
setsid systemd-nspawn -D "$ROOTFS" --boot -M "$machine" --register=no --keep-unit \
  --console=pipe --private-network --volatile=overlay \
  --bind-ro="$dist:/mnt/dist" --bind-ro="$top/tests/systemd:/mnt/e2e" >"$log" 2>&1 </dev/null &
NSPID=$!
finish() {
  if kill -0 "$NSPID" 2>/dev/null; then
    [ -n "${LEADER:-}" ] && IN systemctl --no-block poweroff >/dev/null 2>&1
    for _ in $(seq 100); do kill -0 "$NSPID" 2>/dev/null || break; sleep 0.1; done
    kill "$NSPID" 2>/dev/null || true
    wait "$NSPID" 2>/dev/null || true
  fi
  rm -rf "${cleanup_dirs[@]}"
}
trap finish EXIT
IN() { nsenter -t "$LEADER" -a env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 "$@"; }

LEADER=""
for _ in $(seq 200); do
  LEADER=$(pgrep -P "$NSPID" -x systemd || true)
  [ -n "$LEADER" ] && break
  kill -0 "$NSPID" 2>/dev/null || { cat "$log" >&2; echo "e2e: the container did not boot" >&2; exit 1; }
  sleep 0.05
done
[ -n "$LEADER" ] || { cat "$log" >&2; echo "e2e: no systemd in the container" >&2; exit 1; }
state=""
for _ in $(seq 100); do  # until PID 1 answers on its bus (it is still setting up right after exec)
  state=$(IN timeout 60 systemctl is-system-running --wait 2>/dev/null) && break
  [ -n "$state" ] && break
  sleep 0.1
done
echo "# container booted: $state"

set +e
IN /mnt/e2e/checks.sh /mnt/dist/current.deb /mnt/dist/upgrade.deb /mnt/dist/upgrade2.deb /mnt/dist/released.deb
rc=$?
set -e
if [ $rc != 0 ]; then
  echo "# journal of the gateway units:"
  IN journalctl --no-pager -n 60 -u 'openclaw-gateway*' | sed 's/^/#   /'
fi
exit $rc
