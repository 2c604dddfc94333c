//! Tests of announce scheduling, in virtual time.

use aquatic_ws_protocol::incoming::{AnnounceEvent, AnnounceRequest, InMessage};

use super::*;
use crate::engine::tracker::{parse_to_tracker, AnswerLookup, OfferBook, OFFER_TIMEOUT};

const HASH: InfoHash = InfoHash([0xab; 20]);
const ME: PeerId = PeerId(*b"-SD0100-abcdefghijkl");

fn at(secs: u64) -> Instant {
    Instant::ZERO + Duration::from_secs(secs)
}

fn stats() -> AnnounceStats {
    AnnounceStats {
        uploaded: 1,
        downloaded: 2,
        left: Some(3),
    }
}

fn offers(n: usize) -> Vec<(OfferId, String)> {
    (0..n)
        .map(|i| (OfferId([i as u8; 20]), format!("sdp {i}")))
        .collect()
}

fn parsed(frame: &str) -> AnnounceRequest {
    match parse_to_tracker(frame) {
        Ok(InMessage::AnnounceRequest(r)) => r,
        other => panic!("not an announce: {other:?}"),
    }
}

/// Connected and started at `now`.
fn running(now: Instant) -> Announcer {
    let mut a = Announcer::new(HASH, ME);
    a.on_connected(now);
    a.start(now);
    a
}

/// Polls at `now` (which must be due), answers the need with as many offers
/// as asked, and returns the need and the announce as the tracker reads it.
fn announce_due(a: &mut Announcer, now: Instant) -> (AnnounceNeed, AnnounceRequest) {
    let need = a.poll(now).expect("an announce is due");
    let frame = a
        .announce(now, &stats(), offers(need.offers_wanted))
        .expect("the need is outstanding");
    (need, parsed(&frame))
}

#[test]
fn nothing_is_announced_before_start_or_while_disconnected() {
    let mut a = Announcer::new(HASH, ME);
    assert_eq!(a.poll(at(0)), None);
    a.start(at(0));
    assert_eq!(a.poll(at(0)), None, "not connected yet");
    assert_eq!(a.poll_timeout(), None);
    a.on_connected(at(5));
    assert_eq!(a.poll_timeout(), Some(at(5)));
    assert_eq!(
        a.poll(at(5)),
        Some(AnnounceNeed {
            offers_wanted: DEFAULT_OFFERS,
            event: Some(Event::Started)
        })
    );
}

#[test]
fn first_announce_is_started_with_the_wanted_offers_and_stats() {
    let mut a = running(at(0));
    a.set_offers_wanted(3);
    let need = a.poll(at(0)).unwrap();
    assert_eq!(need.offers_wanted, 3);
    assert_eq!(a.poll(at(1)), None, "one need at a time");
    assert_eq!(
        a.poll_timeout(),
        None,
        "waiting for the caller, not the clock"
    );
    // Offers take a while to gather their candidates.
    let frame = a.announce(at(2), &stats(), offers(3)).unwrap();
    let r = parsed(&frame);
    assert_eq!(r.info_hash.0, HASH.0);
    assert_eq!(r.peer_id.0, ME.0);
    assert_eq!(r.event, Some(AnnounceEvent::Started));
    assert_eq!(r.offers.map(|o| o.len()), Some(3));
    assert_eq!(r.numwant, Some(3));
    assert_eq!(r.bytes_left, Some(3));
    let v: serde_json::Value = serde_json::from_str(&frame).unwrap();
    assert_eq!(
        (v["uploaded"].as_u64(), v["downloaded"].as_u64()),
        (Some(1), Some(2))
    );
    assert!(a.is_announced());
}

#[test]
fn re_announces_every_default_interval_with_fresh_offers() {
    let mut a = running(at(0));
    announce_due(&mut a, at(2));
    assert_eq!(a.poll_timeout(), Some(at(122)));
    assert_eq!(a.poll(at(121)), None);
    let (need, r) = announce_due(&mut a, at(122));
    assert_eq!(need.event, None);
    assert_eq!(r.event, None);
    assert_eq!(r.offers.map(|o| o.len()), Some(DEFAULT_OFFERS));
    assert_eq!(a.poll_timeout(), Some(at(242)));
}

