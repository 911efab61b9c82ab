#!/usr/bin/env python3
"""PyTorch on the same GPU as the yardstick for bitplan's CUDA profile entries (issue 15).

  measure  (on the GPU machine, PyTorch with CUDA): times every GEMM and convolution of the
           given bitplan workloads files with what a PyTorch user would call, and writes JSON.
  table    (anywhere): puts those times beside the profile's entries (hw_profiles/h100.yaml)
           as ratios, one markdown table per op kind.

PyTorch equivalents of bitplan's precisions (each an entry's whole work, as a user calls it):
  fp32/fp16/bf16  torch.nn.functional.linear (cuBLAS; fp32 with TF32 off, as bitplan's) and
                  torch.nn.functional.conv2d (cuDNN, cudnn.benchmark on; fp16 also channels-
                  last, the faster of the two layouts is kept)
  int8            torch._int_mm (int8 x int8 -> int32, m padded to 17: it refuses m <= 16);
                  bitplan's int8 entry also dequantizes to fp16, so the ratio flatters torch
  fp8_e4m3        torch._scaled_mm (per-tensor scales, fp16 out; m padded to a multiple of 16)
  w4a16           torch.ops.aten._weight_int4pack_mm (tinygemm: int4, group 128, or 64/32
                  where k is no multiple of 128; bf16 activations)
  w8a16           torch.ops.aten._weight_int8pack_mm (int8 weights, per-channel fp16 scales),
                  recorded as an error where the build has no CUDA kernel for it
The model's other ops (workloads' "ops", docs/cuda_backend.md), at fp32 and fp16:
  eltwise         torch.neg (one input), torch.add (two, the smaller broadcast over rows),
                  torch.addcmul (three)
  reduce          mean over the rows of x.view(rows, cols)
  rownorm         torch.softmax over the rows of x.view(rows, cols)
  copy            a transpose made contiguous (same size), expand (more outputs), a slice
                  (fewer)
  bmm             torch.bmm (x [b][m][k] times w [b][n][k] transposed)

Timing follows bitplan-cuda-profile (docs/cuda_backend.md): 10 warm-up calls; each call timed
with CUDA events after a spin kernel has let the host queue the batch; inputs and weights
rotate among buffer sets of more than 2 x L2 together, so every call reads from DRAM; the
median of at least 50 calls (and 20 ms).

  python3 bench/cuda_yardstick.py measure --workloads W1.json ... --out torch.json [--kinds eltwise,...]
  python3 bench/cuda_yardstick.py table --torch torch.json --profile hw_profiles/h100.yaml
"""
import argparse
import json
import math
import os
import re
import statistics
import sys


def parse_key(key):
    """'gemm:m1:n4096:k4096' or 'conv:n1:c3:h224:w224:k32:r3:s3:st2x2:p1x1x1x1:d1x1:g1'."""
    fields = key.split(":")
    op, values = fields[0], {}
    for field in fields[1:]:
        name, value = re.match(r"([a-z]+)(.*)", field).groups()
        values[name] = [int(v) for v in value.split("x")]
    return op, values


def workload_keys(paths):
    keys = []
    for path in paths:
        with open(path) as f:
            doc = json.load(f)
        for layer in doc["layers"]:
            if layer["key"] not in keys and layer["op"] in ("gemm", "conv"):
                keys.append(layer["key"])
        for op in doc.get("ops", []):
            if "key" in op and op["key"] not in keys:
                keys.append(op["key"])
    return keys


