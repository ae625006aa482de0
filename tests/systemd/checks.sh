#!/bin/bash
# The end-to-end checks, run INSIDE the booted container (systemd is PID 1) by e2e.sh.
#   checks.sh DEB UPGRADE_DEB UPGRADE2_DEB RELEASED_DEB
# RELEASED_DEB: the released 0.1.0, built from git by e2e.sh (section 12).
# Prints one "ok"/"not ok" line per check and a closing "N passed, N failed".
set -uo pipefail
DEB=$1
UPGRADE_DEB=$2
UPGRADE2_DEB=$3
RELEASED_DEB=$4
HERE=$(cd "$(dirname "$0")" && pwd)
PROBE="python3 $HERE/probe.py"
SESSIONS="python3 $HERE/sessions.py"
PASSED=0
FAILED=0
DUP='GatewayLockError: another gateway instance is already listening on ws://127.0.0.1:18789'

ok() { PASSED=$((PASSED + 1)); echo "ok - $*"; }
notok() { FAILED=$((FAILED + 1)); echo "not ok - $*"; }
check() {  # check "description" command...
  local what=$1; shift
  local out
  if out=$("$@" 2>&1); then ok "$what"; else notok "$what"; echo "$out" | sed 's/^/    # /'; fi
}
prop() { systemctl show -p "$2" --value "$1"; }
wait_inactive() {  # the unit has stopped (its own state change, not a guess at timing)
  for _ in $(seq 100); do
    case $(systemctl is-active "$1") in inactive|failed) return 0 ;; esac
    sleep 0.1
  done
  return 1
}

echo "# systemd $(systemctl --version | head -1 | cut -d' ' -f2) in a booted container"

# 1. install: socket enabled and listening (held by PID 1), service inactive, units verify clean
dpkg -i "$DEB" >/tmp/dpkg.log 2>&1 || { cat /tmp/dpkg.log; notok "dpkg -i"; }
check "1. socket unit enabled after dpkg -i" test "$(systemctl is-enabled openclaw-gateway.socket)" = enabled
check "1. socket unit active (listening)" test "$(systemctl is-active openclaw-gateway.socket)" = active
check "1. service inactive until the first connection" test "$(systemctl is-active openclaw-gateway.service)" = inactive
check "1. 127.0.0.1:18789 and [::1]:18789 are held by PID 1" bash -c \
  "ss -Hltnp 'sport = :18789' | grep -c 'pid=1,' | grep -qx 2"
# templates are verified as an instance (a template alone has no port to parse)
instances=$(mktemp -d)
ln -s /lib/systemd/system/openclaw-gateway@.socket "$instances/openclaw-gateway@18800.socket"
ln -s /lib/systemd/system/openclaw-gateway@.service "$instances/openclaw-gateway@18800.service"
verify=$(cd / && systemd-analyze verify /lib/systemd/system/openclaw-gateway.socket /lib/systemd/system/openclaw-gateway.service \
  "$instances/openclaw-gateway@18800.socket" "$instances/openclaw-gateway@18800.service" 2>&1)
rm -rf "$instances"
check "1. systemd-analyze verify reports nothing" test -z "$verify"
[ -n "$verify" ] && echo "$verify" | sed 's/^/    # /'

# 2. first connection starts the service; health, WebSocket and STATUS
check "2. /healthz through the socket answers 200 (starts the service)" $PROBE health 18789
check "2. service is now active" test "$(systemctl is-active openclaw-gateway.service)" = active
check "2. service TriggeredBy the socket" bash -c "systemctl show -p TriggeredBy --value openclaw-gateway.service | grep -qw openclaw-gateway.socket"
check "2. WebSocket handshake on / (101, key accepted)" $PROBE websocket 18789
check "2. /healthz on [::1] too" $PROBE health 18789 ::1
status_text=$(prop openclaw-gateway.service StatusText)
check "2. StatusText carries the gateway's STATUS ($status_text)" \
  test "$status_text" = "Listening on ws://127.0.0.1:18789, ws://[::1]:18789 (socket from systemd: openclaw-gateway.socket)"
check "2. the journal says where the listener came from" bash -c \
  "journalctl -b -u openclaw-gateway.service -o cat | grep -qx 'listening on ws://127.0.0.1:18789, ws://\[::1\]:18789 (socket from systemd: openclaw-gateway.socket)'"
# a refused page (foreign Origin) is one journal entry with fields an admin can match on
python3 - <<'PY'
import socket
s = socket.create_connection(("127.0.0.1", 18789))
s.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nOrigin: https://evil.example\r\nUpgrade: websocket\r\n"
          b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
assert b" 403 " in s.recv(4096).split(b"\r\n")[0]
s = socket.create_connection(("127.0.0.1", 18789))
s.sendall(b"GET /healthz HTTP/1.1\r\nHost: evil.example:18789\r\n\r\n")
assert b" 421 " in s.recv(4096).split(b"\r\n")[0]
PY
refusal_json() { journalctl -b -u openclaw-gateway.service MESSAGE_ID=5c2d1f8a0b7e4e4c9a3e6f1d2b8c7a90 -o json; }
for _ in $(seq 50); do [ "$(refusal_json | wc -l)" -ge 2 ] && break; sleep 0.1; done  # journald writes asynchronously
check "2. a refused origin and a foreign Host are one journal entry each, with MESSAGE_ID, REMOTE_ADDR and the kind: $(refusal_json | head -c 300)" python3 -c '
import json, sys
entries = {e["OPENCLAW_REFUSAL"]: e for e in (json.loads(line) for line in sys.stdin if line.strip())}
assert sorted(entries) == ["host", "origin"], entries
for kind, detail in (("origin", "https://evil.example"), ("host", "evil.example:18789")):
    e = entries[kind]
    assert e["REMOTE_ADDR"] == "127.0.0.1" and int(e["REMOTE_PORT"]) > 0, e
    assert e["OPENCLAW_DETAIL"] == detail and e["PRIORITY"] == "5", e
    assert e["MESSAGE"].startswith(f"refused {kind} peer=127.0.0.1:"), e
