-- Each account's entries in order, once per (account, entry) however many postings of the
-- entry touch it; the previous one in that order is the link.
with touch (account, entry_position) as (
    select debit, entry_position from posting
    union
    select credit, entry_position from posting
), chained (account, entry_position, prev) as (
    select account, entry_position,
           lag(entry_position) over (partition by account order by entry_position)
    from touch
)
update posting set prev_debit = d.prev, prev_credit = c.prev
from chained d, chained c
where d.account = posting.debit and d.entry_position = posting.entry_position
  and c.account = posting.credit and c.entry_position = posting.entry_position;
