//! Swarm scenarios in virtual time: several clients, a fake tracker, links
//! that re-chunk and delay bytes, in-memory storage and a web seed (see
//! `swarm/sim.rs`). Each test is named for what it proves. Every run is
//! deterministic; `SWARM_SEED=n` replays them under other random choices.

#[path = "swarm/hub.rs"]
mod hub;
#[path = "swarm/sim.rs"]
mod sim;

use std::time::Duration;

use sim::{stored_pieces, Bundle, LinkSpec, Sim, TRACKER};
use swarmdrop::engine::api::{AddBundle, BundleSource, Command, LimitScope, Role};
use swarmdrop::engine::bitfield::Bitfield;
use swarmdrop::engine::event::{DropReason, Event};
use swarmdrop::engine::limiter::Limits;
use swarmdrop::engine::magnet::Magnet;

/// Every leecher reports completion, stored every piece, and the bytes are
/// the seed's.
fn assert_complete_and_equal(sim: &Sim, nodes: &[usize], bundle: &Bundle) {
    let h = bundle.info_hash();
    for &n in nodes {
        let node = &sim.nodes[n];
        assert!(node.completed(h), "node {n} did not complete");
        let bytes = node
            .assembled(h, bundle.pieces())
            .expect("every piece stored");
        assert!(bytes == bundle.content, "node {n} stored different bytes");
        let verified = node
            .events
            .iter()
            .filter(|(_, e)| matches!(e, Event::PieceVerified { info_hash, .. } if info_hash == &h))
            .count();
        assert_eq!(
            verified as u32,
            bundle.pieces(),
            "node {n}: one verification per piece"
        );
    }
}

#[test]
fn one_seed_and_four_leechers_all_complete_with_identical_bytes() {
    let mut sim = Sim::new(1 + seed_offset());
    let bundle = Bundle::new(
        "photos",
        &[("photos/a.jpg", 700_000), ("photos/b.jpg", 333_333)],
        32 * 1024,
        false,
        7,
    );
    let seed = sim.add_node(LinkSpec::default());
    sim.add_bundle(seed, &bundle, bundle.add(Role::Seed));
    let leechers: Vec<usize> = (0..4).map(|_| sim.add_node(LinkSpec::default())).collect();
    for &l in &leechers {
        sim.add_bundle(l, &bundle, bundle.add(Role::Download));
    }
    let h = bundle.info_hash();
    sim.run_until(Duration::from_secs(120), |s| {
        leechers.iter().all(|&l| s.nodes[l].completed(h))
    });
    assert_complete_and_equal(&sim, &leechers, &bundle);
}

/// Payload a node has downloaded (from peers, from web seeds) and uploaded.
fn counters(sim: &mut Sim, node: usize, bundle: &Bundle) -> (u64, u64, u64) {
    let now = sim.now;
    let p = sim.nodes[node]
        .client
        .progress(now, bundle.info_hash())
        .expect("bundle known");
    (p.downloaded_peers, p.downloaded_server, p.uploaded)
}

#[test]
fn a_peer_sending_corrupt_data_is_dropped_and_its_pieces_refetched() {
    let mut sim = Sim::new(2 + seed_offset());
    let bundle = Bundle::new(
        "video.bin",
        &[("video.bin", 1_200_000)],
        64 * 1024,
        false,
        11,
    );
    let honest = sim.add_node(LinkSpec {
        bandwidth: 600_000,
        ..LinkSpec::default()
    });
    let liar = sim.add_node(LinkSpec {
        bandwidth: 3_000_000,
        ..LinkSpec::default()
    });
    sim.nodes[liar].corrupt = true;
    sim.add_bundle(honest, &bundle, bundle.add(Role::Seed));
    sim.add_bundle(liar, &bundle, bundle.add(Role::Seed));
    let leecher = sim.add_node(LinkSpec::default());
    sim.add_bundle(leecher, &bundle, bundle.add(Role::Download));
    let h = bundle.info_hash();
    sim.run_until(Duration::from_secs(120), |s| s.nodes[leecher].completed(h));
    assert_complete_and_equal(&sim, &[leecher], &bundle);
    let liar_id = sim.nodes[liar].peer_id;
    let dropped_for_bad_data = sim.nodes[leecher].events.iter().any(|(_, e)| {
        matches!(e, Event::PeerDropped { peer_id: Some(id), reason: DropReason::BadData, .. } if *id == liar_id)
    });
    assert!(
        dropped_for_bad_data,
        "the corrupt peer was not dropped for bad data"
    );
}