' <<<"$(refusal_json)"

# 3. a manual run beside it: exact line, 78
out=$(openclaw-gateway 2>&1); rc=$?
check "3. manual openclaw-gateway exits 78" test "$rc" = 78
check "3. ... with the exact EADDRINUSE line" test "$(echo "$out" | head -1)" = "$DUP"
check "3. ... and a hint naming the socket unit" bash -c "grep -qx 'hint: port 18789 is held by systemd socket unit openclaw-gateway.socket (serving: pid [0-9]* (openclaw-gateway))' <<<'$out'"
status_json=$(openclaw-gateway status --json); status_rc=$?
check "3. openclaw-gateway status: running, socket-activated ($status_json)" bash -c \
  "test $status_rc = 0 && grep -q '\"socketActivated\":true' <<<'$status_json' && grep -q '\"socketUnit\":\"openclaw-gateway.socket\"' <<<'$status_json'"
out=$(openclaw-gateway --force 2>&1); rc=$?
check "3. --force against systemd's socket: 78, the unit named, nothing touched" bash -c \
  "test $rc = 78 && grep -q 'systemctl stop openclaw-gateway.socket openclaw-gateway.service' <<<'$out' && systemctl is-active --quiet openclaw-gateway.service"
check "3. shell completions installed (bash, zsh, fish)" test -s /usr/share/bash-completion/completions/openclaw-gateway \
  -a -s /usr/share/zsh/vendor-completions/_openclaw-gateway -a -s /usr/share/fish/vendor_completions.d/openclaw-gateway.fish

# 4. a duplicate service started by systemd exits 78 and is not restarted
sed -e '/^Requires=/d' -e '/^After=/d' -e '/^Also=/d' -e 's/^Description=.*/Description=duplicate gateway/' \
  /lib/systemd/system/openclaw-gateway.service >/run/systemd/system/openclaw-gateway-duplicate.service
systemctl daemon-reload
systemctl start openclaw-gateway-duplicate.service 2>/dev/null
# Until the unit has failed: a restart loop would keep it activating (or show in NRestarts once
# the start limit fails it), so failed with NRestarts=0 is the proof, whatever the timing.
wait_inactive openclaw-gateway-duplicate.service
check "4. duplicate service exited 78" test "$(prop openclaw-gateway-duplicate.service ExecMainStatus)" = 78
check "4. ... and was not restarted (NRestarts=0)" test "$(prop openclaw-gateway-duplicate.service NRestarts)" = 0
check "4. ... and stays failed" test "$(systemctl is-active openclaw-gateway-duplicate.service)" = failed
check "4. the real service still serves" $PROBE health 18789
rm -f /run/systemd/system/openclaw-gateway-duplicate.service; systemctl reset-failed; systemctl daemon-reload

# 5. restart and upgrade under a connection every 10 ms: zero refused or failed, and each restart
# inside the load window (the new process started after the load began and before it ended)
now_us() { python3 -c 'import time; print(int(time.clock_gettime(time.CLOCK_MONOTONIC) * 1e6))'; }
started_inside() {  # started_inside FROM_US TO_US: the service's current process started in between
  local at; at=$(prop openclaw-gateway.service ExecMainStartTimestampMonotonic)
  test "$at" -gt "$1" -a "$at" -lt "$2"
}
pid_before=$(prop openclaw-gateway.service MainPID)
load_from=$(now_us)
$PROBE hammer 18789 6 10 >/tmp/hammer-restart.log 2>&1 &
hammer=$!
sleep 1.5; systemctl restart openclaw-gateway.service  # spacing the restarts inside the load, not waiting for anything
sleep 1.5; systemctl restart openclaw-gateway.service
wait $hammer; hammer_rc=$?
load_to=$(now_us)
check "5. systemctl restart x2 under load: $(cat /tmp/hammer-restart.log)" test $hammer_rc = 0
check "5. ... the service was really restarted" test "$(prop openclaw-gateway.service MainPID)" != "$pid_before"
check "5. ... while the load ran" started_inside "$load_from" "$load_to"
pid_before=$(prop openclaw-gateway.service MainPID)
socket_since=$(prop openclaw-gateway.socket ActiveEnterTimestampMonotonic)
load_from=$(now_us)
$PROBE hammer 18789 8 10 >/tmp/hammer-upgrade.log 2>&1 &
hammer=$!
sleep 1.5; dpkg -i "$UPGRADE_DEB" >/tmp/dpkg-upgrade.log 2>&1; upgrade_rc=$?
wait $hammer; hammer_rc=$?
load_to=$(now_us)
check "5. dpkg -i of a higher version succeeded ($(dpkg-query -W -f='${Version}' openclaw-gateway))" test $upgrade_rc = 0
check "5. upgrade under load: $(cat /tmp/hammer-upgrade.log)" test $hammer_rc = 0
check "5. ... the service runs the new binary (restarted)" test "$(prop openclaw-gateway.service MainPID)" != "$pid_before"
check "5. ... restarted while the load ran" started_inside "$load_from" "$load_to"
check "5. ... the socket unit was never restarted" test "$(prop openclaw-gateway.socket ActiveEnterTimestampMonotonic)" = "$socket_since"

# 10. live WebSocket sessions cross restarts and upgrades in the fd store, unseen by clients
restart="systemctl restart openclaw-gateway.service"
# 8 restarts in about 5 s and an upgrade right after: more starts in 10 s than systemd's default
# start limit allows (5; systemd 257 counts `systemctl restart` too), which the units raise.
out=$($SESSIONS soak 18789 --clients 50 --every-ms 20 --during "$restart" --times 8 --gap 0.5 2>&1); rc=$?
check "10.1 50 sessions, 8 restarts: no close, none lost or duplicated, same connIds, new pid: $out" test $rc = 0
check "10.1 ... each restart handed the sessions over (journal)" bash -c \
  "test \$(journalctl -b -u openclaw-gateway.service -o cat | grep -c '^carried on 50 connection(s) from pid [0-9]* across the restart ([0-9]* ms)$') -ge 8"