def measure(args):
    import torch
    import torch.nn.functional as F

    torch.backends.cuda.matmul.allow_tf32 = False  # bitplan's fp32 entries: TF32 off
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.benchmark = True
    device = torch.device("cuda")
    props = torch.cuda.get_device_properties(device)
    l2_bytes = getattr(props, "L2_cache_size", 50 << 20)
    # ~10 ms at 2 GHz: longer than the host takes to queue a batch of 50 calls (a Python call
    # of _scaled_mm costs ~40 µs of host time), so no call waits for the host inside its
    # events. A first run with 1 ms showed such waits: 30-40 µs for 6 µs GEMMs.
    spin_cycles = int(2e7)

    def time_op(make_inputs, call):
        """Median µs of `call(*inputs)` over buffer sets rotated past 2 x L2."""
        first = make_inputs()
        set_bytes = sum(t.numel() * t.element_size() for t in first if torch.is_tensor(t))
        # Enough sets to pass 2.2 x L2, at most 64 (small ops would otherwise make hundreds of
        # thousands: a first run spent 6 s a key making them).
        count = max(2, min(64, math.ceil(2.2 * l2_bytes / max(set_bytes, 1))))
        sets = [first] + [make_inputs() for _ in range(count - 1)]
        for i in range(10):
            call(*sets[i % len(sets)])
        torch.cuda.synchronize()
        times = []
        while len(times) < 50 or (sum(times) < 20e3 and len(times) < 1000):
            batch = 50
            starts = [torch.cuda.Event(enable_timing=True) for _ in range(batch)]
            ends = [torch.cuda.Event(enable_timing=True) for _ in range(batch)]
            torch.cuda._sleep(spin_cycles)
            for i in range(batch):
                starts[i].record()
                call(*sets[(len(times) + i) % len(sets)])
                ends[i].record()
            torch.cuda.synchronize()
            times += [s.elapsed_time(e) * 1e3 for s, e in zip(starts, ends)]
        return statistics.median(times)

    results = []

    def record(key, precision, how, make_inputs, call):
        try:
            us = time_op(make_inputs, call)
            results.append({"key": key, "precision": precision, "torch": how, "median_us": round(us, 3)})
        except Exception as error:  # a shape the op refuses: say so, measure the rest
            results.append({"key": key, "precision": precision, "torch": how, "error": str(error).splitlines()[0][:200]})
        torch.cuda.empty_cache()

    def measure_other_op(record, key, op, v, dtype, name):
        def randn(*shape):
            return torch.randn(*shape, device=device, dtype=dtype)

        if op == "eltwise":
            out, inputs = v["o"][0], v["i"]
            if any(out % n for n in inputs):
                results.append({"key": key, "precision": name, "torch": "eltwise",
                                "error": "an input size does not divide the output's"})
                return
            views = lambda: tuple(randn(out // n, n) if n != out else randn(out) for n in inputs)
            if len(inputs) == 1:
                record(key, name, "torch.neg", views, torch.neg)
            elif len(inputs) == 2:
                record(key, name, "torch.add", lambda: (randn(out // inputs[1], inputs[1]), randn(inputs[1])),
                       torch.add)
            else:
                record(key, name, "torch.addcmul",
                       lambda: tuple(randn(out // inputs[-1], inputs[-1]) if j == 0 else randn(inputs[-1])
                                     for j in range(3)), torch.addcmul)
        elif op in ("reduce", "rownorm"):
            rows, cols = v["r"][0], v["c"][0]
            if op == "reduce":
                record(key, name, "Tensor.mean(dim=1)", lambda: (randn(rows, cols),), lambda x: x.mean(dim=1))
            else:
                record(key, name, "torch.softmax(dim=-1)", lambda: (randn(rows, cols),),
                       lambda x: torch.softmax(x, dim=-1))
        elif op == "copy":
            i, o = v["i"][0], v["o"][0]
            if i == o:
                inner = next((d for d in (64, 32, 16, 8, 4, 2) if o % d == 0), 1)
                record(key, name, "transpose().contiguous()", lambda: (randn(o // inner, inner),),
                       lambda x: x.t().contiguous())
            elif o > i and o % i == 0:
                record(key, name, "expand().contiguous()", lambda: (randn(1, i),),
                       lambda x: x.expand(o // i, i).contiguous())
            else:
                record(key, name, "slice clone", lambda: (randn(max(i, o)),), lambda x: x[:o].clone())
        else:  # bmm
            b, m, n, k = v["b"][0], v["m"][0], v["n"][0], v["k"][0]
            record(key, name, "torch.bmm", lambda: (randn(b, m, k), randn(b, n, k)),
                   lambda x, w: torch.bmm(x, w.transpose(1, 2)))

    def save():
        """The document so far (after every key: a run cut off by a time limit keeps it)."""
        document = {
            "device": torch.cuda.get_device_name(device),
            "torch": torch.__version__,
            "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version(),
            "results": results,
        }
        with open(args.out + ".tmp", "w") as f:
            json.dump(document, f, indent=1)
        os.replace(args.out + ".tmp", args.out)
        return document

    kinds = set(args.kinds.split(","))
    for key in workload_keys(args.workloads):
        op, v = parse_key(key)
        if op not in kinds:
            continue
        save()
        if op == "gemm":
            m, n, k = v["m"][0], v["n"][0], v["k"][0]
            for dtype, name in ((torch.float32, "fp32"), (torch.float16, "fp16"), (torch.bfloat16, "bf16")):
                record(key, name, "F.linear", lambda d=dtype: (torch.randn(m, k, device=device, dtype=d),
                                                                 torch.randn(n, k, device=device, dtype=d)),
                       F.linear)
            m_int8 = max(m, 17)
            record(key, "int8", f"torch._int_mm (m padded to {m_int8})" if m_int8 != m else "torch._int_mm",
                   lambda: (torch.randint(-127, 127, (m_int8, k), device=device, dtype=torch.int8),
                            torch.randint(-127, 127, (n, k), device=device, dtype=torch.int8).t()),
                   torch._int_mm)
            m_fp8 = (m + 15) // 16 * 16
            one = torch.ones((), device=device)
            record(key, "fp8_e4m3", f"torch._scaled_mm (m padded to {m_fp8})" if m_fp8 != m else "torch._scaled_mm",
                   lambda: (torch.randn(m_fp8, k, device=device).to(torch.float8_e4m3fn),
                            torch.randn(n, k, device=device).to(torch.float8_e4m3fn).t()),
                   lambda a, b: torch._scaled_mm(a, b, scale_a=one, scale_b=one, out_dtype=torch.float16))
            # Weight-only int8: PyTorch's int8 x fp16 kernel (per-channel scales), where its
            # build has one for CUDA; an error says when it has not.
            record(key, "w8a16", "_weight_int8pack_mm",
                   lambda: (torch.randn(m, k, device=device, dtype=torch.float16),
                            torch.randint(-127, 127, (n, k), device=device, dtype=torch.int8),
                            torch.rand(n, device=device, dtype=torch.float16)),
                   torch.ops.aten._weight_int8pack_mm)
            group = next((g for g in (128, 64, 32) if k % g == 0), None)
            inner_k_tiles = next((t for t in (8, 4, 2) if k % (t * 16) == 0), None)
            if group is None or inner_k_tiles is None:
                results.append({"key": key, "precision": "w4a16", "torch": "_weight_int4pack_mm",
                                "error": f"k={k}: tinygemm needs k a multiple of 32"})
                continue

            def int4_inputs():
                q = torch.randint(0, 16, (n, k), device=device, dtype=torch.int32)
                packed_bytes = (q[:, ::2] << 4 | q[:, 1::2]).to(torch.uint8)
                packed = torch.ops.aten._convert_weight_to_int4pack(packed_bytes, inner_k_tiles)
                scales_zeros = torch.rand(k // group, n, 2, device=device, dtype=torch.bfloat16)
                return torch.randn(m, k, device=device, dtype=torch.bfloat16), packed, scales_zeros

            record(key, "w4a16", f"_weight_int4pack_mm (g{group})", int4_inputs,
                   lambda x, w, sz: torch.ops.aten._weight_int4pack_mm(x, w, group, sz))
        elif op in ("eltwise", "reduce", "rownorm", "copy", "bmm"):
            for dtype, name in ((torch.float32, "fp32"), (torch.float16, "fp16")):
                measure_other_op(record, key, op, v, dtype, name)
        elif op == "conv":
            n_, c, h, w = v["n"][0], v["c"][0], v["h"][0], v["w"][0]
            kout, r, s, groups = v["k"][0], v["r"][0], v["s"][0], v["g"][0]
            stride, dilation = tuple(v["st"]), tuple(v["d"])
            top, left, bottom, right = v["p"]
            # Asymmetric (TF "same") padding: conv2d pads symmetrically; the larger side is
            # used, which changes the output by one row/column at most.
            padding = (max(top, bottom), max(left, right))
            for dtype, name in ((torch.float32, "fp32"), (torch.float16, "fp16"), (torch.bfloat16, "bf16")):
                for layout in (torch.contiguous_format, torch.channels_last):
                    how = "F.conv2d" + (" channels_last" if layout == torch.channels_last else "")
                    record(key, name, how,
                           lambda d=dtype, lf=layout: (
                               torch.randn(n_, c, h, w, device=device, dtype=d).to(memory_format=lf),
                               torch.randn(kout, c // groups, r, s, device=device, dtype=d).to(memory_format=lf)),
                           lambda x, wt: F.conv2d(x, wt, None, stride, padding, dilation, groups))
    document = save()
    print(f"cuda_yardstick: {len(results)} measurements on {document['device']} -> {args.out}")


def table(args):
    with open(args.torch) as f:
        torch_doc = json.load(f)
    with open(args.profile) as f:
        profile = json.load(f)
    entries = {(e["key"], e["precision"]): e for e in profile["entries"]}
    best = {}  # fastest PyTorch call per (key, precision)
    for r in torch_doc["results"]:
        if "median_us" in r:
            k = (r["key"], r["precision"])
            if k not in best or r["median_us"] < best[k]["median_us"]:
                best[k] = r
    print(f"PyTorch {torch_doc['torch']} (CUDA {torch_doc['cuda']}, cuDNN {torch_doc['cudnn']}) on "
          f"{torch_doc['device']}; bitplan: {profile['device']['name']}, profile entries. "
          "Ratio = PyTorch time / bitplan time (> 1: bitplan faster).\n")
    keys = []
    for r in torch_doc["results"]:
        if r["key"] not in keys:
            keys.append(r["key"])
    precisions = ["fp32", "fp16", "bf16", "int8", "int8_chained", "fp8_e4m3", "w4a16", "w8a16"]
    # int8_chained (int8 codes out, the requantization in cuBLASLt's epilogue) stands beside
    # the same torch._int_mm call as int8: PyTorch has no int8-out GEMM, and _int_mm's int32
    # result is the smaller task.
    torch_precision = {"int8_chained": "int8"}
    wins = losses = 0
    summary = {}  # (op, precision) -> ratios
    for op in ("gemm", "conv", "eltwise", "reduce", "rownorm", "copy", "bmm"):
        rows = [k for k in keys if k.startswith(op + ":")]
        if not rows:
            continue
        print(f"| {op} | " + " | ".join(f"{p} bitplan / torch µs" for p in precisions) + " |")
        print("|---|" + "---|" * len(precisions))
        for key in rows:
            cells = []
            for p in precisions:
                b, t = entries.get((key, p)), best.get((key, torch_precision.get(p, p)))
                if b is None or "median_us" not in b or t is None:
                    reason = "unsupported" if b is not None and b.get("unsupported") else "–"
                    cells.append(reason if t is None or b is None else f"– / {t['median_us']:.1f}")
                    continue
                ratio = t["median_us"] / b["median_us"]
                wins += ratio >= 1
                losses += ratio < 1
                summary.setdefault((op, p), []).append(ratio)
                cells.append(f"{b['median_us']:.1f} / {t['median_us']:.1f} ({ratio:.2f}x)")
            print(f"| `{key}` | " + " | ".join(cells) + " |")
        print()
    print("| op, precision | entries | geometric mean PyTorch / bitplan | bitplan at least as fast | slowest (ratio) |")
    print("|---|---|---|---|---|")
    for (op, p), ratios in summary.items():
        geomean = math.exp(sum(math.log(r) for r in ratios) / len(ratios))
        print(f"| {op} {p} | {len(ratios)} | {geomean:.2f}x | {sum(r >= 1 for r in ratios)} | {min(ratios):.2f}x |")
    print(f"\nbitplan at least as fast as PyTorch's fastest equivalent: {wins} of {wins + losses} entries")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    m = sub.add_parser("measure")
    m.add_argument("--workloads", nargs="+", required=True)
    m.add_argument("--out", required=True)
    m.add_argument("--kinds", default="gemm,conv,eltwise,reduce,rownorm,copy,bmm",
                   help="the key kinds to time, comma-separated")
    t = sub.add_parser("table")
    t.add_argument("--torch", required=True)
    t.add_argument("--profile", required=True)
    args = parser.parse_args()
    return measure(args) if args.command == "measure" else table(args)


if __name__ == "__main__":
    sys.exit(main())
