//! WebRTC peers: one `RTCPeerConnection` per peer with one ordered, reliable
//! data channel carrying the BEP 3 byte stream; non-trickle signalling
//! (each SDP goes out once, after ICE gathering, with every candidate).

use std::cell::Cell;
use std::time::Duration;

use gloo::events::EventListener;
use gloo_timers::future::TimeoutFuture;
use js_sys::{ArrayBuffer, Reflect, Uint8Array};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::{spawn_local, JsFuture};
use web_sys::{
    MessageEvent, RtcConfiguration, RtcDataChannel, RtcDataChannelEvent, RtcDataChannelInit,
    RtcDataChannelState, RtcDataChannelType, RtcIceGatheringState, RtcPeerConnection,
    RtcPeerConnectionState, RtcSdpType, RtcSessionDescriptionInit,
};

use crate::engine::api::ConnId;

use super::super::host::{now_ms, post, Signalled, Weak, Work};
use super::error::{js_message, NetError};

/// The label of our data channel (peers accept any label).
const CHANNEL_LABEL: &str = "swarmdrop";
/// How often ICE gathering is checked while waiting for it to complete.
const GATHER_POLL_MS: u32 = 10;
/// Largest data channel message while the connection does not say what
/// its peer takes (`RTCSctpTransport.maxMessageSize`): RFC 8841's default
/// for a peer that announces no `a=max-message-size`.
const DEFAULT_MAX_MESSAGE: usize = 64 * 1024;

/// What every peer connection is made with.
#[derive(Clone, Debug)]
pub struct RtcSettings {
    /// `RTCConfiguration` (ICE servers; none are needed on loopback).
    pub configuration: RtcConfiguration,
    /// `bufferedAmountLowThreshold` of every channel: the engine's
    /// low-water mark.
    pub low_water: u32,
    /// Longest wait for ICE gathering before the SDP goes out with the
    /// candidates found so far.
    pub gather_timeout: Duration,
}

/// One peer connection and its data channel. Dropping it removes every
/// listener (freeing their closures) and closes the connection.
pub struct PeerLink {
    pc: RtcPeerConnection,
    channel: Option<RtcDataChannel>,
    _pc_listeners: Vec<EventListener>,
    channel_listeners: Vec<EventListener>,
    /// The engine waits for `bufferedamountlow`.
    watching: bool,
    /// The largest message the peer takes, once the connection says (0: not yet).
    max_message: Cell<usize>,
}

impl PeerLink {
    /// Creates a connection with its data channel and starts making an
    /// offer; [`Work::Signalled`] brings the SDP once gathering is done.
    pub fn offer(conn: ConnId, settings: &RtcSettings, host: &Weak) -> Result<PeerLink, NetError> {
        let pc = RtcPeerConnection::new_with_configuration(&settings.configuration)
            .map_err(|e| NetError::browser(&e))?;
        let init = RtcDataChannelInit::new();
        init.set_ordered(true);
        let channel = pc.create_data_channel_with_data_channel_dict(CHANNEL_LABEL, &init);
        let mut link = PeerLink {
            _pc_listeners: pc_listeners(&pc, conn, host),
            pc,
            channel: None,
            channel_listeners: Vec::new(),
            watching: false,
            max_message: Cell::new(0),
        };
        link.attach_channel(conn, channel, settings.low_water, host);
        let (pc, host, timeout) = (link.pc.clone(), host.clone(), settings.gather_timeout);
        spawn_local(async move {
            let result = make_offer(&pc, timeout).await.map(Signalled::Offer);
            post(&host, Work::Signalled { conn, result });
        });
        Ok(link)
    }

