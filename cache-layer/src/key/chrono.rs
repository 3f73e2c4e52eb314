//! [`KeyArg`] for chrono's dates and times (feature `chrono`), in ISO 8601 ([`Iso8601`]).

use ::chrono::{
    DateTime, Datelike, FixedOffset, NaiveDate, NaiveDateTime, NaiveTime, Timelike, Utc,
};

use super::arg::KeyArg;
use super::buf::KeyBuf;
use super::iso8601::{iso8601_keys, Iso8601, NANOS};

/// Appends a date's `2024-03-01` to `iso`. On a `DateTime`, chrono's `Datelike` reads the
/// local date without the panic of `naive_local` at the edges of its range.
fn date(iso: Iso8601, value: &impl Datelike) -> Iso8601 {
    iso.date(value.year(), value.month(), value.day())
}

/// Appends a time of day, `12:30:05.25`, to `iso`. chrono holds a leap second as second `s`
/// with a nanosecond count of a second or more: after second 59 (the leap seconds UTC has)
/// it is written `60`, as ISO 8601 writes it; chrono also lets one follow another second (a
/// time in an offset with seconds, or `with_nanosecond`), written `61` to `119`
/// (`60 + s + 1`), which no other time is.
fn time(iso: Iso8601, value: &impl Timelike) -> Iso8601 {
    let (second, nanosecond) = match value.nanosecond().checked_sub(NANOS) {
        Some(leap) => (60 + (value.second() + 1) % 60, leap),
        None => (value.second(), value.nanosecond()),
    };
    iso.time(value.hour(), value.minute(), second, nanosecond)
}

iso8601_keys! {
    "chrono";
    /// ISO 8601: `2024-03-01`. Its type's name is `chrono::NaiveDate`.
    NaiveDate, "chrono::NaiveDate", |value| date(Iso8601::new(), value);
    /// ISO 8601, escaped: `12%3A30%3A05`, with the fraction of a second when it has one
    /// (`12%3A30%3A05.25`); a leap second is second `60`. Its type's name is
    /// `chrono::NaiveTime`.
    NaiveTime, "chrono::NaiveTime", |value| time(Iso8601::new(), value);
    /// The date, `T`, the time: `2024-03-01T12%3A30%3A05`. Its type's name is
    /// `chrono::NaiveDateTime`.
    NaiveDateTime, "chrono::NaiveDateTime", |value| time(date(Iso8601::new(), value), value);
    /// The date, `T`, the time, `Z`: `2024-03-01T12%3A30%3A05Z`. Its type's name is
    /// `chrono::DateTime<chrono::Utc>`.
    DateTime<Utc>, "chrono::DateTime<chrono::Utc>", |value| {
        time(date(Iso8601::new(), value), value).utc()
    };
    /// RFC 3339: the local date and time, then the offset:
    /// `2024-03-01T13%3A30%3A05%2B01%3A00`. One instant in two offsets is two keys, though
    /// chrono compares them equal: the offset is part of the value (`hour()`, `offset()`,
    /// `to_rfc3339()` tell them apart), so a function may answer differently for them. For
    /// one key per instant, key by `DateTime<Utc>` (`value.to_utc()`). Its type's name is
    /// `chrono::DateTime<chrono::FixedOffset>`.
    DateTime<FixedOffset>, "chrono::DateTime<chrono::FixedOffset>", |value| {
        time(date(Iso8601::new(), value), value).offset(value.offset().local_minus_utc())
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key<T: KeyArg>(value: &T) -> String {
        let mut out = KeyBuf::new();
        value.write_key(&mut out);
        out.into_string()
    }

    fn at(hour: u32, minute: u32, second: u32, nano: u32) -> NaiveDateTime {
        let date = NaiveDate::from_ymd_opt(2024, 3, 1).unwrap();
        date.and_time(NaiveTime::from_hms_nano_opt(hour, minute, second, nano).unwrap())
    }

    #[test]
    fn dates_and_times_are_iso_8601() {
        let moment = at(12, 30, 5, 250_000_000);
        assert_eq!(key(&moment.date()), "2024-03-01");
        assert_eq!(key(&moment.time()), "12%3A30%3A05.25");
        assert_eq!(key(&moment), "2024-03-01T12%3A30%3A05.25");
        assert_eq!(key(&moment.and_utc()), "2024-03-01T12%3A30%3A05.25Z");
        let paris = FixedOffset::east_opt(3600).unwrap();
        assert_eq!(
            key(&moment.and_utc().with_timezone(&paris)),
            "2024-03-01T13%3A30%3A05.25%2B01%3A00"
        );
        let far = NaiveDate::from_ymd_opt(-44, 3, 15).unwrap();
        assert_eq!(key(&far), "-0044-03-15");
    }

    #[test]
    fn one_instant_in_two_offsets_is_two_keys() {
        let instant = at(12, 0, 0, 0).and_utc();
        let east = instant.with_timezone(&FixedOffset::east_opt(3600).unwrap());
        let utc = instant.fixed_offset();
        assert_eq!(east, utc, "chrono compares instants");
        assert_ne!(key(&east), key(&utc));
        assert_eq!(key(&utc), "2024-03-01T12%3A00%3A00%2B00%3A00");
    }

    #[test]
    fn leap_seconds_are_distinct_from_every_other_second() {
        let leap = at(23, 59, 59, 1_500_000_000);
        assert_eq!(key(&leap.time()), "23%3A59%3A60.5");
        // A leap second after second 29, as chrono lets a value hold, is not second 30.
        let strange = at(23, 59, 29, 0).with_nanosecond(1_500_000_000).unwrap();
        let thirty = at(23, 59, 30, 500_000_000);
        assert_ne!(key(&strange), key(&thirty));
        assert_eq!(key(&strange.time()), "23%3A59%3A90.5");
        let after_zero = at(0, 0, 0, 0).with_nanosecond(1_000_000_000).unwrap();
        assert_eq!(key(&after_zero.time()), "00%3A00%3A61");
    }

    #[test]
    fn the_ends_of_the_range_render_without_panicking() {
        // `naive_local` panics here: the local time is past the last `NaiveDateTime`.
        let east = FixedOffset::east_opt(23 * 3600).unwrap();
        let last = DateTime::<FixedOffset>::from_naive_utc_and_offset(NaiveDateTime::MAX, east);
        assert!(key(&last).ends_with("%2B23%3A00"));
        let west = FixedOffset::west_opt(23 * 3600).unwrap();
        let first = DateTime::<FixedOffset>::from_naive_utc_and_offset(NaiveDateTime::MIN, west);
        assert!(key(&first).ends_with("-23%3A00"));
        assert_ne!(key(&last), key(&first));
        assert!(key(&NaiveDateTime::MIN.and_utc()).starts_with('-'));
    }

    #[test]
    fn types_have_fixed_names() {
        let moment = at(0, 0, 0, 0);
        let name = |value: &dyn KeyArg| {
            let mut out = KeyBuf::new();
            value.write_key_type(&mut out);
            out.into_string()
        };
        assert_eq!(name(&moment.date()), "chrono::NaiveDate");
        assert_eq!(name(&moment.time()), "chrono::NaiveTime");
        assert_eq!(name(&moment), "chrono::NaiveDateTime");
        assert_eq!(name(&moment.and_utc()), "chrono::DateTime<chrono::Utc>");
        assert_eq!(
            name(&moment.and_utc().fixed_offset()),
            "chrono::DateTime<chrono::FixedOffset>"
        );
    }
}
