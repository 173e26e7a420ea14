-- A merchant may cancel a payment request it no longer wants paid (the customer walked away).
-- Cancelling sets cancelled_at (once; a second cancel keeps the first time) and shortens
-- expires_at to that moment, so every later check refuses a payment for it. A request that
-- was paid before the cancellation reached the writer stays paid: the payment wins, and
-- cancelled_at then only records that the cancel came too late.
alter table payment_request add column cancelled_at bigint;
