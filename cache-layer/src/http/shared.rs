//! Responses shared through Redis. On a cache with a shared tier, a stored response and a
//! URL's `Vary` record are written to Redis beside the memory copy, under the same keys and
//! after the same storage gate, so that every instance finds them; an instance that misses in
//! memory reads Redis before it asks the inner service. The bytes are a stable contract
//! (crate docs, "Redis layout"): the codec's header (format, a format version in the
//! fingerprint's place, wall-clock deadlines, tags), then a MessagePack array.
//!
//! Bytes read back are hostile: anything that does not decode, is of another version, does not
//! belong under its key or does not pass the storage gate again is a miss (counted, logged,
//! overwritten by the next store), never a panic or an error.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use super::config::Config;
use super::rules::gate::{admit, Exchange};
use super::rules::key::{secondary_key, variant_key};
use super::stored::{CachedResponse, Variants};
use crate::cache::EntryKind;
use crate::entry::{Age, Deadlines, Entry};
use crate::pipeline;
use crate::stats::Counter;
use crate::store::codec::{self, unix_millis, WallDeadlines};
use crate::{clock, Cache};

/// The fingerprint slot of a shared response: its format's version. Another version (an older
/// or newer release's layout) is a miss.
pub(crate) const RESPONSE_FORMAT: u64 = codec::fingerprint_of("cache-layer http response 1");
/// The fingerprint slot of a URL's shared `Vary` record.
pub(crate) const VARIANTS_FORMAT: u64 = codec::fingerprint_of("cache-layer http variants 1");

/// The most header fields a shared response may have (a `HeaderMap` holds at most 32,768).
const MAX_FIELDS: usize = 4096;

/// A byte string, as MessagePack `bin`.
struct Raw<'a>(Cow<'a, [u8]>);

impl Serialize for Raw<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Raw<'static> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Bin;
        impl Visitor<'_> for Bin {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a byte string")
            }
            fn visit_bytes<E: de::Error>(self, bytes: &[u8]) -> Result<Vec<u8>, E> {
                Ok(bytes.to_vec())
            }
            fn visit_byte_buf<E: de::Error>(self, bytes: Vec<u8>) -> Result<Vec<u8>, E> {
                Ok(bytes)
            }
        }
        let bytes = deserializer.deserialize_byte_buf(Bin)?;
        Ok(Raw(Cow::Owned(bytes)))
    }
}

/// A shared response's payload, in this order: status, header fields (name, value) in order,
/// body, when it arrived (Unix ms), its corrected initial age (ms), its freshness lifetime,
/// stale-while-revalidate and stale-if-error windows (ms), the `Vary` names, the secondary key
/// it was stored for, its tags.
type ResponseWire<'a> = (
    u16,
    Vec<(Cow<'a, str>, Raw<'a>)>,
    Raw<'a>,
    u64,
    u64,
    u64,
    u64,
    u64,
    Vec<Cow<'a, str>>,
    Cow<'a, str>,
    Vec<Cow<'a, str>>,
);

/// A `Vary` record's payload: the varied header names.
type VariantsWire<'a> = (Vec<Cow<'a, str>>,);

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// The shared form of `response`, stored with `deadlines` and `tags`; `None` when it cannot
/// be written (too large for the shared tier).
pub(crate) fn encode_response(
    response: &CachedResponse,
    deadlines: WallDeadlines,
    tags: &[Box<str>],
) -> Option<Vec<u8>> {
    let (arrived, initial_age) = response.age_basis();
    let fields = response
        .headers
        .iter()
        .map(|(name, value)| (Cow::Borrowed(name.as_str()), Raw(value.as_bytes().into())))
        .collect();
    let wire: ResponseWire<'_> = (
        response.status.as_u16(),
        fields,
        Raw(Cow::Borrowed(&response.body)),
        unix_millis(arrived),
        millis(initial_age),
        millis(response.lifetime),
        millis(response.stale_while_revalidate),
        millis(response.stale_if_error),
        response.vary.iter().map(|n| n.as_str().into()).collect(),
        Cow::Borrowed(&response.secondary),
        response.tags.iter().map(|t| t.as_str().into()).collect(),
    );
    codec::encode_as(RESPONSE_FORMAT, &wire, deadlines, tags)
}

