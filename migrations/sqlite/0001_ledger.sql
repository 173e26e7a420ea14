-- The ledger's tables. Balances are not stored: they are derived from postings when the
-- service starts (and re-checked then), so there is no second copy that could disagree.
-- Entries (with their signed intents), postings and journal links are append-only: triggers refuse UPDATE and
-- DELETE, because corrections are new entries.

create table unit (
    code text primary key,
    name text not null,
    scale integer not null check (scale between 0 and 8),
    kind text not null check (kind in ('voucher', 'points', 'mutual_credit')),
    peg text,
    created_at integer not null
) strict;

create table account (
    id blob primary key check (length(id) = 16),
    unit text not null references unit (code),
    kind text not null check (kind in ('issuer', 'holder', 'merchant', 'collector', 'system')),
    status text not null check (status in ('active', 'frozen', 'closed')),
    lower_limit integer,
    upper_limit integer,
    authority blob check (authority is null or length(authority) = 32),
    created_at integer not null
) strict;

-- position is the global commit order, assigned by the single writer. Each entry carries the
-- signed intent that authorised it (DESIGN §3): intent_body is the RFC 8785 JSON that was
-- signed, and intent_id (unique) is how a client looks its result up.
create table entry (
    position integer primary key,
    id blob not null unique check (length(id) = 16),
    kind text not null,
    memo text not null,
    tags text not null,
    created_at integer not null,
    intent_id blob not null unique check (length(intent_id) = 16),
    signer blob not null check (length(signer) = 32),
    digest blob not null check (length(digest) = 32),
    signature blob not null check (length(signature) = 64),
    intent_body text not null
) strict;

create table posting (
    entry_position integer not null references entry (position),
    idx integer not null,
    unit text not null,
    debit blob not null,
    credit blob not null,
    amount_minor integer not null check (amount_minor > 0),
    primary key (entry_position, idx)
) strict, without rowid;

-- The writer lease's epoch. PostgreSQL writers bump and check it (see the PostgreSQL schema);
-- an SQLite writer's lease is an exclusive lock on a file beside the database, and SQLite
-- allows one writing connection anyway. Kept here so both schemas have the same tables.
create table writer_lease (
    id integer primary key check (id = 1),
    epoch integer not null
) strict;
insert into writer_lease (id, epoch) values (1, 0);

-- Per-unit hash chain: hash = SHA-256(previous hash || canonical entry JSON).
create table journal (
    unit text not null,
    seq integer not null check (seq > 0),
    entry_position integer not null references entry (position),
    hash blob not null check (length(hash) = 32),
    primary key (unit, seq)
) strict, without rowid;

create trigger entry_no_update before update on entry
begin select raise(abort, 'entry rows are immutable; corrections are new entries'); end;
create trigger entry_no_delete before delete on entry
begin select raise(abort, 'entry rows are immutable; corrections are new entries'); end;
create trigger posting_no_update before update on posting
begin select raise(abort, 'posting rows are immutable; corrections are new entries'); end;
create trigger posting_no_delete before delete on posting
begin select raise(abort, 'posting rows are immutable; corrections are new entries'); end;
create trigger journal_no_update before update on journal
begin select raise(abort, 'journal rows are immutable'); end;
create trigger journal_no_delete before delete on journal
begin select raise(abort, 'journal rows are immutable'); end;
