# The Debian root file systems the e2e boots (and bench/in-root.sh runs the start-up figures in),
# made once each with debootstrap and cached outside the repository. Sourced, not run: it needs
# $ROOTFS_DIR (where the roots live) and $SUDO (empty as root, else sudo).
#   rootfs_of RELEASE      the root's folder (fails for a release it does not know)
#   make_rootfs RELEASE    debootstrap it there unless it is there already

# The packages: Debian 13's user@.service needs pam_systemd
# (libpam-systemd; without it "PAM unable to dlopen(pam_systemd.so)"), Debian 12's runs without it.
packages=systemd,systemd-sysv,dbus,dbus-user-session,iproute2,python3,procps,man-db
rootfs_of() {
  case $1 in
    bookworm) echo "$ROOTFS_DIR/openclaw-e2e-bookworm-3" ;;
    trixie) echo "$ROOTFS_DIR/openclaw-e2e-trixie-1" ;;
    *) echo "e2e: no root file system known for release '$1' (bookworm, trixie)" >&2; return 2 ;;
  esac
}
packages_of() {
  case $1 in
    trixie) echo "$packages,libpam-systemd" ;;
    *) echo "$packages" ;;
  esac
}
make_rootfs() {  # release: debootstrap into its folder unless it is there already
  local release=$1 rootfs mirror
  rootfs=$(rootfs_of "$release")
  [ -f "$rootfs/.openclaw-e2e-ready" ] && return 0
  mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
  [ -n "$mirror" ] || mirror=$(awk '/^deb / {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
  [ -n "$mirror" ] || { echo "e2e: no Debian mirror in this machine's apt sources" >&2; return 2; }
  echo "# building the $release container root file system in $rootfs (once)"
  rm -rf "$rootfs.tmp"
  $SUDO debootstrap --variant=minbase --include="$(packages_of "$release")" \
    "$release" "$rootfs.tmp" "$mirror" >"$ROOTFS_DIR/openclaw-e2e-debootstrap-$release.log" 2>&1 \
    || { tail -20 "$ROOTFS_DIR/openclaw-e2e-debootstrap-$release.log" >&2; return 2; }
  echo e2e >"$rootfs.tmp/etc/hostname"
  touch "$rootfs.tmp/.openclaw-e2e-ready"
  rm -rf "$rootfs"
  mv "$rootfs.tmp" "$rootfs"
}
