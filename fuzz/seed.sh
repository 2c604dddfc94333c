#!/usr/bin/env bash
# Writes the seed corpora of every fuzz target into fuzz/corpus/<target>/
# (git-ignored): the torrents in tests/vectors, their info dictionaries,
# magnet links, hand-written tracker frames of both directions, and peer-wire
# streams. Safe to re-run: seeds are named by their content's SHA-1 (as
# libFuzzer names the inputs it adds), so nothing is duplicated and what a
# run added is kept.
#
# Needs: bash, python3.   Usage: fuzz/seed.sh   (from anywhere)
set -euo pipefail

fuzz="$(cd "$(dirname "$0")" && pwd)"

python3 - "$fuzz" <<'PY'
import hashlib, os, struct, sys

fuzz = sys.argv[1]
vectors = os.path.join(fuzz, "..", "tests", "vectors")
counts = {}


def seed(target, data):
    if isinstance(data, str):
        data = data.encode("utf-8")
    d = os.path.join(fuzz, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, hashlib.sha1(data).hexdigest()), "wb") as f:
        f.write(data)
    counts[target] = counts.get(target, 0) + 1


# ------------------------------------------------------------------ bencode

def bdecode(b, i=0):
    """(value, end) of the bencoded value at b[i:]; dict values keep their
    raw span as (value, raw)."""
    c = b[i:i + 1]
    if c == b"i":
        j = b.index(b"e", i)
        return int(b[i + 1:j]), j + 1
    if c == b"l":
        out, i = [], i + 1
        while b[i:i + 1] != b"e":
            v, i = bdecode(b, i)
            out.append(v)
        return out, i + 1
    if c == b"d":
        out, i = {}, i + 1
        while b[i:i + 1] != b"e":
            k, i = bdecode(b, i)
            start = i
            v, i = bdecode(b, i)
            out[k] = (v, b[start:i])
        return out, i + 1
    j = b.index(b":", i)
    n = int(b[i:j])
    return b[j + 1:j + 1 + n], j + 1 + n


def benc(v):
    if isinstance(v, int):
        return b"i%de" % v
    if isinstance(v, str):
        v = v.encode("utf-8")
    if isinstance(v, bytes):
        return b"%d:%s" % (len(v), v)
    if isinstance(v, list):
        return b"l" + b"".join(benc(x) for x in v) + b"e"
    return b"d" + b"".join(benc(k) + benc(v[k]) for k in sorted(v)) + b"e"


torrents = sorted(f for f in os.listdir(vectors) if f.endswith(".torrent"))
infos = []
for name in torrents:
    with open(os.path.join(vectors, name), "rb") as f:
        t = f.read()
    top, _ = bdecode(t)
    info = top[b"info"][1]
    infos.append(info)
    for target in ("metainfo", "bencode"):
        seed(target, t)
        seed(target, info)

# Small torrents built here: multi-file with padding, url-list forms,
# announce-list tiers, utf-8 names, extra keys.
H = bytes(range(20))
small = [
    {"announce": "wss://tracker.example/announce",
     "info": {"name": "a.txt", "piece length": 16384, "length": 5,
              "pieces": H}},
    {"announce-list": [["wss://a.example"], ["wss://b.example", "wss://c.example"]],
     "url-list": ["https://seed.example/", "https://mirror.example/"],
     "comment": "made by hand", "created by": "seed.sh",
     "creation date": 1700000000, "x-extra": {"k": [1, 2]},
     "info": {"name": "bundle", "name.utf-8": "bündle", "piece length": 16384,
              "private": 1, "pieces": H * 2,
              "files": [
                  {"length": 100, "path": ["a"]},
                  {"length": 16284, "path": [".pad", "16284"], "attr": "p"},
                  {"length": 0, "path": ["docs", "empty"]},
                  {"length": 2000, "path": ["docs", "b"], "path.utf-8": ["docs", "b\u00e9"]},
              ]}},
    {"url-list": "https://seed.example/file.bin",
     "info": {"name": "file.bin", "piece length": 32768, "length": 0, "pieces": b""}},
]
for t in small:
    for target in ("metainfo", "bencode"):
        seed(target, benc(t))
        seed(target, benc(t["info"]))

ih = "d2474e86c95b19b8bcfdb92bc12c9d44667cfa36"
for m in [
    f"magnet:?xt=urn:btih:{ih}",
    "magnet:?xt=urn:btih:2JDU5BWJLMM3RPH5XEV4CLE5IRTHZ6RW&dn=My+Bundle",
    f"magnet:?xt=urn:btih:{ih}&dn=bundle%20%C3%BC&tr=wss%3A%2F%2Ftracker.example"
    "&tr.1=wss://b.example&ws=https%3A%2F%2Fseed.example%2F&so=0,2,4-6",
    f"MAGNET:?xt.1=urn:btmh:1220abcd&xt.2=urn:btih:{ih}&x.pe=1.2.3.4:5#frag",
]:
    seed("metainfo", m)

for b in [b"i0e", b"i-42e", b"0:", b"4:spam", b"le", b"de", b"l4:spami3ee",
          b"d3:cow3:moo4:spam4:eggse", b"d1:ad1:bl1:ceee"]:
    seed("bencode", b)

# ---------------------------------------------------------- tracker frames

