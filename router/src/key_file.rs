//! The journal key file: 32 random bytes as 64 hex digits, in a file only its owner may read.
//! `paymesh gen-key` writes one ([`generate`]); start-up reads it ([`read`]) and refuses one that
//! group or others may read or write, since that key is what keeps every card number in the
//! journal secret.

use std::io::{Read as _, Write as _};
use std::path::Path;

use anyhow::Context as _;

/// Bytes of a journal key.
pub const KEY_BYTES: usize = 32;
/// Longest key file read: 64 hex digits and a line end, with room for stray whitespace.
const KEY_FILE_BYTES_MAX: u64 = 256;
/// Permissions of a key file this program writes: the owner may read and write it.
pub const KEY_FILE_MODE: u32 = 0o600;
/// Permission bits of group and others, none of which a key file may have.
const GROUP_OTHER_BITS: u32 = 0o077;

/// Reads the key in `path`, after checking that only its owner may read or write it.
pub fn read(path: &Path) -> anyhow::Result<[u8; KEY_BYTES]> {
    check_private(path)?;
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(KEY_FILE_BYTES_MAX).read_to_string(&mut text))
        .with_context(|| format!("reading the journal key file {}", path.display()))?;
    let raw = hex::decode(text.trim()).ok().with_context(|| {
        format!(
            "journal key file {}: expected 64 hex digits",
            path.display()
        )
    })?;
    raw.try_into().map_err(|_| {
        anyhow::anyhow!(
            "journal key file {}: expected 64 hex digits (32 bytes)",
            path.display()
        )
    })
}

/// Refuses a key file that group or others may read or write.
#[cfg(unix)]
fn check_private(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let metadata = match std::fs::metadata(path) {
        Ok(metadata) => metadata,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => anyhow::bail!(
            "journal key file {path} does not exist. For a new journal, create it with \
             `paymesh gen-key --out {path}`; for an existing one, restore the key it was written \
             with (a new key cannot read it)",
            path = path.display()
        ),
        Err(e) => {
            return Err(anyhow::Error::new(e)
                .context(format!("reading the journal key file {}", path.display())));
        }
    };
    let mode = metadata.permissions().mode();
    if mode & GROUP_OTHER_BITS != 0 {
        anyhow::bail!(
            "journal key file {path} is readable or writable by group or others (mode {mode:04o}); \
             the key protects every card number in the journal. Restrict it with \
             `chmod 600 {path}` (owned by the user paymesh runs as) and start again",
            path = path.display(),
            mode = mode & 0o7777,
        );
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_path: &Path) -> anyhow::Result<()> {
    Ok(())
}

/// Writes a new random key to `path`, mode 0600, synced. Never overwrites: replacing the key of
/// an existing journal would make its card data unreadable.
pub fn generate(path: &Path) -> anyhow::Result<[u8; KEY_BYTES]> {
    let mut key = [0u8; KEY_BYTES];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut key);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, KEY_FILE_MODE);
    let mut file = options.open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            anyhow::anyhow!(
                "{} exists: a key file is never overwritten (a journal written with it could not \
                 be read any more); choose another path",
                path.display()
            )
        } else {
            anyhow::Error::new(e).context(format!("creating {}", path.display()))
        }
    })?;
    file.write_all(format!("{}\n", hex::encode(key)).as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_key_reads_back_and_is_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.key");
        let key = generate(&path).unwrap();
        assert_eq!(read(&path).unwrap(), key);
        let error = generate(&path).unwrap_err().to_string();
        assert!(error.contains("never overwritten"), "{error}");
        assert_eq!(read(&path).unwrap(), key, "the key changed");
    }

    #[cfg(unix)]
    #[test]
    fn a_missing_key_file_says_how_to_make_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.key");
        let error = read(&path).unwrap_err().to_string();
        assert!(
            error.contains(&format!("paymesh gen-key --out {}", path.display())),
            "{error}"
        );
    }

    #[test]
    fn malformed_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.key");
        generate(&path).unwrap();
        std::fs::write(&path, "abcd\n").unwrap();
        assert!(read(&path).is_err());
        std::fs::write(&path, "zz".repeat(32)).unwrap();
        assert!(read(&path).is_err());
    }

    #[cfg(unix)]
    #[test]
    fn a_key_file_others_may_read_is_refused_with_the_fix() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.key");
        generate(&path).unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        for mode in [0o644, 0o640, 0o604, 0o620, 0o602] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            let error = read(&path).unwrap_err().to_string();
            assert!(
                error.contains(&format!("chmod 600 {}", path.display()))
                    && error.contains(&format!("{mode:04o}")),
                "{error}"
            );
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).unwrap();
        assert!(read(&path).is_ok(), "owner read-only is fine");
    }
}
