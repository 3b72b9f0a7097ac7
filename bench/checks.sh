#!/usr/bin/env bash
# checks.sh - what Postern's inbound DNS checks cost: the accept rate on the MX port with
# POSTERN_DNS_CHECKS=off and then =on (sender domain lookup, SPF, DKIM, DMARC, ARC against a
# local dnsmasq), same run, same PostgreSQL, route `*@bench.test` -> mailbox. Load from
# ../shared/bench/load.sh (Postfix's smtp-source: 20 sessions, 10 KiB messages, 1 000 warm-up
# messages per configuration, which also warm the resolver's cache; median of 3 timed runs).
#
#   sudo bench/checks.sh | tee /tmp/checks.md
#   MODES="reuse newconn" bench/checks.sh     # also one connection per message
#   ORDER="on off" bench/checks.sh            # checks on first
#
# What it starts (all on 127.0.0.1, stopped again by PID / pg_ctl stop on exit and on Ctrl-C;
# scratch data in a mktemp dir under /tmp, removed unless KEEP=1):
#   * a throwaway PostgreSQL 15 cluster (initdb/pg_ctl as the postgres user, default settings:
#     fsync=on, synchronous_commit=on), database `postern`, `bun src/cli.ts domain add
#     bench.test` and `route add '*@bench.test' mailbox`
#   * dnsmasq on a free 127.0.0.1 UDP/TCP port, no upstream, authoritative-ish for the test
#     names only: client.test A 127.0.0.1 and MX 10 mx.client.test (A 127.0.0.1), TXT
#     "v=spf1 ip4:127.0.0.1 -all", _dmarc.client.test TXT "v=DMARC1; p=$DMARC_P",
#     1.0.0.127.in-addr.arpa PTR client.test; dnsmasq is authoritative for `test` (auth-zone,
#     TTL 600, SOA minimum 300), so a missing name (_dmarc.test, AAAA) is NXDOMAIN/NODATA with
#     an SOA that a resolver may cache, as on the Internet; no upstream, nothing else answered.
#     Every query is logged, so the report can say how many look-ups the cache let through
#   * `bun src/cli.ts serve` twice, one after the other: POSTERN_DNS_CHECKS=off
#     (POSTERN_DNS_SERVERS=127.0.0.1:9) and =on (POSTERN_DNS_SERVERS=127.0.0.1:DNSPORT);
#     both POSTERN_LOG_LEVEL=warn, POSTERN_MAX_CONNECTIONS[_PER_IP]=2000
# Between timed runs the queue is truncated and checkpointed and the stored count checked.
#
# Environment (defaults):
#   MSGS=20000 NEWCONN_MSGS=2000 SESSIONS=20 SIZE=10240 REPS=3 WARMUP=1000 MODES=reuse
#   ORDER="off on"   configurations, in this order
#   DMARC_P=reject   policy published in _dmarc.client.test (SPF-aligned mail passes anyway)
#   BASE_PORT=25600  first port tried; free ports are taken upwards from it
#   PROFILE=0        1 = run serve under `bun --cpu-prof --cpu-prof-md`, profiles copied to
#                    $PROFILE_OUT (/tmp/postern-bench-profile)
#   KEEP=0           1 = keep the scratch dir (logs, database, dnsmasq query log)
# Needs root, postfix (smtp-source), postgresql-15 and dnsmasq-base installed.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
: "${BASE_PORT:=25600}"
: "${MODES:=reuse}"
: "${ORDER:=off on}"
: "${DMARC_P:=reject}"

BENCH_NAME=checks
. "$HERE/postern-lib.sh" # checks, $WORK, ../shared/bench/lib.sh, then the helpers
[ -x "$PGBIN/initdb" ] || { echo "error: no $PGBIN/initdb: apt-get install postgresql-15" >&2; exit 1; }
command -v dnsmasq >/dev/null || { echo "error: dnsmasq missing: apt-get install dnsmasq-base" >&2; exit 1; }
export MSGS SESSIONS SIZE REPS NEWCONN_MSGS
need_smtp_tools

pick_port P_PG
pick_port P_SMTP
pick_port P_SUB
pick_port P_SUBS
pick_port P_HTTP
pick_port P_HTTPS
pick_port P_DNS