#[test]
fn the_trackers_interval_is_honoured_from_the_last_announce() {
    let mut a = running(at(0));
    announce_due(&mut a, at(0));
    assert!(a.on_response(at(1), Some(Duration::from_secs(60))));
    assert_eq!(a.interval(), Duration::from_secs(60));
    assert_eq!(a.poll_timeout(), Some(at(60)));
    assert_eq!(a.poll(at(59)), None);
    announce_due(&mut a, at(60));
    assert_eq!(a.poll_timeout(), Some(at(120)));
}

#[test]
fn the_trackers_interval_is_clamped_to_sane_bounds() {
    let mut a = running(at(0));
    announce_due(&mut a, at(0));
    a.on_response(at(0), Some(Duration::from_secs(1)));
    assert_eq!(a.interval(), MIN_INTERVAL);
    announce_due(&mut a, at(30));
    a.on_response(at(30), Some(Duration::from_secs(36_000)));
    assert_eq!(a.interval(), MAX_INTERVAL);
    assert_eq!(a.poll_timeout(), Some(at(30) + MAX_INTERVAL));
}

#[test]
fn responses_nobody_awaits_change_nothing() {
    // aquatic_ws also answers the announces that carry our answers: such a
    // response must not postpone the next announce.
    let mut a = running(at(0));
    announce_due(&mut a, at(0));
    assert!(a.on_response(at(1), None));
    assert!(!a.on_response(at(100), Some(Duration::from_secs(1000))));
    assert_eq!(a.interval(), DEFAULT_INTERVAL);
    assert_eq!(a.poll_timeout(), Some(at(120)));
    assert!(!a.on_failure(at(100)), "a failure about something else");
    assert!(a.is_announced());
    assert_eq!(a.poll_timeout(), Some(at(120)));
}

#[test]
fn failures_back_off_exponentially_up_to_the_cap_and_retry_with_started() {
    let mut a = running(at(0));
    let mut now = at(0);
    let mut delays = Vec::new();
    for _ in 0..8 {
        let (need, _) = announce_due(&mut a, now);
        assert_eq!(need.event, Some(Event::Started));
        assert!(a.on_failure(now));
        assert!(!a.is_announced());
        let next = a.poll_timeout().unwrap();
        assert_eq!(
            a.poll(Instant::from_duration(
                next.since_origin() - Duration::from_millis(1)
            )),
            None
        );
        delays.push((next - now).as_secs());
        now = next;
    }
    assert_eq!(delays, vec![15, 30, 60, 120, 240, 480, 600, 600]);
    // A success resets the backoff.
    announce_due(&mut a, now);
    assert!(a.on_response(now, None));
    let (need, _) = announce_due(&mut a, now + DEFAULT_INTERVAL);
    assert_eq!(need.event, None);
    assert!(a.on_failure(now + DEFAULT_INTERVAL));
    assert_eq!(
        a.poll_timeout(),
        Some(now + DEFAULT_INTERVAL + BACKOFF_BASE)
    );
}

#[test]
fn a_reconnect_resets_the_backoff_and_announces_started_at_once() {
    let mut a = running(at(0));
    for t in [0, 15, 45] {
        announce_due(&mut a, at(t));
        assert!(a.on_failure(at(t)));
    }
    assert_eq!(a.poll_timeout(), Some(at(45 + 60)));
    a.on_disconnected();
    assert_eq!(a.poll_timeout(), None);
    assert_eq!(a.poll(at(200)), None);
    a.on_connected(at(300));
    let (need, _) = announce_due(&mut a, at(300));
    assert_eq!(need.event, Some(Event::Started));
    assert!(a.on_failure(at(300)));
    assert_eq!(a.poll_timeout(), Some(at(315)), "backoff starts over");
}

#[test]
fn a_disconnect_voids_the_outstanding_need_and_the_tracker_forgets_us() {
    let mut a = running(at(0));
    announce_due(&mut a, at(0));
    let need = a.poll(at(120)).unwrap();
    assert_eq!(need.event, None);
    a.on_disconnected();
    assert!(!a.is_announced());
    assert_eq!(a.announce(at(121), &stats(), offers(5)), None);
    a.on_connected(at(130));
    let (need, _) = announce_due(&mut a, at(130));
    assert_eq!(need.event, Some(Event::Started));
}

