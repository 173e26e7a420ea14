-- Refunds found by the payment they give back. A refund is a `reversal` entry naming its
-- payment in `tags.reverses` (JSON text, so no column of its own); statements show what is
-- left to refund of each sale, which needs the refunds of a page's payments, whenever they
-- were made. A partial index on that expression finds them without reading the journal, and
-- only reversals enter it: an ordinary payment's insert pays one comparison, no index write.
create index entry_refund on entry (((tags::json) ->> 'reverses')) where kind = 'reversal';
