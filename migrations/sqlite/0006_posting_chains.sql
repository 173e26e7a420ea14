-- Account statements are read from storage, newest first, a page at a time. Each posting row
-- links to the previous entry of each of its two accounts: `prev_debit` is the position of
-- the latest entry before this one that touched the debit account (on either side, in any of
-- its postings), `prev_credit` the same for the credit account, NULL when there is none. A
-- statement walks one account's chain backwards through the primary key. The writer knows
-- every account's last position, so the links cost two integers per row and no index: an
-- index by account would be a random B-tree insert per posting side on the commit path
-- (BENCHMARKS.md has what that cost).
alter table posting add column prev_debit integer;
alter table posting add column prev_credit integer;

-- The rows already stored get their links once, here: the only update posting rows ever get
-- (the trigger refusing updates is set aside for it and restored below).
drop trigger posting_no_update;
