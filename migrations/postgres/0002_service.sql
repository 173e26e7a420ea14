-- The service around the ledger: who participates, who may operate it, what merchants ask
-- to be paid, and the answers kept for idempotent retries. None of this is ledger history,
-- so these rows may change (a shop moves, a token is revoked).

-- A person or an organisation. Registry fields (name, category, address, opening hours) are
-- published in the open registry only when `listed` is 1; a person's name is never public.
create table participant (
    id uuid primary key,
    kind text not null check (kind in ('person', 'organisation')),
    name text not null,
    roles text not null,
    category_code text,
    address text,
    opening_hours text,
    listed smallint not null check (listed in (0, 1)),
    created_at bigint not null
);

-- Who an account belongs to. Written with the account by the committer.
alter table account add column participant uuid references participant (id);

-- Operator bearer tokens: only a SHA-256 of the secret is kept. A token scoped to a
-- participant (a merchant, a collection point) sees that participant's accounts only.
create table operator_token (
    id uuid primary key,
    secret_hash bytea not null check (length(secret_hash) = 32),
    role text not null check (role in ('admin', 'programme_manager', 'merchant', 'collector',
                                       'coordinator', 'auditor', 'researcher')),
    participant uuid references participant (id),
    label text not null,
    created_at bigint not null,
    revoked_at bigint
);

-- A merchant's request to be paid. Immutable once made; it is paid when an entry names it
-- (entry.payment_request, unique) and expired after expires_at.
create table payment_request (
    id uuid primary key,
    account uuid not null references account (id),
    unit text not null references unit (code),
    amount_minor bigint not null check (amount_minor > 0),
    memo text not null,
    created_at bigint not null,
    expires_at bigint not null
);

-- The payment request an entry settled. At most one entry per request, enforced here too.
alter table entry add column payment_request uuid;
create unique index entry_payment_request on entry (payment_request)
    where payment_request is not null;

-- Responses to writes sent with an Idempotency-Key, per caller. status 0 = in progress.
create table idempotency_key (
    principal text not null,
    key text not null,
    fingerprint bytea not null check (length(fingerprint) = 32),
    status integer not null,
    body text not null,
    created_at bigint not null,
    primary key (principal, key)
);
