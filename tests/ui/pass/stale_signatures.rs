//! `stale` keeps every signature as written: the background refresh calls the body with an
//! owned receiver and owned arguments.
use std::sync::Arc;

use cache_layer::{cached, KeyArg};

#[derive(Debug)]
struct ParseError;

impl From<std::num::ParseIntError> for ParseError {
    fn from(_: std::num::ParseIntError) -> Self {
        ParseError
    }
}

trait Unit {
    const UNIT: &'static str;
}

struct Metres;

impl Unit for Metres {
    const UNIT: &'static str = "m";
}

#[derive(Clone)]
struct Repo {
    tenant: u64,
}

impl Repo {
    const PREFIX: &'static str = "repo";

    // Generic parameters that only the body uses (passed on explicitly), a const generic,
    // `impl Trait`, `mut` and `&'static` arguments, `?` and `return`.
    #[cached(ttl = "1m", stale = "1m", key = "len:<self.tenant>:<text>:<extra>:<count>:<fixed>")]
    #[allow(clippy::needless_return)]
    async fn length<U: Unit, const N: usize>(
        &self,
        text: &str,
        extra: impl KeyArg + Into<u64> + Send + 'static,
        mut count: u32,
        fixed: &'static str,
    ) -> Result<String, ParseError> {
        if text.is_empty() {
            return Ok(String::new());
        }
        let n: u64 = text.parse()?;
        count += 1;
        let (tenant, extra) = (self.tenant, extra.into());
        Ok(format!("{}{}{fixed}{tenant}{extra}{count}", n * N as u64, U::UNIT))
    }

    // An owned receiver is moved into the refresh; `&Arc<Self>` is cloned.
    #[cached(ttl = "1m", stale = "1m", key = "arc:<self.tenant>")]
    async fn by_arc(self: Arc<Self>) -> u64 {
        self.tenant
    }

    #[cached(ttl = "1m", stale = "1m", key = "ref_arc:<self.tenant>")]
    async fn by_ref_arc(self: &Arc<Self>) -> u64 {
        self.tenant
    }

    // No receiver, and `Self` in the body.
    #[cached(ttl = "1m", stale = "1m", key = "prefix:<id>")]
    async fn prefixed(id: &u64) -> String {
        format!("{}:{id}", Self::PREFIX)
    }
}

#[cached(ttl = "1m", stale = "1m", key = "generic:<k>:<name>")]
async fn generic<K: KeyArg + Clone + Send + Sync + 'static>(k: &K, name: &[u8]) -> usize {
    let _ = k.clone();
    name.len()
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let repo = Repo { tenant: 1 };
    let _ = repo.length::<Metres, 2>("21", 3u8, 1, "!").await;
    let _ = Arc::new(repo.clone()).by_arc().await;
    let _ = Arc::new(repo).by_ref_arc().await;
    let _ = Repo::prefixed(&7).await;
    let _ = generic(&1u32, b"x").await;
}
