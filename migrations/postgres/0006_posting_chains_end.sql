
alter table posting enable trigger posting_immutable;
