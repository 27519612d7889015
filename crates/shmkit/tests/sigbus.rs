//! shmkit's SIGBUS handler acts only on a fault the kernel raised for an access
//! to a page a truncation took away (`BUS_ADRERR`) inside a mapping shmkit
//! made. Every other SIGBUS (`raise`, `kill -BUS`, a queued signal that names
//! one of our addresses) reaches the disposition that was there before, exactly
//! as it would have without shmkit, and the guard stays installed for the next
//! real truncation. The replacement pages keep the mapping's protection.
//!
//! Signals are process-wide, so each case runs in a child process (this test
//! binary run again): a death by signal is that child's, not the runner's.
#![cfg(target_os = "linux")]

mod common;

use std::os::unix::process::ExitStatusExt;
use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{hear, role, say, spawn, ChildProc, TestName};
use shmkit::{Access, Error, Shm, ShmOptions};

const ENTRY: &str = "child_entry";
const LONG: Duration = Duration::from_secs(60);
const SIZE: usize = 64 * 1024;

/// How many times the test's own SIGBUS handler ran, and the `si_code` it saw
/// last (SA_SIGINFO variant only).
static PREVIOUS_RAN: AtomicUsize = AtomicUsize::new(0);
static PREVIOUS_CODE: AtomicI32 = AtomicI32::new(i32::MIN);

extern "C" fn counting_siginfo_handler(
    _sig: libc::c_int,
    info: *mut libc::siginfo_t,
    _ctx: *mut libc::c_void,
) {
    // SAFETY: the kernel (or the handler chaining to us) passes a valid siginfo_t.
    PREVIOUS_CODE.store(unsafe { (*info).si_code }, Ordering::SeqCst);
    PREVIOUS_RAN.fetch_add(1, Ordering::SeqCst);
}

extern "C" fn counting_plain_handler(_sig: libc::c_int) {
    PREVIOUS_RAN.fetch_add(1, Ordering::SeqCst);
}

/// Sets this process's SIGBUS disposition, before shmkit installs its handler.
fn set_disposition(how: &str) {
    // SAFETY: a plain C struct, zero is a valid start; the handlers have the
    // signatures their flags announce.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        libc::sigemptyset(&mut action.sa_mask);
        match how {
            "default" => action.sa_sigaction = libc::SIG_DFL,
            "ignore" => action.sa_sigaction = libc::SIG_IGN,
            "siginfo-handler" => {
                action.sa_sigaction = counting_siginfo_handler as *const () as usize;
                action.sa_flags = libc::SA_SIGINFO;
            }
            "plain-handler" => action.sa_sigaction = counting_plain_handler as *const () as usize,
            // Rust's runtime installs its stack-overflow handler for SIGBUS
            // before main: keep it, it is what a Rust program has.
            "std" => {
                let mut now: libc::sigaction = std::mem::zeroed();
                assert_eq!(libc::sigaction(libc::SIGBUS, std::ptr::null(), &mut now), 0);
                assert!(
                    now.sa_sigaction != libc::SIG_DFL && now.sa_sigaction != libc::SIG_IGN,
                    "expected Rust's own SIGBUS handler to be installed"
                );
                return;
            }
            other => panic!("unknown disposition {other}"),
        }
        assert_eq!(
            libc::sigaction(libc::SIGBUS, &action, std::ptr::null_mut()),
            0
        );
    }
}

/// A SIGBUS as `sigqueue` from a process of the same user could send it: code
/// `SI_QUEUE`, but with `si_addr` naming `addr` (the kernel copies the whole
/// siginfo from the sender for a negative code).
fn queued_siginfo(addr: usize) -> libc::siginfo_t {
    // SAFETY: siginfo_t is plain data, for which all zeros is a valid value.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    info.si_signo = libc::SIGBUS;
    info.si_code = libc::SI_QUEUE;
    // si_addr opens the union after si_signo, si_errno and si_code.
    let offset = (3 * std::mem::size_of::<libc::c_int>())
        .next_multiple_of(std::mem::align_of::<*mut libc::c_void>());
    // SAFETY: `offset` lies inside the siginfo_t (128 bytes); the check below
    // confirms it is where si_addr is read from.
    unsafe {
        std::ptr::write_unaligned(
            (&mut info as *mut libc::siginfo_t)
                .cast::<u8>()
                .add(offset)
                .cast::<usize>(),
            addr,
        )
    };
    // SAFETY: reads the union field we just wrote.
    assert_eq!(unsafe { info.si_addr() } as usize, addr);
    info
}

