//! [`KeyArg`] for the time crate's dates and times (feature `time`), in ISO 8601
//! ([`Iso8601`]).

use ::time::{Date, OffsetDateTime, PrimitiveDateTime, Time};

use super::arg::KeyArg;
use super::buf::KeyBuf;
use super::iso8601::{iso8601_keys, Iso8601};

/// Appends a date's `2024-03-01` to `iso`.
fn date(iso: Iso8601, value: Date) -> Iso8601 {
    iso.date(
        value.year(),
        u8::from(value.month()).into(),
        value.day().into(),
    )
}

/// Appends a time of day, `12:30:05.25`, to `iso`.
fn time(iso: Iso8601, value: Time) -> Iso8601 {
    let (hour, minute, second, nanosecond) = value.as_hms_nano();
    iso.time(hour.into(), minute.into(), second.into(), nanosecond)
}

iso8601_keys! {
    "time";
    /// ISO 8601: `2024-03-01`. Its type's name is `time::Date`.
    Date, "time::Date", |value| date(Iso8601::new(), *value);
    /// ISO 8601, escaped: `12%3A30%3A05`, with the fraction of a second when it has one
    /// (`12%3A30%3A05.25`). Its type's name is `time::Time`.
    Time, "time::Time", |value| time(Iso8601::new(), *value);
    /// The date, `T`, the time: `2024-03-01T12%3A30%3A05`. Its type's name is
    /// `time::PrimitiveDateTime`.
    PrimitiveDateTime, "time::PrimitiveDateTime", |value| {
        time(date(Iso8601::new(), value.date()), value.time())
    };
    /// RFC 3339: the local date and time, then the offset (`+00:00` for UTC):
    /// `2024-03-01T13%3A30%3A05%2B01%3A00`. One instant in two offsets is two keys, though
    /// the time crate compares them equal: the offset is part of the value (`hour()`,
    /// `offset()` tell them apart), so a function may answer differently for them. For one
    /// key per instant, key by the value in UTC (`value.to_offset(UtcOffset::UTC)`). Its
    /// type's name is `time::OffsetDateTime`.
    OffsetDateTime, "time::OffsetDateTime", |value| {
        time(date(Iso8601::new(), value.date()), value.time()).offset(value.offset().whole_seconds())
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use ::time::{Month, UtcOffset};

    fn key<T: KeyArg>(value: &T) -> String {
        let mut out = KeyBuf::new();
        value.write_key(&mut out);
        out.into_string()
    }

    fn at() -> PrimitiveDateTime {
        let date = Date::from_calendar_date(2024, Month::March, 1).unwrap();
        date.with_time(Time::from_hms_nano(12, 30, 5, 250_000_000).unwrap())
    }

    #[test]
    fn dates_and_times_are_iso_8601_as_chronos_are() {
        assert_eq!(key(&at().date()), "2024-03-01");
        assert_eq!(key(&at().time()), "12%3A30%3A05.25");
        assert_eq!(key(&at()), "2024-03-01T12%3A30%3A05.25");
        assert_eq!(
            key(&at().assume_utc()),
            "2024-03-01T12%3A30%3A05.25%2B00%3A00"
        );
        let india = UtcOffset::from_hms(5, 30, 0).unwrap();
        assert_eq!(
            key(&at().assume_offset(india)),
            "2024-03-01T12%3A30%3A05.25%2B05%3A30"
        );
        assert_eq!(key(&Date::MIN), "-9999-01-01");
    }

    #[test]
    fn one_instant_in_two_offsets_is_two_keys() {
        let utc = at().assume_utc();
        let east = utc.to_offset(UtcOffset::from_hms(1, 0, 0).unwrap());
        assert_eq!(utc, east, "the time crate compares instants");
        assert_ne!(key(&utc), key(&east));
    }

    #[test]
    fn types_have_fixed_names() {
        let name = |value: &dyn KeyArg| {
            let mut out = KeyBuf::new();
            value.write_key_type(&mut out);
            out.into_string()
        };
        assert_eq!(name(&at().date()), "time::Date");
        assert_eq!(name(&at().time()), "time::Time");
        assert_eq!(name(&at()), "time::PrimitiveDateTime");
        assert_eq!(name(&at().assume_utc()), "time::OffsetDateTime");
    }
}