/// The shared form of a URL's `Vary` record.
pub(crate) fn encode_variants(names: &[HeaderName], deadlines: WallDeadlines) -> Option<Vec<u8>> {
    let wire: VariantsWire<'_> = (names.iter().map(|n| n.as_str().into()).collect(),);
    codec::encode_as(VARIANTS_FORMAT, &wire, deadlines, &[])
}

fn header_names(names: &[Cow<'_, str>]) -> Option<Box<[HeaderName]>> {
    names
        .iter()
        .map(|name| HeaderName::from_bytes(name.as_bytes()).ok())
        .collect()
}

/// The response a shared payload describes, admitted again by this instance's storage gate;
/// `None` when it does not parse or is refused.
fn response_from(wire: ResponseWire<'static>, config: &Config) -> Option<CachedResponse> {
    let (status, fields, body, arrived, initial_age, lifetime, swr, sie, vary, secondary, tags) =
        wire;
    let status = StatusCode::from_u16(status).ok()?;
    if fields.len() > MAX_FIELDS {
        return None;
    }
    let mut headers = HeaderMap::with_capacity(fields.len());
    for (name, value) in &fields {
        let name = HeaderName::from_bytes(name.as_bytes()).ok()?;
        headers.append(name, HeaderValue::from_bytes(&value.0).ok()?);
    }
    let vary = header_names(&vary)?;
    let received = UNIX_EPOCH.checked_add(Duration::from_millis(arrived))?;
    let cc = config.targeted.directives(&headers);
    let exchange = Exchange::Http {
        method: &Method::GET,
        request: &HeaderMap::new(),
        status,
        has_default_ttl: config.default_ttl.is_some(),
        targeted: &config.targeted,
        keep_tags: config.forward_tags,
    };
    let admitted = admit(exchange, headers, &cc).ok()?;
    let windows = (Duration::from_millis(swr), Duration::from_millis(sie));
    let response = CachedResponse::new(
        status,
        admitted,
        Bytes::from(body.0.into_owned()),
        (received, received),
        Duration::from_millis(lifetime),
        &cc,
        windows,
        (vary, secondary.into_owned()),
        tags.into_iter().map(Cow::into_owned).collect(),
    );
    Some(response.with_initial_age(Duration::from_millis(initial_age)))
}

/// The entry `bytes`, read under `key` for the URL `primary`, hold: a response or the URL's
/// `Vary` record; an error when they do not decode, are refused by the storage gate, or do
/// not belong under `key`.
fn decode(
    config: &Config,
    (primary, key): (&str, &str),
    bytes: &[u8],
) -> Result<Entry, &'static str> {
    let now = clock::now();
    let entry = match codec::decode_as::<ResponseWire<'static>>(RESPONSE_FORMAT, bytes) {
        Ok(decoded) => {
            let response = response_from(decoded.value, config).ok_or("refused")?;
            // The header's deadlines become the entry's, which cap the response's own
            // freshness (`CachedResponse::usability_in`; a soft purge moves them).
            let deadlines = decoded.deadlines.to_local(now);
            let tags = decoded.tags.into_boxed_slice();
            pipeline::entry(key, Arc::new(response), deadlines, tags)
        }
        Err(codec::DecodeError::OtherType) => {
            let decoded = codec::decode_as::<VariantsWire<'static>>(VARIANTS_FORMAT, bytes)
                .map_err(|_| "another type or version")?;
            let record = Variants::new(header_names(&decoded.value.0).ok_or("invalid Vary name")?);
            let deadlines = Deadlines::until(decoded.deadlines.to_local(now).expires_at);
            pipeline::entry(key, Arc::new(record), deadlines, Box::new([]))
        }
        Err(_) => return Err("undecodable"),
    };
    if !belongs(&entry, primary, key) {
        return Err("stored under another key");
    }
    Ok(entry)
}

/// Whether `entry` belongs under `key` for the URL `primary`: the URL's `Vary` record or its
/// response that does not vary under the URL's key, a variant under the key of the request
/// headers it was stored for.
fn belongs(entry: &Entry, primary: &str, key: &str) -> bool {
    if entry.value.is::<Variants>() {
        return key == primary;
    }
    let Some(response) = entry.value.downcast_ref::<CachedResponse>() else {
        return false;
    };
    if key == primary {
        response.vary.is_empty()
    } else {
        !response.vary.is_empty() && variant_key(primary, &response.secondary) == key
    }
}

