-- Municipal programmes (minimum income, emergency aid): who is enrolled, their cards, the
-- disbursement runs that paid them, and the merchants each programme accepts. Ledger effects
-- (accounts, entries) go through the committer; these rows describe the programme around them.

-- Registry fields for merchants, and bank details for redemption payouts (never public).
alter table participant add column area text;
alter table participant add column social_enterprise integer not null default 0
    check (social_enterprise in (0, 1));
alter table participant add column iban text;
alter table participant add column bic text;

-- A programme pays in one unit, which carries its spending rules; so one programme per unit.
-- The administrator key (derived from the server secret) signs runs, sweeps and card moves.
-- The debtor is the municipality's bank account that pays merchants' redemptions.
create table programme (
    id blob primary key check (length(id) = 16),
    name text not null,
    unit text not null unique references unit (code),
    budget_account blob not null check (length(budget_account) = 16),
    clearing_account blob not null check (length(clearing_account) = 16),
    fee_account blob not null check (length(fee_account) = 16),
    administrator blob not null check (length(administrator) = 32),
    schedule text not null check (schedule in ('monthly', 'one_off')),
    pay_day integer check (pay_day between 1 and 28),
    areas text not null,
    languages text not null,
    debtor_name text,
    debtor_iban text,
    debtor_bic text,
    created_at integer not null
) strict;

-- Rule versions (amounts, spending rules, expiry, fees), each in force from effective_from.
-- Rows are only ever added, so the history of every rule change is kept.
create table programme_rules (
    programme blob not null references programme (id),
    version integer not null check (version > 0),
    effective_from integer not null,
    rules text not null,
    created_at integer not null,
    primary key (programme, version),
    unique (programme, effective_from)
) strict;
create trigger programme_rules_no_update before update on programme_rules
begin select raise(abort, 'rule versions are immutable; add a new version'); end;
create trigger programme_rules_no_delete before delete on programme_rules
begin select raise(abort, 'rule versions are immutable; add a new version'); end;

-- An enrolled household and its account in the programme's unit.
create table household (
    id blob primary key check (length(id) = 16),
    programme blob not null references programme (id),
    -- Upper case: references are compared ignoring case, so SEV-1 and sev-1 are one household.
    reference text not null check (reference = upper(reference)),
    name text not null,
    dependents integer not null check (dependents >= 0),
    area text not null,
    phone text,
    language text not null,
    account blob not null check (length(account) = 16),
    -- 1: the household withheld consent to research use; the research export leaves it out.
    research_opt_out integer not null default 0 check (research_opt_out in (0, 1)),
    enrolled_at integer not null,
    unique (programme, reference)
) strict;

-- A digital card: its custodial key sealed under the PIN and the server secret.
create table card (
    number text primary key,
    household blob not null references household (id),
    account blob not null check (length(account) = 16),
    sealed_key blob not null,
    failed_attempts integer not null default 0,
    status text not null check (status in ('active', 'locked', 'replaced')),
    issued_at integer not null,
    replaced_by text
) strict;
create index card_household on card (household);

-- A disbursement run, unique per (programme, period): its plan is stored before anything is
-- paid, so a resumed run pays exactly the planned lines, each chunk once.
create table disbursement_run (
    id blob primary key check (length(id) = 16),
    programme blob not null references programme (id),
    period text not null,
    kind text not null check (kind in ('monthly', 'emergency')),
    area text,
    households integer not null,
    total_minor integer not null,
    chunks integer not null,
    created_at integer not null,
    completed_at integer,
    unique (programme, period)
) strict;

create table disbursement_line (
    run blob not null references disbursement_run (id),
    chunk integer not null,
    household blob not null,
    account blob not null,
    amount_minor integer not null check (amount_minor > 0),
    primary key (run, household)
) strict, without rowid;

-- Which merchants a programme accepts: they apply, a programme manager decides.
create table programme_merchant (
    programme blob not null references programme (id),
    participant blob not null references participant (id),
    status text not null check (status in ('pending', 'approved', 'rejected')),
    account blob,
    applied_at integer not null,
    decided_at integer,
    primary key (programme, participant)
) strict;

-- The periods SEPA credit-transfer files were produced for: a file for an overlapping period
-- would pay merchants twice, so it is refused (the same period again is the same file).
create table settlement_file (
    programme blob not null references programme (id),
    from_day text not null,
    to_day text not null,
    created_at integer not null,
    primary key (programme, from_day, to_day)
) strict;