#[test]
fn a_peer_vanishing_mid_piece_has_its_blocks_requested_from_another() {
    let mut sim = Sim::new(3);
    let piece = 256 * 1024;
    let bundle = Bundle::new("disk.img", &[("disk.img", 2_000_000)], piece, false, 13);
    let first = sim.add_node(LinkSpec {
        bandwidth: 1_000_000,
        ..LinkSpec::default()
    });
    sim.add_bundle(first, &bundle, bundle.add(Role::Seed));
    let leecher = sim.add_node(LinkSpec::default());
    sim.add_bundle(leecher, &bundle, bundle.add(Role::Download));
    let h = bundle.info_hash();
    // Wait until the leecher holds blocks of a piece it has not finished,
    // all from the only seed so far.
    sim.run_until(Duration::from_secs(60), |s| {
        let stored = stored_pieces(&s.nodes[leecher], h).len() as u64;
        let (got, _, _) = counters(s, leecher, &bundle);
        stored >= 1 && got > stored * piece as u64
    });
    sim.vanish(first);
    let vanished_at = sim.now;
    let second = sim.add_node(LinkSpec {
        bandwidth: 1_000_000,
        ..LinkSpec::default()
    });
    sim.add_bundle(second, &bundle, bundle.add(Role::Seed));
    // Well before a request timeout (20 s) could have released the lost blocks.
    sim.run_until(Duration::from_secs(12), |s| s.nodes[leecher].completed(h));
    assert!(sim.now - vanished_at < Duration::from_secs(12));
    assert_complete_and_equal(&sim, &[leecher], &bundle);
    let (_, _, from_first) = counters(&mut sim, first, &bundle);
    assert!(
        from_first < bundle.content.len() as u64,
        "the first seed did not send everything"
    );
}

#[test]
fn selective_download_fetches_only_the_chosen_files_pieces() {
    let mut sim = Sim::new(4 + seed_offset());
    let files = [
        ("set/a.raw", 100_000),
        ("set/b.raw", 300_000),
        ("set/c.raw", 200_000),
    ];
    let bundle = Bundle::new("set", &files, 32 * 1024, false, 17);
    let seed = sim.add_node(LinkSpec::default());
    sim.add_bundle(seed, &bundle, bundle.add(Role::Seed));
    let leecher = sim.add_node(LinkSpec::default());
    let mut add = bundle.add(Role::Download);
    add.selection = Some(vec![1]);
    sim.add_bundle(leecher, &bundle, add);
    let h = bundle.info_hash();
    sim.run_until(Duration::from_secs(60), |s| s.nodes[leecher].completed(h));
    // Let anything in flight land: nothing more may be fetched.
    sim.run_for(Duration::from_secs(5));
    let wanted: std::collections::BTreeSet<u32> = bundle.meta.info.file_piece_range(1).collect();
    assert_eq!(
        stored_pieces(&sim.nodes[leecher], h),
        wanted,
        "exactly file b's pieces (boundaries included)"
    );
    let store = &sim.nodes[leecher].stores[&h];
    for (&i, data) in &store.pieces {
        assert!(data.as_slice() == bundle.piece(i), "piece {i} differs");
    }
}

#[test]
fn an_upload_cap_holds_within_five_percent_over_ten_seconds() {
    let mut sim = Sim::new(5 + seed_offset());
    let bundle = Bundle::new("big.bin", &[("big.bin", 12_000_000)], 256 * 1024, false, 19);
    let seed = sim.add_node(LinkSpec {
        bandwidth: 10_000_000,
        ..LinkSpec::default()
    });
    sim.add_bundle(seed, &bundle, bundle.add(Role::Seed));
    let cap = 200_000u64;
    sim.command(
        seed,
        Command::SetLimits {
            scope: LimitScope::Global,
            limits: Limits {
                upload: Some(cap),
                download: None,
            },
        },
    );
    let leechers: Vec<usize> = (0..2)
        .map(|_| {
            sim.add_node(LinkSpec {
                bandwidth: 10_000_000,
                ..LinkSpec::default()
            })
        })
        .collect();
    for &l in &leechers {
        sim.add_bundle(l, &bundle, bundle.add(Role::Download));
    }
    sim.run_for(Duration::from_secs(3));
    let (_, _, before) = counters(&mut sim, seed, &bundle);
    assert!(before > 0, "the seed uploads");
    sim.run_for(Duration::from_secs(10));
    let (_, _, after) = counters(&mut sim, seed, &bundle);
    let rate = (after - before) as f64 / 10.0;
    let ratio = rate / cap as f64;
    println!("upload over 10 s: {rate:.0} B/s, {ratio:.4} of the cap");
    assert!(
        (0.95..=1.05).contains(&ratio),
        "upload rate {rate:.0} B/s is {ratio:.3} of the cap"
    );
}

