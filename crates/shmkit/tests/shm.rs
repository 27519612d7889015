//! Named shared memory within one process: the API contract and every bad input.

mod common;

use common::TestName;
use shmkit::{Access, Error, InitState, Lifetime, SegmentKind, Shm, ShmOptions};

#[test]
fn create_then_open_shares_bytes() {
    let n = TestName::new("share");
    let a = Shm::create(n.as_str(), 10_000).unwrap();
    assert!(a.created());
    assert_eq!(a.len(), 10_000);
    a.write_at(9_990, b"0123456789").unwrap();
    let b = Shm::open(n.as_str()).unwrap();
    assert!(!b.created());
    assert_eq!(b.len(), 10_000);
    assert_eq!(b.read_vec(9_990, 10).unwrap(), b"0123456789");
    b.write_at(0, b"back").unwrap();
    assert_eq!(a.read_vec(0, 4).unwrap(), b"back");
    let info = b.info().unwrap();
    assert_eq!(info.name, n.as_str());
    assert_eq!(info.kind, SegmentKind::Bytes);
    assert_eq!(info.size, 10_000);
    assert_eq!(info.state, InitState::Ready);
    assert_eq!(info.creator_pid, std::process::id());
    assert!(info.creator_alive);
}

#[test]
fn handles_can_move_between_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Shm>();
    send_sync::<shmkit::MappedFile>();
    send_sync::<shmkit::Mapping>();
}

#[test]
fn new_segments_are_zeroed() {
    let n = TestName::new("zero");
    let a = Shm::create(n.as_str(), 5000).unwrap();
    assert!(a.read_vec(0, 5000).unwrap().iter().all(|&b| b == 0));
}

#[test]
fn create_fails_if_the_name_exists() {
    let n = TestName::new("exists");
    let _a = Shm::create(n.as_str(), 100).unwrap();
    let err = Shm::create(n.as_str(), 100).unwrap_err();
    assert!(matches!(err, Error::AlreadyExists { .. }), "{err:?}");
    assert!(err.to_string().contains(n.as_str()), "{err}");
}

#[test]
fn open_of_a_missing_name_is_not_found_naming_it() {
    let n = TestName::new("missing");
    let err = Shm::open(n.as_str()).unwrap_err();
    assert!(err.is_not_found(), "{err:?}");
    assert_eq!(err.to_string(), format!("{}: not found", n.as_str()));
}

#[test]
fn create_or_open_tells_which_happened() {
    let n = TestName::new("coo");
    let opts = ShmOptions::new().size(64);
    let first = opts
        .create_or_open_with(n.as_str(), |b| {
            b[0] = 42;
            Ok::<_, String>(())
        })
        .unwrap();
    assert!(first.created());
    let mut ran = false;
    let second = opts
        .create_or_open_with(n.as_str(), |_| {
            ran = true;
            Ok::<_, String>(())
        })
        .unwrap();
    assert!(!second.created());
    assert!(!ran, "the initialiser ran for an existing segment");
    assert_eq!(second.read_vec(0, 1).unwrap(), [42]);
}

#[test]
fn a_failing_initialiser_is_reported_and_leaves_no_segment() {
    let n = TestName::new("initfail");
    let err = ShmOptions::new()
        .size(64)
        .lifetime(Lifetime::Persistent)
        .create_or_open_with(n.as_str(), |_| Err("disk on fire"))
        .unwrap_err();
    assert!(matches!(err, Error::InitFailed { .. }), "{err:?}");
    assert!(err.to_string().contains("disk on fire"), "{err}");
    assert!(Shm::open(n.as_str()).unwrap_err().is_not_found());
}

#[test]
fn temporary_segments_go_with_their_last_user() {
    let n = TestName::new("temp");
    let a = Shm::create(n.as_str(), 100).unwrap();
    let b = Shm::open(n.as_str()).unwrap();
    drop(a);
    // Still used by b.
    let c = Shm::open(n.as_str()).unwrap();
    drop(b);
    drop(c);
    let err = Shm::open(n.as_str()).unwrap_err();
    assert!(err.is_not_found(), "{err:?}");
}

