CREATE TABLE "hook_deliveries" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"hook_id" bigint NOT NULL,
	"event_id" bigint NOT NULL,
	"status" text DEFAULT 'pending' NOT NULL,
	"attempts" integer DEFAULT 0 NOT NULL,
	"next_attempt_at" timestamp with time zone DEFAULT now() NOT NULL,
	"lease_owner" text,
	"lease_until" timestamp with time zone,
	"last_reply" text,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"done_at" timestamp with time zone
);
--> statement-breakpoint
CREATE TABLE "hooks" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"url" text NOT NULL,
	"secret" text NOT NULL,
	"events" text[],
	"domain" text,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
ALTER TABLE "hook_deliveries" ADD CONSTRAINT "hook_deliveries_hook_id_hooks_id_fk" FOREIGN KEY ("hook_id") REFERENCES "public"."hooks"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "hook_deliveries" ADD CONSTRAINT "hook_deliveries_event_id_events_id_fk" FOREIGN KEY ("event_id") REFERENCES "public"."events"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "hook_deliveries_due_idx" ON "hook_deliveries" USING btree ("status","next_attempt_at");--> statement-breakpoint
CREATE INDEX "hook_deliveries_hook_idx" ON "hook_deliveries" USING btree ("hook_id","created_at");--> statement-breakpoint
CREATE INDEX "hook_deliveries_event_idx" ON "hook_deliveries" USING btree ("event_id");--> statement-breakpoint
-- Fan-out in the transaction that writes the events: a hook's copy exists iff its event does.
-- One statement per INSERT (a transition table), and next to nothing while no hook exists.
CREATE FUNCTION "postern_hook_fan_out"() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF EXISTS (SELECT 1 FROM "hooks") THEN
    INSERT INTO "hook_deliveries" ("hook_id", "event_id")
    SELECT h."id", e."id"
    FROM "new_events" e
    JOIN "hooks" h
      ON (h."events" IS NULL OR e."type" = ANY (h."events"))
     AND (h."domain" IS NULL
          OR h."domain" = lower(substring(e."mail_from" from '@([^@]*)$'))
          OR h."domain" = lower(substring(e."rcpt" from '@([^@]*)$')));
    IF FOUND THEN
      PERFORM pg_notify('postern_hooks', '');
    END IF;
  END IF;
  RETURN NULL;
END
$$;
--> statement-breakpoint
CREATE TRIGGER "events_hook_fan_out" AFTER INSERT ON "events"
  REFERENCING NEW TABLE AS "new_events"
  FOR EACH STATEMENT EXECUTE FUNCTION "postern_hook_fan_out"();
