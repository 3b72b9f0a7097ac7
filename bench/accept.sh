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
#   LIMITS=0                    1 = a send quota and a shape in force, never reached (postern_limits)
# Needs root (PostgreSQL and Postfix run as their users). Installs postfix (smtp-source) and
# postgresql-15 with apt-get when they are missing.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
: "${SERVERS:=postern postfix}"
: "${IDLE_CONNS:=1000}"
: "${POSTFIX_MEM:=0}"
: "${RAW_STORAGE:=}"
: "${PROFILE:=0}"
: "${PROFILE_OUT:=/tmp/postern-accept-profile}"
: "${BASE_PORT:=25200}"
: "${REV:=}"
: "${MODES:=reuse newconn}"

BENCH_NAME=accept
. "$HERE/postern-lib.sh" # checks, $WORK, ../shared/bench/lib.sh, then the helpers
export MSGS SESSIONS SIZE REPS WARMUP MODES NEWCONN_MSGS

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

# ------------------------------------------------------------------ Postfix (peers.sh's own functions)
# pf_start, pf_stop, pf_delete_queue, pf_version: the private instance of peers.sh's
# postfix-* rows, configured exactly as there.
take_postfix_functions pf_start pf_stop pf_delete_queue pf_version

# ------------------------------------------------------------------ measuring
# mem_probe PID PORT -> MEM_IDLE, MEM_CONN ("procs rss pss" KiB), MEM_PROBE (hold_conns report)
mem_probe() {
	local pid=$1 port=$2 ready=$WORK/hold.ready i
	sleep 2
	MEM_IDLE=$(mem_tree "$pid")
	rm -f "$ready"
	python3 "$SHARED_BENCH/hold_conns.py" "$port" "$IDLE_CONNS" "$ready" 180 &
	HOLD_PID=$!
	EXTRA_PIDS+=("$HOLD_PID") # stopped by cleanup too, should the run be cut short
	for ((i = 0; i < 1200; i++)); do
		[ -s "$ready" ] && break
		kill -0 "$HOLD_PID" 2>/dev/null || break
		sleep 0.1
	done
	sleep 2
	MEM_CONN=$(mem_tree "$pid")
	MEM_PROBE=$(tr -d '\n' <"$ready" 2>/dev/null)
	stop_extra "$HOLD_PID"
	HOLD_PID=
}

# ------------------------------------------------------------------ scenarios
declare -A RES # RES[server:mode] = load_result line
declare -A SPLIT
MEM_ROWS=()

# load_result LABEL MODE -> "median min max|cpu_ms_per_msg|worst_other%|failed_runs"
load_result() { echo "$(load_col "$1" "$2" accept)|$(load_col "$1" "$2" cpu)|$(worst_other "$1" "$2")|$(load_fails "$1" "$2")"; }

scenario_postern() {
	log "Postern: PostgreSQL 15 cluster on 127.0.0.1:$P_PG, Postern SMTP on 127.0.0.1:$P_SMTP"
	pg_start
	postern_cli domain add bench.test
	postern_cli route add '*@bench.test' mailbox
	postern_limits
	if [ "$RAW_STORAGE" = external ]; then
		pg_psql -c 'alter table messages alter column raw set storage external' || die "alter table failed"
	fi
	if [ "$IDLE_CONNS" -gt 0 ]; then
		PROFILE=0 postern_start mem
		mem_probe "$POSTERN_PID" "$P_SMTP"
		MEM_ROWS+=("Postern|$MEM_IDLE|$MEM_CONN|$MEM_PROBE")
		log "Postern memory: idle [procs rss pss KiB] $MEM_IDLE; with $IDLE_CONNS conns $MEM_CONN; $MEM_PROBE"
		PROFILE=0 postern_stop
	fi
	postern_start load
	export ACCEPT_PG_PORT=$P_PG ACCEPT_POSTERN_PID=$POSTERN_PID ACCEPT_PG_PID=$PG_PID
	export -f postern_between_reps cpu_ticks tree_pids
	log "Postern: load (SERVER_PIDS = Postern $POSTERN_PID + postmaster $PG_PID)"
	local mode n w=$WARMUP
	for mode in $MODES; do # one load.sh per mode, so each mode's CPU ticks have a file of their own
		export ACCEPT_TICKS=$WORK/ticks-$mode
		: >"$ACCEPT_TICKS"
		MODES=$mode WARMUP=$w SERVER_PIDS="$POSTERN_PID $PG_PID" BETWEEN_REPS=postern_between_reps \
			run_load "postern-$mode" "$P_SMTP"
		postern_between_reps # closes the last run's interval
		n=$MSGS
		[ "$mode" = newconn ] && n=$NEWCONN_MSGS
		RES[postern:$mode]=$(load_result "postern-$mode" "$mode")
		SPLIT[$mode]=$(split_cpu "$ACCEPT_TICKS" "$n" $([ "$w" -gt 0 ] && echo 1 || echo 0))
		w=0
	done
	POSTERN_RSS_AFTER=$(mem_tree "$POSTERN_PID")
	postern_stop
	pg_stop # nothing of Postern's runs on while Postfix is measured
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
				[ "$3" = yes ] || split="$split (row check: $3)"
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
take_rev
install_deps
need_smtp_tools
command -v python3 >/dev/null || die "python3 needed for hold_conns.py"
pick_port P_PG
pick_port P_SMTP
pick_port P_SUB
pick_port P_SUBS
pick_port P_HTTP
pick_port P_HTTPS
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