/// The live entry the shared tier holds under `key` (for the URL `primary`), copied into
/// memory when memory may be used (unless invalidated while it was read, the invalidation log
/// then standing at `since`). Bytes that are not usable there are a miss, counted and logged.
async fn read(
    cache: &Cache,
    config: &Config,
    (primary, key): (&str, &str),
    since: u64,
) -> Option<Arc<Entry>> {
    let bytes = cache.remote()?.store.get(key).await?;
    let entry = match decode(config, (primary, key), &bytes) {
        Ok(entry) => entry,
        Err(why) => {
            let counters = cache.inner().counters();
            counters.add(Counter::DecodeError);
            tracing::warn!(
                cache = counters.name(),
                key,
                why,
                "unusable response in the shared store: treated as a miss"
            );
            return None;
        }
    };
    if entry.age(clock::now()) == Age::Expired {
        return None;
    }
    Some(pipeline::adopt_shared(
        cache,
        EntryKind::Response,
        key,
        entry,
        since,
    ))
}

/// What the shared tier holds for a request whose URL (`primary`) memory had nothing for, or
/// whose variant (`variant`) memory lacked: the stored response, a `Vary` miss, or nothing.
pub(crate) async fn lookup(
    cache: &Cache,
    config: &Config,
    primary: &str,
    variant: Option<&str>,
    request: &HeaderMap,
) -> super::lookup::Found {
    use super::lookup::Found;
    cache.listen_for_invalidations();
    let since = cache.inner().log().current();
    let key = match variant {
        Some(key) => key.to_owned(),
        None => {
            let Some(entry) = read(cache, config, (primary, primary), since).await else {
                return Found::Nothing;
            };
            let Some(record) = entry.value.downcast_ref::<Variants>() else {
                let variant = None;
                return Found::Stored { variant, entry };
            };
            variant_key(primary, &secondary_key(&record.names, request))
        }
    };
    match read(cache, config, (primary, &key), since).await {
        Some(entry) if entry.value.is::<CachedResponse>() => Found::Stored {
            variant: Some(key),
            entry,
        },
        _ => Found::VaryMiss(key),
    }
}

/// Drops the response stored under `key` here and in the shared tier (the origin no longer
/// lets it be kept, or a newer variant displaced it); the shared delete runs off the caller's
/// path.
pub(crate) fn forget(cache: &Cache, key: &str) {
    cache.inner().memory().remove(key);
    if cache.remote().is_none() {
        return;
    }
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        let (cache, key) = (cache.clone(), key.to_owned());
        runtime.spawn(async move {
            if let Some(remote) = cache.remote() {
                remote.store.delete(&key).await;
            }
        });
    }
}

