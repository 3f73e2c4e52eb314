//! The value layout in shared stores, documented as a stable contract in the crate docs
//! ("Redis layout"). Anything that does not parse (garbage, truncation, another format,
//! another type) is a [`DecodeError`]: the caller treats it as a miss and overwrites it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::engine::clock::{self, Instant};
use crate::engine::entry::Deadlines;

/// An entry's first byte: MessagePack with named fields after the header and tags.
pub(crate) const FORMAT_MSGPACK_NAMED: u8 = 1;
/// The same with the payload compressed (`compress.rs`).
#[cfg(feature = "redis")]
pub(crate) const FORMAT_MSGPACK_NAMED_LZ4: u8 = 2;
const HEADER: usize = 35;

/// The format bytes of values whose header holds the wall-clock deadlines at the offsets
/// [`encode`] writes them (`fresh_until` at byte 9): what a soft purge in Redis lowers.
#[cfg(feature = "redis")]
pub(crate) const FORMATS_WITH_DEADLINES: &[u8] = &[FORMAT_MSGPACK_NAMED, FORMAT_MSGPACK_NAMED_LZ4];

/// The largest entry kept in a shared store: a bigger value is not written, and at most this
/// many bytes (plus one, to tell) are read back, so a huge value under one key cannot stall a
/// caller or be taken for an outage.
pub(crate) const MAX_ENCODED: usize = 16 * 1024 * 1024;

/// Entry deadlines on the wall clock, which instances share.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct WallDeadlines {
    pub(crate) fresh_until: u64,
    pub(crate) stale_until: u64,
    pub(crate) expires_at: u64,
}

impl WallDeadlines {
    /// The wall-clock form of deadlines measured on the local clock from `now`.
    pub(crate) fn from_local(local: &Deadlines, now: Instant) -> Self {
        let base = now_millis();
        let at = |deadline: Instant| {
            base.saturating_add(
                u64::try_from(deadline.saturating_duration_since(now).as_millis())
                    .unwrap_or(u64::MAX),
            )
        };
        WallDeadlines {
            fresh_until: at(local.fresh_until),
            stale_until: at(local.stale_until),
            expires_at: at(local.expires_at),
        }
    }

    /// Whether an encoder could have written these deadlines at wall-clock time `now`: in
    /// order (fresh, stale, expiry), and not beyond the clock's horizon from now.
    fn plausible(&self, now: u64) -> bool {
        let horizon = u64::try_from(clock::HORIZON.as_millis()).unwrap_or(u64::MAX);
        self.fresh_until <= self.stale_until
            && self.stale_until <= self.expires_at
            && self.expires_at <= now.saturating_add(horizon)
    }

    /// The same deadlines on the local clock, from `now`.
    pub(crate) fn to_local(self, now: Instant) -> Deadlines {
        // Each deadline saturates at the clock's horizon: bytes from Redis never panic.
        Deadlines {
            fresh_until: clock::after(now, millis_until(self.fresh_until)),
            stale_until: clock::after(now, millis_until(self.stale_until)),
            expires_at: clock::after(now, millis_until(self.expires_at)),
        }
    }
}

/// A decoded entry.
pub(crate) struct Decoded<T> {
    pub(crate) value: T,
    pub(crate) deadlines: WallDeadlines,
    pub(crate) tags: Vec<Box<str>>,
}

/// Why stored bytes could not be used.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum DecodeError {
    Truncated,
    Format(u8),
    OtherType,
    Payload,
    /// More than [`MAX_ENCODED`] bytes.
    TooLarge,
    /// Deadlines out of order, or beyond the clock's horizon: no encoder writes them.
    Deadlines,
}

