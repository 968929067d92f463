-- The W3C trace context (`traceparent`) of the request that made a change, kept beside its event
-- so that the event's publication, later and in another task, joins the request's trace and
-- the NATS message carries it (docs/operations.md#tracing). Not part of the event: the feed
-- never shows it. NULL unless the service exports traces, so it costs nothing then.
--
-- Expand only: a nullable column without a default is a change of the catalogue, no rewrite of
-- the table; the ACCESS EXCLUSIVE lock it takes is held for that moment only, and waits at most
-- lock_timeout behind a long transaction instead of queueing every writer behind it.
SET lock_timeout = '5s';
ALTER TABLE customer_events ADD COLUMN traceparent text;
