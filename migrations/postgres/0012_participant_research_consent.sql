-- A participant (a time-bank member, a shop) may withhold consent to research use, as a
-- programme's household can: the research export then leaves out every event it takes part in.
alter table participant add column research_opt_out smallint not null default 0
    check (research_opt_out in (0, 1));
