CREATE TABLE "destination_pauses" (
	"key" text PRIMARY KEY NOT NULL,
	"paused_until" timestamp with time zone NOT NULL,
	"cooldown_seconds" integer NOT NULL,
	"reason" text NOT NULL
);
--> statement-breakpoint
CREATE TABLE "shape_counts" (
	"pattern" text NOT NULL,
	"window" text NOT NULL,
	"start" timestamp with time zone NOT NULL,
	"count" integer NOT NULL,
	CONSTRAINT "shape_counts_pattern_window_start_pk" PRIMARY KEY("pattern","window","start")
);
--> statement-breakpoint
CREATE TABLE "shape_slots" (
	"key" text NOT NULL,
	"slot" integer NOT NULL,
	"owner" text,
	"lease_until" timestamp with time zone,
	CONSTRAINT "shape_slots_key_slot_pk" PRIMARY KEY("key","slot")
);
--> statement-breakpoint
CREATE TABLE "shapes" (
	"pattern" text PRIMARY KEY NOT NULL,
	"connections" integer,
	"per_minute" integer,
	"per_hour" integer,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
