#!/usr/bin/env bash
# relay.sh - Postern as a relay (accept, queue in PostgreSQL, deliver with its own scheduler to
# a downstream smtp-sink) next to a private Postfix doing the same (peers.sh's postfix-relay:
# relay_domains + transport_maps to an smtp-sink), both loaded by ../shared/bench/load.sh
# (Postfix's smtp-source: 20 sessions, 10 KiB messages, modes `reuse` and `newconn`, 1 000
# warm-up messages, median of 3 timed runs) with SINK_PORT= for the end-to-end delivered rate.
#
#   sudo bench/relay.sh | tee /tmp/relay.md
#   SERVERS=postern REPS=1 MSGS=5000 bench/relay.sh      # quick look at Postern only
#
# What it starts (all on 127.0.0.1, all stopped again by PID / pg_ctl stop / postfix stop on exit
# and on Ctrl-C; scratch data in a mktemp dir under /tmp, removed unless KEEP=1):
#   * a throwaway PostgreSQL 15 cluster (initdb/pg_ctl as the postgres user, default settings:
#     fsync=on, synchronous_commit=on), database `postern`
#   * `bun src/cli.ts domain add bench.test`, `route add '*@bench.test' relay:127.0.0.1:SINK`,
#     then `bun src/cli.ts serve` (POSTERN_LOG_LEVEL=warn, POSTERN_DNS_CHECKS=off,
#     POSTERN_DNS_SERVERS=127.0.0.1:9, POSTERN_MAX_CONNECTIONS[_PER_IP]=2000)
#   * smtp-sink on SINK (started and stopped by load.sh), counting deliveries
#   * a private Postfix built by peers.sh's own pf_start in `relay` mode, and its own smtp-sink
# Between timed runs: Postern's deliveries are checked to be all `delivered`, then the queue is
# truncated and checkpointed; Postfix's queue is waited empty (peers.sh's pf_wait_empty).
#
# Environment (defaults):
#   MSGS=20000 NEWCONN_MSGS=2000 SESSIONS=20 SIZE=10240 REPS=3 WARMUP=1000 MODES="reuse newconn"
#   SERVERS="postern postfix"   which servers to load, in this order
#   E2E_TIMEOUT=300             seconds to wait for the sink to count a run's messages
#   BASE_PORT=25400             first port tried; free ports are taken upwards from it
#   PROFILE=0                   1 = run serve under `bun --cpu-prof --cpu-prof-md`, profiles
#                               copied to $PROFILE_OUT (/tmp/postern-bench-profile)
#   KEEP=0                      1 = keep the scratch dir (logs, database) after the run
#   LIMITS=0                    1 = a send quota (POSTERN_SEND_LIMIT_PER_HOUR) and a shape for the
#                               sink's domain, both far above the load: what having them costs
#   HOOK=0                      1 = an event webhook subscribed to every event, POSTing to a local
#                               receiver that answers 200; each run then also waits for every
#                               copy to be sent, inside its CPU count
#   HOOK_RECEIVER=nginx         the receiver: nginx (one process, `return 200`: to HTTP what
#                               smtp-sink is to mail) or bun (bench/hook-receiver.ts, Bun.serve)
# Needs root (PostgreSQL and Postfix run as their users), postfix (smtp-source, smtp-sink) and
# postgresql-15 installed (bench/accept.sh or ../shared/bench/peers.sh install them).
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
: "${SERVERS:=postern postfix}"
: "${BASE_PORT:=25400}"
: "${MODES:=reuse newconn}"
: "${E2E_TIMEOUT:=300}"

BENCH_NAME=relay
. "$HERE/postern-lib.sh" # checks, $WORK, ../shared/bench/lib.sh, then the helpers
[ -x "$PGBIN/initdb" ] || { echo "error: no $PGBIN/initdb: apt-get install postgresql-15" >&2; exit 1; }
export MSGS SESSIONS SIZE REPS NEWCONN_MSGS E2E_TIMEOUT
need_smtp_tools

# pf_start, pf_stop, pf_queue_count, pf_wait_empty, pf_version: peers.sh's own Postfix functions
take_postfix_functions pf_start pf_stop pf_wait_empty pf_version

pick_port P_PG
pick_port P_SMTP
pick_port P_SUB
pick_port P_SUBS
pick_port P_HTTP
pick_port P_HTTPS
pick_port P_SINK
pick_port P_PF
pick_port P_PF_SINK
pick_port P_HOOK
postern_vars

declare -A RES SPLIT
FIRST_WARMUP=$WARMUP