check "10.1 ... and the fd store is empty again (NFileDescriptorStore=0)" test "$(prop openclaw-gateway.service NFileDescriptorStore)" = 0
out=$($SESSIONS soak 18789 --clients 50 --every-ms 20 --during "dpkg -i $UPGRADE2_DEB >/tmp/dpkg-upgrade2.log 2>&1" 2>&1); rc=$?
check "10.2 50 sessions across dpkg -i of a higher version ($(dpkg-query -W -f='${Version}' openclaw-gateway)): $out" test $rc = 0
out=$($SESSIONS halfframe 18789 --during "$restart" 2>&1); rc=$?
check "10.3 half a frame sent before the restart, the rest after: answered once: $out" test $rc = 0
out=$($SESSIONS stalled 18789 --clients 20 --requests 40000 --during "$restart" 2>&1); rc=$?
check "10.11 a client that stopped reading with output queued: closed as at a stop (every answer, the shutdown event, 1012), the restart not held for the grace period, 20 others carried on: $out" test $rc = 0
check "10.11 ... the journal says it was closed instead" bash -c \
  "journalctl -b -u openclaw-gateway.service -o cat | grep -q '^connection [0-9a-f-]* did not drain its output in time; closing it instead$'"
out=$($SESSIONS soak 18789 --clients 1000 --every-ms 250 --during "$restart" 2>&1); rc=$?
# pauseMs: the longest wait of a request in flight when the restart began or sent after it (the
# connect burst of 1,000 clients before it is in maxWaitMs, not here)
pause=$(sed -n 's/.*"pauseMs": \([0-9.]*\).*/\1/p' <<<"$out")
echo "# 1,000 sessions handed over: longest wait for a response across the restart: ${pause} ms"
journalctl -b -u openclaw-gateway.service -o short-monotonic | grep -E 'Stopping|handed 1000|carried on 1000|Started' | tail -4 | sed 's/^/#   /'
check "10.5 1,000 sessions across a restart: none lost, longest pause ${pause} ms (under 500; 137-172 ms measured, 366 before the per-loop handover): $out" bash -c \
  "test $rc = 0 && awk -v p='$pause' 'BEGIN { exit !(p != \"\" && p < 500) }'"
check "10.5 ... all 1,000 were handed over and carried on (journal)" bash -c \
  "journalctl -b -u openclaw-gateway.service -o cat | grep -q '^restart: handed 1000 connection(s) to the next gateway' &&
   journalctl -b -u openclaw-gateway.service -o cat | grep -q '^carried on 1000 connection(s) from pid [0-9]* across the restart'"
# 10.10 10,000 sessions (issue 14's goal), spread over 8 client processes (one Python process
# cannot keep thousands busy), with room for them (--max-connections is 1,024 by default): all
# carried on. The pause is reported, not bounded here: 0.6-1.0 s measured against a goal of 250 ms.
mkdir -p /run/systemd/system/openclaw-gateway.service.d
printf '[Service]\nEnvironment=OPENCLAW_GATEWAY_MAX_CONNECTIONS=12000\n' >/run/systemd/system/openclaw-gateway.service.d/10k.conf
systemctl daemon-reload && systemctl restart openclaw-gateway.service
out=$($SESSIONS soak 18789 --clients 10000 --every-ms 2000 --procs 8 --connect-timeout 180 --during "systemctl restart openclaw-gateway.service" 2>&1); rc=$?
pause=$(sed -n 's/.*"pauseMs": \([0-9.]*\).*/\1/p' <<<"$out")
echo "# 10,000 sessions handed over: longest wait for a response across the restart: ${pause} ms"
journalctl -b -u openclaw-gateway.service -o short-monotonic | grep -E 'Stopping|handed 10000|carried on 10000|Started' | tail -4 | sed 's/^/#   /'
check "10.10 10,000 sessions across a restart: none closed, lost or duplicated, same connIds, new pid (longest pause ${pause} ms): $out" test $rc = 0
check "10.10 ... all 10,000 handed over and carried on (journal), store empty" bash -c \
  "journalctl -b -u openclaw-gateway.service -o cat | grep -q '^restart: handed 10000 connection(s) to the next gateway' &&
   journalctl -b -u openclaw-gateway.service -o cat | grep -q '^carried on 10000 connection(s) from pid [0-9]* across the restart' &&
   test \$(systemctl show -p NFileDescriptorStore --value openclaw-gateway.service) = 0"
