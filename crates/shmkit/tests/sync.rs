//! Mutex, semaphore and event across real processes: contention, killed owners,
//! ping-pong, timeouts, and every bad input we could think of.

mod common;

use std::time::{Duration, Instant};

use common::{hear, role, say, spawn, TestName};
use shmkit::sync::{Event, EventMode, LockError, Mutex, Semaphore, SEMAPHORE_MAX};
use shmkit::{Error, SegmentKind, Shm, ShmOptions};

const ENTRY: &str = "child_entry";
const LONG: Duration = Duration::from_secs(60);

/// Offsets of the state block words, from docs/LAYOUT.md.
const WORD: u64 = 12;
const PARAM_A: u64 = 20;

#[test]
fn child_entry() {
    let Some(args) = role() else { return };
    let a = |i: usize| args[i].as_str();
    match a(0) {
        "persistent-holder" => {
            let m = Mutex::<u64>::create_or_open_persistent(a(1), 0).unwrap();
            let mut g = m.lock().unwrap();
            *g = 1; // half-way through an update
            say("locked");
            hear();
        }
        "count" => {
            let m = Mutex::<u64>::open(a(1)).unwrap();
            let n: u64 = a(2).parse().unwrap();
            for _ in 0..n {
                let mut g = m.lock().unwrap();
                // A plain read-modify-write: only mutual exclusion keeps it exact.
                let v = *g;
                *g = v + 1;
            }
        }
        "hold" => {
            let m = Mutex::<[u64; 2]>::open(a(1)).unwrap();
            let mut g = m.lock().unwrap();
            g[0] += 1; // half of an update that keeps g[0] == g[1]
            say("locked");
            hear();
            g[1] += 1;
        }
        "wait-lock" => {
            let m = Mutex::<[u64; 2]>::open(a(1)).unwrap();
            say("waiting");
            let started = Instant::now();
            match m.lock() {
                Err(LockError::OwnerDied(mut g)) => {
                    g[1] = g[0]; // repair
                    g.mark_consistent();
                    say(&format!(
                        "repaired after {}ms",
                        started.elapsed().as_millis()
                    ));
                }
                Ok(_) => say("no owner-died"),
                Err(LockError::Failed(e)) => say(&format!("error {e}")),
            };
        }
        "read-when-unlocked" => {
            let m = Mutex::<[u64; 2]>::open(a(1)).unwrap();
            let busy = m.try_lock().is_err();
            say(&format!("busy {busy}"));
            let g = m.lock().unwrap();
            say(&format!("read {} {}", g[0], g[1]));
        }
        "pong" => {
            let shm = Shm::open(a(1)).unwrap();
            let ping = Semaphore::open_in(&shm, 0).unwrap();
            let pong = Semaphore::open_in(&shm, 64).unwrap();
            let rounds: u64 = a(2).parse().unwrap();
            let counter = shm.atomic_u64(128).unwrap();
            for _ in 0..rounds {
                ping.wait_timeout(LONG).unwrap();
                let v = counter.load(std::sync::atomic::Ordering::Relaxed);
                counter.store(v + 1, std::sync::atomic::Ordering::Relaxed);
                pong.release(1).unwrap();
            }
        }
        "event-wait" => {
            let ev = Event::open(a(1)).unwrap();
            say("waiting");
            ev.wait_timeout(LONG).unwrap();
            say("woken");
        }
        "sem-wait" => {
            let sem = Semaphore::open(a(1)).unwrap();
            say("waiting");
            sem.wait().unwrap();
            say("got it");
        }
        other => panic!("unknown role {other}"),
    }
}

#[test]
fn four_processes_increment_a_counter_exactly() {
    let name = TestName::new("mutex-count");
    let m = Mutex::create(name.as_str(), 0u64).unwrap();
    let per_child = 100_000u64;
    let mut kids: Vec<_> = (0..4)
        .map(|_| spawn(ENTRY, "count", &[name.as_str(), &per_child.to_string()]))
        .collect();
    for k in &mut kids {
        k.wait_success(Duration::from_secs(120));
    }
    assert_eq!(*m.lock().unwrap(), 4 * per_child);
}

