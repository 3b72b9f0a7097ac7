-- Message bodies compressed with lz4 instead of pglz: PostgreSQL spends ~16 us of CPU storing a
-- 10 KiB body instead of ~46 (bench/RESULTS.md, issue 16), for about the same size. Only rows
-- written from now on; a server built without lz4 (and PGlite) keeps pglz.
DO $$
BEGIN
  EXECUTE 'ALTER TABLE "messages" ALTER COLUMN "raw" SET COMPRESSION lz4';
EXCEPTION WHEN feature_not_supported OR syntax_error THEN
  NULL;
END $$;