rm -f /run/systemd/system/openclaw-gateway.service.d/10k.conf
systemctl daemon-reload && systemctl restart openclaw-gateway.service
# a restart into a configuration the new process refuses (78): the sessions it was handed are
# closed the way a stop closes them, not dropped by systemd without a word
mkdir -p /run/systemd/system/openclaw-gateway.service.d
printf '[Service]\nExecStart=\nExecStart=/usr/bin/openclaw-gateway run --bind lan\n' >/run/systemd/system/openclaw-gateway.service.d/broken.conf
systemctl daemon-reload
out=$($SESSIONS stop 18789 --clients 20 --during "systemctl restart openclaw-gateway.service 2>/dev/null || true" 2>&1); rc=$?
check "10.7 a restart that fails to start (exit $(prop openclaw-gateway.service ExecMainStatus)): clients get the shutdown event and 1012: $out" test $rc = 0
rm -rf /run/systemd/system/openclaw-gateway.service.d; systemctl daemon-reload; systemctl reset-failed openclaw-gateway.service
check "10.7 ... and the fd store is empty" test "$(prop openclaw-gateway.service NFileDescriptorStore)" = 0
check "10.7 ... and the fixed service serves again" $PROBE health 18789
# a token added across the restart: sessions that connected without one must not carry on
mkdir -p /run/systemd/system/openclaw-gateway.service.d
printf '[Service]\nEnvironment=OPENCLAW_GATEWAY_TOKEN=e2e-token\n' >/run/systemd/system/openclaw-gateway.service.d/token.conf
systemctl daemon-reload
out=$($SESSIONS stop 18789 --clients 5 --during "systemctl restart openclaw-gateway.service" 2>&1); rc=$?
check "10.8 a token added across a restart: unauthenticated sessions are closed (shutdown event, 1012), not carried on: $out" test $rc = 0
rm -rf /run/systemd/system/openclaw-gateway.service.d; systemctl daemon-reload; systemctl restart openclaw-gateway.service
# the new process SIGKILLed in the middle of its take-back (every session adopted, none reading):
# the carrier it forwarded into is still in the store, and the automatic restart carries them on
mkdir -p /run/systemd/system/openclaw-gateway.service.d
printf '[Service]\nEnvironment=OPENCLAW_GATEWAY_TEST_FAULT_FILE=/var/lib/openclaw-gateway/fault\n' >/run/systemd/system/openclaw-gateway.service.d/fault.conf
systemctl daemon-reload; systemctl restart openclaw-gateway.service; $PROBE health 18789 >/dev/null
restarts_before=$(prop openclaw-gateway.service NRestarts)
printf 'take-back-adopted\n' >/var/lib/openclaw-gateway/fault
out=$($SESSIONS soak 18789 --clients 50 --every-ms 20 --during "systemctl restart openclaw-gateway.service 2>/dev/null; for _ in \$(seq 100); do systemctl is-active -q openclaw-gateway.service && break; sleep 0.1; done" 2>&1); rc=$?
check "10.9 the new process killed during take-back: the next start carries every session on: $out" test $rc = 0
check "10.9 ... it really was killed there (fault file used, one automatic restart)" bash -c \
  "test ! -e /var/lib/openclaw-gateway/fault && test \$(systemctl show -p NRestarts --value openclaw-gateway.service) = \$(($restarts_before + 1))"
check "10.9 ... and the store is empty again" test "$(prop openclaw-gateway.service NFileDescriptorStore)" = 0
rm -rf /run/systemd/system/openclaw-gateway.service.d /var/lib/openclaw-gateway/fault; systemctl daemon-reload
out=$($SESSIONS stop 18789 --clients 20 --during "systemctl stop openclaw-gateway.service 2>/dev/null" 2>&1); rc=$?
check "10.4 systemctl stop: every client gets the shutdown event and 1012: $out" test $rc = 0
check "10.4 ... the service stopped and its store is empty" bash -c \
  "systemctl is-active --quiet openclaw-gateway.service; test \$? != 0 && test \"\$(systemctl show -p NFileDescriptorStore --value openclaw-gateway.service)\" = 0"
check "10.4 ... and the socket starts it again" $PROBE health 18789
openclaw-gateway run --port 18900 >/tmp/manual.log 2>&1 &
manual=$!
for _ in $(seq 50); do $PROBE health 18900 >/dev/null 2>&1 && break; sleep 0.1; done
out=$($SESSIONS stop 18900 --clients 5 --during "kill -TERM $manual" 2>&1); rc=$?
wait $manual
check "10.6 a manual launch (no systemd, no store): shutdown event and 1012 as before: $out" test $rc = 0

# 11. systemctl reload: the config read again, live, with the socket and every session untouched;
# an invalid config makes `systemctl reload` fail and the last good one keeps serving
config=/var/lib/openclaw-gateway/openclaw.json
write_config() { printf '%s\n' "$1" >"$config.tmp" && chmod 0644 "$config.tmp" && mv "$config.tmp" "$config"; }
$PROBE health 18789 >/dev/null
write_config "{gateway: {reload: {mode: 'off'}}}"  # JSON5, as upstream writes it; no watch: each reload is ours
systemctl reload openclaw-gateway.service
pid_before=$(prop openclaw-gateway.service MainPID)
socket_since=$(prop openclaw-gateway.socket ActiveEnterTimestampMonotonic)
write_config "{gateway: {reload: {mode: 'off'}, controlUi: {allowedOrigins: ['https://ui.example',],},}}"
out=$($SESSIONS soak 18789 --clients 20 --every-ms 20 --same-pid --during "systemctl reload openclaw-gateway.service" 2>&1); rc=$?
check "11.1 systemctl reload (valid): 20 sessions untouched, same pid: $out" test $rc = 0
reload_status=$(prop openclaw-gateway.service StatusText)
check "11.1 ... StatusText says what was applied ($reload_status)" \
  grep -qx 'config reload (SIGHUP): generation [0-9]*: applied gateway.controlUi.allowedOrigins' <<<"$reload_status"
write_config "{gateway: {reload: {mode: 'off'}, auth: {mode: 'password'}}}"
out=$($SESSIONS soak 18789 --clients 20 --every-ms 20 --same-pid --during "! systemctl reload openclaw-gateway.service 2>/dev/null" 2>&1); rc=$?
check "11.2 systemctl reload (invalid config) fails, 20 sessions untouched: $out" test $rc = 0
check "11.2 ... the journal names the reason" bash -c \
  "journalctl -b -u openclaw-gateway.service -o cat | grep -q 'reload refused: invalid config /var/lib/openclaw-gateway/openclaw.json: gateway.auth.mode is \"password\" but no password is set'"
check "11.2 ... the same process serves on" test "$(prop openclaw-gateway.service MainPID)" = "$pid_before"
check "11.2 ... and the socket unit was never restarted" test "$(prop openclaw-gateway.socket ActiveEnterTimestampMonotonic)" = "$socket_since"
check "11.2 ... the last good config serves (its origin is allowed)" python3 -c '
import socket
s = socket.create_connection(("127.0.0.1", 18789))
s.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nOrigin: https://ui.example\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
          b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
