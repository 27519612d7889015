//! Human-friendly sizes: `4096`, `64KiB`, `1.5GiB`, `10MB`.

/// Parses a byte count, with an optional decimal or binary unit.
pub fn parse(s: &str) -> Result<u64, String> {
    s.trim()
        .parse::<bytesize::ByteSize>()
        .map(|b| b.as_u64())
        .map_err(|_| format!("{s:?} is not a size (examples: 4096, 64KiB, 1GiB)"))
}

/// Formats a byte count with binary units (`1.0 MiB`).
pub fn show(n: u64) -> String {
    bytesize::ByteSize(n).display().iec().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_and_unit_sizes() {
        assert_eq!(parse("4096"), Ok(4096));
        assert_eq!(parse("64KiB"), Ok(65536));
        assert_eq!(parse("1GiB"), Ok(1 << 30));
        assert_eq!(parse("1 MB"), Ok(1_000_000));
        for bad in ["", "twelve", "12XB", "-5"] {
            assert!(parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn shows_binary_units() {
        assert_eq!(show(1 << 20), "1.0 MiB");
    }
}
