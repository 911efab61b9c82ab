#!/usr/bin/env python3
"""cuDNN against bitplan's own conv kernels, from one bitplan-cuda-profile run (issue 15).

The profiler times every conv kernel that runs a (conv key, precision) -- cuDNN, bitplan's
direct depthwise kernel, im2col + cuBLASLt -- keeps the fastest as the entry and lists every
kernel's median in the entry's implementation ("... | timed: cudnn 12.34 us,
bitplan_im2col_gemm 20.10 us | not run: ..."). This script reads those lists back.

  table  sums each workload's conv layers per precision: bitplan's own kernels (the faster
         of them per layer), cuDNN (where it ran), and the kept entry (the fastest), split
         into depthwise and other convs.
(Re-measured entries go into a profile with tools/merge_cuda_profile.py.)

  python3 bench/cuda_conv_kernels.py table --profile P.yaml --workloads W1.json ... \
      [--precisions fp16,int8]
"""
import argparse
import json
import re

OWN = ("bitplan_depthwise", "bitplan_im2col_gemm")


def kernel_times(implementation):
    """{kernel name: median us} from an entry's "| timed: ..." list."""
    match = re.search(r"\| timed: ([^|]*)", implementation)
    times = {}
    if match:
        for item in match.group(1).split(", "):
            name, value = re.match(r"(\S+)(?: \([^)]*\))? ([0-9.]+) us", item.strip()).groups()
            times[name] = min(times.get(name, float("inf")), float(value))
    return times


def table(args):
    with open(args.profile) as f:
        profile = json.load(f)
    entries = {(e["key"], e["precision"]): e for e in profile["entries"]}
    precisions = args.precisions.split(",")
    print(f"{profile['device']['name']}, cuDNN {profile['libraries'].get('cudnn', '?')}; "
          "sums of the conv layers' medians, us\n")
    print("| workload | precision | convs | kind | bitplan kernels | cuDNN (layers it ran) | "
          "kept (fastest) | cuDNN faster on | bitplan / kept |")
    print("|---|---|---:|---|---:|---:|---:|---:|---:|")
    for path in args.workloads:
        with open(path) as f:
            workload = json.load(f)
        name = f"{workload['model']} b{workload['batch']}"
        for p in precisions:
            for kind in ("depthwise", "other"):
                own = cudnn = kept = 0.0
                layers = cudnn_ran = cudnn_wins = 0
                missing = 0
                for layer in workload["layers"]:
                    key = layer["key"]
                    if not key.startswith("conv:"):
                        continue
                    g = int(re.search(r":g(\d+)", key).group(1))
                    c = int(re.search(r":c(\d+)", key).group(1))
                    k = int(re.search(r":k(\d+)", key).group(1))
                    if (kind == "depthwise") != (g > 1 and g == c == k):
                        continue
                    entry = entries.get((key, p))
                    if entry is None or "median_us" not in entry:
                        missing += 1
                        continue
                    times = kernel_times(entry["implementation"])
                    own_times = [t for n, t in times.items() if n in OWN]
                    layers += 1
                    kept += entry["median_us"]
                    own += min(own_times) if own_times else float("nan")
                    if "cudnn" in times:
                        cudnn_ran += 1
                        cudnn += times["cudnn"]
                        cudnn_wins += not own_times or times["cudnn"] < min(own_times)
                if layers == 0:
                    continue
                note = f" ({missing} not measured)" if missing else ""
                print(f"| {name}{note} | {p} | {layers} | {kind} | {own:.0f} | {cudnn:.0f} "
                      f"({cudnn_ran}) | {kept:.0f} | {cudnn_wins} | {own / kept:.2f}x |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("table")
    t.add_argument("--profile", required=True)
    t.add_argument("--workloads", nargs="+", required=True)
    t.add_argument("--precisions", default="fp16,int8")
    args = parser.parse_args()
    return table(args)


if __name__ == "__main__":
    main()
