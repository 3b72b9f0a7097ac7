CREATE TABLE "events" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"type" text NOT NULL,
	"at" timestamp with time zone DEFAULT now() NOT NULL,
	"message_id" text NOT NULL,
	"message_id_header" text,
	"mail_from" text NOT NULL,
	"rcpt" text NOT NULL,
	"attempt" integer DEFAULT 0 NOT NULL,
	"mx" text,
	"reply_code" integer,
	"reply_enhanced" text,
	"reply_text" text,
	"class" text,
	"tls" boolean,
	CONSTRAINT "events_type_check" CHECK (type in ('accepted', 'delivered', 'deferred', 'bounced', 'expired', 'suppressed'))
);
--> statement-breakpoint
CREATE INDEX "events_message_idx" ON "events" USING btree ("message_id");