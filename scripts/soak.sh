#!/usr/bin/env bash
# Crash soak: a real streamdistill-server and streamdistill-edge on the sample video, on
# loopback. The server is SIGKILLed at N random moments and started again at once; the edge
# runs throughout and reconnects by itself. At the end (and after every kill) the server's
# store is checked against the edge's record of acks (--ack-log):
#   - every sequence the edge saw acked has its row, and its image file with the stored size;
#   - no sequence is stored twice, and there is no image file without a row (no orphan);
#   - versions are 1..N without a gap, each created after the one before, each with its
#     checkpoint file of the stored size; they rose across the kills; each restart resumed at
#     the newest stored version; the edge applied rising versions, all of them stored;
#   - no acked frame is still in the edge's spool; no frame was rejected; the server never
#     exited by itself, and both daemons stop in order at the end.
# Prints the counts and exits 1 on any violation (2 on a usage or start-up error).
#
#   bash scripts/soak.sh [--kills N] [--seed S] [--dir DIR] [--min-gap S] [--max-gap S] [--settle S]
#                        [--no-build]
#   (defaults: 20 kills, a random seed (printed: pass it again to repeat the moments),
#    out/soak (emptied first), a kill every 3-12 s after the server is up again, 20 s after the
#    last restart; --no-build skips scripts/setup.sh and scripts/build.sh and uses build/ as is)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

KILLS=20
SEED=""
WORK=out/soak
MIN_GAP=3
MAX_GAP=12
SETTLE=20
BUILD=1
usage() {
  echo "usage: $0 [--kills N] [--seed S] [--dir DIR] [--min-gap S] [--max-gap S] [--settle S] [--no-build]" >&2
  exit 2
}
while [ $# -gt 0 ]; do
  case "$1" in
    --kills) KILLS="$2"; shift 2 ;;
    --seed) SEED="$2"; shift 2 ;;
    --dir) WORK="$2"; shift 2 ;;
    --min-gap) MIN_GAP="$2"; shift 2 ;;
    --max-gap) MAX_GAP="$2"; shift 2 ;;
    --settle) SETTLE="$2"; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    *) usage ;;
  esac
done
for v in "$KILLS" "$MIN_GAP" "$MAX_GAP" "$SETTLE"; do [[ "$v" =~ ^[0-9]+$ ]] || usage; done
[ "$MAX_GAP" -ge "$MIN_GAP" ] && [ "$MIN_GAP" -ge 1 ] || usage
if [ -z "$SEED" ]; then SEED=$(( $(od -An -N2 -tu2 /dev/urandom) )); fi
[[ "$SEED" =~ ^[0-9]+$ ]] || usage
RANDOM=$SEED  # every random moment below comes from this seed

if [ "$BUILD" -eq 1 ]; then
  bash scripts/setup.sh
  bash scripts/build.sh
fi
SERVER_BIN="$ROOT/build/streamdistill-server"
EDGE_BIN="$ROOT/build/streamdistill-edge"

rm -rf "$WORK"
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)
DB="$WORK/server/index.sqlite"
ACKS="$WORK/acks.txt"

# A loopback port nothing listens on (bash connects to it to find out).
PORT=""
for _ in $(seq 50); do
  p=$(( 20000 + $(od -An -N2 -tu2 /dev/urandom) % 40000 ))
  if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then PORT=$p; break; fi
done
[ -n "$PORT" ] || { echo "soak: no free loopback port found" >&2; exit 2; }
sed "s/^listen: .*/listen: 127.0.0.1:$PORT/" configs/soak_server.yaml > "$WORK/server.yaml"
sed "s/^server: .*/server: 127.0.0.1:$PORT/" configs/soak_edge.yaml > "$WORK/edge.yaml"

# Every process is bounded: no daemon outlives this many seconds, whatever happens.
LIMIT=$(( KILLS * (MAX_GAP + 130) + SETTLE + 300 ))
START=$(date +%s)
echo "soak: seed $SEED, $KILLS kills every $MIN_GAP-$MAX_GAP s, port $PORT, work dir $WORK"

SERVER_TIMEOUT_PID=""  # the `timeout` wrapping the running server
SERVER_PID=""          # the server itself
EDGE_TIMEOUT_PID=""
EDGE_PID=""
cleanup() {
  for p in $SERVER_PID $SERVER_TIMEOUT_PID $EDGE_PID $EDGE_TIMEOUT_PID; do kill -KILL "$p" 2>/dev/null || true; done
}
trap cleanup EXIT

VIOLATIONS=0
violation() {
  echo "soak: VIOLATION: $*"
  VIOLATIONS=$((VIOLATIONS + 1))
}

