#!/usr/bin/python3
"""PyTorch fp32 peer timing for bitplan's benchmark.

    /usr/bin/python3 bench/torch_peer.py --model NAME --batch B --threads T [--seconds S]

Builds the fixture model NAME (tools/fixture_models.py), loads its weights (Fashion-MNIST:
models/torch/NAME.pt written by tools/train_fixtures.py; CIFAR-10: the published .th under
../shared/models/cifar10-resnet when present, else models/torch/NAME.pt), and times the
forward pass on a random [B, C, H, W] float32 input in eval mode under
torch.inference_mode(): 3 warm-up runs, then runs until S seconds (default 2) have passed
and at least 5 runs were made. Prints one JSON line on stdout:
    {"model", "batch", "threads", "median_ms", "iqr_ms", "runs", "torch_version"}
Needs Debian's torch (/usr/bin/python3).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np
import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tools"))
import fixture_models as fm  # noqa: E402

WARMUP = 3
MIN_RUNS = 5


def load_model(name: str) -> torch.nn.Module:
    model = fm.build(name)
    published = fm.PUBLISHED_WEIGHTS.get(name)
    if published and os.path.isfile(os.path.join(REPO, published)):
        state = fm.load_published_cifar_state_dict(os.path.join(REPO, published))
    else:
        pt = os.path.join(REPO, "models", "torch", f"{name}.pt")
        if not os.path.isfile(pt):
            sys.exit(f"torch_peer: no weights for {name}: {pt} is missing "
                     f"(run /usr/bin/python3 tools/train_fixtures.py --only {name})")
        state = torch.load(pt, map_location="cpu")
    model.load_state_dict(state, strict=True)
    return model.eval()


def main() -> None:
    ap = argparse.ArgumentParser(description="PyTorch fp32 peer timing (one JSON line)")
    ap.add_argument("--model", required=True, choices=sorted(fm.MODELS))
    ap.add_argument("--batch", type=int, required=True)
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--seconds", type=float, default=2.0)
    args = ap.parse_args()
    if args.batch < 1 or args.threads < 1 or args.seconds < 0:
        ap.error("--batch and --threads must be >= 1, --seconds >= 0")

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = load_model(args.model)
    x = torch.randn(args.batch, *fm.input_shape(args.model), dtype=torch.float32)

    times = []
    with torch.inference_mode():
        for _ in range(WARMUP):
            model(x)
        start = time.perf_counter()
        while len(times) < MIN_RUNS or time.perf_counter() - start < args.seconds:
            t0 = time.perf_counter()
            model(x)
            times.append((time.perf_counter() - t0) * 1e3)

    q25, q50, q75 = np.percentile(np.asarray(times), [25, 50, 75])
    print(json.dumps({"model": args.model, "batch": args.batch, "threads": args.threads,
                      "median_ms": round(float(q50), 4), "iqr_ms": round(float(q75 - q25), 4),
                      "runs": len(times), "torch_version": torch.__version__}), flush=True)


if __name__ == "__main__":
    main()
