use super::*;
use http::HeaderValue;

fn key(uri: &str, host: Option<&str>) -> Option<String> {
    let mut headers = HeaderMap::new();
    if let Some(host) = host {
        headers.insert(HOST, HeaderValue::from_str(host).unwrap());
    }
    primary_key(&uri.parse().unwrap(), &headers, false)
}

#[test]
fn keys_name_scheme_authority_path_and_the_query_as_sent() {
    let a = key("/p?b=2&a=1", Some("Example.COM")).unwrap();
    assert_eq!(a, "GET http://example.com/p?b=2&a=1");
    assert_ne!(key("/p?a=1&b=2", Some("example.com")).unwrap(), a);
    let mut headers = HeaderMap::new();
    headers.insert(HOST, HeaderValue::from_static("example.com"));
    let sorted = primary_key(&"/p?b=2&a=1".parse().unwrap(), &headers, true);
    assert_eq!(sorted.unwrap(), "GET http://example.com/p?a=1&b=2");
    // HTTP/2 (and absolute-form): the authority in the URI, no Host.
    assert_eq!(key("http://example.com/p?b=2&a=1", None).unwrap(), a);
    assert_eq!(
        key("https://example.com/p", None).unwrap(),
        "GET https://example.com/p"
    );
    assert_ne!(
        key("/p?", Some("example.com")),
        key("/p", Some("example.com"))
    );
    assert_eq!(
        key("/p", Some("[::1]:8080")).unwrap(),
        "GET http://[::1]:8080/p"
    );
}

#[test]
fn percent_encodings_of_unreserved_characters_and_hex_case_share_a_key() {
    let host = Some("example.com");
    let seven = key("/products/7", host).unwrap();
    assert_eq!(key("/products/%37", host).unwrap(), seven);
    let tilde = key("/~a?q=~", host).unwrap();
    assert_eq!(tilde, "GET http://example.com/~a?q=~");
    assert_eq!(key("/%7ea?q=%7E", host).unwrap(), tilde);
    assert_eq!(key("/%7Ea?q=%7e", host).unwrap(), tilde);
    assert_eq!(
        key("/%41%2d%2E%5f%7A%30", host).unwrap(),
        "GET http://example.com/A-._z0"
    );
    // Other encodings keep their meaning, hex in upper case.
    let slash = key("/a%2fb?x=%3d%26", host).unwrap();
    assert_eq!(slash, "GET http://example.com/a%2Fb?x=%3D%26");
    assert_eq!(key("/a%2Fb?x=%3D%26", host).unwrap(), slash);
    assert_ne!(key("/a/b?x=%3D%26", host).unwrap(), slash);
    assert_ne!(key("/a%2Fb?x==&", host).unwrap(), slash);
    assert_ne!(key("/a%3Fb", host), key("/a?b", host));
    // Sorted queries sort what they would be keyed as.
    let mut headers = HeaderMap::new();
    headers.insert(HOST, HeaderValue::from_static("example.com"));
    let sorted = |uri: &str| primary_key(&uri.parse().unwrap(), &headers, true).unwrap();
    assert_eq!(sorted("/p?%61=1&a=0"), sorted("/p?a=1&a=0"));
    assert_eq!(sorted("/p?%61=1&a=0"), "GET http://example.com/p?a=0&a=1");
}

#[test]
fn invalid_percent_sequences_are_kept_as_sent() {
    for text in ["%", "/a%", "/a%4", "/a%zz%37", "/%%37e", "/%4%31", "/%g1"] {
        let mut out = String::new();
        push_normalised(&mut out, text);
        assert_eq!(out, text);
    }
    let mut out = String::from("kept ");
    push_normalised(&mut out, "/%37%");
    assert_eq!(out, "kept /%37%", "only what was appended is replaced");
}

/// Every byte `text` stands for, each percent-encoding decoded (`None` when one is invalid).
fn decoded(text: &str) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        if bytes[at] == b'%' {
            out.push(decode_hex(bytes.get(at + 1..at + 3)?)?);
            at += 3;
        } else {
            out.push(bytes[at]);
            at += 1;
        }
    }
    Some(out)
}