# The child of a `timeout` process (the daemon it runs), waiting up to 10 s for it to appear.
child_of() {
  local c=""
  for _ in $(seq 100); do
    c=$(pgrep -P "$1" | head -n 1 || true)
    [ -n "$c" ] && break
    sleep 0.1
  done
  echo "$c"
}

# Starts server life $1 and waits (up to 120 s) until it listens. Returns 1 if it does not.
start_server() {
  local log="$WORK/server.$1.log"
  (cd "$WORK" && exec timeout -s KILL "$LIMIT" "$SERVER_BIN" --config server.yaml) > "$log" 2>&1 &
  SERVER_TIMEOUT_PID=$!
  SERVER_PID=$(child_of "$SERVER_TIMEOUT_PID")
  [ -n "$SERVER_PID" ] || return 1
  for _ in $(seq 1200); do
    if grep -q "listening on" "$log"; then return 0; fi
    if ! kill -0 "$SERVER_TIMEOUT_PID" 2>/dev/null; then break; fi
    sleep 0.1
  done
  echo "soak: server life $1 did not come up; its log:" >&2
  tail -n 20 "$log" >&2
  return 1
}

# Queries on the store, read-only (it is at rest: the server is down or stopped).
sql() { sqlite3 -readonly -batch -noheader "$DB" "$1"; }
acked_sequences() { awk '$2 == 0 { print $1 }' "$ACKS" 2>/dev/null | sort -u; }
stored_sequences() { sql "SELECT sequence FROM frames WHERE device_id = 'cam1';" | sort -u; }
max_version() { sql "SELECT COALESCE(MAX(version), 0) FROM versions WHERE device_id = 'cam1';"; }

start_server 0 || exit 2
touch "$ACKS" "$WORK/stored_unacked_at_kills.txt"
(cd "$WORK" && exec timeout -s KILL "$((LIMIT + 60))" "$EDGE_BIN" --config edge.yaml --ack-log "$ACKS" \
  --duration "$LIMIT" --log-level warn) > "$WORK/edge.out" 2> "$WORK/edge.log" &
EDGE_TIMEOUT_PID=$!
EDGE_PID=$(child_of "$EDGE_TIMEOUT_PID")
# The first kill comes once frames flow (at most 180 s).
for _ in $(seq 1800); do
  [ -s "$ACKS" ] && break
  kill -0 "$EDGE_TIMEOUT_PID" 2>/dev/null || break
  sleep 0.1
done
[ -s "$ACKS" ] || { echo "soak: no ack within 180 s; see $WORK" >&2; exit 2; }

printf "%-5s %-7s %-7s %-7s %-8s %-8s\n" kill "gap_s" acked stored version orphans
VERSION_AT_FIRST_KILL=""
KILLED=0
for k in $(seq 1 "$KILLS"); do
  tenths=$(( MIN_GAP * 10 + RANDOM % ((MAX_GAP - MIN_GAP) * 10 + 1) ))
  sleep "$((tenths / 10)).$((tenths % 10))"
  if ! kill -0 "$SERVER_PID" 2>/dev/null; then
    violation "server life $((k - 1)) exited by itself before kill $k; see $WORK/server.$((k - 1)).log"
    break
  fi
  kill -KILL "$SERVER_PID"
  wait "$SERVER_TIMEOUT_PID" 2>/dev/null || true
  SERVER_PID=""
  SERVER_TIMEOUT_PID=""
  KILLED=$k
  # Every ack the edge has now was sent by a server that is gone: it must be in the store.
  acked_now=$(acked_sequences)
  stored_now=$(stored_sequences)
  missing_now=$(comm -23 <(echo "$acked_now") <(echo "$stored_now") | grep -c . || true)
  version_now=$(max_version)
  [ -n "$VERSION_AT_FIRST_KILL" ] || VERSION_AT_FIRST_KILL=$version_now
  [ "$missing_now" -eq 0 ] || violation "after kill $k: $missing_now acked frame(s) not in the store"
  # Stored but not acked when the server died: the edge must send them again, and the next
  # server must ack them as duplicates without storing them twice.
  comm -13 <(echo "$acked_now") <(echo "$stored_now") >> "$WORK/stored_unacked_at_kills.txt"
  start_server "$k" || { violation "server did not restart after kill $k"; break; }
  # The restarted server removed the files of rows the kill cut off, and resumed at the newest version.
  orphans=$(grep -o "removed [0-9]* file(s) without an index row" "$WORK/server.$k.log" | awk '{ print $2 }' || true)
  resumed=$(grep -o "device cam1: resuming at version [0-9]*" "$WORK/server.$k.log" | awk '{ print $NF }' || true)
  if [ "$version_now" -gt 0 ] && [ "${resumed:-0}" != "$version_now" ]; then
    violation "after kill $k the server resumed at version '${resumed:-none}', the store's newest is $version_now"
  fi
  printf "%-5s %-7s %-7s %-7s %-8s %-8s\n" "$k" "$((tenths / 10)).$((tenths % 10))" \
    "$(echo "$acked_now" | grep -c . || true)" "$(echo "$stored_now" | grep -c . || true)" "$version_now" "${orphans:-0}"