/// For the fuzz target: decodes `data` as bytes read under a response's key and under a
/// variant's key; with a first byte of 0x80 or more (a real entry's is 1), the rest is the
/// payload behind a valid header (so the fuzzer reaches the MessagePack decoding and the
/// gate). Whether either decoded.
#[cfg(any(fuzzing, test))]
pub(crate) fn fuzz_decode(data: &[u8]) -> bool {
    static CONFIG: std::sync::OnceLock<Arc<Config>> = std::sync::OnceLock::new();
    let config = CONFIG.get_or_init(|| {
        let cache = Cache::builder()
            .build()
            .expect("the default configuration is valid");
        Arc::clone(&crate::CacheLayer::new(cache).config)
    });
    let framed;
    let bytes = match data.split_first() {
        Some((first, payload)) if *first >= 0x80 => {
            let now = codec::now_millis();
            let at = WallDeadlines {
                fresh_until: now + 1000,
                stale_until: now + 2000,
                expires_at: now + 3000,
            };
            let format = if first % 2 == 0 {
                RESPONSE_FORMAT
            } else {
                VARIANTS_FORMAT
            };
            // A valid header around a one-byte payload (0), then the fuzzer's payload instead.
            let mut header = codec::encode_as(format, &0u8, at, &[]).unwrap_or_default();
            header.pop();
            header.extend_from_slice(payload);
            framed = header;
            &framed[..]
        }
        _ => data,
    };
    let primary = decode(config, ("k", "k"), bytes).is_ok();
    primary | decode(config, ("k", "k\0accept=x\n"), bytes).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::rules::cache_control::RequestDirectives;
    use crate::http::stored::Usability;
    use crate::CacheLayer;

    fn config() -> Arc<Config> {
        let cache = Cache::builder().build().unwrap();
        Arc::clone(&CacheLayer::new(cache).config)
    }

    fn deadlines(fresh: u64, stale: u64) -> WallDeadlines {
        let now = codec::now_millis();
        WallDeadlines {
            fresh_until: now + fresh,
            stale_until: now + stale,
            expires_at: now + stale + 1000,
        }
    }

    /// A payload as another instance (or anyone with access to Redis) might write it.
    fn wire(fields: &[(&str, &[u8])], arrived: u64, lifetime: u64) -> ResponseWire<'static> {
        let fields = fields
            .iter()
            .map(|(n, v)| (Cow::Owned((*n).to_owned()), Raw(Cow::Owned(v.to_vec()))))
            .collect();
        let body = Raw(Cow::Owned(b"hello".to_vec()));
        let secondary = Cow::Owned(String::new());
        let tags = vec![Cow::Owned("t".to_owned())];
        let swr = 60_000;
        (
            200,
            fields,
            body,
            arrived,
            0,
            lifetime,
            swr,
            0,
            vec![],
            secondary,
            tags,
        )
    }

    fn decoded(wire: &ResponseWire<'static>, at: WallDeadlines) -> Result<Entry, &'static str> {
        let bytes = codec::encode_as(RESPONSE_FORMAT, wire, at, &["t".into()]).unwrap();
        decode(&config(), ("k", "k"), &bytes)
    }

    #[test]
    fn a_response_round_trips_with_its_validators_tags_and_age() {
        let arrived = codec::now_millis() - 3_000;
        let fields: &[(&str, &[u8])] = &[
            ("cache-control", b"max-age=60"),
            ("etag", b"\"v1\""),
            ("x-opaque", b"caf\xe9"),
        ];
        let entry = decoded(&wire(fields, arrived, 60_000), deadlines(57_000, 117_000)).unwrap();
        let response = entry.value.downcast_ref::<CachedResponse>().unwrap();
        assert_eq!(response.status, StatusCode::OK);
        assert_eq!(&response.body[..], b"hello");
        assert_eq!(response.headers["x-opaque"].as_bytes(), b"caf\xe9");
        assert_eq!(response.etag.as_ref().unwrap().tag, "v1");
        assert_eq!(response.tags, vec!["t".to_owned()]);
        let age = response.age(clock::now()).as_secs();
        assert!((2..=4).contains(&age), "age {age}");
        let bytes = encode_response(response, deadlines(1, 2), &[]).unwrap();
        let again = decode(&config(), ("k", "k"), &bytes).unwrap();
        let again = again.value.downcast_ref::<CachedResponse>().unwrap();
        assert_eq!(again.headers, response.headers);
    }

    #[test]
    fn what_the_gate_refuses_is_refused_when_read_back() {
        let now = codec::now_millis();
        for field in [
            ("set-cookie", &b"session=alice"[..]),
            ("cache-control", b"private, max-age=60"),
            ("cache-control", b"no-store"),
            ("vary", b"*"),
        ] {
            let fields: &[(&str, &[u8])] = &[("cache-control", b"max-age=60"), field];
            let refused = decoded(&wire(fields, now, 60_000), deadlines(60_000, 60_000));
            assert_eq!(refused.err(), Some("refused"), "{field:?}");
        }
    }

    #[test]
    fn hostile_payloads_are_misses_not_panics() {
        let now = codec::now_millis();
        let fresh: &[(&str, &[u8])] = &[("cache-control", b"max-age=60")];
        let at = deadlines(60_000, 60_000);
        let mut bad_status = wire(fresh, now, 60_000);
        bad_status.0 = 1000;
        let many: Vec<(String, Vec<u8>)> = (0..MAX_FIELDS + 1)
            .map(|i| (format!("x-{i}"), b"1".to_vec()))
            .collect();
        let many: Vec<(&str, &[u8])> = many.iter().map(|(n, v)| (n.as_str(), &v[..])).collect();
        for hostile in [
            bad_status,
            wire(&[("bad name", b"1")], now, 60_000),
            wire(&[("x-bad", b"line\nbreak")], now, 60_000),
            wire(&many, now, 60_000),
        ] {
            assert_eq!(decoded(&hostile, at).err(), Some("refused"));
        }
        // Numbers saturate: an arrival far in the past or future, an endless lifetime.
        for (arrived, lifetime) in [(u64::MAX, u64::MAX), (0, u64::MAX), (now, u64::MAX)] {
            if let Ok(entry) = decoded(&wire(fresh, arrived, lifetime), at) {
                let response = entry.value.downcast_ref::<CachedResponse>().unwrap();
                let age = response.age(clock::now());
                let _ = response.usability(age, &RequestDirectives::default());
            }
        }
        // A response that does not vary, read under a variant's key, is not served there.
        let plain = codec::encode_as(RESPONSE_FORMAT, &wire(fresh, now, 1), at, &[]).unwrap();
        assert!(decode(&config(), ("k", "k"), &plain).is_ok());
        assert_eq!(
            decode(&config(), ("k", "k\0a=1\n"), &plain).err(),
            Some("stored under another key")
        );
        let variants = codec::encode_as(VARIANTS_FORMAT, &(vec!["a b"],), at, &[]).unwrap();
        assert!(decode(&config(), ("k", "k"), &variants).is_err());
        let variants = codec::encode_as(VARIANTS_FORMAT, &(vec!["a"],), at, &[]).unwrap();
        assert!(decode(&config(), ("k", "k"), &variants).is_ok());
        assert_eq!(
            decode(&config(), ("k", "k\0a=1\n"), &variants).err(),
            Some("stored under another key")
        );
    }

    #[test]
    fn every_truncation_and_corrupt_byte_is_an_error_or_a_response_never_a_panic() {
        let fields: &[(&str, &[u8])] = &[("cache-control", b"max-age=60"), ("etag", b"\"a\"")];
        let at = deadlines(60_000, 60_000);
        let bytes = codec::encode_as(RESPONSE_FORMAT, &wire(fields, 1, 1), at, &[]).unwrap();
        for cut in 0..bytes.len() {
            assert!(
                decode(&config(), ("k", "k"), &bytes[..cut]).is_err(),
                "cut at {cut}"
            );
        }
        for at in 0..bytes.len() {
            for flip in [0x01, 0x80, 0xff] {
                let mut corrupt = bytes.clone();
                corrupt[at] ^= flip;
                let _ = fuzz_decode(&corrupt);
            }
        }
        assert!(fuzz_decode(&bytes));
        assert!(!fuzz_decode(b"\x01garbage"));
        // The payload alone, behind the header the target adds.
        let payload = &bytes[35..];
        assert!(fuzz_decode(&[&[0x80][..], payload].concat()));
        assert!(!fuzz_decode(&[&[0x81][..], payload].concat()));
    }

    #[test]
    fn the_header_deadlines_cap_freshness() {
        let now = codec::now_millis();
        let fresh: &[(&str, &[u8])] = &[("cache-control", b"max-age=600")];
        // Stored fresh for ten minutes, marked stale now (a soft purge), servable for 2 more.
        let at = WallDeadlines {
            fresh_until: now,
            stale_until: now + 120_000,
            expires_at: now + 180_000,
        };
        let entry = decoded(&wire(fresh, now, 600_000), at).unwrap();
        let response = entry.value.downcast_ref::<CachedResponse>().unwrap();
        let usable = |entry: &Entry, response: &CachedResponse| {
            let now = clock::now();
            response.usability_in(entry.age(now), response.age(now), &Default::default())
        };
        assert_eq!(usable(&entry, response), Usability::StaleWhileRevalidate);
        // Later deadlines than the response's own change nothing.
        let late = deadlines(900_000, 900_000);
        let entry = decoded(&wire(fresh, now, 600_000), late).unwrap();
        let response = entry.value.downcast_ref::<CachedResponse>().unwrap();
        assert_eq!(response.lifetime, Duration::from_secs(600));
        assert_eq!(usable(&entry, response), Usability::Fresh);
    }
}