/// Queues `info` to this very thread: delivered before the call returns.
fn queue_to_this_thread(info: &libc::siginfo_t) {
    // SAFETY: rt_tgsigqueueinfo reads a valid siginfo_t; the target is us.
    let r = unsafe {
        libc::syscall(
            libc::SYS_rt_tgsigqueueinfo,
            libc::getpid(),
            libc::syscall(libc::SYS_gettid),
            libc::SIGBUS,
            info as *const libc::siginfo_t,
        )
    };
    assert_eq!(r, 0, "{}", std::io::Error::last_os_error());
}

fn pattern(i: usize) -> u8 {
    (i * 7 + 3) as u8
}

/// A segment filled with [`pattern`].
fn filled_segment(name: &str) -> Shm {
    let shm = Shm::create(name, SIZE as u64).unwrap();
    let bytes: Vec<u8> = (0..SIZE).map(pattern).collect();
    shm.write_at(0, &bytes).unwrap();
    shm
}

/// Whether the segment still holds [`pattern`] (and was not flagged truncated).
fn intact(shm: &Shm) -> String {
    match shm.read_vec(0, SIZE) {
        Ok(v) if v.iter().enumerate().all(|(i, &b)| b == pattern(i)) => "data intact".into(),
        Ok(_) => "data changed".into(),
        Err(e) => format!("data lost: {e}"),
    }
}

/// Runs `step` until it reports `Truncated` (then says so and returns).
fn until_truncated(mut step: impl FnMut() -> shmkit::Result<()>) {
    let deadline = Instant::now() + LONG;
    loop {
        match step() {
            Err(e @ Error::Truncated { .. }) => {
                say(&format!("truncated: {e}"));
                return;
            }
            Err(e) => panic!("unexpected error: {e}"),
            Ok(()) => {}
        }
        assert!(Instant::now() < deadline, "never saw the truncation");
    }
}

/// The permissions column of /proc/self/maps for the mapping holding `addr`.
fn protection_of(addr: usize) -> String {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    for line in maps.lines() {
        let mut cols = line.split_whitespace();
        let range = cols.next().unwrap();
        let perms = cols.next().unwrap();
        let (lo, hi) = range.split_once('-').unwrap();
        let lo = usize::from_str_radix(lo, 16).unwrap();
        let hi = usize::from_str_radix(hi, 16).unwrap();
        if (lo..hi).contains(&addr) {
            return perms.to_owned();
        }
    }
    panic!("no mapping holds {addr:#x}");
}

