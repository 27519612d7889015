//! `send`, `recv`, `pub` and `sub`: channels from the shell.
//!
//! Channels the CLI creates are persistent, so that either side may run first and
//! a message sent before the receiver starts waits for it; `shmkit rm` removes one.

use std::io::{BufRead, Write};
use std::time::{Duration, Instant};

use shmkit::channel::{
    inspect, ChannelInfo, ChannelKind, ChannelOptions, EndpointState, Publisher, Receiver, Sender,
    Subscriber,
};
use shmkit::{Error, Lifetime, WaitSet};

use crate::commands::CmdResult;
use crate::size;

/// How a `recv` or `sub` runs.
pub struct Listen {
    pub count: Option<u64>,
    pub follow: bool,
    pub timeout: Option<Duration>,
}

fn options(capacity: Option<u64>) -> ChannelOptions {
    let opts = ChannelOptions::new().lifetime(Lifetime::Persistent);
    match capacity {
        Some(bytes) => opts.capacity(bytes),
        None => opts,
    }
}

/// The messages given, or else lines of standard input.
fn each_message(messages: Vec<String>, mut f: impl FnMut(&[u8]) -> CmdResult) -> CmdResult {
    if !messages.is_empty() {
        for m in messages {
            f(m.as_bytes())?;
        }
        return Ok(());
    }
    for line in std::io::stdin().lock().lines() {
        f(line?.as_bytes())?;
    }
    Ok(())
}

pub fn send(
    name: &str,
    messages: Vec<String>,
    capacity: Option<u64>,
    timeout: Option<Duration>,
) -> CmdResult {
    let mut tx: Sender = options(capacity).sender(name)?;
    let mut sent = 0u64;
    each_message(messages, |m| {
        match timeout {
            Some(t) => tx.send_timeout(m, t)?,
            None => tx.send(m)?,
        }
        sent += 1;
        Ok(())
    })?;
    eprintln!("sent {sent} messages to {name}");
    Ok(())
}

pub fn publish(name: &str, messages: Vec<String>, capacity: Option<u64>) -> CmdResult {
    let mut publisher: Publisher = options(capacity).publisher(name)?;
    let mut sent = 0u64;
    each_message(messages, |m| {
        publisher.publish(m)?;
        sent += 1;
        Ok(())
    })?;
    eprintln!(
        "published {sent} messages to {name} ({} subscribers)",
        publisher.subscribers().len()
    );
    Ok(())
}

/// How often a broadcast channel whose publisher left is looked at for a new
/// one (as often as the single-channel `sub` looked before wait sets): a
/// subscriber cannot wait for a publisher to come back, only notice it.
const LOOK_AGAIN: Duration = Duration::from_millis(50);

/// Messages taken from one channel before the next ready one gets its turn.
const BURST: usize = 64;

/// One channel `recv` or `sub` listens on.
struct Source {
    name: String,
    end: End,
    /// Set when its peers were found gone (the error that said so), cleared by
    /// the next message.
    gone: Option<Error>,
    /// Whether that was said on stderr already (once per channel).
    told: bool,
}

enum End {
    Queue(Receiver, ChannelOptions),
    Broadcast(Subscriber),
    /// A queue's receiver closed to be opened again (the channel has one
    /// receiver slot); the command ends if that fails.
    Closed,
}

impl Source {
    /// The next message if one is there (`None`: nothing now), without
    /// waiting. Through the same path as an `await` (a poll with a waker that
    /// is never called), so that a peer's death is noticed here as in a wait
    /// set; the wait a `Pending` poll registers is given back at once.
    fn take(&mut self) -> Option<shmkit::Result<Vec<u8>>> {
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        let polled = match &mut self.end {
            End::Queue(rx, _) => {
                let p = rx.poll_recv_with(&mut cx, <[u8]>::to_vec);
                if p.is_pending() {
                    rx.cancel_poll();
                }
                p
            }
            End::Broadcast(sub) => {
                let p = sub.poll_recv_with(&mut cx, <[u8]>::to_vec);
                if p.is_pending() {
                    sub.cancel_poll();
                }
                p
            }
            End::Closed => return None,
        };
        match polled {
            std::task::Poll::Ready(r) => Some(r),
            std::task::Poll::Pending => None,
        }
    }

    /// Its peers are gone: say so once, and keep listening. A queue's receiver
    /// is opened again to wait for the next sender (it then sleeps until one
    /// sends); a subscriber leaves the wait set and is looked at every
    /// [`LOOK_AGAIN`].
    fn went(&mut self, e: Error) -> CmdResult {
        let first = !self.told;
        self.told = true;
        match std::mem::replace(&mut self.end, End::Closed) {
            End::Queue(rx, opts) => {
                if first {
                    eprintln!("({e}; waiting for the next sender)");
                }
                // The channel keeps the tail: the new receiver goes on where
                // this one stopped.
                drop(rx);
                let again = opts.clone().wait_for_senders(true).receiver(&self.name)?;
                self.end = End::Queue(again, opts);
            }
            other => {
                if first {
                    eprintln!("({e}; waiting for the next publisher)");
                }
                self.end = other;
            }
        }
        self.gone = Some(e);
        Ok(())
    }

