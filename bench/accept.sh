#!/usr/bin/env bash
# accept.sh - Postern's durable accept rate next to a private Postfix, measured the same way
# (../shared/bench/load.sh: Postfix's smtp-source, 20 sessions, 10 KiB messages, modes
# `reuse` and `newconn`, 1 000 warm-up messages, median of 3 timed runs), plus Postern's RSS
# idle and with 1 000 idle connections (../shared/bench/hold_conns.py).
#
#   sudo bench/accept.sh                          # the whole thing, ~2-3 min on 2 cores
#   SERVERS=postern REPS=1 MSGS=5000 bench/accept.sh      # quick look at Postern only
#   PROFILE=1 SERVERS=postern bench/accept.sh     # + Bun CPU profile of the load runs
#
# What it starts (all on 127.0.0.1, all stopped again on exit and on Ctrl-C, scratch data in
# a mktemp dir under /tmp that is removed unless KEEP=1):
#   * a throwaway PostgreSQL 15 cluster (initdb/pg_ctl as the postgres user, DEFAULT settings:
#     fsync=on, synchronous_commit=on), database `postern`
#   * `bun src/cli.ts domain add bench.test` and `route add '*@bench.test' mailbox`, then
#     `bun src/cli.ts serve` (POSTERN_LOG_LEVEL=warn, POSTERN_MAX_CONNECTIONS[_PER_IP]=2000,
#     POSTERN_DNS_CHECKS=off because smtp-source's sender domain client.test does not resolve):
#     every message is committed to PostgreSQL (message row + a `delivered` mailbox delivery
#     row) before its 250
#   * a private Postfix instance built by ../shared/bench/peers.sh's own pf_start (scenario
#     postfix-hold: the queue file is written and fsynced into the hold queue before the 250)
# Between timed runs the stored mail is removed (TRUNCATE + CHECKPOINT for Postern,
# `postsuper -d ALL` for Postfix), as peers.sh does for its *-pg and postfix-hold rows.
#
# Environment (defaults):
#   MSGS=20000 NEWCONN_MSGS=2000 SESSIONS=20 SIZE=10240 REPS=3 WARMUP=1000 MODES="reuse newconn"
#   SERVERS="postern postfix"   which servers to load, in this order
#   IDLE_CONNS=1000             connections held open for the memory probe (0 = no probe)
#   POSTFIX_MEM=0               1 = also probe Postfix's memory (1 000 smtpd processes)
#   RAW_STORAGE=                `external` = store messages.raw uncompressed, as peers.sh's
#                               *-pg rows do (smtp-source bodies are rows of X that pglz
#                               shrinks ~100x); empty = Postern's schema untouched
#   PROFILE=0                   1 = run the loaded Postern under `bun --cpu-prof --cpu-prof-md`
#                               and copy the profiles to $PROFILE_OUT (/tmp/postern-accept-profile)
#   BASE_PORT=25200             first port tried; free ports are taken upwards from it
#   REV=                        empty = run the working tree as it is; a commit (e.g. HEAD) =
#                               run that commit, exported with `git archive` into the scratch
#                               dir (node_modules linked from the checkout)
#   KEEP=0                      1 = keep the scratch dir (logs, database) after the run
# Needs root (PostgreSQL and Postfix run as their users). Installs postfix (smtp-source) and
# postgresql-15 with apt-get when they are missing.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
: "${SHARED_BENCH:=$ROOT/../shared/bench}"
: "${BUN:=$ROOT/node_modules/.bin/bun}"
: "${PGBIN:=/usr/lib/postgresql/15/bin}"
: "${SERVERS:=postern postfix}"
: "${IDLE_CONNS:=1000}"
: "${POSTFIX_MEM:=0}"
: "${RAW_STORAGE:=}"
: "${PROFILE:=0}"
: "${PROFILE_OUT:=/tmp/postern-accept-profile}"
: "${BASE_PORT:=25200}"
: "${KEEP:=0}"
: "${REV:=}"
: "${MODES:=reuse newconn}"
: "${NEWCONN_MSGS:=2000}"

