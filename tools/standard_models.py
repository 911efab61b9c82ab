#!/usr/bin/env python3
"""Standard models at realistic sizes, for profiling bitplan's latency backends.

Builds, with random weights, ResNet-50 and MobileNetV2 (torchvision), a BERT-base encoder
(12 layers, hidden 768, 12 heads, FFN 3072, sequence 128) and a Llama-style decoder block
(hidden 4096, 32 heads, SwiGLU FFN 11008, RMSNorm, rotary embedding; a 128-token prefill and
a one-token decode step), and writes into OUT_DIR:

  onnx/<model>.onnx                      the model (skipped with --no-onnx)
  workloads/<model>_b<B>.json            its conv/gemm layers at batch B, in the workloads
                                         format of `bitplan profile --emit-workloads`
  plans.json                             chain-validation plans (batch 1 and 16) for
                                         `bitplan-cuda-profile --chain`

Layer shapes come from forward hooks on every nn.Conv2d and nn.Linear, in execution order,
run on the meta device (shapes without arithmetic).
Attention's activation-by-activation products (Q.K^T, P.V) have no weights and are not
listed. Run with Debian's PyTorch:

  /usr/bin/python3 tools/standard_models.py /tmp/bitplan-models
  /usr/bin/python3 tools/standard_models.py --compare PROFILE.yaml CHAINS.json PLANS.json

--compare predicts each chain as the sum of its layers' profile medians plus the conversion
entries the chain inserts, and prints prediction vs. measurement.
"""
import argparse
import json
import math
import os
import sys

PRECISIONS = ["fp32", "fp16", "bf16", "int8", "fp8_e4m3", "w4a16"]


def conv_key(n, c, h, w, k, r, s, st, pad, dil, g):
    return (f"conv:n{n}:c{c}:h{h}:w{w}:k{k}:r{r}:s{s}:st{st[0]}x{st[1]}:"
            f"p{pad[0]}x{pad[1]}x{pad[2]}x{pad[3]}:d{dil[0]}x{dil[1]}:g{g}")


def gemm_key(m, n, k):
    return f"gemm:m{m}:n{n}:k{k}"


def pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def collect_layers(model, example):
    """Runs `example` through `model` and returns its conv/gemm layers in execution order."""
    import torch
    layers = []
    hooks = []

    def conv_hook(name):
        def hook(module, inputs, output):
            x = inputs[0]
            n, c, h, w = x.shape
            kh, kw = module.kernel_size
            st, dil = pair(module.stride), pair(module.dilation)
            if isinstance(module.padding, str):
                raise SystemExit(f"layer {name}: padding '{module.padding}': only explicit "
                                 "numeric padding is supported")
            ph, pw = pair(module.padding)
            pad = (ph, pw, ph, pw)  # top, left, bottom, right
            k = module.out_channels
            oh, ow = output.shape[2], output.shape[3]
            layers.append({
                "name": name, "key": conv_key(n, c, h, w, k, kh, kw, st, pad, dil, module.groups),
                "op": "conv", "n": n, "c": c, "h": h, "w": w, "k": k, "r": kh, "s": kw,
                "stride": list(st), "pad": list(pad), "dilation": list(dil),
                "groups": module.groups, "out_h": oh, "out_w": ow,
                "input_elements": n * c * h * w, "output_elements": n * k * oh * ow})
        return hook

    def linear_hook(name):
        def hook(module, inputs, output):
            x = inputs[0]
            k = x.shape[-1]
            m = int(math.prod(x.shape[:-1]))
            n = module.out_features
            layers.append({"name": name, "key": gemm_key(m, n, k), "op": "gemm",
                           "m": m, "n": n, "k": k,
                           "input_elements": m * k, "output_elements": m * n})
        return hook

    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Conv2d):
            hooks.append(module.register_forward_hook(conv_hook(name)))
        elif isinstance(module, torch.nn.Linear):
            hooks.append(module.register_forward_hook(linear_hook(name)))
    with torch.no_grad():
        model(example)
    for h in hooks:
        h.remove()
    return layers