# load_modes LABEL PORT SINK_PORT: load.sh once per mode (warm-up only before the first)
load_modes() {
	local label=$1 port=$2 sink=$3 mode w=$FIRST_WARMUP
	for mode in $MODES; do
		[ -n "${ACCEPT_TICKS_BASE:-}" ] && { export ACCEPT_TICKS=$ACCEPT_TICKS_BASE-$mode; : >"$ACCEPT_TICKS"; }
		MODES=$mode WARMUP=$w SINK_PORT=$sink run_load "$label-$mode" "$port"
		[ -n "${ACCEPT_TICKS_BASE:-}" ] && postern_between_reps
		RES[$label:$mode]="$(load_col "$label-$mode" "$mode" accept)|$(load_col "$label-$mode" "$mode" e2e)|$(load_col "$label-$mode" "$mode" cpu)|$(worst_other "$label-$mode" "$mode")|$(load_fails "$label-$mode")"
		if [ -n "${ACCEPT_TICKS_BASE:-}" ]; then
			local n=$MSGS
			[ "$mode" = newconn ] && n=$NEWCONN_MSGS
			SPLIT[$mode]=$(split_cpu "$ACCEPT_TICKS" "$n" $([ "$w" -gt 0 ] && echo 1 || echo 0))
		fi
		w=0
	done
}

# hook_receiver_start: the event webhooks' receiver on P_HOOK, its PID in HOOK_PID
hook_receiver_start() {
	if [ "${HOOK_RECEIVER:-nginx}" = bun ]; then
		(cd "$SRC" && exec "$BUN" "$HERE/hook-receiver.ts" "$P_HOOK") &
		HOOK_PID=$!
		return
	fi
	command -v nginx >/dev/null || { echo "error: HOOK_RECEIVER=nginx needs nginx: apt-get install nginx-light" >&2; exit 1; }
	mkdir -p "$WORK/nginx"
	cat >"$WORK/nginx/nginx.conf" <<-EOF
		worker_processes 1;
		master_process off;
		daemon off;
		pid $WORK/nginx/nginx.pid;
		error_log $WORK/nginx/error.log warn;
		events { worker_connections 4096; }
		http {
		  access_log off;
		  client_body_temp_path $WORK/nginx/body;
		  keepalive_requests 100000000;
		  server {
		    listen 127.0.0.1:$P_HOOK;
		    location = /count { stub_status; }
		    location / { return 200 "ok"; }
		  }
		}
	EOF
	nginx -c "$WORK/nginx/nginx.conf" -e "$WORK/nginx/error.log" &
	HOOK_PID=$!
	wait_port "$P_HOOK" 10 || die "nginx did not start on $P_HOOK"
}

scenario_postern() {
	log "Postern: PostgreSQL 15 on 127.0.0.1:$P_PG, SMTP on 127.0.0.1:$P_SMTP, route *@bench.test -> relay:127.0.0.1:$P_SINK"
	pg_start
	postern_cli domain add bench.test
	postern_cli route add '*@bench.test' "relay:127.0.0.1:$P_SINK"
	if [ "${HOOK:-0}" = 1 ]; then
		hook_receiver_start
		EXTRA_PIDS+=("$HOOK_PID")
		postern_cli hook add "http://127.0.0.1:$P_HOOK/"
		log "Postern: event webhook to 127.0.0.1:$P_HOOK (receiver ${HOOK_RECEIVER:-nginx}, PID $HOOK_PID)"
	fi
	export HOOK
	postern_limits
	postern_start relay
	export ACCEPT_TICKS_BASE=$WORK/ticks-postern ACCEPT_PG_PORT=$P_PG ACCEPT_POSTERN_PID=$POSTERN_PID ACCEPT_PG_PID=$PG_PID
	export -f postern_between_reps cpu_ticks tree_pids
	log "Postern: load (SERVER_PIDS = Postern $POSTERN_PID + postmaster $PG_PID)"
	SERVER_PIDS="$POSTERN_PID $PG_PID" BETWEEN_REPS=postern_between_reps load_modes postern "$P_SMTP" "$P_SINK"
	unset ACCEPT_TICKS_BASE
	POSTERN_RSS_AFTER=$(mem_tree "$POSTERN_PID")
	postern_stop
	[ -n "${HOOK_PID:-}" ] && {
		# nginx's stub_status: the third number of its third line counts every request, this one too
		HOOK_POSTS=$(curl -s "http://127.0.0.1:$P_HOOK/count" | awk 'NR == 1 && /^[0-9]+$/ { print; exit } NR == 3 { print $3 - 1 }')
		HOOK_CPU_MS=$(($(cpu_ticks "$HOOK_PID") * 1000 / $(getconf CLK_TCK)))
		stop_extra "$HOOK_PID"
	}
	pg_stop # nothing of Postern's runs on while Postfix is measured
	if [ -s "$WORK/postern-relay.log" ]; then
		log "Postern log (warnings and errors: $(wc -l <"$WORK/postern-relay.log") lines, last 5):"
		tail -5 "$WORK/postern-relay.log" | cut -c1-400 >&2
	fi
}

