//! The admin page: the stats as server-rendered HTML, with an inline SVG bar chart of each
//! site's hit ratio. No script; every text from the cache (site names, the cache's name) is
//! escaped.

use std::fmt::Write as _;

use super::json::Figures;
use crate::Cache;

/// The chart's bar height and the width of a full (100%) bar, in pixels.
const BAR: u32 = 18;
const FULL: f64 = 400.0;

/// The page for `cache`.
pub(super) fn render(cache: &Cache) -> String {
    let f = Figures::of(cache);
    let name = escape(&f.cache);
    let mut out = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>cache {name}</title>\
         <style>body{{font-family:sans-serif;margin:2em}}td,th{{padding:2px 10px;text-align:right}}\
         td:first-child,th:first-child{{text-align:left}}</style></head><body>\
         <h1>cache <span id=\"cache\">{name}</span></h1>"
    );
    memory(&mut out, &f);
    chart(&mut out, &f);
    table(&mut out, &f);
    out.push_str("<p>Reload to refresh. JSON: <a href=\"stats\">stats</a>.</p></body></html>\n");
    out
}

fn memory(out: &mut String, f: &Figures) {
    let share = if f.budget == 0 {
        0.0
    } else {
        f.bytes as f64 * 100.0 / f.budget as f64
    };
    let shared = match f.shared {
        None => "none",
        Some((true, _)) => "breaker open (Redis unreachable)",
        Some((false, true)) => "recovering",
        Some((false, false)) => "up",
    };
    let _ = write!(
        out,
        "<h2>Memory</h2><p id=\"memory\">{} entries, {} bytes of {} ({share:.1}%)</p>\
         <h2>Shared tier</h2><p id=\"shared\">{shared}</p>",
        f.entries, f.bytes, f.budget
    );
}

/// The hit ratio of each site (that has had a lookup) as a horizontal bar.
fn chart(out: &mut String, f: &Figures) {
    let rows: Vec<_> = f
        .sites
        .iter()
        .filter_map(|s| Some((s, s.hit_ratio()?)))
        .collect();
    let height = BAR * rows.len().max(1) as u32 + 4;
    let _ = write!(
        out,
        "<h2>Hit ratio per site</h2><svg id=\"chart\" xmlns=\"http://www.w3.org/2000/svg\" \
         width=\"{}\" height=\"{height}\" role=\"img\" aria-label=\"hit ratio per site\">",
        FULL as u32 + 420
    );
    for (i, (site, ratio)) in rows.iter().enumerate() {
        let y = i as u32 * BAR + 2;
        let name = escape(&site.name);
        let _ = write!(
            out,
            "<g><title>{name}: {pct:.1}%</title>\
             <rect x=\"0\" y=\"{y}\" width=\"{w:.1}\" height=\"{h}\" fill=\"#4a8\"></rect>\
             <text x=\"{tx}\" y=\"{ty}\" font-size=\"12\">{name} {pct:.1}%</text></g>",
            pct = ratio * 100.0,
            w = ratio * FULL,
            h = BAR - 4,
            tx = FULL as u32 + 8,
            ty = y + BAR - 6,
        );
    }
    out.push_str("</svg>");
}

fn table(out: &mut String, f: &Figures) {
    out.push_str(
        "<h2>Sites</h2><table id=\"sites\"><tr><th>site</th><th>hits</th><th>misses</th>\
         <th>stale</th><th>hit ratio</th><th>loads</th><th>load errors</th></tr>",
    );
    for site in &f.sites {
        let ratio = site
            .hit_ratio()
            .map_or_else(|| "-".to_owned(), |r| format!("{:.1}%", r * 100.0));
        let _ = write!(
            out,
            "<tr class=\"site\"><td class=\"name\">{}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td class=\"ratio\">{ratio}</td><td>{}</td><td>{}</td></tr>",
            escape(&site.name),
            site.hits,
            site.misses,
            site.stale,
            site.loads,
            site.load_errors
        );
    }
    out.push_str("</table>");
}

/// `text` safe inside HTML text and attribute values.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn site_names_are_escaped() {
        let cache = Cache::builder().name("<b>&\"").build().unwrap();
        cache
            .inner()
            .counters()
            .sites()
            .get("<script>alert(1)</script>");
        let page = render(&cache);
        assert!(!page.contains("<script>"), "{page}");
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(page.contains("&lt;b&gt;&amp;&quot;"));
    }
}
