// The composition root: settings -> database -> services -> listeners, and the orderly stop.
import { randomBytes } from "node:crypto";
import { challengeResponder } from "./acme/challenges.ts";
import { AcmeManager } from "./acme/manager.ts";
import { LOCKOUT_DEFAULTS } from "./auth/lockout.ts";
import { runVerb } from "./commands/dispatch.ts";
import { type Config, secretRedactor } from "./config.ts";
import { consoleHandler } from "./console/routes.ts";
import { controlSocketPath, serveControlSocket } from "./control/socket.ts";
import { DatabaseHealth } from "./db/health.ts";
import { migrate } from "./db/migrate.ts";
import { openDatabase } from "./db/open.ts";
import { courierRegistry } from "./delivery/couriers.ts";
import { startTlsTrusting } from "./delivery/dial.ts";
import { RecipientVerifier } from "./delivery/recipient-verifier.ts";
import { bounceTarget, Router } from "./delivery/route.ts";
import { Shaper } from "./delivery/shaping.ts";
import { createResolver } from "./dns/resolver.ts";
import { Directory } from "./domains/directory.ts";
import { HOOK_LIFETIME_SECONDS, HookSender } from "./hooks/sender.ts";
import { maxRequestBodyBytes } from "./http/api.ts";
import { createHttpHandler } from "./http/app.ts";
import { mtaStsSite } from "./http/mta-sts-site.ts";
import { createLogger, errorMessage } from "./log.ts";
import { PosternMetrics } from "./metrics/postern.ts";
import { POLICY_FETCH_TIMEOUT_MS, policyFetcher } from "./mta-sts/fetch.ts";
import { StsPolicies } from "./mta-sts/policies.ts";
import { HttpsListener } from "./net/https-listener.ts";
import { readRoots, TlsStore } from "./net/tls.ts";
import { reportedBounces } from "./queue/bounce-reports.ts";
import { ENQUEUE_DEADLINE_MS, Enqueuer, QUEUE_CHANNEL, queuesWork } from "./queue/enqueue.ts";
import { HistoryPruner } from "./queue/history.ts";
import { newMessageId } from "./queue/ids.ts";
import { Intake } from "./queue/intake.ts";
import { dsnWriter } from "./queue/notices.ts";
import { takeQuota } from "./queue/quotas.ts";
import { Scheduler } from "./queue/scheduler.ts";
import { submitMessage } from "./queue/submit.ts";
import { suppressedText, suppressionRefusing } from "./queue/suppressions.ts";
import { createSessionBackend } from "./smtp/backend.ts";
import { ConnectionCounter, listenSmtp, type SmtpListener } from "./smtp/listener.ts";
import type { PortKind, SessionClock } from "./smtp/session.ts";
import { reportTiming, TlsSessionCounter } from "./tlsrpt/counter.ts";
import { tlsReportCourier } from "./tlsrpt/received.ts";
import { TlsReportSender } from "./tlsrpt/sender.ts";

/** Opens a listener; its failure names what and which port. */
function listening<T>(what: string, port: number, open: () => T): T {
  try {
    return open();
  } catch (err) {
    throw new Error(`cannot listen for ${what} on port ${port}: ${errorMessage(err)}`);
  }
}

export interface RunningServer {
  httpPort: number;
  httpsPort: number;
  smtpPorts: Record<PortKind, number>;
  stop(): Promise<void>;
}

/** Postfix-like defaults: 20 connections per destination reached by slow start from 5. */
const SCHEDULER_LIMITS = {
  concurrency: 100,
  perDestination: 20,
  initialPerDestination: 5,
  jobsPerGroup: 50,
  // Bodies are read per group: at most this much message data in memory for delivery.
  maxGroupBytes: 32 * 1024 * 1024,
  maxBytesInFlight: 256 * 1024 * 1024,
  // A claimed delivery not settled within this long is taken again (by this or another instance).
  leaseSeconds: 600,
  pollMs: 5000,
  stopGraceMs: 20_000,
};

const clock: SessionClock = {
  now: () => Date.now(),
  sleep: (ms) => Bun.sleep(ms),
  newId: () => newMessageId(),
};