#[test]
fn completed_is_sent_once_at_once_without_offers() {
    let mut a = running(at(0));
    announce_due(&mut a, at(0));
    a.complete(at(10));
    assert_eq!(a.poll_timeout(), Some(at(10)));
    let (need, r) = announce_due(&mut a, at(10));
    assert_eq!(
        need,
        AnnounceNeed {
            offers_wanted: 0,
            event: Some(Event::Completed)
        }
    );
    assert_eq!(r.event, Some(AnnounceEvent::Completed));
    assert!(r.offers.is_none());
    a.complete(at(20));
    assert_eq!(a.poll_timeout(), Some(at(130)));
    let (need, _) = announce_due(&mut a, at(130));
    assert_eq!(need.event, None);
    // Nor after a reconnect.
    a.on_disconnected();
    a.on_connected(at(140));
    assert_eq!(announce_due(&mut a, at(140)).0.event, Some(Event::Started));
    assert_eq!(a.poll_timeout(), Some(at(260)));
    assert_eq!(announce_due(&mut a, at(260)).0.event, None);
}

#[test]
fn completed_is_not_needed_when_a_started_follows_the_finish() {
    let mut a = running(at(0));
    a.complete(at(0));
    let (need, _) = announce_due(&mut a, at(0));
    assert_eq!(need.event, Some(Event::Started));
    assert_eq!(a.poll_timeout(), Some(at(120)));
    assert_eq!(announce_due(&mut a, at(120)).0.event, None);
}

#[test]
fn a_finish_during_a_regular_announce_is_announced_right_after_it() {
    let mut a = running(at(0));
    announce_due(&mut a, at(0));
    let need = a.poll(at(120)).unwrap();
    a.complete(at(121));
    assert_eq!(a.poll(at(121)), None, "the regular need is still out");
    a.announce(at(123), &stats(), offers(need.offers_wanted))
        .unwrap();
    assert_eq!(a.poll_timeout(), Some(at(123)));
    assert_eq!(
        announce_due(&mut a, at(123)).0.event,
        Some(Event::Completed)
    );
}

#[test]
fn stop_sends_stopped_once_and_goes_idle() {
    let mut a = running(at(0));
    announce_due(&mut a, at(0));
    a.stop(at(50));
    assert!(!a.is_running());
    let (need, r) = announce_due(&mut a, at(50));
    assert_eq!(
        need,
        AnnounceNeed {
            offers_wanted: 0,
            event: Some(Event::Stopped)
        }
    );
    assert_eq!(r.event, Some(AnnounceEvent::Stopped));
    assert!(r.offers.is_none());
    assert_eq!(a.poll_timeout(), None);
    assert_eq!(a.poll(at(1000)), None);
    assert!(!a.on_response(at(51), Some(Duration::from_secs(60))));
}

#[test]
fn stop_before_the_tracker_holds_us_sends_nothing() {
    let mut a = running(at(0));
    let _started = a.poll(at(0)).unwrap();
    a.stop(at(1));
    assert_eq!(a.announce(at(2), &stats(), offers(5)), None);
    assert_eq!(a.poll(at(2)), None);
    assert_eq!(a.poll_timeout(), None);
}

#[test]
fn a_disconnect_while_stopping_cancels_the_stop() {
    let mut a = running(at(0));
    announce_due(&mut a, at(0));
    a.stop(at(5));
    a.on_disconnected();
    a.on_connected(at(6));
    assert_eq!(a.poll(at(6)), None);
    assert_eq!(a.poll_timeout(), None);
}

#[test]
fn start_after_stop_announces_started_again() {
    let mut a = running(at(0));
    announce_due(&mut a, at(0));
    a.stop(at(5));
    announce_due(&mut a, at(5));
    a.start(at(9));
    assert_eq!(announce_due(&mut a, at(9)).0.event, Some(Event::Started));
}

#[test]
fn start_while_a_stop_is_pending_resumes_without_leaving() {
    let mut a = running(at(0));
    announce_due(&mut a, at(0));
    a.stop(at(5));
    a.start(at(6));
    assert!(a.is_running());
    assert_eq!(announce_due(&mut a, at(6)).0.event, None);
}