#[test]
fn persistent_segments_stay_until_removed() {
    let n = TestName::new("persist");
    let a = ShmOptions::new()
        .size(100)
        .lifetime(Lifetime::Persistent)
        .create(n.as_str())
        .unwrap();
    a.write_at(0, b"kept").unwrap();
    drop(a);
    let b = Shm::open(n.as_str()).unwrap();
    assert_eq!(b.read_vec(0, 4).unwrap(), b"kept");
    assert_eq!(b.info().unwrap().lifetime, Lifetime::Persistent);
    drop(b);
    Shm::remove(n.as_str()).unwrap();
    assert!(Shm::open(n.as_str()).unwrap_err().is_not_found());
    assert!(Shm::remove(n.as_str()).unwrap_err().is_not_found());
}

#[test]
fn removing_keeps_existing_mappings_usable() {
    let n = TestName::new("rmlive");
    let a = ShmOptions::new()
        .size(100)
        .lifetime(Lifetime::Persistent)
        .create(n.as_str())
        .unwrap();
    a.write_at(0, b"x").unwrap();
    match Shm::remove(n.as_str()) {
        Ok(()) => {}
        // Windows cannot delete a file that a section maps; see Shm::remove.
        Err(e) if cfg!(windows) => {
            drop(a);
            Shm::remove(n.as_str()).unwrap_or_else(|_| panic!("{e}"));
            return;
        }
        Err(e) => panic!("{e}"),
    }
    assert_eq!(a.read_vec(0, 1).unwrap(), b"x");
    if cfg!(windows) {
        // The open section keeps its name until its last handle closes.
        drop(a);
    }
    assert!(Shm::open(n.as_str()).unwrap_err().is_not_found());
}

#[test]
fn read_only_mappings_offer_no_way_to_write() {
    let n = TestName::new("ro");
    let w = Shm::create(n.as_str(), 4096).unwrap();
    w.write_at(0, b"data").unwrap();
    let r = ShmOptions::new()
        .access(Access::ReadOnly)
        .open(n.as_str())
        .unwrap();
    assert_eq!(r.access(), Access::ReadOnly);
    assert_eq!(r.read_vec(0, 4).unwrap(), b"data");
    for err in [
        r.write_at(0, b"x").unwrap_err(),
        r.fill(0, 1, 0).unwrap_err(),
        r.atomic_u32(0).map(drop).unwrap_err(),
        r.as_mut_ptr().map(drop).unwrap_err(),
        r.view_with_access(0, 10, Access::ReadWrite)
            .map(drop)
            .unwrap_err(),
    ] {
        assert!(matches!(err, Error::ReadOnly { .. }), "{err:?}");
        assert!(err.to_string().contains("read-only"));
    }
    assert_eq!(r.read_vec(0, 4).unwrap(), b"data");
}

#[test]
fn creating_needs_read_write_access_and_a_size() {
    let n = TestName::new("badcreate");
    let e = ShmOptions::new()
        .size(10)
        .access(Access::ReadOnly)
        .create(n.as_str())
        .unwrap_err();
    assert!(matches!(e, Error::InvalidArgument { .. }), "{e:?}");
    let e = ShmOptions::new().create(n.as_str()).unwrap_err();
    assert!(e.to_string().contains("a size is needed"), "{e}");
    let e = Shm::create(n.as_str(), 0).unwrap_err();
    assert!(matches!(e, Error::InvalidSize { .. }), "{e:?}");
    let e = Shm::create(n.as_str(), u64::MAX - 10).unwrap_err();
    assert!(matches!(e, Error::InvalidSize { .. }), "{e:?}");
    assert!(Shm::open(n.as_str()).unwrap_err().is_not_found());
}

