//! The inspection and editing commands.

use std::io::{IsTerminal, Read, Write};

use shmkit::{Access, Lifetime, SegmentKind, Shm, ShmOptions};

use crate::{hexdump, size};

pub type CmdResult = Result<(), Box<dyn std::error::Error>>;

static ACCEPT_INSECURE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();

/// `--accept-insecure`, for every command of this run.
pub fn set_accept_insecure(yes: bool) {
    let _ = ACCEPT_INSECURE.set(yes);
}

/// Options carrying `--accept-insecure`.
fn options() -> ShmOptions {
    ShmOptions::new().accept_insecure(ACCEPT_INSECURE.get().copied().unwrap_or(false))
}

fn open(name: &str, raw: bool, access: Access) -> shmkit::Result<Shm> {
    let opts = options().access(access);
    if raw {
        opts.open_raw(name)
    } else {
        opts.open(name)
    }
}

pub fn ls() -> CmdResult {
    let names = Shm::list()?;
    if names.is_empty() {
        println!("no shmkit segments");
        return Ok(());
    }
    println!(
        "{:<32} {:<10} {:>12} {:<10} {:>8} {:<8} DETAIL",
        "NAME", "KIND", "SIZE", "LIFETIME", "CREATOR", "ALIVE"
    );
    for name in names {
        match options().inspect(&name) {
            Ok(i) => println!(
                "{:<32} {:<10} {:>12} {:<10} {:>8} {:<8} {}",
                name,
                i.kind.to_string(),
                size::show(i.size),
                lifetime(i.lifetime),
                i.creator_pid,
                if i.stale {
                    "stale"
                } else if i.creator_alive {
                    "yes"
                } else {
                    "no"
                },
                // A stale channel is not opened (that would remove it): `gc` is
                // what removes stale objects.
                if i.stale {
                    "every user died; `shmkit gc --force` removes it".to_owned()
                } else if i.kind == SegmentKind::Channel {
                    crate::channels::summary(&name)
                } else {
                    String::new()
                }
            ),
            // One unreadable entry must not hide the others.
            Err(e) => println!("{name:<32} ({e})"),
        }
    }
    Ok(())
}

/// `shmkit gc`: stale segments, listed or (with `force`) removed.
pub fn gc(force: bool) -> CmdResult {
    let mut found = 0;
    for name in Shm::list()? {
        match options().inspect(&name) {
            Ok(i) if i.stale => {}
            // Live, persistent, or not ours to judge (a foreign or unreadable
            // object): left alone.
            _ => continue,
        }
        found += 1;
        if !force {
            println!("stale: {name}");
            continue;
        }
        match Shm::remove_if_stale(&name) {
            Ok(true) => println!("removed: {name}"),
            Ok(false) => println!("kept: {name} (a process opened it meanwhile)"),
            Err(e) => println!("kept: {name} ({e})"),
        }
    }
    match (found, force) {
        (0, _) => println!("no stale segments"),
        (n, false) => println!("{n} stale; `shmkit gc --force` removes them"),
        (_, true) => {}
    }
    // The liveness tokens of processes that were killed (bookkeeping files).
    match (Shm::reap_dead_tokens(force), force) {
        (0, _) => {}
        (n, false) => println!("{n} liveness tokens of dead processes; --force removes them"),
        (n, true) => println!("removed {n} liveness tokens of dead processes"),
    }
    Ok(())
}

fn lifetime(l: Lifetime) -> &'static str {
    match l {
        Lifetime::Temporary => "temporary",
        Lifetime::Persistent => "persistent",
    }
}

pub fn info(name: &str, raw: bool) -> CmdResult {
    if raw {
        let s = open(name, true, Access::ReadOnly)?;
        println!("os name:   {}", s.os_name());
        println!(
            "size:      {} ({} bytes)",
            size::show(s.len() as u64),
            s.len()
        );
        return Ok(());
    }
    let i = options().inspect(name)?;
    println!("name:      {}", i.name);
    println!("kind:      {}", i.kind);
    println!("size:      {} ({} bytes)", size::show(i.size), i.size);
    println!("total:     {} bytes with header", i.total_size);
    println!("lifetime:  {}", lifetime(i.lifetime));
    println!("state:     {:?}", i.state);
    println!(
        "creator:   pid {} ({})",
        i.creator_pid,
        if i.creator_alive { "running" } else { "exited" }
    );
    println!("created:   {}", crate::time::date(i.created));
    println!("layout:    version {}", i.layout_version);
    if i.stale {
        println!("stale:     yes (every user died; `shmkit gc --force` removes it)");
    }
    if i.kind == SegmentKind::Channel && !i.stale {
        crate::channels::details(name)?;
    }
    Ok(())
}

pub fn create(name: &str, size: u64, mode: u32, raw: bool) -> CmdResult {
    let opts = ShmOptions::new()
        .size(size)
        .mode(mode)
        .lifetime(Lifetime::Persistent);
    let s = if raw {
        opts.create_raw(name)?
    } else {
        opts.create(name)?
    };
    println!(
        "created {name}: {} ({} bytes), persistent, as {}",
        size::show(size),
        size,
        s.os_name()
    );
    Ok(())
}

pub fn rm(name: &str, raw: bool) -> CmdResult {
    if raw {
        Shm::remove_raw(name)?;
    } else {
        Shm::remove(name)?;
    }
    println!("removed {name}");
    Ok(())
}

pub fn cat(name: &str, offset: u64, len: Option<u64>, hex: bool, raw: bool) -> CmdResult {
    let s = open(name, raw, Access::ReadOnly)?;
    let total = s.len() as u64;
    let len = match len {
        Some(l) => l,
        None => total
            .checked_sub(offset)
            .ok_or_else(|| format!("{name}: offset {offset} is past the end (size {total})"))?,
    };
    // Check the whole range before printing anything.
    if offset.checked_add(len).is_none_or(|end| end > total) {
        return Err(shmkit::Error::OutOfBounds {
            object: name.into(),
            offset,
            len,
            size: total,
        }
        .into());
    }
    let mut out = std::io::stdout().lock();
    // On a terminal, text ends at the first NUL: the zeros after a string would
    // only garble the screen. Piped, every byte goes through.
    let as_text = !hex && out.is_terminal();
    const CHUNK: u64 = 1 << 20;
    let mut done = 0;
    while done < len {
        let n = (len - done).min(CHUNK) as usize;
        let bytes = s.read_vec(offset + done, n)?;
        if hex {
            out.write_all(hexdump::format(offset + done, &bytes).as_bytes())?;
        } else if let Some(nul) = bytes.iter().position(|&b| b == 0).filter(|_| as_text) {
            out.write_all(&bytes[..nul])?;
            out.flush()?;
            eprintln!(
                "\n(stopped at the NUL byte at offset {}; --hex shows all {len} bytes, \
                 and a pipe gets them as they are)",
                offset + done + nul as u64
            );
            return Ok(());
        } else {
            out.write_all(&bytes)?;
        }
        done += n as u64;
    }
    out.flush()?;
    Ok(())
}

pub fn write(name: &str, data: Option<String>, offset: u64, raw: bool) -> CmdResult {
    let bytes = match data {
        Some(d) => d.into_bytes(),
        None => {
            let mut buf = Vec::new();
            std::io::stdin().read_to_end(&mut buf)?;
            buf
        }
    };
    let s = open(name, raw, Access::ReadWrite)?;
    s.write_at(offset, &bytes)?;
    println!("wrote {} bytes to {name} at offset {offset}", bytes.len());
    Ok(())
}