#[test]
fn offers_wanted_is_capped_and_extra_offers_are_left_out() {
    let mut a = running(at(0));
    a.set_offers_wanted(50);
    assert_eq!(a.offers_wanted(), MAX_OFFERS);
    a.set_offers_wanted(2);
    let need = a.poll(at(0)).unwrap();
    assert_eq!(need.offers_wanted, 2);
    let frame = a.announce(at(0), &stats(), offers(4)).unwrap();
    let r = parsed(&frame);
    assert_eq!(r.offers.map(|o| o.len()), Some(2));
    assert_eq!(r.numwant, Some(2));
}

#[test]
fn a_seeder_wanting_no_offers_still_re_announces_to_stay_in_the_swarm() {
    let mut a = running(at(0));
    a.set_offers_wanted(0);
    let (need, r) = announce_due(&mut a, at(0));
    assert_eq!(need.offers_wanted, 0);
    assert_eq!(r.offers.map(|o| o.len()), Some(0));
    assert_eq!(r.numwant, Some(0));
    assert_eq!(announce_due(&mut a, at(120)).0.offers_wanted, 0);
}

#[test]
fn backoff_doubles_to_its_cap_without_overflow() {
    let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(10));
    let delays: Vec<u64> = (0..6).map(|_| b.next_delay().as_secs()).collect();
    assert_eq!(delays, vec![1, 2, 4, 8, 10, 10]);
    for _ in 0..100 {
        assert_eq!(b.next_delay(), Duration::from_secs(10));
    }
    assert_eq!(b.failures(), 106);
    b.reset();
    assert_eq!(b.next_delay(), Duration::from_secs(1));
}

#[test]
fn jittered_backoff_stays_in_the_upper_half_and_follows_the_seed() {
    let draws = |seed| {
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut b = Backoff::default();
        (0..10)
            .map(|_| b.next_delay_jittered(&mut rng))
            .collect::<Vec<_>>()
    };
    let plain: Vec<Duration> = {
        let mut b = Backoff::default();
        (0..10).map(|_| b.next_delay()).collect()
    };
    let jittered = draws(7);
    assert_eq!(jittered, draws(7));
    assert_ne!(jittered, plain);
    for (j, p) in jittered.iter().zip(&plain) {
        assert!(*j >= *p / 2 && j <= p, "{j:?} not in [{:?}, {p:?}]", *p / 2);
    }
}

/// The session's loop in virtual time: poll, make offers, record them in an
/// offer book, send, step to the earliest timeout; the tracker answers every
/// announce and one offer gets an answer. Proves the schedule and the 50 s
/// offer expiry together, and that the loop always has a next timeout.
#[test]
fn virtual_time_loop_announces_on_schedule_and_expires_unanswered_offers() {
    let mut rng = fastrand::Rng::with_seed(3);
    let mut a = running(at(0));
    a.set_offers_wanted(2);
    let mut book: OfferBook<u32> = OfferBook::new();
    let mut next_token = 0u32;
    let mut sent: Vec<(Instant, Option<Event>)> = Vec::new();
    let mut closed: Vec<(Instant, u32)> = Vec::new();
    let mut answered = None;
    let mut now = at(0);
    let end = at(600);

    for _ in 0..1000 {
        if let Some(need) = a.poll(now) {
            let mut made = Vec::new();
            for _ in 0..need.offers_wanted {
                let id = book.fresh_id(&mut rng);
                book.insert(now, HASH, id, next_token).unwrap();
                next_token += 1;
                made.push((id, "sdp".to_string()));
            }
            let first = made.first().map(|(id, _)| *id);
            let frame = a.announce(now, &stats(), made).unwrap();
            sent.push((
                now,
                parsed(&frame).event.map(|e| match e {
                    AnnounceEvent::Started => Event::Started,
                    AnnounceEvent::Completed => Event::Completed,
                    AnnounceEvent::Stopped => Event::Stopped,
                    AnnounceEvent::Update => unreachable!("never sent"),
                }),
            ));
            assert!(a.on_response(now, Some(Duration::from_secs(120))));
            // The first offer of the second announce is answered 3 s later.
            if sent.len() == 2 {
                answered = first.map(|id| (now + Duration::from_secs(3), id));
            }
        }
        if let Some((when, id)) = answered {
            if when <= now {
                assert!(matches!(
                    book.answer(now, HASH, id),
                    AnswerLookup::Matched(_)
                ));
                answered = None;
            }
        }
        closed.extend(book.expire(now).into_iter().map(|t| (now, t)));
        let next = [
            a.poll_timeout(),
            book.poll_timeout(),
            answered.map(|(t, _)| t),
        ]
        .into_iter()
        .flatten()
        .min()
        .expect("the loop always has a next timeout");
        assert!(next >= now, "timeouts never go back in time");
        if next > end {
            break;
        }
        now = next;
    }

    let times: Vec<u64> = sent
        .iter()
        .map(|(t, _)| t.since_origin().as_secs())
        .collect();
    assert_eq!(times, vec![0, 120, 240, 360, 480, 600]);
    assert_eq!(sent[0].1, Some(Event::Started));
    assert!(sent[1..].iter().all(|(_, e)| e.is_none()));
    // 12 offers made, one answered; the rest closed exactly 50 s after they
    // were made (the last announce's offers expire after `end`).
    assert_eq!(next_token, 12);
    assert_eq!(closed.len(), 9);
    for (when, token) in &closed {
        let made_at = sent[(*token / 2) as usize].0;
        assert_eq!(*when, made_at + OFFER_TIMEOUT, "token {token}");
    }
    assert_eq!(book.len(), 2);
}

