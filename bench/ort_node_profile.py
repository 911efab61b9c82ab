#!/usr/bin/env python3
"""Where ONNX Runtime's time goes in a zoo CNN's static INT8 model: its own per-node profile
(SessionOptions.enable_profiling), summed per op type and listed per node with the node's input
shapes, to set beside bitplan's steps (`bench_quant CONFIG W8A8 BATCH THREADS SECONDS --steps`).

The INT8 model is the one bench/zoo_vs_ort.py times (quantize_static: QDQ, per-channel int8
weights, uint8 activations, MinMax on the 20 ImageNet images). Dev-time tool, the venv of
tools/fetch_models.py:
  .venv-zoo/bin/python bench/ort_node_profile.py --model mobilenet_v2 --batch 32 --threads 2
"""
import argparse
import collections
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parent))
import zoo_vs_ort  # noqa: E402  (the same INT8 model and ZOO folder)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mobilenet_v2", help="mobilenet_v2 or efficientnet_lite0")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=0, help="profiled runs (default 50 at batch 1, else 5)")
    parser.add_argument("--nodes", type=int, default=40, help="slowest nodes listed")
    args = parser.parse_args()
    source = zoo_vs_ort.ZOO / f"{args.model}.onnx"
    if not source.is_file():
        print(f"ort_node_profile: {source} is missing: run tools/fetch_models.py", file=sys.stderr)
        return 77
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        model = zoo_vs_ort.ort_int8_model(source, work)
        options = ort.SessionOptions()
        options.intra_op_num_threads = args.threads
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.enable_profiling = True
        options.profile_file_prefix = str(work / "profile")
        session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
        x = np.random.default_rng(0).standard_normal((args.batch, 3, 224, 224)).astype(np.float32)
        for _ in range(args.runs or (50 if args.batch == 1 else 5)):
            session.run(None, {"input": x})
        events = json.loads(Path(session.end_profiling()).read_text())
    total = collections.defaultdict(float)
    count = collections.Counter()
    op_of, shapes_of = {}, {}
    for e in events:
        if e.get("cat") != "Node" or not e["name"].endswith("_kernel_time"):
            continue
        node = e["name"][: -len("_kernel_time")]
        total[node] += e["dur"]
        count[node] += 1
        op_of[node] = e["args"].get("op_name")
        shapes_of[node] = [next(iter(d.values())) for d in e["args"].get("input_type_shape", [])][:4]
    runs = max(count.values())
    print(f"ONNX Runtime {ort.__version__}, {args.model} INT8 (QDQ), batch {args.batch}, "
          f"{args.threads} threads: {sum(total.values()) / runs / 1e3:.3f} ms of kernels a run "
          f"({runs} runs)")
    per_op = collections.defaultdict(float)
    for node, us in total.items():
        per_op[op_of[node]] += us / runs / 1e3
    for op, ms in sorted(per_op.items(), key=lambda kv: -kv[1]):
        print(f"{ms:10.3f} ms  {op}")
    print(f"\nslowest {args.nodes} nodes (ms a run, op, input shapes):")
    for node, us in sorted(total.items(), key=lambda kv: -kv[1])[: args.nodes]:
        print(f"{us / runs / 1e3:10.4f}  {op_of[node]:16s} {shapes_of[node]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