assert b" 101 " in s.recv(4096).split(b"\r\n")[0]
'
rm -f "$config"
systemctl reload openclaw-gateway.service; reload_rc=$?
reload_status=$(prop openclaw-gateway.service StatusText)  # read at once: the job ended when the gateway answered
check "11.3 systemctl reload returns once the new config is in force (rc $reload_rc, $reload_status)" bash -c \
  "test $reload_rc = 0 && grep -qx 'config reload (SIGHUP): generation [0-9]*: applied gateway.controlUi.allowedOrigins, gateway.reload' <<<'$reload_status'"

# 11.4 gateway.reload.mode restart: a change restarts the gateway instead of being taken up live.
# It exits 75, systemd starts it again (RestartForceExitStatus=75) and the sessions cross as on
# `systemctl restart`: here the watched file asks, then `systemctl reload`, which must succeed.
until_new_pid() {  # the command for --during: waits until systemd has started another process
  echo "for _ in \$(seq 100); do p=\$(systemctl show -p MainPID --value openclaw-gateway.service); [ \"\$p\" != 0 ] && [ \"\$p\" != $1 ] && systemctl is-active -q openclaw-gateway.service && break; sleep 0.1; done"
}
pid_before=$(prop openclaw-gateway.service MainPID); restarts_before=$(prop openclaw-gateway.service NRestarts)
out=$($SESSIONS soak 18789 --clients 50 --every-ms 20 --during \
  "printf '%s\n' \"{gateway: {reload: {mode: 'restart'}}}\" >$config.tmp && chmod 0644 $config.tmp && mv $config.tmp $config; $(until_new_pid "$pid_before")" 2>&1); rc=$?
check "11.4 mode restart, the file changed: 50 sessions carried across the gateway's own restart: $out" test $rc = 0
check "11.4 ... it asked for it (exit 75, one automatic restart, journal) and the store is empty" bash -c \
  "test \$(systemctl show -p NRestarts --value openclaw-gateway.service) = $((restarts_before + 1)) &&
   journalctl -b -u openclaw-gateway.service -o cat _PID=$pid_before | grep -q '^restarting to take up gateway.reload (gateway.reload.mode restart): exit 75' &&
   test \$(systemctl show -p NFileDescriptorStore --value openclaw-gateway.service) = 0"
pid_before=$(prop openclaw-gateway.service MainPID); restarts_before=$(prop openclaw-gateway.service NRestarts)
out=$($SESSIONS soak 18789 --clients 50 --every-ms 20 --during \
  "printf '%s\n' \"{gateway: {reload: {mode: 'restart'}, controlUi: {allowedOrigins: ['https://ui2.example']}}}\" >$config.tmp && chmod 0644 $config.tmp && mv $config.tmp $config && systemctl reload openclaw-gateway.service; echo \$? >/tmp/reload-restart.rc; $(until_new_pid "$pid_before")" 2>&1); rc=$?
check "11.4 mode restart, systemctl reload: it succeeds (rc $(cat /tmp/reload-restart.rc)) and 50 sessions cross the restart: $out" bash -c \
  "test $rc = 0 && test \$(cat /tmp/reload-restart.rc) = 0 && test \$(systemctl show -p NRestarts --value openclaw-gateway.service) = $((restarts_before + 1))"
# hybrid mode, a new port: the listener is the socket unit's, so no restart, and the journal says why
pid_before=$(prop openclaw-gateway.service MainPID)
write_config "{gateway: {port: 18799, reload: {mode: 'hybrid', debounceMs: 0}}}"
for _ in $(seq 50); do journalctl -b -u openclaw-gateway.service -o cat _PID=$pid_before | grep -q 'not taken up: the listener is systemd' && break; sleep 0.1; done
check "11.5 mode hybrid, gateway.port changed under socket activation: no restart, the journal says the socket unit decides" bash -c \
  "journalctl -b -u openclaw-gateway.service -o cat _PID=$pid_before | grep -qx 'gateway.port not taken up: the listener is systemd.s (openclaw-gateway.socket), whose ListenStream= decides; a restart would not change it' &&
   test \$(systemctl show -p MainPID --value openclaw-gateway.service) = $pid_before && $PROBE health 18789"
# a unit of one's own without RestartForceExitStatus=75: the gateway must not stop, and says why
mkdir -p /run/systemd/system/openclaw-gateway.service.d
printf '[Service]\nRestartForceExitStatus=\n' >/run/systemd/system/openclaw-gateway.service.d/no-force.conf
systemctl daemon-reload
write_config "{gateway: {reload: {mode: 'restart', debounceMs: 0}, controlUi: {allowedOrigins: ['https://ui3.example']}}}"
for _ in $(seq 50); do journalctl -b -u openclaw-gateway.service -o cat _PID=$pid_before | grep -q 'not done:' && break; sleep 0.1; done
check "11.6 mode restart in a unit without RestartForceExitStatus=75: no restart, the journal says why" bash -c \
  "journalctl -b -u openclaw-gateway.service -o cat _PID=$pid_before | grep -q '^restart needed for gateway.controlUi.allowedOrigins, gateway.reload (gateway.reload.mode restart), not done: openclaw-gateway.service would not be started again after exit 75' &&
   test \$(systemctl show -p MainPID --value openclaw-gateway.service) = $pid_before && $PROBE health 18789"
