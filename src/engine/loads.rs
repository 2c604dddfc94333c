//! Blocks being read from storage for upload: one load per block, whoever
//! waits for it.
//!
//! Several peers often ask for the same block (they download the same rare
//! piece); storage reads it once and every peer still waiting when it comes
//! back gets it. A peer that cancels or is choked meanwhile is simply no
//! longer waiting (its own loading list says so).

use std::collections::BTreeMap;

use crate::engine::api::ConnId;
use crate::engine::lengths::{BlockInfo, PieceIndex};

/// The loads storage was asked for and has not answered.
#[derive(Debug, Default)]
pub struct Loads {
    pending: BTreeMap<BlockInfo, Vec<ConnId>>,
}

impl Loads {
    /// `conn` waits for `block`; true when storage must be asked for it
    /// (nobody waited before).
    pub fn wait_for(&mut self, block: BlockInfo, conn: ConnId) -> bool {
        let waiters = self.pending.entry(block).or_default();
        waiters.push(conn);
        waiters.len() == 1
    }

    /// The pending load at `piece`/`offset`, as storage names it back.
    pub fn find(&self, piece: PieceIndex, offset: u32) -> Option<BlockInfo> {
        let from = BlockInfo {
            piece,
            offset,
            len: 0,
        };
        let (&block, _) = self.pending.range(from..).next()?;
        (block.piece == piece && block.offset == offset).then_some(block)
    }

    /// A load finished (or failed): who waited for it.
    pub fn finish(&mut self, block: BlockInfo) -> Vec<ConnId> {
        self.pending.remove(&block).unwrap_or_default()
    }

    /// Forgets every load (their answers will find nobody waiting).
    pub fn clear(&mut self) {
        self.pending.clear();
    }

    /// The blocks being loaded.
    pub fn blocks(&self) -> impl Iterator<Item = BlockInfo> + '_ {
        self.pending.keys().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::lengths::{Lengths, BLOCK_SIZE};

    #[test]
    fn a_block_several_peers_wait_for_is_loaded_once() {
        let l = Lengths::new(4 * BLOCK_SIZE as u64, 2 * BLOCK_SIZE as u64).unwrap();
        let b = l.block(l.validate_piece(1).unwrap(), 1).unwrap();
        let mut loads = Loads::default();
        assert!(loads.wait_for(b, ConnId(1)));
        assert!(!loads.wait_for(b, ConnId(2)), "already asked");
        assert_eq!(loads.find(b.piece, BLOCK_SIZE), Some(b));
        assert_eq!(loads.find(b.piece, 0), None);
        assert_eq!(loads.finish(b), vec![ConnId(1), ConnId(2)]);
        assert_eq!(loads.finish(b), vec![]);
        assert!(loads.wait_for(b, ConnId(3)), "asked again once answered");
    }
}