#[test]
fn a_bundle_download_cap_holds_within_five_percent_over_ten_seconds() {
    let mut sim = Sim::new(9 + seed_offset());
    let bundle = Bundle::new("big.bin", &[("big.bin", 12_000_000)], 256 * 1024, true, 37);
    sim.web_seed.insert(bundle.info_hash(), bundle.clone());
    sim.web_seed_link.bandwidth = 10_000_000;
    let fast = LinkSpec {
        bandwidth: 10_000_000,
        ..LinkSpec::default()
    };
    for _ in 0..2 {
        let seed = sim.add_node(fast);
        sim.add_bundle(seed, &bundle, bundle.add(Role::Seed));
    }
    let leecher = sim.add_node(fast);
    sim.add_bundle(leecher, &bundle, bundle.add(Role::Download));
    let cap = 150_000u64;
    sim.command(
        leecher,
        Command::SetLimits {
            scope: LimitScope::Bundle(bundle.info_hash()),
            limits: Limits {
                upload: None,
                download: Some(cap),
            },
        },
    );
    sim.run_for(Duration::from_secs(3));
    let (peers_before, server_before, _) = counters(&mut sim, leecher, &bundle);
    sim.run_for(Duration::from_secs(10));
    let (peers_after, server_after, _) = counters(&mut sim, leecher, &bundle);
    let got = (peers_after + server_after) - (peers_before + server_before);
    let ratio = got as f64 / 10.0 / cap as f64;
    println!("download over 10 s: {} B, {ratio:.4} of the cap", got);
    assert!(
        (0.95..=1.05).contains(&ratio),
        "download rate over peers and web seed is {ratio:.3} of the cap"
    );
}

#[test]
fn a_web_seed_and_two_peers_complete_together() {
    let mut sim = Sim::new(6 + seed_offset());
    let bundle = Bundle::new(
        "album",
        &[("album/1.flac", 900_000), ("album/2.flac", 700_001)],
        64 * 1024,
        true,
        23,
    );
    sim.web_seed.insert(bundle.info_hash(), bundle.clone());
    let peers: Vec<usize> = (0..2).map(|_| sim.add_node(LinkSpec::default())).collect();
    for &p in &peers {
        sim.add_bundle(p, &bundle, bundle.add(Role::Download));
    }
    let h = bundle.info_hash();
    sim.run_until(Duration::from_secs(120), |s| {
        peers.iter().all(|&p| s.nodes[p].completed(h))
    });
    assert_complete_and_equal(&sim, &peers, &bundle);
    let mut from_peers = 0;
    for &p in &peers {
        let (peer_bytes, server_bytes, _) = counters(&mut sim, p, &bundle);
        assert!(server_bytes > 0, "node {p} fetched from the web seed");
        from_peers += peer_bytes;
    }
    assert!(from_peers > 0, "the peers traded pieces with each other");
}

