//! Host key verification: the key a server presents against the keys pinned
//! for that host, under the host's policy. Pure logic, no I/O.

use russh::keys::{HashAlg, PublicKey};
use shellway_common::HostKeyPolicy;

/// What the pinned keys say about a presented key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum KeyCheck {
    /// One of the pinned keys is the presented key.
    Valid,
    /// Keys are pinned and none of them is the presented key.
    Mismatch {
        presented: String,
        pinned: Vec<String>,
    },
    /// Nothing is pinned for this host.
    Unknown,
}

/// `SHA256:…` fingerprint of a key, as `ssh-keygen -l` prints it.
pub(crate) fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

/// `<algorithm> <base64>` of a key, without a comment.
pub(crate) fn openssh_line(key: &PublicKey) -> String {
    let full = key.to_openssh().unwrap_or_default();
    full.split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Compares `presented` with the pinned OpenSSH lines (`ssh-ed25519 AAAA… [comment]`).
/// A pinned line that does not parse never matches; it is named by its text.
pub(crate) fn check(presented: &PublicKey, pinned: &[String]) -> KeyCheck {
    let pinned: Vec<&str> = pinned
        .iter()
        .map(|line| line.trim())
        .filter(|line| !line.is_empty())
        .collect();
    if pinned.is_empty() {
        return KeyCheck::Unknown;
    }
    let mut fingerprints = Vec::with_capacity(pinned.len());
    for line in pinned {
        match PublicKey::from_openssh(line) {
            Ok(key) if key.key_data() == presented.key_data() => return KeyCheck::Valid,
            Ok(key) => fingerprints.push(fingerprint(&key)),
            Err(_) => fingerprints.push(format!("unparsable pinned key {line:?}")),
        }
    }
    KeyCheck::Mismatch {
        presented: fingerprint(presented),
        pinned: fingerprints,
    }
}

/// Whether a policy lets the connection go on with this check result.
pub(crate) fn accepts(policy: HostKeyPolicy, check: &KeyCheck) -> bool {
    match (policy, check) {
        (_, KeyCheck::Valid) => true,
        (HostKeyPolicy::Off, _) => true,
        (HostKeyPolicy::Tofu, KeyCheck::Unknown) => true,
        (HostKeyPolicy::Tofu | HostKeyPolicy::Strict, KeyCheck::Mismatch { .. }) => false,
        (HostKeyPolicy::Strict, KeyCheck::Unknown) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY_A: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHCRxub+90CIeyFS6zR5sSNbl9gZCjEgBrQ4SO0ehmuZ c1";
    const FP_A: &str = "SHA256:P1emLiE9dO0Ln79PcZQsvkCygdSIvS2kMIUJgoa9SEg";
    const KEY_B: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHioqH/NzQXn+KZHE+Rv6K7eXkB2NiQRytuEDovn5QYx";
    const FP_B: &str = "SHA256:0PKArHaXKw/Ay1yKjgolt21qcwftaLThIUGqhbF+/4U";

    fn key(line: &str) -> PublicKey {
        PublicKey::from_openssh(line).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn fingerprints_match_ssh_keygen() {
        assert_eq!(fingerprint(&key(KEY_A)), FP_A);
        assert_eq!(
            openssh_line(&key(KEY_A)),
            KEY_A.trim_end_matches(" c1").to_owned()
        );
    }

    #[test]
    fn a_pinned_key_is_valid_with_or_without_comment() {
        assert_eq!(check(&key(KEY_A), &[KEY_A.into()]), KeyCheck::Valid);
        let bare = KEY_A.trim_end_matches(" c1").to_owned();
        assert_eq!(check(&key(KEY_A), &[KEY_B.into(), bare]), KeyCheck::Valid);
    }

    #[test]
    fn nothing_pinned_is_unknown() {
        assert_eq!(check(&key(KEY_A), &[]), KeyCheck::Unknown);
        assert_eq!(check(&key(KEY_A), &["  ".into()]), KeyCheck::Unknown);
    }

    #[test]
    fn a_different_key_is_a_mismatch_naming_both_fingerprints() {
        let result = check(&key(KEY_A), &[KEY_B.into(), "garbage".into()]);
        assert_eq!(
            result,
            KeyCheck::Mismatch {
                presented: FP_A.into(),
                pinned: vec![FP_B.into(), "unparsable pinned key \"garbage\"".into()],
            }
        );
    }

    #[test]
    fn policies_decide_what_passes() {
        let mismatch = check(&key(KEY_A), &[KEY_B.into()]);
        use HostKeyPolicy::*;
        assert!(accepts(Strict, &KeyCheck::Valid));
        assert!(!accepts(Strict, &KeyCheck::Unknown));
        assert!(!accepts(Strict, &mismatch));
        assert!(accepts(Tofu, &KeyCheck::Unknown));
        assert!(!accepts(Tofu, &mismatch));
        assert!(accepts(Off, &mismatch));
    }
}
