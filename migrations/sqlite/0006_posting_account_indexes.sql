-- Account statements are read from storage, newest first, a page at a time: these indexes let
-- a page walk one account's postings backwards from a cursor (`where debit = ? and
-- entry_position < ? order by entry_position desc limit ?`, and the same for credit) instead
-- of scanning the journal, and let the read model drop the per-account history it used to
-- keep in memory (which grew with every payment). Each payment pays for two more B-tree
-- inserts on the commit path; BENCHMARKS.md has the cost.
create index posting_debit on posting (debit, entry_position);
create index posting_credit on posting (credit, entry_position);