#[test]
fn killed_holder_is_reported_to_a_blocked_waiter_who_repairs() {
    let name = TestName::new("mutex-kill");
    let m = Mutex::create(name.as_str(), [0u64; 2]).unwrap();
    let mut holder = spawn(ENTRY, "hold", &[name.as_str()]);
    assert_eq!(holder.expect_line(), "locked");

    // A live holder: others wait, time out and are told so.
    let e = m.lock_timeout(Duration::from_millis(50)).unwrap_err();
    assert!(
        matches!(e, LockError::Failed(Error::Timeout { .. })),
        "{e:?}"
    );
    assert!(matches!(
        m.try_lock(),
        Err(LockError::Failed(Error::WouldBlock { .. }))
    ));

    let mut waiter = spawn(ENTRY, "wait-lock", &[name.as_str()]);
    assert_eq!(waiter.expect_line(), "waiting");
    std::thread::sleep(Duration::from_millis(100)); // let it block in lock()
    holder.kill();
    let report = waiter.expect_line();
    assert!(report.starts_with("repaired after"), "{report}");
    eprintln!("blocked waiter: {report} (including the 100 ms before the kill)");
    waiter.wait_success(Duration::from_secs(10));

    // Repaired and marked consistent: plain Ok, data consistent.
    let g = m.lock_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(g[0], g[1]);
    assert_eq!(g[0], 1);
}

#[test]
fn owner_died_stays_until_marked_consistent() {
    let name = TestName::new("mutex-poison");
    let m = Mutex::create(name.as_str(), [0u64; 2]).unwrap();
    let mut holder = spawn(ENTRY, "hold", &[name.as_str()]);
    assert_eq!(holder.expect_line(), "locked");
    holder.kill();

    let started = Instant::now();
    let g = match m.lock_timeout(Duration::from_secs(10)) {
        Err(LockError::OwnerDied(g)) => g,
        other => panic!("expected OwnerDied, got {:?}", other.map(|_| ())),
    };
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(
        (g[0], g[1]),
        (1, 0),
        "the dead owner's half update is visible"
    );
    drop(g); // not repaired

    // `?` turns it into an error naming the mutex; the mutex stays poisoned.
    let via_question_mark = || -> shmkit::Result<()> {
        let _g = m.lock()?;
        Ok(())
    };
    let e = via_question_mark().unwrap_err();
    assert!(matches!(e, Error::OwnerDied { .. }), "{e}");
    assert!(e.to_string().contains(name.as_str()), "{e}");

    let mut g = m
        .try_lock()
        .unwrap_err()
        .into_guard()
        .expect("still poisoned");
    g[1] = g[0];
    g.mark_consistent();
    drop(g);
    assert!(m.lock().is_ok());
    // Another handle (as another process would) sees it clean too.
    assert!(Mutex::<[u64; 2]>::open(name.as_str())
        .unwrap()
        .lock()
        .is_ok());
}

#[test]
fn a_panic_while_holding_poisons_like_std() {
    let name = TestName::new("mutex-panic");
    let m = std::sync::Arc::new(Mutex::create(name.as_str(), 5u32).unwrap());
    let m2 = std::sync::Arc::clone(&m);
    let r = std::thread::spawn(move || {
        let _g = m2.lock().unwrap();
        panic!("while holding");
    })
    .join();
    assert!(r.is_err());
    assert!(matches!(m.lock(), Err(LockError::OwnerDied(_))));
}

