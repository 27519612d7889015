//! The `shmkit` binary, run as a user would run it.

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn shmkit(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_shmkit"))
        .args(args)
        .output()
        .unwrap()
}

fn ok(args: &[&str]) -> String {
    let out = shmkit(args);
    assert!(
        out.status.success(),
        "shmkit {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Runs a command that must succeed, with `input` on its standard input.
fn ok_with_stdin(args: &[&str], input: &[u8]) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_shmkit"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "shmkit {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs a failing command; returns its one-line error.
fn fails(args: &[&str]) -> String {
    let out = shmkit(args);
    assert!(!out.status.success(), "shmkit {args:?} succeeded");
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(out.stdout.is_empty(), "printed output on failure");
    err
}

/// A segment name unique to this test, removed at the end even on failure.
struct Name(String, bool);

impl Name {
    fn new(tag: &str) -> Name {
        Name(format!("cli-{tag}-{}", std::process::id()), false)
    }
    fn raw(tag: &str) -> Name {
        let base = format!("cli-{tag}-{}", std::process::id());
        let os = if cfg!(windows) {
            format!("Local\\{base}")
        } else {
            format!("/{base}")
        };
        Name(os, true)
    }
}

impl Drop for Name {
    fn drop(&mut self) {
        let mut args = vec!["rm", self.0.as_str()];
        if self.1 {
            args.push("--raw");
        }
        let _ = shmkit(&args);
    }
}

#[test]
fn create_write_cat_info_ls_rm() {
    let n = Name::new("life");
    let name = n.0.as_str();
    let out = ok(&["create", name, "--size", "64KiB"]);
    assert!(
        out.contains("65536 bytes") && out.contains("persistent"),
        "{out}"
    );
    // Persistent: it outlived the create command.
    ok(&["write", name, "hello shared world", "--offset", "100"]);
    let bytes = shmkit(&["cat", name, "--offset", "100", "--len", "18"]).stdout;
    assert_eq!(bytes, b"hello shared world");
    let hex = ok(&["cat", name, "--offset", "96", "--len", "16", "--hex"]);
    assert!(
        hex.starts_with("00000060  00 00 00 00 68 65 6c 6c"),
        "{hex}"
    );
    assert!(hex.contains("|....hello shared|"), "{hex}");
    let whole = shmkit(&["cat", name]).stdout;
    assert_eq!(whole.len(), 65536);

    ok_with_stdin(&["write", name, "--offset", "1KiB"], b"from stdin");
    assert_eq!(
        shmkit(&["cat", name, "--offset", "1024", "--len", "10"]).stdout,
        b"from stdin"
    );

    let info = ok(&["info", name]);
    for want in [
        "kind:      bytes",
        "64.0 KiB",
        "persistent",
        "Ready",
        "exited",
        "created:   20",
        " UTC",
    ] {
        assert!(info.contains(want), "{want:?} missing from\n{info}");
    }
    // On a terminal, cat prints text up to the first NUL and says so, instead
    // of writing 64 KiB of NUL bytes to the screen (`script` gives it a pty).
    if cfg!(unix) {
        let shown = format!("{} cat {name} --offset 100", env!("CARGO_BIN_EXE_shmkit"));
        let tty = Command::new("script")
            .args(["-qec", &shown, "/dev/null"])
            .output()
            .unwrap();
        assert!(tty.status.success(), "{tty:?}");
        let screen = String::from_utf8_lossy(&tty.stdout);
        assert!(
            !screen.contains('\0'),
            "NUL bytes on the terminal: {screen:?}"
        );
        assert!(screen.starts_with("hello shared world"), "{screen:?}");
        assert!(screen.contains("--hex"), "{screen:?}");
    }
    let ls = ok(&["ls"]);
    let row = ls
        .lines()
        .find(|l| l.starts_with(name))
        .unwrap_or_else(|| panic!("{ls}"));
    assert!(
        row.contains("bytes") && row.contains("persistent") && row.contains("no"),
        "{row}"
    );

    assert!(ok(&["rm", name]).contains("removed"));
    let err = fails(&["cat", name]);
    assert_eq!(err, format!("shmkit: {name}: not found\n"));
}

#[test]
fn errors_are_one_clear_line() {
    let n = Name::new("errs");
    let name = n.0.as_str();
    ok(&["create", name, "--size", "4096"]);
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["create", name, "--size", "4096"], "already exists"),
        (
            vec!["write", name, "x", "--offset", "4096"],
            "out of bounds",
        ),
        (vec!["cat", name, "--offset", "5000"], "past the end"),
        (vec!["cat", name, "--len", "4097"], "out of bounds"),
        (
            vec!["create", "bad/name", "--size", "1"],
            "must not contain '/'",
        ),
        (vec!["create", "zero", "--size", "0"], "at least 1 byte"),
        (vec!["info", "no-such-segment-at-all"], "not found"),
        (vec!["rm", "no-such-segment-at-all"], "not found"),
    ];
    for (args, want) in cases {
        let err = fails(&args);
        assert!(err.contains(want), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.starts_with("shmkit: "), "{err}");
    }
    // Argument errors come from clap, with exit status 2.
    for args in [
        vec!["create", name, "--size", "12XB"],
        vec!["create", name, "--size", "1", "--mode", "999"],
        vec!["cat"],
    ] {
        let out = shmkit(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
    }
}

#[test]
fn raw_objects_by_os_name() {
    let n = Name::raw("raw");
    let name = n.0.as_str();
    ok(&["create", name, "--size", "100", "--raw"]);
    ok(&["write", name, "raw!", "--raw"]);
    assert_eq!(
        shmkit(&["cat", name, "--raw", "--len", "4"]).stdout,
        b"raw!"
    );
    assert!(ok(&["info", name, "--raw"]).contains("os name"));
    // Not a shmkit segment: the managed commands refuse it.
    if cfg!(unix) {
        let err = fails(&["info", &name[1..]]);
        assert!(err.contains("not found"), "{err}");
    }
    ok(&["rm", name, "--raw"]);
}

#[test]
fn demo_shows_two_processes_talking_through_channels() {
    let out = ok(&["demo"]);
    assert!(out.contains("created channel"), "{out}");
    assert!(out.contains("peer sent 7 messages"), "{out}");
    let hello = out
        .lines()
        .find(|l| l.contains("received \"hello"))
        .unwrap();
    assert!(hello.contains("hello from process"), "{out}");
    assert!(out.contains("16.0 MiB, every byte checked"), "{out}");
    assert!(
        out.contains("20000 round trips of 64-byte messages"),
        "{out}"
    );
    assert!(out.contains("1000000 messages of 64 B"), "{out}");
    assert!(out.contains("512 messages of 1.0 MiB"), "{out}");
}

#[test]
fn send_recv_pub_sub_and_channel_info() {
    let q = Name::new("queue");
    let name = q.0.as_str();
    // A timeout must be a duration; refused before anything is created.
    for bad in ["-1", "nan", "soon", "1e300"] {
        let err = fails(&["recv", name, &format!("--timeout={bad}")]);
        assert!(err.contains("--timeout") && err.contains(bad), "{err}");
    }
    assert!(!ok(&["ls"]).contains(name));
    // The sender may go first: the CLI's channels are persistent.
    assert!(shmkit(&["send", name, "first", "second"]).status.success());
    ok_with_stdin(&["send", name], b"line one\nline two\n");
    let ls = ok(&["ls"]);
    let row = ls.lines().find(|l| l.starts_with(name)).unwrap();
    assert!(row.contains("channel") && row.contains("queue"), "{row}");
    assert!(row.contains("receiver down, 0 senders"), "{row}");
    let info = ok(&["info", name]);
    assert!(info.contains("channel:   queue"), "{info}");
    assert!(
        info.contains("ring:      1.0 MiB (1048576 bytes), 64 B used"),
        "{info}"
    );
    assert!(info.contains("receiver:  none yet"), "{info}");
    assert_eq!(
        ok(&["recv", name, "--count", "4"]),
        "first\nsecond\nline one\nline two\n"
    );
    let err = fails(&["recv", name, "--timeout", "0.1"]);
    assert!(
        err.contains("disconnected: every sender") || err.contains("sender closed"),
        "{err}"
    );

    let b = Name::new("bcast");
    let bname = b.0.as_str();
    ok(&["pub", bname, "old news"]);
    let sub = Command::new(env!("CARGO_BIN_EXE_shmkit"))
        .args(["sub", bname, "--history", "--count", "2", "--timeout", "20"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    ok(&["pub", bname, "fresh"]);
    let out = sub.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "old news\nfresh\n");
    let err = fails(&["send", bname, "x"]);
    assert!(
        err.contains("is a broadcast channel, not a queue channel"),
        "{err}"
    );
    // A message waits in the ring for the next receiver.
    ok(&["send", name, "later"]);
    assert_eq!(ok(&["recv", name]), "later\n");
    let bad = Name::new("badcap");
    let err = fails(&["send", bad.0.as_str(), "x", "--capacity", "1000"]);
    assert!(err.contains("power of two"), "{err}");
}

#[test]
fn ls_and_info_show_synchronisation_objects() {
    use shmkit::sync::{Event, EventMode, Mutex, Semaphore};
    let (s, m, e) = (
        Name::new("ls-sem"),
        Name::new("ls-mutex"),
        Name::new("ls-event"),
    );
    let _s = Semaphore::create(&s.0, 0, 1).unwrap();
    let _m = Mutex::create(&m.0, 0u64).unwrap();
    let _e = Event::create(&e.0, EventMode::AutoReset, false).unwrap();
    if cfg!(windows) {
        return; // temporary objects cannot be listed on Windows
    }
    let listing = ok(&["ls"]);
    for (name, kind) in [(&s.0, "semaphore"), (&m.0, "mutex"), (&e.0, "event")] {
        let line = listing
            .lines()
            .find(|l| l.starts_with(name.as_str()))
            .unwrap_or_else(|| panic!("{name} not listed:\n{listing}"));
        assert!(line.contains(kind), "{line}");
        assert!(ok(&["info", name]).contains(kind));
    }
}

/// A FIFO planted under a segment's name makes `info`, `cat` and `info --raw`
/// fail at once instead of hanging (each run is given 20 seconds).
#[cfg(target_os = "linux")]
#[test]
fn a_planted_fifo_is_an_error_not_a_hang() {
    let n = Name::new("fifo");
    let path = format!("/dev/shm/shmkit.{}", n.0);
    assert!(Command::new("mkfifo")
        .arg(&path)
        .status()
        .unwrap()
        .success());
    let raw = format!("/shmkit.{}", n.0);
    for args in [
        vec!["info", n.0.as_str()],
        vec!["cat", n.0.as_str()],
        vec!["info", raw.as_str(), "--raw"],
    ] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_shmkit"))
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                let _ = std::fs::remove_file(&path);
                panic!("shmkit {args:?} hung on a FIFO");
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        };
        assert!(!status.success(), "shmkit {args:?} accepted a FIFO");
    }
    std::fs::remove_file(&path).unwrap();
}

/// Role of this test binary when re-run as a helper process: holds a temporary
/// segment until killed (`SHMKIT_CLI_HOLD=NAME`).
#[test]
fn cli_helper_entry() {
    let Ok(name) = std::env::var("SHMKIT_CLI_HOLD") else {
        return;
    };
    let _s = shmkit::ShmOptions::new().size(4096).create(&name).unwrap();
    println!("@@ ready");
    std::thread::sleep(std::time::Duration::from_secs(600));
}

#[cfg(unix)]
/// A process of this test binary holding the temporary segment `name`.
fn holder(name: &str) -> std::process::Child {
    use std::io::BufRead;
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "cli_helper_entry",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("SHMKIT_CLI_HOLD", name)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while !line.contains("@@ ready") {
        line.clear();
        assert!(out.read_line(&mut line).unwrap() > 0, "helper ended early");
    }
    child
}

/// `gc` lists stale segments (every user died) and removes them with --force;
/// a segment a live process holds is never touched, by `gc` or by `ls`/`info`.
#[cfg(unix)]
#[test]
fn gc_removes_only_what_every_user_left() {
    let live = Name::new("gc-live");
    let dead = Name::new("gc-dead");
    let mut keeper = holder(&live.0);
    let mut victim = holder(&dead.0);
    victim.kill().unwrap();
    victim.wait().unwrap();
    // ls and info report it, and leave it.
    let ls = ok(&["ls"]);
    let row = ls.lines().find(|l| l.starts_with(&dead.0)).unwrap();
    assert!(row.contains("stale") && row.contains("gc --force"), "{row}");
    assert!(ok(&["info", &dead.0]).contains("gc --force"));
    let dry = ok(&["gc"]);
    assert!(dry.contains(&format!("stale: {}", dead.0)), "{dry}");
    assert!(!dry.contains(&live.0), "{dry}");
    assert!(
        ok(&["info", &dead.0]).contains("stale:     yes"),
        "a dry run removed it"
    );
    let forced = ok(&["gc", "--force"]);
    assert!(forced.contains(&format!("removed: {}", dead.0)), "{forced}");
    assert!(!forced.contains(&live.0), "{forced}");
    assert!(fails(&["info", &dead.0]).contains("not found"));
    assert!(ok(&["info", &live.0]).contains("temporary"));
    keeper.kill().unwrap();
    keeper.wait().unwrap();
    // The killed helpers' liveness tokens.
    ok(&["gc", "--force"]);
}

/// A segment another user made is refused unless --accept-insecure is given.
#[cfg(unix)]
#[test]
fn another_users_segment_needs_accept_insecure() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: needs root to give the segment to another user (CI runs as root)");
        return;
    }
    let n = Name::new("foreign");
    ok(&["create", &n.0, "--size", "4KiB"]);
    ok(&["write", &n.0, "theirs"]);
    let path = format!("/dev/shm/shmkit.{}", n.0);
    std::os::unix::fs::chown(&path, Some(65534), Some(65534)).unwrap();
    let err = fails(&["cat", &n.0, "--len", "6"]);
    assert!(err.contains("owned by uid 65534"), "{err}");
    assert!(err.contains("accept_insecure"), "{err}");
    let out = shmkit(&["cat", &n.0, "--len", "6", "--accept-insecure"]);
    assert_eq!(out.stdout, b"theirs");
    assert!(ok(&["info", &n.0, "--accept-insecure"]).contains("bytes"));
}

