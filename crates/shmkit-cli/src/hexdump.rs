//! Hex dumps in the familiar `offset  hex bytes  |ascii|` layout.

use std::fmt::Write;

/// Formats `bytes` (which start at `base` in the segment) as a hex dump.
pub fn format(base: u64, bytes: &[u8]) -> String {
    let mut out = String::new();
    for (i, row) in bytes.chunks(16).enumerate() {
        let _ = write!(out, "{:08x}  ", base + 16 * i as u64);
        for j in 0..16 {
            match row.get(j) {
                Some(b) => {
                    let _ = write!(out, "{b:02x} ");
                }
                None => out.push_str("   "),
            }
            if j == 7 {
                out.push(' ');
            }
        }
        out.push_str(" |");
        out.extend(row.iter().map(|&b| {
            if b.is_ascii_graphic() || b == b' ' {
                b as char
            } else {
                '.'
            }
        }));
        out.push_str("|\n");
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn dumps_rows_of_sixteen() {
        let d = super::format(0x10, b"hello, shared memory!\x00\x01");
        let lines: Vec<&str> = d.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(
            lines[0].starts_with("00000010  68 65 6c 6c 6f 2c 20 73  68 61"),
            "{}",
            lines[0]
        );
        assert!(lines[0].ends_with("|hello, shared me|"));
        assert!(lines[1].starts_with("00000020  6d 6f 72 79 21 00 01"));
        assert!(lines[1].ends_with("|mory!..|"));
    }
}
