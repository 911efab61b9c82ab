"""Fraction of the measured ceilings a profile's layers reach (dev-time report tool).

For each (model, batch, precision) of the workloads in WORKLOADS_DIR found in PROFILE: the
best layer's and the whole model's GEMM rate (2 x MACs / median time) next to the profile's
gemm ceiling for that precision.
usage: profile_fraction.py PROFILE.yaml WORKLOADS_DIR
"""
import glob
import json
import os
import sys

import yaml


def macs(layer):
    if layer["op"] == "conv":
        return (layer["n"] * layer["k"] * layer["out_h"] * layer["out_w"] *
                (layer["c"] // layer["groups"]) * layer["r"] * layer["s"])
    return layer["m"] * layer["n"] * layer["k"]


def main():
    profile = yaml.safe_load(open(sys.argv[1]))
    entries = {(e["key"], e["precision"]): e for e in profile["entries"] if "median_us" in e}
    ceilings = {c["name"]: c for c in profile["ceilings"]}
    print("| model | batch | precision | best layer G/s | model G/s | ceiling | best / ceiling |")
    print("|---|---:|---|---:|---:|---:|---:|")
    for path in sorted(glob.glob(os.path.join(sys.argv[2], "*.json"))):
        doc = json.load(open(path))
        for precision in ("fp32", "int8", "int8_chained", "fp16", "bf16", "fp8_e4m3", "w4a16"):
            # Chained int8 entries (oneDNN) run on the same kernels as int8 ones.
            base = "int8" if precision == "int8_chained" else precision
            ceiling = next((c for n, c in ceilings.items() if n.startswith(f"gemm_{base}_")), None)
            timed = [(macs(l), entries[(l["key"], precision)]["median_us"]) for l in doc["layers"]
                     if (l["key"], precision) in entries]
            if not timed or not ceiling:
                continue
            scale = 1e3 if ceiling["unit"].startswith("T") else 1.0  # ceilings in T... -> G
            best = max(2 * m / (t * 1e-6) / 1e9 for m, t in timed)
            whole = sum(2 * m for m, _ in timed) / (sum(t for _, t in timed) * 1e-6) / 1e9
            peak = ceiling["value"] * scale
            print(f"| {doc['model']} | {doc['batch']} | {precision} | {best:.1f} | {whole:.1f} | "
                  f"{peak:.1f} | {100 * best / peak:.0f}% |")


if __name__ == "__main__":
    main()
