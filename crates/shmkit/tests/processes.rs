//! Cross-process behaviour, tested with real processes: this test binary re-runs
//! itself as the peer (see `common::spawn`), and peers are killed outright.

mod common;

use std::time::Duration;

use common::{hear, role, say, spawn, TestName};
use shmkit::{Error, Lifetime, Shm, ShmOptions};

const ENTRY: &str = "child_entry";

/// Entry point of every child process; a no-op in the parent's test run.
#[test]
fn child_entry() {
    let Some(args) = role() else { return };
    let a = |i: usize| args[i].as_str();
    match a(0) {
        "race" => race_child(a(1), a(2).parse().unwrap(), a(3).parse().unwrap()),
        "slow-init" => {
            let _s = ShmOptions::new()
                .size(4096)
                .create_or_open_with(a(1), |_| {
                    say("initialising");
                    std::thread::sleep(Duration::from_secs(60));
                    Ok::<_, String>(())
                })
                .unwrap();
        }
        "fail-init" => {
            let e = ShmOptions::new()
                .size(4096)
                .create_or_open_with(a(1), |_| {
                    say("initialising");
                    std::thread::sleep(Duration::from_millis(500));
                    Err("sensor calibration failed")
                })
                .unwrap_err();
            assert!(e.to_string().contains("sensor calibration failed"), "{e}");
        }
        "hold" => {
            let lifetime = if a(2) == "persistent" {
                Lifetime::Persistent
            } else {
                Lifetime::Temporary
            };
            let s = ShmOptions::new()
                .size(4096)
                .lifetime(lifetime)
                .create(a(1))
                .unwrap();
            s.write_at(0, a(3).as_bytes()).unwrap();
            say("ready");
            hear();
        }
        #[cfg(target_os = "linux")]
        "drop-with-no-descriptor-left" => {
            let s = ShmOptions::new().size(4096).create(a(1)).unwrap();
            let tx = shmkit::channel::Sender::connect(a(2)).unwrap();
            // The lowest free descriptor becomes the limit: any open now fails
            // with EMFILE.
            let probe = std::fs::File::open("/dev/null").unwrap();
            let lowest_free = std::os::unix::io::AsRawFd::as_raw_fd(&probe) as u64;
            drop(probe);
            let mut limit = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            // SAFETY: getrlimit fills the struct we pass; setrlimit reads it.
            unsafe {
                assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
                limit.rlim_cur = lowest_free;
                assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
            }
            assert!(std::fs::File::open("/dev/null").is_err(), "EMFILE expected");
            drop((s, tx));
            say("dropped");
        }
        "open-expect-denied" => {
            let e = Shm::open(a(1)).unwrap_err();
            say(&format!("{e:?}"));
        }
        other => panic!("unknown role {other}"),
    }
    std::process::exit(0);
}

fn race_child(base: &str, id: u32, rounds: usize) {
    say("ready");
    assert_eq!(hear(), "go");
    let mut keep = Vec::new();
    let mut report = String::new();
    for round in 0..rounds {
        let name = format!("{base}-{round}");
        let s = ShmOptions::new()
            .size(8192)
            .create_or_open_with(&name, |bytes| {
                // Fill the whole segment slowly enough that openers must wait.
                for chunk in bytes.chunks_mut(1024) {
                    chunk.fill(id as u8);
                    std::hint::spin_loop();
                }
                bytes[..4].copy_from_slice(&id.to_le_bytes());
                std::thread::sleep(Duration::from_micros(200));
                Ok::<_, String>(())
            })
            .unwrap();
        let data = s.read_vec(0, 8192).unwrap();
        let seen = u32::from_le_bytes(data[..4].try_into().unwrap());
        let whole = data[4..].iter().all(|&b| b == seen as u8);
        report.push_str(&format!("{round}:{}:{seen}:{whole};", s.created() as u8));
        keep.push(s);
    }
    say(&report);
    // Hold every segment until all racers are done, so none is recreated.
    assert_eq!(hear(), "exit");
}

