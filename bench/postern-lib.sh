# postern-lib.sh - helpers shared by the bench scripts (sourced, does nothing by
# itself): bookkeeping + cleanup of everything started, free ports, a throwaway PostgreSQL 15
# cluster, Postern start/stop, load.sh in the background and its results. The caller sets ROOT,
# BASE_PORT and BENCH_NAME, then sources this file, which checks the machine, makes the scratch dir
# WORK and sources ../shared/bench/lib.sh (MSGS SESSIONS SIZE REPS WARMUP defaults, timing, CPU
# and RSS of process trees).

: "${SHARED_BENCH:=$ROOT/../shared/bench}"
: "${BUN:=$ROOT/node_modules/.bin/bun}"
: "${PGBIN:=/usr/lib/postgresql/15/bin}"
: "${KEEP:=0}"
: "${NEWCONN_MSGS:=2000}"
SRC=$ROOT # the Postern tree that runs; accept.sh's REV= points it at an exported commit
[ -f "$SHARED_BENCH/load.sh" ] || { echo "error: no load.sh in $SHARED_BENCH (set SHARED_BENCH=)" >&2; exit 1; }
SHARED_BENCH=$(cd "$SHARED_BENCH" && pwd)
[ "$(id -u)" = 0 ] || { echo "error: run as root (PostgreSQL and Postfix run as their own users)" >&2; exit 1; }
[ -x "$BUN" ] || { echo "error: $BUN missing: run npm install in $ROOT" >&2; exit 1; }
WORK=$(mktemp -d "/tmp/postern-$BENCH_NAME.XXXXXX")
chmod 755 "$WORK" # the postgres and postfix users must reach their folders inside
export BENCH_TMP=$WORK/smtpbench
mkdir -p "$BENCH_TMP"
. "$SHARED_BENCH/lib.sh"

T_START=$(date +%s)
log() { echo "[$(($(date +%s) - T_START))s] $*" >&2; }

PF_CONFS=()   # Postfix instances started (pf_start from peers.sh appends to it)
EXTRA_PIDS=() # other daemons we started (dnsmasq, ...)
PG_DATA=
POSTERN_PID=
LOAD_PID=
TAIL_PID=

stop_pid() { # PID: SIGTERM, up to 10 s, then SIGKILL
	local p=$1 i
	kill -0 "$p" 2>/dev/null || return 0
	kill "$p" 2>/dev/null
	for ((i = 0; i < 100; i++)); do
		kill -0 "$p" 2>/dev/null || { wait "$p" 2>/dev/null; return 0; }
		sleep 0.1
	done
	kill -9 "$p" 2>/dev/null
	wait "$p" 2>/dev/null
}

# stop_extra PID: stops a daemon registered in EXTRA_PIDS and forgets it, so that cleanup never
# signals a PID the system may have given to another process since
stop_extra() {
	local p keep=()
	stop_pid "$1"
	for p in "${EXTRA_PIDS[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
	EXTRA_PIDS=("${keep[@]}")
}

kill_tree() { # PID: TERM to it and every descendant (load.sh, its smtp-source and smtp-sink)
	local pids
	pids=$(tree_pids "$1")
	# shellcheck disable=SC2086
	[ -n "$pids" ] && kill $pids 2>/dev/null
	wait "$1" 2>/dev/null
}

cleanup() {
	local c p
	trap - INT TERM
	[ -n "$LOAD_PID" ] && kill_tree "$LOAD_PID"
	[ -n "$TAIL_PID" ] && stop_pid "$TAIL_PID"
	[ -n "$POSTERN_PID" ] && stop_pid "$POSTERN_PID"
	for p in "${EXTRA_PIDS[@]}"; do stop_pid "$p"; done
	for c in "${PF_CONFS[@]}"; do postfix -c "$c" stop >/dev/null 2>&1; done
	[ -n "$PG_DATA" ] && su postgres -s /bin/sh -c "$PGBIN/pg_ctl -D '$PG_DATA' -m fast -w stop" >/dev/null 2>&1
	if [ "${KEEP:-0}" = 1 ]; then log "kept $WORK"; else rm -rf "$WORK"; fi
}

