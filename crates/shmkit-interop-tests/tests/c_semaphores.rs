//! The classic WriteMap/ReadMap handshake between shmkit and a plain C program
//! that uses the operating system's named semaphores: POSIX `sem_open` on Linux,
//! `OpenSemaphoreA` on Windows (run under Wine). Also a Win32 mutex whose C owner
//! is killed: shmkit's adapter reports it abandoned.

use std::process::{Command, Stdio};
use std::time::Duration;

use shmkit::ShmOptions;
use shmkit_interop_tests::C_PEER;

const ROUNDS: usize = 2_000;
const TIMEOUT: Duration = Duration::from_secs(10);

fn os_name(tag: &str) -> String {
    let base = format!("interop-sem-{tag}-{}", std::process::id());
    if cfg!(windows) {
        format!("Local\\{base}")
    } else {
        format!("/{base}")
    }
}

/// Removes the segment and semaphores at the end, even on failure (Unix; on
/// Windows they go with their last handle).
struct Cleanup(Vec<String>);
impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = shmkit::Shm::remove_raw(&self.0[0]);
        #[cfg(unix)]
        for sem in &self.0[1..] {
            let _ = shmkit::sync::PosixSemaphore::remove(sem);
        }
    }
}

/// The OS's named semaphore, through shmkit's adapter for this platform.
#[cfg(unix)]
mod os_sem {
    use shmkit::sync::PosixSemaphore;
    pub struct Sem(PosixSemaphore);
    pub fn create(name: &str, initial: u32) -> Sem {
        Sem(PosixSemaphore::create(name, initial).unwrap())
    }
    impl Sem {
        pub fn wait(&self, t: std::time::Duration) {
            self.0.wait_timeout(t).unwrap()
        }
        pub fn release(&self) {
            self.0.post().unwrap()
        }
    }
}

#[cfg(windows)]
mod os_sem {
    use shmkit::sync::NativeSemaphore;
    pub struct Sem(NativeSemaphore);
    pub fn create(name: &str, initial: u32) -> Sem {
        Sem(NativeSemaphore::create(name, initial, 1).unwrap())
    }
    impl Sem {
        pub fn wait(&self, t: std::time::Duration) {
            self.0.wait_timeout(t).unwrap()
        }
        pub fn release(&self) {
            self.0.release(1).unwrap();
        }
    }
}

fn message(i: usize) -> Vec<u8> {
    format!("message {i}: ").repeat(i % 40 + 1).into_bytes()
}

#[test]
fn writemap_readmap_handshake_with_a_c_program() {
    let (seg, wname, rname) = (os_name("seg"), os_name("WriteMap"), os_name("ReadMap"));
    let _cleanup = Cleanup(vec![seg.clone(), wname.clone(), rname.clone()]);
    let shm = ShmOptions::new().size(4096).create_raw(&seg).unwrap();
    let write_map = os_sem::create(&wname, 1);
    let read_map = os_sem::create(&rname, 0);

    let rounds = ROUNDS.to_string();
    let mut reader = Command::new(C_PEER)
        .args(["handshake", &seg, &rounds, &wname, &rname])
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut previous: Option<Vec<u8>> = None;
    for i in 0..=ROUNDS {
        write_map.wait(TIMEOUT);
        if let Some(sent) = previous.take() {
            // The C reader handled the last message: it comes back upper-cased.
            let len = u32::from_le_bytes(shm.read_vec(0, 4).unwrap().try_into().unwrap());
            assert_eq!(len as usize, sent.len());
            assert_eq!(
                shm.read_vec(4, sent.len()).unwrap(),
                sent.to_ascii_uppercase()
            );
        }
        if i == ROUNDS {
            break;
        }
        let msg = message(i);
        shm.write_at(0, &(msg.len() as u32).to_le_bytes()).unwrap();
        shm.write_at(4, &msg).unwrap();
        read_map.release();
        previous = Some(msg);
    }
    assert!(reader.wait().unwrap().success());
}

#[test]
fn the_c_program_reports_a_missing_semaphore() {
    let seg = os_name("missing");
    let _cleanup = Cleanup(vec![seg.clone()]);
    let _shm = ShmOptions::new().size(4096).create_raw(&seg).unwrap();
    let missing = os_name("no-such-semaphore");
    let out = Command::new(C_PEER)
        .args(["handshake", &seg, "1", &missing, &missing])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not exist"));
    // shmkit says NotFound, naming it.
    #[cfg(unix)]
    let e = shmkit::sync::PosixSemaphore::open(&missing).unwrap_err();
    #[cfg(windows)]
    let e = shmkit::sync::NativeSemaphore::open(&missing).unwrap_err();
    assert!(e.is_not_found(), "{e}");
    assert!(e.to_string().contains(&missing), "{e}");
}

#[cfg(windows)]
#[test]
fn a_win32_mutex_whose_owner_was_killed_is_reported_abandoned() {
    use std::io::{BufRead, BufReader};

    use shmkit::sync::{LockError, NativeMutex};
    let name = os_name("mutex");
    let mut owner = Command::new(C_PEER)
        .args(["hold-mutex", &name, "0", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(owner.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "locked");
    let m = NativeMutex::open(&name).unwrap();
    assert!(matches!(
        m.lock_timeout(Duration::from_millis(50)),
        Err(LockError::Failed(shmkit::Error::Timeout { .. }))
    ));
    owner.kill().unwrap(); // TerminateProcess
    owner.wait().unwrap();
    match m.lock_timeout(TIMEOUT) {
        Err(LockError::OwnerDied(_guard)) => {}
        other => panic!("expected OwnerDied, got {:?}", other.map(|_| ())),
    }
    // Windows reports abandonment once; after our release it is a plain mutex.
    assert!(m.lock_timeout(TIMEOUT).is_ok());
}
