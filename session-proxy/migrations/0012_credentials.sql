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

-- Until host accounts carry credentials, a host names its stored one
-- (auth_method `stored_key` or `password`). A credential in use cannot be
-- deleted.
ALTER TABLE hosts ADD COLUMN credential_id uuid REFERENCES credentials (id);
