//! Validation of shmkit names and their translation to OS object names.
//!
//! A *shmkit name* (`"sensor-feed"`) is portable: it is checked against the rules of
//! every supported platform and gets a prefix (`shmkit.`) so that shmkit's objects can
//! be listed and never collide with other programs' objects. A *raw name* is the exact
//! OS name of an object made by another program (`"/psm_1a2b"` on Linux,
//! `"Local\\MyMap"` on Windows) and is only checked against the current platform.

use crate::error::{Error, Result};

/// Prefix of every OS object created for a shmkit name.
pub const PREFIX: &str = "shmkit.";

/// Longest shmkit name in bytes. Chosen so that the prefixed name fits every
/// platform's limit except macOS's 31-byte `shm_open` limit, which is checked
/// separately and reported as such.
pub const MAX_NAME_LEN: usize = 200;

/// Windows object namespace for named objects.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Namespace {
    /// `Local\`: visible to the processes of the current session (the default).
    #[default]
    Local,
    /// `Global\`: visible to all sessions. Creating objects there needs the
    /// `SeCreateGlobalPrivilege` privilege. Ignored on Unix, where there is one namespace.
    Global,
}

/// Longest OS object name accepted on this platform, in bytes.
#[cfg(target_os = "macos")]
const MAX_OS_NAME_LEN: usize = 31; // PSHMNAMLEN
#[cfg(all(unix, not(target_os = "macos")))]
const MAX_OS_NAME_LEN: usize = 255; // NAME_MAX of the /dev/shm entry
#[cfg(windows)]
const MAX_OS_NAME_LEN: usize = 260; // MAX_PATH, the documented limit for object names

/// Checks a portable shmkit name.
pub(crate) fn validate(name: &str) -> Result<()> {
    let bad = |reason: &str| {
        Err(Error::InvalidName {
            name: name.to_owned(),
            reason: reason.to_owned(),
        })
    };
    if name.is_empty() {
        return bad("name is empty");
    }
    if name.len() > MAX_NAME_LEN {
        return bad(&format!(
            "name is {} bytes long, the limit is {MAX_NAME_LEN}",
            name.len()
        ));
    }
    if name.starts_with('.') {
        return bad("name must not start with '.'");
    }
    if let Some(c) = name
        .chars()
        .find(|c| matches!(c, '/' | '\\') || c.is_control())
    {
        return bad(&format!("name must not contain {c:?}"));
    }
    Ok(())
}

/// The OS name of the object that holds the shmkit name `name`.
pub(crate) fn os_name(name: &str, namespace: Namespace) -> Result<String> {
    validate(name)?;
    let os = if cfg!(windows) {
        let ns = match namespace {
            Namespace::Local => "Local\\",
            Namespace::Global => "Global\\",
        };
        format!("{ns}{PREFIX}{name}")
    } else {
        format!("/{PREFIX}{name}")
    };
    check_os_len(name, &os)?;
    Ok(os)
}

/// Checks a raw OS name and returns it unchanged.
pub(crate) fn validate_raw(os: &str) -> Result<()> {
    let bad = |reason: &str| {
        Err(Error::InvalidName {
            name: os.to_owned(),
            reason: reason.to_owned(),
        })
    };
    if os.contains('\0') {
        return bad("name must not contain NUL");
    }
    if cfg!(unix) {
        // POSIX leaves names without a leading slash, or with more slashes,
        // implementation-defined; we accept only the portable form.
        let Some(rest) = os.strip_prefix('/') else {
            return bad("a raw POSIX shared-memory name must start with '/'");
        };
        if rest.is_empty() {
            return bad("name is empty after the leading '/'");
        }
        if rest.contains('/') {
            return bad(
                "a raw POSIX shared-memory name must not contain '/' after the first character",
            );
        }
        if rest == "." || rest == ".." {
            return bad("'.' and '..' are not object names");
        }
    } else if os.is_empty() {
        return bad("name is empty");
    }
    check_os_len(os, os)
}

fn check_os_len(name: &str, os: &str) -> Result<()> {
    // On Unix the leading '/' does not count against NAME_MAX.
    let len = if cfg!(unix) { os.len() - 1 } else { os.len() };
    if len > MAX_OS_NAME_LEN {
        return Err(Error::InvalidName {
            name: name.to_owned(),
            reason: format!(
                "the OS name {os:?} is {len} bytes long, this platform allows {MAX_OS_NAME_LEN}"
            ),
        });
    }
    Ok(())
}

/// Name of the auxiliary wake channel for a waitable word at `offset` of the
/// object `os_name` (a named semaphore on Windows; unused elsewhere). `#` keeps it
/// apart from the names shmkit gives segments.
pub(crate) fn wake_key(os_name: &str, offset: u64) -> String {
    format!("{os_name}#wake@{offset}")
}

/// The shmkit name inside an OS name, if the OS name is one of ours.
pub(crate) fn strip_os_prefix(os: &str) -> Option<&str> {
    let rest = os.strip_prefix('/').unwrap_or(os);
    let rest = rest
        .strip_prefix("Local\\")
        .or_else(|| rest.strip_prefix("Global\\"))
        .unwrap_or(rest);
    rest.strip_prefix(PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_names() {
        for n in [
            "a",
            "sensor-feed",
            "x_1.2",
            "ünïcode",
            &"n".repeat(MAX_NAME_LEN),
        ] {
            validate(n).unwrap();
        }
    }

    #[test]
    fn rejects_bad_names_with_reason() {
        let cases = [
            ("", "empty"),
            ("a/b", "'/'"),
            ("a\\b", "'\\\\'"),
            ("a\0b", "'\\0'"),
            ("a\nb", "'\\n'"),
            (".hidden", "'.'"),
        ];
        for (n, why) in cases {
            let err = validate(n).unwrap_err();
            assert!(
                matches!(err, Error::InvalidName { .. }),
                "{n:?} gave {err:?}"
            );
            assert!(err.to_string().contains(why), "{n:?}: {err}");
        }
        let long = "n".repeat(MAX_NAME_LEN + 1);
        assert!(validate(&long).unwrap_err().to_string().contains("limit"));
    }

    #[test]
    fn prefixes_and_strips() {
        let os = os_name("feed", Namespace::Local).unwrap();
        if cfg!(windows) {
            assert_eq!(os, "Local\\shmkit.feed");
            assert_eq!(
                os_name("feed", Namespace::Global).unwrap(),
                "Global\\shmkit.feed"
            );
        } else {
            assert_eq!(os, "/shmkit.feed");
        }
        assert_eq!(strip_os_prefix(&os), Some("feed"));
        assert_eq!(strip_os_prefix("/psm_123"), None);
    }

    #[cfg(unix)]
    #[test]
    fn raw_names_follow_posix() {
        validate_raw("/psm_1234").unwrap();
        for bad in ["psm", "/", "/a/b", "/..", "/a\0"] {
            assert!(validate_raw(bad).is_err(), "{bad:?} accepted");
        }
        assert!(validate_raw(&format!("/{}", "x".repeat(300))).is_err());
    }

    #[cfg(windows)]
    #[test]
    fn raw_names_on_windows() {
        validate_raw("Local\\MyMap").unwrap();
        validate_raw("MyMap").unwrap();
        assert!(validate_raw("").is_err());
        assert!(validate_raw(&"x".repeat(300)).is_err());
    }
}