#[test]
fn copy_on_write_changes_stay_private() {
    let n = TestName::new("cow");
    let w = Shm::create(n.as_str(), 4096).unwrap();
    w.write_at(0, b"orig").unwrap();
    let c = ShmOptions::new()
        .access(Access::CopyOnWrite)
        .open(n.as_str())
        .unwrap();
    c.write_at(0, b"mine").unwrap();
    assert_eq!(c.read_vec(0, 4).unwrap(), b"mine");
    assert_eq!(w.read_vec(0, 4).unwrap(), b"orig");
    let again = Shm::open(n.as_str()).unwrap();
    assert_eq!(again.read_vec(0, 4).unwrap(), b"orig");
}

#[test]
fn invalid_names_are_refused_with_the_reason() {
    for (name, why) in [
        ("", "empty"),
        ("a/b", "'/'"),
        (".x", "'.'"),
        ("tab\there", "'\\t'"),
    ] {
        for err in [
            Shm::create(name, 10).unwrap_err(),
            Shm::open(name).unwrap_err(),
            Shm::remove(name).unwrap_err(),
        ] {
            assert!(
                matches!(err, Error::InvalidName { .. }),
                "{name:?}: {err:?}"
            );
            assert!(err.to_string().contains(why), "{err}");
        }
    }
    let long = "n".repeat(shmkit::MAX_NAME_LEN + 1);
    assert!(matches!(
        Shm::create(&long, 10).unwrap_err(),
        Error::InvalidName { .. }
    ));
}

#[test]
fn out_of_bounds_accesses_are_errors() {
    let n = TestName::new("oob");
    let s = Shm::create(n.as_str(), 100).unwrap();
    let mut buf = [0u8; 10];
    for (off, len) in [(91u64, 10usize), (100, 1), (u64::MAX, 1), (u64::MAX - 2, 5)] {
        let e = s.read_at(off, &mut buf[..len]).unwrap_err();
        assert!(matches!(e, Error::OutOfBounds { .. }), "{off}+{len}: {e:?}");
        assert!(s.write_at(off, &buf[..len]).is_err());
    }
    assert!(
        s.read_at(100, &mut []).is_ok(),
        "empty read at the end is fine"
    );
    assert!(s.view(50, 51).is_err());
    assert!(s.atomic_u32(98).is_err());
    let e = s.atomic_u64(4).unwrap_err();
    assert!(e.to_string().contains("aligned"), "{e}");
    assert!(s.flush_range(90, 20).is_err());
}

#[test]
fn views_at_any_offset_see_the_right_bytes() {
    let n = TestName::new("views");
    let size = 300_000u64;
    let s = Shm::create(n.as_str(), size).unwrap();
    let pattern: Vec<u8> = (0..size).map(|i| (i * 7 % 251) as u8).collect();
    s.write_at(0, &pattern).unwrap();
    // Offsets on and off every platform's granularity (4 KiB, 64 KiB).
    for off in [0u64, 1, 4095, 4096, 65_535, 65_536, 70_001, size - 1] {
        let len = (size - off).min(5000);
        let v = s.view(off, len).unwrap();
        assert_eq!(v.len() as u64, len);
        assert_eq!(
            v.read_vec(0, len as usize).unwrap(),
            &pattern[off as usize..(off + len) as usize],
            "view at {off}"
        );
        v.write_at(0, &[0xEE]).unwrap();
        assert_eq!(s.read_vec(off, 1).unwrap(), [0xEE]);
        s.write_at(off, &pattern[off as usize..off as usize + 1])
            .unwrap();
    }
    // A view of a view, and one that outlives its parent.
    let outer = s.view(1000, 10_000).unwrap();
    let inner = outer.view(24, 8).unwrap();
    drop(outer);
    assert_eq!(inner.read_vec(0, 8).unwrap(), &pattern[1024..1032]);
    assert!(s.view(size, 0).unwrap().is_empty());
}

#[test]
fn atomics_are_shared_between_mappings() {
    use std::sync::atomic::Ordering;
    let n = TestName::new("atomic");
    let a = Shm::create(n.as_str(), 64).unwrap();
    let b = Shm::open(n.as_str()).unwrap();
    a.atomic_u64(8).unwrap().store(7, Ordering::Release);
    assert_eq!(b.atomic_u64(8).unwrap().fetch_add(1, Ordering::AcqRel), 7);
    assert_eq!(a.atomic_u64(8).unwrap().load(Ordering::Acquire), 8);
    a.atomic_u32(0).unwrap().store(3, Ordering::Release);
    assert_eq!(b.read_vec(0, 4).unwrap(), 3u32.to_le_bytes());
}

