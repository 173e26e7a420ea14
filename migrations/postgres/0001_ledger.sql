-- The ledger's tables. Balances are not stored: they are derived from postings when the
-- service starts (and re-checked then), so there is no second copy that could disagree.
-- Entries (with their signed intents), postings and journal links are append-only: triggers refuse UPDATE,
-- DELETE and TRUNCATE, because corrections are new entries.

create table unit (
    code text primary key,
    name text not null,
    scale smallint not null check (scale between 0 and 8),
    kind text not null check (kind in ('voucher', 'points', 'mutual_credit')),
    peg text,
    created_at bigint not null
);

create table account (
    id uuid primary key,
    unit text not null references unit (code),
    kind text not null check (kind in ('issuer', 'holder', 'merchant', 'collector', 'system')),
    status text not null check (status in ('active', 'frozen', 'closed')),
    lower_limit bigint,
    upper_limit bigint,
    authority bytea check (authority is null or length(authority) = 32),
    created_at bigint not null
);

-- position is the global commit order, assigned by the single writer. Each entry carries the
-- signed intent that authorised it (DESIGN §3): intent_body is the RFC 8785 JSON that was
-- signed, and intent_id (unique) is how a client looks its result up.
create table entry (
    position bigint primary key,
    id uuid not null unique,
    kind text not null,
    memo text not null,
    tags text not null,
    created_at bigint not null,
    intent_id uuid not null unique,
    signer bytea not null check (length(signer) = 32),
    digest bytea not null check (length(digest) = 32),
    signature bytea not null check (length(signature) = 64),
    intent_body text not null
);

create table posting (
    entry_position bigint not null references entry (position),
    idx smallint not null,
    unit text not null,
    debit uuid not null,
    credit uuid not null,
    amount_minor bigint not null check (amount_minor > 0),
    primary key (entry_position, idx)
);

-- The writer lease's epoch, bumped by every writer that takes over. Each batch transaction
-- checks it (FOR SHARE on PostgreSQL), so a writer that lost the lease can never commit, on any
-- of its connections, once another has taken over.
create table writer_lease (
    id bigint primary key check (id = 1),
    epoch bigint not null
);
insert into writer_lease (id, epoch) values (1, 0);

-- Per-unit hash chain: hash = SHA-256(previous hash || canonical entry JSON).
create table journal (
    unit text not null,
    seq bigint not null check (seq > 0),
    entry_position bigint not null references entry (position),
    hash bytea not null check (length(hash) = 32),
    primary key (unit, seq)
);

create function coledger_refuse_change() returns trigger language plpgsql as $$
begin
    raise exception 'coledger: % rows are immutable; corrections are new entries', tg_table_name;
end
$$;

create trigger entry_immutable before update or delete on entry
    for each row execute function coledger_refuse_change();
create trigger posting_immutable before update or delete on posting
    for each row execute function coledger_refuse_change();
create trigger journal_immutable before update or delete on journal
    for each row execute function coledger_refuse_change();
create trigger entry_no_truncate before truncate on entry
    for each statement execute function coledger_refuse_change();
create trigger posting_no_truncate before truncate on posting
    for each statement execute function coledger_refuse_change();
create trigger journal_no_truncate before truncate on journal
    for each statement execute function coledger_refuse_change();