DNS_PID=
dns_start() {
	local qlog=$WORK/dnsmasq-queries.log
	: >"$qlog"
	chmod 666 "$qlog"
	dnsmasq --keep-in-foreground --conf-file=/dev/null --pid-file= --no-resolv --no-hosts --no-poll \
		--listen-address=127.0.0.1 --bind-interfaces --port="$P_DNS" --cache-size=1000 \
		--auth-server=ns.test,127.0.0.1 --auth-zone=test --auth-soa=1,hostmaster.test,1200,120,604800,300 \
		--auth-ttl=600 --local-ttl=600 \
		--host-record=client.test,127.0.0.1 --host-record=mx.client.test,127.0.0.1 \
		--mx-host=client.test,mx.client.test,10 \
		--txt-record=client.test,"v=spf1 ip4:127.0.0.1 -all" \
		--txt-record=_dmarc.client.test,"v=DMARC1; p=$DMARC_P" \
		--ptr-record=1.0.0.127.in-addr.arpa,client.test \
		--log-queries --log-facility="$qlog" >"$WORK/dnsmasq.out" 2>&1 &
	DNS_PID=$!
	EXTRA_PIDS+=("$DNS_PID")
	for ((i = 0; i < 50; i++)); do ss -Hlun "sport = :$P_DNS" | grep -q . && break; sleep 0.1; done
	ss -Hlun "sport = :$P_DNS" | grep -q . || { cat "$WORK/dnsmasq.out"; die "dnsmasq did not start"; }
}
dns_queries() { local n; n=$(grep -cE ' (query|auth)\[' "$WORK/dnsmasq-queries.log" 2>/dev/null); echo "${n:-0}"; }

declare -A RES SPLIT AUTH DNSQ

run_conf() { # off|on
	local conf=$1 mode w=$WARMUP q0 q1 n
	if [ "$conf" = on ]; then
		postern_vars POSTERN_DNS_CHECKS=on POSTERN_DNS_SERVERS="127.0.0.1:$P_DNS"
	else
		postern_vars
	fi
	postern_start "checks-$conf"
	log "checks $conf: Postern $POSTERN_PID on 127.0.0.1:$P_SMTP$([ "$conf" = on ] && echo ", DNS 127.0.0.1:$P_DNS (dnsmasq $DNS_PID)")"
	export ACCEPT_PG_PORT=$P_PG ACCEPT_POSTERN_PID=$POSTERN_PID ACCEPT_PG_PID=$PG_PID
	export -f postern_between_reps cpu_ticks tree_pids
	local pids="$POSTERN_PID $PG_PID"
	[ "$conf" = on ] && pids="$pids $DNS_PID"
	for mode in $MODES; do
		export ACCEPT_TICKS=$WORK/ticks-$conf-$mode
		: >"$ACCEPT_TICKS"
		q0=$(dns_queries)
		MODES=$mode WARMUP=$w SERVER_PIDS="$pids" BETWEEN_REPS=postern_between_reps run_load "$conf-$mode" "$P_SMTP"
		q1=$(dns_queries)
		# what the last run stored: proof that the checks ran (or not)
		AUTH[$conf:$mode]=$(pg_psql -c "select coalesce(auth_results->>'spf', '-') || '/' || coalesce((select string_agg(d->>'result', ',') from jsonb_array_elements(auth_results->'dkim') d), 'none') || '/' || coalesce(auth_results->'dmarc'->>'result', '-') || ': ' as r, count(*) from messages group by 1 order by 2 desc limit 3" | tr '\n|' '  ' | sed 's/ *$//')
		postern_between_reps
		n=$MSGS
		[ "$mode" = newconn ] && n=$NEWCONN_MSGS
		RES[$conf:$mode]="$(load_col "$conf-$mode" "$mode" accept)|$(load_col "$conf-$mode" "$mode" cpu)|$(worst_other "$conf-$mode" "$mode")|$(load_fails "$conf-$mode")"
		SPLIT[$conf:$mode]=$(split_cpu "$ACCEPT_TICKS" "$n" $([ "$w" -gt 0 ] && echo 1 || echo 0))
		DNSQ[$conf:$mode]=$((q1 - q0))
		w=0
	done
	if [ -s "$WORK/postern-checks-$conf.log" ]; then
		log "Postern log, checks $conf ($(wc -l <"$WORK/postern-checks-$conf.log") lines, last 3):"
		tail -3 "$WORK/postern-checks-$conf.log" | cut -c1-400 >&2
	fi
	postern_stop
}

