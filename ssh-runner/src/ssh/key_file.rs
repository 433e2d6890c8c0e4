//! Reading a host's private key file (`key_path`) without letting the path
//! hurt the runner.
//!
//! The path comes from the proxy's database, so it is outside input: a
//! device (`/dev/zero` grew a runner to 23 GB), a FIFO (blocked a runtime
//! thread until written to), a directory or a huge file must each end in a
//! clear error, quickly. So a key is read only if it is a regular file of at
//! most [`MAX_KEY_FILE`] bytes under the runner's key directory (after
//! symlinks and `..` are resolved), on the blocking pool and within the
//! connect timeout. Errors name the path and a reason, never the contents.

use std::fs::{File, Metadata};
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use russh::keys::PrivateKey;

/// Largest key file read. An RSA-16384 key in OpenSSH format is ~12 KiB.
pub(crate) const MAX_KEY_FILE: u64 = 64 * 1024;

/// Why a key file was not used. `Display` is the user-facing reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum KeyFileError {
    #[error("the path must be absolute")]
    NotAbsolute,
    #[error("the runner's key directory {0} does not exist")]
    NoKeyDir(String),
    #[error("it is outside the runner's key directory {0} (symbolic links and `..` resolved)")]
    OutsideKeyDir(String),
    #[error("no such file")]
    NotFound,
    #[error("permission denied")]
    PermissionDenied,
    #[error("it is {0}, not a regular file")]
    NotRegular(&'static str),
    #[error("it is larger than {} KiB", MAX_KEY_FILE / 1024)]
    TooLarge,
    #[error("reading it took longer than {} ms", .0.as_millis())]
    TimedOut(Duration),
    #[error("the file cannot be read")]
    Unreadable,
    #[error("the key is encrypted (passphrase-protected keys are not supported)")]
    Encrypted,
    #[error("not a valid OpenSSH private key")]
    Invalid,
}

fn io_reason(err: &io::Error) -> KeyFileError {
    match err.kind() {
        io::ErrorKind::NotFound => KeyFileError::NotFound,
        io::ErrorKind::PermissionDenied => KeyFileError::PermissionDenied,
        _ => KeyFileError::Unreadable,
    }
}

/// What a file that is not a regular file is, for the error.
fn kind_of(meta: &Metadata) -> Option<&'static str> {
    let t = meta.file_type();
    if t.is_file() {
        None
    } else if t.is_dir() {
        Some("a directory")
    } else if t.is_fifo() {
        Some("a FIFO (named pipe)")
    } else if t.is_char_device() || t.is_block_device() {
        Some("a device")
    } else if t.is_socket() {
        Some("a socket")
    } else {
        Some("not a file")
    }
}

/// Loads the private key at `path`, which must lie under `key_dir`, within
/// `timeout` and off the async runtime.
pub(crate) async fn load(
    path: &str,
    key_dir: &Path,
    timeout: Duration,
) -> Result<PrivateKey, KeyFileError> {
    let path = PathBuf::from(path);
    let key_dir = key_dir.to_owned();
    let reading = tokio::task::spawn_blocking(move || {
        let text = read(&path, &key_dir)?;
        decode(&text)
    });
    match tokio::time::timeout(timeout, reading).await {
        Ok(Ok(result)) => result,
        Ok(Err(_panicked)) => Err(KeyFileError::Unreadable),
        // The blocking read goes on in its thread (a hung file system) but
        // holds nothing of the session.
        Err(_) => Err(KeyFileError::TimedOut(timeout)),
    }
}

fn decode(text: &[u8]) -> Result<PrivateKey, KeyFileError> {
    let text = std::str::from_utf8(text).map_err(|_| KeyFileError::Invalid)?;
    russh::keys::decode_secret_key(text, None).map_err(|err| match err {
        russh::keys::Error::KeyIsEncrypted => KeyFileError::Encrypted,
        _ => KeyFileError::Invalid,
    })
}

