//! Validation of a host as a client sends it. Every refusal names the field
//! at fault; nothing that reaches a runner is taken on trust.

use shellway_common::api::hosts::HostSpec;
use shellway_common::api::Sent;
use shellway_common::HostKeyPolicy;

use crate::error::ApiError;

/// A host that passed validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HostInput {
    pub name: String,
    pub hostname: String,
    pub port: u16,
    pub username: String,
    pub auth_method: AuthKind,
    pub key_path: Option<String>,
    pub credential_id: Option<uuid::Uuid>,
    pub host_key_policy: HostKeyPolicy,
    pub host_keys: Vec<String>,
    pub labels: crate::store::hosts::Labels,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AuthKind {
    KeyPath,
    Agent,
    StoredKey,
    Password,
}

impl AuthKind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::KeyPath => "key_path",
            Self::Agent => "agent",
            Self::StoredKey => "stored_key",
            Self::Password => "password",
        }
    }
}

/// Key types a runner can verify.
const KEY_ALGORITHMS: [&str; 8] = [
    "ssh-ed25519",
    "ssh-rsa",
    "rsa-sha2-256",
    "rsa-sha2-512",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
];

fn string(v: Sent<String>, field: &'static str) -> Result<Option<String>, ApiError> {
    match v {
        Sent::Missing => Ok(None),
        Sent::Value(s) => Ok(Some(s)),
        Sent::WrongType => Err(ApiError::invalid(
            field,
            format!("{field} must be a string"),
        )),
    }
}

fn required(v: Sent<String>, field: &'static str) -> Result<String, ApiError> {
    string(v, field)?.ok_or_else(|| ApiError::invalid(field, format!("{field} is required")))
}

/// Validation errors gathered so every field at fault is reported at once.
#[derive(Default)]
struct Errors(Vec<ApiError>);

impl Errors {
    fn take<T>(&mut self, result: Result<T, ApiError>) -> Option<T> {
        result.map_err(|e| self.0.push(e)).ok()
    }
}

/// Validates every field, naming each one at fault.
pub(crate) fn parse(spec: HostSpec) -> Result<HostInput, ApiError> {
    let mut errs = Errors::default();
    let name = errs.take(required(spec.name, "name").and_then(|n| check_name(&n).map(|()| n)));
    let hostname =
        errs.take(required(spec.hostname, "hostname").and_then(|h| check_hostname(&h).map(|()| h)));
    let port = errs.take(parse_port(&spec.port));
    let username =
        errs.take(required(spec.username, "username").and_then(|u| check_username(&u).map(|()| u)));
    let auth_method = errs.take(parse_auth_method(spec.auth_method));
    let key_path = errs.take(parse_key_path(spec.key_path, auth_method));
    let credential_id = errs.take(parse_credential_id(spec.credential_id, auth_method));
    let host_key_policy = errs.take(parse_policy(spec.host_key_policy));
    let host_keys = errs.take(parse_host_keys(spec.host_keys));
    let labels = errs.take(parse_labels(spec.labels));
    if host_key_policy == Some(HostKeyPolicy::Strict)
        && host_keys.as_ref().is_some_and(Vec::is_empty)
    {
        // Such a host could never connect: nothing would match.
        errs.0.push(ApiError::invalid(
            "host_keys",
            "the strict policy needs a pinned host key: fetch it (Fetch host key, \
             or POST /api/hosts/scan) and compare its fingerprint, or choose tofu",
        ));
    }
    if let Some(err) = ApiError::all(errs.0) {
        return Err(err);
    }
    let (
        Some(name),
        Some(hostname),
        Some(port),
        Some(username),
        Some(auth_method),
        Some(key_path),
        Some(credential_id),
        Some(host_key_policy),
        Some(host_keys),
        Some(labels),
    ) = (
        name,
        hostname,
        port,
        username,
        auth_method,
        key_path,
        credential_id,
        host_key_policy,
        host_keys,
        labels,
    )
    else {
        return Err(ApiError::invalid("body", "the host is not valid"));
    };
    Ok(HostInput {
        name,
        hostname,
        port,
        username,
        auth_method,
        key_path,
        credential_id,
        host_key_policy,
        host_keys,
        labels,
    })
}