scenario_postfix() {
	log "Postfix (postfix-relay) on 127.0.0.1:$P_PF -> smtp-sink 127.0.0.1:$P_PF_SINK"
	pf_start relay "$P_PF" relay "$P_PF_SINK"
	export PF_BASE PF_CONF T_START
	export -f pf_wait_empty pf_queue_count log
	SERVER_PIDS=$PF_PID BETWEEN_REPS=pf_wait_empty load_modes postfix "$P_PF" "$P_PF_SINK"
	pf_stop
}

report() {
	local mode server r acc e2e cpu other fails row pe pa
	echo "## relay.sh $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs, $(uname -r)"
	echo
	echo "Postern $POSTERN_VERSION on Bun $("$BUN" --version), PostgreSQL ${PG_VERSION:-?} (default settings), route \`*@bench.test\` -> \`relay:127.0.0.1:SINK\`$([[ " $SERVERS " == *" postfix "* ]] && echo "; Postfix $(pf_version) (peers.sh postfix-relay: transport_maps to smtp:[127.0.0.1]:SINK)"); smtp-sink counts deliveries."
	echo "smtp-source: $SESSIONS sessions, ${SIZE}-byte body, 1 rcpt, HELO; reuse = -d, $MSGS msgs/run; newconn = one connection per message, $NEWCONN_MSGS msgs/run; $FIRST_WARMUP warm-up msgs; $REPS timed runs."
	echo "accepted = msgs / time until smtp-source got every 250; delivered = msgs / time until the sink counted them all (end-to-end); median [min-max]. CPU = server user+sys ms per message over the timed runs up to the end of delivery (Postern: Bun process + PostgreSQL postmaster tree; Postfix: master tree incl. smtpd, cleanup, qmgr, smtp); other% = worst run's CPU share (2 cores = 100) taken outside the benchmark."
	echo
	echo "| mode | server | accepted msgs/s | delivered msgs/s | CPU ms/msg | of which Bun / PostgreSQL | other% | Postern/Postfix delivered | Postern/Postfix accepted |"
	echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"
	for mode in $MODES; do
		for server in postern postfix; do
			r=${RES[$server:$mode]:-}
			[ -n "$r" ] || continue
			IFS='|' read -r acc e2e cpu other fails <<<"$r"
			row="| $mode | $([ "$server" = postern ] && echo Postern || echo Postfix) | $(fmt_stats "$acc")$([ "$fails" != 0 ] && echo " ($fails FAILED)") | $(fmt_stats "$e2e") | $cpu |"
			if [ "$server" = postern ]; then
				set -- ${SPLIT[$mode]:-- - -}
				row="$row $1 / $2$([ "$3" = yes ] || echo " (row check: $3)") | $other |"
				pe=${RES[postfix:$mode]:-}
				if [ -n "$pe" ]; then
					IFS='|' read -r pa pe _ _ _ <<<"$pe"
					row="$row $(ratio "${e2e%% *}" "${pe%% *}") | $(ratio "${acc%% *}" "${pa%% *}") |"
				else
					row="$row - | - |"
				fi
			else
				row="$row - | $other | | |"
			fi
			echo "$row"
		done
	done
	[ -n "${HOOK_POSTS:-}" ] && { echo; echo "HOOK=1: an event webhook on every event; the receiver got $HOOK_POSTS POSTs in all (warm-up included) and used $HOOK_CPU_MS ms of CPU for them (not in Postern's columns; it shares the cores)."; }
	if [ -n "${POSTERN_RSS_AFTER:-}" ]; then
		set -- $POSTERN_RSS_AFTER
		echo
		echo "Postern RSS after all load runs: $(kib_to_mib "$2") MiB."
	fi
}

take_rev
log "machine: $(nproc) cpus, load $(cut -d' ' -f1-3 /proc/loadavg); servers: $SERVERS; MSGS=$MSGS NEWCONN_MSGS=$NEWCONN_MSGS SESSIONS=$SESSIONS SIZE=$SIZE REPS=$REPS WARMUP=$WARMUP; scratch $WORK"
for s in $SERVERS; do
	case $s in postern | postfix) ;; *) die "unknown server $s (postern, postfix)" ;; esac
done
for s in $SERVERS; do "scenario_$s"; done
report
log "done in $(($(date +%s) - T_START))s"