#[test]
fn racing_create_or_open_initialises_exactly_once() {
    const PROCS: u32 = 8;
    const ROUNDS: usize = 200;
    let base = TestName::new("race");
    // Removes leftovers if a child crashes; normally the last user removes each.
    let _cleanup: Vec<TestName> = (0..ROUNDS)
        .map(|r| TestName::new_exact(&format!("{}-{r}", base.as_str())))
        .collect();
    let mut kids: Vec<_> = (0..PROCS)
        .map(|id| {
            spawn(
                ENTRY,
                "race",
                &[base.as_str(), &(id + 1).to_string(), &ROUNDS.to_string()],
            )
        })
        .collect();
    for k in &mut kids {
        assert_eq!(k.expect_line(), "ready");
    }
    for k in &mut kids {
        k.tell("go");
    }
    let reports: Vec<String> = kids.iter_mut().map(|k| k.expect_line()).collect();
    for k in &mut kids {
        k.tell("exit");
    }
    for k in &mut kids {
        k.wait_success(Duration::from_secs(30));
    }
    for round in 0..ROUNDS {
        let mut creators = Vec::new();
        let mut seen = Vec::new();
        for (i, r) in reports.iter().enumerate() {
            let entry = r.split(';').nth(round).unwrap();
            let f: Vec<&str> = entry.split(':').collect();
            assert_eq!(f[0], round.to_string());
            assert_eq!(
                f[3], "true",
                "round {round}: child {i} saw a half-initialised segment"
            );
            if f[1] == "1" {
                creators.push(i as u32 + 1);
            }
            seen.push(f[2].parse::<u32>().unwrap());
        }
        assert_eq!(
            creators.len(),
            1,
            "round {round}: initialisers {creators:?}"
        );
        assert!(
            seen.iter().all(|&s| s == creators[0]),
            "round {round}: creator {} but children saw {seen:?}",
            creators[0]
        );
    }
}

#[test]
fn a_creator_killed_while_initialising_is_reported() {
    let n = TestName::new("initdeath");
    let mut child = spawn(ENTRY, "slow-init", &[n.as_str()]);
    assert_eq!(child.expect_line(), "initialising");
    let name = n.as_str().to_owned();
    let opener = std::thread::spawn(move || {
        ShmOptions::new()
            .init_timeout(Duration::from_secs(60))
            .open(&name)
    });
    std::thread::sleep(Duration::from_millis(200));
    child.kill();
    let err = opener.join().unwrap().unwrap_err();
    assert!(matches!(err, Error::CreatorDied { .. }), "{err:?}");
    assert!(err.to_string().contains("died"), "{err}");
}

#[test]
fn openers_waiting_on_a_failed_initialiser_are_told() {
    let n = TestName::new("initfailproc");
    let mut child = spawn(ENTRY, "fail-init", &[n.as_str()]);
    assert_eq!(child.expect_line(), "initialising");
    let err = ShmOptions::new()
        .init_timeout(Duration::from_secs(60))
        .open(n.as_str())
        .unwrap_err();
    assert!(matches!(err, Error::InitFailed { .. }), "{err:?}");
    child.wait_success(Duration::from_secs(30));
}

#[test]
fn create_does_not_wait_for_another_process_initialising_the_name() {
    let n = TestName::new("busyname");
    let mut child = spawn(ENTRY, "slow-init", &[n.as_str()]);
    assert_eq!(child.expect_line(), "initialising");
    let start = std::time::Instant::now();
    let err = ShmOptions::new()
        .size(10)
        .init_timeout(Duration::from_secs(60))
        .create(n.as_str())
        .unwrap_err();
    assert!(matches!(err, Error::AlreadyExists { .. }), "{err:?}");
    // With the 60 s init timeout, a create that waited would still be waiting.
    assert!(start.elapsed() < Duration::from_secs(30), "create waited");
    child.kill();
}

#[test]
fn openers_give_up_on_a_slow_initialiser_at_their_timeout() {
    let n = TestName::new("inittimeout");
    let mut child = spawn(ENTRY, "slow-init", &[n.as_str()]);
    assert_eq!(child.expect_line(), "initialising");
    let err = ShmOptions::new()
        .init_timeout(Duration::from_millis(300))
        .open(n.as_str())
        .unwrap_err();
    assert!(matches!(err, Error::InitTimeout { .. }), "{err:?}");
    child.kill();
}

#[test]
fn a_temporary_segment_is_gone_once_all_its_users_crashed() {
    let n = TestName::new("crashtemp");
    let mut child = spawn(ENTRY, "hold", &[n.as_str(), "temporary", "hi"]);
    assert_eq!(child.expect_line(), "ready");
    assert_eq!(
        Shm::open(n.as_str()).unwrap().read_vec(0, 2).unwrap(),
        b"hi"
    );
    child.kill();
    let err = Shm::open(n.as_str()).unwrap_err();
    assert!(err.is_not_found(), "{err:?}");
    // And the name is free again.
    Shm::create(n.as_str(), 10).unwrap();
}

