//! Duration strings of the macros' arguments: `"30s"`, `"5m"`, `"1h30m"`, `"250ms"`,
//! `"2 days"`: integers, each followed by a unit, spaces allowed between parts. The units are
//! humantime's (a month is 30.44 days, a year 365.25 days).

use std::time::Duration;

/// Each unit's names and length in nanoseconds.
const UNITS: &[(&[&str], u128)] = &[
    (&["nanos", "nsec", "ns"], 1),
    (&["usec", "us", "µs"], 1_000),
    (&["millis", "msec", "ms"], 1_000_000),
    (&["seconds", "second", "secs", "sec", "s"], NANOS_PER_SEC),
    (
        &["minutes", "minute", "mins", "min", "m"],
        60 * NANOS_PER_SEC,
    ),
    (&["hours", "hour", "hrs", "hr", "h"], 3_600 * NANOS_PER_SEC),
    (&["days", "day", "d"], 86_400 * NANOS_PER_SEC),
    (&["weeks", "week", "wk", "w"], 7 * 86_400 * NANOS_PER_SEC),
    (&["months", "month", "M"], 2_630_016 * NANOS_PER_SEC),
    (&["years", "year", "yr", "y"], 31_557_600 * NANOS_PER_SEC),
];

const NANOS_PER_SEC: u128 = 1_000_000_000;

/// The duration `text` spells, or why it spells none.
pub(crate) fn parse(text: &str) -> Result<Duration, String> {
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err("empty".to_owned());
    }
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        if digits == 0 {
            return Err(format!("expected a number at \"{rest}\""));
        }
        let number: u128 = rest[..digits]
            .parse()
            .map_err(|_| format!("\"{}\" is too large", &rest[..digits]))?;
        rest = rest[digits..].trim_start();
        let unit_len = rest.len() - rest.trim_start_matches(char::is_alphabetic).len();
        let unit = &rest[..unit_len];
        let nanos = unit_nanos(unit)?;
        total = number
            .checked_mul(nanos)
            .and_then(|part| total.checked_add(part))
            .ok_or_else(|| "too large".to_owned())?;
        rest = rest[unit_len..].trim_start();
    }
    let secs = u64::try_from(total / NANOS_PER_SEC).map_err(|_| "too large".to_owned())?;
    Ok(Duration::new(secs, (total % NANOS_PER_SEC) as u32))
}

/// The length of `unit` in nanoseconds.
fn unit_nanos(unit: &str) -> Result<u128, String> {
    if unit.is_empty() {
        return Err("a number without a unit".to_owned());
    }
    UNITS
        .iter()
        .find(|(names, _)| names.contains(&unit))
        .map(|&(_, nanos)| nanos)
        .ok_or_else(|| {
            format!("unknown unit \"{unit}\" (units: ns, us, ms, s, m, h, d, w, M, y and their long names)")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_the_docs_write() {
        let s = Duration::from_secs;
        assert_eq!(parse("30s"), Ok(s(30)));
        assert_eq!(parse("5m"), Ok(s(300)));
        assert_eq!(parse("1h30m"), Ok(s(5_400)));
        assert_eq!(parse("1h 30m"), Ok(s(5_400)));
        assert_eq!(parse(" 2 days "), Ok(s(172_800)));
        assert_eq!(parse("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse("1500us"), Ok(Duration::from_micros(1_500)));
        assert_eq!(parse("7ns"), Ok(Duration::from_nanos(7)));
        assert_eq!(parse("1M"), Ok(s(2_630_016)));
        assert_eq!(parse("200years"), Ok(s(200 * 31_557_600)));
        assert_eq!(parse("1w1d"), Ok(s(8 * 86_400)));
    }

    #[test]
    fn refuses_what_is_not_a_duration() {
        for bad in ["", "5", "m", "5 parsecs", "1.5h", "-1s", "5m x", "1h30"] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        assert!(parse(&format!("{}y", u128::MAX)).is_err());
        assert!(parse("99999999999999999999999y").is_err());
    }
}
