//! Reaching Redis: ACL credentials from the URL, TLS with a private CA, a bad URL.

use cache_layer::Cache;

use crate::support::redis_server::RedisServer;
use crate::support::wait::eventually;
use crate::{Db, Instance};

#[tokio::test]
async fn acl_credentials_from_the_url_and_every_key_under_the_prefix() {
    // The ACL user may only touch keys under "app:": proof that every key and channel the
    // cache uses lives under its prefix.
    let server = RedisServer::start_with(&[
        "--requirepass",
        "admin-secret",
        "--user",
        "app",
        "on",
        ">app-password",
        "~app:*",
        "&*",
        "+@all",
    ]);
    let db = Db::default();
    let cache = Cache::builder()
        .tiered(server.url_as("app", "app-password"))
        .key_prefix("app:")
        .build()
        .expect("valid configuration");
    let instance = Instance {
        cache,
        db: db.clone(),
    };
    instance.user(1).await.unwrap();
    instance.rename(1, "Ada").await.unwrap();
    assert_eq!(instance.user(1).await.unwrap().name, "Ada");
    instance.user(1).await.unwrap();
    assert_eq!(db.queries(), 2);
    let stats = instance.cache.stats();
    assert_eq!(
        stats.store_errors, 0,
        "authenticated, and no key outside the prefix"
    );

    let wrong = Instance {
        cache: Cache::builder()
            .redis(server.url_as("app", "wrong"))
            .key_prefix("app:")
            .build()
            .expect("valid configuration"),
        db: db.clone(),
    };
    assert!(wrong.user(5).await.is_ok(), "bad credentials fail open");
    assert!(wrong.cache.stats().store_errors > 0);
}

#[tokio::test]
async fn tls_with_a_private_ca() {
    let dir = std::env::temp_dir().join(format!("cache-layer-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // A private CA and a server certificate it signs (webpki refuses a CA as end entity).
    let path = |name: &str| dir.join(name).to_str().unwrap().to_owned();
    std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    let openssl = |args: &[&str]| {
        let status = std::process::Command::new("openssl")
            .args(args)
            .stderr(std::process::Stdio::null())
            .status()
            .expect("openssl (Debian: apt-get install -y openssl)");
        assert!(status.success(), "openssl {args:?}");
    };
    let (ca, ca_key) = (path("ca.pem"), path("ca.key"));
    let (cert, key, csr) = (path("server.pem"), path("server.key"), path("server.csr"));
    openssl(
        &[
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ]
        .into_iter()
        .chain([
            "-subj",
            "/CN=cache-layer test CA",
            "-keyout",
            &ca_key,
            "-out",
            &ca,
        ])
        .collect::<Vec<_>>(),
    );
    openssl(
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=localhost",
        ]
        .into_iter()
        .chain(["-keyout", &key, "-out", &csr])
        .collect::<Vec<_>>(),
    );
    openssl(
        &[
            "x509", "-req", "-days", "1", "-in", &csr, "-CA", &ca, "-CAkey", &ca_key,
        ]
        .into_iter()
        .chain([
            "-CAcreateserial",
            "-out",
            &cert,
            "-extfile",
            &path("san.ext"),
        ])
        .collect::<Vec<_>>(),
    );
    let tls_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let server = RedisServer::start_with(&[
        "--tls-port",
        &tls_port.to_string(),
        "--tls-cert-file",
        &cert,
        "--tls-key-file",
        &key,
        "--tls-auth-clients",
        "no",
    ]);
    let db = Db::default();
    let instance = Instance {
        cache: Cache::builder()
            .redis(format!("rediss://127.0.0.1:{tls_port}/"))
            .redis_root_certificate(std::fs::read(&ca).unwrap())
            .key_prefix("tls:")
            .build()
            .expect("valid configuration"),
        db: db.clone(),
    };
    instance.user(1).await.unwrap();
    // The load's write is off the caller's path: wait until it reached Redis over TLS.
    let raw = server.raw().await;
    eventually("the entry written over TLS", async || {
        let stored: Option<Vec<u8>> = redis::cmd("GET")
            .arg("tls:v:user:1")
            .query_async(&mut raw.clone())
            .await
            .unwrap();
        stored.is_some()
    })
    .await;
    instance.user(1).await.unwrap();
    assert_eq!(db.queries(), 1);
    assert_eq!(instance.cache.stats().shared_hits, 1, "read back over TLS");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_bad_redis_url_is_a_build_error() {
    let error = Cache::builder().redis("http://nope").build().unwrap_err();
    assert!(error.to_string().contains("invalid Redis URL"), "{error}");
}