pub(crate) fn unix_millis(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

pub(crate) fn now_millis() -> u64 {
    unix_millis(SystemTime::now())
}

/// Milliseconds from now until `deadline` (zero if past).
pub(crate) fn millis_until(deadline: u64) -> Duration {
    Duration::from_millis(deadline.saturating_sub(now_millis()))
}

/// The type fingerprint: stable across builds of the same source, unlike `TypeId`.
pub(crate) fn fingerprint<T: ?Sized>() -> u64 {
    fingerprint_of(std::any::type_name::<T>())
}

/// FNV-1a 64 of `name`: a type's fingerprint, or a named format version (HTTP entries).
pub(crate) const fn fingerprint_of(name: &str) -> u64 {
    let bytes = name.as_bytes();
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut at = 0;
    while at < bytes.len() {
        hash ^= bytes[at] as u64;
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        at += 1;
    }
    hash
}

/// A value under its type's fingerprint (memoised values are encoded as their site keeps them,
/// through [`encode_payload`]; this is the same layout, for tests).
#[cfg(all(test, feature = "redis"))]
pub(crate) fn encode<T: Serialize>(
    value: &T,
    deadlines: WallDeadlines,
    tags: &[Box<str>],
) -> Option<Vec<u8>> {
    encode_as(fingerprint::<T>(), value, deadlines, tags)
}

/// A value encoded under `fingerprint`: a format version that does not depend on a type's
/// name (HTTP entries).
pub(crate) fn encode_as<T: Serialize>(
    fingerprint: u64,
    value: &T,
    deadlines: WallDeadlines,
    tags: &[Box<str>],
) -> Option<Vec<u8>> {
    encode_payload(fingerprint, &to_payload(value)?, deadlines, tags)
}

/// [`encode_as`] of a payload already encoded (a memoised value's, by its site's
/// [`Storable`](crate::memo::Storable)).
pub(crate) fn encode_payload(
    fingerprint: u64,
    payload: &[u8],
    deadlines: WallDeadlines,
    tags: &[Box<str>],
) -> Option<Vec<u8>> {
    let tag_bytes: usize = tags
        .iter()
        .map(|t| t.len().min(u16::MAX as usize) + 2)
        .sum();
    let mut out = Vec::with_capacity(HEADER + tag_bytes + payload.len());
    out.push(FORMAT_MSGPACK_NAMED);
    out.extend_from_slice(&fingerprint.to_be_bytes());
    out.extend_from_slice(&deadlines.fresh_until.to_be_bytes());
    out.extend_from_slice(&deadlines.stale_until.to_be_bytes());
    out.extend_from_slice(&deadlines.expires_at.to_be_bytes());
    let count = u16::try_from(tags.len()).ok()?;
    out.extend_from_slice(&count.to_be_bytes());
    for tag in tags {
        let len = u16::try_from(tag.len()).ok()?;
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(tag.as_bytes());
    }
    out.extend_from_slice(payload);
    (out.len() <= MAX_ENCODED).then_some(out)
}

/// The payload: MessagePack with named fields.
#[cfg(feature = "redis")]
pub(crate) fn to_payload<T: Serialize>(value: &T) -> Option<Vec<u8>> {
    rmp_serde::to_vec_named(value).ok()
}

/// Without the `redis` feature nothing is encoded: no shared tier exists to hold it.
#[cfg(not(feature = "redis"))]
pub(crate) fn to_payload<T: Serialize>(_value: &T) -> Option<Vec<u8>> {
    None
}

/// A payload [`to_payload`] wrote.
#[cfg(feature = "redis")]
pub(crate) fn from_payload<T: DeserializeOwned>(payload: &[u8]) -> Option<T> {
    rmp_serde::from_slice(payload).ok()
}

/// Without the `redis` feature nothing is decoded: no shared tier exists to read from.
#[cfg(not(feature = "redis"))]
pub(crate) fn from_payload<T: DeserializeOwned>(_payload: &[u8]) -> Option<T> {
    None
}

/// A value [`encode`] wrote.
#[cfg(all(test, feature = "redis"))]
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<Decoded<T>, DecodeError> {
    decode_as(fingerprint::<T>(), bytes)
}

/// [`decode`] of a value written by [`encode_as`] with `fingerprint`.
pub(crate) fn decode_as<T: DeserializeOwned>(
    fingerprint: u64,
    bytes: &[u8],
) -> Result<Decoded<T>, DecodeError> {
    decode_with(fingerprint, bytes, from_payload)
}

/// [`decode_as`] with the payload read by `read`.
pub(crate) fn decode_with<T>(
    fingerprint: u64,
    bytes: &[u8],
    read: impl FnOnce(&[u8]) -> Option<T>,
) -> Result<Decoded<T>, DecodeError> {
    if bytes.len() > MAX_ENCODED {
        return Err(DecodeError::TooLarge);
    }
    let header = bytes.get(..HEADER).ok_or(DecodeError::Truncated)?;
    let compressed = match header[0] {
        FORMAT_MSGPACK_NAMED => false,
        #[cfg(feature = "redis")]
        FORMAT_MSGPACK_NAMED_LZ4 => true,
        other => return Err(DecodeError::Format(other)),
    };
    let word = |at: usize| {
        let mut buf = [0u8; 8];
        buf.copy_from_slice(&header[at..at + 8]);
        u64::from_be_bytes(buf)
    };
    if word(1) != fingerprint {
        return Err(DecodeError::OtherType);
    }
    let deadlines = WallDeadlines {
        fresh_until: word(9),
        stale_until: word(17),
        expires_at: word(25),
    };
    if !deadlines.plausible(now_millis()) {
        return Err(DecodeError::Deadlines);
    }
    let count = u16::from_be_bytes([header[33], header[34]]);
    let mut rest = &bytes[HEADER..];
    let mut tags = Vec::with_capacity(usize::from(count));
    for _ in 0..count {
        let len = rest.get(..2).ok_or(DecodeError::Truncated)?;
        let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
        let tag = rest.get(2..2 + len).ok_or(DecodeError::Truncated)?;
        let tag = std::str::from_utf8(tag).map_err(|_| DecodeError::Payload)?;
        tags.push(tag.into());
        rest = &rest[2 + len..];
    }
    let value = if compressed {
        read_compressed(rest, read)
    } else {
        read(rest)
    };
    let value = value.ok_or(DecodeError::Payload)?;
    Ok(Decoded {
        value,
        deadlines,
        tags,
    })
}

/// A payload compressed by `compress.rs`, decompressed and read by `read`.
#[cfg(feature = "redis")]
fn read_compressed<T>(stored: &[u8], read: impl FnOnce(&[u8]) -> Option<T>) -> Option<T> {
    read(&super::compress::decompressed(stored)?)
}

/// Without the `redis` feature nothing is compressed (`decode_with` refuses the format).
#[cfg(not(feature = "redis"))]
fn read_compressed<T>(_stored: &[u8], _read: impl FnOnce(&[u8]) -> Option<T>) -> Option<T> {
    None
}

/// Where the payload of the entry in `bytes` begins (after its header and tags), if the
/// bytes are that long.
#[cfg(feature = "redis")]
pub(crate) fn payload_at(bytes: &[u8]) -> Option<usize> {
    let header = bytes.get(..HEADER)?;
    let count = u16::from_be_bytes([header[33], header[34]]);
    let mut at = HEADER;
    for _ in 0..count {
        let len = bytes.get(at..at + 2)?;
        at += 2 + usize::from(u16::from_be_bytes([len[0], len[1]]));
    }
    (at <= bytes.len()).then_some(at)
}

// The encoding is MessagePack only with the `redis` feature (the shared tier's).
#[cfg(all(test, feature = "redis"))]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct User {
        id: u64,
        name: String,
    }

    const D: WallDeadlines = WallDeadlines {
        fresh_until: 10,
        stale_until: 20,
        expires_at: 30,
    };

    #[test]
    fn round_trip_keeps_value_deadlines_and_tags() {
        let user = User {
            id: 7,
            name: "Ada".into(),
        };
        let bytes = encode(&user, D, &["users".into(), "org:1".into()]).unwrap();
        let decoded = decode::<User>(&bytes).unwrap();
        assert_eq!(decoded.value, user);
        assert_eq!(decoded.deadlines, D);
        assert_eq!(decoded.tags, vec![Box::from("users"), Box::from("org:1")]);
    }

    #[test]
    fn oversized_values_are_neither_written_nor_read() {
        let huge = "x".repeat(MAX_ENCODED);
        assert!(encode(&huge, D, &[]).is_none());
        let mut bytes = encode(&1u8, D, &[]).unwrap();
        bytes.resize(MAX_ENCODED + 1, 0);
        assert_eq!(decode::<u8>(&bytes).err(), Some(DecodeError::TooLarge));
    }

    #[test]
    fn absurd_deadlines_are_an_error() {
        let now = now_millis();
        let horizon = u64::try_from(clock::HORIZON.as_millis()).unwrap();
        for (fresh, stale, expires) in [
            (u64::MAX, u64::MAX, u64::MAX),
            (now + 2 * horizon, now + 2 * horizon, now + 2 * horizon),
            (now + 10, now + 5, now + 20),
            (now + 10, now + 20, now + 15),
        ] {
            let deadlines = WallDeadlines {
                fresh_until: fresh,
                stale_until: stale,
                expires_at: expires,
            };
            let bytes = encode(&1u8, deadlines, &[]).unwrap();
            assert_eq!(
                decode::<u8>(&bytes).err(),
                Some(DecodeError::Deadlines),
                "{deadlines:?}"
            );
        }
    }

    #[test]
    fn extreme_deadlines_saturate_on_the_local_clock() {
        let huge = WallDeadlines {
            fresh_until: u64::MAX,
            stale_until: u64::MAX,
            expires_at: u64::MAX,
        };
        // `decode` refuses these; the conversion saturates all the same.
        let now = clock::now();
        let local = huge.to_local(now);
        assert!(local.fresh_until > now);
        assert!(local.expires_at <= clock::after(now, clock::HORIZON));
    }

    #[test]
    fn garbage_truncation_and_other_types_are_errors_not_panics() {
        let bytes = encode(&7u64, D, &["t".into()]).unwrap();
        for cut in 0..bytes.len() {
            assert!(decode::<u64>(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        assert_eq!(decode::<String>(&bytes).err(), Some(DecodeError::OtherType));
        assert_eq!(
            decode::<u64>(b"hello world").err(),
            Some(DecodeError::Truncated)
        );
        let mut other_format = bytes.clone();
        other_format[0] = 9;
        assert_eq!(
            decode::<u64>(&other_format).err(),
            Some(DecodeError::Format(9))
        );
    }
}
