CREATE TABLE "api_keys" (
	"name" text PRIMARY KEY NOT NULL,
	"secret_hash" text NOT NULL,
	"domains" text[] NOT NULL,
	"limit_per_hour" integer,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "api_keys_secret_hash_unique" UNIQUE("secret_hash")
);
