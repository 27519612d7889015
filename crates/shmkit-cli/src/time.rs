//! Times and durations as a person reads them.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// `took` with three significant digits in the unit that suits it: `812 ns`,
/// `2.93 ms`, `1.25 s`.
pub fn duration(took: Duration) -> String {
    let ns = took.as_nanos() as f64;
    let (value, unit) = if ns < 1e3 {
        (ns, "ns")
    } else if ns < 1e6 {
        (ns / 1e3, "µs")
    } else if ns < 1e9 {
        (ns / 1e6, "ms")
    } else {
        (ns / 1e9, "s")
    };
    let decimals = if value >= 100.0 {
        0
    } else if value >= 10.0 {
        1
    } else {
        2
    };
    format!("{value:.decimals$} {unit}")
}

/// `at` as a UTC date and time, `2026-11-23 13:20:05 UTC`.
pub fn date(at: SystemTime) -> String {
    let secs = match at.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs(),
        Err(_) => return "before 1970".into(),
    };
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rest / 3600,
        rest / 60 % 60,
        rest % 60
    )
}

/// Year, month and day of the `days`-th day after 1970-01-01 (proleptic
/// Gregorian; Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_have_three_significant_digits() {
        assert_eq!(duration(Duration::from_nanos(812)), "812 ns");
        assert_eq!(duration(Duration::from_nanos(2_925_502)), "2.93 ms");
        assert_eq!(duration(Duration::from_micros(13_900)), "13.9 ms");
        assert_eq!(duration(Duration::from_millis(1250)), "1.25 s");
    }

    #[test]
    fn dates_are_utc_calendar_dates() {
        let at = |s| UNIX_EPOCH + Duration::from_secs(s);
        assert_eq!(date(at(0)), "1970-01-01 00:00:00 UTC");
        assert_eq!(date(at(951_782_400)), "2000-02-29 00:00:00 UTC");
        assert_eq!(date(at(1_795_440_005)), "2026-11-23 13:20:05 UTC");
    }
}
