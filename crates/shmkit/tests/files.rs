//! Memory-mapped files: capacity rules, views, flush, advice, truncation, names.

mod common;

use std::time::Duration;

use common::{hear, role, say, spawn, TempDir, TestName};
use shmkit::{Access, Advice, Error, MappedFile};

const ENTRY: &str = "child_entry";

#[test]
fn child_entry() {
    let Some(args) = role() else { return };
    match args[0].as_str() {
        "publish-file" => {
            let f = MappedFile::options()
                .capacity(10_000)
                .name(&args[1])
                .create(&args[2])
                .unwrap();
            f.write_at(9_000, b"from the publisher").unwrap();
            say("ready");
            hear();
        }
        other => panic!("unknown role {other}"),
    }
    std::process::exit(0);
}

#[test]
fn capacity_rules_follow_dotnet() {
    let dir = TempDir::new("cap");
    let empty = dir.0.join("empty");
    std::fs::write(&empty, b"").unwrap();
    let e = MappedFile::open(&empty).unwrap_err();
    assert!(e.to_string().contains("empty; give a capacity"), "{e}");

    let ten = dir.0.join("ten");
    std::fs::write(&ten, b"0123456789").unwrap();
    let whole = MappedFile::open(&ten).unwrap();
    assert_eq!(whole.len(), 10);
    assert_eq!(whole.read_vec(0, 10).unwrap(), b"0123456789");
    drop(whole);

    let e = MappedFile::options().capacity(5).open(&ten).unwrap_err();
    assert!(matches!(e, Error::InvalidSize { .. }), "{e:?}");
    assert!(e.to_string().contains("smaller than the file"), "{e}");
    let e = MappedFile::options().capacity(0).open(&ten).unwrap_err();
    assert!(e.to_string().contains("at least 1 byte"), "{e}");
    let e = MappedFile::options()
        .capacity(100)
        .access(Access::ReadOnly)
        .open(&ten)
        .unwrap_err();
    assert!(e.to_string().contains("cannot extend"), "{e}");
    assert_eq!(
        std::fs::metadata(&ten).unwrap().len(),
        10,
        "nothing changed"
    );

    let grown = MappedFile::options().capacity(100_000).open(&ten).unwrap();
    assert_eq!(grown.len(), 100_000);
    assert_eq!(std::fs::metadata(&ten).unwrap().len(), 100_000);
    assert_eq!(grown.read_vec(0, 10).unwrap(), b"0123456789");
    assert!(grown.read_vec(10, 99_990).unwrap().iter().all(|&b| b == 0));
}

#[test]
fn create_open_and_bad_paths() {
    let dir = TempDir::new("paths");
    let p = dir.0.join("new.bin");
    let e = MappedFile::options().create(&p).unwrap_err();
    assert!(e.to_string().contains("empty; give a capacity"), "{e}");
    assert!(!p.exists(), "a failed create left the file behind");
    let f = MappedFile::options().capacity(4096).create(&p).unwrap();
    assert_eq!(f.path().unwrap(), std::path::absolute(&p).unwrap());
    let e = MappedFile::options().capacity(4096).create(&p).unwrap_err();
    assert!(matches!(e, Error::AlreadyExists { .. }), "{e:?}");
    assert!(e.to_string().contains("new.bin"), "{e}");
    drop(f);
    let e = MappedFile::open(dir.0.join("missing")).unwrap_err();
    assert!(e.is_not_found(), "{e:?}");
    assert!(
        MappedFile::open(&dir.0).is_err(),
        "a directory cannot be mapped"
    );
    let e = MappedFile::options()
        .access(Access::ReadOnly)
        .capacity(10)
        .create(dir.0.join("ro"))
        .unwrap_err();
    assert!(matches!(e, Error::InvalidArgument { .. }), "{e:?}");
    let either = MappedFile::options()
        .capacity(50)
        .open_or_create(dir.0.join("either"))
        .unwrap();
    assert_eq!(either.len(), 50);
}

#[test]
fn flush_writes_to_the_file() {
    let dir = TempDir::new("flush");
    let p = dir.0.join("f");
    let f = MappedFile::options().capacity(200_000).create(&p).unwrap();
    f.write_at(150_000, b"synced").unwrap();
    f.flush().unwrap();
    assert_eq!(&std::fs::read(&p).unwrap()[150_000..150_006], b"synced");
    f.write_at(10, b"async").unwrap();
    f.flush_async().unwrap();
    f.flush_range(0, 100).unwrap();
    assert_eq!(&std::fs::read(&p).unwrap()[10..15], b"async");
    for a in [
        Advice::Normal,
        Advice::Sequential,
        Advice::Random,
        Advice::WillNeed,
    ] {
        f.advise(a).unwrap();
        f.advise_range(70_000, 1000, a).unwrap();
    }
}

