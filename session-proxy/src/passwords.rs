//! Passwords: argon2id on a few threads of their own, the equal-time check
//! for unknown users, and the policy every new password meets.
//!
//! One argon2 run holds about 19 MiB for its duration. Runs are admitted by
//! a semaphore (`SHELLWAY_HASH_CONCURRENCY`) and executed on that many
//! dedicated threads: a burst of logins waits briefly, then is told to come
//! back (`busy`), instead of growing the process by 19 MiB a request. The
//! dedicated threads also bound what the allocator keeps afterwards: glibc
//! caches freed memory per thread arena, so N hashing threads leave at most
//! about N runs' worth cached, where tokio's blocking pool (up to 512
//! threads) leaves a copy for every thread that ever hashed.

use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Shortest new password, in characters.
pub(crate) const MIN_PASSWORD: usize = 12;
/// Longest new password, in characters (hashing cost grows with it).
pub(crate) const MAX_PASSWORD: usize = 1024;

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
            let ok = PasswordHash::new(hash).is_ok_and(|parsed| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &parsed)
                    .is_ok()
            });
            ok && real
        })
        .await
        .unwrap_or(false)
    }
}

fn hash_now(password: &str) -> Result<String, HashError> {
    let salt = SaltString::encode_b64(&rand::random::<[u8; 16]>())
        .map_err(|e| HashError::Hash(e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| HashError::Hash(e.to_string()))
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
