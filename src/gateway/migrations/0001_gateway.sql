CREATE SCHEMA gateway;

-- Responses to writes sent with an Idempotency-Key, replayed for 24 h.
CREATE TABLE gateway.idempotency_keys (
  tenant text NOT NULL,
  principal text NOT NULL,
  key text NOT NULL,
  fingerprint text NOT NULL,
  status integer NOT NULL,
  body jsonb,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant, principal, key)
);
CREATE INDEX idempotency_keys_created ON gateway.idempotency_keys (created_at);