NEXT_PORT=$BASE_PORT
pick_port() { # VAR: the next port from NEXT_PORT up with no socket on it in any state
	local p=$NEXT_PORT
	while ss -Htanu "( sport = :$p )" 2>/dev/null | grep -q .; do p=$((p + 1)); done
	NEXT_PORT=$((p + 1))
	printf -v "$1" '%s' "$p"
}

pick_ports() { # VAR...: pick_port for each
	local v
	for v in "$@"; do pick_port "$v"; done
}

pg_psql() { psql -h 127.0.0.1 -p "$P_PG" -U postgres -d "${PGDB:-postern}" -qAtX -v ON_ERROR_STOP=1 "$@"; }

pg_start() { # throwaway cluster, default settings (fsync=on, synchronous_commit=on); sets PG_PID
	local d=$WORK/pg
	mkdir -p "$d"
	chown postgres:postgres "$d"
	su postgres -s /bin/sh -c "$PGBIN/initdb -D '$d/data' -U postgres --auth=trust -E UTF8" >"$d/initdb.log" 2>&1 ||
		{ tail "$d/initdb.log"; die "initdb failed"; }
	PG_DATA=$d/data # before the start: a start that times out still leaves a server for cleanup to stop
	su postgres -s /bin/sh -c "$PGBIN/pg_ctl -D '$d/data' -l '$d/server.log' -w -o '-p $P_PG -c listen_addresses=127.0.0.1 -k $d' start" >/dev/null ||
		{ tail "$d/server.log"; die "pg_ctl start failed"; }
	PG_PID=$(head -1 "$PG_DATA/postmaster.pid")
	PGDB=postgres pg_psql -c 'create database postern' || die "create database failed"
	PG_VERSION=$(PGDB=postgres pg_psql -c 'show server_version' | cut -d' ' -f1)
}

pg_stop() {
	su postgres -s /bin/sh -c "$PGBIN/pg_ctl -D '$PG_DATA' -m fast -w stop" >/dev/null 2>&1
	PG_DATA=
}

# postern_vars [VAR=VALUE...]: POSTERN_VARS, Postern's bench environment (extra settings last win)
postern_vars() {
	POSTERN_VARS=(DATABASE_URL="postgres://postgres@127.0.0.1:$P_PG/postern" POSTERN_DATA_DIR="$WORK/postern"
		POSTERN_HOSTNAME=bench-postern.test POSTERN_LISTEN=127.0.0.1 POSTERN_LOG_LEVEL=warn
		POSTERN_SMTP_PORT="$P_SMTP" POSTERN_SUBMISSION_PORT="$P_SUB" POSTERN_SUBMISSIONS_PORT="$P_SUBS" POSTERN_HTTPS_PORT="$P_HTTPS"
		POSTERN_HTTP_PORT="$P_HTTP" POSTERN_MAX_CONNECTIONS=2000 POSTERN_MAX_CONNECTIONS_PER_IP=2000
		POSTERN_DNS_CHECKS=off POSTERN_DNS_SERVERS=127.0.0.1:9
		# one load generator stands for many clients: no per-IP message rate
		POSTERN_INBOUND_PER_MINUTE=0 "$@")
}

# take_postfix_functions NAME...: peers.sh's Postfix helpers (pf_start, pf_stop, pf_delete_queue,
# pf_wait_empty, pf_version: the private instance of its postfix-* rows, configured exactly as there)
take_postfix_functions() {
	eval "$(sed -n '/^# -* Postfix$/,/^# -* Haraka$/p' "$SHARED_BENCH/peers.sh")"
	declare -F "$@" >/dev/null || die "could not take $* from $SHARED_BENCH/peers.sh"
}

postern_limits() { # with LIMITS=1: a shape for bench.test and a send quota, both far above the load
	[ "${LIMITS:-0}" = 1 ] || return 0
	postern_cli shape add bench.test --connections 1000 --per-minute 10000000 --per-hour 100000000
	POSTERN_VARS+=(POSTERN_SEND_LIMIT_PER_HOUR=1000000000)
	log "Postern: a shape for bench.test and a send quota, neither reached"
}

postern_cli() { # ARGS...: bun src/cli.ts ARGS against DATABASE_URL (before serve)
	(cd "$SRC" && env "${POSTERN_VARS[@]}" "$BUN" src/cli.ts "$@" >>"$WORK/cli.log" 2>&1) ||
		{ tail -5 "$WORK/cli.log"; die "postern $* failed"; }
}

