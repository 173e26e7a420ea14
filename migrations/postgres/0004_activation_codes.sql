-- One-time activation codes: an operator gives a beneficiary a short code, and the phone
-- wallet registers its own key on the account with it, without an operator token. Only a
-- SHA-256 of the code is kept (over a context, the account and the normalised code), never
-- the code itself. A code is live until used, superseded by a newer code for the same
-- account, or past expires_at; at most one code per account is unused and not superseded.
create table account_activation_code (
    id uuid primary key,
    account uuid not null references account (id),
    code_hash bytea not null check (length(code_hash) = 32),
    created_at bigint not null,
    expires_at bigint not null check (expires_at > created_at),
    used_at bigint,
    superseded_at bigint
);
create unique index account_activation_code_live on account_activation_code (account)
    where used_at is null and superseded_at is null;