#[test]
fn create_reclaims_the_name_of_a_segment_whose_users_all_crashed() {
    let n = TestName::new("reclaim");
    let mut child = spawn(ENTRY, "hold", &[n.as_str(), "temporary", "old"]);
    assert_eq!(child.expect_line(), "ready");
    child.kill();
    if cfg!(unix) {
        // The object is still in /dev/shm, and inspection says it is stale.
        let info = Shm::inspect(n.as_str()).unwrap();
        assert!(info.stale && !info.creator_alive, "{info:?}");
    }
    let fresh = Shm::create(n.as_str(), 4096).unwrap();
    assert!(fresh.created());
    assert_eq!(
        fresh.read_vec(0, 3).unwrap(),
        [0, 0, 0],
        "old contents leaked"
    );
}

#[test]
fn a_temporary_segment_outlives_a_crashed_user_while_others_hold_it() {
    let n = TestName::new("crashshared");
    let mut child = spawn(ENTRY, "hold", &[n.as_str(), "temporary", "kept"]);
    assert_eq!(child.expect_line(), "ready");
    let mine = Shm::open(n.as_str()).unwrap();
    child.kill();
    let again = Shm::open(n.as_str()).unwrap();
    assert_eq!(again.read_vec(0, 4).unwrap(), b"kept");
    drop((mine, again));
    assert!(Shm::open(n.as_str()).unwrap_err().is_not_found());
}

#[test]
fn a_persistent_segment_outlives_its_creator_process() {
    let n = TestName::new("persistproc");
    let mut child = spawn(ENTRY, "hold", &[n.as_str(), "persistent", "still here"]);
    assert_eq!(child.expect_line(), "ready");
    child.tell("bye");
    child.wait_success(Duration::from_secs(30));
    let s = Shm::open(n.as_str()).unwrap();
    assert_eq!(s.read_vec(0, 10).unwrap(), b"still here");
    let info = s.info().unwrap();
    assert!(!info.creator_alive, "creator exited: {info:?}");
}

#[cfg(unix)]
#[test]
fn another_user_is_denied_an_owner_only_segment() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: needs root to run the peer as another user (CI runs as root)");
        return;
    }
    let n = TestName::new("denied");
    let _s = Shm::create(n.as_str(), 100).unwrap();
    let Some(mut child) = common::spawn_as(ENTRY, "open-expect-denied", &[n.as_str()], 65534)
    else {
        return;
    };
    let reply = child.expect_line();
    assert!(reply.starts_with("PermissionDenied"), "{reply}");
    child.wait_success(Duration::from_secs(30));
}

/// The last user of a temporary segment (and of a temporary channel) removes it
/// when it lets go, even when the process has no file descriptor left (EMFILE).
#[cfg(target_os = "linux")]
#[test]
fn the_last_user_removes_a_temporary_object_even_without_a_free_descriptor() {
    let seg = TestName::new("emfile");
    let chan = TestName::new("emfile-ch");
    let mut child = spawn(
        ENTRY,
        "drop-with-no-descriptor-left",
        &[seg.as_str(), chan.as_str()],
    );
    assert_eq!(child.expect_line(), "dropped");
    child.wait_success(Duration::from_secs(30));
    for n in [&seg, &chan] {
        let path = format!("/dev/shm/shmkit.{}", n.as_str());
        assert!(!std::path::Path::new(&path).exists(), "{path} left behind");
    }
}

/// A stale temporary segment (its only user SIGKILLed) is removed by
/// `remove_if_stale`; one a live process holds is never touched.
#[cfg(unix)]
#[test]
fn only_stale_segments_are_removed_as_stale() {
    let live = TestName::new("gc-live");
    let dead = TestName::new("gc-dead");
    let mut holder = spawn(ENTRY, "hold", &[live.as_str(), "temporary", "alive"]);
    assert_eq!(holder.expect_line(), "ready");
    let mut victim = spawn(ENTRY, "hold", &[dead.as_str(), "temporary", "dead"]);
    assert_eq!(victim.expect_line(), "ready");
    victim.kill();
    assert!(Shm::inspect(dead.as_str()).unwrap().stale);
    assert!(!Shm::inspect(live.as_str()).unwrap().stale);
    assert!(!Shm::remove_if_stale(live.as_str()).unwrap());
    assert!(Shm::remove_if_stale(dead.as_str()).unwrap());
    assert!(Shm::inspect(dead.as_str()).unwrap_err().is_not_found());
    let still = Shm::open(live.as_str()).unwrap();
    assert_eq!(still.read_vec(0, 5).unwrap(), b"alive");
    holder.tell("bye");
    holder.wait_success(Duration::from_secs(30));
}