done

# Let the last server life take the re-sends and publish, then stop both in order (SIGINT),
# each within 60 s (then SIGKILL).
STOP_RC=0
stop_in_order() {  # $1: the daemon, $2: the timeout around it; sets STOP_RC to its exit status
  STOP_RC=0
  kill -INT "$1" 2>/dev/null || true
  for _ in $(seq 600); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$1" 2>/dev/null || true
  wait "$2" || STOP_RC=$?
}
sleep "$SETTLE"
stop_in_order "$EDGE_PID" "$EDGE_TIMEOUT_PID"
EDGE_PID=""
EDGE_TIMEOUT_PID=""
[ "$STOP_RC" -eq 0 ] || violation "the edge exited with $STOP_RC on SIGINT (see $WORK/edge.log)"
if kill -0 "$SERVER_PID" 2>/dev/null; then
  stop_in_order "$SERVER_PID" "$SERVER_TIMEOUT_PID"
  [ "$STOP_RC" -eq 0 ] || violation "the last server life exited with $STOP_RC on SIGINT"
else
  violation "the last server life exited by itself; see $WORK/server.$KILLED.log"
fi
SERVER_PID=""
SERVER_TIMEOUT_PID=""

# ---- the final checks, on the store at rest --------------------------------------------------
ACKED=$(acked_sequences)
STORED=$(stored_sequences)
n_ack_lines=$(grep -c . "$ACKS" || true)
n_acked=$(echo "$ACKED" | grep -c . || true)
n_rejected=$(awk '$2 != 0' "$ACKS" | grep -c . || true)
n_acked_twice=$(awk '$2 == 0 { print $1 }' "$ACKS" | sort | uniq -d | grep -c . || true)
n_stored=$(echo "$STORED" | grep -c . || true)
missing=$(comm -23 <(echo "$ACKED") <(echo "$STORED"))
n_missing=$(echo "$missing" | grep -c . || true)
missing_list=$(echo $missing)
[ "$n_missing" -eq 0 ] || violation "$n_missing acked frame(s) not in the store: ${missing_list:0:300}"
[ "$n_rejected" -eq 0 ] || violation "$n_rejected frame(s) rejected by the server"
n_dup_rows=$(sql "SELECT COUNT(*) - COUNT(DISTINCT sequence) FROM frames WHERE device_id = 'cam1';")
[ "$n_dup_rows" -eq 0 ] || violation "$n_dup_rows sequence(s) stored twice"

# Each row's image file exists with the stored size; no image file without its row.
n_bad_images=0
while IFS='|' read -r seq bytes; do
  f=$(printf "%s/server/frames/cam1/%012d.jpg" "$WORK" "$seq")
  if [ ! -f "$f" ] || [ "$(stat -c %s "$f")" != "$bytes" ]; then
    n_bad_images=$((n_bad_images + 1))
    [ "$n_bad_images" -le 5 ] && echo "soak: frame $seq: image $f missing or not $bytes bytes"
  fi
done < <(sql "SELECT sequence, image_bytes FROM frames WHERE device_id = 'cam1' ORDER BY sequence;")
[ "$n_bad_images" -eq 0 ] || violation "$n_bad_images stored frame(s) without their complete image"
files=$(ls "$WORK/server/frames/cam1" 2>/dev/null | sort)
expected_files=$(echo "$STORED" | awk 'NF { printf "%012d.jpg\n", $1 }' | sort)
n_orphan_files=$(comm -23 <(echo "$files") <(echo "$expected_files") | grep -c . || true)
[ "$n_orphan_files" -eq 0 ] || violation "$n_orphan_files file(s) in frames/cam1 without a row"

# Versions: 1..N, created in that order, each with its checkpoint; they rose across the kills.
n_versions=0
prev_created=0
while IFS='|' read -r version base created bytes; do
  n_versions=$((n_versions + 1))
  [ "$version" -eq "$n_versions" ] || violation "versions are not 1..N: $version in place $n_versions"
  [ "$created" -ge "$prev_created" ] || violation "version $version was created before its predecessor"
  [ "$base" -eq 0 ] || [ "$base" -eq $((version - 1)) ] || violation "version $version is based on $base"
  prev_created=$created
  f="$WORK/server/models/cam1/v$version.sdw"
  if [ ! -f "$f" ] || [ "$(stat -c %s "$f")" != "$bytes" ]; then
    violation "version $version: checkpoint $f missing or not $bytes bytes"
  fi
