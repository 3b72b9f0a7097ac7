CREATE TABLE "workers" (
	"owner" text PRIMARY KEY NOT NULL,
	"alive_until" timestamp with time zone NOT NULL,
	"started_at" timestamp with time zone DEFAULT now() NOT NULL
);
