#!/usr/bin/env bash
# backup-check.sh: the backup and restore of docs/operations.md, done for
# real on throwaway clusters, and loadgen's check run against the restores.
#
#  1. a Postgres (.dev/pg-backup-check, port BC_PG_PORT 55480) with
#     archive_mode=on and an archive_command copying each WAL segment to a
#     directory (the "archive");
#  2. a base backup of it (pg_basebackup -Ft -z -X stream -c fast), taken
#     before any notification, so what follows comes back from WAL only;
#  3. the gateway on it, and loadgen: pass A (BC_N notifications, 10000),
#     a named restore point (pg_create_restore_point), pass B (BC_N more),
#     each with its check on the primary; then pg_switch_wal() and a wait
#     until that segment is archived;
#  4. two restores of the base backup into new data directories, each
#     with recovery.signal and restore_command reading the archive (and
#     archive_mode off, so a test restore never writes into the archive):
#     "end", to the end of the archived WAL; "pitr", to the restore point
#     between A and B (recovery_target_name, recovery_target_action=promote);
#  5. loadgen's check against each restored database, for A and for B. The
#     check runs in loadgen after it sends; loadgen sends the same bytes
#     again given the same flags (-prefix, -ts-base, -seed), so each check
#     sends the pass again to the gateway on the primary, where every one
#     is a duplicate and acknowledged, and checks the restored database
#     (-database-url), which no gateway writes to. Expected: "end" holds
#     A and B, every acknowledged notification exactly once with its
#     history row; "pitr" holds A, and B is missing entirely: acknowledged
#     after the recovery target, lost to that restore;
#  6. what an operator does without loadgen: the notifications the intake
#     gateway's log (LOG_LEVEL=info, one line per delivery) says were
#     acknowledged, looked up in each restored database: none missing from
#     "end", exactly pass B missing from "pitr". And, for each database, the
#     highest event id and the next transaction id: the "pitr" restore
#     hands out again ids the primary used after the restore point.
#
# Everything is stopped and the clusters' files removed on exit
# (BC_KEEP=1 keeps the files, stopped). Exit status 1 when a check does not
# show what is expected.
set -euo pipefail
cd "$(dirname "$0")/../.."

N=${BC_N:-10000}
C=${BC_C:-64}
PG_PORT=${BC_PG_PORT:-55480}      # the primary; the restores take the next two ports
GW_PORT=${BC_GW_PORT:-18480}
PGDIR=.dev/pg-backup-check
WORK=.dev/backup-check
LIB_NAME=backup-check
RESTORE_POINT=backup-check-after-a
# shellcheck source=deploy/dev/bench-lib.sh
source deploy/dev/bench-lib.sh

BIN=${PG_BINDIR:-/usr/lib/postgresql/15/bin}
[[ -x $BIN/pg_basebackup ]] || BIN=$(dirname "$(command -v pg_basebackup)")
SRV_USER=postgres

# srv CMD...: run as the server's user (pg.sh runs the server as postgres
# when invoked as root).
srv() { if [[ $(id -u) -eq 0 ]]; then runuser -u "$SRV_USER" -- "$@"; else "$@"; fi; }
srv_owner() { if [[ $(id -u) -eq 0 ]]; then echo "$SRV_USER"; else id -un; fi; }

# Files the server reads or writes (the archive, the restored data
# directories) live in SPOOL, a directory the server's user owns; under
# /tmp, since that user may not be able to reach the repository.
SPOOL=$(mktemp -d /tmp/alipay-gw-backup-check.XXXXXX)
chmod 755 "$SPOOL"
ARCHIVE=$SPOOL/archive
BASE=$SPOOL/base # the base backup: base.tar.gz, pg_wal.tar.gz, backup_manifest
mkdir -m 700 "$ARCHIVE"
[[ $(id -u) -ne 0 ]] || chown "$SRV_USER:" "$ARCHIVE"

