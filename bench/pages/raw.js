// The transport's limit for bench row 2: one ordered RTCDataChannel between
// two pages, signalled by the harness (non-trickle SDP, as Swarmdrop and
// WebTorrent do). The sender does nothing but send `total` bytes in messages
// of `size` bytes with bufferedAmount backpressure; the receiver counts them.
'use strict';
(() => {
  let pc = null;
  let channel = null;
  let received = 0;
  let waiter = null; // {total, resolve}

  function gathered() {
    if (pc.iceGatheringState === 'complete') return Promise.resolve();
    return new Promise((resolve) => {
      pc.addEventListener('icegatheringstatechange', () => {
        if (pc.iceGatheringState === 'complete') resolve();
      });
    });
  }

  function opened(dc) {
    if (dc.readyState === 'open') return Promise.resolve(dc);
    return new Promise((resolve) => dc.addEventListener('open', () => resolve(dc), { once: true }));
  }

  function count(dc) {
    dc.binaryType = 'arraybuffer';
    dc.onmessage = (e) => {
      received += e.data.byteLength;
      if (waiter && received >= waiter.total) {
        waiter.resolve(received);
        waiter = null;
      }
    };
  }

  window.raw = {
    /** Sender: makes the channel and the offer; resolves to the SDP with every candidate. */
    async offer() {
      pc = new RTCPeerConnection();
      channel = pc.createDataChannel('raw', { ordered: true });
      channel.binaryType = 'arraybuffer';
      await pc.setLocalDescription(await pc.createOffer());
      await gathered();
      return pc.localDescription.sdp;
    },
    /** Receiver: answers the offer; resolves to the answer's SDP. */
    async answer(sdp) {
      pc = new RTCPeerConnection();
      const got = new Promise((resolve) => (pc.ondatachannel = (e) => resolve(e.channel)));
      await pc.setRemoteDescription({ type: 'offer', sdp });
      await pc.setLocalDescription(await pc.createAnswer());
      await gathered();
      got.then((dc) => {
        channel = dc;
        count(dc);
      });
      return pc.localDescription.sdp;
    },
    /** Sender: takes the answer and waits for the channel to open. */
    async accept(sdp) {
      await pc.setRemoteDescription({ type: 'answer', sdp });
      await opened(channel);
    },
    /** Receiver: resolves once the channel is open. */
    async ready() {
      while (!channel) await new Promise((r) => setTimeout(r, 10));
      await opened(channel);
    },
    /** Receiver: resolves once `total` bytes have arrived since the last reset. */
    until(total) {
      if (received >= total) return Promise.resolve(received);
      return new Promise((resolve) => (waiter = { total, resolve }));
    },
    reset() {
      received = 0;
    },
    /** Sender: sends `total` bytes in messages of `size`, keeping bufferedAmount between low and high. */
    async send(total, size, low, high) {
      const buf = new Uint8Array(size);
      for (let i = 0; i < size; i += 65536) crypto.getRandomValues(buf.subarray(i, Math.min(size, i + 65536)));
      channel.bufferedAmountLowThreshold = low;
      let sent = 0;
      while (sent < total) {
        if (channel.bufferedAmount > high) {
          await new Promise((resolve) => channel.addEventListener('bufferedamountlow', resolve, { once: true }));
        }
        const n = Math.min(size, total - sent);
        channel.send(n === size ? buf : buf.subarray(0, n));
        sent += n;
      }
      return sent;
    },
  };
})();