IH = "\u00d2GN\u0086\u00c9[\\u0019\u00b8\u00bc\u00fd\u00b9+\u00c1,\u009dDf|\u00fa6"
PEER = "-WW0208-7UsUPnH3J/2+"
LT = "-LT2100-k8Zq1xYb0Pw3"
OFFER = "\\u0000\u00ff\\u0010\u007f\u0080abcdefghijklmno"
SDP = ("v=0\\r\\no=- 4611731400430051336 2 IN IP4 127.0.0.1\\r\\ns=-\\r\\nt=0 0\\r\\n"
       "a=group:BUNDLE 0\\r\\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\\r\\n"
       "a=candidate:1 1 udp 2113937151 192.168.1.2 54400 typ host generation 0\\r\\n")
for frame in [
    # From a tracker.
    f'{{"action":"announce","offer":{{"type":"offer","sdp":"{SDP}"}},"offer_id":"{OFFER}","peer_id":"{PEER}","info_hash":"{IH}"}}',
    f'{{"answer":{{"type":"answer","sdp":"{SDP}"}},"action":"announce","offer_id":"{OFFER}","peer_id":"{LT}","info_hash":"{IH}"}}',
    f'{{"complete":3,"incomplete":7,"action":"announce","interval":120,"info_hash":"{IH}"}}',
    f'{{"action":"announce","info_hash":"{IH}","min interval":60.5}}',
    f'{{"action":"scrape","files":{{"{IH}":{{"complete":1,"incomplete":2,"downloaded":9}},"{PEER}":{{"complete":0,"incomplete":0,"downloaded":0}}}}}}',
    '{"failure reason":"invalid info_hash","action":"announce"}',
    f'{{"failure reason":"torrent not registered","info_hash":"{IH}"}}',
    '{"action":"announce","warning message":"slow down"}',
    # To a tracker.
    f'{{"action":"announce","info_hash":"{IH}","peer_id":"{PEER}","uploaded":0,"downloaded":0,"left":1000,"event":"started","numwant":2,"offers":[{{"offer":{{"type":"offer","sdp":"{SDP}"}},"offer_id":"{OFFER}"}},{{"offer":{{"type":"offer","sdp":"x"}},"offer_id":"{LT}"}}]}}',
    f'{{"action":"announce","info_hash":"{IH}","peer_id":"{PEER}","left":null,"event":"paused","key":"ab12"}}',
    f'{{"action":"announce","info_hash":"{IH}","peer_id":"{PEER}","event":"stopped"}}',
    f'{{"action":"announce","info_hash":"{IH}","peer_id":"{PEER}","to_peer_id":"{LT}","offer_id":"{OFFER}","answer":{{"type":"answer","sdp":"{SDP}"}}}}',
    f'{{"action":"scrape","info_hash":"{IH}"}}',
    f'{{"action":"scrape","info_hash":["{IH}","{PEER}"]}}',
    '{"action":"scrape"}',
]:
    seed("tracker", frame)

# --------------------------------------------------------------- peer wire

def msg(ident, payload=b""):
    return struct.pack(">I", 1 + len(payload)) + bytes([ident]) + payload

handshake = (b"\x13BitTorrent protocol" + bytes([0, 0, 0, 0, 0, 0x10, 0, 0x05])
             + bytes.fromhex(ih) + PEER.encode())
ext_hs = benc({"m": {"ut_metadata": 3, "lt_donthave": 7}, "metadata_size": 31235,
               "reqq": 250, "v": "Swarmdrop 0.1", "yourip": b"\x7f\x00\x00\x01"})
ut_request = benc({"msg_type": 0, "piece": 1})
ut_data = benc({"msg_type": 1, "piece": 0, "total_size": 8}) + b"d1:ai1ee"
ut_reject = benc({"msg_type": 2, "piece": 5})
messages = [
    b"\x00\x00\x00\x00",                              # keep-alive
    msg(0), msg(1), msg(2), msg(3),                   # choke .. not interested
    msg(4, struct.pack(">I", 7)),                     # have
    msg(5, b"\xff\xfe"),                              # bitfield
    msg(6, struct.pack(">III", 1, 0, 16384)),         # request
    msg(7, struct.pack(">II", 1, 0) + bytes(range(256)) * 4),  # piece
    msg(8, struct.pack(">III", 1, 16384, 16384)),     # cancel
    msg(9, struct.pack(">H", 6881)),                  # port
    msg(0x0d, struct.pack(">I", 3)),                  # suggest
    msg(0x0e), msg(0x0f),                             # have all, have none
    msg(0x10, struct.pack(">III", 2, 0, 16384)),      # reject
    msg(0x11, struct.pack(">I", 4)),                  # allowed fast
    msg(20, b"\x00" + ext_hs),                        # extended handshake
    msg(20, b"\x03" + ut_data),                       # ut_metadata data
]
stream = b"".join(messages)
# Control byte: bit 7 prepends a handshake, low bits = number of chunk sizes.
seed("framer", b"\x80" + stream)
seed("framer", bytes([0x83, 12, 0, 200]) + stream)
seed("framer", bytes([0x02, 67, 12]) + handshake + stream)
for m in messages:
    seed("framer", b"\x80" + m)

for payload in [ext_hs, ut_request, ut_data, ut_reject, struct.pack(">I", 9),
                benc({"m": {}}), benc({"m": {"ut_metadata": 0}, "p": 6881})]:
    seed("extension", payload)

for target in sorted(counts):
    print(f"{target}: {counts[target]} seeds in fuzz/corpus/{target}/")
PY