rm -rf /run/systemd/system/openclaw-gateway.service.d; systemctl daemon-reload
rm -f "$config"
# 11.7 hybrid mode in a service that binds its own listener (no socket unit): a new port in the
# file restarts it onto that port, and the sessions already open cross the restart
printf '{gateway: {port: 18950, reload: {mode: "hybrid", debounceMs: 0}}}\n' >/run/gw-bound.json
sed -e '/^Requires=/d' -e '/^After=/d' -e '/^Also=/d' -e '/^DynamicUser=/d' -e '/^User=/d' -e '/^IPAddress/d' \
  -e 's#^ExecStart=.*#ExecStart=/usr/bin/openclaw-gateway run#' -e 's/^Description=.*/Description=gateway binding its own port/' \
  -e 's#^\[Service\]#[Service]\nEnvironment=OPENCLAW_CONFIG_PATH=/run/gw-bound.json#' \
  /lib/systemd/system/openclaw-gateway.service >/run/systemd/system/openclaw-gateway-bound.service
systemctl daemon-reload; systemctl start openclaw-gateway-bound.service
bound_pid=$(prop openclaw-gateway-bound.service MainPID)
out=$($SESSIONS soak 18950 --clients 20 --every-ms 20 --during \
  "printf '%s\n' '{gateway: {port: 18951, reload: {mode: \"hybrid\", debounceMs: 0}}}' >/run/gw-bound.json.tmp && mv /run/gw-bound.json.tmp /run/gw-bound.json; for _ in \$(seq 100); do p=\$(systemctl show -p MainPID --value openclaw-gateway-bound.service); [ \"\$p\" != 0 ] && [ \"\$p\" != $bound_pid ] && systemctl is-active -q openclaw-gateway-bound.service && break; sleep 0.1; done" 2>&1); rc=$?
check "11.7 mode hybrid, a new gateway.port in a service that binds its own: 20 sessions cross its own restart: $out" test $rc = 0
check "11.7 ... it restarted once (exit 75), now listens on 18951, and 18950 is free" bash -c \
  "test \$(systemctl show -p NRestarts --value openclaw-gateway-bound.service) = 1 &&
   journalctl -b -u openclaw-gateway-bound.service -o cat _PID=$bound_pid | grep -q '^restarting to take up gateway.port (gateway.reload.mode hybrid): exit 75' &&
   $PROBE health 18951 && ! ss -Hltn 'sport = :18950' | grep -q LISTEN"
systemctl stop openclaw-gateway-bound.service; rm -f /run/systemd/system/openclaw-gateway-bound.service /run/gw-bound.json; systemctl daemon-reload

# 6. SIGKILL: the next connection starts it again; nothing left behind
systemctl kill -s KILL openclaw-gateway.service
wait_inactive openclaw-gateway.service || true
check "6. after SIGKILL the next connection is served" $PROBE health 18789
check "6. ... by a running service" test "$(systemctl is-active openclaw-gateway.service)" = active
# Nothing of ours in /run or /tmp (systemd's own PrivateTmp= directory aside), nothing in the
# service's private /tmp, nothing in its state directory.
leftovers=$(find /run /tmp -xdev \( -name '*openclaw*' -o -name '*.pid' -o -name '*.lock' \) \
  ! -path '/run/systemd/*' ! -name 'systemd-private-*-openclaw-gateway.service-*' 2>/dev/null
  find /tmp/systemd-private-*-openclaw-gateway.service-*/tmp /var/lib/private/openclaw-gateway -mindepth 1 2>/dev/null)
check "6. no lock or PID file anywhere ($leftovers)" test -z "$leftovers"

# 7. two template instances side by side
systemctl start openclaw-gateway@18800.socket openclaw-gateway@18801.socket
check "7. instance 18800 serves" $PROBE health 18800
check "7. instance 18801 serves" $PROBE health 18801
check "7. ... each with its own state directory" test -d /var/lib/private/openclaw-gateway-18800 -a -d /var/lib/private/openclaw-gateway-18801
check "7. ... and its own STATUS" bash -c "systemctl show -p StatusText --value openclaw-gateway@18801.service | grep -qF 'ws://127.0.0.1:18801, ws://[::1]:18801 (socket from systemd: openclaw-gateway@18801.socket)'"
out=$($SESSIONS soak 18800 --clients 5 --every-ms 20 --during "systemctl restart openclaw-gateway@18800.service" 2>&1); rc=$?
check "7. ... an instance's sessions cross its restart too: $out" test $rc = 0
systemctl stop openclaw-gateway@18800.socket openclaw-gateway@18801.socket openclaw-gateway@18800.service openclaw-gateway@18801.service

