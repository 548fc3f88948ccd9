-- Recording an event is now a plain INSERT of its two columns, prepared once per connection
-- (src/audit/sink.ts): audit.enqueue cost a plan and a PL/pgSQL call with settings of its own for
-- every event. The privileges stay what they were: the writer role (and so request handlers) may
-- insert (log, body) into the queue and nothing else of the audit schema; the control plane's own
-- connection, which queues the gateway's events and the group commits, gets the same two columns
-- (as it got EXECUTE on the function), whether or not it owns the schema.
GRANT INSERT (log, body) ON audit.queue TO CURRENT_USER;
DROP FUNCTION audit.enqueue(text[], text[]);
