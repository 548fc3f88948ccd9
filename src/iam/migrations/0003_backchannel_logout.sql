-- OpenID Connect Back-Channel Logout for sessions ended outside the OP's logout endpoint (admin
-- revocation, user disabled or deleted): written in the transaction that ends the session, sent
-- after it commits (NOTIFY iam_backchannel), retried with backoff.
CREATE TABLE iam.backchannel_logouts (
  id bigserial PRIMARY KEY,
  realm text NOT NULL REFERENCES iam.realms ON DELETE CASCADE,
  client_id text NOT NULL,
  -- The user (sub of the logout token) and the session id the client knows (sid).
  account_id text NOT NULL,
  sid text NOT NULL,
  attempts integer NOT NULL DEFAULT 0,
  next_attempt_at timestamptz NOT NULL DEFAULT now(),
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX backchannel_logouts_due ON iam.backchannel_logouts (next_attempt_at);