# 9. exposure score: the README publishes 1.0 for the installed unit; assert exactly that figure
# (systemd-analyze --offline scores the unit file alone at 1.2: it cannot see the running unit).
score=$(systemd-analyze security openclaw-gateway.service 2>/dev/null | sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p')
echo "# systemd-analyze security openclaw-gateway.service: $score"
check "9. exposure score $score is the published 1.0 or lower" awk -v s="$score" 'BEGIN { exit !(s != "" && s <= 1.0) }'

# 8. stop frees the port; purge removes units and state
systemctl stop openclaw-gateway.socket openclaw-gateway.service
check "8. stop of socket and service frees the port" bash -c "! ss -Hltn 'sport = :18789' | grep -q LISTEN"
dpkg --purge openclaw-gateway >/tmp/purge.log 2>&1
check "8. dpkg --purge succeeded" grep -q "Purging configuration files for openclaw-gateway" /tmp/purge.log
check "8. ... units are gone" test ! -e /lib/systemd/system/openclaw-gateway.socket -a ! -e /etc/systemd/system/sockets.target.wants/openclaw-gateway.socket
check "8. ... state is gone" bash -c "! ls -d /var/lib/private/openclaw-gateway* /var/lib/openclaw-gateway* 2>/dev/null | grep -q ."

# 12. from the released 0.1.0 (one fd-store entry per session, FileDescriptorStoreMax=4096) to this
# package and back: the upgrade carries every session on, the downgrade closes them cleanly
dpkg -i "$RELEASED_DEB" >/tmp/dpkg-released.log 2>&1 || { cat /tmp/dpkg-released.log; notok "12. dpkg -i 0.1.0"; }
check "12. 0.1.0 installed and serving ($(dpkg-query -W -f='${Version}' openclaw-gateway))" bash -c \
  "test \"\$(dpkg-query -W -f='\${Version}' openclaw-gateway)\" = 0.1.0 && $PROBE health 18789"
released_pid=$(prop openclaw-gateway.service MainPID)
current=$(dpkg-deb -f "$DEB" Version)
# a template instance of 0.1.0 with sessions of its own, connected before the upgrade begins
rm -f /tmp/instance-ready /tmp/upgraded
systemctl start openclaw-gateway@18800.socket
$SESSIONS soak 18800 --clients 20 --every-ms 20 \
  --during "touch /tmp/instance-ready; while [ ! -e /tmp/upgraded ]; do sleep 0.1; done" >/tmp/instance-soak.out 2>&1 &
instance_soak=$!
for _ in $(seq 300); do [ -e /tmp/instance-ready ] && break; sleep 0.1; done
released_instance_pid=$(prop openclaw-gateway@18800.service MainPID)
out=$($SESSIONS soak 18789 --clients 50 --every-ms 20 --during "dpkg -i $DEB >/tmp/dpkg-from-released.log 2>&1; touch /tmp/upgraded" 2>&1); rc=$?
touch /tmp/upgraded
wait $instance_soak; instance_rc=$?
check "12.1 50 sessions across the upgrade from 0.1.0 to $current: none closed, lost or duplicated, same connIds: $out" bash -c \
  "test $rc = 0 && test \"\$(dpkg-query -W -f='\${Version}' openclaw-gateway)\" = '$current'"
check "12.1 ... and a running template instance's 20 sessions too, restarted by the upgrade: $(cat /tmp/instance-soak.out)" bash -c \
  "test $instance_rc = 0 && test '$(prop openclaw-gateway@18800.service MainPID)' != '$released_instance_pid' &&
   journalctl -b -u openclaw-gateway@18800.service -o cat | grep -q '^carried on 20 connection(s) from pid $released_instance_pid across the restart' &&
   test ! -e /run/systemd/system/openclaw-gateway@.service.d/50-handover-from-0.1.conf &&
   test \$(systemctl show -p FileDescriptorStoreMax --value openclaw-gateway@18800.service) = 8"
systemctl stop openclaw-gateway@18800.socket openclaw-gateway@18800.service
check "12.1 ... the 0.1.0 process handed them over and the new one carried all 50 on (journal)" bash -c \
  "journalctl -b -u openclaw-gateway.service -o cat _PID=$released_pid | grep -q '^restart: handed 50 connection(s)' &&
   journalctl -b -u openclaw-gateway.service -o cat | grep -q '^carried on 50 connection(s) from pid $released_pid across the restart'"
check "12.1 ... the transition drop-in is gone: FileDescriptorStoreMax=$(prop openclaw-gateway.service FileDescriptorStoreMax), store empty" bash -c \
  "test ! -e /run/systemd/system/openclaw-gateway.service.d/50-handover-from-0.1.conf &&
   test \$(systemctl show -p FileDescriptorStoreMax --value openclaw-gateway.service) = 8 &&
   test \$(systemctl show -p NFileDescriptorStore --value openclaw-gateway.service) = 0"
current_pid=$(prop openclaw-gateway.service MainPID)
out=$($SESSIONS stop 18789 --clients 20 --during "dpkg -i $RELEASED_DEB >/tmp/dpkg-downgrade.log 2>&1" 2>&1); rc=$?
check "12.2 the downgrade to 0.1.0: every client gets the shutdown event and 1012, none hangs: $out" test $rc = 0
check "12.2 ... because 0.1.0 cannot read the carrier (journal)" bash -c \
  "journalctl -b -u openclaw-gateway.service -o cat _PID=$current_pid | grep -q '^closing clients: the new /usr/bin/openclaw-gateway does not read '"
check "12.2 ... nothing left in the store, and 0.1.0 serves" bash -c \
  "test \$(systemctl show -p NFileDescriptorStore --value openclaw-gateway.service) = 0 &&
   test \"\$(dpkg-query -W -f='\${Version}' openclaw-gateway)\" = 0.1.0 && $PROBE health 18789"
dpkg --purge openclaw-gateway >/tmp/purge-released.log 2>&1 || cat /tmp/purge-released.log

# 13. the user units under a lingering user's manager, as most OpenClaw users run the gateway: the
# package installed, its system socket disabled (one gateway per port), `systemctl --user` for
# the rest; the restart handover asks the user manager over the user bus
# It begins with 0.1.0, which the upgrade in 13.0 replaces under the user's sessions.
dpkg -i "$RELEASED_DEB" >/tmp/dpkg-user-released.log 2>&1 || { cat /tmp/dpkg-user-released.log; notok "13. dpkg -i 0.1.0"; }
systemctl disable --now openclaw-gateway.socket openclaw-gateway.service >/dev/null 2>&1
useradd -m -s /bin/bash gwuser
gwuid=$(id -u gwuser)
loginctl enable-linger gwuser
AS_USER() { runuser -u gwuser -- env -C /home/gwuser XDG_RUNTIME_DIR=/run/user/$gwuid "$@"; }
U() { AS_USER systemctl --user "$@"; }
uprop() { U show -p "$2" --value "$1"; }
# enable-linger only queues the manager's start; this start joins that job and returns when the
# manager is READY (its bus answers before then: waiting on show-environment raced is-active)
systemctl start user@$gwuid.service
check "13. the lingering user's manager runs (user@$gwuid.service)" test "$(systemctl is-active user@$gwuid.service)" = active
U enable --now openclaw-gateway.socket >/tmp/user-enable.log 2>&1
check "13. user socket enabled and listening, held by the user's manager, not PID 1" bash -c \
  "test \"\$(runuser -u gwuser -- env XDG_RUNTIME_DIR=/run/user/$gwuid systemctl --user is-active openclaw-gateway.socket)\" = active &&
   ss -Hltnp 'sport = :18789' | grep -q 'systemd' && ! ss -Hltnp 'sport = :18789' | grep -q 'pid=1,'"
# 13.0 a package upgrade restarts the running user service (debhelper restarts no user unit): the
# user manager reads the new units, and the sessions cross as on `systemctl --user restart`
$PROBE health 18789 >/dev/null
released_user_pid=$(uprop openclaw-gateway.service MainPID)
out=$($SESSIONS soak 18789 --clients 20 --every-ms 20 --during "dpkg -i $DEB >/tmp/dpkg-user.log 2>&1" 2>&1); rc=$?
check "13.0 the upgrade from 0.1.0 restarts the user service: 20 sessions carried on, none closed or lost: $out" bash -c \
  "test $rc = 0 && test \"\$(dpkg-query -W -f='\${Version}' openclaw-gateway)\" = '$(dpkg-deb -f "$DEB" Version)' &&
   journalctl -b _SYSTEMD_USER_UNIT=openclaw-gateway.service -o cat | grep -q '^carried on 20 connection(s) from pid $released_user_pid across the restart'"
check "13.0 ... the user manager runs the new unit (FileDescriptorStoreMax=$(uprop openclaw-gateway.service FileDescriptorStoreMax)), no drop-in left, the system socket still disabled" bash -c \
  "test '$(uprop openclaw-gateway.service FileDescriptorStoreMax)' = 8 && test ! -e /run/systemd/user/openclaw-gateway.service.d &&
   test \"\$(systemctl is-enabled openclaw-gateway.socket)\" = disabled"
U stop openclaw-gateway.service  # 13.1 starts it through the socket
check "13.1 /healthz through the user socket starts the user service" $PROBE health 18789
check "13.1 ... active under the user's manager, as gwuser" bash -c \
  "test \"\$(runuser -u gwuser -- env XDG_RUNTIME_DIR=/run/user/$gwuid systemctl --user is-active openclaw-gateway.service)\" = active &&
   test \"\$(ps -o user= -p \$(runuser -u gwuser -- env XDG_RUNTIME_DIR=/run/user/$gwuid systemctl --user show -p MainPID --value openclaw-gateway.service))\" = gwuser"
user_status=$(uprop openclaw-gateway.service StatusText)
check "13.1 ... its STATUS names the user socket ($user_status)" grep -qF "(socket from systemd: openclaw-gateway.socket)" <<<"$user_status"
# a duplicate user service: 78, never restarted
mkdir -p /home/gwuser/.config/systemd/user
sed -e '/^Requires=/d' -e '/^After=/d' -e '/^Also=/d' -e 's/^Description=.*/Description=duplicate gateway/' \
  /usr/lib/systemd/user/openclaw-gateway.service >/home/gwuser/.config/systemd/user/openclaw-gateway-duplicate.service
chown -R gwuser: /home/gwuser/.config
U daemon-reload
U start openclaw-gateway-duplicate.service 2>/dev/null
for _ in $(seq 100); do case $(U is-active openclaw-gateway-duplicate.service) in inactive|failed) break ;; esac; sleep 0.1; done
check "13.2 a duplicate user service exits 78 and is not restarted" bash -c \
  "test '$(uprop openclaw-gateway-duplicate.service ExecMainStatus)' = 78 && test '$(uprop openclaw-gateway-duplicate.service NRestarts)' = 0 &&
   test '$(U is-active openclaw-gateway-duplicate.service)' = failed"
