//! A peer that shrinks a mapped object (`ftruncate`, `truncate -s 0`) must not
//! kill us with SIGBUS: every access through the safe API then fails with
//! `Truncated`. Each victim runs in a process of its own, so that a SIGBUS shows
//! as that process's death rather than the test runner's.
#![cfg(target_os = "linux")]

mod common;

use std::time::{Duration, Instant};

use common::{role, say, spawn, TestName};
use shmkit::channel::{ChannelOptions, Receiver, Sender};
use shmkit::{Error, Shm, ShmOptions};

const ENTRY: &str = "child_entry";
const LONG: Duration = Duration::from_secs(60);

/// Runs `step` until it reports `Truncated` (then says so and returns), with
/// a deadline.
fn until_truncated(mut step: impl FnMut() -> shmkit::Result<()>) {
    let deadline = Instant::now() + LONG;
    loop {
        match step() {
            Err(e @ Error::Truncated { .. }) => {
                say(&format!("truncated: {e}"));
                return;
            }
            Err(e) if e.is_timeout() || e.is_would_block() => {}
            Err(e) => panic!("unexpected error: {e}"),
            Ok(()) => {}
        }
        assert!(Instant::now() < deadline, "never saw the truncation");
    }
}

#[test]
fn child_entry() {
    let Some(args) = role() else { return };
    let name = args[1].as_str();
    match args[0].as_str() {
        "segment" => {
            let shm = Shm::create(name, 64 * 1024).unwrap();
            say("ready");
            // Several threads at once: each access may be the one that faults.
            std::thread::scope(|s| {
                for t in 0..4u8 {
                    let shm = &shm;
                    s.spawn(move || {
                        let mut buf = [0u8; 4096];
                        until_truncated(|| {
                            shm.write_at(t as u64 * 8192, &[t; 4096])?;
                            shm.read_at(60 * 1024, &mut buf)?;
                            shm.read_vec(0, 64 * 1024).map(drop)
                        });
                    });
                }
            });
        }
        "sender" => {
            let mut tx = ChannelOptions::new()
                .capacity(64 * 1024)
                .sender(name)
                .unwrap();
            let _rx = Receiver::connect(name).unwrap();
            say("ready");
            let mut i = 0u64;
            until_truncated(|| {
                i += 1;
                // Fills the ring, then times out: the ring's pages are touched
                // again and again.
                tx.send_timeout(&i.to_le_bytes().repeat(64), Duration::from_millis(1))
            });
        }
        "receiver" => {
            let mut rx = ChannelOptions::new()
                .capacity(64 * 1024)
                .receiver(name)
                .unwrap();
            let mut tx = Sender::connect(name).unwrap();
            tx.send(&[1u8; 1000]).unwrap();
            say("ready");
            // Asleep in a blocking receive when the object shrinks: woken by the
            // periodic check, not left waiting for ever.
            until_truncated(|| rx.recv_timeout(LONG).map(drop));
        }
        "foreign-mapping" => {
            // A mapping shmkit did not make: its SIGBUS must reach the default
            // action (the process dies), not be swallowed by shmkit's handler.
            let _ours = Shm::create(name, 4096).unwrap(); // installs the handler
            let path = std::env::temp_dir().join(format!("{name}.bin"));
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(&path)
                .unwrap();
            file.set_len(8192).unwrap();
            // SAFETY: a fresh shared mapping of a file we own; touched below only
            // to provoke the SIGBUS this test expects.
            let p = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    8192,
                    libc::PROT_READ,
                    libc::MAP_SHARED,
                    std::os::unix::io::AsRawFd::as_raw_fd(&file),
                    0,
                )
            };
            assert_ne!(p, libc::MAP_FAILED);
            file.set_len(0).unwrap();
            std::fs::remove_file(&path).unwrap();
            say("touching");
            // SAFETY: deliberately reads a page past the end of the file.
            let byte = unsafe { std::ptr::read_volatile(p.cast::<u8>().add(4096)) };
            say(&format!("survived?! {byte}"));
        }
        other => panic!("unknown role {other}"),
    }
}

/// Shrinks the object behind shmkit name `name` to 0 bytes, as `truncate -s 0`
/// in another process would.
fn truncate(name: &str) {
    let status = std::process::Command::new("truncate")
        .args(["-s", "0", &format!("/dev/shm/shmkit.{name}")])
        .status()
        .unwrap();
    assert!(status.success());
}

fn victim(role: &str) {
    let n = TestName::new(&format!("trunc-{role}"));
    let mut child = spawn(ENTRY, role, &[n.as_str()]);
    assert_eq!(child.expect_line(), "ready");
    std::thread::sleep(Duration::from_millis(50));
    truncate(n.as_str());
    let reports = if role == "segment" { 4 } else { 1 };
    for _ in 0..reports {
        let line = child.expect_line();
        assert!(line.starts_with("truncated: "), "{line}");
        assert!(line.contains("truncated by another process"), "{line}");
    }
    child.wait_success(LONG);
    // The shrunk object went with its last user, or is refused cleanly.
    let err = ShmOptions::new().open(n.as_str()).unwrap_err();
    assert!(
        matches!(err, Error::NotFound { .. } | Error::NotShmkit { .. }),
        "{err}"
    );
}

#[test]
fn a_segment_shrunk_under_four_threads_gives_errors_not_sigbus() {
    victim("segment");
}

#[test]
fn a_channel_sender_survives_its_object_shrinking() {
    victim("sender");
}

#[test]
fn a_blocked_channel_receiver_survives_its_object_shrinking() {
    victim("receiver");
}

#[test]
fn a_fault_in_a_mapping_shmkit_did_not_make_still_kills() {
    use std::os::unix::process::ExitStatusExt;
    let n = TestName::new("trunc-foreign");
    let mut child = spawn(ENTRY, "foreign-mapping", &[n.as_str()]);
    assert_eq!(child.expect_line(), "touching");
    let status = child.child.wait().unwrap();
    assert_eq!(status.signal(), Some(libc::SIGBUS), "{status:?}");
}