[ -f "$SHARED_BENCH/load.sh" ] || { echo "error: no load.sh in $SHARED_BENCH (set SHARED_BENCH=)" >&2; exit 1; }
SHARED_BENCH=$(cd "$SHARED_BENCH" && pwd)
[ "$(id -u)" = 0 ] || { echo "error: run as root (PostgreSQL and Postfix run as their own users)" >&2; exit 1; }
[ -x "$BUN" ] || { echo "error: $BUN missing: run npm install in $ROOT" >&2; exit 1; }

WORK=$(mktemp -d /tmp/postern-accept.XXXXXX)
chmod 755 "$WORK" # the postgres and postfix users must reach their folders inside
export BENCH_TMP=$WORK/smtpbench
mkdir -p "$BENCH_TMP"
. "$SHARED_BENCH/lib.sh" # MSGS SESSIONS SIZE REPS WARMUP defaults, timing, tree CPU/RSS helpers
export MSGS SESSIONS SIZE REPS WARMUP MODES NEWCONN_MSGS
T_START=$(date +%s)
log() { echo "[$(($(date +%s) - T_START))s] $*" >&2; }

# ------------------------------------------------------------------ bookkeeping, cleanup
PF_CONFS=() # Postfix instances started (pf_start from peers.sh appends to it)
PG_DATA=
POSTERN_PID=
HOLD_PID=
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

kill_tree() { # PID: TERM to it and every descendant (load.sh and its smtp-source)
	local pids
	pids=$(tree_pids "$1")
	# shellcheck disable=SC2086
	[ -n "$pids" ] && kill $pids 2>/dev/null
	wait "$1" 2>/dev/null
}

