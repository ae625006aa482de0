#!/usr/bin/env bash
# Builds dist/openclaw-gateway_<version>_<arch>.deb from the files git tracks, in a scratch copy
# (dpkg-buildpackage writes beside the source tree, and the work tree's .build stays out of it).
#   packaging/build-deb.sh [VERSION]    # VERSION: optional, e.g. 0.1.0+test1, for upgrade tests
# Needs: the Swift toolchain on PATH, debhelper, dpkg-dev, libsystemd-dev, pkg-config (make deb-deps).
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
version=${1:-}
work=$(mktemp -d /var/tmp/openclaw-deb.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/src" "$top/dist"
git -C "$top" ls-files -z --cached --others --exclude-standard | (cd "$top" && xargs -0 tar -cf - --no-recursion) | tar -xf - -C "$work/src"
cd "$work/src"
if [ -n "$version" ]; then
  # a higher version of the same tree, as an upgrade would bring
  sed -i "1s/(\([^)]*\))/($version)/" debian/changelog
fi
dpkg-buildpackage -us -uc -b >"$work/build.log" 2>&1 || { tail -40 "$work/build.log" >&2; echo "build-deb: dpkg-buildpackage failed" >&2; exit 1; }
deb=$(ls "$work"/openclaw-gateway_*.deb)
lintian_root=$([ "$(id -u)" = 0 ] && echo --allow-root)
lintian $lintian_root --fail-on error,warning "$deb" >&2 || { echo "build-deb: lintian reports errors or warnings" >&2; exit 1; }
cp "$deb" "$top/dist/"
echo "$top/dist/$(basename "$deb")"
