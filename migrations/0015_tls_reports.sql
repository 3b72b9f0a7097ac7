CREATE TABLE "tls_reports_received" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"domain" text NOT NULL,
	"organization" text NOT NULL,
	"report_id" text NOT NULL,
	"start_at" timestamp with time zone NOT NULL,
	"end_at" timestamp with time zone NOT NULL,
	"report" jsonb NOT NULL,
	"received_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "tls_reports_sent" (
	"domain" text NOT NULL,
	"period_start" timestamp with time zone NOT NULL,
	"sent_at" timestamp with time zone DEFAULT now() NOT NULL,
	"outcome" text DEFAULT '' NOT NULL,
	CONSTRAINT "tls_reports_sent_domain_period_start_pk" PRIMARY KEY("domain","period_start")
);
--> statement-breakpoint
CREATE TABLE "tls_session_counts" (
	"period_start" timestamp with time zone NOT NULL,
	"domain" text NOT NULL,
	"policy_id" text NOT NULL,
	"policy_mode" text NOT NULL,
	"policy_mx" text[] NOT NULL,
	"policy_max_age" integer NOT NULL,
	"result" text NOT NULL,
	"mx" text NOT NULL,
	"ip" text NOT NULL,
	"detail" text NOT NULL,
	"count" integer NOT NULL,
	CONSTRAINT "tls_session_counts_period_start_domain_policy_id_result_mx_ip_pk" PRIMARY KEY("period_start","domain","policy_id","result","mx","ip")
);
--> statement-breakpoint
CREATE INDEX "tls_reports_received_domain" ON "tls_reports_received" USING btree ("domain","id");