//! The ISO 8601 text of dates, times of day and UTC offsets: the one rendering the `chrono`
//! and `time` key types share, so a date renders alike from either crate.

use arrayvec::ArrayString;

use super::arg::KeyArg;
use super::buf::KeyBuf;

/// A date, a time of day, or both, with an offset or not, being written as ISO 8601 text
/// (`2024-03-01T12:30:05.25+01:00`), then appended to a key escaped as a string is
/// (`2024-03-01T12%3A30%3A05.25%2B01%3A00`). Each part has one spelling, and the parts
/// follow one another in a fixed order, so distinct values write distinct text.
pub(super) struct Iso8601 {
    // The longest text: an 11-character year, `-MM-DD`, `THH:MM:SS`, `.` and 9 digits,
    // `+HH:MM:SS`: 45 bytes.
    text: ArrayString<64>,
}

/// Nanoseconds in a second.
pub(super) const NANOS: u32 = 1_000_000_000;

impl Iso8601 {
    pub(super) fn new() -> Self {
        Iso8601 {
            text: ArrayString::new(),
        }
    }

    /// `2024-03-01`: the year with at least four digits, signed when outside 0 to 9999
    /// (`+10000-01-01`, `-0001-01-01`), as ISO 8601's expanded years are.
    pub(super) fn date(mut self, year: i32, month: u32, day: u32) -> Self {
        if year < 0 {
            self.text.push('-');
        } else if year > 9999 {
            self.text.push('+');
        }
        self.digits(year.unsigned_abs(), 4);
        self.text.push('-');
        self.digits(month, 2);
        self.text.push('-');
        self.digits(day, 2);
        self
    }

    /// `12:30:05` (after a date, `T12:30:05`), then `.` and the fraction of a second without
    /// trailing zeros when it has one (`12:30:05.25`). `second` may exceed 59 (a leap
    /// second); `nanosecond` is below a second.
    pub(super) fn time(mut self, hour: u32, minute: u32, second: u32, nanosecond: u32) -> Self {
        debug_assert!(nanosecond < NANOS);
        if !self.text.is_empty() {
            self.text.push('T');
        }
        self.digits(hour, 2);
        self.text.push(':');
        self.digits(minute, 2);
        self.text.push(':');
        self.digits(second, 2);
        if nanosecond > 0 {
            self.text.push('.');
            let mut fraction = nanosecond;
            let mut width = 9;
            while fraction % 10 == 0 {
                fraction /= 10;
                width -= 1;
            }
            self.digits(fraction, width);
        }
        self
    }

    /// `Z`: the time is UTC's, in a type that holds no other offset.
    #[cfg(feature = "chrono")]
    pub(super) fn utc(mut self) -> Self {
        self.text.push('Z');
        self
    }

    /// The offset from UTC, `+01:00`, `-03:30`, `+00:00`; with `:SS` when it has seconds
    /// (`+00:03:57`).
    pub(super) fn offset(mut self, seconds: i32) -> Self {
        self.text.push(if seconds < 0 { '-' } else { '+' });
        let seconds = seconds.unsigned_abs();
        self.digits(seconds / 3600, 2);
        self.text.push(':');
        self.digits(seconds / 60 % 60, 2);
        if seconds % 60 != 0 {
            self.text.push(':');
            self.digits(seconds % 60, 2);
        }
        self
    }

    /// Appends the text to `out`, escaped as a string is (`:` is `%3A`, `+` is `%2B`).
    pub(super) fn write(&self, out: &mut KeyBuf) {
        self.text.as_str().write_key(out);
    }

    /// `n` in decimal, zero-padded to `width` digits.
    fn digits(&mut self, n: u32, width: usize) {
        let mut buffer = itoa::Buffer::new();
        let n = buffer.format(n);
        for _ in n.len()..width {
            self.text.push('0');
        }
        self.text.push_str(n);
    }
}

/// `KeyArg` for date and time types of the crate that `$feature` adds, each rendered by an
/// [`Iso8601`] built from `$value` (a reference) and with a fixed name (see
/// [`KeyArg::write_key_type`]).
macro_rules! iso8601_keys {
    ($feature:literal; $($(#[$doc:meta])* $t:ty, $name:literal, |$value:ident| $iso:expr;)*) => {$(
        $(#[$doc])*
        #[cfg_attr(docsrs, doc(cfg(feature = $feature)))]
        impl KeyArg for $t {
            fn write_key(&self, out: &mut KeyBuf) {
                let $value = self;
                $iso.write(out);
            }

            fn write_key_type(&self, out: &mut KeyBuf) {
                out.push_str($name);
            }
        }
    )*};
}

pub(super) use iso8601_keys;

#[cfg(test)]
mod tests {
    use super::*;

    fn text(iso: Iso8601) -> String {
        let mut out = KeyBuf::new();
        iso.write(&mut out);
        out.into_string()
    }

    #[test]
    fn dates_times_and_offsets_in_iso_8601_escaped() {
        let date = || Iso8601::new().date(2024, 3, 1);
        assert_eq!(text(date()), "2024-03-01");
        assert_eq!(text(Iso8601::new().date(10_000, 1, 1)), "%2B10000-01-01");
        assert_eq!(text(Iso8601::new().date(-1, 12, 31)), "-0001-12-31");
        assert_eq!(text(Iso8601::new().date(0, 1, 1)), "0000-01-01");
        assert_eq!(
            text(Iso8601::new().date(i32::MIN, 1, 1)),
            "-2147483648-01-01"
        );
        assert_eq!(text(Iso8601::new().time(9, 5, 7, 0)), "09%3A05%3A07");
        assert_eq!(
            text(Iso8601::new().time(9, 5, 7, 250_000_000)),
            "09%3A05%3A07.25"
        );
        assert_eq!(
            text(Iso8601::new().time(0, 0, 0, 1)),
            "00%3A00%3A00.000000001"
        );
        assert_eq!(
            text(date().time(23, 59, 60, 0).offset(0)),
            "2024-03-01T23%3A59%3A60%2B00%3A00"
        );
        assert_eq!(
            text(date().time(12, 0, 0, 0).offset(5 * 3600 + 30 * 60)),
            "2024-03-01T12%3A00%3A00%2B05%3A30"
        );
        assert_eq!(text(Iso8601::new().offset(0)), "%2B00%3A00");
        assert_eq!(text(Iso8601::new().offset(-(3 * 60 + 57))), "-00%3A03%3A57");
        assert_eq!(text(Iso8601::new().offset(-30 * 60)), "-00%3A30");
    }
}