RESTORES=()
cleanup() {
  local dir
  lib_cleanup
  for dir in "${RESTORES[@]}"; do
    bash deploy/dev/pg.sh stop "$dir" || true
  done
  if [[ ${BC_KEEP:-0} == 1 ]]; then
    lib_log "kept: $SPOOL (archive, base backup, restored data directories), $PGDIR"
  else
    rm -rf "$SPOOL" "${RESTORES[@]}"
    if [[ -f $PGDIR/datadir ]]; then rm -rf "$(cat "$PGDIR/datadir")"; fi
    rm -rf "$PGDIR"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A fresh primary every run: the script measures nothing from an old one.
bash deploy/dev/pg.sh stop "$PGDIR" 2>/dev/null || true
if [[ -f $PGDIR/datadir ]]; then rm -rf "$(cat "$PGDIR/datadir")"; fi
rm -rf "$PGDIR" "$WORK"

lib_init # builds gateway and loadgen, starts the primary, makes the keys
PRIMARY=$ADMIN_URL

lib_log "primary: archive_mode=on, archive_command copying to $ARCHIVE"
sql "$PRIMARY" "ALTER SYSTEM SET archive_mode = on" >/dev/null
sql "$PRIMARY" "ALTER SYSTEM SET archive_command = 'test ! -f $ARCHIVE/%f && cp %p $ARCHIVE/%f'" >/dev/null
bash deploy/dev/pg.sh stop "$PGDIR"
bash deploy/dev/pg.sh start "$PGDIR" "$PG_PORT" >/dev/null # archive_mode needs a restart
# The intake gateway logs at info: one line per delivery, as in production.
GATEWAY_LOG_LEVEL=info gw_start intake "$GW_PORT" "$PRIMARY" # applies the migrations

lib_log "base backup (before any notification) into $BASE"
mkdir -m 700 "$BASE"
[[ $(id -u) -ne 0 ]] || chown "$SRV_USER:" "$BASE"
srv "$BIN/pg_basebackup" -d "host=127.0.0.1 port=$PG_PORT user=$(srv_owner)" \
  -D "$BASE" -Ft -z -X stream -c fast -l backup-check
ls -l "$BASE" >&2

# pass PREFIX TSBASE DBURL: loadgen's N notifications of PREFIX (the same
# bytes for the same PREFIX and TSBASE) to the gateway on the primary, then
# its check against DBURL; the check's JSON into $WORK/PREFIX-<db>.json.
pass() {
  local out=$WORK/$1-$4.json rc=0
  loadgen -url "http://127.0.0.1:$GW_PORT/alipay/notify" -n "$N" -c "$C" \
    -prefix "$1" -ts-base "$2" -json -database-url "$3" >"$out" || rc=$?
  jq -r 'select(.check) | .check | "\(.acked) acknowledged: \(.stored) stored exactly once, \(.missing) missing, \(.doubled) doubled; effects \(.effects) ok, \(.effects_missing) missing, \(.effects_doubled) doubled; delivery_count \(.delivery_counts); status \(.statuses)"' "$out" |
    sed "s/^/$LIB_NAME: check $1 against $4: /" >&2
  return $rc
}
# missing FILE: the check's missing count.
missing() { jq -r 'select(.check) | .check.missing' "$1"; }
stored() { jq -r 'select(.check) | .check.stored' "$1"; }

TS_A=$(date +%s%3N)
TS_B=$((TS_A + N))
A=bc-a-$TS_A
B=bc-b-$TS_A
pass "$A" "$TS_A" "$PRIMARY" primary
lsn_point=$(sql "$PRIMARY" "SELECT pg_create_restore_point('$RESTORE_POINT')")
lib_log "restore point $RESTORE_POINT at $lsn_point"
pass "$B" "$TS_B" "$PRIMARY" primary
gw_stop intake

# Every acknowledged notification is in WAL; close the segment being written
# so the archive holds it, and wait for the archiver.
seg=$(sql "$PRIMARY" "SELECT pg_walfile_name(pg_switch_wal())")
for ((i = 0; i < 600; i++)); do
  last=$(sql "$PRIMARY" "SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver")
  [[ $last < $seg ]] || break
  sleep 0.1
done
[[ ! $last < $seg ]] || lib_die "segment $seg not archived after 60s (last archived: $last)"
lib_log "archived up to $last ($(find "$ARCHIVE" -type f | wc -l) files, $(du -sh "$ARCHIVE" | cut -f1))"

# restore NAME PORT [SETTING...]: the base backup into a new data directory,
# recovering from the archive with the SETTINGs; started on PORT, waited
# for until promoted. Sets RESTORED_URL.
restore() {
  local name=$1 port=$2 dir data i
  shift 2
  dir=$WORK/restore-$name
  data=$SPOOL/restore-$name
  mkdir -p "$dir"
  mkdir -m 700 "$data"
  [[ $(id -u) -ne 0 ]] || chown "$SRV_USER:" "$data"
  echo "$data" >"$dir/datadir" # pg.sh runs the cluster in there
  srv tar -xzf "$BASE/base.tar.gz" -C "$data"
  srv rm -f "$data/server.log" # the primary's log, copied by the backup
  # pg_wal.tar.gz is not needed: restore_command fetches every segment.
  srv touch "$data/recovery.signal"
  {
    echo "# backup-check.sh: a restore"
    echo "restore_command = 'cp $ARCHIVE/%f %p'"
    echo "archive_mode = off"
    for s in "$@"; do echo "$s"; done
  } | srv tee -a "$data/postgresql.auto.conf" >/dev/null
  RESTORES+=("$dir")
  lib_log "restore $name: base backup + archive into $data, port $port${*:+ ($*)}"
  RESTORED_URL=$(bash deploy/dev/pg.sh start "$dir" "$port")
  for ((i = 0; i < 1200; i++)); do
    [[ $(sql "$RESTORED_URL" "SELECT pg_is_in_recovery()" 2>/dev/null) == f ]] && break
    sleep 0.1
  done
  [[ $(sql "$RESTORED_URL" "SELECT pg_is_in_recovery()") == f ]] || lib_die "restore $name still in recovery after 120s (log: $data/server.log)"
  lib_log "restore $name: $(grep -c 'restored log file' "$data/server.log") WAL files restored from the archive"
  grep -E 'starting (point-in-time|archive) recovery|consistent recovery state|recovery stopping|redo done|selected new timeline|archive recovery complete' \
    "$data/server.log" | sed "s/^/$LIB_NAME: restore $name: log: /" >&2
}

fail=0
restore end $((PG_PORT + 1))
END=$RESTORED_URL
restore pitr $((PG_PORT + 2)) "recovery_target_name = '$RESTORE_POINT'" "recovery_target_action = 'promote'"
PITR=$RESTORED_URL

# The checks: every one sends the pass again to the primary's gateway.
gw_start checker "$GW_PORT" "$PRIMARY"
pass "$A" "$TS_A" "$END" end || fail=1
pass "$B" "$TS_B" "$END" end || fail=1
pass "$A" "$TS_A" "$PITR" pitr || fail=1
pass "$B" "$TS_B" "$PITR" pitr || true # expected to fail: B came after the target
gw_stop checker

# lost DBURL: what docs/operations.md does after a restore without loadgen:
# the notifications the intake gateway's log says it acknowledged
# (outcome success) that the database at DBURL does not hold; prints how
# many, and how many of them are pass B's.
jq -R -r 'fromjson? | select(.outcome == "success") | [.app_id, .notify_id, .msg_method, .time] | @tsv' \
  "$WORK/intake.log" >"$WORK/acked.tsv"
lost() {
  psql -X -q -At -F ' ' -v ON_ERROR_STOP=1 -d "$1" \
    -c "CREATE TEMP TABLE acked (app_id text, notify_id text, msg_method text, at timestamptz)" \
    -c "\\copy acked FROM '$WORK/acked.tsv'" \
    -c "SELECT count(DISTINCT (a.app_id, a.notify_id)), count(DISTINCT (a.app_id, a.notify_id)) FILTER (WHERE a.notify_id LIKE '$B-%')
        FROM acked a WHERE NOT EXISTS (SELECT 1 FROM notifications n WHERE n.app_id = a.app_id AND n.notify_id = a.notify_id)"
}
lib_log "intake log: $(cut -f1,2 "$WORK/acked.tsv" | sort -u | wc -l) notifications acknowledged (outcome success)"
read -r lost_end _ < <(lost "$END")
read -r lost_pitr lost_pitr_b < <(lost "$PITR")

# The restore to the restore point hands out event ids and transaction ids
# again that the primary already used after it (docs/operations.md says
# what that means for webhook receivers and feed readers).
for db in PRIMARY END PITR; do
  lib_log "$(printf '%-7s' "$db") $(sql "${!db}" "SELECT format('notifications %s, events %s (highest id %s), next transaction id %s, database %s',
    (SELECT count(*) FROM notifications), (SELECT count(*) FROM events), (SELECT max(id) FROM events),
    pg_snapshot_xmax(pg_current_snapshot()), pg_size_pretty(pg_database_size(current_database())))")$(
    sql "${!db}" "SELECT coalesce(', last transaction replayed at ' || pg_last_xact_replay_timestamp(), '')")"
