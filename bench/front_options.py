"""Which candidate specs a search front uses, per results folder (dev-time report tool).

For each folder: how often each option label appears over all layers of all front plans,
and the layer choices of the front's fastest plan within 0.5 points of fp32 top-1.
usage: front_options.py RESULTS_DIR...
"""
import collections
import json
import os
import sys

import yaml


def labels_of(key):
    """genome key 'layer=option;layer=option' -> [option, ...] (names escape ';' and '=' with '\\')."""
    out, cur, esc = [], "", False
    for ch in key + ";":
        if esc:
            cur += ch
            esc = False
        elif ch == "\\":
            esc = True
        elif ch == ";":
            out.append(cur.rsplit("=", 1)[1])
            cur = ""
        else:
            cur += ch
    return out


def main():
    for folder in sys.argv[1:]:
        doc = json.load(open(os.path.join(folder, "pareto.json")))
        counts = collections.Counter()
        for p in doc["front"]:
            counts.update(labels_of(p["key"]))
        fp32 = doc["fp32"]["top1"]
        ok = [p for p in doc["front"] if fp32 - p["final"]["top1"] <= 0.005 and p["final"]["latency_ms"] is not None]
        fastest = min(ok, key=lambda p: p["final"]["latency_ms"]) if ok else None
        print(f"{folder}: target {doc['target']}; front {len(doc['front'])} plans; options used: "
              + ", ".join(f"{k} {v}" for k, v in counts.most_common()))
        if fastest:
            f = fastest["final"]
            print(f"  fastest within 0.5 pt: {fastest['plan']} top-1 {100 * f['top1']:.2f}% "
                  f"latency {f['latency_ms']:.4f} ms size {f['size_bytes'] / 1e3:.1f} KB: "
                  + " ".join(labels_of(fastest["key"])))


if __name__ == "__main__":
    main()
