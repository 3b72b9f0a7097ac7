CREATE TABLE "attempts" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"delivery_id" bigint NOT NULL,
	"at" timestamp with time zone DEFAULT now() NOT NULL,
	"duration_ms" integer NOT NULL,
	"host" text,
	"reply" text,
	"outcome" text NOT NULL
);
--> statement-breakpoint
CREATE TABLE "deliveries" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"message_id" text NOT NULL,
	"rcpt" text NOT NULL,
	"orcpt" text,
	"notify" text,
	"target" text NOT NULL,
	"status" text DEFAULT 'queued' NOT NULL,
	"attempts" integer DEFAULT 0 NOT NULL,
	"next_attempt_at" timestamp with time zone DEFAULT now() NOT NULL,
	"lease_owner" text,
	"lease_until" timestamp with time zone,
	"last_reply" text,
	"delivered_at" timestamp with time zone,
	"warned_at" timestamp with time zone,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "domains" (
	"name" text PRIMARY KEY NOT NULL,
	"dkim_selector" text NOT NULL,
	"dkim_rsa_key" text NOT NULL,
	"dkim_ed25519_key" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "messages" (
	"id" text PRIMARY KEY NOT NULL,
	"received_at" timestamp with time zone DEFAULT now() NOT NULL,
	"direction" text NOT NULL,
	"mail_from" text NOT NULL,
	"helo" text,
	"client_ip" text,
	"auth_user" text,
	"size" integer NOT NULL,
	"raw" "bytea" NOT NULL,
	"auth_results" jsonb,
	"message_id_header" text,
	"subject" text,
	"envid" text,
	"ret" text
);
--> statement-breakpoint
CREATE TABLE "routes" (
	"pattern" text PRIMARY KEY NOT NULL,
	"target" text NOT NULL,
	"secret" text,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "users" (
	"address" text PRIMARY KEY NOT NULL,
	"password_hash" text NOT NULL,
	"may_send_as" text[] DEFAULT '{}'::text[] NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
ALTER TABLE "attempts" ADD CONSTRAINT "attempts_delivery_id_deliveries_id_fk" FOREIGN KEY ("delivery_id") REFERENCES "public"."deliveries"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "deliveries" ADD CONSTRAINT "deliveries_message_id_messages_id_fk" FOREIGN KEY ("message_id") REFERENCES "public"."messages"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "attempts_delivery_idx" ON "attempts" USING btree ("delivery_id");--> statement-breakpoint
CREATE INDEX "deliveries_due_idx" ON "deliveries" USING btree ("status","next_attempt_at");--> statement-breakpoint
CREATE INDEX "deliveries_message_idx" ON "deliveries" USING btree ("message_id");--> statement-breakpoint
CREATE INDEX "deliveries_rcpt_idx" ON "deliveries" USING btree ("rcpt");--> statement-breakpoint
CREATE INDEX "messages_received_at_idx" ON "messages" USING btree ("received_at");