#[test]
fn flush_and_advice_succeed_on_shared_memory() {
    let n = TestName::new("flush");
    let s = Shm::create(n.as_str(), 10_000).unwrap();
    s.flush().unwrap();
    s.flush_async().unwrap();
    s.flush_range(5000, 100).unwrap();
    for a in [
        shmkit::Advice::Normal,
        shmkit::Advice::Sequential,
        shmkit::Advice::Random,
        shmkit::Advice::WillNeed,
    ] {
        s.advise(a).unwrap();
    }
}

#[test]
fn raw_objects_have_no_header() {
    let n = TestName::raw("raw");
    let a = ShmOptions::new()
        .size(5000)
        .lifetime(Lifetime::Persistent)
        .create_raw(n.as_str())
        .unwrap();
    assert!(a.info().is_none());
    assert_eq!(a.os_name(), n.as_str());
    a.write_at(0, b"raw bytes at offset zero").unwrap();
    let b = ShmOptions::new()
        .access(Access::ReadOnly)
        .open_raw(n.as_str())
        .unwrap();
    // Windows rounds a section's size up to the page.
    assert!(b.len() >= 5000 && b.len() < 5000 + 4096);
    assert_eq!(b.read_vec(0, 24).unwrap(), b"raw bytes at offset zero");
    // Opening raw bytes as a managed segment is refused.
    let e = ShmOptions::new()
        .size(10)
        .create_raw(n.as_str())
        .unwrap_err();
    assert!(matches!(e, Error::AlreadyExists { .. }), "{e:?}");
}

#[test]
fn raw_objects_are_never_removed_by_default() {
    let n = TestName::raw("rawkeep");
    let a = ShmOptions::new().size(100).create_raw(n.as_str()).unwrap();
    a.write_at(0, b"theirs").unwrap();
    let b = ShmOptions::new().open_raw(n.as_str()).unwrap();
    drop(b);
    // On Windows a section lives only while a handle is open, so keep `a` there.
    if cfg!(unix) {
        drop(a);
    }
    let c = ShmOptions::new().open_raw(n.as_str()).unwrap();
    assert_eq!(c.read_vec(0, 6).unwrap(), b"theirs");
}

#[test]
fn raw_names_are_checked() {
    let bad = if cfg!(windows) { "" } else { "no-slash" };
    let e = ShmOptions::new().size(10).create_raw(bad).unwrap_err();
    assert!(matches!(e, Error::InvalidName { .. }), "{e:?}");
    let missing = TestName::raw("rawmissing");
    assert!(ShmOptions::new()
        .open_raw(missing.as_str())
        .unwrap_err()
        .is_not_found());
}

#[test]
fn segments_are_listed_and_inspected() {
    let n = TestName::new("ls");
    // Persistent, because Windows can list only those.
    let _s = ShmOptions::new()
        .size(1234)
        .lifetime(Lifetime::Persistent)
        .create(n.as_str())
        .unwrap();
    let names = Shm::list().unwrap();
    assert!(names.iter().any(|x| x == n.as_str()), "{names:?}");
    let info = Shm::inspect(n.as_str()).unwrap();
    assert_eq!(info.size, 1234);
    assert_eq!(info.lifetime, Lifetime::Persistent);
    assert!(!info.stale);
}

#[cfg(unix)]
mod unix_only {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn shm_file(os: &str) -> std::path::PathBuf {
        std::path::Path::new("/dev/shm").join(&os[1..])
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn objects_are_owner_only_by_default_and_mode_is_exact() {
        let n = TestName::new("mode");
        let s = Shm::create(n.as_str(), 10).unwrap();
        let meta = std::fs::metadata(shm_file(s.os_name())).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        let n2 = TestName::new("mode2");
        let s2 = ShmOptions::new()
            .size(10)
            .mode(0o640)
            .create(n2.as_str())
            .unwrap();
        let meta = std::fs::metadata(shm_file(s2.os_name())).unwrap();
        assert_eq!(
            meta.permissions().mode() & 0o777,
            0o640,
            "umask must not apply"
        );
    }