/// The classic writer creates its mutex owned, so that no reader gets in before
/// the data is written: a reader in another process finds it held from the
/// start and reads only what the writer wrote under it.
#[test]
fn a_mutex_created_locked_keeps_readers_out_until_the_data_is_written() {
    let name = TestName::new("locked");
    let m = Mutex::create_locked(name.as_str(), [0u64; 2]).unwrap();
    let mut reader = spawn(ENTRY, "read-when-unlocked", &[name.as_str()]);
    assert_eq!(reader.expect_line(), "busy true");
    let mut guard = m.initial_guard().expect("created locked");
    assert!(m.initial_guard().is_none(), "the guard is handed out once");
    *guard = [7, 11];
    drop(guard);
    assert_eq!(reader.expect_line(), "read 7 11");
    reader.wait_success(Duration::from_secs(30));
    // Not created locked: no initial guard; created locked but never taken:
    // dropping the mutex unlocks.
    assert!(Mutex::<[u64; 2]>::open(name.as_str())
        .unwrap()
        .initial_guard()
        .is_none());
    let other = TestName::new("locked-drop");
    let m = Mutex::create_locked(other.as_str(), 5u32).unwrap();
    let opener = Mutex::<u32>::open(other.as_str()).unwrap();
    assert!(opener.try_lock().is_err());
    drop(m);
    assert_eq!(*opener.try_lock().unwrap(), 5);
}

#[test]
fn semaphore_ping_pong_100k_rounds() {
    let name = TestName::new("sem-pingpong");
    let shm = Shm::create(name.as_str(), 4096).unwrap();
    let ping = Semaphore::init_in(&shm, 0, 0, 1).unwrap();
    let pong = Semaphore::init_in(&shm, 64, 0, 1).unwrap();
    let counter = shm.atomic_u64(128).unwrap();
    let rounds = 100_000u64;
    let mut peer = spawn(ENTRY, "pong", &[name.as_str(), &rounds.to_string()]);
    for i in 0..rounds {
        counter.store(2 * i, std::sync::atomic::Ordering::Relaxed);
        ping.release(1).unwrap();
        pong.wait_timeout(LONG).unwrap();
        // The peer incremented exactly once per round: nothing lost or doubled.
        assert_eq!(
            counter.load(std::sync::atomic::Ordering::Relaxed),
            2 * i + 1
        );
    }
    peer.wait_success(Duration::from_secs(30));
    assert_eq!(ping.count(), 0);
    assert_eq!(pong.count(), 0);
}

#[test]
fn a_blocked_semaphore_wait_is_released_by_another_process() {
    let name = TestName::new("sem-block");
    let sem = Semaphore::create(name.as_str(), 0, 10).unwrap();
    let mut kid = spawn(ENTRY, "sem-wait", &[name.as_str()]);
    assert_eq!(kid.expect_line(), "waiting");
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(sem.release(1).unwrap(), 0);
    assert_eq!(kid.expect_line(), "got it");
    kid.wait_success(Duration::from_secs(10));
}

#[test]
fn events_wake_one_or_all_across_processes() {
    let auto = TestName::new("ev-auto");
    let ev = Event::create(auto.as_str(), EventMode::AutoReset, false).unwrap();
    let mut kid = spawn(ENTRY, "event-wait", &[auto.as_str()]);
    assert_eq!(kid.expect_line(), "waiting");
    ev.set().unwrap();
    assert_eq!(kid.expect_line(), "woken");
    kid.wait_success(Duration::from_secs(10));
    assert!(
        !ev.is_set().unwrap(),
        "auto-reset: the waiter took the signal"
    );

    let manual = TestName::new("ev-manual");
    let ev = Event::create(manual.as_str(), EventMode::ManualReset, false).unwrap();
    let mut kids: Vec<_> = (0..2)
        .map(|_| spawn(ENTRY, "event-wait", &[manual.as_str()]))
        .collect();
    for k in &mut kids {
        assert_eq!(k.expect_line(), "waiting");
    }
    ev.set().unwrap();
    for k in &mut kids {
        assert_eq!(k.expect_line(), "woken");
        k.wait_success(Duration::from_secs(10));
    }
    assert!(ev.is_set().unwrap(), "manual-reset: stays set");
    ev.reset().unwrap();
    assert!(!ev.is_set().unwrap());
}