cleanup() {
	local c
	trap - INT TERM
	[ -n "$LOAD_PID" ] && kill_tree "$LOAD_PID"
	[ -n "$TAIL_PID" ] && stop_pid "$TAIL_PID"
	[ -n "$HOLD_PID" ] && stop_pid "$HOLD_PID"
	[ -n "$POSTERN_PID" ] && stop_pid "$POSTERN_PID"
	for c in "${PF_CONFS[@]}"; do postfix -c "$c" stop >/dev/null 2>&1; done
	[ -n "$PG_DATA" ] && su postgres -s /bin/sh -c "$PGBIN/pg_ctl -D '$PG_DATA' -m fast -w stop" >/dev/null 2>&1
	if [ "$KEEP" = 1 ]; then log "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ------------------------------------------------------------------ install
install_deps() {
	local need=() pf_was_up=0 pg_was_up=0
	command -v smtp-source >/dev/null && command -v smtp-sink >/dev/null || need+=(postfix)
	[ -x "$PGBIN/initdb" ] && [ -x "$PGBIN/pg_ctl" ] && command -v psql >/dev/null ||
		need+=(postgresql-15 postgresql-client-15)
	command -v python3 >/dev/null || need+=(python3)
	[ ${#need[@]} -eq 0 ] && return 0
	port_listening 25 && pf_was_up=1
	port_listening 5432 && pg_was_up=1
	log "apt-get update; apt-get install ${need[*]}"
	echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
	apt-get -o DPkg::Lock::Timeout=600 update >/dev/null || die "apt-get update failed"
	DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y "${need[@]}" >/dev/null ||
		die "apt-get install ${need[*]} failed"
	# stop the system daemons the install itself started (not ones that ran before)
	if [ $pf_was_up = 0 ] && port_listening 25; then
		postfix stop >/dev/null 2>&1
		systemctl disable postfix >/dev/null 2>&1 || true
	fi
	if [ $pg_was_up = 0 ] && port_listening 5432 && command -v pg_ctlcluster >/dev/null; then
		pg_ctlcluster 15 main stop >/dev/null 2>&1
		systemctl disable postgresql >/dev/null 2>&1 || true
	fi
}

# ------------------------------------------------------------------ ports
NEXT_PORT=$BASE_PORT
pick_port() { # VAR: the next port from NEXT_PORT up with no socket on it in any state
	local p=$NEXT_PORT
	while ss -Htan "( sport = :$p )" 2>/dev/null | grep -q .; do p=$((p + 1)); done
	NEXT_PORT=$((p + 1))
	printf -v "$1" '%s' "$p"
}

# ------------------------------------------------------------------ PostgreSQL
pg_psql() { psql -h 127.0.0.1 -p "$P_PG" -U postgres -d "${PGDB:-postern}" -qAtX -v ON_ERROR_STOP=1 "$@"; }

pg_start() {
	local d=$WORK/pg
	mkdir -p "$d"
	chown postgres:postgres "$d"
	su postgres -s /bin/sh -c "$PGBIN/initdb -D '$d/data' -U postgres --auth=trust -E UTF8" >"$d/initdb.log" 2>&1 ||
		{ tail "$d/initdb.log"; die "initdb failed"; }
	# default settings: fsync=on, synchronous_commit=on, shared_buffers=128MB, max_wal_size=1GB
	su postgres -s /bin/sh -c "$PGBIN/pg_ctl -D '$d/data' -l '$d/server.log' -w -o '-p $P_PG -c listen_addresses=127.0.0.1 -k $d' start" >/dev/null ||
		{ tail "$d/server.log"; die "pg_ctl start failed"; }
	PG_DATA=$d/data
	PG_PID=$(head -1 "$PG_DATA/postmaster.pid")
	PGDB=postgres pg_psql -c 'create database postern' || die "create database failed"
	PG_VERSION=$(PGDB=postgres pg_psql -c 'show server_version' | cut -d' ' -f1)
}

pg_stop() {
	su postgres -s /bin/sh -c "$PGBIN/pg_ctl -D '$PG_DATA' -m fast -w stop" >/dev/null 2>&1
	PG_DATA=
}

# ------------------------------------------------------------------ Postern
postern_vars() { # POSTERN_VARS: Postern's environment for the bench
	POSTERN_VARS=(DATABASE_URL="postgres://postgres@127.0.0.1:$P_PG/postern" POSTERN_DATA_DIR="$WORK/postern"
		POSTERN_HOSTNAME=bench-postern.test POSTERN_LISTEN=127.0.0.1 POSTERN_LOG_LEVEL=warn
		POSTERN_SMTP_PORT="$P_SMTP" POSTERN_SUBMISSION_PORT="$P_SUB" POSTERN_SUBMISSIONS_PORT="$P_SUBS"
		POSTERN_HTTP_PORT="$P_HTTP" POSTERN_MAX_CONNECTIONS=2000 POSTERN_MAX_CONNECTIONS_PER_IP=2000
		POSTERN_DNS_CHECKS=off POSTERN_DNS_SERVERS=127.0.0.1:9) # no sender-domain lookups, no DNS traffic
}

postern_setup() {
	(cd "$SRC" && env "${POSTERN_VARS[@]}" "$BUN" src/cli.ts domain add bench.test >"$WORK/domain-add.log" 2>&1) ||
		{ cat "$WORK/domain-add.log"; die "postern domain add failed"; }
	(cd "$SRC" && env "${POSTERN_VARS[@]}" "$BUN" src/cli.ts route add '*@bench.test' mailbox >"$WORK/route-add.log" 2>&1) ||
		{ cat "$WORK/route-add.log"; die "postern route add failed"; }
	if [ "$RAW_STORAGE" = external ]; then
		pg_psql -c 'alter table messages alter column raw set storage external' || die "alter table failed"
	fi
}

# postern_start NAME [BUN_FLAGS...]: `serve` in the background, its log in $WORK/postern-NAME.log
postern_start() {
	local name=$1
	shift
	port_listening "$P_SMTP" && die "port $P_SMTP is already in use"
	# exec: $! is the Bun process itself
	(cd "$SRC" && exec env "${POSTERN_VARS[@]}" "$BUN" "$@" src/cli.ts serve >"$WORK/postern-$name.log" 2>&1) &
	POSTERN_PID=$!
	wait_port "$P_HTTP" 60 || { cat "$WORK/postern-$name.log"; die "postern did not start"; }
	port_listening "$P_SMTP" || { cat "$WORK/postern-$name.log"; die "postern does not listen on $P_SMTP"; }
}

postern_stop() {
	stop_pid "$POSTERN_PID"
	POSTERN_PID=
}

# ------------------------------------------------------------------ Postfix (peers.sh's own functions)
# pf_start, pf_stop, pf_delete_queue, pf_version: the private instance of peers.sh's
# postfix-* rows, configured exactly as there.
eval "$(sed -n '/^# -* Postfix$/,/^# -* Haraka$/p' "$SHARED_BENCH/peers.sh")"
declare -F pf_start pf_stop pf_delete_queue pf_version >/dev/null ||
	die "could not take pf_start/pf_stop/pf_delete_queue/pf_version from $SHARED_BENCH/peers.sh"

# ------------------------------------------------------------------ measuring
# mem_probe PID PORT -> MEM_IDLE, MEM_CONN ("procs rss pss" KiB), MEM_PROBE (hold_conns report)
mem_probe() {
	local pid=$1 port=$2 ready=$WORK/hold.ready i
	sleep 2
	MEM_IDLE=$(mem_tree "$pid")
	rm -f "$ready"
	python3 "$SHARED_BENCH/hold_conns.py" "$port" "$IDLE_CONNS" "$ready" 180 &
	HOLD_PID=$!
	for ((i = 0; i < 1200; i++)); do
		[ -s "$ready" ] && break
		kill -0 "$HOLD_PID" 2>/dev/null || break
		sleep 0.1
	done
	sleep 2
	MEM_CONN=$(mem_tree "$pid")
	MEM_PROBE=$(tr -d '\n' <"$ready" 2>/dev/null)
	stop_pid "$HOLD_PID"
	HOLD_PID=
}

# run_load LABEL PORT: load.sh in the background (so Ctrl-C is handled at once), its per-run
# lines shown as they come; output in $WORK/load-LABEL.{out,err}, exit status in LOAD_RC.
# SERVER_PIDS and BETWEEN_REPS are passed through the environment.
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

# load_result LABEL MODE -> "median min max|cpu_ms_per_msg|worst_other%|failed_runs"
load_result() {
	local out=$WORK/load-$1.out err=$WORK/load-$1.err acc cpu other fails
	acc=$(awk -v m="$2" '$1 == m { if ($3 ~ /^\[/) { v = $2 " " $3; gsub(/[][]/, "", v); sub(/-/, " ", v); print v } else print "NA NA NA" }' "$out")
	cpu=$(awk -v m="$2" '$1 == m { print $NF }' "$out")
	other=$(grep -E " $2 run [0-9]+:" "$err" | grep -o 'other CPU [0-9]*' | awk '{ print $3 }' | sort -n | tail -1)
	fails=$(grep -cE " $2 (run [0-9]+|warm-up) FAILED" "$err")
	echo "${acc:-NA NA NA}|${cpu:--}|${other:--}|$fails"
}

# Called by load.sh (run_reps) before the warm-up and before every timed run: checks that the
# previous run's messages are all in PostgreSQL, empties the queue and checkpoints, and notes
# the CPU ticks of Postern and of the PostgreSQL tree on each side of that, so the CPU per
# message can be split between the two (the ticks are taken outside the run, as load.sh does).
postern_between_reps() {
	local rows
	rows=$(psql -h 127.0.0.1 -p "$ACCEPT_PG_PORT" -U postgres -d postern -qAtX -c 'select count(*) from messages')
	echo "end $(cpu_ticks "$ACCEPT_POSTERN_PID") $(cpu_ticks "$ACCEPT_PG_PID") ${rows:-?}" >>"$ACCEPT_TICKS"
	psql -h 127.0.0.1 -p "$ACCEPT_PG_PORT" -U postgres -d postern -qAtX \
		-c 'truncate messages, deliveries, attempts' -c 'checkpoint' >/dev/null
	echo "start $(cpu_ticks "$ACCEPT_POSTERN_PID") $(cpu_ticks "$ACCEPT_PG_PID")" >>"$ACCEPT_TICKS"
}

# postern_split MODE -> "bun_ms_per_msg pg_ms_per_msg rows_ok" for MODE's timed runs, from the
# tick file written by postern_between_reps (intervals in load.sh's order: warm-up, runs).
postern_split() {
	local want=$1 hz mode n i intervals=() counts=() first=1
	hz=$(getconf CLK_TCK)
	for mode in $MODES; do
		n=$MSGS
		[ "$mode" = newconn ] && n=$NEWCONN_MSGS
		if [ $first = 1 ] && [ "$WARMUP" -gt 0 ]; then intervals+=("warmup"); counts+=("$WARMUP"); fi
		first=0
		for ((i = 0; i < REPS; i++)); do intervals+=("$mode"); counts+=("$n"); done
	done
	awk -v want="$want" -v hz="$hz" -v labels="${intervals[*]}" -v counts="${counts[*]}" '
		BEGIN { nl = split(labels, L, " "); split(counts, C, " ") }
		$1 == "start" { k++; sb[k] = $2; sp[k] = $3 }
		$1 == "end" && k > 0 { eb[k] = $2; ep[k] = $3; rows[k] = $4 }
		END {
			ok = 1
			for (i = 1; i <= nl && i <= k; i++) {
				if (L[i] != want) continue
				b += eb[i] - sb[i]; p += ep[i] - sp[i]; n += C[i]
				if (rows[i] != C[i]) ok = 0
			}
			if (n == 0) { print "- - -"; exit }
			printf "%.3f %.3f %s\n", b * 1000 / hz / n, p * 1000 / hz / n, ok ? "yes" : "NO"
		}' "$ACCEPT_TICKS"
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a + 0 > 0 && b + 0 > 0) printf "%.2f", a / b; else print "-" }'; }

# ------------------------------------------------------------------ scenarios
declare -A RES # RES[server:mode] = load_result line
declare -A SPLIT
MEM_ROWS=()

scenario_postern() {
	log "Postern: PostgreSQL 15 cluster on 127.0.0.1:$P_PG, Postern SMTP on 127.0.0.1:$P_SMTP"
	pg_start
	postern_setup
	if [ "$IDLE_CONNS" -gt 0 ]; then
		postern_start mem
		mem_probe "$POSTERN_PID" "$P_SMTP"
		MEM_ROWS+=("Postern|$MEM_IDLE|$MEM_CONN|$MEM_PROBE")
		log "Postern memory: idle [procs rss pss KiB] $MEM_IDLE; with $IDLE_CONNS conns $MEM_CONN; $MEM_PROBE"
		postern_stop
	fi
	local flags=()
	if [ "$PROFILE" = 1 ]; then
		mkdir -p "$WORK/prof"
		flags=(--cpu-prof --cpu-prof-md --cpu-prof-dir="$WORK/prof")
	fi
	postern_start load "${flags[@]}"
	export ACCEPT_TICKS=$WORK/postern-ticks.txt ACCEPT_PG_PORT=$P_PG ACCEPT_POSTERN_PID=$POSTERN_PID ACCEPT_PG_PID=$PG_PID
	export -f postern_between_reps
	: >"$ACCEPT_TICKS"
	log "Postern: load (SERVER_PIDS = Postern $POSTERN_PID + postmaster $PG_PID)"
	SERVER_PIDS="$POSTERN_PID $PG_PID" BETWEEN_REPS=postern_between_reps run_load postern "$P_SMTP"
	local rows
	rows=$(pg_psql -c 'select count(*) from messages')
	echo "end $(cpu_ticks "$POSTERN_PID") $(cpu_ticks "$PG_PID") $rows" >>"$ACCEPT_TICKS"
	POSTERN_RSS_AFTER=$(mem_tree "$POSTERN_PID")
	local mode
	for mode in $MODES; do
		RES[postern:$mode]=$(load_result postern "$mode")
		SPLIT[$mode]=$(postern_split "$mode")
	done
	postern_stop
	pg_stop # nothing of Postern's runs on while Postfix is measured
	if [ "$PROFILE" = 1 ]; then
		rm -rf "$PROFILE_OUT"
		mkdir -p "$PROFILE_OUT"
		cp "$WORK"/prof/* "$PROFILE_OUT"/ 2>/dev/null
		log "Bun CPU profile: $(ls "$PROFILE_OUT" | tr '\n' ' ')in $PROFILE_OUT"
	fi
	if [ -s "$WORK/postern-load.log" ]; then
		log "Postern log (warnings and errors, last 5 lines):"
		tail -5 "$WORK/postern-load.log" >&2
	fi
}

scenario_postfix() {
	pick_port P_PF
	if [ "$POSTFIX_MEM" = 1 ] && [ "$IDLE_CONNS" -gt 0 ]; then
		pf_start hold "$P_PF" hold
		mem_probe "$PF_PID" "$P_PF"
		MEM_ROWS+=("Postfix|$MEM_IDLE|$MEM_CONN|$MEM_PROBE")
		log "Postfix memory: idle [procs rss pss KiB] $MEM_IDLE; with $IDLE_CONNS conns $MEM_CONN; $MEM_PROBE"
		pf_stop
	fi
	log "Postfix (postfix-hold) on 127.0.0.1:$P_PF"
	pf_start hold "$P_PF" hold
	export PF_CONF
	export -f pf_delete_queue
	SERVER_PIDS=$PF_PID BETWEEN_REPS=pf_delete_queue run_load postfix "$P_PF"
	local mode
	for mode in $MODES; do RES[postfix:$mode]=$(load_result postfix "$mode"); done
	pf_stop
}

# ------------------------------------------------------------------ report
report() {
	local mode server r acc cpu other fails split pfacc pfcpu row
	echo "## accept.sh $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs, $(uname -r)"
	echo
	echo "Postern $POSTERN_VERSION on Bun $("$BUN" --version), PostgreSQL ${PG_VERSION:-?} (default settings${RAW_STORAGE:+, messages.raw STORAGE $RAW_STORAGE})$([[ " $SERVERS " == *" postfix "* ]] && echo "; Postfix $(postconf -dh mail_version 2>/dev/null) (postfix-hold)")."
	echo "smtp-source: $SESSIONS sessions, ${SIZE}-byte body, 1 rcpt, HELO; reuse = -d, $MSGS msgs/run; newconn = one connection per message, $NEWCONN_MSGS msgs/run; $WARMUP warm-up msgs; $REPS timed runs."
	echo "msgs/s = median [min-max]; CPU = server user+sys ms per message over the timed runs (Postern: Bun process + PostgreSQL postmaster tree; Postfix: master tree); other% = worst run's CPU share (2 cores = 100) taken outside the benchmark."
	echo
	echo "| mode | server | msgs/s | CPU ms/msg | of which Bun / PostgreSQL | other% | Postern/Postfix msgs/s | Postern/Postfix CPU |"
	echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
	for mode in $MODES; do
		pfacc=
		pfcpu=
		for server in postern postfix; do
			r=${RES[$server:$mode]:-}
			[ -n "$r" ] || continue
			IFS='|' read -r acc cpu other fails <<<"$r"
			split=
			if [ "$server" = postern ]; then
				set -- ${SPLIT[$mode]:-- - -}
				split="$1 / $2"
				[ "$3" = yes ] || split="$split (row count check: $3)"
			fi
			row="| $mode | $([ "$server" = postern ] && echo Postern || echo Postfix) | $(fmt_stats "$acc")$([ "$fails" != 0 ] && echo " ($fails runs FAILED)") | $cpu | ${split:--} | $other |"
			if [ "$server" = postern ]; then
				local pr=${RES[postfix:$mode]:-}
				if [ -n "$pr" ]; then
					IFS='|' read -r pfacc pfcpu _ _ <<<"$pr"
					set -- $acc
					local a=$1
					set -- $pfacc
					row="$row $(ratio "$a" "$1") | $(ratio "$cpu" "$pfcpu") |"
				else
					row="$row - | - |"
				fi
			else
				row="$row | |"
			fi
			echo "$row"
		done
	done
	if [ ${#MEM_ROWS[@]} -gt 0 ]; then
		echo
		echo "Memory (process tree after 2 s idle, then with $IDLE_CONNS idle connections greeted and held; MiB, RSS (PSS)):"
		echo
		echo "| server | idle | with $IDLE_CONNS connections | per connection | probe |"
		echo "| --- | --- | --- | --- | --- |"
		for row in "${MEM_ROWS[@]}"; do
			local name idle conn probe
			IFS='|' read -r name idle conn probe <<<"$row"
			set -- $idle
			local i="$1 proc $(kib_to_mib "$2") ($(kib_to_mib "$3"))" irss=$2 ipss=$3
			set -- $conn
			local c="$1 procs $(kib_to_mib "$2") ($(kib_to_mib "$3"))"
			echo "| $name | $i | $c | $(awk -v a="$irss" -v b="$2" -v c="$ipss" -v d="$3" -v n="$IDLE_CONNS" 'BEGIN { printf "%.1f KiB RSS (%.1f PSS)", (b - a) / n, (d - c) / n }') | $probe |"
		done
	fi
	if [ -n "${POSTERN_RSS_AFTER:-}" ]; then
		set -- $POSTERN_RSS_AFTER
		echo
		echo "Postern RSS after all load runs: $(kib_to_mib "$2") MiB$([ "$PROFILE" = 1 ] && echo " (with the CPU profiler on)")."
	fi
}

# ------------------------------------------------------------------ main
if [ -n "$REV" ]; then
	git -C "$ROOT" rev-parse --verify -q "$REV^{commit}" >/dev/null || die "REV=$REV is not a commit"
	SRC=$WORK/postern-src
	mkdir -p "$SRC"
	git -C "$ROOT" archive "$REV" | tar -x -C "$SRC" || die "git archive $REV failed"
	ln -s "$ROOT/node_modules" "$SRC/node_modules"
	POSTERN_VERSION="$(git -C "$ROOT" rev-parse --short "$REV") (REV=$REV, exported)"
else
	SRC=$ROOT
	changed=$(git -C "$ROOT" status --porcelain -- src 2>/dev/null | awk '{ print $2 }' | tr '\n' ' ')
	POSTERN_VERSION="$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null) working tree${changed:+ (uncommitted: ${changed% })}"
fi
install_deps
need_smtp_tools
command -v python3 >/dev/null || die "python3 needed for hold_conns.py"
pick_port P_PG
pick_port P_SMTP
pick_port P_SUB
pick_port P_SUBS
pick_port P_HTTP
postern_vars
log "machine: $(nproc) cpus, load $(cut -d' ' -f1-3 /proc/loadavg); servers: $SERVERS; MSGS=$MSGS NEWCONN_MSGS=$NEWCONN_MSGS SESSIONS=$SESSIONS SIZE=$SIZE REPS=$REPS WARMUP=$WARMUP; scratch $WORK"
for s in $SERVERS; do
	case $s in
	postern | postfix) ;;
	*) die "unknown server $s (postern, postfix)" ;;
	esac
done
for s in $SERVERS; do "scenario_$s"; done
report
log "done in $(($(date +%s) - T_START))s"
