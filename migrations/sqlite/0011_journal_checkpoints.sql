-- Signed journal checkpoints (DESIGN §5): the service's signed statement of where a unit's
-- chain stood (sequence, hash) and its totals there. `body` is the signed JSON exactly as
-- served; the other columns are copies of its members, for lookups. Like the journal, rows
-- are never changed or removed (an auditor's kept copies would catch it anyway).
create table journal_checkpoint (
    unit text not null,
    seq integer not null check (seq > 0),
    hash blob not null check (length(hash) = 32),
    at_ms integer not null,
    body text not null,
    primary key (unit, seq)
) strict, without rowid;

create trigger journal_checkpoint_no_update before update on journal_checkpoint
begin select raise(abort, 'journal_checkpoint rows are immutable'); end;
create trigger journal_checkpoint_no_delete before delete on journal_checkpoint
begin select raise(abort, 'journal_checkpoint rows are immutable'); end;