#[test]
fn waits_with_a_timeout_return_on_time_when_nobody_signals() {
    let name = TestName::new("timeouts");
    let shm = Shm::create(name.as_str(), 4096).unwrap();
    let sem = Semaphore::init_in(&shm, 0, 0, 1).unwrap();
    let ev = Event::init_in(&shm, 64, EventMode::AutoReset, false).unwrap();
    let t = Duration::from_millis(100);
    for (wait, what) in [
        (
            &(|| sem.wait_timeout(t)) as &dyn Fn() -> shmkit::Result<()>,
            "timed out after 100ms waiting to take a unit",
        ),
        (
            &|| ev.wait_timeout(t),
            "timed out after 100ms waiting to see the event set",
        ),
    ] {
        let started = Instant::now();
        let e = wait().unwrap_err();
        let took = started.elapsed();
        assert!(e.is_timeout(), "{e}");
        assert!(e.to_string().ends_with(what), "{e}");
        assert!(took >= t, "returned early: {took:?}");
        assert!(took < Duration::from_secs(2), "returned late: {took:?}");
    }
    assert!(!sem.try_wait().unwrap());
    assert!(sem.wait_timeout(Duration::ZERO).unwrap_err().is_timeout());
}

#[test]
fn semaphore_counts_are_checked() {
    let name = TestName::new("sem-bad");
    let sem = Semaphore::create(name.as_str(), 1, 3).unwrap();
    assert_eq!(sem.max_count().unwrap(), 3);
    assert_eq!(sem.release(2).unwrap(), 1);
    let e = sem.release(1).unwrap_err();
    assert!(
        matches!(
            e,
            Error::AboveMaximum {
                count: Some(3),
                release: 1,
                max: Some(3),
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains(name.as_str()), "{e}");
    assert_eq!(sem.count(), 3, "a refused release changes nothing");
    // Overflowing counts: u32::MAX would wrap a naive count.
    assert!(matches!(
        sem.release(u32::MAX),
        Err(Error::AboveMaximum { .. })
    ));
    assert!(matches!(sem.release(0), Err(Error::InvalidArgument { .. })));
    assert_eq!(sem.count(), 3);

    let bad = TestName::new("sem-bad-args");
    for (initial, max) in [(2, 1), (0, 0), (0, SEMAPHORE_MAX + 1), (u32::MAX, u32::MAX)] {
        let e = Semaphore::create(bad.as_str(), initial, max).unwrap_err();
        assert!(matches!(e, Error::InvalidArgument { .. }), "{e}");
    }
    assert!(Semaphore::open(bad.as_str()).unwrap_err().is_not_found());
}

#[test]
fn opening_what_is_not_there_names_it() {
    let name = TestName::new("sem-missing");
    let e = Semaphore::open(name.as_str()).unwrap_err();
    assert!(e.is_not_found());
    assert_eq!(e.to_string(), format!("{}: not found", name.as_str()));
    assert!(Mutex::<()>::open(name.as_str()).unwrap_err().is_not_found());
    assert!(Event::open(name.as_str()).unwrap_err().is_not_found());
    assert!(matches!(
        Semaphore::create("", 0, 1),
        Err(Error::InvalidName { .. })
    ));
}

#[test]
fn the_wrong_kind_under_a_name_is_refused() {
    let sem = TestName::new("kind-sem");
    let _s = Semaphore::create(sem.as_str(), 0, 1).unwrap();
    let e = Mutex::<()>::open(sem.as_str()).unwrap_err();
    assert!(matches!(e, Error::WrongKind { .. }), "{e}");
    assert!(
        e.to_string()
            .contains("is a shmkit semaphore, not a shmkit mutex"),
        "{e}"
    );
    assert!(matches!(
        Event::open(sem.as_str()),
        Err(Error::WrongKind { .. })
    ));
    assert!(matches!(
        Shm::open(sem.as_str()),
        Err(Error::WrongKind { .. })
    ));
    assert!(matches!(
        Semaphore::create(sem.as_str(), 0, 1),
        Err(Error::AlreadyExists { .. })
    ));
    assert_eq!(
        Shm::inspect(sem.as_str()).unwrap().kind,
        SegmentKind::Semaphore
    );

    let bytes = TestName::new("kind-bytes");
    let _b = Shm::create(bytes.as_str(), 4096).unwrap();
    assert!(matches!(
        Semaphore::open(bytes.as_str()),
        Err(Error::WrongKind { .. })
    ));

    // The same kind guarding a value of another size is another kind too.
    let m = TestName::new("kind-mutex");
    let _m = Mutex::create(m.as_str(), 0u64).unwrap();
    let e = Mutex::<u32>::open(m.as_str()).unwrap_err();
    assert!(e.to_string().contains("guarding 8 bytes"), "{e}");
}

#[test]
fn embedded_objects_are_validated() {
    let name = TestName::new("embedded");
    let shm = Shm::create(name.as_str(), 4096).unwrap();
    // Nothing initialised there.
    let e = Semaphore::open_in(&shm, 0).unwrap_err();
    assert!(matches!(e, Error::NotShmkit { .. }), "{e}");
    assert!(
        e.to_string().contains(&format!("{}@0", name.as_str())),
        "{e}"
    );
    // Another kind.
    let _ev = Event::init_in(&shm, 0, EventMode::ManualReset, true).unwrap();
    assert!(matches!(
        Semaphore::open_in(&shm, 0),
        Err(Error::WrongKind { .. })
    ));
    assert!(Event::open_in(&shm, 0).unwrap().is_set().unwrap());
    // Misaligned and out-of-bounds offsets.
    assert!(matches!(
        Semaphore::init_in(&shm, 4, 0, 1),
        Err(Error::InvalidSize { .. })
    ));
    assert!(matches!(
        Semaphore::init_in(&shm, 4096 - 32, 0, 1),
        Err(Error::OutOfBounds { .. })
    ));
    assert!(matches!(
        Mutex::init_in(&shm, 4096 - 64, 0u64),
        Err(Error::OutOfBounds { .. })
    ));
    // Read-only mappings cannot hold a lock.
    let ro = ShmOptions::new()
        .access(shmkit::Access::ReadOnly)
        .open(name.as_str())
        .unwrap();
    assert!(matches!(
        Event::open_in(&ro, 0),
        Err(Error::ReadOnly { .. })
    ));
    // A newer layout version.
    shm.atomic_u32(4)
        .unwrap()
        .store(99, std::sync::atomic::Ordering::SeqCst);
    assert!(matches!(
        Event::open_in(&shm, 0),
        Err(Error::UnsupportedVersion { found: 99, .. })
    ));
}

#[test]
fn corrupt_state_words_give_errors() {
    use std::sync::atomic::Ordering::SeqCst;
    let name = TestName::new("corrupt");
    let shm = Shm::create(name.as_str(), 4096).unwrap();

    let sem = Semaphore::init_in(&shm, 0, 1, 2).unwrap();
    shm.atomic_u32(WORD).unwrap().store(7, SeqCst); // count above max
    for r in [
        sem.try_wait().map(drop),
        sem.wait(),
        sem.release(1).map(drop),
    ] {
        let e = r.unwrap_err();
        assert!(matches!(e, Error::CorruptState { .. }), "{e}");
        assert!(
            e.to_string().contains("count 7 is above the maximum 2"),
            "{e}"
        );
    }
    shm.atomic_u32(PARAM_A).unwrap().store(0, SeqCst); // maximum 0
    assert!(matches!(sem.release(1), Err(Error::CorruptState { .. })));

    let ev = Event::init_in(&shm, 64, EventMode::AutoReset, false).unwrap();
    shm.atomic_u32(64 + WORD).unwrap().store(5, SeqCst);
    assert!(matches!(ev.wait(), Err(Error::CorruptState { .. })));
    assert!(matches!(ev.is_set(), Err(Error::CorruptState { .. })));
    shm.atomic_u32(64 + PARAM_A).unwrap().store(9, SeqCst); // mode 9
    assert!(matches!(ev.set(), Err(Error::CorruptState { .. })));

    let m = Mutex::init_in(&shm, 128, 0u32).unwrap();
    shm.atomic_u32(128 + PARAM_A).unwrap().store(0x80, SeqCst); // unknown flag
    assert!(matches!(
        m.lock(),
        Err(LockError::Failed(Error::CorruptState { .. }))
    ));
    shm.atomic_u32(128 + PARAM_A).unwrap().store(0, SeqCst);
    // A lock word naming a process that does not exist: a dead owner, reported.
    shm.atomic_u32(128 + WORD)
        .unwrap()
        .store(0x7fff_fff0, SeqCst);
    assert!(matches!(
        m.lock_timeout(Duration::from_secs(5)),
        Err(LockError::OwnerDied(_))
    ));
    // try_lock takes over a dead owner too.
    let m2 = Mutex::init_in(&shm, 256, 0u32).unwrap();
    shm.atomic_u32(256 + WORD)
        .unwrap()
        .store(0x7fff_fff0, SeqCst);
    assert!(matches!(m2.try_lock(), Err(LockError::OwnerDied(_))));
}

#[cfg(unix)]
#[test]
fn posix_semaphores_by_os_name() {
    use shmkit::sync::PosixSemaphore;
    let name = format!("/t-posix-sem-{}", std::process::id());
    struct Remove<'a>(&'a str);
    impl Drop for Remove<'_> {
        fn drop(&mut self) {
            let _ = PosixSemaphore::remove(self.0);
        }
    }
    let _remove = Remove(&name);
    let sem = PosixSemaphore::create(&name, 2).unwrap();
    assert!(matches!(
        PosixSemaphore::create(&name, 0),
        Err(Error::AlreadyExists { .. })
    ));
    let other = PosixSemaphore::open(&name).unwrap();
    assert_eq!(other.value().unwrap(), 2);
    assert!(other.try_wait().unwrap());
    other.wait().unwrap();
    assert!(!sem.try_wait().unwrap());
    let started = Instant::now();
    let e = sem.wait_timeout(Duration::from_millis(50)).unwrap_err();
    assert!(
        e.is_timeout() && started.elapsed() >= Duration::from_millis(50),
        "{e}"
    );
    sem.post().unwrap();
    sem.wait_timeout(Duration::from_secs(1)).unwrap();
    assert!(matches!(
        PosixSemaphore::create("no-slash", 0),
        Err(Error::InvalidName { .. })
    ));
    assert!(matches!(
        PosixSemaphore::create(&name, u32::MAX),
        Err(Error::InvalidArgument { .. })
    ));
    PosixSemaphore::remove(&name).unwrap();
    let e = PosixSemaphore::open(&name).unwrap_err();
    assert!(e.is_not_found() && e.to_string().contains(&name), "{e}");
    assert!(PosixSemaphore::remove(&name).unwrap_err().is_not_found());
}