postern_start() { # NAME: `serve` in the background, log in $WORK/postern-NAME.log; sets POSTERN_PID
	local name=$1
	port_listening "$P_SMTP" && die "port $P_SMTP is already in use"
	local flags=()
	if [ "${PROFILE:-0}" = 1 ]; then # Bun CPU profile (.cpuprofile and .md), written when serve exits
		mkdir -p "$WORK/prof-$name"
		flags=(--cpu-prof --cpu-prof-md --cpu-prof-dir="$WORK/prof-$name")
	fi
	(cd "$SRC" && exec env "${POSTERN_VARS[@]}" "$BUN" "${flags[@]}" src/cli.ts serve >"$WORK/postern-$name.log" 2>&1) &
	POSTERN_PID=$!
	wait_port "$P_HTTP" 60 || { cat "$WORK/postern-$name.log"; die "postern did not start"; }
	port_listening "$P_SMTP" || { cat "$WORK/postern-$name.log"; die "postern does not listen on $P_SMTP"; }
}

postern_stop() {
	stop_pid "$POSTERN_PID"
	POSTERN_PID=
	if [ "${PROFILE:-0}" = 1 ]; then
		mkdir -p "${PROFILE_OUT:=/tmp/postern-bench-profile}"
		local d
		for d in "$WORK"/prof-*; do # this run's profiles replace an earlier run's of the same name
			[ -d "$d" ] || continue
			rm -rf "${PROFILE_OUT:?}/$(basename "$d")"
			cp -r "$d" "$PROFILE_OUT"/
		done
		log "Bun CPU profiles in $PROFILE_OUT"
	fi
}

# run_load LABEL PORT: load.sh in the background (Ctrl-C handled at once), per-run lines shown
# as they come; output in $WORK/load-LABEL.{out,err}. SERVER_PIDS, SINK_PORT, BETWEEN_REPS
# etc. come through the environment.
run_load() {
	local out=$WORK/load-$1.out err=$WORK/load-$1.err
	: >"$out"
	: >"$err"
	"$SHARED_BENCH/load.sh" "$2" >"$out" 2>"$err" &
	LOAD_PID=$!
	tail -n +1 -f --pid="$LOAD_PID" "$err" >&2 &
	TAIL_PID=$!
	wait "$LOAD_PID"
	LOAD_RC=$?
	LOAD_PID=
	wait "$TAIL_PID"
	TAIL_PID=
}

# load_col LABEL MODE FIELD: from load.sh's table line for MODE: accept|e2e -> "med min max", cpu
load_col() {
	awk -v m="$2" -v f="$3" '$1 == m {
		n = 0; for (i = 2; i <= NF; i++) if ($i ~ /^\[/) { n++; v[n] = $(i-1) " " $i }
		if (f == "cpu") { print ($NF ~ /^\[/ || $NF ~ /^n\/a$/) ? "-" : $NF; exit }
		k = (f == "accept") ? 1 : 2
		s = v[k]; gsub(/[][]/, "", s); sub(/-/, " ", s); print (s == "" ? "NA NA NA" : s) }' "$WORK/load-$1.out"
}

# worst_other LABEL MODE: highest other% of MODE's timed runs; load_fails LABEL [MODE]: failed
# runs (of MODE, or of any mode)
worst_other() { grep -E " $2 run [0-9]+:" "$WORK/load-$1.err" | grep -o 'other CPU [0-9]*' | awk '{ print $3 }' | sort -n | tail -1; }
load_fails() { grep -cE "${2:+ $2 (run [0-9]+|warm-up) }FAILED" "$WORK/load-$1.err"; }

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a + 0 > 0 && b + 0 > 0) printf "%.2f", a / b; else print "-" }'; }

