//! Two "hosts" on one machine: two network namespaces joined by a veth pair, each
//! with a mount namespace of its own holding a fresh tmpfs on /dev/shm, so nothing
//! can pass between them through shared memory, only over the veth link.
//!
//! Each host is a holder process (`unshare --mount --net`) that sets its
//! namespaces up and sleeps; programs run on a host by entering the holder's
//! namespaces (`nsenter`). Dropping the [`Hosts`] kills every program and both
//! holders, and with them go the namespaces, the link and the tmpfs: nothing is
//! left on the machine.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// The address of host `i` (0 or 1) on the veth link.
pub fn address(i: usize) -> String {
    format!("10.77.0.{}", i + 1)
}

/// Host A's bridge listens here; host B's connects.
pub fn endpoint() -> String {
    format!("tcp/{}:7447", address(0))
}

pub struct Hosts {
    holders: Vec<Child>,
    programs: Vec<Child>,
}

/// Why two hosts cannot be made here, if they cannot.
pub fn unavailable() -> Option<String> {
    if !is_root() {
        return Some("network namespaces need root (CI runs as root)".into());
    }
    for tool in ["unshare", "nsenter", "ip"] {
        let found = Command::new(tool)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok()
            || Command::new(tool)
                .arg("-V")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok();
        if !found {
            return Some(format!("`{tool}` is not installed (util-linux, iproute2)"));
        }
    }
    // Root is not always enough (a container without CAP_SYS_ADMIN): try.
    let probe = Command::new("unshare")
        .args([
            "--mount", "--net", "--", "ip", "link", "add", "probe0", "type", "veth", "peer",
            "name", "probe1",
        ])
        .output();
    match probe {
        Ok(out) if out.status.success() => None,
        Ok(out) => Some(format!(
            "cannot make a network namespace with a veth pair here: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Err(e) => Some(format!("cannot run unshare: {e}")),
    }
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Hosts {
    /// Makes hosts A (10.77.0.1) and B (10.77.0.2).
    pub fn new() -> Hosts {
        let mut hosts = Hosts {
            holders: Vec::new(),
            programs: Vec::new(),
        };
        for _ in 0..2 {
            let mut holder = Command::new("unshare")
                .args([
                    "--mount",
                    "--net",
                    "--propagation",
                    "private",
                    "--",
                    "sh",
                    "-c",
                ])
                .arg(
                    "mount -t tmpfs -o size=4g,mode=1777 shmkit-test /dev/shm \
                     && ip link set lo up && echo ready && exec sleep 100000",
                )
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .spawn()
                .expect("starting a host (unshare)");
            let lines = line_reader(holder.stdout.take().expect("piped"));
            hosts.holders.push(holder);
            let line = lines.recv_timeout(Duration::from_secs(20));
            assert_eq!(line.as_deref(), Ok("ready"), "a host did not come up");
        }
        let (a, b) = (hosts.holders[0].id(), hosts.holders[1].id());
        run(Command::new("ip").args([
            "link",
            "add",
            "veth0",
            "netns",
            &a.to_string(),
            "type",
            "veth",
            "peer",
            "name",
            "veth0",
            "netns",
            &b.to_string(),
        ]));
        for (i, pid) in [a, b].into_iter().enumerate() {
            let pid = pid.to_string();
            let cidr = format!("{}/24", address(i));
            run(Command::new("nsenter")
                .args(["-t", &pid, "-n", "ip", "addr", "add", &cidr, "dev", "veth0"]));
            run(Command::new("nsenter")
                .args(["-t", &pid, "-n", "ip", "link", "set", "veth0", "up"]));
        }
        hosts
    }

    /// A command that runs `program` on host `i` (0 = A, 1 = B).
    pub fn command(&self, i: usize, program: &Path) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.args(["-t", &self.holders[i].id().to_string(), "-m", "-n", "--"])
            .arg(program)
            .env("RUST_BACKTRACE", "1");
        cmd
    }

    /// A command that runs `program` on host `i` with its stderr joined to its
    /// stdout (for reading a program's log).
    pub fn command_logged(&self, i: usize, program: &Path) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.args(["-t", &self.holders[i].id().to_string(), "-m", "-n", "--"])
            .args(["sh", "-c", "exec \"$0\" \"$@\" 2>&1"])
            .arg(program);
        cmd
    }

    /// Starts `cmd` (from [`command`](Self::command)) with its stdout piped; it is
    /// killed when the hosts go.
    pub fn spawn(&mut self, mut cmd: Command) -> Program {
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
        let index = self.programs.len();
        self.programs.push(child);
        let stdout = self.programs[index].stdout.take().expect("piped");
        Program {
            index,
            lines: line_reader(stdout),
        }
    }

    /// Sends SIGKILL to `p` and reaps it.
    pub fn kill(&mut self, p: &Program) {
        let child = &mut self.programs[p.index];
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Sends SIGTERM to `p` (a clean stop).
    pub fn terminate(&mut self, p: &Program) {
        run(Command::new("kill").args(["-TERM", &self.programs[p.index].id().to_string()]));
    }

    /// Waits up to `timeout` for `p` to exit; its exit status.
    pub fn wait(&mut self, p: &Program, timeout: Duration) -> std::process::ExitStatus {
        let child = &mut self.programs[p.index];
        let until = std::time::Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                std::time::Instant::now() < until,
                "a program did not exit within {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        for child in self.programs.iter_mut().chain(self.holders.iter_mut()) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A program started on a host, with its stdout lines.
pub struct Program {
    index: usize,
    lines: mpsc::Receiver<String>,
}

impl Program {
    /// The next line the program prints, waiting at most `timeout`; panics with
    /// `what` if none comes.
    pub fn line(&self, timeout: Duration, what: &str) -> String {
        self.lines
            .recv_timeout(timeout)
            .unwrap_or_else(|_| panic!("no line from {what} within {timeout:?}"))
    }

    /// Waits for a line starting with `prefix`, skipping others.
    pub fn expect(&self, prefix: &str, timeout: Duration, what: &str) -> String {
        let until = std::time::Instant::now() + timeout;
        loop {
            let left = until.saturating_duration_since(std::time::Instant::now());
            let line = self.line(left, what);
            if line.starts_with(prefix) {
                return line;
            }
            assert!(!line.starts_with("error"), "{what}: {line}");
        }
    }
}

fn line_reader(stdout: ChildStdout) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}
