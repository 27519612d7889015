//! `fork` without `exec`: a child that never uses shmkit must not keep its dead
//! parent looking alive (the parent's liveness token is not inherited), and a
//! child that does use shmkit is a process of its own.
#![cfg(target_os = "linux")]

mod common;

use std::future::Future;
use std::time::Duration;

use common::{hear, role, say, spawn, TestName};
use shmkit::channel::ChannelOptions;
use shmkit::sync::{LockError, Mutex};

const ENTRY: &str = "child_entry";
/// Far above how long a death takes to notice (50 ms checks); only a bound.
const NOTICE: Duration = Duration::from_secs(5);

#[test]
fn child_entry() {
    let Some(args) = role() else { return };
    match args[0].as_str() {
        "lock-send-fork" => {
            let mutex = Mutex::<u64>::open(&args[1]).unwrap();
            let mut tx = ChannelOptions::new().sender(&args[2]).unwrap();
            let mut guard = mutex.lock().unwrap();
            *guard = 1; // half-way through an update
            tx.send(b"hello").unwrap();
            // A child that sleeps and never touches shmkit, as a daemon or a
            // multiprocessing worker would: only async-signal-safe calls.
            // SAFETY: fork, then in the child only sleep and _exit.
            let child = unsafe { libc::fork() };
            if child == 0 {
                loop {
                    // SAFETY: sleep is async-signal-safe.
                    unsafe { libc::sleep(60) };
                }
            }
            assert!(child > 0, "fork failed");
            say(&format!("forked {child}"));
            hear();
            drop(guard);
        }
        "fork-then-use" => {
            // SAFETY: fork; the child goes on in Rust, as a program that uses
            // shmkit after fork does (single-threaded here: --test-threads=1
            // runs this role on one thread).
            let child = unsafe { libc::fork() };
            if child == 0 {
                let mutex = Mutex::<u64>::open(&args[1]).unwrap();
                let guard = mutex.lock().unwrap();
                say("child locked");
                std::mem::forget(guard);
                // SAFETY: leaves at once, as a killed process would, holding the lock.
                unsafe { libc::_exit(0) };
            }
            let mut status = 0;
            // SAFETY: waits for our own child.
            unsafe { libc::waitpid(child, &mut status, 0) };
            say("parent alive");
            hear();
        }
        "await-fork-await" => {
            // A receive pending in the reactor when the process forks; the
            // child drops it and awaits another channel with its own reactor.
            let mut rx_a = ChannelOptions::new().receiver(&args[1]).unwrap();
            let waker = std::task::Waker::noop();
            let mut pending = Box::pin(rx_a.recv_async());
            let polled = pending
                .as_mut()
                .poll(&mut std::task::Context::from_waker(waker));
            assert!(polled.is_pending());
            // SAFETY: fork; the child goes on in Rust (the reactor threads of
            // the parent do not exist there, which is what is tested).
            let child = unsafe { libc::fork() };
            if child == 0 {
                // SAFETY: alarm only schedules SIGALRM: a child that hangs dies.
                unsafe { libc::alarm(20) };
                drop(pending);
                let mut rx_b = ChannelOptions::new().receiver(&args[2]).unwrap();
                say("child waiting");
                let got = shmkit::block_on(rx_b.recv_async()).unwrap();
                say(&format!("child got {}", String::from_utf8_lossy(&got)));
                // SAFETY: leaves at once.
                unsafe { libc::_exit(0) };
            }
            let mut status = 0;
            // SAFETY: waits for our own child.
            unsafe { libc::waitpid(child, &mut status, 0) };
            say("parent done");
            hear();
        }
        other => panic!("unknown role {other}"),
    }
}

/// Kills a process we cannot wait for (a grandchild), however the test ends.
struct KillOnDrop(libc::pid_t);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        // SAFETY: signals a process id we were given by the child that forked it.
        unsafe { libc::kill(self.0, libc::SIGKILL) };
    }
}

#[test]
fn a_forked_child_does_not_keep_a_killed_owner_or_sender_alive() {
    let mutex_name = TestName::new("fork-mutex");
    let chan = TestName::new("fork-chan");
    let mutex = Mutex::create(mutex_name.as_str(), 0u64).unwrap();
    let mut rx = ChannelOptions::new().receiver(chan.as_str()).unwrap();

    let mut child = spawn(
        ENTRY,
        "lock-send-fork",
        &[mutex_name.as_str(), chan.as_str()],
    );
    let line = child.expect_line();
    let grandchild: libc::pid_t = line.strip_prefix("forked ").unwrap().parse().unwrap();
    let _grandchild = KillOnDrop(grandchild);
    assert_eq!(rx.recv().unwrap(), b"hello");
    child.kill();

    // The grandchild still sleeps with a copy of everything its parent had open.
    // SAFETY: signal 0 only checks that the process exists.
    assert_eq!(unsafe { libc::kill(grandchild, 0) }, 0, "grandchild alive");
    match mutex.lock_timeout(NOTICE) {
        Err(LockError::OwnerDied(g)) => assert_eq!(*g, 1),
        Ok(_) => panic!("the dead owner's half-update went unreported"),
        Err(LockError::Failed(e)) => panic!("the dead owner still looks alive: {e}"),
    }
    let e = rx.recv_timeout(NOTICE).unwrap_err();
    assert!(
        e.is_disconnected(),
        "the dead sender still looks alive: {e}"
    );
}

#[test]
fn a_forked_child_awaits_with_its_own_reactor() {
    let (a, b) = (TestName::new("fork-aw-a"), TestName::new("fork-aw-b"));
    let _tx_a = ChannelOptions::new().sender(a.as_str()).unwrap();
    let mut parent = spawn(ENTRY, "await-fork-await", &[a.as_str(), b.as_str()]);
    assert_eq!(parent.expect_line(), "child waiting");
    let mut tx_b = ChannelOptions::new().sender(b.as_str()).unwrap();
    tx_b.send(b"after fork").unwrap();
    assert_eq!(parent.expect_line(), "child got after fork");
    assert_eq!(parent.expect_line(), "parent done");
    parent.tell("done");
}

#[test]
fn a_forked_child_that_uses_shmkit_is_its_own_process() {
    let mutex_name = TestName::new("fork-own");
    let mutex = Mutex::create(mutex_name.as_str(), 0u64).unwrap();
    let mut parent = spawn(ENTRY, "fork-then-use", &[mutex_name.as_str()]);
    assert_eq!(parent.expect_line(), "child locked");
    assert_eq!(parent.expect_line(), "parent alive");
    // The child died holding the lock while its parent lives on: the owner is
    // the child, by its own pid and token, so its death is seen.
    match mutex.lock_timeout(NOTICE) {
        Err(LockError::OwnerDied(_)) => {}
        Ok(_) => panic!("no owner death reported"),
        Err(LockError::Failed(e)) => panic!("{e}"),
    }
    parent.tell("done");
}
