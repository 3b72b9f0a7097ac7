ALTER TABLE "hook_deliveries" DROP CONSTRAINT "hook_deliveries_event_id_events_id_fk";
--> statement-breakpoint
DROP INDEX "hook_deliveries_event_idx";--> statement-breakpoint
ALTER TABLE "hooks" ADD COLUMN "last_delivered_at" timestamp with time zone;--> statement-breakpoint
ALTER TABLE "hooks" ADD COLUMN "last_failed_at" timestamp with time zone;--> statement-breakpoint
ALTER TABLE "hooks" ADD COLUMN "last_failure" text;--> statement-breakpoint
DELETE FROM "hook_deliveries" WHERE "status" = 'delivered';