report() {
	local mode conf r acc cpu other fails offacc offcpu
	echo "## checks.sh $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs, $(uname -r)"
	echo
	echo "Postern $POSTERN_VERSION on Bun $("$BUN" --version), PostgreSQL ${PG_VERSION:-?} (default settings), route \`*@bench.test\` -> mailbox, MX port. checks on = POSTERN_DNS_CHECKS=on against dnsmasq $(dnsmasq --version | head -1 | awk '{ print $3 }') on loopback (client.test: A, MX, SPF \`v=spf1 ip4:127.0.0.1 -all\`, \`_dmarc\` \`p=$DMARC_P\`; messages unsigned, so DKIM none and DMARC passes by aligned SPF); off = POSTERN_DNS_CHECKS=off."
	echo "smtp-source: $SESSIONS sessions, ${SIZE}-byte body, 1 rcpt, HELO; reuse = -d, $MSGS msgs/run; newconn = one connection per message, $NEWCONN_MSGS msgs/run; $WARMUP warm-up msgs per configuration (they warm the DNS cache); $REPS timed runs."
	echo "msgs/s = median [min-max]; CPU = server user+sys ms per message over the timed runs (Bun + PostgreSQL tree, + dnsmasq when on); Bun / PostgreSQL = split of that over the same runs; DNS queries = queries that reached dnsmasq during warm-up + timed runs (the rest came from Postern's cache); auth = spf/dkim/dmarc of the messages of the last run."
	echo
	echo "| mode | checks | msgs/s | CPU ms/msg | of which Bun / PostgreSQL | DNS queries | auth results (last run) | other% | cost msgs/s | cost CPU |"
	echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
	for mode in $MODES; do
		r=${RES[off:$mode]:-}
		offacc=
		offcpu=
		[ -n "$r" ] && IFS='|' read -r offacc offcpu _ _ <<<"$r"
		for conf in $ORDER; do
			r=${RES[$conf:$mode]:-}
			[ -n "$r" ] || continue
			IFS='|' read -r acc cpu other fails <<<"$r"
			set -- ${SPLIT[$conf:$mode]:-- - -}
			local split="$1 / $2$([ "$3" = yes ] || echo " (row check: $3)")"
			local cost_a=- cost_c=-
			if [ "$conf" = on ] && [ -n "$offacc" ]; then
				cost_a=$(awk -v a="${acc%% *}" -v b="${offacc%% *}" 'BEGIN { if (b > 0) printf "%.1f%%", 100 * (1 - a / b); else print "-" }')
				cost_c=$(awk -v a="$cpu" -v b="$offcpu" 'BEGIN { if (b > 0) printf "+%.1f%%", 100 * (a / b - 1); else print "-" }')
			fi
			echo "| $mode | $conf | $(fmt_stats "$acc")$([ "$fails" != 0 ] && echo " ($fails FAILED)") | $cpu | $split | ${DNSQ[$conf:$mode]:--} | ${AUTH[$conf:$mode]:-} | $other | $cost_a | $cost_c |"
		done
	done
}

take_rev
log "machine: $(nproc) cpus, load $(cut -d' ' -f1-3 /proc/loadavg); ORDER=$ORDER MODES=$MODES MSGS=$MSGS SESSIONS=$SESSIONS SIZE=$SIZE REPS=$REPS WARMUP=$WARMUP; scratch $WORK"
pg_start
postern_vars
postern_cli domain add bench.test
postern_cli route add '*@bench.test' mailbox
dns_start
for c in $ORDER; do
	case $c in off | on) run_conf "$c" ;; *) die "unknown configuration $c (off, on)" ;; esac
done
report
log "done in $(($(date +%s) - T_START))s"
