//! The classic shared-memory producer/consumer, done right: a named segment and
//! two named semaphores — "write" starts at 1, "read" at 0. The producer waits on
//! "write", puts a length-prefixed message into the segment and releases "read";
//! the consumer waits on "read", takes the message and releases "write".
//!
//! Unlike the classic version, messages of any length up to the segment's
//! capacity go through whole (no fixed 100-byte read), a longer one is refused
//! with an error instead of being silently dropped or cut, and every wait has a
//! timeout, so a dead peer is noticed.
//!
//! Run: `cargo run -p shmkit --example producer_consumer`
//! (the producer starts the consumer as a second process), or the two sides
//! separately: `... -- produce BASE` first, then `... -- consume BASE` — either
//! may be the C or C++ version of this example (crates/shmkit-ffi/examples), which
//! speak the same protocol. After the end marker the consumer releases "write"
//! once more, so that the producer knows it may go (and take the segment with it).

use std::process::Command;
use std::time::Duration;

use shmkit::sync::Semaphore;
use shmkit::{Error, Shm};

/// Segment size: 8-byte length prefix plus up to this many bytes of message.
const SEGMENT: u64 = 64 * 1024;
const CAPACITY: u64 = SEGMENT - 8;
/// Length prefix that tells the consumer the producer is done.
const END: u64 = u64::MAX;
const TIMEOUT: Duration = Duration::from_secs(10);

fn names(base: &str) -> (String, String, String) {
    (
        base.to_owned(),
        format!("{base}.write"),
        format!("{base}.read"),
    )
}

/// Puts one message into the segment, or refuses it if it cannot fit whole.
fn send(shm: &Shm, write: &Semaphore, read: &Semaphore, msg: &[u8]) -> shmkit::Result<()> {
    if msg.len() as u64 > CAPACITY {
        return Err(Error::TooLong {
            object: shm.name().into(),
            len: msg.len() as u64,
            max: CAPACITY,
        });
    }
    put(shm, write, read, msg.len() as u64, msg)
}

fn put(shm: &Shm, write: &Semaphore, read: &Semaphore, len: u64, msg: &[u8]) -> shmkit::Result<()> {
    write.wait_timeout(TIMEOUT)?;
    shm.write_at(0, &len.to_le_bytes())?;
    shm.write_at(8, msg)?;
    read.release(1)?;
    Ok(())
}

/// Takes one message; `None` at the end.
fn receive(shm: &Shm, write: &Semaphore, read: &Semaphore) -> shmkit::Result<Option<Vec<u8>>> {
    read.wait_timeout(TIMEOUT)?;
    let mut len = [0u8; 8];
    shm.read_at(0, &mut len)?;
    let len = u64::from_le_bytes(len);
    let msg = match len {
        END => {
            write.release(1)?;
            return Ok(None);
        }
        // Validate what the other process wrote before using it.
        n if n > CAPACITY => {
            return Err(Error::TooLong {
                object: shm.name().into(),
                len: n,
                max: CAPACITY,
            })
        }
        n => Some(shm.read_vec(8, n as usize)?),
    };
    write.release(1)?;
    Ok(msg)
}

fn producer(base: Option<&str>) -> Result<(), Box<dyn std::error::Error>> {
    let own = format!("producer-consumer-{}", std::process::id());
    let (seg, w, r) = names(base.unwrap_or(&own));
    let shm = Shm::create(&seg, SEGMENT)?;
    let write = Semaphore::create(&w, 1, 1)?;
    let read = Semaphore::create(&r, 0, 1)?;
    // Without a name given, start our own consumer.
    let consumer = match base {
        Some(_) => None,
        None => Some(
            Command::new(std::env::current_exe()?)
                .args(["consume", &seg])
                .spawn()?,
        ),
    };

    let long = "a message much longer than the classic 100-byte read buffer, ".repeat(2);
    let messages: Vec<Vec<u8>> = vec![
        b"hello".to_vec(),
        Vec::new(),
        long.into_bytes(),
        vec![b'x'; CAPACITY as usize],     // exactly fills the segment
        vec![b'y'; CAPACITY as usize + 1], // one byte too many: refused
    ];
    for msg in &messages {
        match send(&shm, &write, &read, msg) {
            Ok(()) => println!("producer: sent {} bytes", msg.len()),
            Err(e @ Error::TooLong { .. }) => println!("producer: not sent: {e}"),
            Err(e) => return Err(e.into()),
        }
    }
    put(&shm, &write, &read, END, &[])?;
    // The consumer has taken the end marker once "write" comes back.
    write.wait_timeout(TIMEOUT)?;
    if let Some(mut consumer) = consumer {
        let status = consumer.wait()?;
        if !status.success() {
            return Err(format!("consumer failed: {status}").into());
        }
    }
    Ok(())
}

/// Opens what the producer makes, waiting up to 10 s for it to appear.
fn open_when_there<T>(open: impl Fn() -> shmkit::Result<T>) -> shmkit::Result<T> {
    let start = std::time::Instant::now();
    loop {
        match open() {
            Err(e) if e.is_not_found() && start.elapsed() < TIMEOUT => {
                std::thread::sleep(Duration::from_millis(50))
            }
            other => return other,
        }
    }
}

fn consumer(seg: &str) -> Result<(), Box<dyn std::error::Error>> {
    let (seg, w, r) = names(seg);
    let shm = open_when_there(|| Shm::open(&seg))?;
    let read = open_when_there(|| Semaphore::open(&r))?;
    let write = Semaphore::open(&w)?;
    while let Some(msg) = receive(&shm, &write, &read)? {
        let preview = String::from_utf8_lossy(&msg[..msg.len().min(40)]).into_owned();
        println!("consumer: got {} bytes: {preview:?}", msg.len());
    }
    println!("consumer: done");
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    match (args.get(1).map(String::as_str), args.get(2)) {
        (Some("consume"), Some(base)) => consumer(base),
        (Some("produce"), Some(base)) => producer(Some(base)),
        (None, _) => producer(None),
        _ => Err("usage: producer_consumer [produce BASE | consume BASE]".into()),
    }
}
