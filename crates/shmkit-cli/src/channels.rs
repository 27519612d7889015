//! `send`, `recv`, `pub` and `sub`: channels from the shell.
//!
//! Channels the CLI creates are persistent, so that either side may run first and
//! a message sent before the receiver starts waits for it; `shmkit rm` removes one.

use std::io::{BufRead, Write};
use std::time::Duration;

use shmkit::channel::{
    inspect, ChannelInfo, ChannelKind, ChannelOptions, EndpointState, Publisher, Receiver, Sender,
};
use shmkit::{Error, Lifetime};

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

fn print(out: &mut impl Write, m: &[u8]) -> CmdResult {
    out.write_all(m)?;
    out.write_all(b"\n")?;
    out.flush()?;
    Ok(())
}

/// Runs `next` until `listen` is satisfied. A channel whose senders all left is
/// waited on until a new one comes (or `--timeout` passes).
fn listen(listen: &Listen, mut next: impl FnMut(Duration) -> shmkit::Result<Vec<u8>>) -> CmdResult {
    let mut out = std::io::stdout().lock();
    let want = match (listen.count, listen.follow) {
        (Some(n), _) => n,
        (None, true) => u64::MAX,
        (None, false) => 1,
    };
    let limit = listen.timeout;
    let started = std::time::Instant::now();
    let mut got = 0;
    while got < want {
        let slice = match limit {
            Some(l) => l.saturating_sub(started.elapsed()),
            None => Duration::from_secs(3600),
        };
        match next(slice) {
            Ok(m) => {
                print(&mut out, &m)?;
                got += 1;
            }
            Err(Error::Lagged { missed, .. }) => eprintln!("(missed {missed} messages)"),
            // A previous receiver died reading long messages: say so, go on.
            Err(e @ Error::Lost { .. }) => eprintln!("({e})"),
            Err(e) if e.is_timeout() && limit.is_none() => {}
            // A mailbox: with nobody sending now, wait for the next sender.
            Err(e) if e.is_disconnected() => {
                std::thread::sleep(Duration::from_millis(50));
                if limit.is_some_and(|l| started.elapsed() >= l) {
                    return Err(e.into());
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

pub fn recv(name: &str, capacity: Option<u64>, how: &Listen) -> CmdResult {
    let mut rx: Receiver = options(capacity).receiver(name)?;
    listen(how, |t| rx.recv_timeout(t))
}

pub fn subscribe(name: &str, capacity: Option<u64>, history: bool, how: &Listen) -> CmdResult {
    let mut sub = options(capacity).history(history).subscriber(name)?;
    listen(how, |t| sub.recv_timeout(t))
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
