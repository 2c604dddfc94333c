//! A fake WebTorrent tracker: it keeps each swarm's members and relays
//! offers and answers the way `bittorrent-tracker` and aquatic_ws do.
//!
//! Each offer of an announce goes to a different random member of the swarm,
//! never back to the sender; offers are not stored, so they reach only peers
//! already there. An answer is forwarded to `to_peer_id`, and only for an
//! offer this hub relayed to the answering peer (as aquatic_ws checks).

use std::collections::{BTreeMap, BTreeSet};

use swarmdrop::engine::tracker::wire::common::{AnnounceAction, InfoHash, OfferId, PeerId};
use swarmdrop::engine::tracker::wire::incoming::{AnnounceEvent, InMessage};
use swarmdrop::engine::tracker::wire::outgoing::{
    AnnounceResponse, AnswerOutMessage, OfferOutMessage, OutMessage,
};
use swarmdrop::engine::tracker::{encode_to_client, parse_to_tracker};

/// A swarm's members: peer id → (node, seeding).
type Members = BTreeMap<[u8; 20], (usize, bool)>;

/// The tracker's state.
pub struct Hub {
    rng: fastrand::Rng,
    /// Swarm (info hash) → its members.
    swarms: BTreeMap<[u8; 20], Members>,
    /// Offers relayed: (offer id, the peer it went to) → the offerer.
    relayed: BTreeSet<([u8; 20], [u8; 20], [u8; 20])>,
    /// Frames received, for assertions.
    pub received: u64,
}

impl Hub {
    /// An empty tracker.
    pub fn new(seed: u64) -> Self {
        Hub {
            rng: fastrand::Rng::with_seed(seed),
            swarms: BTreeMap::new(),
            relayed: BTreeSet::new(),
            received: 0,
        }
    }

    /// A node's socket closed: it leaves every swarm.
    pub fn forget_node(&mut self, node: usize) {
        for members in self.swarms.values_mut() {
            members.retain(|_, (n, _)| *n != node);
        }
    }

    /// Handles one frame from `node`; returns the frames to send, by node.
    pub fn receive(&mut self, node: usize, text: &str) -> Vec<(usize, String)> {
        self.received += 1;
        let msg = parse_to_tracker(text).expect("clients send valid tracker messages");
        let InMessage::AnnounceRequest(req) = msg else {
            return Vec::new();
        };
        let ih = req.info_hash.0;
        let me = req.peer_id.0;
        let mut out = Vec::new();

        if let (Some(answer), Some(to), Some(offer_id)) = (
            req.answer.clone(),
            req.answer_to_peer_id,
            req.answer_offer_id,
        ) {
            let relayed = self.relayed.remove(&(offer_id.0, me, to.0));
            assert!(relayed, "an answer must answer an offer this peer was sent");
            if let Some(&(to_node, _)) = self.swarms.get(&ih).and_then(|s| s.get(&to.0)) {
                let msg = OutMessage::AnswerOutMessage(AnswerOutMessage {
                    action: AnnounceAction::Announce,
                    peer_id: req.peer_id,
                    info_hash: req.info_hash,
                    answer,
                    offer_id,
                });
                out.push((to_node, encode_to_client(&msg)));
            }
            return out;
        }

        let swarm = self.swarms.entry(ih).or_default();
        if req.event == Some(AnnounceEvent::Stopped) {
            swarm.remove(&me);
            return out;
        }
        let seeding = req.bytes_left == Some(0);
        swarm.insert(me, (node, seeding));

        let mut others: Vec<([u8; 20], usize)> = swarm
            .iter()
            .filter(|(id, _)| **id != me)
            .map(|(id, (n, _))| (*id, *n))
            .collect();
        self.rng.shuffle(&mut others);
        for (offer, (to_id, to_node)) in req.offers.iter().flatten().zip(others) {
            self.relayed.insert((offer.offer_id.0, to_id, me));
            let msg = OutMessage::OfferOutMessage(OfferOutMessage {
                action: AnnounceAction::Announce,
                peer_id: PeerId(me),
                info_hash: InfoHash(ih),
                offer: offer.offer.clone(),
                offer_id: OfferId(offer.offer_id.0),
            });
            out.push((to_node, encode_to_client(&msg)));
        }
        let complete = swarm.values().filter(|(_, s)| *s).count();
        let msg = OutMessage::AnnounceResponse(AnnounceResponse {
            action: AnnounceAction::Announce,
            info_hash: InfoHash(ih),
            complete,
            incomplete: swarm.len() - complete,
            announce_interval: 120,
        });
        out.push((node, encode_to_client(&msg)));
        out
    }
}