# Postern's between-reps hook (exported to load.sh): checks that the previous run's deliveries
# are all settled (status delivered, for the relay route: up to 60 s), records the CPU ticks of
# Bun and of the PostgreSQL tree, empties the queue and checkpoints, records the ticks again.
# So the ticks file holds one interval per load.sh run (warm-up first), outside the timing.
postern_between_reps() {
	local q="psql -h 127.0.0.1 -p $ACCEPT_PG_PORT -U postgres -d postern -qAtX" i rows pend
	local owed="select count(*) from deliveries where status not in ('delivered')"
	# HOOK=1 (relay.sh): the run ends when the last event webhook is sent too: every event past a
	# hook's cursor, and every refused one waiting as a copy
	[ "${HOOK:-0}" = 1 ] && owed="select (${owed}) + (select count(*) from hook_deliveries where status = 'pending')
		+ (select count(*) from events e join hooks h on (e.tx, e.id) > (h.cursor_tx, h.cursor_id))"
	for ((i = 0; i < 600; i++)); do
		pend=$($q -c "$owed")
		[ "${pend:-1}" = 0 ] && break
		sleep 0.1
	done
	rows=$($q -c 'select count(*) from messages')
	echo "end $(cpu_ticks "$ACCEPT_POSTERN_PID") $(cpu_ticks "$ACCEPT_PG_PID") ${rows:-?} ${pend:-?}" >>"$ACCEPT_TICKS"
	$q -c 'truncate messages, deliveries, attempts, events, hook_deliveries' -c 'checkpoint' >/dev/null
	echo "start $(cpu_ticks "$ACCEPT_POSTERN_PID") $(cpu_ticks "$ACCEPT_PG_PID")" >>"$ACCEPT_TICKS"
}

# split_cpu FILE MSGS_PER_RUN SKIP: "bun_ms pg_ms rows_ok" per message over the intervals of FILE
# after the first SKIP (the warm-up); rows_ok = every interval stored MSGS_PER_RUN messages and
# left none unsettled.
split_cpu() {
	awk -v hz="$(getconf CLK_TCK)" -v n="$2" -v skip="$3" '
		$1 == "start" { k++; sb[k] = $2; sp[k] = $3 }
		$1 == "end" && k > 0 { eb[k] = $2; ep[k] = $3; rows[k] = $4; pend[k] = $5; last = k }
		END {
			ok = "yes"
			for (i = skip + 1; i <= last; i++) {
				b += eb[i] - sb[i]; p += ep[i] - sp[i]; m += n
				if (rows[i] != n || pend[i] != 0) ok = "NO(" rows[i] " rows, " pend[i] " unsettled)"
			}
			if (m == 0) { print "- - -"; exit }
			printf "%.3f %.3f %s\n", b * 1000 / hz / m, p * 1000 / hz / m, ok
		}' "$1"
}

# dns_start: bench/dns-senders.ts on P_DNS (synthetic sender and recipient domains, TTL 300);
# sets DNS_PID
DNS_PID=
dns_start() {
	local i
	"$BUN" "$ROOT/bench/dns-senders.ts" "$P_DNS" >"$WORK/dns.out" 2>&1 &
	DNS_PID=$!
	EXTRA_PIDS+=("$DNS_PID")
	for ((i = 0; i < 100; i++)); do grep -q listening "$WORK/dns.out" && return 0; sleep 0.1; done
	cat "$WORK/dns.out"
	die "dns-senders.ts did not start"
}

# take_rev: with REV= (a commit), Postern runs from that commit exported into the scratch dir
# (SRC); without, from the working tree. Sets POSTERN_VERSION for the report either way.
take_rev() {
	if [ -n "${REV:-}" ]; then
		git -C "$ROOT" rev-parse --verify -q "$REV^{commit}" >/dev/null || die "REV=$REV is not a commit"
		SRC=$WORK/postern-src
		mkdir -p "$SRC"
		git -C "$ROOT" archive "$REV" | tar -x -C "$SRC" || die "git archive $REV failed"
		ln -s "$ROOT/node_modules" "$SRC/node_modules"
		POSTERN_VERSION="$(git -C "$ROOT" rev-parse --short "$REV") (REV=$REV, exported)"
	else
		local changed
		changed=$(git -C "$ROOT" status --porcelain -- src 2>/dev/null | awk '{ print $2 }' | tr '\n' ' ')
		POSTERN_VERSION="$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null) working tree${changed:+ (uncommitted: ${changed% })}"
	fi
}

trap cleanup EXIT
trap 'exit 130' INT TERM
