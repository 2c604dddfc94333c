#!/usr/bin/env python3
"""Checks a .torrent against files on disk with an independent implementation.

Usage: verify_torrent.py TORRENT DIR

DIR holds the bundle as a client would save it: DIR/<name>/<path...> for a
multi-file torrent. Every piece is read from the files (pieces span file
boundaries) and hashed with hashlib's SHA-1. Prints a JSON report and exits
non-zero if any piece does not match or a file is missing or has the wrong size.
"""
import hashlib
import json
import os
import sys


def bdecode(data, i=0):
    c = data[i:i + 1]
    if c == b"i":
        end = data.index(b"e", i)
        return int(data[i + 1:end]), end + 1
    if c == b"l":
        i += 1
        out = []
        while data[i:i + 1] != b"e":
            v, i = bdecode(data, i)
            out.append(v)
        return out, i + 1
    if c == b"d":
        i += 1
        out = {}
        while data[i:i + 1] != b"e":
            k, i = bdecode(data, i)
            v, i = bdecode(data, i)
            out[k] = v
        return out, i + 1
    if c.isdigit():
        colon = data.index(b":", i)
        n = int(data[i:colon])
        return data[colon + 1:colon + 1 + n], colon + 1 + n
    raise ValueError(f"bad bencode at {i}")


def main():
    torrent_path, root = sys.argv[1], sys.argv[2]
    meta, _ = bdecode(open(torrent_path, "rb").read())
    info = meta[b"info"]
    name = info[b"name"].decode()
    piece_length = info[b"piece length"]
    hashes = info[b"pieces"]
    if b"files" in info:
        files = [(os.path.join(root, name, *(p.decode() for p in f[b"path"])), f[b"length"]) for f in info[b"files"]]
    else:
        files = [(os.path.join(root, name), info[b"length"])]

    problems = []
    for path, length in files:
        if not os.path.exists(path):
            problems.append(f"missing: {path}")
        elif os.path.getsize(path) != length:
            problems.append(f"size of {path}: {os.path.getsize(path)} on disk, {length} in the torrent")
    total = sum(length for _, length in files)
    count = len(hashes) // 20
    expected_count = (total + piece_length - 1) // piece_length
    if count != expected_count:
        problems.append(f"{count} piece hashes for {expected_count} pieces")

    good = bad = 0
    if not problems:
        handles = [(open(p, "rb"), n) for p, n in files]
        buf = bytearray()
        index = 0
        for fh, _ in handles:
            while True:
                chunk = fh.read(piece_length - len(buf))
                if not chunk:
                    break
                buf += chunk
                if len(buf) == piece_length:
                    ok = hashlib.sha1(buf).digest() == hashes[index * 20:index * 20 + 20]
                    good, bad = good + ok, bad + (not ok)
                    index += 1
                    buf = bytearray()
        if buf:
            ok = hashlib.sha1(buf).digest() == hashes[index * 20:index * 20 + 20]
            good, bad = good + ok, bad + (not ok)
            index += 1
        if bad:
            problems.append(f"{bad} of {count} pieces do not match")

    report = {
        "name": name,
        "info_hash": hashlib.sha1(info_bytes(open(torrent_path, "rb").read())).hexdigest(),
        "piece_length": piece_length,
        "pieces": count,
        "verified": good,
        "files": [{"path": os.path.relpath(p, os.path.join(root, name)), "length": n} for p, n in files],
        "problems": problems,
    }
    print(json.dumps(report))
    sys.exit(1 if problems else 0)


def info_bytes(data):
    """The raw bytes of the info dictionary, found by decoding the top level."""
    i = 1
    while data[i:i + 1] != b"e":
        k, i = bdecode(data, i)
        start = i
        _, i = bdecode(data, i)
        if k == b"info":
            return data[start:i]
    raise ValueError("no info dictionary")


if __name__ == "__main__":
    main()