/// Labels: at most 32, keys of 1-64 `A-Z a-z 0-9 . _ / -`, values of at
/// most 128 printable characters.
pub(crate) fn parse_labels(
    v: Sent<crate::store::hosts::Labels>,
) -> Result<crate::store::hosts::Labels, ApiError> {
    let labels = match v {
        Sent::Missing => return Ok(Default::default()),
        Sent::Value(l) => l,
        Sent::WrongType => {
            return Err(ApiError::invalid(
                "labels",
                "labels must be an object of string values",
            ))
        }
    };
    check_labels(&labels)?;
    Ok(labels)
}

pub(crate) fn check_labels(labels: &crate::store::hosts::Labels) -> Result<(), ApiError> {
    match crate::service::access::labels_problem(labels) {
        Some(problem) => Err(ApiError::invalid("labels", problem)),
        None => Ok(()),
    }
}

fn parse_auth_method(v: Sent<String>) -> Result<AuthKind, ApiError> {
    match required(v, "auth_method")?.as_str() {
        "key_path" => Ok(AuthKind::KeyPath),
        "agent" => Ok(AuthKind::Agent),
        "stored_key" => Ok(AuthKind::StoredKey),
        "password" => Ok(AuthKind::Password),
        other => Err(ApiError::invalid(
            "auth_method",
            format!("unknown auth_method {other:?} (use key_path, agent, stored_key or password)"),
        )),
    }
}

/// The key file, required with `key_path` authentication (not checked
/// when the method itself is invalid).
fn parse_key_path(
    v: Sent<String>,
    auth_method: Option<AuthKind>,
) -> Result<Option<String>, ApiError> {
    let key_path = string(v, "key_path")?;
    match auth_method {
        Some(AuthKind::KeyPath) => {
            let path = key_path.ok_or_else(|| {
                ApiError::invalid("key_path", "key_path is required with auth_method key_path")
            })?;
            check_key_path(&path)?;
            Ok(Some(path))
        }
        _ => Ok(None),
    }
}

/// The stored credential, required with `stored_key` and `password`
/// (that it exists and is of the right kind is checked when saving).
fn parse_credential_id(
    v: Sent<String>,
    auth_method: Option<AuthKind>,
) -> Result<Option<uuid::Uuid>, ApiError> {
    let id = string(v, "credential_id")?;
    match auth_method {
        Some(AuthKind::StoredKey | AuthKind::Password) => {
            let id = id.ok_or_else(|| {
                ApiError::invalid(
                    "credential_id",
                    "credential_id is required with auth_method stored_key or password",
                )
            })?;
            id.parse::<uuid::Uuid>()
                .map(Some)
                .map_err(|_| ApiError::invalid("credential_id", "credential_id must be a UUID"))
        }
        _ => Ok(None),
    }
}

fn parse_policy(v: Sent<String>) -> Result<HostKeyPolicy, ApiError> {
    match string(v, "host_key_policy")? {
        None => Ok(HostKeyPolicy::Strict),
        Some(p) => p
            .parse::<HostKeyPolicy>()
            .map_err(|msg| ApiError::invalid("host_key_policy", msg)),
    }
}

