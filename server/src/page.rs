//! The bundle landing page (`/b/{info_hash}`): files, sizes, links, and a hook for the extension.
//!
//! The extension's content script finds the bundle through
//! `<meta name="swarmdrop-bundle" content="<info hash hex>">` (and the
//! torrent and server through `swarmdrop-torrent` and `swarmdrop-server`),
//! and takes over the link with id `swarmdrop-open`. Without the extension
//! the page still offers the `.torrent`, a magnet link and a plain download
//! per file through the web seed.

use std::fmt::Write as _;

use axum::extract::{Path, State};
use axum::http::{header, HeaderValue};
use axum::response::{Html, IntoResponse, Response};

use swarmdrop::engine::magnet::Magnet;

use crate::app::{parse_info_hash, rfc3339, AppState};
use crate::bundle::Bundle;
use crate::error::ApiError;

/// `GET /b/{info_hash}`.
pub async fn bundle_page(
    State(state): State<AppState>,
    Path(info_hash): Path<String>,
) -> Result<Response, ApiError> {
    let bundle = state.bundle(&parse_info_hash(&info_hash)?)?;
    let mut response = Html(render(&state, &bundle)).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'; img-src 'self'"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    Ok(response)
}

/// The magnet link: `xt`, `dn`, `tr` (this server's tracker), `ws` (its web seed).
pub fn magnet(state: &AppState, bundle: &Bundle) -> String {
    let m = &bundle.metainfo;
    let mut link = Magnet::new(m.info_hash);
    link.display_name = Some(m.info.name.clone());
    link.trackers = vec![state.tracker_url()];
    link.web_seeds = vec![state.web_seed_url(m)];
    link.to_uri()
}

/// Escapes text for HTML content and double-quoted attributes.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
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

/// A byte count for people (`1.5 GiB`).
pub fn human_size(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

fn render(state: &AppState, bundle: &Bundle) -> String {
    let m = &bundle.metainfo;
    let info = &m.info;
    let hex = m.info_hash.to_hex();
    let name = escape(&info.name);
    let torrent_url = format!("{}/api/bundles/{hex}/torrent", state.public_url);
    let have = bundle.have().clone();
    let (have_count, complete) = (have.count_ones(), have.is_full());
    let num_pieces = info.lengths.num_pieces();

    let mut files = String::new();
    for (i, f) in info.files.iter().enumerate().filter(|(_, f)| !f.padding) {
        let label = escape(&f.path.join("/"));
        let size = human_size(f.length);
        let ready = info.file_piece_range(i).all(|p| have.get(p));
        let link = match state.file_url(m, i) {
            Some(url) if ready => format!(r#"<a href="{}" download>download</a>"#, escape(&url)),
            _ => "<span class=\"muted\">uploading</span>".to_string(),
        };
        let _ = writeln!(
            files,
            "<tr><td class=\"path\">{label}</td><td class=\"size\">{size}</td><td>{link}</td></tr>"
        );
    }
    let progress = if complete {
        String::new()
    } else {
        format!(
            "<p class=\"muted\">The sender is still uploading: {have_count} of {num_pieces} pieces are on the server.</p>"
        )
    };

    format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="swarmdrop-bundle" content="{hex}">
<meta name="swarmdrop-torrent" content="{torrent_attr}">
<meta name="swarmdrop-server" content="{server_attr}">
<title>{name} · Swarmdrop</title>
<style>
body {{ font: 16px/1.5 system-ui, sans-serif; max-width: 50rem; margin: 2rem auto; padding: 0 1rem; color: #222; }}
h1 {{ font-size: 1.4rem; word-break: break-word; }}
table {{ border-collapse: collapse; width: 100%; margin: 1rem 0; }}
td {{ padding: .3rem .5rem; border-bottom: 1px solid #ddd; vertical-align: top; }}
td.path {{ word-break: break-all; }}
td.size {{ white-space: nowrap; text-align: right; }}
.muted {{ color: #777; }}
.actions a {{ display: inline-block; margin: 0 1rem .5rem 0; }}
#swarmdrop-open {{ font-weight: bold; }}
</style>
</head>
<body>
<h1>{name}</h1>
<p>{count} · {total} · available until {expires}</p>
{progress}
<p class="actions">
<a id="swarmdrop-open" href="{page_attr}" data-info-hash="{hex}">Open in Swarmdrop</a>
<a href="{torrent_attr}">.torrent</a>
<a href="{magnet_attr}">magnet link</a>
</p>
<table>
{files}</table>
<p class="muted">Swarmdrop shares this bundle peer to peer; the server keeps a copy until it expires.</p>
</body>
</html>
"#,
        torrent_attr = escape(&torrent_url),
        server_attr = escape(&state.public_url),
        page_attr = escape(&state.page_url(&m.info_hash)),
        magnet_attr = escape(&magnet(state, bundle)),
        count = match info.files.iter().filter(|f| !f.padding).count() {
            1 => "1 file".to_string(),
            n => format!("{n} files"),
        },
        total = human_size(info.lengths.total_length()),
        expires = rfc3339(bundle.expires_at),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_characters_are_escaped() {
        assert_eq!(
            escape(r#"<a href="x">&'"#),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }

    #[test]
    fn sizes_read_as_binary_units() {
        assert_eq!(human_size(0), "0 B");
        assert_eq!(human_size(1023), "1023 B");
        assert_eq!(human_size(1536), "1.5 KiB");
        assert_eq!(human_size(1 << 40), "1.0 TiB");
    }
}