export async function startServer(config: Config): Promise<RunningServer> {
  const log = createLogger(config.logLevel, undefined, secretRedactor(config));
  const database = await openDatabase(config);
  try {
    await migrate(database);
  } catch (err) {
    await database.close();
    throw err;
  }
  log.info("database ready", { kind: database.kind });
  const directory = new Directory(database.db);
  let scheduler: Scheduler | undefined;
  let hookSender: HookSender | undefined;
  const health = new DatabaseHealth({
    ping: () => database.ping(),
    log,
    onChange: (up) => {
      metrics.databaseState(up);
      // claim at once rather than at the end of the outage backoff
      if (up) scheduler?.wake();
      if (up) hookSender?.wake();
    },
  });
  const metrics = new PosternMetrics({
    db: database.db,
    certificateNotAfter: () => tls.notAfter(),
    // while the database is away, every scrape would say so again: the health line said it once
    onCollectError: (metric, err) => {
      if (health.up) log.warn("metric collection failed", { metric, error: errorMessage(err) });
    },
  });

  const control =
    database.kind === "pglite"
      ? serveControlSocket(controlSocketPath(config.dataDir), async ({ argv, stdin }) => {
          let stdout = "";
          let stderr = "";
          const code = await runVerb(argv, database.db, config, {
            out: (t) => {
              stdout += t;
            },
            err: (t) => {
              stderr += t;
            },
            stdin: async () => stdin,
          });
          directory.invalidate();
          log.info("control command", { argv: argv.slice(0, 2), code });
          return { code, stdout, stderr };
        })
      : undefined;

  const tls = await TlsStore.load(config);
  /** Started after the SMTP listeners; a certificate reloaded before then is read at its start. */
  let https: HttpsListener | undefined;
  // New certificate files are served to new connections without a restart: on SIGHUP (what
  // certbot's deploy hooks send) and within a minute anyway.
  const reloadTls = (why: string) => {
    const outcome = tls.reload(why === "SIGHUP");
    if (outcome.kind === "reloaded") {
      log.info("TLS certificate reloaded", { why, serial: outcome.serial });
      https?.reload(tls.current());
    }
    if (outcome.kind === "refused")
      log.warn("TLS certificate not reloaded: the old one stays", { why, error: outcome.why });
  };
  /** Started once the listeners are up; SIGHUP has it look again at once. */
  let acme: AcmeManager | undefined;
  const onSighup = () => {
    reloadTls("SIGHUP");
    acme?.wake();
  };
  process.on("SIGHUP", onSighup);
  const tlsCheck = setInterval(() => reloadTls("the files changed"), 60_000);
  tlsCheck.unref?.();
  const extraRoots = readRoots(config.extraCaFile, "POSTERN_EXTRA_CA_FILE");
  const acmeRoots = config.acme && readRoots(config.acme.caFile, "POSTERN_ACME_CA_FILE");
  const resolver = await createResolver(config.dnsServers, {
    onLookup: (type, seconds) => metrics.dnsLookup(type, seconds),
  });
  const fetchPolicy = policyFetcher({
    resolver,
    extraRoots,
    allowPrivate: config.allowPrivateDestinations,
    timeoutMs: POLICY_FETCH_TIMEOUT_MS,
  });
  const router = new Router({
    suppressed: async (mailFrom, address) => {
      const found = await suppressionRefusing(database.db, mailFrom, address);
      return found && suppressedText(address, found);
    },
    directory,
    resolver: config.dnsChecks ? resolver : undefined,
    verifier: new RecipientVerifier({ helo: config.hostname }),
  });
  const owner = `${config.hostname}:${process.pid}:${randomBytes(4).toString("hex")}`;
  const tlsReportTiming =
    config.tlsReportPeriodSeconds === undefined ? undefined : reportTiming(config.tlsReportPeriodSeconds);
  const tlsCounter =
    tlsReportTiming === undefined
      ? undefined
      : new TlsSessionCounter({
          db: database.db,
          periodSeconds: tlsReportTiming.periodSeconds,
          flushMs: tlsReportTiming.flushMs,
          onError: (err) => log.warn("TLS session counts not written yet", { error: errorMessage(err) }),
        });
  scheduler = new Scheduler({
    db: database.db,
    owner,
    courierFor: courierRegistry(config, {
      resolver,
      directory,
      shaper: new Shaper(database.db, owner),
      sts: config.mtaSts
        ? new StsPolicies({
            db: database.db,
            resolver,
            fetch: fetchPolicy,
          })
        : undefined,
      startTls: startTlsTrusting(extraRoots),
      onTlsSession: (session) => {
        metrics.tlsSession(session);
        tlsCounter?.record(session);
      },
      tlsReports: tlsReportCourier(database.db),
    }),
    policy: {
      baseSeconds: config.retryBaseSeconds,
      maxSeconds: config.retryMaxSeconds,
      lifetimeSeconds: config.queueLifetimeSeconds,
      delayWarningSeconds: config.delayWarningSeconds,
    },
    dsns: dsnWriter({
      hostname: config.hostname,
      lifetimeSeconds: config.queueLifetimeSeconds,
      targetFor: (address) => bounceTarget(router, address),
      onNotice: (action, target) => metrics.dsnWritten(action, target),
    }),
    onSettled: (settled) => metrics.settled(settled),
    log,
    ...SCHEDULER_LIMITS,
    // a commit of ours woke the scheduler already (below): its notification would claim nothing
    listen: (onNotify) =>
      database.listen(QUEUE_CHANNEL, (origin) => {
        if (origin !== owner) onNotify();
      }),
    soleWorker: database.kind === "pglite",
  });
  const enqueuer = new Enqueuer(database.db, log, {
    onCommitted: (_ids, written) => {
      metrics.committed(written);
      // mail kept on write (mailboxes) leaves the scheduler nothing to claim
      if (queuesWork(written)) scheduler.wake();
    },
    origin: owner,
  });
  const intake = new Intake({
    directory,
    enqueuer,
    hostname: config.hostname,
    resolver: config.dnsChecks ? resolver : undefined,
    dmarcPolicy: config.dmarcPolicy,
    onAuthChecked: (how) => metrics.authChecked(how),
    log,
    reportedBounces: (report, at) => reportedBounces(database.db, report, at),
  });
  const backend = createSessionBackend({
    db: database.db,
    directory,
    router,
    intake,
    resolver: config.dnsChecks ? resolver : undefined,
    metrics,
    lockout: { failures: config.authLockoutFailures, ...LOCKOUT_DEFAULTS },
    inboundPerMinute: config.inboundPerMinute,
    dnsbl: { resolver, zones: config.dnsblZones },
    sendLimitPerHour: config.sendLimitPerHour,
    log,
  });
  const counter = new ConnectionCounter({ total: config.maxConnections, perIp: config.maxConnectionsPerIp });
  const ports: [PortKind, number][] = [
    ["smtp", config.smtpPort],
    ["submission", config.submissionPort],
    ["submissions", config.submissionsPort],
  ];
  const listeners: SmtpListener[] = [];
  const smtpPorts = {} as Record<PortKind, number>;
  try {
    for (const [kind, port] of ports) {
      const listener = listenSmtp({
        hostname: config.listen,
        port,
        kind,
        tls: () => tls.current(),
        counter,
        backend,
        clock,
        log,
        metrics,
        // a grace of one second past the deadline: the 451 itself still goes out
        commitDeadlineMs: ENQUEUE_DEADLINE_MS + 1000,
        policy: {
          port: kind,
          hostname: config.hostname,
          maxMessageBytes: config.maxMessageBytes,
          maxRecipients: config.maxRecipients,
          tlsAvailable: true,
          maxErrors: 10,
          maxAuthFailures: 3,
          authFailureDelayMs: (n) => 1000 * n,
        },
      });
      listeners.push(listener);
      smtpPorts[kind] = listener.port;
      log.info("smtp listening", { kind, address: config.listen, port: listener.port });
    }
  } catch (err) {
    process.off("SIGHUP", onSighup);
    clearInterval(tlsCheck);
    await Promise.all(listeners.map((l) => l.stop(0)));
    control?.stop();
    await database.close();
    throw new Error(`cannot listen for SMTP: ${errorMessage(err)}`);
  }

  const http = Bun.serve({
    hostname: config.listen,
    port: config.httpPort,
    // A backstop only: /api/send refuses a body over its limit itself, with a 413 that says why
    // (Bun's own 413 is empty), which needs Bun's cap above it.
    maxRequestBodySize: 2 * maxRequestBodyBytes(config.maxMessageBytes),
    fetch: createHttpHandler({
      database,
      adminToken: config.adminToken,
      api: {
        database,
        directory,
        router,
        intake,
        hostname: config.hostname,
        maxMessageBytes: config.maxMessageBytes,
        sendLimitPerHour: config.sendLimitPerHour,
        takeQuota: async (quota, n) => {
          const taken = await takeQuota(database.db, quota, n);
          if (!taken.ok) {
            metrics.limitRefused("send-quota");
            log.info("send quota reached", { who: quota.subject, limit: quota.limit, until: taken.retryAt });
          }
          return taken;
        },
      },
      metrics,
      console: consoleHandler({
        db: database.db,
        adminToken: config.adminToken,
        hostname: config.hostname,
        resolver,
        fetchPolicy,
      }),
    }),
    error(err) {
      log.error("http handler failed", { error: errorMessage(err) });
      return Response.json({ error: "internal error" }, { status: 500 });
    },
  });
  const httpError = (server: string) => (err: Error) => {
    log.error(`${server} handler failed`, { error: errorMessage(err) });
    return new Response("internal error\n", { status: 500 });
  };
  log.info("http listening", { address: config.listen, port: http.port });
  let acmeHttp: ReturnType<typeof Bun.serve> | undefined;
  try {
    https = listening(
      "HTTPS",
      config.httpsPort,
      () =>
        new HttpsListener(
          {
            hostname: config.listen,
            port: config.httpsPort,
            fetch: mtaStsSite({
              modeOf: (domain) => directory.mtaStsMode(domain),
              mailHost: config.hostname,
            }),
            error: httpError("https"),
          },
          tls.current(),
        ),
    );
    const acmeHttpPort = config.acme?.httpPort;
    if (acmeHttpPort !== undefined)
      acmeHttp = listening("ACME HTTP-01", acmeHttpPort, () =>
        Bun.serve({
          hostname: config.listen,
          port: acmeHttpPort,
          fetch: challengeResponder(database.db),
          error: httpError("acme http-01"),
        }),
      );
  } catch (err) {
    process.off("SIGHUP", onSighup);
    clearInterval(tlsCheck);
    await Promise.all(listeners.map((l) => l.stop(0)));
    await http.stop(true);
    await https?.stop();
    control?.stop();
    await database.close();
    throw err;
  }
  log.info("https listening", { address: config.listen, port: https.port });
  if (config.acme) {
    log.info("acme http-01 listening", { address: config.listen, port: acmeHttp?.port });
    acme = new AcmeManager({
      db: database.db,
      directoryUrl: config.acme.directoryUrl,
      caPem: acmeRoots?.length ? acmeRoots.join("\n") : undefined,
      email: config.acme.email,
      hostname: config.hostname,
      owner,
      log,
      install: (material, cert) => {
        tls.install(material);
        https?.reload(tls.current());
        log.info("serving the ACME certificate", { serial: cert.serial, notAfter: cert.notAfter });
      },
    });
    acme.start();
  }
  await scheduler.start();
  hookSender = new HookSender({
    db: database.db,
    owner,
    log,
    extraRoots,
    policy: {
      baseSeconds: config.retryBaseSeconds,
      maxSeconds: config.retryMaxSeconds,
      lifetimeSeconds: HOOK_LIFETIME_SECONDS,
    },
    onSettled: (counts) => metrics.hookPostsSettled(counts),
  });
  hookSender.start();
  tlsCounter?.start();
  const tlsReports =
    tlsCounter === undefined || tlsReportTiming === undefined
      ? undefined
      : new TlsReportSender({
          db: database.db,
          resolver,
          periodSeconds: tlsReportTiming.periodSeconds,
          submitter: config.hostname,
          extraRoots,
          graceMs: tlsReportTiming.graceMs,
          flushCounts: () => tlsCounter.flush(),
          sendMail: async (from, to, raw) => {
            await submitMessage(
              {
                directory,
                router,
                intake,
                hostname: config.hostname,
                maxMessageBytes: config.maxMessageBytes,
              },
              { from, to: [to], raw, via: "tlsrpt" },
            );
          },
          log,
        });
  tlsReports?.start();
  health.start();
  const history = new HistoryPruner(database.db, config.historyDays, log);
  history.start();

  return {
    httpPort: http.port!,
    httpsPort: https.port,
    smtpPorts,
    async stop() {
      // Sessions first (a commit in progress is answered), then deliveries, then the database.
      process.off("SIGHUP", onSighup);
      clearInterval(tlsCheck);
      await Promise.all(listeners.map((l) => l.stop()));
      await scheduler.stop();
      await hookSender.stop();
      await tlsReports?.stop();
      await acme?.stop();
      await tlsCounter?.stop();
      await history.stop();
      await health.stop();
      control?.stop();
      await http.stop(true);
      await https.stop();
      await acmeHttp?.stop(true);
      await database.close();
      log.info("stopped");
    },
  };
}
