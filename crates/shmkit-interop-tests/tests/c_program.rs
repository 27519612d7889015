//! shmkit and a plain C program (shm_open / CreateFileMappingA) share memory by
//! the object's OS name, in both directions.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use shmkit::{Access, ShmOptions};
use shmkit_interop_tests::C_PEER;

fn os_name(tag: &str) -> String {
    let base = format!("interop-c-{tag}-{}", std::process::id());
    if cfg!(windows) {
        format!("Local\\{base}")
    } else {
        format!("/{base}")
    }
}

/// Removes the object at the end of the test, even on failure (Unix; on Windows
/// the section goes with its last handle).
struct Cleanup(String);
impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = shmkit::Shm::remove_raw(&self.0);
    }
}

fn c_peer(args: &[&str]) -> String {
    let out = Command::new(C_PEER).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "shm_peer {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The C program holding a pagefile/`shm_open` object `name` of `size` bytes
/// that starts with `text`, until told "done" on its standard input.
fn c_creator(name: &str, size: usize, text: &str) -> std::process::Child {
    let mut creator = Command::new(C_PEER)
        .args(["create", name, &size.to_string(), text])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(creator.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "ready");
    creator
}

#[test]
fn shmkit_opens_what_a_c_program_created() {
    let name = os_name("c-creates");
    let _cleanup = Cleanup(name.clone());
    let mut creator = c_creator(&name, 4096, "written by C");

    let shm = ShmOptions::new().open_raw(&name).unwrap();
    assert_eq!(shm.read_vec(0, 12).unwrap(), b"written by C");
    shm.write_at(100, b"answered by shmkit").unwrap();
    // A second C process reads our answer.
    assert_eq!(c_peer(&["read", &name, "100", "18"]), "answered by shmkit");

    writeln!(creator.stdin.as_mut().unwrap(), "done").unwrap();
    assert!(creator.wait().unwrap().success());
}

#[test]
fn a_c_program_opens_what_shmkit_created() {
    let name = os_name("shmkit-creates");
    let _cleanup = Cleanup(name.clone());
    let shm = ShmOptions::new().size(8192).create_raw(&name).unwrap();
    shm.write_at(0, b"made by shmkit").unwrap();
    assert_eq!(c_peer(&["read", &name, "0", "14"]), "made by shmkit");
    c_peer(&["write", &name, "5000", "reply from C"]);
    assert_eq!(shm.read_vec(5000, 12).unwrap(), b"reply from C");
    let reader = ShmOptions::new()
        .access(Access::ReadOnly)
        .open_raw(&name)
        .unwrap();
    assert_eq!(reader.read_vec(5000, 12).unwrap(), b"reply from C");
}

/// A raw name means the live OS object of that name. A persistent raw object
/// leaves a backing file on Windows once its section is gone; when another
/// program then makes a (smaller) pagefile section of the same name, opening
/// the name must reach that section, with its size, not the leftover file.
#[cfg(windows)]
#[test]
fn a_leftover_file_never_answers_for_a_live_section_of_the_same_name() {
    use shmkit::Lifetime;
    let name = os_name("shadow");
    let _cleanup = Cleanup(name.clone());
    let persistent = ShmOptions::new()
        .size(8192)
        .lifetime(Lifetime::Persistent)
        .create_raw(&name)
        .unwrap();
    persistent.write_at(0, b"stale file bytes").unwrap();
    drop(persistent); // the section goes; its file stays
    let mut creator = c_creator(&name, 1024, "live section");
    let live = ShmOptions::new().open_raw(&name).unwrap();
    assert_eq!(live.read_vec(0, 12).unwrap(), b"live section");
    assert!(
        live.len() < 8192,
        "the file's size, not the section's: {}",
        live.len()
    );
    let reader = ShmOptions::new()
        .access(Access::ReadOnly)
        .open_raw(&name)
        .unwrap();
    assert_eq!(reader.read_vec(0, 12).unwrap(), b"live section");
    drop((live, reader));
    writeln!(creator.stdin.as_mut().unwrap(), "done").unwrap();
    assert!(creator.wait().unwrap().success());
}

/// On Windows a raw object is a pagefile-backed section unless persistence is
/// asked for: nothing is left behind in a file once its last handle closes.
#[cfg(windows)]
#[test]
fn raw_objects_are_pagefile_backed_by_default_on_windows() {
    let name = os_name("pagefile");
    let _cleanup = Cleanup(name.clone());
    let shm = ShmOptions::new().size(4096).create_raw(&name).unwrap();
    shm.write_at(0, b"gone with the handle").unwrap();
    assert_eq!(c_peer(&["read", &name, "0", "20"]), "gone with the handle");
    drop(shm);
    let err = ShmOptions::new().open_raw(&name).unwrap_err();
    assert!(err.is_not_found(), "{err}");
}
