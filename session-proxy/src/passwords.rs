//! Passwords: argon2id on a few threads of their own, the equal-time check
//! for unknown users, and the policy every new password meets.
//!
//! One argon2 run holds about 19 MiB for its duration. Runs are admitted by
//! a semaphore (`SHELLWAY_HASH_CONCURRENCY`) and executed on that many
//! dedicated threads: a burst of logins waits briefly, then is told to come
//! back (`busy`), instead of growing the process by 19 MiB a request.
//!
//! Each run's memory is ours, not the argon2 crate's: it reserves more than
//! glibc's largest mmap threshold, so the allocator maps it on its own and
//! unmaps it when the run ends. Left to the crate (a 64-byte-aligned
//! `vec!` of exactly 19 MiB), glibc served every run from a thread arena
//! and, alignment padding defeating reuse, kept each one: RSS grew ~19 MiB
//! per sign-in until the arenas filled (700 MB after 40 sign-ins).

use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use argon2::password_hash::{Output, ParamsString, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Shortest new password, in characters.
const MIN_PASSWORD: usize = 12;
/// Longest new password, in characters (hashing cost grows with it).
const MAX_PASSWORD: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub(crate) enum HashError {
    #[error("too many password checks at once")]
    Busy,
    #[error("password hashing failed: {0}")]
    Hash(String),
    #[error("the password hashing threads are gone")]
    Gone,
}

type Job = Box<dyn FnOnce() + Send>;

/// The bounded password hasher; cheap to clone.
#[derive(Clone)]
pub(crate) struct Hasher {
    permits: Arc<Semaphore>,
    wait: Duration,
    jobs: SyncSender<Job>,
}

impl std::fmt::Debug for Hasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hasher")
            .field("available", &self.permits.available_permits())
            .field("wait", &self.wait)
            .finish()
    }
}

/// Leave to run one hash: held until that hash is done, even when the
/// request that asked for it is gone.
pub(crate) struct Admission {
    permit: OwnedSemaphorePermit,
    jobs: SyncSender<Job>,
}

impl Hasher {
    /// Starts `threads` hashing threads; a caller waits at most `wait` for
    /// one of them. The threads end when the last clone is dropped.
    pub(crate) fn new(threads: usize, wait: Duration) -> std::io::Result<Self> {
        let threads = threads.max(1);
        let (jobs, queue) = sync_channel::<Job>(threads);
        let queue = Arc::new(Mutex::new(queue));
        for i in 0..threads {
            let queue = queue.clone();
            std::thread::Builder::new()
                .name(format!("shellway-hash-{i}"))
                .spawn(move || work(&queue))?;
        }
        Ok(Self {
            permits: Arc::new(Semaphore::new(threads)),
            wait,
            jobs,
        })
    }

    /// Waits (briefly) for a free hashing thread.
    pub(crate) async fn admit(&self) -> Result<Admission, HashError> {
        match tokio::time::timeout(self.wait, self.permits.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(Admission {
                permit,
                jobs: self.jobs.clone(),
            }),
            Ok(Err(_)) => Err(HashError::Gone),
            Err(_) => Err(HashError::Busy),
        }
    }

    /// Hashes a new password (admission included).
    pub(crate) async fn hash(&self, password: String) -> Result<String, HashError> {
        self.admit().await?.hash(password).await
    }
}

fn work(queue: &Mutex<Receiver<Job>>) {
    loop {
        let job = match queue.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        match job {
            Ok(job) => job(),
            Err(_) => return,
        }
    }
}

impl Admission {
    async fn run<T: Send + 'static>(
        self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, HashError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let permit = self.permit;
        let job: Job = Box::new(move || {
            let _ = tx.send(f());
            drop(permit);
        });
        // Never full: there are as many slots as permits.
        match self.jobs.try_send(job) {
            Ok(()) => rx.await.map_err(|_| HashError::Gone),
            Err(TrySendError::Full(_)) => Err(HashError::Busy),
            Err(TrySendError::Disconnected(_)) => Err(HashError::Gone),
        }
    }

    /// Hashes a new password with argon2id and a random salt.
    pub(crate) async fn hash(self, password: String) -> Result<String, HashError> {
        self.run(move || hash_now(&password)).await?
    }

    /// Checks a password against its stored hash; with no stored hash
    /// (unknown user) it spends the same time on a dummy hash, so timing
    /// does not tell which users exist.
    pub(crate) async fn verify(self, stored: Option<String>, password: String) -> bool {
        self.run(move || {
            let (hash, real) = match stored.as_deref() {
                Some(h) => (h, true),
                None => (dummy_hash().as_str(), false),
            };
            verify_now(hash, password.as_bytes()) && real
        })
        .await
        .unwrap_or(false)
    }
}

/// Blocks reserved for one run: 33 MiB, above glibc's largest dynamic mmap
/// threshold (32 MiB), so the buffer is always mapped by itself and given
/// back to the system when dropped. Only the blocks used are touched.
const RESERVE_BLOCKS: usize = 33 * 1024;
/// Stored hashes asking for more memory are refused (ours use 19 MiB).
const MAX_BLOCKS: usize = 256 * 1024;

/// argon2 over a buffer of its own (see [`RESERVE_BLOCKS`]).
fn argon2_into(
    argon: &Argon2<'_>,
    blocks: usize,
    password: &[u8],
    salt: &[u8],
    out: &mut [u8],
) -> Result<(), argon2::Error> {
    let mut memory = Vec::with_capacity(blocks.max(RESERVE_BLOCKS));
    memory.resize(blocks, Block::new());
    argon.hash_password_into_with_memory(password, salt, out, memory)
}