done < <(sql "SELECT version, base_version, created_ms, checkpoint_bytes FROM versions WHERE device_id = 'cam1' ORDER BY version;")
n_model_files=$(ls "$WORK/server/models/cam1" 2>/dev/null | grep -c . || true)
[ "$n_model_files" -eq "$n_versions" ] || violation "$n_model_files checkpoint files for $n_versions versions"
[ "$n_versions" -gt "${VERSION_AT_FIRST_KILL:-0}" ] ||
  violation "versions did not rise after the first kill (${VERSION_AT_FIRST_KILL:-0} then, $n_versions at the end)"

# The edge applied rising versions, each of them stored; no acked frame is left in its spool.
edge_versions=$(grep -o "^update v[0-9]*" "$WORK/edge.out" | tr -dc '0-9\n' || true)
n_edge_updates=$(echo "$edge_versions" | grep -c . || true)
prev=0
for v in $edge_versions; do
  [ "$v" -gt "$prev" ] || violation "the edge applied version $v after $prev"
  [ "$v" -le "$n_versions" ] || violation "the edge applied version $v, the store's newest is $n_versions"
  prev=$v
done
pending=$(ls "$WORK/edge/spool" 2>/dev/null | sed -n 's/^0*\([0-9][0-9]*\)\.frame$/\1/p' | sort -u)
n_pending=$(echo "$pending" | grep -c . || true)
n_acked_pending=$(comm -12 <(echo "$ACKED") <(echo "$pending") | grep -c . || true)
[ "$n_acked_pending" -eq 0 ] || violation "$n_acked_pending acked frame(s) still in the edge's spool"
# A stored frame whose ack the edge never saw must still be in its spool, to be sent again.
n_unacked_stored=$(comm -13 <(echo "$ACKED") <(echo "$STORED") | grep -c . || true)
n_unacked_lost=$(comm -13 <(echo "$ACKED") <(echo "$STORED") | comm -23 - <(echo "$pending") | grep -c . || true)
[ "$n_unacked_lost" -eq 0 ] || violation "$n_unacked_lost stored frame(s) neither acked to the edge nor in its spool"
# Frames stored before a kill without their ack reaching the edge, acked later after a re-send.
n_resent=$(sort -u "$WORK/stored_unacked_at_kills.txt" | comm -12 - <(echo "$ACKED") | grep -c . || true)

n_orphans_removed=$(cat "$WORK"/server.*.log | { grep -o "removed [0-9]* file(s) without an index row" || true; } |
  awk '{ s += $2 } END { print s + 0 }')
n_server_errors=$(cat "$WORK"/server.*.log | grep -c "\] \[error\]" || true)
ELAPSED=$(( $(date +%s) - START ))

echo
echo "soak: seed $SEED, $ELAPSED s, work dir $WORK"
echo "  kills                      $KILLED of $KILLS"
echo "  frames acked (edge)        $n_acked ($n_ack_lines ack lines, $n_acked_twice acked twice, $n_rejected rejected)"
echo "  frames stored (server)     $n_stored"
echo "  acked but missing          $n_missing"
echo "  stored twice               $n_dup_rows"
echo "  stored, ack lost at a kill $(sort -u "$WORK/stored_unacked_at_kills.txt" | grep -c . || true) ($n_resent of them re-sent and acked as duplicates later)"
echo "  stored, not acked at end   $n_unacked_stored (all still in the edge's spool: $n_unacked_lost missing from it)"
echo "  images missing or short    $n_bad_images"
echo "  image files without a row  $n_orphan_files (orphans removed at restarts: $n_orphans_removed)"
echo "  versions                   $n_versions (at the first kill: ${VERSION_AT_FIRST_KILL:-0}); edge applied $n_edge_updates, ended on ${prev}"
echo "  edge spool at the end      $n_pending pending ($n_acked_pending of them acked)"
echo "  server error lines         $n_server_errors"
echo "  violations                 $VIOLATIONS"
printf '{"seed":%s,"kills":%s,"acked":%s,"stored":%s,"missing":%s,"duplicates":%s,"bad_images":%s,"orphan_files":%s,"versions":%s,"edge_updates":%s,"resent_duplicates":%s,"pending":%s,"seconds":%s,"violations":%s}\n' \
  "$SEED" "$KILLED" "$n_acked" "$n_stored" "$n_missing" "$n_dup_rows" "$n_bad_images" "$n_orphan_files" \
  "$n_versions" "$n_edge_updates" "$n_resent" "$n_pending" "$ELAPSED" "$VIOLATIONS" | tee "$WORK/soak_summary.json"
[ "$VIOLATIONS" -eq 0 ] && [ "$KILLED" -eq "$KILLS" ]
