CREATE TABLE "send_counts" (
	"subject" text NOT NULL,
	"hour" timestamp with time zone NOT NULL,
	"count" integer NOT NULL,
	CONSTRAINT "send_counts_subject_hour_pk" PRIMARY KEY("subject","hour")
);
--> statement-breakpoint
ALTER TABLE "users" ADD COLUMN "limit_per_hour" integer;