    /// Creates a connection for a remote offer and starts making the
    /// answer; the remote's data channel arrives as [`Work::Channel`].
    pub fn answer(
        conn: ConnId,
        offer_sdp: String,
        settings: &RtcSettings,
        host: &Weak,
    ) -> Result<PeerLink, NetError> {
        let pc = RtcPeerConnection::new_with_configuration(&settings.configuration)
            .map_err(|e| NetError::browser(&e))?;
        let mut listeners = pc_listeners(&pc, conn, host);
        let h = host.clone();
        listeners.push(EventListener::new(&pc, "datachannel", move |event| {
            if let Some(e) = event.dyn_ref::<RtcDataChannelEvent>() {
                post(
                    &h,
                    Work::Channel {
                        conn,
                        channel: e.channel(),
                    },
                );
            }
        }));
        let link = PeerLink {
            pc,
            channel: None,
            _pc_listeners: listeners,
            channel_listeners: Vec::new(),
            watching: false,
            max_message: Cell::new(0),
        };
        let (pc, host, timeout) = (link.pc.clone(), host.clone(), settings.gather_timeout);
        spawn_local(async move {
            let result = make_answer(&pc, &offer_sdp, timeout)
                .await
                .map(Signalled::Answer);
            post(&host, Work::Signalled { conn, result });
        });
        Ok(link)
    }

    /// Applies the remote answer to our offer; a failure comes back as
    /// [`Work::Signalled`] with an error.
    pub fn accept_answer(&self, conn: ConnId, answer_sdp: String, host: &Weak) {
        let (pc, host) = (self.pc.clone(), host.clone());
        spawn_local(async move {
            let desc = RtcSessionDescriptionInit::new(RtcSdpType::Answer);
            desc.set_sdp(&answer_sdp);
            if let Err(e) = JsFuture::from(pc.set_remote_description(&desc)).await {
                post(
                    &host,
                    Work::Signalled {
                        conn,
                        result: Err(format!("the answer was refused: {}", js_message(&e))),
                    },
                );
            }
        });
    }

    /// Takes the data channel (ours, or the remote's on the answering side)
    /// and listens to it. Reports it open at once if it already is.
    pub fn attach_channel(
        &mut self,
        conn: ConnId,
        channel: RtcDataChannel,
        low_water: u32,
        host: &Weak,
    ) {
        if self.channel.is_some() {
            // A second channel from the remote: we speak on the first only.
            channel.close();
            return;
        }
        channel.set_binary_type(RtcDataChannelType::Arraybuffer);
        channel.set_buffered_amount_low_threshold(low_water);
        let on = |name: &'static str, work: fn(ConnId) -> Work| {
            let host = host.clone();
            EventListener::new(&channel, name, move |_| post(&host, work(conn)))
        };
        let mut listeners = vec![
            on("open", |conn| Work::PeerOpened { conn }),
            on("bufferedamountlow", |conn| Work::PeerLow { conn }),
            on("close", |conn| Work::PeerClosed { conn }),
        ];
        let h = host.clone();
        listeners.push(EventListener::new(&channel, "message", move |event| {
            let Some(data) = event.dyn_ref::<MessageEvent>().map(MessageEvent::data) else {
                return;
            };
            let bytes = if let Some(buffer) = data.dyn_ref::<ArrayBuffer>() {
                Uint8Array::new(buffer).to_vec()
            } else if let Some(text) = data.as_string() {
                // A text message is not part of the protocol; its bytes are
                // what the stream would have carried.
                text.into_bytes()
            } else {
                return;
            };
            post(&h, Work::PeerData { conn, data: bytes });
        }));
        if channel.ready_state() == RtcDataChannelState::Open {
            post(host, Work::PeerOpened { conn });
        }
        self.channel_listeners = listeners;
        self.channel = Some(channel);
    }

    /// Hands bytes to the channel, in messages no larger than the peer
    /// takes (the BEP 3 stream may be cut anywhere).
    pub fn send(&self, data: &[u8]) -> Result<(), NetError> {
        let channel = self
            .channel
            .as_ref()
            .ok_or_else(|| NetError::Browser("the data channel is not there yet".into()))?;
        for message in data.chunks(self.max_message()) {
            channel
                .send_with_u8_array(message)
                .map_err(|e| NetError::browser(&e))?;
        }
        Ok(())
    }

    /// The largest message the peer takes: the connection's
    /// `sctp.maxMessageSize` once it has one (kept), [`DEFAULT_MAX_MESSAGE`]
    /// until then.
    fn max_message(&self) -> usize {
        let known = self.max_message.get();
        if known != 0 {
            return known;
        }
        let size = Reflect::get(&self.pc, &JsValue::from_str("sctp"))
            .ok()
            .filter(|sctp| sctp.is_object())
            .and_then(|sctp| Reflect::get(&sctp, &JsValue::from_str("maxMessageSize")).ok())
            .and_then(|v| v.as_f64());
        match size {
            // Infinity (no limit) saturates; a limit under 1 KiB is not a
            // real browser's, and would turn every send into many.
            Some(n) if n >= 1024.0 => {
                let n = n as usize;
                self.max_message.set(n);
                n
            }
            _ => DEFAULT_MAX_MESSAGE,
        }
    }

    /// The engine waits until the channel drains: returns `true` if it
    /// already has (then nothing is watched).
    pub fn watch_writable(&mut self, low_water: u32) -> bool {
        let buffered = self
            .channel
            .as_ref()
            .map_or(0, RtcDataChannel::buffered_amount);
        self.watching = buffered > low_water;
        !self.watching
    }

    /// `bufferedamountlow` fired: whether the engine was waiting for it.
    pub fn drained(&mut self) -> bool {
        std::mem::replace(&mut self.watching, false)
    }
}