fn check_name(name: &str) -> Result<(), ApiError> {
    let ok = (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    ok.then_some(()).ok_or_else(|| {
        ApiError::invalid(
            "name",
            "name must be 1 to 64 characters of A-Z, a-z, 0-9, '.', '_' or '-'",
        )
    })
}

pub(crate) fn check_hostname(host: &str) -> Result<(), ApiError> {
    let ok = (1..=253).contains(&host.len())
        && !host.starts_with('-')
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-_:[]%".contains(&b));
    ok.then_some(()).ok_or_else(|| {
        ApiError::invalid(
            "hostname",
            "hostname must be a DNS name or an IP address (at most 253 characters, no spaces)",
        )
    })
}

pub(crate) fn parse_port(v: &Sent<u64>) -> Result<u16, ApiError> {
    match v {
        Sent::Missing => Some(22),
        Sent::Value(p) => u16::try_from(*p).ok().filter(|p| *p > 0),
        Sent::WrongType => None,
    }
    .ok_or_else(|| ApiError::invalid("port", "port must be between 1 and 65535"))
}

pub(crate) fn check_username(user: &str) -> Result<(), ApiError> {
    let first_ok = user
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_');
    let ok = first_ok
        && user.len() <= 32
        && user
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    ok.then_some(()).ok_or_else(|| {
        ApiError::invalid(
            "username",
            "username must be 1 to 32 characters of A-Z, a-z, 0-9, '.', '_' or '-', not starting with '.' or '-'",
        )
    })
}

/// Refuses paths that are plainly wrong. The runner stays the authority:
/// it reads keys only as regular files under its key directory.
pub(crate) fn check_key_path(path: &str) -> Result<(), ApiError> {
    let problem = if !path.starts_with('/') {
        Some("key_path must be an absolute path on the runner (starting with /)")
    } else if path.len() > 4096 {
        Some("key_path is longer than 4096 bytes")
    } else if path.contains('\0') {
        Some("key_path contains a NUL byte")
    } else if path.chars().any(char::is_control) {
        Some("key_path contains a control character")
    } else if path.split('/').any(|part| part == "..") {
        Some("key_path must not contain `..`")
    } else {
        None
    };
    match problem {
        Some(message) => Err(ApiError::invalid("key_path", message)),
        None => Ok(()),
    }
}

fn parse_host_keys(v: Sent<Vec<Sent<String>>>) -> Result<Vec<String>, ApiError> {
    let items = match v {
        Sent::Missing => return Ok(Vec::new()),
        Sent::Value(items) => items,
        Sent::WrongType => {
            return Err(ApiError::invalid(
                "host_keys",
                "host_keys must be a list of strings",
            ))
        }
    };
    if items.len() > 16 {
        return Err(ApiError::invalid("host_keys", "at most 16 host keys"));
    }
    items
        .into_iter()
        .map(|item| {
            let key = match item {
                Sent::Value(key) => normalize_host_key(&key),
                Sent::Missing | Sent::WrongType => None,
            };
            key.ok_or_else(|| {
                ApiError::invalid(
                    "host_keys",
                    "each host key must look like \"ssh-ed25519 AAAA… [comment]\"",
                )
            })
        })
        .collect()
}

/// `"<alg> <base64>[ comment]"` → `"<alg> <base64>"`, or `None`.
fn normalize_host_key(key: &str) -> Option<String> {
    if key.len() > 16 * 1024 {
        return None;
    }
    let mut parts = key.split_whitespace();
    let alg = parts.next()?;
    let blob = parts.next()?;
    (KEY_ALGORITHMS.contains(&alg) && is_base64(blob)).then(|| format!("{alg} {blob}"))
}

fn is_base64(s: &str) -> bool {
    let body = s.trim_end_matches('=');
    s.len().is_multiple_of(4)
        && s.len() - body.len() <= 2
        && body.len() >= 16
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn parse(body: &Value) -> Result<HostInput, ApiError> {
        let spec: HostSpec =
            serde_json::from_value(body.clone()).unwrap_or_else(|e| panic!("{body}: {e}"));
        super::parse(spec)
    }

    const KEY: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl";

    fn valid() -> Value {
        json!({
            "name": "web-1.prod",
            "hostname": "10.0.0.1",
            "port": 2222,
            "username": "deploy",
            "auth_method": "key_path",
            "key_path": "/keys/id_ed25519",
            "host_key_policy": "tofu",
            "host_keys": [format!("{KEY} root@web1")],
        })
    }

    fn field_of(body: Value) -> Option<String> {
        parse(&body)
            .err()
            .and_then(|e| e.field)
            .map(|f| f.into_owned())
    }

    #[test]
    fn a_valid_host_parses_and_keys_lose_their_comment() {
        let h = parse(&valid()).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(h.port, 2222);
        assert_eq!(h.host_keys, vec![KEY.to_owned()]);
        assert_eq!(h.host_key_policy, HostKeyPolicy::Tofu);
    }

    #[test]
    fn each_bad_field_is_named() {
        let cases = [
            ("port", json!(0)),
            ("port", json!(70000)),
            ("port", json!("22")),
            ("name", json!("web; rm -rf /")),
            ("name", json!("")),
            ("name", json!("x".repeat(65))),
            ("hostname", json!("bad host")),
            ("hostname", json!("evil\n.com")),
            ("hostname", json!("-oProxyCommand=x")),
            ("username", json!("root$(reboot)")),
            ("username", json!("-l")),
            ("username", json!("a b")),
            ("host_key_policy", json!("sometimes")),
            ("host_keys", json!(["not a key"])),
            ("host_keys", json!(["ssh-ed25519 !!!notbase64!!!"])),
            ("host_keys", json!("ssh-ed25519 AAAA")),
            ("key_path", json!("relative/key")),
            ("key_path", json!("/keys/../etc/shadow")),
            ("key_path", json!("/keys/..")),
            ("key_path", json!("/keys/id\u{0}")),
            ("key_path", json!("/keys/id\n")),
            ("auth_method", json!("magic")),
        ];
        for (field, value) in cases {
            let mut body = valid();
            body[field] = value.clone();
            assert_eq!(field_of(body).as_deref(), Some(field), "{field}={value}");
        }
    }

    #[test]
    fn key_path_errors_say_what_is_wrong() {
        let message = |path: &str| {
            let mut body = valid();
            body["key_path"] = json!(path);
            parse(&body).err().map(|e| e.message).unwrap_or_default()
        };
        assert!(message("id_ed25519").contains("absolute"));
        assert!(message("/keys/../id").contains(".."));
        assert!(message("/keys/\0id").contains("NUL"));
        // `..` inside a name is a name.
        let mut body = valid();
        body["key_path"] = json!("/keys/id..old");
        assert!(parse(&body).is_ok());
    }

    #[test]
    fn key_path_is_required_only_for_key_path_auth() {
        let mut body = valid();
        body.as_object_mut().map(|o| o.remove("key_path"));
        assert_eq!(field_of(body.clone()).as_deref(), Some("key_path"));
        body["auth_method"] = json!("agent");
        assert!(parse(&body).is_ok());
    }

    #[test]
    fn strict_with_no_pinned_key_is_refused_on_host_keys() {
        let mut body = valid();
        body["host_key_policy"] = json!("strict");
        body["host_keys"] = json!([]);
        let err = parse(&body).err().unwrap_or_else(|| panic!("refused"));
        assert_eq!(err.field.as_deref(), Some("host_keys"));
        assert!(err.message.contains("Fetch host key"), "{}", err.message);
        body.as_object_mut().map(|o| o.remove("host_key_policy"));
        assert_eq!(
            field_of(body).as_deref(),
            Some("host_keys"),
            "strict is the default"
        );
    }

    #[test]
    fn every_bad_field_is_reported_at_once() {
        let body = json!({"name": "", "hostname": "bad host", "port": 0, "username": "ok",
                          "auth_method": "key_path", "host_key_policy": "tofu"});
        let err = parse(&body).err().unwrap_or_else(|| panic!("refused"));
        let fields: Vec<&str> = err.fields.iter().map(|f| f.field.as_ref()).collect();
        assert_eq!(fields, ["name", "hostname", "port", "key_path"]);
        assert_eq!(err.field.as_deref(), Some("name"));
    }

    #[test]
    fn stored_credentials_need_a_credential_id() {
        let mut body = valid();
        body["auth_method"] = json!("password");
        assert_eq!(field_of(body.clone()).as_deref(), Some("credential_id"));
        body["credential_id"] = json!("not-a-uuid");
        assert_eq!(field_of(body.clone()).as_deref(), Some("credential_id"));
        body["credential_id"] = json!("018f0000-0000-7000-8000-000000000000");
        let h = parse(&body).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(h.auth_method, AuthKind::Password);
        assert_eq!(h.key_path, None);
        assert!(h.credential_id.is_some());
    }
}