done

verdict() { # verdict WHAT FILE WANT_STORED WANT_MISSING
  local got_s got_m
  got_s=$(stored "$2")
  got_m=$(missing "$2")
  if [[ $got_s == "$3" && $got_m == "$4" ]]; then
    lib_log "OK   $1: $got_s stored, $got_m missing"
  else
    lib_log "FAIL $1: $got_s stored, $got_m missing (want $3 stored, $4 missing)"
    fail=1
  fi
}
verdict "restore to the end of WAL holds pass A" "$WORK/$A-end.json" "$N" 0
verdict "restore to the end of WAL holds pass B" "$WORK/$B-end.json" "$N" 0
verdict "restore to the restore point holds pass A" "$WORK/$A-pitr.json" "$N" 0
verdict "restore to the restore point lost pass B (acknowledged after it)" "$WORK/$B-pitr.json" 0 "$N"
if [[ $lost_end == 0 && $lost_pitr == "$N" && $lost_pitr_b == "$N" ]]; then
  lib_log "OK   the intake log against the restores: end lost $lost_end, pitr lost $lost_pitr (all of pass B)"
else
  lib_log "FAIL the intake log against the restores: end lost $lost_end, pitr lost $lost_pitr ($lost_pitr_b of pass B), want 0 and $N"
  fail=1
fi
((fail == 0)) || lib_die "FAIL (files: BC_KEEP=1 keeps them)"
lib_log "PASS"