impl Drop for PeerLink {
    fn drop(&mut self) {
        if let Some(c) = &self.channel {
            c.close();
        }
        self.pc.close();
    }
}

/// Listeners on the connection itself: its failure or close ends the peer.
fn pc_listeners(pc: &RtcPeerConnection, conn: ConnId, host: &Weak) -> Vec<EventListener> {
    let (h, target) = (host.clone(), pc.clone());
    vec![EventListener::new(pc, "connectionstatechange", move |_| {
        if matches!(
            target.connection_state(),
            RtcPeerConnectionState::Failed | RtcPeerConnectionState::Closed
        ) {
            post(&h, Work::PeerClosed { conn });
        }
    })]
}

async fn make_offer(pc: &RtcPeerConnection, timeout: Duration) -> Result<String, String> {
    let offer = JsFuture::from(pc.create_offer())
        .await
        .map_err(|e| format!("createOffer failed: {}", js_message(&e)))?;
    let sdp = sdp_of(&offer)?;
    let desc = RtcSessionDescriptionInit::new(RtcSdpType::Offer);
    desc.set_sdp(&sdp);
    JsFuture::from(pc.set_local_description(&desc))
        .await
        .map_err(|e| format!("setLocalDescription failed: {}", js_message(&e)))?;
    gathered_sdp(pc, timeout).await
}

async fn make_answer(
    pc: &RtcPeerConnection,
    offer_sdp: &str,
    timeout: Duration,
) -> Result<String, String> {
    let remote = RtcSessionDescriptionInit::new(RtcSdpType::Offer);
    remote.set_sdp(offer_sdp);
    JsFuture::from(pc.set_remote_description(&remote))
        .await
        .map_err(|e| format!("the offer was refused: {}", js_message(&e)))?;
    let answer = JsFuture::from(pc.create_answer())
        .await
        .map_err(|e| format!("createAnswer failed: {}", js_message(&e)))?;
    let sdp = sdp_of(&answer)?;
    let desc = RtcSessionDescriptionInit::new(RtcSdpType::Answer);
    desc.set_sdp(&sdp);
    JsFuture::from(pc.set_local_description(&desc))
        .await
        .map_err(|e| format!("setLocalDescription failed: {}", js_message(&e)))?;
    gathered_sdp(pc, timeout).await
}

fn sdp_of(description: &JsValue) -> Result<String, String> {
    Reflect::get(description, &JsValue::from_str("sdp"))
        .ok()
        .and_then(|v| v.as_string())
        .ok_or_else(|| "the session description has no sdp".to_owned())
}

/// Waits for ICE gathering to complete (or `timeout`), then returns the
/// local description with every candidate found.
async fn gathered_sdp(pc: &RtcPeerConnection, timeout: Duration) -> Result<String, String> {
    let start = now_ms();
    let limit = timeout.as_secs_f64() * 1000.0;
    while pc.ice_gathering_state() != RtcIceGatheringState::Complete && now_ms() - start < limit {
        TimeoutFuture::new(GATHER_POLL_MS).await;
    }
    pc.local_description()
        .map(|d| d.sdp())
        .ok_or_else(|| "the connection closed while gathering".to_owned())
}
