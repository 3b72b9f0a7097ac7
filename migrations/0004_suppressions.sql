CREATE TABLE "suppressions" (
	"domain" text NOT NULL,
	"address" text NOT NULL,
	"reason" text NOT NULL,
	"code" text,
	"message_id" text,
	"at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "suppressions_domain_address_pk" PRIMARY KEY("domain","address")
);