/// argon2id with the crate's default parameters and a random salt, as a
/// PHC string (`$argon2id$v=19$m=19456,t=2,p=1$…`).
fn hash_now(password: &str) -> Result<String, HashError> {
    let fail = |e: argon2::password_hash::Error| HashError::Hash(e.to_string());
    let params = Params::default();
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
    let raw_salt: [u8; 16] = rand::random();
    let salt = SaltString::encode_b64(&raw_salt).map_err(fail)?;
    let output = Output::init_with(Params::DEFAULT_OUTPUT_LEN, |out| {
        Ok(argon2_into(
            &argon,
            params.block_count(),
            password.as_bytes(),
            &raw_salt,
            out,
        )?)
    })
    .map_err(fail)?;
    let hash = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params).map_err(fail)?,
        salt: Some(salt.as_salt()),
        hash: Some(output),
    };
    Ok(hash.to_string())
}

/// Whether `password` matches a stored PHC hash (any argon2 variant).
fn verify_now(stored: &str, password: &[u8]) -> bool {
    let Ok(hash) = PasswordHash::new(stored) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (hash.salt, hash.hash) else {
        return false;
    };
    let Ok(algorithm) = Algorithm::try_from(hash.algorithm) else {
        return false;
    };
    let Ok(version) = hash.version.map(Version::try_from).transpose() else {
        return false;
    };
    let Ok(params) = Params::try_from(&hash) else {
        return false;
    };
    let blocks = params.block_count();
    if blocks > MAX_BLOCKS {
        return false;
    }
    let mut raw_salt = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut raw_salt) else {
        return false;
    };
    let argon = Argon2::new(algorithm, version.unwrap_or_default(), params);
    // Output's equality is constant-time.
    Output::init_with(expected.len(), |out| {
        Ok(argon2_into(&argon, blocks, password, salt, out)?)
    })
    .is_ok_and(|computed| computed == expected)
}

fn dummy_hash() -> &'static String {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| hash_now("not the password of anyone").unwrap_or_default())
}

/// Why a new password is refused, written for the person choosing it.
pub(crate) fn check_new(username: &str, password: &str) -> Result<(), String> {
    let chars = password.chars().count();
    if chars < MIN_PASSWORD {
        return Err(format!(
            "the password must have at least {MIN_PASSWORD} characters"
        ));
    }
    if chars > MAX_PASSWORD {
        return Err(format!(
            "the password must have at most {MAX_PASSWORD} characters"
        ));
    }
    if password.trim().to_lowercase() == username.trim().to_lowercase() {
        return Err("the password must not be the username".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn passwords_verify_and_unknown_users_fail() {
        let hasher = Hasher::new(2, Duration::from_secs(30)).unwrap_or_else(|e| panic!("{e}"));
        let hash = hasher.hash("pw".into()).await.unwrap_or_default();
        assert!(hash.starts_with("$argon2id$"));
        let check = |stored: Option<String>, pw: &str| {
            let (hasher, pw) = (hasher.clone(), pw.to_owned());
            async move {
                let admitted = hasher.admit().await.unwrap_or_else(|e| panic!("{e}"));
                admitted.verify(stored, pw).await
            }
        };
        assert!(check(Some(hash.clone()), "pw").await);
        assert!(!check(Some(hash), "nope").await);
        assert!(!check(None, "not the password of anyone").await);
        assert!(!check(Some("not a hash".into()), "pw").await);
    }

    #[test]
    fn our_hashes_and_the_argon2_crates_verify_each_other() {
        use argon2::password_hash::{PasswordHasher, PasswordVerifier};
        let ours = hash_now("correct horse").unwrap_or_default();
        let parsed = PasswordHash::new(&ours).unwrap_or_else(|e| panic!("{e}"));
        assert!(Argon2::default()
            .verify_password(b"correct horse", &parsed)
            .is_ok());
        // Hashes stored before this module existed still verify.
        let salt = SaltString::encode_b64(b"0123456789abcdef").unwrap_or_else(|e| panic!("{e}"));
        let theirs = Argon2::default()
            .hash_password(b"correct horse", &salt)
            .map(|h| h.to_string())
            .unwrap_or_default();
        assert!(verify_now(&theirs, b"correct horse"));
        assert!(!verify_now(&theirs, b"correct horsE"));
        assert_eq!(ours.len(), theirs.len());
    }

    #[test]
    fn a_stored_hash_asking_for_gigabytes_is_refused_not_run() {
        let greedy = "$argon2id$v=19$m=4194304,t=1,p=1$MDEyMzQ1Njc4OWFiY2RlZg$\
                      Pl1sk2m9Qx9mbg0UZ3o5MH8CxOxhOI3PKlFJmC8NGD8";
        let started = std::time::Instant::now();
        assert!(!verify_now(greedy, b"x"));
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "4 GiB were not filled"
        );
    }

    #[tokio::test]
    async fn a_caller_waits_briefly_for_a_hashing_thread_then_is_told_busy() {
        let hasher = Hasher::new(1, Duration::from_millis(50)).unwrap_or_else(|e| panic!("{e}"));
        let held = hasher.admit().await.unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(hasher.admit().await, Err(HashError::Busy)));
        drop(held);
        assert!(hasher.admit().await.is_ok(), "a returned permit is reused");
    }

    #[test]
    fn new_passwords_are_long_and_not_the_username() {
        assert!(check_new("alice", "correct horse battery staple").is_ok());
        assert!(check_new("alice", "alice-password").is_ok());
        assert!(check_new("alice", "short-pw").is_err());
        assert!(check_new("alice", "ünïcödé-ok-✓").is_ok());
        assert!(
            check_new("alice", &"é".repeat(11)).is_err(),
            "characters, not bytes"
        );
        assert!(check_new("administrator", "Administrator").is_err());
        assert!(check_new("alice", &"x".repeat(MAX_PASSWORD + 1)).is_err());
    }
}