# the unit failed as soon as the process exited; journald may still be reading its last line
for _ in $(seq 50); do journalctl -b _SYSTEMD_USER_UNIT=openclaw-gateway-duplicate.service -o cat | grep -qxF "$DUP" && break; sleep 0.1; done
check "13.2 ... with the contract's line in the user's journal" bash -c \
  "journalctl -b _SYSTEMD_USER_UNIT=openclaw-gateway-duplicate.service -o cat | grep -qxF '$DUP'"
rm -f /home/gwuser/.config/systemd/user/openclaw-gateway-duplicate.service; U reset-failed; U daemon-reload
out=$(AS_USER $SESSIONS soak 18789 --clients 50 --every-ms 20 --during "systemctl --user restart openclaw-gateway.service" --times 2 --gap 1 2>&1); rc=$?
check "13.3 50 sessions across 2 systemctl --user restarts: none closed, lost or duplicated, same connIds, new pid: $out" test $rc = 0
check "13.3 ... handed over and carried on (the user's journal), store empty" bash -c \
  "test \$(journalctl -b _SYSTEMD_USER_UNIT=openclaw-gateway.service -o cat | grep -c '^carried on 50 connection(s) from pid [0-9]* across the restart') -ge 2 &&
   test '$(uprop openclaw-gateway.service NFileDescriptorStore)' = 0"
out=$(AS_USER $SESSIONS stop 18789 --clients 20 --during "systemctl --user stop openclaw-gateway.service" 2>&1); rc=$?
check "13.4 systemctl --user stop: every client gets the shutdown event and 1012: $out" test $rc = 0
check "13.4 ... stopped, store empty, and the user socket starts it again" bash -c \
  "test '$(U is-active openclaw-gateway.service)' != active && test '$(uprop openclaw-gateway.service NFileDescriptorStore)' = 0 &&
   $PROBE health 18789"
U disable --now openclaw-gateway.socket openclaw-gateway.service >/dev/null 2>&1
loginctl disable-linger gwuser
check "13.5 ... user socket disabled: the port is free" bash -c "! ss -Hltn 'sport = :18789' | grep -q LISTEN"
dpkg --purge openclaw-gateway >/tmp/purge-user.log 2>&1 || cat /tmp/purge-user.log

echo "$PASSED passed, $FAILED failed"
[ "$FAILED" = 0 ]
