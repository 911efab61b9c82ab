"""Hypervolume of each policy's front under one normalisation per model (dev-time tool).

Objectives (all minimised): top-1 error on the final selection, predicted latency (ms) and
size (bytes), each divided by the fp32 plan's value; the reference point is 1.1 x fp32 in
latency and size and fp32 error + 5 points in error, so a plan counts only when it is
within 5 points of fp32 and no slower or larger than 1.1 x fp32.
usage: hypervolume.py RESULTS_DIR CONFIG...
"""
import json
import os
import sys


def hv3(points, ref):
    """Exact 3-D hypervolume by slicing along the last objective."""
    pts = sorted({tuple(p) for p in points if all(a < r for a, r in zip(p, ref))}, key=lambda p: p[2])
    total = 0.0
    for i, p in enumerate(pts):
        z_next = pts[i + 1][2] if i + 1 < len(pts) else ref[2]
        if z_next <= p[2]:
            continue
        total += hv2([q[:2] for q in pts[: i + 1]], ref[:2]) * (z_next - p[2])
    return total


def hv2(points, ref):
    pts = sorted(points)
    area, best_y = 0.0, ref[1]
    for x, y in pts:
        if y < best_y:
            area += (ref[0] - x) * (best_y - y)
            best_y = y
    return area


def main():
    root, configs = sys.argv[1], sys.argv[2:]
    policies = ["exact", "nsga2", "reinforce", "random"]
    print("| model | " + " | ".join(policies) + " |")
    print("|---|" + "---|" * len(policies))
    for config in configs:
        name = os.path.splitext(os.path.basename(config))[0]
        row = []
        for policy in policies:
            doc = json.load(open(os.path.join(root, name, policy, "pareto.json")))
            fp32 = doc["fp32"]
            err0 = 1 - fp32["top1"]
            lat0, size0 = fp32["latency_ms"], fp32["size_bytes"]
            ref = [(err0 + 0.05) / max(err0, 1e-3), 1.1, 1.1]
            pts = [[(1 - p["final"]["top1"]) / max(err0, 1e-3), p["final"]["latency_ms"] / lat0,
                    p["final"]["size_bytes"] / size0] for p in doc["front"]]
            row.append(f"{hv3(pts, ref):.4f} ({len(pts)} plans, {doc['evaluations']} evals)")
        print(f"| {name} | " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
