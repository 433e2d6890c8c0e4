-- The credential vault: SSH private keys and passwords, stored only as age
-- files sealed to the runners' X25519 key(s). The proxy can seal but not
-- open them; no column ever holds plaintext.
CREATE TABLE credentials (
    id          uuid PRIMARY KEY,
    name        text NOT NULL UNIQUE,
    kind        text NOT NULL CHECK (kind IN ('private_key', 'password')),
    -- An age v1 file (binary), encrypted to `recipient`.
    ciphertext  bytea NOT NULL,
    -- `SHA256:…` of the public key (private keys); null for passwords.
    fingerprint text,
    -- The `age1…` recipient(s) it is sealed to, comma-separated.
    recipient   text NOT NULL,
    created_by  uuid REFERENCES users (id) ON DELETE SET NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    CHECK ((kind = 'private_key') = (fingerprint IS NOT NULL))
);

-- An account names its stored credential (auth_method `stored_key` or
-- `password`); the host's own column mirrors its first account's, as its
-- username and auth_method do. A credential in use cannot be deleted.
ALTER TABLE host_accounts
    ADD CONSTRAINT host_accounts_credential FOREIGN KEY (credential_id) REFERENCES credentials (id);
ALTER TABLE hosts ADD COLUMN credential_id uuid REFERENCES credentials (id);