    /// Whether it waits in the wait set (a subscriber without a publisher
    /// would be ready there all the time).
    fn waits(&self) -> bool {
        match self.end {
            End::Queue(..) => true,
            End::Broadcast(_) => self.gone.is_none(),
            End::Closed => false,
        }
    }
}

/// Writes `m` on its own line, after `name: ` if given.
fn print(out: &mut impl Write, name: Option<&str>, m: &[u8]) -> CmdResult {
    if let Some(name) = name {
        out.write_all(name.as_bytes())?;
        out.write_all(b": ")?;
    }
    out.write_all(m)?;
    out.write_all(b"\n")?;
    Ok(())
}

/// Receives from every source until `how` is satisfied, waiting on all of them
/// at once in a [`WaitSet`]. Channels whose peers left are waited on until
/// new ones come (or `--timeout` passes): the command ends by `--count`, by
/// `--timeout`, or (with `--follow`) when interrupted.
fn listen(sources: &mut [Source], how: &Listen) -> CmdResult {
    let mut out = std::io::stdout().lock();
    let want = match (how.count, how.follow) {
        (Some(n), _) => n,
        (None, true) => u64::MAX,
        (None, false) => 1,
    };
    let deadline = how.timeout.and_then(|t| Instant::now().checked_add(t));
    let several = sources.len() > 1;
    let mut got = 0;
    // First look at every channel; then at those the wait set says are ready,
    // and at the subscribers that lost their publisher.
    let mut look: Vec<usize> = (0..sources.len()).collect();
    while got < want {
        for &i in &look {
            let s = &mut sources[i];
            for _ in 0..BURST {
                if got == want {
                    break;
                }
                match s.take() {
                    None => {
                        // A subscriber that finds nothing to take, rather than
                        // its publisher gone, has a publisher again.
                        if matches!(s.end, End::Broadcast(_)) {
                            s.gone = None;
                        }
                        break;
                    }
                    Some(Ok(m)) => {
                        print(&mut out, several.then_some(s.name.as_str()), &m)?;
                        got += 1;
                        s.gone = None;
                    }
                    Some(Err(Error::Lagged { missed, .. })) if several => {
                        eprintln!("({}: missed {missed} messages)", s.name);
                    }
                    Some(Err(Error::Lagged { missed, .. })) => {
                        eprintln!("(missed {missed} messages)")
                    }
                    // A previous receiver died reading long messages: say so, go on.
                    Some(Err(e @ Error::Lost { .. })) => eprintln!("({e})"),
                    Some(Err(e)) if e.is_disconnected() => {
                        s.went(e)?;
                        break;
                    }
                    Some(Err(e)) => return Err(e.into()),
                }
            }
        }
        // Printed as they come, a burst at a time.
        out.flush()?;
        if got == want {
            break;
        }
        let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        if left == Some(Duration::ZERO) {
            return Err(timed_out(sources, how.timeout.unwrap_or_default()));
        }
        let polling = sources.iter().any(|s| !s.waits());
        let slice = match (left, polling) {
            (Some(l), true) => Some(l.min(LOOK_AGAIN)),
            (Some(l), false) => Some(l),
            (None, true) => Some(LOOK_AGAIN),
            (None, false) => None,
        };
        let mut set = WaitSet::new();
        let mut index = Vec::with_capacity(sources.len());
        for (i, s) in sources.iter().enumerate() {
            if s.waits() {
                match &s.end {
                    End::Queue(rx, _) => set.add(rx),
                    End::Broadcast(sub) => set.add(sub),
                    End::Closed => continue,
                };
                index.push(i);
            }
        }
        let ready = match slice {
            Some(t) => set.wait_timeout(t)?,
            None => set.wait()?,
        };
        drop(set);
        look = ready.into_iter().map(|k| index[k]).collect();
        look.extend((0..sources.len()).filter(|&i| !sources[i].waits()));
    }
    Ok(())
}

/// The error of a `--timeout` that passed before enough messages came: for one
/// channel whose peers left, that it is disconnected (as before wait sets).
fn timed_out(sources: &mut [Source], after: Duration) -> Box<dyn std::error::Error> {
    if let [one] = sources {
        if let Some(e) = one.gone.take() {
            return e.into();
        }
    }
    let names: Vec<&str> = sources.iter().map(|s| s.name.as_str()).collect();
    format!(
        "{}: timed out after {after:?} waiting to receive",
        names.join(", ")
    )
    .into()
}

