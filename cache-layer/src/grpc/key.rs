//! The key of a cached gRPC call: `grpc <validated authority><path> <hex SHA-256>` of the decoded
//! request message, the accepted response encodings and the keyed metadata. Hashed, so that
//! tokens in the metadata never appear in keys (logs, metrics) and keys stay short.

use std::fmt::Write as _;

use http::request::Parts;
use http::{HeaderMap, HeaderName};
use sha2::{Digest as _, Sha256};

use crate::http::for_grpc::{authority_of, push_lowercase};

/// `grpc-accept-encoding`: the response encodings the client decodes.
const GRPC_ACCEPT_ENCODING: &str = "grpc-accept-encoding";

/// The key of a call to `parts` with the decoded `message`, keyed on the `metadata` names;
/// `None` when the call's authority is missing or invalid (it is never keyed).
pub(crate) fn call_key(parts: &Parts, metadata: &[HeaderName], message: &[u8]) -> Option<String> {
    // Validated, so that no authority can carry a path into another method's key.
    let authority = authority_of(&parts.uri, &parts.headers)?;
    let mut hash = Sha256::new();
    // A stored compressed response must only be replayed to clients that can decode it: the
    // accepted encodings are part of the key, like a `Vary: grpc-accept-encoding`.
    let mut accepted = accepted_encodings(&parts.headers);
    accepted.sort_unstable();
    accepted.dedup();
    for encoding in accepted {
        field(&mut hash, encoding.as_bytes());
    }
    hash.update([0xff]);
    for name in metadata {
        let mut values = parts.headers.get_all(name).iter().peekable();
        // Absent and present-but-empty are different keys.
        hash.update([u8::from(values.peek().is_some())]);
        for value in values {
            field(&mut hash, value.as_bytes());
        }
        hash.update([0xff]);
    }
    field(&mut hash, message);
    let path = parts.uri.path();
    let mut key = String::with_capacity(6 + authority.len() + path.len() + 64);
    key.push_str("grpc ");
    push_lowercase(&mut key, authority);
    key.push_str(path);
    key.push(' ');
    let _ = write!(key, "{:x}", hash.finalize());
    Some(key)
}

/// Length-prefixed, so that no two lists of fields hash alike.
fn field(hash: &mut Sha256, bytes: &[u8]) {
    hash.update((bytes.len() as u64).to_be_bytes());
    hash.update(bytes);
}

/// The client's accepted response encodings, lowercased, without `identity` (always accepted).
fn accepted_encodings(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(GRPC_ACCEPT_ENCODING)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .map(|e| String::from_utf8_lossy(e.trim_ascii()).to_ascii_lowercase())
        .filter(|e| !e.is_empty() && e != "identity")
        .collect()
}

/// Whether a client that sent `request` headers decodes a response sent with `response`
/// headers (its `grpc-encoding`).
pub(crate) fn accepts_response(request: &HeaderMap, response: &HeaderMap) -> bool {
    match response.get("grpc-encoding").map(|v| v.as_bytes()) {
        None | Some(b"identity") => true,
        Some(encoding) => accepted_encodings(request)
            .iter()
            .any(|e| e.as_bytes().eq_ignore_ascii_case(encoding)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderValue, Request};

    fn parts(uri: &str, headers: &[(&'static str, &'static str)]) -> Parts {
        let mut request = Request::post(uri).body(()).unwrap();
        for (name, value) in headers {
            request
                .headers_mut()
                .append(*name, HeaderValue::from_static(value));
        }
        request.into_parts().0
    }

    #[test]
    fn message_authority_path_and_keyed_metadata_split_keys() {
        let tenant = [HeaderName::from_static("x-tenant")];
        let base = call_key(&parts("http://Host:1/p.S/Get", &[]), &tenant, b"m").unwrap();
        assert!(base.starts_with("grpc host:1/p.S/Get "), "{base}");
        assert_eq!(base.len(), "grpc host:1/p.S/Get ".len() + 64);
        let same = call_key(
            &parts(
                "http://host:1/p.S/Get",
                &[("grpc-timeout", "5S"), ("x-other", "1")],
            ),
            &tenant,
            b"m",
        )
        .unwrap();
        assert_eq!(
            base, same,
            "unkeyed metadata and the deadline are not in the key"
        );
        for other in [
            call_key(&parts("http://host:1/p.S/Get", &[]), &tenant, b"n").unwrap(),
            call_key(&parts("http://host:2/p.S/Get", &[]), &tenant, b"m").unwrap(),
            call_key(&parts("http://host:1/p.S/Put", &[]), &tenant, b"m").unwrap(),
            call_key(
                &parts("http://host:1/p.S/Get", &[("x-tenant", "")]),
                &tenant,
                b"m",
            )
            .unwrap(),
            call_key(
                &parts("http://host:1/p.S/Get", &[("x-tenant", "a")]),
                &tenant,
                b"m",
            )
            .unwrap(),
            call_key(
                &parts("http://host:1/p.S/Get", &[("grpc-accept-encoding", "gzip")]),
                &tenant,
                b"m",
            )
            .unwrap(),
        ] {
            assert_ne!(base, other);
        }
    }

    #[test]
    fn calls_without_a_valid_authority_are_never_keyed() {
        assert_eq!(call_key(&parts("/p.S/Get", &[]), &[], b"m"), None);
        let forged = parts("/Get", &[("host", "host/p.S")]);
        assert_eq!(call_key(&forged, &[], b"m"), None);
        assert!(call_key(&parts("/p.S/Get", &[("host", "host")]), &[], b"m").is_some());
    }

    #[test]
    fn accepted_encodings_are_a_set() {
        let a = call_key(
            &parts(
                "http://h/p.S/Get",
                &[("grpc-accept-encoding", "gzip,deflate")],
            ),
            &[],
            b"m",
        )
        .unwrap();
        let b = call_key(
            &parts(
                "http://h/p.S/Get",
                &[("grpc-accept-encoding", "identity, DEFLATE, gzip")],
            ),
            &[],
            b"m",
        )
        .unwrap();
        assert_eq!(a, b);
        let request = parts("http://h/p.S/Get", &[("grpc-accept-encoding", "gzip")]).headers;
        let mut gzip = HeaderMap::new();
        gzip.insert("grpc-encoding", HeaderValue::from_static("gzip"));
        assert!(accepts_response(&request, &gzip));
        assert!(!accepts_response(&HeaderMap::new(), &gzip));
        assert!(accepts_response(&HeaderMap::new(), &HeaderMap::new()));
    }
}