/// `shmkit bench` end to end, kept short: every transport it runs starts its
/// peers, moves stamped payloads both ways and reports numbers; the JSON holds
/// a row per transport and size.
#[test]
fn bench_measures_every_transport_it_is_asked_for() {
    let out = shmkit(&[
        "bench",
        "--json",
        "--rounds",
        "1",
        "--sizes",
        "64,4KiB",
        "--only",
        "queue-blocking,zero-copy,broadcast-1,rpc,pipe,tcp",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json = String::from_utf8(out.stdout).unwrap();
    for transport in [
        "queue-blocking",
        "zero-copy",
        "broadcast-1",
        "rpc",
        "pipe",
        "tcp",
    ] {
        let rows = json
            .matches(&format!("\"transport\": \"{transport}\""))
            .count();
        // Two latency rows; two throughput rows for the streaming transports.
        let want = if matches!(transport, "broadcast-1" | "rpc") {
            2
        } else {
            4
        };
        assert_eq!(rows, want, "{transport} in {json}");
    }
    assert!(json.contains("\"p99\""), "{json}");
    assert!(json.contains("\"gigabytes_per_sec\""), "{json}");
    assert!(json.contains("\"machine\""), "{json}");
}

/// The async rows (tokio on both sides, with and without spin), the blocking
/// row without spin and the wait-set row (500 channels each side; sizes up to
/// 4 KiB only) run beside the blocking one, and their targets are checked
/// against it.
#[test]
fn bench_measures_async_and_wait_sets() {
    let out = shmkit(&[
        "bench",
        "--json",
        "--rounds",
        "1",
        "--sizes",
        "64,64KiB",
        "--only",
        "queue-blocking,queue-sleep,queue-async,queue-async-sleep,waitset",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json = String::from_utf8(out.stdout).unwrap();
    for (transport, rows) in [
        ("queue-blocking", 4),
        ("queue-sleep", 2),
        ("queue-async", 2),
        ("queue-async-sleep", 2),
        ("waitset", 1),
    ] {
        let found = json
            .matches(&format!("\"transport\": \"{transport}\""))
            .count();
        assert_eq!(found, rows, "{transport} in {json}");
    }
    assert!(
        json.contains("64 B async round trip (tokio, both sides) <= 2x blocking"),
        "{json}"
    );
    assert!(
        json.contains("64 B round trip through WaitSets of 500 channels"),
        "{json}"
    );
}

#[test]
fn bench_refuses_bad_sizes_and_unknown_transports() {
    let out = shmkit(&["bench", "--sizes", "4"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("from 8 bytes"), "{err}");
    let out = shmkit(&["bench", "--only", "carrier-pigeon"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not a transport") && err.contains("queue-busy"),
        "{err}"
    );
}

/// On one CPU the benchmark leaves out the spinning transports, pins nothing,
/// and says so (`taskset` limits it to one CPU, as a one-core machine would).
#[cfg(target_os = "linux")]
#[test]
fn bench_on_one_cpu_leaves_out_spinning_and_says_so() {
    if Command::new("taskset").arg("--version").output().is_err() {
        eprintln!("skipped: no taskset to limit the benchmark to one CPU");
        return;
    }
    let out = Command::new("taskset")
        .args(["-c", "0", env!("CARGO_BIN_EXE_shmkit")])
        .args(["bench", "--json", "--pin", "--rounds", "1", "--sizes", "64"])
        .args(["--only", "floor,queue-busy,queue-blocking"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json = String::from_utf8(out.stdout).unwrap();
    assert!(json.contains("\"cores\": 1"), "{json}");
    assert!(json.contains("one CPU"), "{json}");
    assert!(json.contains("--pin needs two CPUs"), "{json}");
    assert!(json.contains("\"pinned\": false"), "{json}");
    assert!(json.contains("\"transport\": \"queue-blocking\""), "{json}");
    assert!(!json.contains("\"transport\": \"queue-busy\""), "{json}");
    assert!(!json.contains("\"transport\": \"floor\""), "{json}");
}

/// The lines a child prints, handed over as they come (read by a thread), so a
/// test can wait for each with a bound.
fn lines_of(from: impl std::io::Read + Send + 'static) -> std::sync::mpsc::Receiver<String> {
    use std::io::BufRead;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(from).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// The next `n` lines, each within 20 seconds.
fn next_lines(rx: &std::sync::mpsc::Receiver<String>, n: usize, what: &str) -> Vec<String> {
    (0..n)
        .map(|i| {
            rx.recv_timeout(std::time::Duration::from_secs(20))
                .unwrap_or_else(|_| panic!("{what}: line {} of {n} did not come", i + 1))
        })
        .collect()
}

/// The messages of each channel, in the order printed: `a: x` goes to `a`.
fn by_channel(lines: &[String], names: &[&str]) -> Vec<Vec<String>> {
    names
        .iter()
        .map(|n| {
            let prefix = format!("{n}: ");
            lines
                .iter()
                .filter_map(|l| l.strip_prefix(&prefix).map(str::to_owned))
                .collect()
        })
        .collect()
}

/// `recv a b c --follow` waits on three channels at once: messages sent to
/// each by other processes all come out, after their channel's name, in order
/// per channel; a channel whose sender left is reported once on stderr and
/// still listened to, as a single-channel `recv` does.
#[test]
fn recv_follows_several_channels() {
    let chans = [
        Name::new("multi-a"),
        Name::new("multi-b"),
        Name::new("multi-c"),
    ];
    let names: Vec<&str> = chans.iter().map(|n| n.0.as_str()).collect();
    // A message already waiting in one of them is taken first.
    ok(&["send", names[1], "early"]);
    let mut child = Command::new(env!("CARGO_BIN_EXE_shmkit"))
        .arg("recv")
        .args(&names)
        .args(["--follow", "--timeout", "60"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = lines_of(child.stdout.take().unwrap());
    let err = lines_of(child.stderr.take().unwrap());
    assert_eq!(
        next_lines(&out, 1, "the waiting message"),
        [format!("{}: early", names[1])]
    );

    // Three senders at once, one per channel, several messages each.
    let senders: Vec<_> = names
        .iter()
        .enumerate()
        .map(|(c, name)| {
            let msgs: Vec<String> = (1..=5).map(|i| format!("m{c}.{i}")).collect();
            Command::new(env!("CARGO_BIN_EXE_shmkit"))
                .arg("send")
                .arg(name)
                .args(&msgs)
                .stderr(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut s in senders {
        assert!(s.wait().unwrap().success());
    }
    let lines = next_lines(&out, 15, "the first senders' messages");
    let per = by_channel(&lines, &names);
    for (c, got) in per.iter().enumerate() {
        let want: Vec<String> = (1..=5).map(|i| format!("m{c}.{i}")).collect();
        assert_eq!(got, &want, "channel {} in {lines:?}", names[c]);
    }
    // Every sender has left: each channel is reported, once.
    let notes = next_lines(&err, 3, "the reports of senders gone");
    for name in &names {
        let about: Vec<_> = notes.iter().filter(|l| l.contains(name)).collect();
        assert_eq!(about.len(), 1, "{name} in {notes:?}");
        assert!(about[0].contains("disconnected"), "{about:?}");
    }
    // New senders are heard on every channel (and not reported again).
    for (c, name) in names.iter().enumerate().rev() {
        ok(&["send", name, &format!("again{c}")]);
    }
    let lines = next_lines(&out, 3, "the second senders' messages");
    let mut want: Vec<String> = names
        .iter()
        .enumerate()
        .map(|(c, n)| format!("{n}: again{c}"))
        .collect();
    want.reverse();
    assert_eq!(lines, want);
    child.kill().unwrap();
    child.wait().unwrap();
    let rest: Vec<String> = err.iter().collect();
    assert!(
        !rest.iter().any(|l| l.contains("disconnected")),
        "reported twice: {rest:?}"
    );
}

/// `sub x y z --count N` takes messages published on three broadcast channels
/// by other processes, each after its channel's name, in order per channel.
#[test]
fn sub_listens_to_several_channels() {
    let chans = [
        Name::new("msub-x"),
        Name::new("msub-y"),
        Name::new("msub-z"),
    ];
    let names: Vec<&str> = chans.iter().map(|n| n.0.as_str()).collect();
    let child = Command::new(env!("CARGO_BIN_EXE_shmkit"))
        .arg("sub")
        .args(&names)
        .args(["--count", "9", "--timeout", "60"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Published messages reach only subscribers already there.
    let since = std::time::Instant::now();
    while !names.iter().all(|n| {
        shmkit::channel::inspect(n).is_ok_and(|i| {
            i.peers
                .iter()
                .any(|p| matches!(p, shmkit::channel::EndpointState::Connected(_)))
        })
    }) {
        assert!(
            since.elapsed().as_secs() < 20,
            "the subscribers never attached"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let publishers: Vec<_> = names
        .iter()
        .enumerate()
        .map(|(c, name)| {
            Command::new(env!("CARGO_BIN_EXE_shmkit"))
                .arg("pub")
                .arg(name)
                .args((1..=3).map(|i| format!("p{c}.{i}")))
                .stderr(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut p in publishers {
        assert!(p.wait().unwrap().success());
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<String> = stdout.lines().map(str::to_owned).collect();
    assert_eq!(lines.len(), 9, "{stdout}");
    for (c, got) in by_channel(&lines, &names).iter().enumerate() {
        let want: Vec<String> = (1..=3).map(|i| format!("p{c}.{i}")).collect();
        assert_eq!(got, &want, "channel {} in {stdout}", names[c]);
    }
}

/// With several channels, --timeout ends the wait with an error naming them
/// (after printing what came); a bad or wrong channel is refused by name
/// before anything is received.
#[test]
fn several_channels_time_out_and_bad_ones_are_named() {
    let chans = [Name::new("mto-a"), Name::new("mto-b"), Name::new("mto-c")];
    let names: Vec<&str> = chans.iter().map(|n| n.0.as_str()).collect();
    let started = std::time::Instant::now();
    let err = fails(&["recv", names[0], names[1], names[2], "--timeout", "0.3"]);
    assert!(started.elapsed() >= std::time::Duration::from_millis(300));
    assert!(err.contains("timed out after 300ms"), "{err}");
    for name in &names {
        assert!(err.contains(name), "{name} not named in {err}");
    }
    assert_eq!(err.lines().count(), 1, "{err}");

    ok(&["send", names[2], "only one"]);
    let out = shmkit(&[
        "recv",
        names[0],
        names[1],
        names[2],
        "--count",
        "2",
        "--timeout",
        "0.3",
    ]);
    assert!(!out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        format!("{}: only one\n", names[2])
    );
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("timed out"), "{stderr}");

    let err = fails(&["recv", names[0], "no/such", names[1]]);
    assert!(err.contains("\"no/such\""), "{err}");
    let b = Name::new("mto-bcast");
    ok(&["pub", b.0.as_str(), "x"]);
    let err = fails(&["recv", names[0], b.0.as_str()]);
    assert!(
        err.contains(b.0.as_str()) && err.contains("not a queue channel"),
        "{err}"
    );
    let err = fails(&["sub", b.0.as_str(), names[0]]);
    assert!(
        err.contains(names[0]) && err.contains("not a broadcast channel"),
        "{err}"
    );
    let err = fails(&["recv", names[0], names[1], names[0]]);
    assert!(
        err.contains(names[0]) && err.contains("more than once"),
        "{err}"
    );
}