#[test]
fn a_failing_web_seed_backs_off_is_dropped_and_the_peers_still_complete() {
    let mut sim = Sim::new(11 + seed_offset());
    let bundle = Bundle::new("clip.mp4", &[("clip.mp4", 600_000)], 64 * 1024, true, 41);
    sim.web_seed.insert(bundle.info_hash(), bundle.clone());
    sim.web_seed_broken = true;
    // A slow seed: the download outlasts the web seed's retries.
    let seed = sim.add_node(LinkSpec {
        bandwidth: 6_000,
        ..LinkSpec::default()
    });
    sim.add_bundle(seed, &bundle, bundle.add(Role::Seed));
    let leecher = sim.add_node(LinkSpec::default());
    sim.add_bundle(leecher, &bundle, bundle.add(Role::Download));
    let h = bundle.info_hash();
    sim.run_until(Duration::from_secs(300), |s| s.nodes[leecher].completed(h));
    assert_complete_and_equal(&sim, &[leecher], &bundle);
    let (_, from_server, _) = counters(&mut sim, leecher, &bundle);
    assert_eq!(from_server, 0);
    let dropped_at = sim.nodes[leecher].events.iter().find_map(|(t, e)| {
        matches!(
            e,
            Event::PeerDropped {
                peer_id: None,
                reason: DropReason::WebSeedFailed(_),
                ..
            }
        )
        .then_some(*t)
    });
    let dropped_at = dropped_at.expect("the failing web seed was given up");
    // Backing off 5, 10, 20, 40 s between failures: not given up at once.
    assert!(dropped_at >= swarmdrop::engine::time::Instant::from_duration(Duration::from_secs(60)));
    let fetches = sim.nodes[leecher].outputs["web_seed_fetch"];
    let slots = swarmdrop::engine::webseed::MAX_FETCH_SLOTS as u64;
    assert!(
        fetches <= slots * 5,
        "{fetches} fetches: at most {slots} in flight, five failures"
    );
}

#[test]
fn a_magnet_link_alone_fetches_the_metadata_then_the_data() {
    let mut sim = Sim::new(7 + seed_offset());
    let bundle = Bundle::new(
        "docs",
        &[("docs/a.pdf", 300_000), ("docs/b.pdf", 90_000)],
        32 * 1024,
        false,
        29,
    );
    let seed = sim.add_node(LinkSpec::default());
    sim.add_bundle(seed, &bundle, bundle.add(Role::Seed));
    let leecher = sim.add_node(LinkSpec::default());
    let mut magnet = Magnet::new(bundle.info_hash());
    magnet.trackers.push(TRACKER.to_string());
    let add = AddBundle {
        source: BundleSource::Magnet(Box::new(magnet)),
        role: Role::Download,
        have: Bitfield::new(0),
        selection: None,
        paused: false,
        client_trackers: true,
    };
    sim.add_bundle(leecher, &bundle, add);
    let h = bundle.info_hash();
    sim.run_until(Duration::from_secs(60), |s| s.nodes[leecher].completed(h));
    assert_complete_and_equal(&sim, &[leecher], &bundle);
    let events = &sim.nodes[leecher].events;
    let metadata_at = events
        .iter()
        .position(|(_, e)| matches!(e, Event::MetadataReceived { info_bytes, .. } if *info_bytes == bundle.meta.info_bytes))
        .expect("the metadata arrived, byte for byte");
    let first_piece_at = events
        .iter()
        .position(|(_, e)| matches!(e, Event::PieceVerified { .. }))
        .expect("pieces verified");
    assert!(metadata_at < first_piece_at, "metadata first, then data");
}

#[test]
fn a_paused_bundle_moves_no_bytes_and_resumes() {
    let mut sim = Sim::new(8 + seed_offset());
    let bundle = Bundle::new("slow.bin", &[("slow.bin", 3_000_000)], 64 * 1024, false, 31);
    let seed = sim.add_node(LinkSpec {
        bandwidth: 300_000,
        ..LinkSpec::default()
    });
    sim.add_bundle(seed, &bundle, bundle.add(Role::Seed));
    let leecher = sim.add_node(LinkSpec::default());
    sim.add_bundle(leecher, &bundle, bundle.add(Role::Download));
    let h = bundle.info_hash();
    sim.run_until(Duration::from_secs(60), |s| {
        stored_pieces(&s.nodes[leecher], h).len() >= 3
    });
    sim.command(leecher, Command::Pause(h));
    // What was already on the wire lands; then nothing moves.
    sim.run_for(Duration::from_secs(3));
    let (down_before, _, _) = counters(&mut sim, leecher, &bundle);
    let (_, _, up_before) = counters(&mut sim, seed, &bundle);
    let wire_before = sim.nodes[seed].bytes_sent + sim.nodes[leecher].bytes_sent;
    let stored_before = stored_pieces(&sim.nodes[leecher], h).len();
    sim.run_for(Duration::from_secs(60));
    let (down_after, _, _) = counters(&mut sim, leecher, &bundle);
    let (_, _, up_after) = counters(&mut sim, seed, &bundle);
    let wire_after = sim.nodes[seed].bytes_sent + sim.nodes[leecher].bytes_sent;
    assert_eq!(
        down_after, down_before,
        "no payload downloaded while paused"
    );
    assert_eq!(
        up_after, up_before,
        "no payload uploaded to a paused bundle"
    );
    assert_eq!(stored_pieces(&sim.nodes[leecher], h).len(), stored_before);
    assert!(
        wire_after - wire_before < 200,
        "only keep-alives on the wire, not {} bytes",
        wire_after - wire_before
    );
    assert!(!sim.nodes[leecher].completed(h));
    sim.command(leecher, Command::Resume(h));
    sim.run_for(Duration::from_secs(60));
    for (i, n) in sim.nodes.iter_mut().enumerate() {
        let now = sim.now;
        println!(
            "node {i}: {:?} outputs {:?}",
            n.client.progress(now, h),
            n.outputs
        );
        for (t, e) in &n.events {
            if !matches!(e, Event::Progress(_) | Event::PieceVerified { .. }) {
                println!("  {t:?} {e:?}");
            }
        }
    }
    sim.run_until(Duration::from_secs(60), |s| s.nodes[leecher].completed(h));
    assert_complete_and_equal(&sim, &[leecher], &bundle);
}

