#!/usr/bin/env bash
# Regenerates the metainfo test vectors in this directory: .torrent files made
# by real tools (mktorrent, transmission-create) over deterministic content,
# and vectors.json, which records for each one the command, the content case
# and the info hash as transmission-show prints it.
#
# Needs: bash, python3, mktorrent, transmission-cli
#   (Debian: apt-get install -y mktorrent transmission-cli).
# The content files are NOT kept: tests/metainfo_vectors.rs regenerates them
# from the same formula, so the test needs none of these tools.
#
# Content formula (also in tests/metainfo_vectors.rs):
#   seed    = UTF-8 of "swarmdrop-vector/<case>/<path>", where <path> is the
#             file's path components joined with "/" (for a single-file case,
#             the file name)
#   block_i = SHA-1(seed || 0x00 || i as 8-byte big-endian), i = 0, 1, 2, ...
#   file    = the first <length> bytes of block_0 || block_1 || ...
#
# Usage: tests/vectors/make.sh   (from anywhere; rewrites the vectors in place)
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

python3 - "$here" "$work" <<'PY'
import hashlib, json, os, re, shlex, subprocess, sys

out_dir, work = sys.argv[1], sys.argv[2]

CASES = {
    # One small file, less than one piece.
    "small": {"name": "hello.txt", "single": True, "files": [(["hello.txt"], 1000)]},
    # One file over many pieces, with a short last piece at every piece length.
    "long": {"name": "video.bin", "single": True, "files": [(["video.bin"], 1_000_003)]},
    # Nested directories, an empty file, files smaller than a piece, a file of
    # exactly one 16 KiB piece, non-ASCII and space in names.
    "tree": {
        "name": "bundle",
        "single": False,
        "files": [
            (["a.txt"], 100),
            (["docs", "readme.md"], 5000),
            (["docs", "empty.dat"], 0),
            (["docs", "notes", "exact"], 16384),
            (["photos", "2024", "img 1.jpg"], 300_000),
            (["photos", "2024", "\u00fcn\u00efcode \u2013 name.bin"], 70_000),
            (["z", "deep", "er", "file"], 1),
        ],
    },
    # Files that end exactly on 32 KiB piece boundaries.
    "aligned": {
        "name": "aligned",
        "single": False,
        "files": [(["p1"], 65536), (["p2"], 32768), (["sub", "p3"], 98304)],
    },
}

def content(case, path, length):
    seed = ("swarmdrop-vector/%s/%s" % (case, "/".join(path))).encode("utf-8")
    out = bytearray()
    i = 0
    while len(out) < length:
        out += hashlib.sha1(seed + b"\x00" + i.to_bytes(8, "big")).digest()
        i += 1
    return bytes(out[:length])

for case, spec in CASES.items():
    root = os.path.join(work, case)
    for path, length in spec["files"]:
        full = os.path.join(root, *path) if spec["single"] else os.path.join(root, spec["name"], *path)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "wb") as f:
            f.write(content(case, path, length))

def version(cmd):
    run = subprocess.run(cmd, capture_output=True, text=True)
    text = run.stdout + run.stderr
    return text.strip().splitlines()[0]

MK = version(["mktorrent", "-h"]).split(" (")[0]          # "mktorrent 1.1"
TR = version(["transmission-create", "-V"]).split(" (")[0]  # "transmission-create 3.00"

# transmission-create 3.00 refuses wss:// trackers, so its vectors use T2 and T3.
T1, T2, T3 = "wss://tracker.example/announce", "udp://tracker.example:6969/announce", "https://tracker.example/announce"
W1, W2 = "https://seed.example/files/", "https://mirror.example/files/"

# (file name, tool, case, options)
# options: piece_kib, trackers (tiers), web_seeds, comment, private, source, no_date
VECTORS = [
    ("mktorrent-small-32k", "mktorrent", "small", dict(piece_kib=32, trackers=[[T1]])),
    ("mktorrent-long-32k", "mktorrent", "long", dict(piece_kib=32, trackers=[[T1]], no_date=True)),
    ("mktorrent-long-256k", "mktorrent", "long",
        dict(piece_kib=256, trackers=[[T1, T2], [T3]], web_seeds=[W1], comment="many pieces, short last one")),
    ("mktorrent-tree-32k", "mktorrent", "tree", dict(piece_kib=32, trackers=[[T1]])),
    ("mktorrent-tree-64k-private-source", "mktorrent", "tree",
        dict(piece_kib=64, trackers=[[T1], [T2]], web_seeds=[W1, W2], private=True, source="Swarmdrop vectors")),
    ("mktorrent-aligned-32k", "mktorrent", "aligned", dict(piece_kib=32, trackers=[[T1]])),
    ("transmission-small-16k", "transmission", "small", dict(piece_kib=16, trackers=[[T3]])),
    ("transmission-long-32k", "transmission", "long", dict(piece_kib=32, trackers=[[T3]])),
    ("transmission-long-1m", "transmission", "long", dict(piece_kib=1024, trackers=[[T3]], comment="one piece")),
    ("transmission-tree-16k", "transmission", "tree", dict(piece_kib=16, trackers=[[T3]])),
    ("transmission-tree-256k-private", "transmission", "tree",
        dict(piece_kib=256, trackers=[[T3], [T2]], private=True, comment="private, two tiers")),
    ("transmission-aligned-32k", "transmission", "aligned", dict(piece_kib=32, trackers=[[T3]])),
]

