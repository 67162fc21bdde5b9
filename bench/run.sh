#!/usr/bin/env bash
# Load benchmark of the release binary with wrk, on this machine (load generator included).
# Usage: bench/run.sh [RUNS]   (default 3; the report gives the median of the runs)
# Prints a Markdown table; BENCHMARKS.md records a run with the machine description.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-3}
DURATION=${DURATION:-10s}
USERS=${USERS:-100000}

command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
cargo build --release --quiet
BIN=$PWD/target/release/usersvc
WORK=$(mktemp -d)
trap 'kill "${SERVER:-}" 2>/dev/null || true; rm -rf "$WORK"' EXIT
DB=$WORK/bench.sqlite3
PASSWORD="correct horse battery staple 42"

# --- seeding ---------------------------------------------------------------------------------
seed_start=$(date +%s.%N)
echo "$PASSWORD" | "$BIN" --db "$DB" seed --users "$USERS" --password-stdin --json >/dev/null
seed_secs=$(echo "$(date +%s.%N) - $seed_start" | bc)
"$BIN" --db "$DB" users create --email staff@example.com --staff --json >/dev/null
STAFF_KEY=$("$BIN" --db "$DB" keys create --user staff@example.com --label bench --scopes '*')
USER_KEY=$("$BIN" --db "$DB" keys create --user user1@example.com --label bench --scopes 'user:read')

# Every user's uuid, for PATCH targets.
python3 - "$DB" "$WORK/uuids.lua" <<'PY'
import sqlite3, sys
rows = sqlite3.connect(sys.argv[1]).execute("SELECT uuid FROM users WHERE is_active = 1").fetchall()
with open(sys.argv[2], "w") as f:
    f.write("uuids = {" + ",".join('"%s"' % r[0] for r in rows) + "}\n")
PY

cat > "$WORK/list.lua" <<LUA
math.randomseed(os.time())
request = function()
  local offset = math.random(0, $USERS - 100)
  return wrk.format("GET", "/api/users/?limit=100&offset=" .. offset)
end
LUA
# wrk.format() replaces wrk.headers when given a table, so copy them (Host, Authorization).
cat > "$WORK/json_headers.lua" <<'LUA'
function json_headers()
  local h = {}
  for k, v in pairs(wrk.headers) do h[k] = v end
  h["Content-Type"] = "application/json"
  return h
