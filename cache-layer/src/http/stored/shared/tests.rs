//! The shared form read back: round trips, and hostile bytes as misses.

use super::*;
use crate::http::__fuzz::shared_entry as fuzz_decode;
use crate::http::rules::cache_control::RequestDirectives;
use crate::http::stored::Usability;
use crate::{Cache, CacheLayer};

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
