-- A SEPA file recorded by mistake (a mistyped period) and never sent to the bank can be
-- voided: the row stays, for the record, and no longer counts as paid.
alter table settlement_file add column voided_at bigint;