def build_models():
    """name -> (module builder, example-input builder(batch), batches)."""
    import torch
    import torch.nn as nn
    import torchvision

    class EncoderLayer(nn.Module):
        """BERT-base layer with explicit Linear projections (post-LN, GELU)."""

        def __init__(self, hidden=768, heads=12, ffn=3072):
            super().__init__()
            self.heads = heads
            self.q, self.k, self.v = (nn.Linear(hidden, hidden) for _ in range(3))
            self.out = nn.Linear(hidden, hidden)
            self.ln1, self.ln2 = nn.LayerNorm(hidden), nn.LayerNorm(hidden)
            self.ffn_in, self.ffn_out = nn.Linear(hidden, ffn), nn.Linear(ffn, hidden)

        def forward(self, x):
            b, t, d = x.shape
            hd = d // self.heads

            def split(y):
                return y.reshape(b, t, self.heads, hd).transpose(1, 2)

            q, k, v = split(self.q(x)), split(self.k(x)), split(self.v(x))
            att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(hd), dim=-1)
            y = (att @ v).transpose(1, 2).reshape(b, t, d)
            x = self.ln1(x + self.out(y))
            return self.ln2(x + self.ffn_out(nn.functional.gelu(self.ffn_in(x))))

    class Bert(nn.Module):
        def __init__(self, layers=12):
            super().__init__()
            self.layers = nn.ModuleList(EncoderLayer() for _ in range(layers))

        def forward(self, x):
            for layer in self.layers:
                x = layer(x)
            return x

    class RMSNorm(nn.Module):
        def __init__(self, dim, eps=1e-6):
            super().__init__()
            self.weight = nn.Parameter(torch.ones(dim))
            self.eps = eps

        def forward(self, x):
            return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight

    class LlamaBlock(nn.Module):
        """One Llama decoder block: RMSNorm, rotary attention, RMSNorm, SwiGLU MLP."""

        def __init__(self, hidden=4096, heads=32, ffn=11008, max_len=128):
            super().__init__()
            self.heads = heads
            self.q_proj, self.k_proj, self.v_proj, self.o_proj = (
                nn.Linear(hidden, hidden, bias=False) for _ in range(4))
            self.gate_proj = nn.Linear(hidden, ffn, bias=False)
            self.up_proj = nn.Linear(hidden, ffn, bias=False)
            self.down_proj = nn.Linear(ffn, hidden, bias=False)
            self.norm1, self.norm2 = RMSNorm(hidden), RMSNorm(hidden)
            hd = hidden // heads
            inv = 1.0 / (10000 ** (torch.arange(0, hd, 2).float() / hd))
            angles = torch.outer(torch.arange(max_len).float(), inv)
            self.register_buffer("cos", torch.cat([angles.cos()] * 2, -1), persistent=False)
            self.register_buffer("sin", torch.cat([angles.sin()] * 2, -1), persistent=False)

        def rotate(self, y, t):
            half = y.shape[-1] // 2
            rotated = torch.cat([-y[..., half:], y[..., :half]], -1)
            return y * self.cos[:t] + rotated * self.sin[:t]

        def forward(self, x):
            b, t, d = x.shape
            hd = d // self.heads
            h = self.norm1(x)

            def split(y):
                return y.reshape(b, t, self.heads, hd).transpose(1, 2)

            q = self.rotate(split(self.q_proj(h)), t)
            k = self.rotate(split(self.k_proj(h)), t)
            v = split(self.v_proj(h))
            scores = q @ k.transpose(-1, -2) / math.sqrt(hd)
            causal = torch.triu(torch.full((t, t), float("-inf"), device=x.device), 1)
            y = (torch.softmax(scores + causal, -1) @ v).transpose(1, 2).reshape(b, t, d)
            x = x + self.o_proj(y)
            h = self.norm2(x)
            return x + self.down_proj(nn.functional.silu(self.gate_proj(h)) * self.up_proj(h))

    return {
        "resnet50": (lambda: torchvision.models.resnet50(),
                     lambda b: torch.randn(b, 3, 224, 224), [1, 16, 256]),
        "mobilenetv2": (lambda: torchvision.models.mobilenet_v2(),
                        lambda b: torch.randn(b, 3, 224, 224), [1, 16, 256]),
        "bert_base": (lambda: Bert(), lambda b: torch.randn(b, 128, 768), [1, 16]),
        "llama_block_prefill128": (lambda: LlamaBlock(),
                                   lambda b: torch.randn(b, 128, 4096), [1, 16]),
        "llama_block_decode": (lambda: LlamaBlock(), lambda b: torch.randn(b, 1, 4096), [1, 16]),
    }


def plans_for(model, batch, layers):
    """Chain-validation plans: uniform precisions, W4A16 on GEMMs, and a mix."""
    def plan(name, choose):
        return {"name": f"{model}_b{batch}_{name}",
                "layers": [{"key": l["key"], "precision": choose(i, l)}
                           for i, l in enumerate(layers)]}

    last = len(layers) - 1

    def mixed(i, layer):
        # A typical hand-made plan: first and last layers and depthwise convs stay fp16,
        # the rest int8.
        depthwise = layer["op"] == "conv" and layer["groups"] > 1
        return "fp16" if i in (0, last) or depthwise else "int8"

    return [
        plan("fp32", lambda i, l: "fp32"),
        plan("fp16", lambda i, l: "fp16"),
        plan("int8", lambda i, l: "int8"),
        plan("fp8", lambda i, l: "fp8_e4m3"),
        plan("w4a16_gemm", lambda i, l: "w4a16" if l["op"] == "gemm" else "fp16"),
        plan("mix_fp16_int8", mixed),
    ]