#[cfg(windows)]
#[test]
fn native_win32_objects_by_os_name() {
    use shmkit::sync::{NativeEvent, NativeMutex, NativeSemaphore};
    let base = format!("Local\\t-native-{}", std::process::id());
    let (s, m, e) = (
        format!("{base}-s"),
        format!("{base}-m"),
        format!("{base}-e"),
    );

    let sem = NativeSemaphore::create(&s, 1, 2).unwrap();
    assert!(matches!(
        NativeSemaphore::create(&s, 0, 1),
        Err(Error::AlreadyExists { .. })
    ));
    let other = NativeSemaphore::open(&s).unwrap();
    assert_eq!(other.release(1).unwrap(), 1);
    // Windows tells neither the count nor the maximum, and none is invented.
    let err = other.release(1).unwrap_err();
    assert!(
        matches!(
            err,
            Error::AboveMaximum {
                count: None,
                max: None,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string().ends_with("the count is at its maximum"),
        "{err}"
    );
    assert!(!err.to_string().contains(" 0 "), "{err}");
    assert!(sem.try_wait().unwrap());
    sem.wait_timeout(Duration::from_secs(1)).unwrap();
    assert!(sem
        .wait_timeout(Duration::from_millis(20))
        .unwrap_err()
        .is_timeout());
    assert!(matches!(
        NativeSemaphore::create(&format!("{base}-x"), 3, 2),
        Err(Error::InvalidArgument { .. })
    ));
    // A mutex created owned, as `CreateMutex(NULL, TRUE, name)` makes it: another
    // thread cannot take it until the creating thread lets go.
    let owned_name = format!("{base}-owned");
    let owned = NativeMutex::create_locked(&owned_name).unwrap();
    let other_thread = std::thread::scope(|s| {
        s.spawn(|| NativeMutex::open(&owned_name).unwrap().try_lock().is_err())
            .join()
            .unwrap()
    });
    assert!(other_thread, "created owned, yet another thread took it");
    let guard = owned.initial_guard().expect("created owned");
    assert!(owned.initial_guard().is_none());
    drop(guard);
    let free = std::thread::scope(|s| {
        s.spawn(|| NativeMutex::open(&owned_name).unwrap().try_lock().is_ok())
            .join()
            .unwrap()
    });
    assert!(free, "released with the initial guard");
    // Win32 has one namespace for all kernel objects: a mutex name is not a semaphore.
    let _mutex = NativeMutex::create(&m).unwrap();
    assert!(matches!(
        NativeSemaphore::open(&m),
        Err(Error::WrongKind { .. })
    ));
    assert!(matches!(
        NativeSemaphore::create_or_open(&m, 0, 1),
        Err(Error::WrongKind { .. })
    ));
    let g = _mutex.try_lock().unwrap();
    drop(g);
    assert!(NativeSemaphore::open(&format!("{base}-missing"))
        .unwrap_err()
        .is_not_found());

    let ev = NativeEvent::create(&e, EventMode::ManualReset, false).unwrap();
    assert!(ev
        .wait_timeout(Duration::from_millis(10))
        .unwrap_err()
        .is_timeout());
    NativeEvent::open(&e).unwrap().set().unwrap();
    ev.wait().unwrap();
    ev.wait().unwrap(); // manual: still set
    ev.reset().unwrap();
    assert!(ev.wait_timeout(Duration::from_millis(10)).is_err());
}

#[cfg(target_os = "linux")]
#[test]
fn a_named_mutex_whose_header_is_too_small_for_its_value_is_refused() {
    let name = TestName::new("mutex-short");
    let _m = Mutex::create(name.as_str(), 0u64).unwrap();
    // Another process rewrites the header's data size (offset 40) to leave no
    // room for the value after the 64-byte state block.
    let raw = ShmOptions::new()
        .open_raw(&format!("/shmkit.{}", name.as_str()))
        .unwrap();
    raw.write_at(40, &64u64.to_le_bytes()).unwrap();
    let e = Mutex::<u64>::open(name.as_str()).unwrap_err();
    assert!(matches!(e, Error::CorruptHeader { .. }), "{e}");
    assert!(
        e.to_string().contains("too small for a mutex of 72 bytes"),
        "{e}"
    );
}

/// A named mutex records its value type: opening it for another type of the
/// same size is refused; options of semaphores and events must match too.
#[test]
fn opening_with_another_value_type_or_other_options_is_refused() {
    let name = TestName::new("typed-mutex");
    let _m = Mutex::create(name.as_str(), [0u32; 4]).unwrap();
    Mutex::<[u32; 4]>::open(name.as_str()).unwrap();
    let err = Mutex::<[u16; 8]>::open(name.as_str()).unwrap_err();
    assert!(matches!(err, Error::Mismatch { .. }), "{err}");
    assert!(err.to_string().contains("[u16; 8]"), "{err}");
    let sem = TestName::new("sem-mismatch");
    let _s = Semaphore::create(sem.as_str(), 0, 3).unwrap();
    let err = Semaphore::create_or_open(sem.as_str(), 0, 5).unwrap_err();
    assert!(
        err.to_string().contains("maximum count is 3, but 5"),
        "{err}"
    );
    Semaphore::create_or_open(sem.as_str(), 0, 3).unwrap();
    let ev = TestName::new("ev-mismatch");
    let _e = Event::create(ev.as_str(), EventMode::AutoReset, false).unwrap();
    let err = Event::create_or_open(ev.as_str(), EventMode::ManualReset, false).unwrap_err();
    assert!(
        err.to_string()
            .contains("mode is AutoReset, but ManualReset"),
        "{err}"
    );
}

/// A lock holder in another PID namespace (a container sharing /dev/shm but not
/// the process tree): its process id means nothing here, yet it is not taken
/// over while it lives, and its death is detected (the kernel releases its
/// liveness token's lock). Needs root for `unshare --pid` (CI runs as root).
#[cfg(target_os = "linux")]
#[test]
fn a_lock_holder_in_another_pid_namespace_is_judged_by_the_kernel() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: needs root for unshare --pid (CI runs as root)");
        return;
    }
    let name = TestName::new("pidns");
    let m = Mutex::create(name.as_str(), [0u64; 2]).unwrap();
    // `unshare --pid --fork --kill-child`: the holder is process 1 of a new PID
    // namespace, and dies when the unshare process is killed.
    let mut unshare = Command::new("unshare")
        .args(["--pid", "--fork", "--kill-child"])
        .arg(std::env::current_exe().unwrap())
        .args([ENTRY, "--exact", "--nocapture", "--test-threads=1"])
        .env(common::ROLE_VAR, format!("hold\u{1f}{}", name.as_str()))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(unshare.stdout.take().unwrap());
    // Held open until the end: the holder finishes its update only when told,
    // and end of input would tell it.
    let _stdin = unshare.stdin.take().unwrap();
    let mut line = String::new();
    while !line.contains("@@ locked") {
        line.clear();
        if out.read_line(&mut line).unwrap() == 0 {
            let _ = unshare.kill();
            let _ = unshare.wait();
            eprintln!("skipped: unshare --pid is not available here");
            return;
        }
    }
    // Its process id, as recorded in the lock word, is 1: here that is init,
    // with another start time. Still it must not be taken over.
    match m.lock_timeout(Duration::from_millis(300)) {
        Err(LockError::Failed(e)) if e.is_timeout() => {}
        Ok(_) | Err(LockError::OwnerDied(_)) => {
            let _ = unshare.kill();
            let _ = unshare.wait();
            panic!("a live holder in another PID namespace was taken over");
        }
        Err(LockError::Failed(e)) => {
            let _ = unshare.kill();
            let _ = unshare.wait();
            panic!("{e}");
        }
    }
    unshare.kill().unwrap();
    unshare.wait().unwrap();
    let started = Instant::now();
    match m.lock_timeout(Duration::from_secs(10)) {
        Err(LockError::OwnerDied(mut g)) => {
            g[1] = g[0];
            g.mark_consistent();
        }
        other => panic!("the dead holder was not detected: {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn a_persistent_mutex_reports_its_dead_owner_to_a_process_that_starts_later() {
    let name = TestName::new("persistent-mutex");
    // Nobody else has the mutex open while its owner dies.
    let mut holder = spawn(ENTRY, "persistent-holder", &[name.as_str()]);
    assert_eq!(holder.expect_line(), "locked");
    holder.kill();
    let m = Mutex::<u64>::open(name.as_str()).expect("a persistent mutex outlives its users");
    match m.lock_timeout(Duration::from_secs(5)) {
        Err(LockError::OwnerDied(g)) => assert_eq!(*g, 1, "the half-updated value"),
        Ok(_) => panic!("the owner's death was forgotten"),
        Err(LockError::Failed(e)) => panic!("{e}"),
    }
    // Reported again until marked consistent, also to the next process.
    drop(m);
    let m = Mutex::<u64>::create_or_open_persistent(name.as_str(), 0).unwrap();
    assert!(!m.created());
    match m.lock() {
        Err(LockError::OwnerDied(mut g)) => g.mark_consistent(),
        _ => panic!("the inconsistent state was not kept"),
    }
    assert!(m.lock().is_ok());
}