#[test]
fn child_entry() {
    let Some(args) = role() else { return };
    let name = args[1].as_str();
    match args[0].as_str() {
        "raise" => {
            set_disposition("default");
            let shm = filled_segment(name);
            say("raising");
            // SAFETY: raise has no preconditions.
            unsafe { libc::raise(libc::SIGBUS) };
            say(&format!("survived raise(SIGBUS); {}", intact(&shm)));
        }
        "killed" => {
            set_disposition("default");
            let shm = filled_segment(name);
            say("ready");
            // The parent sends SIGBUS now; if it is swallowed, it says "go".
            let _ = hear();
            say(&format!("survived kill -BUS; {}", intact(&shm)));
        }
        "queued-at-mapping" => {
            set_disposition("default");
            let shm = filled_segment(name);
            say("queueing");
            queue_to_this_thread(&queued_siginfo(shm.as_ptr() as usize + 100));
            say(&format!("survived a queued SIGBUS; {}", intact(&shm)));
        }
        "user-then-truncate" => {
            let previous = args[2].as_str();
            set_disposition(previous);
            let shm = filled_segment(name);
            // SAFETY: raise has no preconditions.
            unsafe { libc::raise(libc::SIGBUS) };
            say(&format!(
                "after raise: previous handler ran {} time(s)",
                PREVIOUS_RAN.load(Ordering::SeqCst)
            ));
            let mut buf = [0u8; 4096];
            until_truncated(|| shm.read_at(32 * 1024, &mut buf));
        }
        "queued-from-peer" => {
            set_disposition("siginfo-handler");
            let shm = filled_segment(name);
            say(&format!("addr {:x}", shm.as_ptr() as usize + 4096));
            assert_eq!(hear(), "sent");
            // Delivered to some thread of ours: wait until a handler saw it.
            let deadline = Instant::now() + Duration::from_secs(5);
            while PREVIOUS_RAN.load(Ordering::SeqCst) == 0 && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            say(&format!(
                "previous handler ran {} time(s), last si_code {}; {}",
                PREVIOUS_RAN.load(Ordering::SeqCst),
                PREVIOUS_CODE.load(Ordering::SeqCst),
                intact(&shm)
            ));
        }
        "queued-plain-handler" => {
            set_disposition("plain-handler");
            let shm = filled_segment(name);
            queue_to_this_thread(&queued_siginfo(shm.as_ptr() as usize));
            say(&format!(
                "previous handler ran {} time(s); {}",
                PREVIOUS_RAN.load(Ordering::SeqCst),
                intact(&shm)
            ));
        }
        "queued-ignored" => {
            set_disposition("ignore");
            let shm = filled_segment(name);
            queue_to_this_thread(&queued_siginfo(shm.as_ptr() as usize + 8192));
            say(&format!("survived; {}", intact(&shm)));
        }
        "read-only" => {
            let shm = ShmOptions::new()
                .access(Access::ReadOnly)
                .open(name)
                .unwrap();
            let addr = shm.as_ptr() as usize;
            say(&format!("ready, perms {}", protection_of(addr)));
            let mut buf = [0u8; 4096];
            until_truncated(|| shm.read_at(0, &mut buf));
            say(&format!("perms {}", protection_of(addr)));
            say("writing");
            // SAFETY: deliberately writes through a read-only mapping, which
            // must fault (SIGSEGV) and end this process.
            unsafe { std::ptr::write_volatile(addr as *mut u8, 1) };
            say("the write went through");
        }
        "reset-then-register" => {
            let _first = filled_segment(name); // installs shmkit's handler
                                               // The program resets SIGBUS (or a handler resets itself), then
                                               // maps again: the registration puts shmkit's handler back in front.
            set_disposition("default");
            let shm = filled_segment(&format!("{name}-2"));
            say("ready");
            let mut buf = [0u8; 4096];
            until_truncated(|| shm.read_at(0, &mut buf));
            // Anything else still meets the default action.
            say("raising");
            // SAFETY: raise has no preconditions.
            unsafe { libc::raise(libc::SIGBUS) };
            say("survived raise(SIGBUS)");
        }
        "later-chaining" => {
            // The first mapping installs shmkit's handler; then another comes.
            let shm = filled_segment(name);
            install_later_chaining_handler();
            say("ready");
            let mut buf = [0u8; 4096];
            until_truncated(|| shm.read_at(0, &mut buf));
            say(&format!(
                "later handler ran {} time(s) first",
                PREVIOUS_RAN.load(Ordering::SeqCst).min(1)
            ));
        }
        other => panic!("unknown role {other}"),
    }
}

/// The action a handler installed after shmkit's found (shmkit's own).
static FOUND_BY_LATER: AtomicUsize = AtomicUsize::new(0);

/// Like a JVM with libjsig or the Go runtime: runs first, then passes the
/// signal on to the SA_SIGINFO handler it replaced.
extern "C" fn later_chaining_handler(
    sig: libc::c_int,
    info: *mut libc::siginfo_t,
    ctx: *mut libc::c_void,
) {
    PREVIOUS_RAN.fetch_add(1, Ordering::SeqCst);
    let found = FOUND_BY_LATER.load(Ordering::SeqCst);
    // SAFETY: `found` is shmkit's SA_SIGINFO handler (checked when installed).
    let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
        unsafe { std::mem::transmute(found) };
    f(sig, info, ctx);
}

