-- The name a merchant's bank account is held in, when the registry's display name cannot go
-- in a SEPA file: SEPA allows only Latin letters, and a shop in Thessaloniki or Hebron is
-- listed under its Greek or Arabic name. Null means the display name is the holder's name.
alter table participant add column account_holder text;
