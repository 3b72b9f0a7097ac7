ALTER TABLE "events" ADD COLUMN "tx" "xid8" DEFAULT pg_current_xact_id() NOT NULL;--> statement-breakpoint
ALTER TABLE "hooks" ADD COLUMN "cursor_tx" "xid8" DEFAULT pg_snapshot_xmin(pg_current_snapshot()) NOT NULL;--> statement-breakpoint
ALTER TABLE "hooks" ADD COLUMN "cursor_id" bigint DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE "hooks" ADD COLUMN "lease_owner" text;--> statement-breakpoint
ALTER TABLE "hooks" ADD COLUMN "lease_until" timestamp with time zone;--> statement-breakpoint
CREATE INDEX "events_tx_idx" ON "events" USING btree ("tx","id");--> statement-breakpoint
-- Hooks now follow the event stream by cursor; the copies the trigger made and not yet sent stay
-- in hook_deliveries and go out as retries. Existing hooks start after the events there are.
DROP TRIGGER "events_hook_fan_out" ON "events";
--> statement-breakpoint
DROP FUNCTION "postern_hook_fan_out"();
--> statement-breakpoint
UPDATE "hooks" SET "cursor_tx" = pg_current_xact_id(), "cursor_id" = (SELECT coalesce(max("id"), 0) FROM "events");
