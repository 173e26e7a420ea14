-- Account statements are read from storage, newest first, a page at a time: these indexes let
-- a page walk one account's postings backwards from a cursor (`where debit = $1 and
-- entry_position < $2 order by entry_position desc limit $3`, and the same for credit) instead
-- of scanning the journal, and let the read model drop the per-account history it used to
-- keep in memory (which grew with every payment). Each payment pays for two more B-tree
-- inserts on the commit path; BENCHMARKS.md has the cost.
--
-- A plain (not CONCURRENTLY) build: migrations run in a transaction, when a process starts,
-- before it takes the writer lease. The build blocks inserts into posting while it runs, which
-- grows with the journal; a standby started next to a live writer (a rolling upgrade) would
-- make that writer's payments wait. An operator who cannot accept the pause builds both
-- indexes CONCURRENTLY by hand first (same names, docs/operations.md), and `if not exists`
-- then skips them here.
create index if not exists posting_debit on posting (debit, entry_position);
create index if not exists posting_credit on posting (credit, entry_position);
