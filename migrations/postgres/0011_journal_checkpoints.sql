-- Signed journal checkpoints (DESIGN §5): the service's signed statement of where a unit's
-- chain stood (sequence, hash) and its totals there. `body` is the signed JSON exactly as
-- served; the other columns are copies of its members, for lookups. Like the journal, rows
-- are never changed or removed (an auditor's kept copies would catch it anyway).
create table journal_checkpoint (
    unit text not null,
    seq bigint not null check (seq > 0),
    hash bytea not null check (length(hash) = 32),
    at_ms bigint not null,
    body text not null,
    primary key (unit, seq)
);

create trigger journal_checkpoint_immutable before update or delete on journal_checkpoint
    for each row execute function coledger_refuse_change();
create trigger journal_checkpoint_no_truncate before truncate on journal_checkpoint
    for each statement execute function coledger_refuse_change();
