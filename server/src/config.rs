//! Command-line flags and environment variables of the server.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

/// Swarmdrop availability server: WebTorrent tracker, bundle store, BEP 19 web seed.
///
/// Every flag can also be set through the environment variable shown.
#[derive(Parser, Debug, Clone)]
#[command(name = "swarmdrop-server", version, about)]
pub struct Config {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, env = "SWARMDROP_LISTEN", default_value = "127.0.0.1:8750")]
    pub listen: SocketAddr,

    /// Directory of the local object store (used when no --store-url is given).
    #[arg(long, env = "SWARMDROP_DATA_DIR", default_value = "./swarmdrop-data")]
    pub data_dir: PathBuf,

    /// Object store URL, e.g. `s3://bucket/prefix` (credentials and region from the
    /// usual AWS_* variables) or `file:///srv/swarmdrop`; default: --data-dir.
    #[arg(long, env = "SWARMDROP_STORE_URL")]
    pub store_url: Option<String>,

    /// Days a bundle is kept after its creation.
    #[arg(long, env = "SWARMDROP_EXPIRY_DAYS", default_value_t = 30)]
    pub expiry_days: u64,

    /// Bundle lifetime in seconds; overrides --expiry-days (for tests and demos).
    #[arg(long, env = "SWARMDROP_EXPIRY_SECS")]
    pub expiry_secs: Option<u64>,

    /// Seconds between two sweeps for expired bundles.
    #[arg(long, env = "SWARMDROP_EXPIRY_CHECK_SECS", default_value_t = 3600)]
    pub expiry_check_secs: u64,

    /// Largest bundle accepted (sum of its files): a byte count with an optional
    /// suffix: K, M, G, T (or KiB..TiB) are powers of 1024, KB, MB, GB, TB of 1000.
    #[arg(long, env = "SWARMDROP_MAX_BUNDLE_SIZE", default_value = "1TiB", value_parser = parse_size)]
    pub max_bundle_size: u64,

    /// Largest .torrent accepted by `POST /api/bundles` (same size syntax).
    #[arg(long, env = "SWARMDROP_MAX_TORRENT_SIZE", default_value = "8MiB", value_parser = parse_size)]
    pub max_torrent_size: u64,

    /// Piece uploads handled at once (each may hold one piece, up to 16 MiB, in memory).
    #[arg(long, env = "SWARMDROP_MAX_CONCURRENT_UPLOADS", default_value_t = 32)]
    pub max_concurrent_uploads: usize,

    /// Public base URL of this server, used in web seed, tracker and bundle page
    /// URLs (e.g. `https://drop.example.org`); default: `http://<listen address>`.
    #[arg(long, env = "SWARMDROP_PUBLIC_URL")]
    pub public_url: Option<String>,
}

impl Config {
    /// How long a bundle lives.
    pub fn expiry(&self) -> Duration {
        Duration::from_secs(
            self.expiry_secs
                .unwrap_or_else(|| self.expiry_days.saturating_mul(86_400)),
        )
    }
}

/// Parses a size such as `1TiB`, `500GB`, `16M` or `1048576`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, suffix) = s.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{s:?} is not a size (a number with an optional unit)"))?;
    let unit: u64 = match suffix.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "t" | "tib" => 1 << 40,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        other => return Err(format!("unknown size unit {other:?}")),
    };
    n.checked_mul(unit)
        .ok_or_else(|| format!("{s:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_and_decimal_units() {
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        assert_eq!(parse_size("16M"), Ok(16 << 20));
        assert_eq!(parse_size("1TiB"), Ok(1 << 40));
        assert_eq!(parse_size("500GB"), Ok(500_000_000_000));
        assert!(parse_size("ten").is_err());
        assert!(parse_size("1 parsec").is_err());
        assert!(parse_size("99999999999T").is_err());
    }

    #[test]
    fn defaults_match_the_documentation() {
        let c = Config::parse_from(["swarmdrop-server"]);
        assert_eq!(c.listen.to_string(), "127.0.0.1:8750");
        assert_eq!(c.expiry(), Duration::from_secs(30 * 86_400));
        assert_eq!(c.max_bundle_size, 1 << 40);
        let c = Config::parse_from(["swarmdrop-server", "--expiry-secs", "5"]);
        assert_eq!(c.expiry(), Duration::from_secs(5));
    }
}