/// Added to every scenario's seed: `SWARM_SEED=n cargo test --test swarm`
/// replays the scenarios under other random choices.
fn seed_offset() -> u64 {
    std::env::var("SWARM_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[test]
fn eight_leechers_take_most_of_the_load_off_a_slow_seed() {
    let mut sim = Sim::new(10 + seed_offset());
    let bundle = Bundle::new("big", &[("big", 8_000_000)], 256 * 1024, false, 3);
    let link = LinkSpec {
        bandwidth: 1_000_000,
        ..LinkSpec::default()
    };
    let seed = sim.add_node(link);
    sim.add_bundle(seed, &bundle, bundle.add(Role::Seed));
    let leechers: Vec<usize> = (0..8).map(|_| sim.add_node(link)).collect();
    for &l in &leechers {
        sim.add_bundle(l, &bundle, bundle.add(Role::Download));
    }
    let h = bundle.info_hash();
    // Nine 1 MB/s uplinks move the 64 MB in about 7 s at best; the seed
    // alone would need 64 s.
    sim.run_until(Duration::from_secs(30), |s| {
        leechers.iter().all(|&l| s.nodes[l].completed(h))
    });
    assert_complete_and_equal(&sim, &leechers, &bundle);
    let (_, _, from_seed) = counters(&mut sim, seed, &bundle);
    let copies = from_seed as f64 / bundle.content.len() as f64;
    println!("done at {:?}; the seed sent {copies:.2} copies", sim.now);
    assert!(
        copies < 2.5,
        "the seed sent {copies:.2} copies; peers should carry the rest"
    );
}

/// What one run of [`offload_run`] measured.
struct Offload {
    /// Bytes the web seed sent to the leechers, over the bundle size.
    server_copies: f64,
    /// Virtual time until every leecher completed.
    seconds: f64,
}

/// A seed, four leechers starting together and a web seed three times as
/// fast as a peer's uplink; every leecher uses `floor` as its
/// `web_seed_peer_floor`.
fn offload_run(sim_seed: u64, floor: u64, with_seed: bool) -> Offload {
    let mut sim = Sim::new(sim_seed);
    let bundle = Bundle::new(
        "offload",
        &[("offload/a.bin", 20_000_000), ("offload/b.bin", 12_000_000)],
        64 * 1024,
        true,
        43,
    );
    let h = bundle.info_hash();
    sim.web_seed.insert(h, bundle.clone());
    // Six fetches in flight at 1 MB/s each: 6 MB/s to each leecher, three
    // times a peer's uplink (2 MB/s).
    sim.web_seed_link.bandwidth = 1_000_000;
    let link = LinkSpec::default();
    if with_seed {
        let seed = sim.add_node(link);
        sim.add_bundle(seed, &bundle, bundle.add(Role::Seed));
    }
    let leechers: Vec<usize> = (0..4)
        .map(|_| {
            let mut id = [0u8; 12];
            fastrand::Rng::with_seed(sim_seed ^ sim.nodes.len() as u64).fill(&mut id);
            let mut config = swarmdrop::engine::client::ClientConfig::new(
                swarmdrop::engine::ids::PeerId::generate(id),
                sim_seed + sim.nodes.len() as u64,
            );
            config.web_seed_peer_floor = floor;
            sim.add_node_with(config, link)
        })
        .collect();
    let start = sim.now;
    for &l in &leechers {
        sim.add_bundle(l, &bundle, bundle.add(Role::Download));
    }
    sim.run_until(Duration::from_secs(120), |s| {
        leechers.iter().all(|&l| s.nodes[l].completed(h))
    });
    let seconds = (sim.now - start).as_secs_f64();
    assert_complete_and_equal(&sim, &leechers, &bundle);
    let mut served = 0;
    for &l in &leechers {
        let (_, from_server, _) = counters(&mut sim, l, &bundle);
        served += from_server;
    }
    Offload {
        server_copies: served as f64 / bundle.content.len() as f64,
        seconds,
    }
}

#[test]
fn four_leechers_with_a_seed_take_each_piece_from_the_web_seed_about_once() {
    let seed = 12 + seed_offset();
    // Held back while peers bring 1 MiB/s (the default), against a web seed
    // used like any peer (the policy before) and the web seed alone.
    let held = offload_run(
        seed,
        std::env::var("FLOOR")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(swarmdrop::engine::client::DEFAULT_WEB_SEED_PEER_FLOOR),
        true,
    );
    let greedy = offload_run(seed, u64::MAX, true);
    let server_only = offload_run(seed, u64::MAX, false);
    for (name, r) in [
        ("held back", &held),
        ("greedy", &greedy),
        ("no seed", &server_only),
    ] {
        println!(
            "{name}: the web seed sent {:.2} copies; all done in {:.1} s",
            r.server_copies, r.seconds
        );
    }
    assert!(
        held.server_copies <= 1.5,
        "the web seed sent {:.2} copies of the bundle",
        held.server_copies
    );
    assert!(
        greedy.server_copies > held.server_copies,
        "the greedy policy is the worse one here"
    );
    assert!(
        held.seconds <= greedy.seconds * 1.6,
        "held back took {:.1} s against {:.1} s",
        held.seconds,
        greedy.seconds
    );
}

/// A seed, two more leechers and `last`, with a web seed; runs until `last`
/// has 4 MB from peers, then `leave` does something to the others; returns
/// how long `last` took to complete after that.
fn peers_fail_then(sim_seed: u64, leave: impl Fn(&mut Sim, usize)) -> f64 {
    let mut sim = Sim::new(sim_seed);
    let bundle = Bundle::new("left.bin", &[("left.bin", 12_000_000)], 64 * 1024, true, 47);
    let h = bundle.info_hash();
    sim.web_seed.insert(h, bundle.clone());
    let seed = sim.add_node(LinkSpec::default());
    sim.add_bundle(seed, &bundle, bundle.add(Role::Seed));
    let others: Vec<usize> = (0..2).map(|_| sim.add_node(LinkSpec::default())).collect();
    let last = sim.add_node(LinkSpec::default());
    for &n in others.iter().chain([&last]) {
        sim.add_bundle(n, &bundle, bundle.add(Role::Download));
    }
    // Peers carry most of it while they are there: the web seed holds back.
    sim.run_until(Duration::from_secs(60), |s| {
        let (from_peers, _, _) = counters(s, last, &bundle);
        from_peers > 4_000_000
    });
    for n in others.into_iter().chain([seed]) {
        leave(&mut sim, n);
    }
    let at = sim.now;
    sim.run_until(Duration::from_secs(30), |s| s.nodes[last].completed(h));
    let took = (sim.now - at).as_secs_f64();
    assert_complete_and_equal(&sim, &[last], &bundle);
    took
}

#[test]
fn a_download_whose_peers_all_vanish_finishes_from_the_web_seed_within_seconds() {
    let took = peers_fail_then(13 + seed_offset(), |sim, n| sim.vanish(n));
    println!("completed {took:.1} s after its peers left");
    // At most 8 MB left at 6 MB/s from the web seed.
    assert!(took < 4.0, "took {took:.1} s after the peers left");
}

#[test]
fn a_download_whose_peers_slow_to_a_trickle_finishes_from_the_web_seed_within_seconds() {
    // Connected but sending 1 kB/s: the peer rate falls under the floor
    // (a 5 s window) and the web seed fetches whatever is left.
    let took = peers_fail_then(14 + seed_offset(), |sim, n| sim.throttle(n, 1_000));
    println!("completed {took:.1} s after its peers slowed down");
    assert!(took < 10.0, "took {took:.1} s after the peers slowed down");
}
