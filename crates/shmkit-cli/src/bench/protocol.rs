//! What the benchmark process and its peers say to each other, and the payload
//! every message carries.

/// A batch the peer is told to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// Stop and exit.
    Quit = 0,
    /// Answer `count` messages of `size` bytes, each with the same bytes.
    Echo = 1,
    /// Send `count` messages of `size` bytes, as fast as the transport takes them.
    Stream = 2,
}

/// A command: 24 bytes, sent on the peer's control channel (or in-band on a
/// byte stream).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Command {
    pub op: Op,
    pub count: u64,
    pub size: usize,
}

pub const COMMAND_LEN: usize = 24;

impl Command {
    pub fn encode(self) -> [u8; COMMAND_LEN] {
        let mut b = [0u8; COMMAND_LEN];
        b[..8].copy_from_slice(&(self.op as u64).to_le_bytes());
        b[8..16].copy_from_slice(&self.count.to_le_bytes());
        b[16..].copy_from_slice(&(self.size as u64).to_le_bytes());
        b
    }

    pub fn decode(b: &[u8]) -> Result<Command, String> {
        if b.len() != COMMAND_LEN {
            return Err(format!("a command of {} bytes", b.len()));
        }
        let word = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"));
        let op = match word(0) {
            0 => Op::Quit,
            1 => Op::Echo,
            2 => Op::Stream,
            other => return Err(format!("unknown command {other}")),
        };
        Ok(Command {
            op,
            count: word(8),
            size: usize::try_from(word(16)).map_err(|_| "size out of range".to_string())?,
        })
    }
}

/// Writes message number `seq` into `buf`: the number in the first 8 bytes,
/// the rest left as the caller filled it.
#[inline]
pub fn stamp(buf: &mut [u8], seq: u64) {
    buf[..8].copy_from_slice(&seq.to_le_bytes());
}

/// The number a message carries.
#[inline]
pub fn seq_of(buf: &[u8]) -> u64 {
    u64::from_le_bytes(buf[..8].try_into().expect("messages are at least 8 bytes"))
}

/// Reads every byte of a message in place (what a zero-copy receiver does with
/// its data): folds it into a word, so the reads cannot be skipped.
#[inline]
pub fn fold(buf: &[u8]) -> u64 {
    let mut acc = 0u64;
    let mut chunks = buf.chunks_exact(8);
    for c in &mut chunks {
        acc ^= u64::from_le_bytes(c.try_into().expect("8 bytes"));
    }
    for &b in chunks.remainder() {
        acc = acc.rotate_left(8) ^ b as u64;
    }
    std::hint::black_box(acc)
}

/// A source buffer of `len` bytes with a recognisable pattern.
pub fn pattern(len: usize) -> Buffer {
    let mut b = Buffer::new(len);
    for (i, byte) in b.iter_mut().enumerate() {
        *byte = (i % 251) as u8;
    }
    b
}

/// A heap buffer that starts half-way into a 4 KiB page.
///
/// `memcpy` on some CPUs (AMD Zen's `rep movsb`, which glibc uses from 2 KiB
/// up) runs up to 20x slower when the destination lies a few bytes after the
/// source modulo 4 KiB, and large allocations all start 16 bytes into a page:
/// two plain `Vec`s would put every transport's copies, and the memcpy bar, on
/// that slow path by accident. Shared memory starts on a page, so a buffer half
/// a page in keeps every copy here clear of it.
pub struct Buffer {
    bytes: Vec<u8>,
    start: usize,
    len: usize,
}

impl Buffer {
    pub fn new(len: usize) -> Buffer {
        let bytes = vec![0u8; len + 4096];
        let start = (2048 + 4096 - bytes.as_ptr() as usize % 4096) % 4096;
        Buffer { bytes, start, len }
    }
}

impl std::ops::Deref for Buffer {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.bytes[self.start..self.start + self.len]
    }
}

impl std::ops::DerefMut for Buffer {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.bytes[self.start..self.start + self.len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_round_trip_and_bad_ones_are_refused() {
        let c = Command {
            op: Op::Stream,
            count: 7,
            size: 1 << 20,
        };
        assert_eq!(Command::decode(&c.encode()), Ok(c));
        assert!(Command::decode(&[0u8; 5]).is_err());
        let mut bad = c.encode();
        bad[0] = 9;
        assert!(Command::decode(&bad).is_err());
    }

    #[test]
    fn stamps_and_folds_see_every_byte() {
        let mut m = pattern(67);
        stamp(&mut m, 42);
        assert_eq!(seq_of(&m), 42);
        let before = fold(&m);
        m[66] ^= 1;
        assert_ne!(fold(&m), before);
    }
}