    #[test]
    fn world_writable_objects_are_refused_unless_accepted() {
        let n = TestName::raw("ww");
        let s = ShmOptions::new().size(10).create_raw(n.as_str()).unwrap();
        std::fs::set_permissions(shm_file(n.as_str()), std::fs::Permissions::from_mode(0o666))
            .unwrap();
        let e = ShmOptions::new().open_raw(n.as_str()).unwrap_err();
        assert!(matches!(e, Error::Insecure { .. }), "{e:?}");
        assert!(e.to_string().contains("writable by every user"), "{e}");
        ShmOptions::new()
            .accept_insecure(true)
            .open_raw(n.as_str())
            .unwrap();
        drop(s);
    }

    #[test]
    fn foreign_and_corrupt_objects_are_refused() {
        // A non-shmkit object under a shmkit name.
        let n = TestName::new("foreign");
        let os = format!("/shmkit.{}", n.as_str());
        std::fs::write(shm_file(&os), vec![0xAB; 8192]).unwrap();
        let e = Shm::open(n.as_str()).unwrap_err();
        assert!(matches!(e, Error::NotShmkit { .. }), "{e:?}");
        // Too small for a header.
        std::fs::write(shm_file(&os), b"tiny").unwrap();
        let e = Shm::open(n.as_str()).unwrap_err();
        assert!(e.to_string().contains("too small"), "{e}");

        // A real segment whose header lies about its size, kind or version.
        let m = TestName::new("corrupt");
        let s = ShmOptions::new()
            .size(100)
            .lifetime(Lifetime::Persistent)
            .create(m.as_str())
            .unwrap();
        let path = shm_file(s.os_name());
        drop(s);
        let good = std::fs::read(&path).unwrap();
        let cases: [(usize, &[u8], &str); 4] = [
            (8, &9u32.to_le_bytes(), "unsupported layout version 9"),
            (
                12,
                &2u32.to_le_bytes(),
                "is a mapped-file record, not a plain shared-memory segment",
            ),
            (24, &1u64.to_le_bytes(), "header says 1 bytes"),
            (16, &77u32.to_le_bytes(), "unknown state 77"),
        ];
        for (at, bytes, expect) in cases {
            let mut bad = good.clone();
            bad[at..at + bytes.len()].copy_from_slice(bytes);
            std::fs::write(&path, &bad).unwrap();
            let e = Shm::open(m.as_str()).unwrap_err();
            assert!(e.to_string().contains(expect), "{e} lacks {expect:?}");
        }
        // Truncated behind the header's back.
        std::fs::write(&path, &good[..8192 - 4096]).unwrap();
        assert!(matches!(
            Shm::open(m.as_str()).unwrap_err(),
            Error::CorruptHeader { .. }
        ));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_full_store_is_an_error_at_create_not_a_sigbus_later() {
        // Ask for more than the whole of /dev/shm: tmpfs refuses the reservation at
        // once, without filling memory first.
        // SAFETY: statvfs is plain data; all-zero is a valid value.
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        // SAFETY: valid path and out pointer.
        assert_eq!(unsafe { libc::statvfs(c"/dev/shm".as_ptr(), &mut st) }, 0);
        let total = st.f_blocks as u64 * st.f_frsize as u64;
        let n = TestName::new("full");
        let e = Shm::create(n.as_str(), total + (1 << 30)).unwrap_err();
        assert!(matches!(e, Error::OutOfSpace { .. }), "{e:?}");
        assert!(e.to_string().contains("not enough space"), "{e}");
        assert!(
            Shm::open(n.as_str()).unwrap_err().is_not_found(),
            "nothing left behind"
        );
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn symlinks_planted_under_a_name_are_not_followed() {
        let n = TestName::new("symlink");
        let target = common::TempDir::new("symlink-target");
        let victim = target.0.join("victim");
        std::fs::write(&victim, vec![0u8; 8192]).unwrap();
        let link = shm_file(&format!("/shmkit.{}", n.as_str()));
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        let e = Shm::open(n.as_str()).unwrap_err();
        assert!(!e.is_not_found(), "{e:?}");
        std::fs::remove_file(&link).unwrap();
    }
}

#[test]
fn sizes_above_4_gib_work() {
    // Sparse (not reserved): only the touched pages use memory.
    let n = TestName::new("huge");
    let size = 5u64 << 30;
    let s = ShmOptions::new()
        .size(size)
        .reserve(false)
        .create(n.as_str())
        .unwrap();
    assert_eq!(s.len() as u64, size);
    for off in [0, (4u64 << 30) - 2, size - 8] {
        s.write_at(off, b"marker!!").unwrap();
    }
    let o = Shm::open(n.as_str()).unwrap();
    assert_eq!(o.read_vec((4u64 << 30) - 2, 8).unwrap(), b"marker!!");
    assert_eq!(o.read_vec(size - 8, 8).unwrap(), b"marker!!");
    let v = o.view(size - 100_000, 100_000).unwrap();
    assert_eq!(v.read_vec(100_000 - 8, 8).unwrap(), b"marker!!");
}

#[cfg(windows)]
#[test]
fn global_and_local_namespaces_are_separate() {
    use shmkit::Namespace;
    let n = TestName::new("global");
    let g = ShmOptions::new()
        .size(100)
        .namespace(Namespace::Global)
        .create(n.as_str())
        .unwrap();
    assert!(g.os_name().starts_with("Global\\"), "{}", g.os_name());
    g.write_at(0, b"global").unwrap();
    assert!(Shm::open(n.as_str()).unwrap_err().is_not_found());
    let again = ShmOptions::new()
        .namespace(Namespace::Global)
        .open(n.as_str())
        .unwrap();
    assert_eq!(again.read_vec(0, 6).unwrap(), b"global");
}

/// An opener that finds our magic on a header that does not validate yet, while
/// the segment is still initialising, waits for the creator to finish rather
/// than failing hard: where objects are named before their header is written
/// (Windows, macOS, FreeBSD), it may be looking at a header being written.
#[test]
fn an_opener_waits_out_a_header_that_is_still_being_written() {
    use std::sync::atomic::Ordering::{Release, SeqCst};
    let n = TestName::new("torn");
    let os = common::managed_os_name(n.as_str());
    // A segment of 100 data bytes, as shmkit lays it out: one header block,
    // then the data rounded up to a block.
    let raw = ShmOptions::new()
        .size(2 * 4096)
        .lifetime(Lifetime::Temporary)
        .create_raw(&os)
        .unwrap();
    // Half written: magic and version, state INITIALISING (1), the creator's
    // process id, and as yet no sizes.
    raw.write_at(0, b"shmkitSG").unwrap();
    raw.write_at(8, &1u32.to_le_bytes()).unwrap(); // version
    raw.write_at(12, &1u32.to_le_bytes()).unwrap(); // kind: bytes
    raw.write_at(48, &std::process::id().to_le_bytes()).unwrap();
    raw.atomic_u32(16).unwrap().store(1, SeqCst);
    let finisher = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(150));
        raw.write_at(24, &8192u64.to_le_bytes()).unwrap(); // total size
        raw.write_at(32, &4096u64.to_le_bytes()).unwrap(); // data offset
        raw.write_at(40, &100u64.to_le_bytes()).unwrap(); // data size
        raw.write_at(52, &512u32.to_le_bytes()).unwrap(); // header size
        raw.write_at(4096, b"finished").unwrap();
        raw.atomic_u32(16).unwrap().store(2, Release); // READY
        raw
    });
    let opened = ShmOptions::new()
        .lifetime(Lifetime::Persistent)
        .open(n.as_str());
    let raw = finisher.join().unwrap();
    let opened = opened.unwrap();
    assert_eq!(opened.read_vec(0, 8).unwrap(), b"finished");
    drop((opened, raw));
}