/// Reads the file's bytes after every check (blocking).
fn read(path: &Path, key_dir: &Path) -> Result<Vec<u8>, KeyFileError> {
    if !path.is_absolute() {
        return Err(KeyFileError::NotAbsolute);
    }
    let dir = key_dir
        .canonicalize()
        .map_err(|_| KeyFileError::NoKeyDir(key_dir.display().to_string()))?;
    let outside = || KeyFileError::OutsideKeyDir(key_dir.display().to_string());
    let real = path.canonicalize().map_err(|e| io_reason(&e))?;
    if !real.starts_with(&dir) {
        return Err(outside());
    }
    // Refuse what is no regular file before opening it: opening some
    // devices has effects of its own.
    let meta = std::fs::metadata(&real).map_err(|e| io_reason(&e))?;
    if let Some(kind) = kind_of(&meta) {
        return Err(KeyFileError::NotRegular(kind));
    }
    // Non-blocking, so a FIFO swapped in since cannot hang the open; no
    // controlling terminal; no symlink as the last component.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_NOFOLLOW)
        .open(&real)
        .map_err(|e| io_reason(&e))?;
    // What was opened is what counts: its real path and type, from the
    // descriptor, not from the path checked above.
    if !opened_path(&file).is_none_or(|p| p.starts_with(&dir)) {
        return Err(outside());
    }
    let meta = file.metadata().map_err(|e| io_reason(&e))?;
    if let Some(kind) = kind_of(&meta) {
        return Err(KeyFileError::NotRegular(kind));
    }
    if meta.len() > MAX_KEY_FILE {
        return Err(KeyFileError::TooLarge);
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    // A file that grows after the check is still read only to the cap.
    file.take(MAX_KEY_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| io_reason(&e))?;
    if bytes.len() as u64 > MAX_KEY_FILE {
        return Err(KeyFileError::TooLarge);
    }
    Ok(bytes)
}

/// The path the kernel has for an open file (Linux), if it can tell.
fn opened_path(file: &File) -> Option<PathBuf> {
    use std::os::fd::AsRawFd;
    std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd())).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Dir(PathBuf);

    impl Dir {
        fn new() -> Self {
            let dir = std::env::temp_dir().join(format!("shellway-keys-{}", uuid::Uuid::new_v4()));
            std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
            Self(dir)
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            std::fs::remove_dir_all(&self.0).ok();
        }
    }

    fn read_in(dir: &Dir, path: &Path) -> Result<Vec<u8>, KeyFileError> {
        read(path, &dir.0)
    }

    #[test]
    fn a_regular_file_under_the_key_dir_is_read() {
        let dir = Dir::new();
        let key = dir.0.join("id");
        std::fs::write(&key, b"bytes").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(read_in(&dir, &key), Ok(b"bytes".to_vec()));
        // `..` that stays inside is fine.
        let roundabout = dir.0.join("sub/../id");
        std::fs::create_dir_all(dir.0.join("sub")).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(read_in(&dir, &roundabout), Ok(b"bytes".to_vec()));
    }

    #[test]
    fn devices_fifos_directories_and_sockets_are_refused() {
        let dir = Dir::new();
        assert_eq!(
            read(Path::new("/dev/zero"), Path::new("/dev")),
            Err(KeyFileError::NotRegular("a device"))
        );
        let fifo = dir.0.join("fifo");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        assert!(made.is_ok_and(|s| s.success()), "mkfifo");
        assert_eq!(
            read_in(&dir, &fifo),
            Err(KeyFileError::NotRegular("a FIFO (named pipe)"))
        );
        let sub = dir.0.join("sub");
        std::fs::create_dir_all(&sub).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            read_in(&dir, &sub),
            Err(KeyFileError::NotRegular("a directory"))
        );
        let sock = dir.0.join("sock");
        let _listener = std::os::unix::net::UnixListener::bind(&sock);
        assert_eq!(
            read_in(&dir, &sock),
            Err(KeyFileError::NotRegular("a socket"))
        );
    }

    #[test]
    fn paths_leaving_the_key_dir_are_refused() {
        let dir = Dir::new();
        let inside = dir.0.join("keys");
        std::fs::create_dir_all(&inside).unwrap_or_else(|e| panic!("{e}"));
        let secret = dir.0.join("secret");
        std::fs::write(&secret, b"x").unwrap_or_else(|e| panic!("{e}"));
        let outside = KeyFileError::OutsideKeyDir(inside.display().to_string());
        assert_eq!(read(&secret, &inside), Err(outside.clone()));
        assert_eq!(
            read(&inside.join("../secret"), &inside),
            Err(outside.clone())
        );
        let link = inside.join("link");
        std::os::unix::fs::symlink(&secret, &link).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(read(&link, &inside), Err(outside));
        assert_eq!(
            read(Path::new("relative/id"), &inside),
            Err(KeyFileError::NotAbsolute)
        );
        assert_eq!(
            read(&secret, &dir.0.join("missing")),
            Err(KeyFileError::NoKeyDir(
                dir.0.join("missing").display().to_string()
            ))
        );
    }

    #[test]
    fn a_file_over_the_cap_is_refused() {
        let dir = Dir::new();
        let big = dir.0.join("big");
        std::fs::write(&big, vec![b'a'; MAX_KEY_FILE as usize + 1])
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(read_in(&dir, &big), Err(KeyFileError::TooLarge));
        let exact = dir.0.join("exact");
        std::fs::write(&exact, vec![b'a'; MAX_KEY_FILE as usize]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(read_in(&dir, &exact).map(|b| b.len()), Ok(65536));
    }

    #[tokio::test]
    async fn a_fifo_does_not_block_the_load() {
        let dir = Dir::new();
        let fifo = dir.0.join("fifo");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        assert!(made.is_ok_and(|s| s.success()), "mkfifo");
        let path = fifo.display().to_string();
        let loaded = load(&path, &dir.0, Duration::from_secs(5)).await;
        assert_eq!(
            loaded.err(),
            Some(KeyFileError::NotRegular("a FIFO (named pipe)"))
        );
    }
}