fn install_later_chaining_handler() {
    // SAFETY: plain C structs filled or read by sigaction; the handler has the
    // SA_SIGINFO signature.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        libc::sigemptyset(&mut action.sa_mask);
        action.sa_sigaction = later_chaining_handler as *const () as usize;
        action.sa_flags = libc::SA_SIGINFO | libc::SA_NODEFER;
        let mut found: libc::sigaction = std::mem::zeroed();
        assert_eq!(libc::sigaction(libc::SIGBUS, &action, &mut found), 0);
        assert!(found.sa_flags & libc::SA_SIGINFO != 0);
        FOUND_BY_LATER.store(found.sa_sigaction, Ordering::SeqCst);
    }
}

/// Shrinks the object behind shmkit name `name` to 0 bytes, as a peer would.
fn truncate(name: &str) {
    std::fs::OpenOptions::new()
        .write(true)
        .open(format!("/dev/shm/shmkit.{name}"))
        .unwrap()
        .set_len(0)
        .unwrap();
}

/// Waits (bounded) for the child to end and returns the signal that ended it,
/// or panics with its remaining lines if it exited by itself.
fn killed_by(child: &mut ChildProc) -> i32 {
    let deadline = Instant::now() + LONG;
    loop {
        if let Some(status) = child.child.try_wait().unwrap() {
            let rest = child.rest_lines();
            return status
                .signal()
                .unwrap_or_else(|| panic!("child exited by itself ({status}): {rest:?}"));
        }
        assert!(Instant::now() < deadline, "child still running");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn raise_sigbus_kills_when_the_previous_disposition_was_the_default() {
    let n = TestName::new("sigbus-raise");
    let mut child = spawn(ENTRY, "raise", &[n.as_str()]);
    assert_eq!(child.expect_line(), "raising");
    assert_eq!(killed_by(&mut child), libc::SIGBUS);
}

#[test]
fn kill_bus_from_another_process_kills_when_the_previous_disposition_was_the_default() {
    let n = TestName::new("sigbus-kill");
    let mut child = spawn(ENTRY, "killed", &[n.as_str()]);
    assert_eq!(child.expect_line(), "ready");
    // SAFETY: kill has no memory-safety preconditions; the pid is our child's.
    let r = unsafe { libc::kill(child.child.id() as libc::pid_t, libc::SIGBUS) };
    assert_eq!(r, 0);
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.child.try_wait().unwrap().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    if child.child.try_wait().unwrap().is_none() {
        child.tell("go"); // swallowed: let it report and exit
    }
    assert_eq!(killed_by(&mut child), libc::SIGBUS);
}

#[test]
fn a_queued_sigbus_naming_a_mapping_goes_to_the_default_action_not_to_zero_pages() {
    let n = TestName::new("sigbus-queued-dfl");
    let mut child = spawn(ENTRY, "queued-at-mapping", &[n.as_str()]);
    assert_eq!(child.expect_line(), "queueing");
    assert_eq!(killed_by(&mut child), libc::SIGBUS);
}

/// After a user-sent SIGBUS that the previous disposition does not end the
/// process for, a real truncation is still recovered from.
fn guard_survives_a_user_sigbus(previous: &str, previous_runs: usize) {
    let n = TestName::new("sigbus-then-trunc");
    let mut child = spawn(ENTRY, "user-then-truncate", &[n.as_str(), previous]);
    assert_eq!(
        child.expect_line(),
        format!("after raise: previous handler ran {previous_runs} time(s)")
    );
    truncate(n.as_str());
    let line = child.expect_line();
    assert!(line.starts_with("truncated: "), "{line}");
    child.wait_success(LONG);
}

#[test]
fn the_guard_stays_after_an_ignored_user_sigbus() {
    guard_survives_a_user_sigbus("ignore", 0);
}

#[test]
fn the_guard_stays_after_a_user_sigbus_passed_to_rusts_own_handler() {
    guard_survives_a_user_sigbus("std", 0);
}

#[test]
fn the_guard_stays_after_a_user_sigbus_passed_to_a_previous_handler() {
    guard_survives_a_user_sigbus("siginfo-handler", 1);
}

#[test]
fn a_sigbus_queued_by_a_peer_naming_a_mapping_reaches_the_previous_handler_and_leaves_the_data() {
    let n = TestName::new("sigbus-queued-peer");
    let mut child = spawn(ENTRY, "queued-from-peer", &[n.as_str()]);
    let line = child.expect_line();
    let addr = usize::from_str_radix(line.strip_prefix("addr ").unwrap(), 16).unwrap();
    let info = queued_siginfo(addr);
    // SAFETY: rt_sigqueueinfo reads a valid siginfo_t; the target is our child.
    let r = unsafe {
        libc::syscall(
            libc::SYS_rt_sigqueueinfo,
            child.child.id() as libc::pid_t,
            libc::SIGBUS,
            &info as *const libc::siginfo_t,
        )
    };
    assert_eq!(r, 0, "{}", std::io::Error::last_os_error());
    child.tell("sent");
    assert_eq!(
        child.expect_line(),
        format!(
            "previous handler ran 1 time(s), last si_code {}; data intact",
            libc::SI_QUEUE
        )
    );
    child.wait_success(LONG);
}

#[test]
fn a_queued_sigbus_naming_a_mapping_reaches_a_plain_previous_handler_and_leaves_the_data() {
    let n = TestName::new("sigbus-queued-plain");
    let mut child = spawn(ENTRY, "queued-plain-handler", &[n.as_str()]);
    assert_eq!(
        child.expect_line(),
        "previous handler ran 1 time(s); data intact"
    );
    child.wait_success(LONG);
}

#[test]
fn a_queued_sigbus_naming_a_mapping_is_ignored_when_sigbus_was_ignored() {
    let n = TestName::new("sigbus-queued-ign");
    let mut child = spawn(ENTRY, "queued-ignored", &[n.as_str()]);
    assert_eq!(child.expect_line(), "survived; data intact");
    child.wait_success(LONG);
}

#[test]
fn a_read_only_mapping_stays_read_only_after_a_truncation() {
    let n = TestName::new("sigbus-ro");
    let _owner = filled_segment(n.as_str());
    let mut child = spawn(ENTRY, "read-only", &[n.as_str()]);
    let line = child.expect_line();
    assert!(line.starts_with("ready, perms r-"), "{line}");
    truncate(n.as_str());
    let line = child.expect_line();
    assert!(line.starts_with("truncated: "), "{line}");
    let line = child.expect_line();
    assert!(line.starts_with("perms r-"), "after recovery: {line}");
    assert_eq!(child.expect_line(), "writing");
    assert_eq!(killed_by(&mut child), libc::SIGSEGV);
}

#[test]
fn a_registration_puts_the_handler_back_after_sigbus_was_reset_to_the_default() {
    let n = TestName::new("sigbus-reset");
    let second = TestName::new_exact(&format!("{}-2", n.as_str()));
    let mut child = spawn(ENTRY, "reset-then-register", &[n.as_str()]);
    assert_eq!(child.expect_line(), "ready");
    truncate(second.as_str());
    let line = child.expect_line();
    assert!(line.starts_with("truncated: "), "{line}");
    assert_eq!(child.expect_line(), "raising");
    assert_eq!(killed_by(&mut child), libc::SIGBUS);
}

/// What the docs say of a handler installed after shmkit's: if it passes the
/// signal on, a truncation is still recovered from (this held before the
/// si_code checks too).
#[test]
fn a_handler_installed_later_that_passes_signals_on_keeps_truncations_recoverable() {
    let n = TestName::new("sigbus-later");
    let mut child = spawn(ENTRY, "later-chaining", &[n.as_str()]);
    assert_eq!(child.expect_line(), "ready");
    truncate(n.as_str());
    let line = child.expect_line();
    assert!(line.starts_with("truncated: "), "{line}");
    assert_eq!(child.expect_line(), "later handler ran 1 time(s) first");
    child.wait_success(LONG);
}
