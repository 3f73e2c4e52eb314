use super::*;
use http::header::{AUTHORIZATION, CACHE_CONTROL};
use http::HeaderValue;

fn map(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (n, v) in pairs {
        h.append(
            HeaderName::from_bytes(n.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    h
}

fn http(request: &HeaderMap, response: &[(&str, &str)]) -> Result<HeaderMap, NotStorable> {
    let headers = map(response);
    let targeted = TargetedFields::default();
    let cc = targeted.directives(&headers);
    let exchange = Exchange::Http {
        method: &Method::GET,
        request,
        status: StatusCode::OK,
        has_default_ttl: false,
        targeted: &targeted,
        keep_tags: false,
    };
    admit(exchange, headers, &cc).map(Admitted::into_inner)
}

#[test]
fn connection_fields_cookies_and_tags_are_never_stored() {
    let admitted = http(
        &HeaderMap::new(),
        &[
            ("cache-control", "max-age=5"),
            ("connection", "x-a, X-B"),
            ("x-a", "1"),
            ("x-b", "2"),
            ("keep-alive", "timeout=5"),
            ("cache-tag", "t"),
            ("x-kept", "3"),
        ],
    )
    .unwrap();
    assert!(is_admissible(&admitted));
    assert_eq!(admitted.len(), 2, "{admitted:?}");
    assert!(admitted.contains_key("x-kept"));
}

#[test]
fn tag_fields_are_stored_only_when_kept() {
    let tagged = map(&[
        ("cache-control", "max-age=5"),
        ("cache-tag", "a"),
        ("surrogate-key", "b c"),
    ]);
    let admitted_with = |keep_tags: bool| {
        let targeted = TargetedFields::default();
        let exchange = Exchange::Http {
            method: &Method::GET,
            request: &HeaderMap::new(),
            status: StatusCode::OK,
            has_default_ttl: false,
            targeted: &targeted,
            keep_tags,
        };
        let cc = targeted.directives(&tagged);
        admit(exchange, tagged.clone(), &cc).unwrap().into_inner()
    };
    let stripped = admitted_with(false);
    assert!(is_admissible(&stripped));
    assert!(!stripped.contains_key("surrogate-key"));
    assert_eq!(admitted_with(true), tagged);
    let grpc = |keep_tags| {
        let cc = ResponseDirectives::parse(&tagged);
        admit(Exchange::GrpcCall { keep_tags }, tagged.clone(), &cc)
            .unwrap()
            .into_inner()
    };
    assert!(!grpc(false).contains_key("surrogate-key"));
    assert_eq!(grpc(true), tagged);
}

#[test]
fn the_rules_of_a_first_store_apply_to_every_update() {
    let none = HeaderMap::new();
    let cc = [("cache-control", "max-age=5")];
    assert_eq!(
        http(&none, &[cc[0], ("set-cookie", "sid=a")]),
        Err(NotStorable::SetCookie)
    );
    assert_eq!(
        http(&none, &[("cache-control", "no-store")]),
        Err(NotStorable::NoStore)
    );
    assert_eq!(
        http(&none, &[("cache-control", "private, max-age=9")]),
        Err(NotStorable::Private)
    );
    assert_eq!(
        http(&none, &[cc[0], ("vary", "accept, a b")]),
        Err(NotStorable::VaryInvalid),
        "a malformed Vary member is not 'no Vary'"
    );
    let cookie = map(&[("cookie", "sid=a")]);
    assert_eq!(http(&cookie, &cc), Err(NotStorable::Cookie));
    assert!(http(&cookie, &[cc[0], ("vary", "Cookie")]).is_ok());
    assert_eq!(
        http(
            &cookie,
            &[cc[0], ("vary", "Cookie"), ("connection", "close, Vary")]
        ),
        Err(NotStorable::VaryInvalid),
        "Connection must not strip the Vary that allowed a cookie request's response"
    );
    assert_eq!(
        http(
            &none,
            &[cc[0], ("content-type", "Text/Event-Stream; charset=utf-8")]
        ),
        Err(NotStorable::EventStream)
    );
    let auth = map(&[(AUTHORIZATION.as_str(), "Bearer x")]);
    assert_eq!(http(&auth, &cc), Err(NotStorable::Authorization));
    let grpc = |pairs: &[(&str, &str)]| {
        let headers = map(pairs);
        let cc = ResponseDirectives::parse(&headers);
        admit(Exchange::GrpcCall { keep_tags: false }, headers, &cc).map(|_| ())
    };
    assert_eq!(grpc(&[("set-cookie", "a=b")]), Err(NotStorable::SetCookie));
    assert_eq!(
        grpc(&[(CACHE_CONTROL.as_str(), "no-store")]),
        Err(NotStorable::NoStore)
    );
    assert_eq!(grpc(&[("content-type", "application/grpc")]), Ok(()));
}

#[test]
fn a_targeted_field_decides_storability_instead_of_cache_control() {
    let none = HeaderMap::new();
    let public = ("cache-control", "public, max-age=60");
    assert_eq!(
        http(&none, &[public, ("cdn-cache-control", "private")]),
        Err(NotStorable::Private)
    );
    assert_eq!(
        http(&none, &[public, ("cdn-cache-control", "no-store")]),
        Err(NotStorable::NoStore)
    );
    let cookie = map(&[("cookie", "sid=a")]);
    assert_eq!(
        http(&cookie, &[public, ("cdn-cache-control", "max-age=60")]),
        Err(NotStorable::Cookie),
        "Cache-Control's `public` does not count once a targeted field rules"
    );
    assert!(http(
        &none,
        &[
            ("cache-control", "no-store"),
            ("cdn-cache-control", "max-age=60")
        ]
    )
    .is_ok());
    // A targeted field replaces `Expires` too.
    let later =
        httpdate::fmt_http_date(std::time::SystemTime::now() + std::time::Duration::from_secs(600));
    assert_eq!(
        http(
            &none,
            &[
                ("cdn-cache-control", "must-revalidate"),
                ("expires", &later)
            ]
        ),
        Err(NotStorable::NoFreshness)
    );
    // An invalid one is ignored.
    assert!(http(&none, &[public, ("cdn-cache-control", "Private")]).is_ok());
}