#[test]
fn partial_views_and_copy_on_write() {
    let dir = TempDir::new("views");
    let p = dir.0.join("v");
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
    std::fs::write(&p, &data).unwrap();
    let f = MappedFile::open_read_only(&p).unwrap();
    for off in [0u64, 1, 4097, 65_537, 299_000] {
        let v = f.view(off, 1000).unwrap();
        assert_eq!(
            v.read_vec(0, 1000).unwrap(),
            &data[off as usize..off as usize + 1000]
        );
        assert!(v.write_at(0, b"x").is_err());
    }
    let cow = MappedFile::options()
        .access(Access::CopyOnWrite)
        .open(&p)
        .unwrap();
    cow.write_at(0, b"private").unwrap();
    assert_eq!(cow.read_vec(0, 7).unwrap(), b"private");
    drop(cow);
    assert_eq!(
        std::fs::read(&p).unwrap(),
        data,
        "copy-on-write reached the file"
    );
}

#[test]
fn large_files_map_read_only() {
    let dir = TempDir::new("large");
    let p = dir.0.join("big");
    let size = 5u64 << 30;
    {
        let file = std::fs::File::create(&p).unwrap();
        file.set_len(size).unwrap(); // sparse
    }
    let w = MappedFile::options().reserve(false).open(&p).unwrap();
    w.write_at(size - 4, b"tail").unwrap();
    w.flush_range(size - 4096, 4096).unwrap();
    drop(w);
    let r = MappedFile::open_read_only(&p).unwrap();
    assert_eq!(r.len() as u64, size);
    assert_eq!(r.read_vec(size - 4, 4).unwrap(), b"tail");
    assert_eq!(r.read_vec(4 << 30, 4).unwrap(), [0; 4]);
}

#[cfg(unix)]
#[test]
fn a_file_truncated_under_the_mapping_gives_an_error_not_sigbus() {
    let dir = TempDir::new("trunc");
    let p = dir.0.join("t");
    let f = MappedFile::options().capacity(3 * 4096).create(&p).unwrap();
    f.write_at(3 * 4096 - 4, b"last").unwrap();
    // Someone else shrinks the file.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&p)
        .unwrap()
        .set_len(4096)
        .unwrap();
    let e = f.read_vec(2 * 4096, 10).unwrap_err();
    assert!(matches!(e, Error::Truncated { .. }), "{e:?}");
    assert!(e.to_string().contains("too short"), "{e}");
    assert!(matches!(
        f.write_at(3 * 4096 - 4, b"boom").unwrap_err(),
        Error::Truncated { .. }
    ));
    f.write_at(0, b"still fine").unwrap();
    assert_eq!(f.read_vec(0, 10).unwrap(), b"still fine");
}

#[cfg(windows)]
#[test]
fn windows_refuses_to_truncate_a_mapped_file() {
    let dir = TempDir::new("trunc");
    let p = dir.0.join("t");
    let f = MappedFile::options().capacity(3 * 4096).create(&p).unwrap();
    let shrink = std::fs::OpenOptions::new()
        .write(true)
        .open(&p)
        .unwrap()
        .set_len(4096);
    assert!(shrink.is_err(), "Windows let a mapped file shrink");
    f.write_at(3 * 4096 - 4, b"last").unwrap();
}

#[test]
fn a_named_file_mapping_opens_by_name_in_another_process() {
    let dir = TempDir::new("named");
    let n = TestName::new("filename");
    let path = dir.0.join("published.bin");
    let mut child = spawn(ENTRY, "publish-file", &[n.as_str(), path.to_str().unwrap()]);
    assert_eq!(child.expect_line(), "ready");
    let f = MappedFile::open_named(n.as_str(), Access::ReadOnly).unwrap();
    assert!(f.len() >= 10_000);
    assert_eq!(f.read_vec(9_000, 18).unwrap(), b"from the publisher");
    let e = MappedFile::open_named(&format!("{}-nope", n.as_str()), Access::ReadOnly).unwrap_err();
    assert!(e.is_not_found(), "{e:?}");
    child.tell("bye");
    child.wait_success(Duration::from_secs(30));
    drop(f);
    // Once nobody has it open, the name is gone.
    let e = MappedFile::open_named(n.as_str(), Access::ReadOnly).unwrap_err();
    assert!(e.is_not_found(), "{e:?}");
}