/// Refuses a channel named twice (it would be opened twice: the second
/// receiver finds the slot taken).
fn distinct(names: &[String]) -> CmdResult {
    for (i, n) in names.iter().enumerate() {
        if names[..i].contains(n) {
            return Err(format!("{n}: channel given more than once").into());
        }
    }
    Ok(())
}

pub fn recv(names: &[String], capacity: Option<u64>, how: &Listen) -> CmdResult {
    distinct(names)?;
    let mut sources = Vec::with_capacity(names.len());
    for name in names {
        let opts = options(capacity);
        let rx: Receiver = opts.receiver(name)?;
        sources.push(Source {
            name: name.clone(),
            end: End::Queue(rx, opts),
            gone: None,
            told: false,
        });
    }
    listen(&mut sources, how)
}

pub fn subscribe(
    names: &[String],
    capacity: Option<u64>,
    history: bool,
    how: &Listen,
) -> CmdResult {
    distinct(names)?;
    let mut sources = Vec::with_capacity(names.len());
    for name in names {
        let sub = options(capacity).history(history).subscriber(name)?;
        sources.push(Source {
            name: name.clone(),
            end: End::Broadcast(sub),
            gone: None,
            told: false,
        });
    }
    listen(&mut sources, how)
}

fn endpoint(e: &EndpointState) -> String {
    match e {
        EndpointState::Connected(pid) => process(*pid),
        EndpointState::Dead(pid) => format!("pid {pid} (dead)"),
        EndpointState::Closed => "closed".into(),
    }
}

/// `pid N` and, where the system tells, the program's name: a bridge shows up
/// as `shmkit-bridge`.
fn process(pid: u32) -> String {
    match program_name(pid) {
        Some(name) => format!("pid {pid} {name}"),
        None => format!("pid {pid}"),
    }
}

#[cfg(target_os = "linux")]
fn program_name(pid: u32) -> Option<String> {
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    Some(comm.trim_end().to_owned()).filter(|c| !c.is_empty())
}

#[cfg(not(target_os = "linux"))]
fn program_name(_pid: u32) -> Option<String> {
    None
}

/// Up to four connected endpoints, as `(pid 1 a, pid 2 b, ...)`.
fn listed(peers: &[EndpointState]) -> String {
    let live: Vec<String> = peers
        .iter()
        .filter_map(|p| match p {
            EndpointState::Connected(pid) => Some(process(*pid)),
            _ => None,
        })
        .collect();
    match live.len() {
        0 => String::new(),
        n if n <= 4 => format!(" ({})", live.join(", ")),
        n => format!(" ({}, and {} more)", live[..4].join(", "), n - 4),
    }
}

fn connected(peers: &[EndpointState]) -> usize {
    peers
        .iter()
        .filter(|p| matches!(p, EndpointState::Connected(_)))
        .count()
}

fn roles(i: &ChannelInfo) -> (&'static str, &'static str) {
    match i.kind {
        ChannelKind::Queue => ("receiver", "senders"),
        ChannelKind::Broadcast => ("publisher", "subscribers"),
    }
}

/// One line for `shmkit ls`.
pub fn summary(name: &str) -> String {
    match inspect(name) {
        Ok(i) => {
            let (owner, peers) = roles(&i);
            format!(
                "{} {}/{} used, {owner} {}, {} {peers}{}",
                kind(i.kind),
                size::show(i.used),
                size::show(i.capacity),
                match i.owner {
                    Some(EndpointState::Connected(pid)) => format!("up ({})", process(pid)),
                    _ => "down".into(),
                },
                connected(&i.peers),
                listed(&i.peers)
            )
        }
        Err(e) => format!("({e})"),
    }
}

fn kind(k: ChannelKind) -> &'static str {
    match k {
        ChannelKind::Queue => "queue",
        ChannelKind::Broadcast => "broadcast",
    }
}

/// The channel section of `shmkit info`.
pub fn details(name: &str) -> CmdResult {
    let i = inspect(name)?;
    let (owner, peers) = roles(&i);
    println!("channel:   {}", kind(i.kind));
    println!(
        "ring:      {} ({} bytes), {} used",
        size::show(i.capacity),
        i.capacity,
        size::show(i.used)
    );
    println!("messages:  up to {} bytes", i.max_message);
    if i.lost > 0 {
        println!(
            "lost:      {} (receivers died while putting together messages longer than half the ring)",
            i.lost
        );
    }
    println!(
        "{:<10} {}",
        format!("{owner}:"),
        i.owner.as_ref().map_or("none yet".into(), endpoint)
    );
    let list: Vec<String> = i.peers.iter().map(endpoint).collect();
    println!(
        "{:<10} {} connected of at most {}{}",
        format!("{peers}:"),
        connected(&i.peers),
        i.max_peers,
        if list.is_empty() {
            String::new()
        } else {
            format!(" [{}]", list.join(", "))
        }
    );
    Ok(())
}
