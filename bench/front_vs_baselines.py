"""Does each search front dominate the uniform baselines? (dev-time report tool)

For every results folder given: fp32 and the uniform INT8 plan that runs on the target's int8
kernels (W8A8, or W7A8 where 8-bit weights have no exact kernel, i.e. CPUs without VNNI):
accuracy on the final selection, predicted latency and size, and the front
point that, within 0.5 points of fp32 top-1 (final selection), has the smallest size among
those no slower than that uniform INT8 plan.
usage: front_vs_baselines.py RESULTS_DIR...
"""
import json
import os
import sys


def main():
    print("| model | fp32 top-1 / ms / KB | uniform INT8 top-1 / ms / KB | W4A8 top-1 / ms / KB | best front plan ≤0.5 pt: top-1 / ms / KB | at or below INT8 latency and smaller |")
    print("|---|---:|---:|---:|---:|---|")
    for folder in sys.argv[1:]:
        doc = json.load(open(os.path.join(folder, "pareto.json")))
        # Baselines on the final selection (like the front), with the predicted latency and size.
        base = {b["name"]: (b["final"] or b["metrics"]) for b in doc["baselines"]}
        fp32 = doc["fp32"]["top1"]

        def cell(m):
            lat = m["latency_ms"]
            return f"{100 * m['top1']:.2f}% / {lat:.3f} / {m['size_bytes'] / 1e3:.1f}" if lat is not None else \
                f"{100 * m['top1']:.2f}% / – / {m['size_bytes'] / 1e3:.1f}"

        w8 = next((dict(base[n], name=n) for n in ("W8A8", "W7A8")
                   if n in base and base[n]["latency_ms"] is not None), None)
        best = None
        for p in doc["front"]:
            f = p["final"]
            if fp32 - f["top1"] > 0.005 or f["latency_ms"] is None:
                continue
            if w8 and w8["latency_ms"] is not None and f["latency_ms"] > w8["latency_ms"] * 1.0001:
                continue
            if best is None or f["size_bytes"] < best["final"]["size_bytes"]:
                best = p
        dom = "–"
        if best and w8:
            f = best["final"]
            dom = "yes" if (f["size_bytes"] < w8["size_bytes"] and f["latency_ms"] <= w8["latency_ms"] * 1.0001) else "no"
        print(f"| {doc['model']} | {cell(base['fp32'])} | {(w8['name'] + ' ' + cell(w8)) if w8 else '–'} | "
              f"{cell(base['W4A8']) if 'W4A8' in base else '–'} | "
              f"{cell(best['final']) + ' (' + best['plan'] + ')' if best else 'none'} | {dom} |")


if __name__ == "__main__":
    main()
