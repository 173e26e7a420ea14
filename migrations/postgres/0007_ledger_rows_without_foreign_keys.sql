-- Posting and journal rows no longer carry a foreign key to their entry. On PostgreSQL each
-- such key is checked by a trigger per inserted row, a query that locks the entry row: two per
-- payment, about 9 µs of server time each, a third of what the server spends on a payment
-- (BENCHMARKS.md, "PostgreSQL without per-row foreign-key checks"). The rows are written
-- only by the writer, in the entry's own transaction, and never updated or deleted (the
-- immutability triggers stay), so the key guarded against nothing the writer could do
-- that the load does not also catch: every start checks that each posting and journal row
-- belongs to a stored entry and refuses to start otherwise (LoadError::OrphanRows).
alter table posting drop constraint posting_entry_position_fkey;
alter table journal drop constraint journal_entry_position_fkey;