end
LUA
cat > "$WORK/patch.lua" <<LUA
dofile("$WORK/uuids.lua")
dofile("$WORK/json_headers.lua")
math.randomseed(os.time())
local n = 0
request = function()
  n = n + 1
  local uuid = uuids[math.random(1, #uuids)]
  local body = '{"first_name":"bench' .. n .. '"}'
  return wrk.format("PATCH", "/api/users/" .. uuid .. "/", json_headers(), body)
end
LUA
cat > "$WORK/login.lua" <<LUA
dofile("$WORK/json_headers.lua")
math.randomseed(os.time())
request = function()
  local i = math.random(1, $USERS)
  local body = '{"email":"user' .. i .. '@example.com","password":"$PASSWORD"}'
  return wrk.format("POST", "/api/login/", json_headers(), body)
end
LUA

# --- server ----------------------------------------------------------------------------------
start_server() {
  local db=$1
  local t0; t0=$(date +%s%N)
  RUST_LOG=warn "$BIN" --db "$db" serve --listen 127.0.0.1:0 --no-bootstrap >"$WORK/out" 2>"$WORK/err" &
  SERVER=$!
  until grep -q listening "$WORK/out" 2>/dev/null; do sleep 0.001; done
  URL=$(sed -n 's/^listening on //p' "$WORK/out")
  until curl -sf -o /dev/null "$URL/_health"; do sleep 0.001; done
  STARTUP_MS=$(( ($(date +%s%N) - t0) / 1000000 ))
}

# wrk → "req/s p50 p99" (latencies in ms). Any non-2xx answer fails the benchmark: a fast
# error is not a result.
run_wrk() {
  local conns=$1; shift
  wrk -t2 -c"$conns" -d"$DURATION" --latency "$@" | tee -a "$WORK/wrk.log" | awk '
    function ms(v) { if (v ~ /us$/) return v/1000; if (v ~ /ms$/) return v+0; if (v ~ /s$/) return v*1000; return v }
    /^ +50%/ { p50 = ms($2) } /^ +99%/ { p99 = ms($2) } /^Requests\/sec/ { rps = $2 }
    /Non-2xx/ { bad = $NF }
    END { if (bad) { print "non-2xx responses: " bad > "/dev/stderr"; exit 1 }
          printf "%.0f %.2f %.2f\n", rps, p50, p99 }'
}

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

start_server "$DB"
declare -A R
for run in $(seq "$RUNS"); do
  R[health]+="$(run_wrk 64 "$URL/_health")"$'\n'
  R[me]+="$(run_wrk 64 -H "Authorization: Bearer $USER_KEY" "$URL/api/users/@me/")"$'\n'
  R[list]+="$(run_wrk 64 -H "Authorization: Bearer $STAFF_KEY" -s "$WORK/list.lua" "$URL")"$'\n'
  R[patch]+="$(run_wrk 64 -H "Authorization: Bearer $STAFF_KEY" -s "$WORK/patch.lua" "$URL")"$'\n'
  R[login]+="$(run_wrk 8 -s "$WORK/login.lua" "$URL")"$'\n'
  # @me while logins saturate the CPU.
  run_wrk 8 -s "$WORK/login.lua" "$URL" >/dev/null &
  sleep 1
  R[me_under_login]+="$(run_wrk 64 -H "Authorization: Bearer $USER_KEY" "$URL/api/users/@me/")"$'\n'
  wait %%
done
RSS_KB=$(awk '/VmHWM/ {print $2}' "/proc/$SERVER/status")
kill "$SERVER"; wait "$SERVER" 2>/dev/null || true

row() {
  local name=$1 key=$2
  local rps p50 p99
  rps=$(printf '%s' "${R[$key]}" | awk 'NF {print $1}' | median)
  p50=$(printf '%s' "${R[$key]}" | awk 'NF {print $2}' | median)
  p99=$(printf '%s' "${R[$key]}" | awk 'NF {print $3}' | median)
  echo "| $name | $rps | $p50 | $p99 |"
}

echo
echo "Median of $RUNS runs of $DURATION each, $USERS users, wrk -t2 on the same machine."
echo
echo "| scenario | req/s | p50 ms | p99 ms |"
echo "|---|---|---|---|"
row "GET /_health (64 conns)" health
row "GET /api/users/@me/ with a key (64 conns)" me
row "GET /api/users/?limit=100&offset=random (staff key, 64 conns)" list
row "PATCH /api/users/<random uuid>/ first_name (staff key, 64 conns)" patch
row "POST /api/login/ (argon2id, 8 conns)" login
row "GET @me while 8 connections log in (64 conns)" me_under_login
echo
echo "Peak RSS of the server over the whole run: $((RSS_KB / 1024)) MiB"
echo "seed --users $USERS: ${seed_secs}s"

# --- start-up and seeding at 1,000,000 users --------------------------------------------------
if [ "${SKIP_MILLION:-0}" != 1 ]; then
  BIG=$WORK/big.sqlite3
  t0=$(date +%s.%N)
  "$BIN" --db "$BIG" seed --users 1000000 --json >/dev/null
  echo "seed --users 1000000: $(echo "$(date +%s.%N) - $t0" | bc)s"
  ms=()
  for _ in 1 2 3; do start_server "$BIG"; ms+=("$STARTUP_MS"); kill "$SERVER"; wait "$SERVER" 2>/dev/null || true; done
  echo "start to first served request, 1,000,000 users (median of 3): $(printf '%s\n' "${ms[@]}" | median) ms"
fi
