-- Message bodies compressed with lz4 instead of pglz: PostgreSQL spends ~16 us of CPU storing a
-- 10 KiB body instead of ~46 (bench/toast.ts, bench/RESULTS.md issue 16), for about the same size.
-- Only rows written from now on. PostgreSQL before 14 (no such setting) and a server built
-- without lz4 (PGlite among them) keep pglz; a NOTICE says so to whoever runs it by hand.
DO $$
BEGIN
  IF current_setting('server_version_num')::int < 140000 THEN
    RAISE NOTICE 'message bodies stay compressed with pglz: lz4 needs PostgreSQL 14';
    RETURN;
  END IF;
  EXECUTE 'ALTER TABLE "messages" ALTER COLUMN "raw" SET COMPRESSION lz4';
EXCEPTION WHEN feature_not_supported THEN
  RAISE NOTICE 'message bodies stay compressed with pglz: this server has no lz4';
END $$;
