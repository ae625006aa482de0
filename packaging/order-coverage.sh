#!/bin/sh
# How much of the symbol ordering file the release binary still defines. A list gone stale (new
# dependencies, a changed start-up path) costs RSS and start-up time, never correctness; below 90 %
# this exits 1, so the package build (debian/rules) and CI notice, not only `make bench`.
#   packaging/order-coverage.sh BINARY [ORDER_FILE]
set -eu
binary=$1
order=${2:-$(dirname "$0")/openclaw-gateway.order}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
nm --defined-only "$binary" | awk 'NF == 3 && $2 ~ /^[tTwW]$/ { print $3 }' | sort -u >"$tmp/defined"
sort -u "$order" >"$tmp/wanted"
found=$(comm -12 "$tmp/defined" "$tmp/wanted" | wc -l)
wanted=$(wc -l <"$tmp/wanted")
if [ $((found * 10)) -ge $((wanted * 9)) ]; then
  echo "symbol order: $found of $wanted listed functions are in the binary"
else
  echo "symbol order: $found of $wanted listed functions are in the binary (stale: run packaging/symbol-order.py)"
  exit 1
fi
