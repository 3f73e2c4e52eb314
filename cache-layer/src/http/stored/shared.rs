//! The shared form of stored responses: the bytes written to Redis and read back. On a cache
//! with a shared tier, a stored response and a URL's `Vary` record are written to Redis beside
//! the memory copy, under the same keys and after the same storage gate, so that every
//! instance finds them; an instance that misses in memory reads Redis before it asks the inner
//! service (`flow/lookup.rs`). The bytes are a stable contract (crate docs, "Redis layout"):
//! the codec's header (format, a format version in the fingerprint's place, wall-clock
//! deadlines, tags), then a MessagePack array.
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

use super::response::CachedResponse;
use super::variants::Variants;
use crate::engine::clock;
use crate::engine::entry::{Deadlines, Entry};
use crate::engine::pipeline;
use crate::http::config::Config;
use crate::http::rules::gate::{admit, Exchange};
use crate::http::rules::key::variant_key;
use crate::store::codec::{self, unix_millis, WallDeadlines};

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
pub(crate) fn decode(
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

// The encoding is MessagePack only with the `redis` feature (the shared tier's).
#[cfg(all(test, feature = "redis"))]
mod tests;