#[test]
fn normalising_is_idempotent_keeps_meaning_and_never_panics() {
    const PIECES: &[&str] = &[
        "%", "%2", "%2f", "%2F", "%37", "%7e", "%7E", "%41", "%e9", "%C3%A9", "%25", "a", "F", "7",
        "~", "/", "?", "&", "=", "é", "g", "%%", "%zz",
    ];
    let mut rng = fastrand::Rng::with_seed(24);
    for _ in 0..20_000 {
        let text: String = (0..rng.usize(0..8))
            .map(|_| PIECES[rng.usize(..PIECES.len())])
            .collect();
        let mut once = String::new();
        push_normalised(&mut once, &text);
        let mut twice = String::new();
        push_normalised(&mut twice, &once);
        assert_eq!(twice, once, "not idempotent on {text:?}");
        match decoded(&text) {
            // The same bytes, and the same ones encoded: only unreserved ones decoded.
            Some(bytes) => {
                assert_eq!(decoded(&once), Some(bytes), "{text:?} -> {once:?}");
                let encoded = |s: &str| {
                    let (mut at, mut out) = (0, Vec::new());
                    while let Some(found) = s[at..].find('%') {
                        let byte = decode_hex(&s.as_bytes()[at + found + 1..][..2]).unwrap();
                        if !is_unreserved(byte) {
                            out.push(byte);
                        }
                        at += found + 3;
                    }
                    out
                };
                assert_eq!(encoded(&once), encoded(&text), "{text:?} -> {once:?}");
                let triplets: Vec<&str> = once.split('%').skip(1).collect();
                assert_eq!(encoded(&once).len(), triplets.len(), "{once:?}");
                assert!(
                    triplets
                        .iter()
                        .all(|t| !t[..2].bytes().any(|b| b.is_ascii_lowercase())),
                    "{once:?}"
                );
            }
            None => assert_eq!(once, text),
        }
    }
}

#[test]
fn invalid_authorities_are_never_keyed() {
    for host in [
        "example.com/admin",
        "example.com?x",
        "example.com#x",
        "user@example.com",
        "example.com:80:80",
        "example.com:x",
        "exa mple.com",
        "",
        ":80",
        "[::1",
        "[]",
        "[::1]x",
        "%zz.example",
        "example.com\\",
    ] {
        assert_eq!(key("/x", Some(host)), None, "{host:?}");
    }
    assert_eq!(key("/x", None), None, "no authority at all");
    assert_eq!(key("http://user@example.com/x", None), None);
    let mut two = HeaderMap::new();
    two.append(HOST, HeaderValue::from_static("a.example"));
    two.append(HOST, HeaderValue::from_static("b.example"));
    assert_eq!(primary_key(&"/x".parse().unwrap(), &two, false), None);
    for host in [
        "example.com",
        "example.com:",
        "127.0.0.1:65535",
        "a-b_c~d.%41",
    ] {
        assert!(key("/x", Some(host)).is_some(), "{host:?}");
    }
}

#[test]
fn no_two_requests_share_a_key() {
    // The Host-with-a-path forgery of issue 12, and its relatives.
    let forged = key("/x", Some("example.com/admin"));
    let real = key("/admin/x", Some("example.com"));
    assert_ne!(forged, real);
    assert_ne!(
        key("/x", Some("a.example")),
        key("/x", Some("a.example:80"))
    );
}

#[test]
fn vary_names_and_secondary_keys() {
    use crate::http::rules::vary::vary_names;
    use http::header::VARY;

    let mut response = HeaderMap::new();
    response.append(VARY, HeaderValue::from_static("Accept-Language, accept"));
    response.append(VARY, HeaderValue::from_static("ACCEPT"));
    let names = vary_names(&response).unwrap();
    assert_eq!(names.len(), 2);
    let mut request = HeaderMap::new();
    request.insert("accept", HeaderValue::from_static("text/html , */*"));
    let key = secondary_key(&names, &request);
    assert_eq!(key, "accept-language!\naccept=text/html,*/*\n");
    response.append(VARY, HeaderValue::from_static("x, *"));
    assert!(vary_names(&response).is_none());
}

#[test]
fn credentials_never_appear_in_secondary_keys_and_values_never_collide() {
    let names = [COOKIE, AUTHORIZATION, HeaderName::from_static("accept")];
    let mut request = HeaderMap::new();
    request.insert(COOKIE, HeaderValue::from_static("sid=alice-secret"));
    request.insert(AUTHORIZATION, HeaderValue::from_static("Bearer tok3n"));
    let key = secondary_key(&names, &request);
    assert!(
        !key.contains("alice-secret") && !key.contains("tok3n"),
        "{key}"
    );
    request.insert(COOKIE, HeaderValue::from_static("sid=bob"));
    assert_ne!(secondary_key(&names, &request), key);
    let accept = |bytes: &[u8]| {
        let mut request = HeaderMap::new();
        request.insert("accept", HeaderValue::from_bytes(bytes).unwrap());
        secondary_key(&names[2..], &request)
    };
    assert_ne!(accept(b"\xff"), accept(b"\xfe"));
    assert_ne!(accept(b"%FF"), accept(b"\xff"));
}