def export(out_dir, no_onnx):
    import torch
    torch.manual_seed(0)
    os.makedirs(os.path.join(out_dir, "workloads"), exist_ok=True)
    all_plans = []
    for name, (build, example, batches) in build_models().items():
        model = build().eval()
        if not no_onnx:
            os.makedirs(os.path.join(out_dir, "onnx"), exist_ok=True)
            path = os.path.join(out_dir, "onnx", f"{name}.onnx")
            torch.onnx.export(model, example(1), path, opset_version=17,
                              input_names=["input"], output_names=["output"],
                              dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}})
            print(f"wrote {path}")
        # Shapes only: a copy on the meta device runs the forward pass without arithmetic
        # (the 128-token Llama block at batch 16 takes minutes on a CPU otherwise).
        shapes_only = build().eval().to("meta")
        for batch in batches:
            layers = collect_layers(shapes_only, example(batch).to("meta"))
            doc = {"bitplan_workloads": 1, "model": f"{name}.onnx", "batch": batch,
                   "precisions": PRECISIONS, "layers": layers}
            path = os.path.join(out_dir, "workloads", f"{name}_b{batch}.json")
            with open(path, "w") as f:
                json.dump(doc, f, indent=1)
            unique = len({l["key"] for l in layers})
            print(f"wrote {path}: {len(layers)} layers, {unique} distinct keys")
            if batch in (1, 16):
                all_plans += plans_for(name, batch, layers)
    path = os.path.join(out_dir, "plans.json")
    with open(path, "w") as f:
        json.dump({"plans": all_plans}, f, indent=1)
    print(f"wrote {path}: {len(all_plans)} plans")


def compare(profile_path, chains_path, plans_path):
    """Prints predicted (sum of profile entries) vs. measured chain totals."""
    import yaml
    with open(profile_path) as f:
        profile = yaml.safe_load(f)
    with open(chains_path) as f:
        chains = json.load(f)
    with open(plans_path) as f:
        plans = {p["name"]: p for p in json.load(f)["plans"]}
    entries = {(e["key"], e["precision"]): e for e in profile["entries"]}
    conversions = {(c["from"], c["to"], c["elements"]): c["median_us"]
                   for c in profile["conversions"]}
    # The element type a layer reads and writes, named by precision (as the profile does).
    reads = {"fp32": "fp32", "fp16": "fp16", "bf16": "bf16", "int8": "int8",
             "fp8_e4m3": "fp8_e4m3", "w4a16": "fp16"}
    writes = {"fp32": "fp32", "fp16": "fp16", "bf16": "bf16", "int8": "fp16",
              "int8_chained": "int8", "fp8_e4m3": "fp16", "fp8_e4m3_chained": "fp8_e4m3",
              "w4a16": "fp16"}
    rows = []
    for result in chains["results"]:
        plan = plans[result["name"]]
        if "unsupported" in result:
            rows.append((result["name"], None, None, result["unsupported"]))
            continue
        predicted, previous, missing = 0.0, None, None
        for i, layer in enumerate(plan["layers"]):
            precision = layer["precision"]
            # As --chain runs it: an int8 (fp8) layer before an int8 (fp8) layer writes the
            # reader's codes (its *_chained entry) where the profile has one.
            following = plan["layers"][i + 1]["precision"] if i + 1 < len(plan["layers"]) else None
            chained = entries.get((layer["key"], precision + "_chained"))
            if (precision in ("int8", "fp8_e4m3") and following == precision and chained
                    and "median_us" in chained):
                precision += "_chained"
            entry = entries.get((layer["key"], precision))
            if entry is None or "median_us" not in entry:
                missing = f"no profile entry for {layer['key']} {layer['precision']}"
                break
            predicted += entry["median_us"]
            if previous is not None and previous != reads[layer["precision"]]:
                from_to = (previous, reads[layer["precision"]],
                           _input_elements(layer["key"]))
                if from_to not in conversions:
                    missing = f"no conversion entry {from_to}"
                    break
                predicted += conversions[from_to]
            previous = writes[precision]
        rows.append((result["name"], None if missing else predicted, result["median_us"],
                     missing))
    print(f"{'plan':44s} {'predicted_us':>12s} {'measured_us':>12s} {'pred/meas':>9s}")
    for name, predicted, measured, note in rows:
        if predicted is None:
            print(f"{name:44s} {'-':>12s} {measured if measured else '-':>12} {'-':>9s}  {note}")
        else:
            print(f"{name:44s} {predicted:12.1f} {measured:12.1f} {predicted / measured:9.3f}")


def _input_elements(key):
    """Input element count of a layer key (gemm: m*k; conv: n*c*h*w)."""
    fields = {}
    for field in key.split(":")[1:]:
        name = field.rstrip("0123456789x")
        fields.setdefault(name, field[len(name):])
    if key.startswith("gemm:"):
        return int(fields["m"]) * int(fields["k"])
    return int(fields["n"]) * int(fields["c"]) * int(fields["h"]) * int(fields["w"])


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out_dir", nargs="?", help="folder for onnx/, workloads/, plans.json")
    parser.add_argument("--no-onnx", action="store_true", help="write workloads and plans only")
    parser.add_argument("--compare", nargs=3, metavar=("PROFILE", "CHAINS", "PLANS"),
                        help="predicted vs. measured chain totals")
    args = parser.parse_args()
    if args.compare:
        compare(*args.compare)
    elif args.out_dir:
        export(args.out_dir, args.no_onnx)
    else:
        parser.error("give OUT_DIR or --compare PROFILE CHAINS PLANS")


if __name__ == "__main__":
    sys.exit(main())
