//! Share links: the availability server's landing page for a bundle, and
//! where its `.torrent` is.
//!
//! A share link is `http(s)://SERVER/b/<info hash>` (the server may live
//! under a path prefix). The server serves the bundle's `.torrent`, with
//! its web seed and tracker added, at `SERVER/api/bundles/<info hash>/torrent`.

use crate::engine::ids::InfoHash;

/// The info hash and the `.torrent` URL of a share link; `None` if `link`
/// is not one.
pub fn parse_share_link(link: &str) -> Option<(InfoHash, String)> {
    let link = link.trim();
    let rest = link
        .strip_prefix("http://")
        .or_else(|| link.strip_prefix("https://"))?;
    let scheme_len = link.len() - rest.len();
    let path_at = scheme_len + rest.find('/')?;
    let (origin, path) = link.split_at(path_at);
    let path = path.split(['?', '#']).next().unwrap_or(path);
    let (before, hash) = path.trim_end_matches('/').rsplit_once('/')?;
    let info_hash = InfoHash::from_hex(hash)?;
    let base = before.strip_suffix("/b")?;
    Some((
        info_hash,
        format!("{origin}{base}/api/bundles/{}/torrent", info_hash.to_hex()),
    ))
}

/// Where to fetch the `.torrent` of a link: the server's torrent URL for a
/// share link, the URL itself for any other http(s) URL (a `.torrent`
/// file), `None` for anything else.
pub fn torrent_url(link: &str) -> Option<String> {
    if let Some((_, url)) = parse_share_link(link) {
        return Some(url);
    }
    let link = link.trim();
    (link.starts_with("http://") || link.starts_with("https://")).then(|| link.to_owned())
}

/// The share link of a bundle on a server (`server` without a trailing slash
/// or with one).
pub fn share_link(server: &str, info_hash: InfoHash) -> String {
    format!("{}/b/{}", server.trim_end_matches('/'), info_hash.to_hex())
}

/// The bundle API's status URL for a web seed URL of a Swarmdrop server
/// (`SERVER/seed/<info hash>/...` → `SERVER/api/bundles/<info hash>`), where
/// the server tells which pieces it holds; `None` for another web seed.
pub fn bundle_status_url(web_seed: &str, info_hash: InfoHash) -> Option<String> {
    let hex = info_hash.to_hex();
    let marker = format!("/seed/{hex}");
    let at = web_seed.find(&marker)?;
    let rest = &web_seed[at + marker.len()..];
    if !(rest.is_empty() || rest.starts_with('/')) {
        return None;
    }
    Some(format!("{}/api/bundles/{hex}", &web_seed[..at]))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "0123456789abcdef0123456789abcdef01234567";

    #[test]
    fn a_share_link_gives_its_info_hash_and_the_servers_torrent_url() {
        let (h, url) =
            parse_share_link(&format!("http://127.0.0.1:8750/b/{HASH}")).expect("a share link");
        assert_eq!(h.to_hex(), HASH);
        assert_eq!(
            url,
            format!("http://127.0.0.1:8750/api/bundles/{HASH}/torrent")
        );
    }

    #[test]
    fn a_server_under_a_path_prefix_keeps_its_prefix_and_query_and_fragment_go() {
        let upper = HASH.to_uppercase();
        let (_, url) = parse_share_link(&format!("https://x.org/drop/b/{upper}/?utm=1#key"))
            .expect("a share link");
        assert_eq!(
            url,
            format!("https://x.org/drop/api/bundles/{HASH}/torrent")
        );
    }

    #[test]
    fn links_that_are_not_share_links_are_refused() {
        assert_eq!(parse_share_link(&format!("http://x.org/c/{HASH}")), None);
        assert_eq!(parse_share_link("http://x.org/b/not-a-hash"), None);
        assert_eq!(parse_share_link(&format!("ftp://x.org/b/{HASH}")), None);
        assert_eq!(parse_share_link(&format!("http://x.org{HASH}")), None);
    }

    #[test]
    fn other_http_links_are_torrent_files_and_magnets_are_not_urls() {
        assert_eq!(
            torrent_url("https://x.org/a.torrent").as_deref(),
            Some("https://x.org/a.torrent")
        );
        assert_eq!(torrent_url("magnet:?xt=urn:btih:00"), None);
    }

    #[test]
    fn share_link_round_trips_through_the_parser() {
        let h = InfoHash::from_hex(HASH).expect("hex");
        let link = share_link("http://127.0.0.1:8750/", h);
        assert_eq!(link, format!("http://127.0.0.1:8750/b/{HASH}"));
        assert_eq!(parse_share_link(&link).map(|(x, _)| x), Some(h));
    }

    #[test]
    fn a_swarmdrop_web_seed_tells_where_its_server_lists_its_pieces() {
        let h = InfoHash::from_hex(HASH).expect("hex");
        let status = format!("http://127.0.0.1:8750/api/bundles/{HASH}");
        for seed in [
            format!("http://127.0.0.1:8750/seed/{HASH}/"),
            format!("http://127.0.0.1:8750/seed/{HASH}/a%20b.bin"),
        ] {
            assert_eq!(
                bundle_status_url(&seed, h).as_deref(),
                Some(status.as_str())
            );
        }
        assert_eq!(
            bundle_status_url(&format!("https://x.org/drop/seed/{HASH}/"), h).as_deref(),
            Some(format!("https://x.org/drop/api/bundles/{HASH}").as_str())
        );
        assert_eq!(bundle_status_url("https://cdn.example.org/files/", h), None);
        assert_eq!(
            bundle_status_url(&format!("http://x.org/seed/{HASH}0/"), h),
            None,
            "another hash that starts the same"
        );
    }
}
