//! Helpers shared by the integration tests: unique names that are removed even
//! when a test fails, and child processes made by re-running the test binary.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Environment variable that tells a re-run test binary which child role to play.
pub const ROLE_VAR: &str = "SHMKIT_TEST_ROLE";

/// A name no other test (or test run) uses; the segment is removed on drop.
pub struct TestName {
    pub name: String,
    raw: bool,
}

impl TestName {
    pub fn new(tag: &str) -> TestName {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        TestName {
            name: format!("t-{tag}-{}-{n}", std::process::id()),
            raw: false,
        }
    }

    /// Exactly `name`, removed on drop.
    pub fn new_exact(name: &str) -> TestName {
        TestName {
            name: name.to_owned(),
            raw: false,
        }
    }

    /// A raw OS name (`/t-…` on Unix, `Local\t-…` on Windows).
    pub fn raw(tag: &str) -> TestName {
        let base = TestName::new(tag);
        let name = if cfg!(windows) {
            format!("Local\\{}", base.name)
        } else {
            format!("/{}", base.name)
        };
        std::mem::forget(base);
        TestName { name, raw: true }
    }

    pub fn as_str(&self) -> &str {
        &self.name
    }
}

impl Drop for TestName {
    fn drop(&mut self) {
        let _ = if self.raw {
            shmkit::Shm::remove_raw(&self.name)
        } else {
            shmkit::Shm::remove(&self.name)
        };
    }
}

/// The OS name of the managed segment `name` (docs/LAYOUT.md, "Object names"),
/// for tests that reach under the API.
pub fn managed_os_name(name: &str) -> String {
    if cfg!(windows) {
        format!("Local\\shmkit.{name}")
    } else {
        format!("/shmkit.{name}")
    }
}

/// A temporary directory removed on drop.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("shmkit-{tag}-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A child process running `role` of this test binary. Killed on drop.
pub struct ChildProc {
    pub child: Child,
    stdout: BufReader<ChildStdout>,
    stdin: Option<ChildStdin>,
    /// A copy of the test binary that the child runs from, removed after the
    /// child has been reaped (see [`spawn_as`]).
    _exe_copy: Option<TempDir>,
}

/// Starts this test binary again, running only the test `entry`, which dispatches on
/// [`ROLE_VAR`]. Lines the child prints with a `@@ ` prefix can be read with
/// [`ChildProc::expect_line`]; the rest (libtest's own output) is skipped.
pub fn spawn(entry: &str, role: &str, args: &[&str]) -> ChildProc {
    start(command(entry, role, args))
}

/// Like [`spawn`], running the child as user `uid` (and group `uid`), or `None`
/// (with the reason printed) if no directory that user can reach exists.
///
/// The checkout, and so the test binary, may sit in a directory other users
/// cannot enter (root's home, a `mktemp -d` folder): the child runs from a copy
/// of the binary in a world-traversable temporary directory, removed on drop.
#[cfg(unix)]
pub fn spawn_as(entry: &str, role: &str, args: &[&str], uid: u32) -> Option<ChildProc> {
    use std::os::unix::process::CommandExt;
    let Some(copy) = reachable_copy_of_this_binary() else {
        eprintln!(
            "skipped: no temporary directory that every user can traverse \
             ($TMPDIR, /tmp, /var/tmp), so user {uid} cannot run a copy of the test binary"
        );
        return None;
    };
    let mut cmd = command_for(&copy.0.join("peer"), entry, role, args);
    cmd.uid(uid).gid(uid).current_dir("/");
    let mut child = start(cmd);
    child._exe_copy = Some(copy);
    Some(child)
}

