#!/usr/bin/env bash
# The tests again as a user who is not root, as most users run them: the unit test bundle (the
# two fuzzers excepted: they ran as root already and test no permission) and the integration tests,
# on copies in a folder that user can read, whatever folder CI cloned into. The root-only tests
# say they are skipped and why. The schema copy was compared as root; unset CI lets it skip here if
# that user cannot read shared/.
#   .ci/as-user.sh [USER]
set -euo pipefail
user=${1:-nobody}
cd "$(dirname "$0")/.."
bin_dir=$(swift build --show-bin-path)
work=$(mktemp -d /tmp/openclaw-as-user.XXXXXX)
trap 'rm -rf "$work"' EXIT
cp -r tests "$work/tests"
cp "$bin_dir/openclaw-gateway" "$bin_dir/startup-floor" "$bin_dir/openclaw-gatewayPackageTests.xctest" "$work/"
mkdir "$work/home"
chmod -R a+rX "$work"
chown "$user" "$work/home"
as_user() { runuser -u "$user" -- env -u CI HOME="$work/home" PATH=/usr/bin:/bin PYTHONDONTWRITEBYTECODE=1 "$@"; }
echo "== unit tests as $user"
(cd "$work" && as_user ./openclaw-gatewayPackageTests.xctest --testing-library swift-testing \
  --skip WebSocketFuzzTests --skip ControlPlaneFuzzTests)
echo "== integration tests as $user"
(cd "$work" && as_user env OPENCLAW_GATEWAY_BIN="$work/openclaw-gateway" /usr/bin/python3 -m pytest -q -rs -p no:cacheprovider tests/)
