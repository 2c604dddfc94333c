//! One sort shared by every caller, so that the wasm holds one copy of the sort code.
//!
//! `slice::sort*` is generic over the element type and the comparison: each
//! call site with its own types is a full copy of the sort algorithm in the
//! engine's wasm (2 to 5 kB each, BENCHMARKS.md row 7). [`sort_by`] sorts
//! positions (`usize`) through a `dyn` comparison instead, so every caller
//! shares one instantiation, and then moves the items into that order.

use std::cmp::Ordering;

/// Sorts `items` by `compare`, stably (equal items keep their order), as
/// `slice::sort_by` does.
pub fn sort_by<T>(items: &mut Vec<T>, compare: impl Fn(&T, &T) -> Ordering) {
    if items.len() < 2 {
        return;
    }
    let order = sorted_positions(items.len(), &|a, b| compare(&items[a], &items[b]));
    let mut taken: Vec<Option<T>> = std::mem::take(items).into_iter().map(Some).collect();
    // `order` holds every position once, so every item is taken once.
    items.extend(order.into_iter().filter_map(|i| taken[i].take()));
}

/// The positions `0..len` in the order `compare` puts the items there in;
/// ties go by position, which makes the order stable.
fn sorted_positions(len: usize, compare: &dyn Fn(usize, usize) -> Ordering) -> Vec<usize> {
    let mut order: Vec<usize> = (0..len).collect();
    order.sort_unstable_by(|&a, &b| compare(a, b).then(a.cmp(&b)));
    order
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn sorts_by_the_comparison() {
        let mut v = vec![5, 1, 4, 2, 3];
        sort_by(&mut v, |a, b| b.cmp(a));
        assert_eq!(v, vec![5, 4, 3, 2, 1]);
    }

    #[test]
    fn equal_items_keep_their_order() {
        let mut v = vec![(1, 'a'), (0, 'b'), (1, 'c'), (0, 'd'), (1, 'e')];
        sort_by(&mut v, |a, b| a.0.cmp(&b.0));
        assert_eq!(v, vec![(0, 'b'), (0, 'd'), (1, 'a'), (1, 'c'), (1, 'e')]);
    }

    #[test]
    fn empty_and_single_lists_are_left_alone() {
        let mut empty: Vec<String> = Vec::new();
        sort_by(&mut empty, Ord::cmp);
        assert!(empty.is_empty());
        let mut one = vec![String::from("x")];
        sort_by(&mut one, Ord::cmp);
        assert_eq!(one, vec!["x"]);
    }

    proptest! {
        #[test]
        fn matches_the_std_stable_sort(v in proptest::collection::vec((0u8..8, any::<u32>()), 0..200)) {
            let mut ours = v.clone();
            sort_by(&mut ours, |a, b| a.0.cmp(&b.0));
            let mut std = v;
            std.sort_by_key(|a| a.0);
            prop_assert_eq!(ours, std);
        }
    }
}
