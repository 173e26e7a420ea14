
create trigger posting_no_update before update on posting
begin select raise(abort, 'posting rows are immutable; corrections are new entries'); end;
