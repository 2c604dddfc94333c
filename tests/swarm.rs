//! Swarm scenarios in virtual time: several clients, a fake tracker, links
//! that re-chunk and delay bytes, in-memory storage and a web seed (see
//! `swarm/sim.rs`). Each test is named for what it proves.

#[path = "swarm/hub.rs"]
mod hub;
#[path = "swarm/sim.rs"]
mod sim;

use std::time::Duration;

use sim::{Bundle, LinkSpec, Sim};
use swarmdrop::engine::api::Role;
use swarmdrop::engine::event::Event;

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
    let mut sim = Sim::new(1);
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

#[test]
fn debug_dump() {
    let mut sim = Sim::new(1);
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
    println!("now {:?}", sim.now);
    for (i, n) in sim.nodes.iter_mut().enumerate() {
        let now = sim.now;
        println!(
            "node {i}: {:?} outputs {:?}",
            n.client.progress(now, h),
            n.outputs
        );
        for (t, e) in &n.events {
            if !matches!(e, Event::PieceVerified { .. } | Event::Progress(_)) {
                println!("  {t:?} {e:?}");
            }
        }
    }
}