#[test]
fn an_explicit_size_must_match_an_existing_segment() {
    let n = TestName::new("size-mismatch");
    let _s = Shm::create(n.as_str(), 1000).unwrap();
    let err = ShmOptions::new()
        .size(2000)
        .create_or_open(n.as_str())
        .unwrap_err();
    assert!(matches!(err, Error::Mismatch { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("size is 1000 bytes, but 2000 bytes"),
        "{err}"
    );
    let err = ShmOptions::new().size(10).open(n.as_str()).unwrap_err();
    assert!(matches!(err, Error::Mismatch { .. }), "{err}");
    assert!(!ShmOptions::new()
        .size(1000)
        .create_or_open(n.as_str())
        .unwrap()
        .created());
    ShmOptions::new().open(n.as_str()).unwrap();
}

/// Any local user can plant a FIFO under a shmkit name in the world-writable
/// /dev/shm (or give one as a file path): opening it must fail at once, not
/// hang until a writer comes.
#[cfg(target_os = "linux")]
#[test]
fn a_planted_fifo_is_refused_without_hanging() {
    use std::sync::mpsc;
    use std::time::Duration;
    let n = TestName::new("fifo");
    let path = format!("/dev/shm/shmkit.{}", n.as_str());
    let status = std::process::Command::new("mkfifo")
        .arg(&path)
        .status()
        .unwrap();
    assert!(status.success());
    // Planted by another user where we can (CI runs as root).
    let _ = std::os::unix::fs::chown(&path, Some(65534), Some(65534));
    struct Gone(String);
    impl Drop for Gone {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
    let _gone = Gone(path.clone());
    let name = n.as_str().to_owned();
    let raw = format!("/shmkit.{name}");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let ro = || ShmOptions::new().access(Access::ReadOnly);
        let outcomes = [
            ro().open(&name).map(drop),
            Shm::inspect(&name).map(drop),
            ro().open_raw(&raw).map(drop),
            Shm::open(&name).map(drop),
            shmkit::MappedFile::options()
                .access(Access::ReadOnly)
                .open(std::path::Path::new(&format!("/dev/shm{raw}")))
                .map(drop),
        ];
        let _ = tx.send(outcomes);
    });
    let outcomes = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("opening a FIFO hung");
    for outcome in outcomes {
        assert!(outcome.is_err(), "a FIFO was accepted");
    }
}

#[test]
fn overlapping_copies_within_one_segment_move_like_memmove() {
    // A binding hands out pointers into the segment (shmkit_shm_data in C, a
    // memoryview in Python), and a caller may pass them back as the source or
    // destination of a copy into the same segment.
    let name = TestName::new("overlap");
    let shm = ShmOptions::new().size(4096).create(name.as_str()).unwrap();
    shm.write_at(0, b"abcdefgh").unwrap();
    // SAFETY: the first 8 bytes of the live mapping; nothing else writes them
    // while the slice is used, except the copy under test, which must cope.
    let first8 = unsafe { std::slice::from_raw_parts(shm.as_ptr(), 8) };
    shm.write_at(1, first8).unwrap();
    assert_eq!(shm.read_vec(0, 9).unwrap(), b"aabcdefgh");

    // SAFETY: bytes 2..10 of the live mapping, written only by the copy.
    let dst = unsafe { std::slice::from_raw_parts_mut(shm.as_ptr().add(2) as *mut u8, 8) };
    shm.read_at(0, dst).unwrap();
    assert_eq!(shm.read_vec(0, 10).unwrap(), b"aaaabcdefg");
}

#[test]
fn opening_a_segment_as_another_kind_says_what_it_is_in_words() {
    let name = TestName::new("kind-words");
    let _shm = ShmOptions::new().size(4096).create(name.as_str()).unwrap();
    let e = shmkit::channel::ChannelOptions::new()
        .open_existing()
        .receiver(name.as_str())
        .unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains(
            "is a plain shared-memory segment (not made as a shmkit object), not a shmkit channel"
        ),
        "{text}"
    );
}
