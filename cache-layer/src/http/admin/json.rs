//! The admin service's JSON bodies, written by hand (the crate has no JSON dependency), and
//! [`Figures`], the snapshot the JSON and the page both show.

use std::fmt::Write as _;

use crate::{Cache, SiteStats, Stats};

/// What the stats JSON and the page show, read once per request.
pub(super) struct Figures {
    pub(super) cache: String,
    pub(super) sites: Vec<SiteStats>,
    pub(super) stats: Stats,
    pub(super) entries: u64,
    pub(super) bytes: u64,
    pub(super) budget: u64,
    /// With a shared tier: whether its breaker is open, and whether memory holds entries
    /// under the outage bound (Redis was or is unreachable).
    pub(super) shared: Option<(bool, bool)>,
}

impl Figures {
    pub(super) fn of(cache: &Cache) -> Self {
        let gauges = cache.gauges();
        Figures {
            cache: cache.name().to_owned(),
            sites: cache.site_stats(),
            stats: cache.stats(),
            entries: gauges.entries,
            bytes: gauges.bytes,
            budget: gauges.budget,
            shared: cache
                .shared_tier()
                .map(|tier| (tier.store.breaker_open(), tier.store.suspect())),
        }
    }
}

/// `GET stats`.
pub(super) fn stats(cache: &Cache) -> String {
    let f = Figures::of(cache);
    let mut out = String::from("{\"cache\":");
    string(&mut out, &f.cache);
    out.push_str(",\"sites\":[");
    for (i, site) in f.sites.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"name\":");
        string(&mut out, &site.name);
        let ratio = site
            .hit_ratio()
            .map_or_else(|| "null".to_owned(), |r| r.to_string());
        let _ = write!(
            out,
            ",\"hits\":{},\"misses\":{},\"stale\":{},\"ratio\":{ratio},\"loads\":{},\"load_errors\":{}}}",
            site.hits, site.misses, site.stale, site.loads, site.load_errors
        );
    }
    let s = &f.stats;
    let _ = write!(
        out,
        "],\"totals\":{{\"hits\":{},\"misses\":{},\"stale\":{},\"stale_if_error\":{},\"loads\":{},\"load_errors\":{},\"invalidations\":{},\"soft_invalidations\":{},\"clears\":{},\"evictions\":{},\"store_errors\":{}}}",
        s.hits, s.misses, s.stale, s.stale_if_error, s.loads, s.load_errors,
        s.invalidations, s.soft_invalidations, s.clears, s.evictions, s.store_errors
    );
    let _ = write!(
        out,
        ",\"memory\":{{\"entries\":{},\"bytes\":{},\"budget\":{}}}",
        f.entries, f.bytes, f.budget
    );
    match f.shared {
        None => out.push_str(",\"shared\":null}"),
        Some((open, suspect)) => {
            let _ = write!(
                out,
                ",\"shared\":{{\"breaker_open\":{open},\"suspect\":{suspect}}}}}"
            );
        }
    }
    out
}

/// `GET entry?key=...`.
pub(super) fn entry(cache: &Cache, key: &str) -> String {
    let mut out = String::from("{\"key\":");
    string(&mut out, key);
    let Some(info) = cache.entry_info(key) else {
        out.push_str(",\"present\":false}");
        return out;
    };
    let secs = |d: std::time::Duration| d.as_secs_f64();
    let _ = write!(
        out,
        ",\"present\":true,\"state\":\"{}\",\"age_seconds\":{},\"fresh_seconds_left\":{},\"stale_window_seconds\":{},\"stale_if_error_window_seconds\":{},\"expires_in_seconds\":{},\"soft_purged\":{},\"size_bytes\":{},\"tags\":[",
        info.state(),
        secs(info.age),
        secs(info.fresh_for),
        secs(info.stale_window),
        secs(info.stale_if_error_window),
        secs(info.expires_in),
        info.soft_purged,
        info.size
    );
    for (i, tag) in info.tags.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        string(&mut out, tag);
    }
    out.push_str("]}");
    out
}

/// The answer to a clear or an invalidation.
pub(super) fn done(what: &str, name: &str) -> String {
    let mut out = format!("{{\"{what}\":");
    string(&mut out, name);
    out.push('}');
    out
}

/// `text` as a JSON string.
fn string(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            // `<` escaped too: the JSON stays inert if some client renders it as HTML.
            c if (c as u32) < 0x20 || c == '<' || c == '\u{2028}' || c == '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    #[test]
    fn strings_are_escaped() {
        let mut out = String::new();
        super::string(&mut out, "a\"b\\c\n<d>");
        assert_eq!(out, r#""a\"b\\c\u000a\u003cd>""#);
    }
}