#[test]
fn a_lonely_download_announces_again_after_5_10_20_seconds_up_to_the_interval() {
    let mut a = running(at(0));
    let (need, _) = announce_due(&mut a, at(0));
    assert_eq!(need.event, Some(Event::Started));
    assert!(a.on_response(at(1), None));
    assert_eq!(a.poll_timeout(), Some(at(0) + DEFAULT_INTERVAL));
    // Its offers went unanswered (or their connections failed) at 3 s.
    a.set_lonely(at(3), true);
    assert_eq!(a.poll_timeout(), Some(at(5)), "5 s after the last announce");
    assert_eq!(a.poll(at(4)), None);
    let mut last = at(5);
    for delay in [10, 20, 40, 80, 120, 120] {
        let (need, request) = announce_due(&mut a, last);
        assert_eq!(need.event, None, "a regular announce");
        assert_eq!(need.offers_wanted, DEFAULT_OFFERS, "with fresh offers");
        assert_eq!(request.offers.map(|o| o.len()), Some(DEFAULT_OFFERS));
        assert!(a.on_response(last + Duration::from_secs(1), None));
        let next = last + Duration::from_secs(delay);
        assert_eq!(a.poll_timeout(), Some(next), "then after {delay} s");
        last = next;
    }
}

#[test]
fn a_peer_connecting_brings_back_the_regular_interval_and_the_backoff_restarts() {
    let mut a = running(at(0));
    announce_due(&mut a, at(0));
    a.set_lonely(at(1), true);
    announce_due(&mut a, at(5));
    assert_eq!(a.poll_timeout(), Some(at(15)));
    a.set_lonely(at(7), false);
    assert_eq!(a.poll_timeout(), Some(at(5) + DEFAULT_INTERVAL));
    // Alone again later: 5 s again, not 20 s.
    a.set_lonely(at(60), true);
    assert!(
        a.poll_timeout().is_some_and(|t| t <= at(60)),
        "already more than 5 s since the last announce: due at once"
    );
    announce_due(&mut a, at(60));
    assert_eq!(a.poll_timeout(), Some(at(70)));
    // Saying the same again changes nothing.
    a.set_lonely(at(61), true);
    assert_eq!(a.poll_timeout(), Some(at(70)));
}

#[test]
fn loneliness_does_not_move_started_completed_or_a_retry_after_a_failure() {
    let mut a = running(at(0));
    let need = a.poll(at(0)).unwrap();
    a.set_lonely(at(0), true);
    a.announce(at(0), &stats(), offers(need.offers_wanted))
        .unwrap();
    assert!(a.on_failure(at(1)));
    assert_eq!(a.poll_timeout(), Some(at(1) + BACKOFF_BASE));
    a.set_lonely(at(2), false);
    a.set_lonely(at(2), true);
    assert_eq!(
        a.poll_timeout(),
        Some(at(1) + BACKOFF_BASE),
        "the failure's backoff holds"
    );
    let (need, _) = announce_due(&mut a, at(1) + BACKOFF_BASE);
    assert_eq!(need.event, Some(Event::Started));
    a.complete(at(17));
    assert_eq!(a.poll_timeout(), Some(at(17)), "completed goes out at once");
}
