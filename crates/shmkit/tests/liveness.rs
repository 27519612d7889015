//! Liveness tokens that cannot be raced or pre-empted: a token planted by
//! another user is not believed, a reaper never removes a live process's
//! token, and an owner recorded with this process's pid but another start time
//! is not taken for this process.
#![cfg(target_os = "linux")]

mod common;

use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{hear, role, say, spawn, TestName};
use shmkit::sync::{LockError, Mutex};
use shmkit::ShmOptions;

const ENTRY: &str = "child_entry";
const NOTICE: Duration = Duration::from_secs(5);

/// Tests that reap tokens, or plant ones to be reaped, run one at a time.
static REAPING: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn child_entry() {
    let Some(args) = role() else { return };
    match args[0].as_str() {
        "lock" => {
            let mutex = Mutex::<u64>::open(&args[1]).unwrap();
            let guard = mutex.lock().unwrap();
            say("locked");
            hear();
            drop(guard);
        }
        "token" => {
            // Any call that records this process makes its token.
            let mutex = Mutex::<u64>::open(&args[1]).unwrap();
            drop(mutex.lock().unwrap());
            say("ready");
            hear();
        }
        other => panic!("unknown role {other}"),
    }
}

fn start_time(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest = &stat[stat.rfind(')').unwrap() + 1..];
    rest.split_whitespace().nth(19).unwrap().parse().unwrap()
}

fn token_path(pid: u32, start: u64) -> String {
    format!("/dev/shm/shmkit-live.{pid}.{start}")
}

/// Whether the token at `path` is held (locked by a live process).
fn held(path: &str) -> bool {
    let Ok(file) = std::fs::File::open(path) else {
        return false;
    };
    // SAFETY: flock is plain data; zero is a valid start, completed below.
    let mut lock: libc::flock = unsafe { std::mem::zeroed() };
    lock.l_type = libc::F_WRLCK as libc::c_short;
    lock.l_whence = libc::SEEK_SET as libc::c_short;
    lock.l_len = 1;
    // SAFETY: F_OFD_GETLK fills the flock we pass, for a descriptor we own.
    let r = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_GETLK, &mut lock) };
    r == 0 && lock.l_type != libc::F_UNLCK as libc::c_short
}

#[test]
fn a_token_planted_by_another_user_does_not_keep_a_dead_owner_alive() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: planting a file owned by another user needs root");
        return;
    }
    let name = TestName::new("plant");
    let mutex = Mutex::create(name.as_str(), 0u64).unwrap();
    let mut child = spawn(ENTRY, "lock", &[name.as_str()]);
    assert_eq!(child.expect_line(), "locked");
    let pid = child.child.id();
    let path = token_path(pid, start_time(pid));
    assert!(held(&path), "the child holds its token");
    child.kill();

    // Another user (nobody) puts a file of its own under the dead owner's
    // token name and keeps it locked.
    let _ = std::fs::remove_file(&path);
    let planted = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .unwrap();
    let c = std::ffi::CString::new(path.clone()).unwrap();
    // SAFETY: plain calls on a valid C path and a descriptor we own.
    unsafe {
        assert_eq!(libc::chown(c.as_ptr(), 65534, 65534), 0);
        assert_eq!(libc::fchmod(planted.as_raw_fd(), 0o600), 0);
    }
    // SAFETY: as in `held`, setting the lock instead.
    let mut lock: libc::flock = unsafe { std::mem::zeroed() };
    lock.l_type = libc::F_WRLCK as libc::c_short;
    lock.l_whence = libc::SEEK_SET as libc::c_short;
    lock.l_len = 1;
    // SAFETY: F_OFD_SETLK reads the flock we pass, for a descriptor we own.
    let set = unsafe { libc::fcntl(planted.as_raw_fd(), libc::F_OFD_SETLK, &mut lock) };
    assert_eq!(set, 0);
    let outcome = mutex.lock_timeout(NOTICE);
    let _ = std::fs::remove_file(&path);
    match outcome {
        Err(LockError::OwnerDied(_)) => {}
        Ok(_) => panic!("no owner death reported"),
        Err(LockError::Failed(e)) => panic!("the planted token was believed: {e}"),
    }
}

#[test]
fn a_reaper_never_removes_the_token_of_a_live_process() {
    let _serial = REAPING.lock().unwrap_or_else(|e| e.into_inner());
    let name = TestName::new("reap-race");
    let _mutex = Mutex::create(name.as_str(), 0u64).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let reaper = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                shmkit::Shm::reap_dead_tokens(true);
            }
        })
    };
    let mut lost = Vec::new();
    for _ in 0..20 {
        let mut child = spawn(ENTRY, "token", &[name.as_str()]);
        assert_eq!(child.expect_line(), "ready");
        let pid = child.child.id();
        let path = token_path(pid, start_time(pid));
        if !held(&path) {
            lost.push(pid);
        }
        child.tell("done");
        child.wait_success(NOTICE);
    }
    stop.store(true, Ordering::Relaxed);
    reaper.join().unwrap();
    assert!(lost.is_empty(), "live processes without a token: {lost:?}");
}

#[test]
fn an_owner_with_my_pid_but_another_start_time_is_not_me() {
    // A dead owner from another PID namespace can carry this process's pid.
    let name = TestName::new("same-pid");
    let shm = ShmOptions::new().size(4096).create(name.as_str()).unwrap();
    let mutex = Mutex::init_in(&shm, 0, 0u64).unwrap();
    let pid = std::process::id();
    let other_start = start_time(pid) + 12_345;
    // The state block (docs/LAYOUT.md): word at 12, owner pid at 24, its start
    // time at 32.
    shm.write_at(12, &pid.to_le_bytes()).unwrap();
    shm.write_at(24, &pid.to_le_bytes()).unwrap();
    shm.write_at(32, &other_start.to_le_bytes()).unwrap();
    match mutex.lock_timeout(NOTICE) {
        Err(LockError::OwnerDied(_)) => {}
        Ok(_) => panic!("no owner death reported"),
        Err(LockError::Failed(e)) => panic!("the dead owner was taken for this process: {e}"),
    };
}

#[test]
fn tokens_of_processes_killed_while_making_them_are_reaped() {
    let _serial = REAPING.lock().unwrap_or_else(|e| e.into_inner());
    // A process that no longer runs: a pid above the kernel's maximum.
    let pid = 4_194_304 + std::process::id() % 1000;
    let real = token_path(pid, 1);
    let temp = format!("{real}.new-42");
    let stray = format!("{real}.new-x"); // not a name shmkit makes: left alone
    for path in [&temp, &stray] {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .unwrap();
        // SAFETY: fchmod on a descriptor we own.
        assert_eq!(unsafe { libc::fchmod(file.as_raw_fd(), 0o600) }, 0);
    }
    // Killed between link and unlink: the real name and the temporary one.
    std::fs::hard_link(&temp, &real).unwrap();
    shmkit::Shm::reap_dead_tokens(true);
    let left: Vec<bool> = [&real, &temp, &stray]
        .iter()
        .map(|p| std::path::Path::new(p).exists())
        .collect();
    let _ = std::fs::remove_file(&stray);
    let _ = std::fs::remove_file(&temp);
    let _ = std::fs::remove_file(&real);
    assert_eq!(left, [false, false, true], "real, temporary, stray");
}