def command(tool, spec, opts, out):
    target = spec["name"]
    if tool == "mktorrent":
        kib = opts["piece_kib"]
        cmd = ["mktorrent", "-l", str(kib.bit_length() + 9), "-o", out]
        for tier in opts.get("trackers", []):
            cmd += ["-a", ",".join(tier)]
        for w in opts.get("web_seeds", []):
            cmd += ["-w", w]
        if "comment" in opts: cmd += ["-c", opts["comment"]]
        if opts.get("private"): cmd += ["-p"]
        if "source" in opts: cmd += ["-s", opts["source"]]
        if opts.get("no_date"): cmd += ["-d"]
        return cmd + [target]
    cmd = ["transmission-create", "-s", str(opts["piece_kib"]), "-o", out]
    for tier in opts.get("trackers", []):
        assert len(tier) == 1, "transmission-create puts each tracker in its own tier"
        cmd += ["-t", tier[0]]
    if "comment" in opts: cmd += ["-c", opts["comment"]]
    if opts.get("private"): cmd += ["-p"]
    return cmd + [target]

manifest = {
    "generator": "file bytes = first <length> bytes of SHA-1(seed || 0x00 || be64(i)) for i = 0, 1, ...; "
                 "seed = UTF-8 'swarmdrop-vector/<case>/<path joined with />'",
    "cases": {
        case: {"name": spec["name"], "single_file": spec["single"],
               "files": [{"path": p, "length": l} for p, l in spec["files"]]}
        for case, spec in CASES.items()
    },
    "vectors": [],
}

for old in os.listdir(out_dir):
    if old.endswith(".torrent"):
        os.remove(os.path.join(out_dir, old))

for name, tool, case, opts in VECTORS:
    spec = CASES[case]
    out = os.path.join(out_dir, name + ".torrent")
    cmd = command(tool, spec, opts, name + ".torrent")
    subprocess.run(cmd[:cmd.index("-o") + 1] + [out] + cmd[cmd.index("-o") + 2:],
                   cwd=os.path.join(work, case), check=True, capture_output=True)
    if not os.path.exists(out):  # transmission-create exits 0 on a bad tracker URL
        sys.exit("%s made no torrent: %s" % (tool, " ".join(cmd)))
    show = subprocess.run(["transmission-show", out], check=True, capture_output=True, text=True).stdout
    hash_line = re.search(r"^\s*Hash: ([0-9a-f]{40})$", show, re.M)
    count_line = re.search(r"^\s*Piece Count: (\d+)$", show, re.M)
    manifest["vectors"].append({
        "torrent": name + ".torrent",
        "tool": MK if tool == "mktorrent" else TR,
        "command": " ".join(shlex.quote(c) for c in cmd),
        "case": case,
        "piece_length": opts["piece_kib"] * 1024,
        # transmission-create skips empty files and always writes `private`.
        "includes_empty_files": tool == "mktorrent",
        "writes_private_zero": tool == "transmission",
        "private": bool(opts.get("private")),
        "source": opts.get("source"),
        "trackers": opts.get("trackers", []),
        "web_seeds": opts.get("web_seeds", []),
        "comment": opts.get("comment"),
        "created_by": re.search(r"^\s*Created by: (.*)$", show, re.M).group(1),
        "info_hash": hash_line.group(1),
        "piece_count": int(count_line.group(1)),
        "shown_by": version(["transmission-show", "-V"]).split(" (")[0],
    })

with open(os.path.join(out_dir, "vectors.json"), "w") as f:
    json.dump(manifest, f, indent=2, ensure_ascii=False)
    f.write("\n")
print("wrote %d vectors to %s" % (len(manifest["vectors"]), out_dir))
PY