/// A fresh directory (mode 0755) holding a copy of this test binary (mode 0755),
/// in the first temporary directory whose every ancestor others may traverse.
#[cfg(unix)]
fn reachable_copy_of_this_binary() -> Option<TempDir> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    use std::path::Path;
    let traversable = |dir: &Path| {
        dir.ancestors().all(|d| {
            std::fs::metadata(d).is_ok_and(|m| m.is_dir() && m.permissions().mode() & 0o001 != 0)
        })
    };
    let candidates = [std::env::temp_dir(), "/tmp".into(), "/var/tmp".into()];
    let base = candidates.into_iter().find(|d| traversable(d))?;
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = base.join(format!(
        "shmkit-peer-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::DirBuilder::new().mode(0o755).create(&dir).ok()?;
    let copy = TempDir(dir);
    let exe = copy.0.join("peer");
    std::fs::copy(std::env::current_exe().ok()?, &exe).ok()?;
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).ok()?;
    Some(copy)
}

fn command(entry: &str, role: &str, args: &[&str]) -> Command {
    command_for(&std::env::current_exe().unwrap(), entry, role, args)
}

fn command_for(exe: &std::path::Path, entry: &str, role: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(exe);
    cmd.args([entry, "--exact", "--nocapture", "--test-threads=1"])
        .env(
            ROLE_VAR,
            std::iter::once(role)
                .chain(args.iter().copied())
                .collect::<Vec<_>>()
                .join("\u{1f}"),
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    cmd
}

fn start(mut cmd: Command) -> ChildProc {
    let mut child = cmd.spawn().unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let stdin = child.stdin.take();
    ChildProc {
        child,
        stdout,
        stdin,
        _exe_copy: None,
    }
}

/// In a child: the role and its arguments, if this process is a child.
pub fn role() -> Option<Vec<String>> {
    std::env::var(ROLE_VAR)
        .ok()
        .map(|v| v.split('\u{1f}').map(str::to_owned).collect())
}

/// In a child: tells the parent something.
pub fn say(msg: &str) {
    let mut out = std::io::stdout().lock();
    writeln!(out, "@@ {msg}").unwrap();
    out.flush().unwrap();
}

/// In a child: waits for the parent's next line on stdin.
pub fn hear() -> String {
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).unwrap();
    line.trim_end().to_owned()
}

impl ChildProc {
    /// Next `@@` line from the child, or a panic if it ends first.
    pub fn expect_line(&mut self) -> String {
        let mut line = String::new();
        loop {
            line.clear();
            let n = self.stdout.read_line(&mut line).unwrap();
            assert!(n > 0, "child ended without saying anything more");
            // libtest prints "test NAME ... " without a newline first.
            if let Some((_, msg)) = line.trim_end().split_once("@@ ") {
                return msg.to_owned();
            }
        }
    }

    /// Every whole `@@` line the child wrote that was not read yet, up to the end
    /// of its output (after it exited or was killed). A line cut short by a kill
    /// (no newline) is left out.
    pub fn rest_lines(&mut self) -> Vec<String> {
        let mut lines = Vec::new();
        let mut line = String::new();
        loop {
            line.clear();
            match self.stdout.read_line(&mut line) {
                Ok(0) | Err(_) => return lines,
                Ok(_) if !line.ends_with('\n') => return lines,
                Ok(_) => {
                    if let Some((_, msg)) = line.trim_end().split_once("@@ ") {
                        lines.push(msg.to_owned());
                    }
                }
            }
        }
    }

    pub fn tell(&mut self, msg: &str) {
        let stdin = self.stdin.as_mut().unwrap();
        writeln!(stdin, "{msg}").unwrap();
        stdin.flush().unwrap();
    }

    /// Waits for the child to exit by itself, within `limit`.
    pub fn wait_success(&mut self, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "child failed: {status}");
                return;
            }
            assert!(
                Instant::now() < deadline,
                "child did not exit within {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// SIGKILL on Unix, TerminateProcess on Windows; then reaps the child.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ChildProc {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            self.kill();
        }
        // A child that was killed (or died) left its liveness token behind.
        shmkit::Shm::reap_dead_tokens(true);
    }
}
