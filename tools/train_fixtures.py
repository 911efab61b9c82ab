#!/usr/bin/python3
"""Trains (Fashion-MNIST) or loads (CIFAR-10, published weights) bitplan's fixture models,
exports them to ONNX and writes the torch reference outputs the C++ tests compare against.

    /usr/bin/python3 tools/train_fixtures.py [--only NAME ...] [--epochs N] [--reuse]

Dev-time tooling; needs Debian's torch 1.13 / onnx 1.12 (/usr/bin/python3). Outputs, per
model NAME, under models/ (see tools/README.md):
    NAME.onnx            opset 13, input "input" [batch, C, H, W], output "logits" [batch, 10]
    NAME.json            metadata: source, preprocessing, dataset paths, torch accuracy, ...
    NAME.preds.npy       uint8 [N]: torch top-1 predictions on the full test set, dataset order
    NAME.logits.npy      float32 [1000, 10]: torch fp32 logits of the first 1000 test samples
    torch/NAME.pt        state dict (used by bench/torch_peer.py)
and models/fmnist_vit_opset17.onnx (the ViT with LayerNormalization ops).
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import os
import struct
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch.onnx import symbolic_helper

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import fixture_models as fm  # noqa: E402

SEED = 0
BATCH = 128
OPSET = 13
LOGITS_SAMPLES = 1000
ONNX_CHECK_SAMPLES = 256

FMNIST_DIR = "/usr/share/datasets/fashion-mnist"
FMNIST_MEAN, FMNIST_STD = 0.2860, 0.3530
FMNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                  "Sneaker", "Bag", "Ankle boot"]

CIFAR_DIR_REL = "../shared/data/cifar10"          # relative to the repository root
CIFAR_MEAN = [0.485, 0.456, 0.406]                # ../shared/models/cifar10-resnet/README.md
CIFAR_STD = [0.229, 0.224, 0.225]
CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                 "ship", "truck"]

# Default epochs (Adam, batch 128, cosine schedule); chosen to keep each run to a few
# minutes on 2 CPU threads.
FMNIST_EPOCHS = {"fmnist_resnet": 3, "fmnist_mobilenetv2": 2, "fmnist_vit": 2,
                 "fmnist_mlp": 6}
LR = {"fmnist_resnet": 2e-3, "fmnist_mobilenetv2": 2e-3, "fmnist_vit": 1e-3,
      "fmnist_mlp": 1e-3}


# --------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------
def read_idx(path: str) -> np.ndarray:
    """IDX file (optionally gzipped) of unsigned bytes -> numpy array of its shape."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4:
        raise ValueError(f"{path}: too short for an IDX header")
    zero, dtype, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte IDX file (magic {data[:4].hex()})")
    dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    count = int(np.prod(dims))
    body = data[4 + 4 * ndim:]
    if len(body) != count:
        raise ValueError(f"{path}: {len(body)} data bytes, header says {count}")
    return np.frombuffer(body, dtype=np.uint8).reshape(dims)


def fmnist_paths() -> dict:
    return {split + "_" + kind: os.path.join(FMNIST_DIR, f"{prefix}-{kind}-idx{n}-ubyte.gz")
            for split, prefix in (("train", "train"), ("test", "t10k"))
            for kind, n in (("images", 3), ("labels", 1))}


def fmnist_tensors(split: str) -> tuple[torch.Tensor, torch.Tensor]:
    paths = fmnist_paths()
    images = read_idx(paths[f"{split}_images"])
    labels = read_idx(paths[f"{split}_labels"])
    assert images.shape[0] == labels.shape[0] and images.shape[1:] == (28, 28)
    x = torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1)
    x = (x - FMNIST_MEAN) / FMNIST_STD
    return x.contiguous(), torch.from_numpy(labels.astype(np.int64))


def cifar_test_tensors() -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """All test JPEGs in dataset order: class folders sorted, file names sorted."""
    from PIL import Image
    root = os.path.join(REPO, CIFAR_DIR_REL, "test")
    classes = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
    if classes != CIFAR_CLASSES:
        raise ValueError(f"class folders {classes} differ from CIFAR-10 order {CIFAR_CLASSES}")
    images, labels = [], []
    for idx, cls in enumerate(classes):
        folder = os.path.join(root, cls)
        for fname in sorted(os.listdir(folder)):
            if not fname.lower().endswith((".jpg", ".jpeg")):
                continue
            with Image.open(os.path.join(folder, fname)) as im:
                images.append(np.asarray(im.convert("RGB"), dtype=np.uint8))
            labels.append(idx)
    x = torch.from_numpy(np.stack(images).astype(np.float32) / 255.0).permute(0, 3, 1, 2)
    mean = torch.tensor(CIFAR_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CIFAR_STD).view(1, 3, 1, 1)
    return ((x - mean) / std).contiguous(), torch.tensor(labels, dtype=torch.int64), classes


# --------------------------------------------------------------------------------------
# Training and evaluation
# --------------------------------------------------------------------------------------
def train(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int, lr: float,
          log_prefix: str) -> None:
    gen = torch.Generator().manual_seed(SEED)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    steps_per_epoch = math.ceil(x.shape[0] / BATCH)
    total = epochs * steps_per_epoch
    warmup = min(100, total // 10)

    def lr_at(step: int) -> float:
        if step < warmup:
            return lr * (step + 1) / warmup
        return lr * 0.5 * (1.0 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))

    step = 0
    model.train()
    for epoch in range(epochs):
        t0 = time.time()
        perm = torch.randperm(x.shape[0], generator=gen)
        loss_sum, correct = 0.0, 0
        for i in range(0, x.shape[0], BATCH):
            idx = perm[i:i + BATCH]
            xb, yb = x[idx], y[idx]
            for group in opt.param_groups:
                group["lr"] = lr_at(step)
            logits = model(xb)
            loss = F.cross_entropy(logits, yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            loss_sum += loss.item() * xb.shape[0]
            correct += int((logits.argmax(1) == yb).sum())
        print(f"{log_prefix} epoch {epoch + 1}/{epochs}: loss {loss_sum / x.shape[0]:.4f} "
              f"train acc {correct / x.shape[0]:.4f} ({time.time() - t0:.0f} s)", flush=True)
    model.eval()


@torch.no_grad()
def predict(model: torch.nn.Module, x: torch.Tensor, batch: int = 500) -> torch.Tensor:
    model.eval()
    return torch.cat([model(x[i:i + batch]) for i in range(0, x.shape[0], batch)]).float()


# --------------------------------------------------------------------------------------
# ONNX export, clean-up and an independent check
# --------------------------------------------------------------------------------------
def _pad_symbolic(g, input, pad, mode, value):
    """aten::pad with constant pads -> one Pad node with a constant pads tensor (torch 1.13
    otherwise emits a ConstantOfShape/Concat/Reshape/Slice/Transpose/Cast subgraph that
    constant folding does not remove)."""
    mode_s = symbolic_helper._maybe_get_const(mode, "s")
    pads = symbolic_helper._maybe_get_const(pad, "is")
    rank = symbolic_helper._get_tensor_rank(input)
    value_c = symbolic_helper._maybe_get_const(value, "f")
    if mode_s != "constant" or not isinstance(pads, list) or rank is None or \
            not (symbolic_helper._is_none(value) or value_c == 0.0):
        raise RuntimeError("fixture export: only zero constant padding with constant pads")
    begin, end = [0] * rank, [0] * rank
    for i in range(len(pads) // 2):       # torch order: last dim first, (begin, end) pairs
        begin[rank - 1 - i] = pads[2 * i]
        end[rank - 1 - i] = pads[2 * i + 1]
    pads_t = g.op("Constant", value_t=torch.tensor(begin + end, dtype=torch.int64))
    return g.op("Pad", input, pads_t, mode_s="constant")


_PAD_REGISTERED = set()


def _module_path(node_name: str) -> str:
    """torch 1.13 node name -> state-dict module path. A scope part that starts with the
    previous part + '.' is a Sequential child named relative to that part:
    '/layer1/layer1.0/conv1/Conv' -> 'layer1.0.conv1',
    '/layer2/downsample/downsample.0/Conv' -> 'layer2.downsample.0'."""
    base, prev = "", ""
    for part in node_name.strip("/").split("/")[:-1]:
        if prev and part.startswith(prev + "."):
            prev = part                      # replaces the previous part
        else:
            base = f"{base}.{prev}" if base and prev else (prev or base)
            prev = part
    return f"{base}.{prev}" if base and prev else (prev or base)


def clean_onnx(model: onnx.ModelProto) -> onnx.ModelProto:
    """Cosmetic clean-up that keeps the computation identical:
    - Identity nodes that only alias an initializer (torch's initializer de-duplication)
      are removed and their consumers read the initializer directly;
    - unnamed initializers ('onnx::Conv_151', BN-folded weights and biases, transposed
      Linear weights) that feed exactly one Conv/Gemm/MatMul are renamed after the module,
      e.g. 'layer1.0.conv1.weight' / '.bias', so layers map back to the torch model."""
    g = model.graph
    inits = {t.name: t for t in g.initializer}
    outputs = {o.name for o in g.output}
    alias = {}
    keep = []
    for node in g.node:
        if node.op_type == "Identity" and node.input[0] in inits and \
                node.output[0] not in outputs:
            alias[node.output[0]] = node.input[0]
        else:
            keep.append(node)
    for node in keep:
        for i, name in enumerate(node.input):
            if name in alias:
                node.input[i] = alias[name]
    del g.node[:]
    g.node.extend(keep)

    uses = {}
    for node in g.node:
        for name in node.input:
            uses[name] = uses.get(name, 0) + 1
    taken = set(inits) | {o for n in g.node for o in n.output} | {i.name for i in g.input}
    rename = {}
    for node in g.node:
        if node.op_type not in ("Conv", "Gemm", "MatMul"):
            continue
        path = _module_path(node.name)
        for i, suffix in ((1, "weight"), (2, "bias")):
            if i >= len(node.input):
                continue
            old = node.input[i]
            new = f"{path}.{suffix}"
            if old in inits and old.startswith("onnx::") and uses.get(old) == 1 and path \
                    and new not in taken:
                rename[old] = new
                taken.add(new)
    for node in g.node:
        for i, name in enumerate(node.input):
            if name in rename:
                node.input[i] = rename[name]
    for t in g.initializer:
        if t.name in rename:
            t.name = rename[t.name]
    dropped = set(alias)
    vi = [v for v in g.value_info if v.name not in dropped]
    del g.value_info[:]
    g.value_info.extend(vi)
    return model


def export_onnx(model: torch.nn.Module, name: str, path: str, opset: int) -> onnx.ModelProto:
    import onnx  # here, not at the top: bench/torch_ptq.py reads the datasets without onnx
    if opset not in _PAD_REGISTERED:
        torch.onnx.register_custom_op_symbolic("aten::pad", _pad_symbolic, opset)
        _PAD_REGISTERED.add(opset)
    model.eval()
    dummy = torch.zeros(2, *fm.input_shape(name))
    tmp = path + ".tmp"
    torch.onnx.export(model, dummy, tmp, opset_version=opset, input_names=["input"],
                      output_names=["logits"], do_constant_folding=True,
                      dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    proto = clean_onnx(onnx.load(tmp))
    os.remove(tmp)
    proto.doc_string = f"bitplan fixture {name} (tools/train_fixtures.py)"
    onnx.checker.check_model(proto)
    onnx.save(proto, tmp)
    onnx.checker.check_model(tmp)
    os.replace(tmp, path)          # readers (tests, benchmarks) never see a partial file
    return proto


def run_onnx(proto: onnx.ModelProto, x: torch.Tensor) -> torch.Tensor:
    """Minimal torch-backed interpreter for the ops these fixtures use; an export check
    that does not need onnxruntime."""
    import onnx
    from onnx import numpy_helper

    env = {t.name: torch.from_numpy(numpy_helper.to_array(t).copy()) for t in proto.graph.initializer}
    env[proto.graph.input[0].name] = x

    def attr(node, key, default=None):
        for a in node.attribute:
            if a.name == key:
                return onnx.helper.get_attribute_value(a)
        return default

    for node in proto.graph.node:
        ins = [env[n] if n else None for n in node.input]
        op = node.op_type
        if op == "Constant":
            out = torch.from_numpy(numpy_helper.to_array(attr(node, "value")).copy())
        elif op == "Identity":
            out = ins[0]
        elif op == "Conv":
            pads = attr(node, "pads", [0, 0, 0, 0])
            assert pads[:2] == pads[2:], "asymmetric Conv pads"
            out = F.conv2d(ins[0], ins[1], ins[2] if len(ins) > 2 else None,
                           stride=attr(node, "strides", [1, 1]), padding=pads[:2],
                           dilation=attr(node, "dilations", [1, 1]), groups=attr(node, "group", 1))
        elif op == "Gemm":
            a = ins[0].t() if attr(node, "transA", 0) else ins[0]
            b = ins[1].t() if attr(node, "transB", 0) else ins[1]
            out = attr(node, "alpha", 1.0) * (a @ b)
            if len(ins) > 2 and ins[2] is not None:
                out = out + attr(node, "beta", 1.0) * ins[2]
        elif op == "MatMul":
            out = torch.matmul(ins[0], ins[1])
        elif op in ("Add", "Sub", "Mul", "Div", "Pow"):
            fn = {"Add": torch.add, "Sub": torch.sub, "Mul": torch.mul, "Div": torch.div,
                  "Pow": torch.pow}[op]
            out = fn(ins[0], ins[1])
        elif op == "Relu":
            out = torch.relu(ins[0])
        elif op == "Clip":
            out = torch.clamp(ins[0], ins[1].item() if ins[1] is not None else None,
                              ins[2].item() if len(ins) > 2 and ins[2] is not None else None)
        elif op == "Sqrt":
            out = torch.sqrt(ins[0])
        elif op == "Erf":
            out = torch.erf(ins[0])
        elif op == "Softmax":
            out = torch.softmax(ins[0], dim=attr(node, "axis", -1))
        elif op == "GlobalAveragePool":
            out = ins[0].mean(dim=(2, 3), keepdim=True)
        elif op == "Flatten":
            axis = attr(node, "axis", 1)
            out = ins[0].reshape(int(np.prod(ins[0].shape[:axis])), -1)
        elif op == "Reshape":
            shape = [ins[0].shape[i] if s == 0 else s for i, s in enumerate(ins[1].tolist())]
            out = ins[0].reshape(shape)
        elif op == "Transpose":
            out = ins[0].permute(attr(node, "perm"))
        elif op == "Gather":
            out = torch.from_numpy(np.take(ins[0].numpy(), ins[1].numpy(), axis=attr(node, "axis", 0)))
        elif op == "Slice":
            data = ins[0].numpy()
            starts, ends = ins[1].tolist(), ins[2].tolist()
            axes = ins[3].tolist() if len(ins) > 3 and ins[3] is not None else list(range(len(starts)))
            steps = ins[4].tolist() if len(ins) > 4 and ins[4] is not None else [1] * len(starts)
            index = [slice(None)] * data.ndim
            for s, e, a, st in zip(starts, ends, axes, steps):
                index[a] = slice(s, min(e, data.shape[a]) if e >= 0 else e, st)
            out = torch.from_numpy(data[tuple(index)].copy())
        elif op == "Pad":
            assert attr(node, "mode", b"constant") in (b"constant", "constant")
            p = ins[1].tolist()
            r = len(p) // 2
            value = ins[2].item() if len(ins) > 2 and ins[2] is not None else 0.0
            out = torch.from_numpy(np.pad(ins[0].numpy(), [(p[i], p[i + r]) for i in range(r)],
                                          constant_values=value))
        elif op == "ReduceMean":
            out = ins[0].mean(dim=attr(node, "axes"), keepdim=bool(attr(node, "keepdims", 1)))
        elif op == "LayerNormalization":
            axis = attr(node, "axis", -1) % ins[0].dim()
            out = F.layer_norm(ins[0], ins[0].shape[axis:], ins[1],
                               ins[2] if len(ins) > 2 else None, eps=attr(node, "epsilon", 1e-5))
        else:
            raise NotImplementedError(f"run_onnx: op {op}")
        env[node.output[0]] = out
    return env[proto.graph.output[0].name]


def check_onnx(proto: onnx.ModelProto, name: str, x: torch.Tensor, ref: torch.Tensor) -> dict:
    inp = proto.graph.input[0].type.tensor_type.shape.dim
    out = proto.graph.output[0].type.tensor_type.shape.dim
    assert proto.graph.input[0].name == "input" and proto.graph.output[0].name == "logits"
    assert inp[0].dim_param == "batch" and out[0].dim_param == "batch", "batch axis not dynamic"
    assert [d.dim_value for d in inp[1:]] == list(fm.input_shape(name))
    with torch.no_grad():
        got = run_onnx(proto, x)
    diff = float((got - ref).abs().max())
    agree = float((got.argmax(1) == ref.argmax(1)).float().mean())
    if diff > 1e-3:
        raise RuntimeError(f"{name}: ONNX graph differs from torch by {diff}")
    return {"samples": int(x.shape[0]), "max_abs_logit_diff": diff, "top1_agreement": agree,
            "evaluator": "torch-backed op-by-op interpreter in tools/train_fixtures.py"}


# --------------------------------------------------------------------------------------
# Outputs
# --------------------------------------------------------------------------------------
def save_npy(path: str, arr: np.ndarray) -> None:
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        np.save(f, np.ascontiguousarray(arr), allow_pickle=False)
    with open(tmp, "rb") as f:
        head = f.read(8)
    assert head[:6] == b"\x93NUMPY" and head[6] == 1, f"{path}: not an .npy v1 file"
    os.replace(tmp, path)


def write_outputs(name: str, model: torch.nn.Module, x_test: torch.Tensor,
                  y_test: torch.Tensor, meta: dict, out_dir: str,
                  save_state: bool = True) -> dict:
    logits = predict(model, x_test)
    preds = logits.argmax(1)
    acc = float((preds == y_test).float().mean())
    save_npy(os.path.join(out_dir, f"{name}.preds.npy"), preds.numpy().astype(np.uint8))
    save_npy(os.path.join(out_dir, f"{name}.logits.npy"),
             logits[:LOGITS_SAMPLES].numpy().astype("<f4"))
    os.makedirs(os.path.join(out_dir, "torch"), exist_ok=True)
    pt_path = os.path.join(out_dir, "torch", f"{name}.pt")
    if save_state or not os.path.isfile(pt_path):
        with open(pt_path + ".tmp", "wb") as f:
            torch.save(model.state_dict(), f)
        os.replace(pt_path + ".tmp", pt_path)

    onnx_path = os.path.join(out_dir, f"{name}.onnx")
    proto = export_onnx(model, name, onnx_path, OPSET)
    n = min(ONNX_CHECK_SAMPLES, x_test.shape[0])
    checks = {f"{name}.onnx": check_onnx(proto, name, x_test[:n], logits[:n])}
    extra_files = {}
    if name == "fmnist_vit":
        p17 = os.path.join(out_dir, "fmnist_vit_opset17.onnx")
        proto17 = export_onnx(model, name, p17, 17)
        ops17 = sorted({nd.op_type for nd in proto17.graph.node})
        assert "LayerNormalization" in ops17
        checks["fmnist_vit_opset17.onnx"] = check_onnx(proto17, name, x_test[:n], logits[:n])
        extra_files["onnx_opset17"] = "models/fmnist_vit_opset17.onnx"
        meta.setdefault("notes", []).append(
            "models/fmnist_vit_opset17.onnx is the same weights exported at opset 17: "
            "LayerNorm as the LayerNormalization op (GELU stays Div/Erf/Add/Mul/Mul, as "
            "opset 17 has no Gelu op). Same input/output, preprocessing and reference "
            "outputs as this file.")

    ops = {}
    for nd in proto.graph.node:
        ops[nd.op_type] = ops.get(nd.op_type, 0) + 1
    c, h, w = fm.input_shape(name)
    info = {
        "name": name,
        **meta,
        "opset": OPSET,
        "input": {"name": "input", "shape": ["batch", c, h, w], "dtype": "float32",
                  "layout": "NCHW"},
        "output": {"name": "logits", "shape": ["batch", 10], "dtype": "float32"},
        "torch_version": torch.__version__,
        "onnx_version": onnx.__version__,
        "torch_test_accuracy": round(acc, 6),
        "test_samples": int(x_test.shape[0]),
        "files": {"onnx": f"models/{name}.onnx", "preds": f"models/{name}.preds.npy",
                  "logits": f"models/{name}.logits.npy",
                  "logits_samples": LOGITS_SAMPLES,
                  "torch_state_dict": f"models/torch/{name}.pt", **extra_files},
        "onnx_ops": dict(sorted(ops.items())),
        "onnx_parameters": int(sum(int(np.prod(t.dims)) for t in proto.graph.initializer)),
        "onnx_check": checks,
    }
    info.setdefault("notes", []).append(
        "Exported with torch.onnx.export in eval mode, do_constant_folding=True: BatchNorm "
        "is folded into the preceding Conv; then Identity aliases of initializers were "
        "removed and unnamed initializers renamed after their module (clean_onnx).")
    json_path = os.path.join(out_dir, f"{name}.json")
    with open(json_path + ".tmp", "w") as f:
        json.dump(info, f, indent=2)
        f.write("\n")
    os.replace(json_path + ".tmp", json_path)
    sizes = {p: os.path.getsize(os.path.join(out_dir, p)) for p in
             [f"{name}.onnx"] + (["fmnist_vit_opset17.onnx"] if name == "fmnist_vit" else [])}
    print(f"{name}: torch test accuracy {acc:.4f} on {x_test.shape[0]}; "
          f"onnx check {json.dumps(checks)}; sizes {sizes}", flush=True)
    return info


def fmnist_model(name: str, epochs: int, reuse: bool, out_dir: str) -> None:
    torch.manual_seed(SEED)
    model = fm.build(name)
    pt = os.path.join(out_dir, "torch", f"{name}.pt")
    x_test, y_test = fmnist_tensors("test")
    if reuse:
        model.load_state_dict(torch.load(pt, map_location="cpu"))
        prev = json.load(open(os.path.join(out_dir, f"{name}.json")))
        train_info = prev["train"]
    else:
        x_train, y_train = fmnist_tensors("train")
        t0 = time.time()
        train(model, x_train, y_train, epochs, LR[name], name)
        train_info = {"epochs": epochs, "seconds": round(time.time() - t0, 1), "seed": SEED,
                      "optimizer": "Adam", "lr": LR[name],
                      "schedule": "linear warm-up (100 steps) then cosine to 0",
                      "batch": BATCH, "threads": torch.get_num_threads(),
                      "augmentation": "none", "train_samples": int(x_train.shape[0])}
    paths = fmnist_paths()
    meta = {
        "source": ("trained here from a fixed seed; reproduce with: /usr/bin/python3 "
                   f"tools/train_fixtures.py --only {name} --epochs {train_info['epochs']} "
                   f"--threads {train_info['threads']}"),
        "dataset": {"name": "Fashion-MNIST", "format": "idx",
                    "test_images": paths["test_images"], "test_labels": paths["test_labels"],
                    "train_images": paths["train_images"],
                    "train_labels": paths["train_labels"],
                    "classes": FMNIST_CLASSES,
                    "preprocess": {"scale": 1.0 / 255.0, "mean": [FMNIST_MEAN],
                                   "std": [FMNIST_STD]}},
        "train": train_info,
    }
    model.eval()
    write_outputs(name, model, x_test, y_test, meta, out_dir, save_state=not reuse)


def cifar_model(name: str, out_dir: str) -> None:
    rel = fm.PUBLISHED_WEIGHTS[name]
    model = fm.build(name)
    model.load_state_dict(fm.load_published_cifar_state_dict(os.path.join(REPO, rel)),
                          strict=True)
    blob = torch.load(os.path.join(REPO, rel), map_location="cpu")
    x_test, y_test, classes = cifar_test_tensors()
    meta = {
        "source": (f"published weights {rel} (Y. Idelbayev, pytorch_resnet_cifar10, "
                   f"BSD-2-Clause, see ../shared/models/cifar10-resnet/LICENSE); not trained "
                   f"here. Publisher's best_prec1 on the original CIFAR-10 arrays: "
                   f"{float(blob.get('best_prec1', float('nan'))):.2f}%"),
        "dataset": {"name": "CIFAR-10 (JPEG re-encoding)", "format": "image_folder",
                    "paths_relative_to": "repository root",
                    "test_root": f"{CIFAR_DIR_REL}/test", "calib_root": f"{CIFAR_DIR_REL}/calib",
                    "order": "class folders sorted, then file names sorted; label = index of "
                             "the class folder in sorted order",
                    "classes": classes, "decode": "PIL (libjpeg-turbo), RGB",
                    "preprocess": {"scale": 1.0 / 255.0, "mean": CIFAR_MEAN, "std": CIFAR_STD}},
        "train": {"epochs": 0, "seconds": 0.0, "seed": None,
                  "note": "not trained here: published weights"},
        "notes": ["The first 1000 test samples (logits.npy) are all class 0 (airplane), "
                  "because the dataset order is class-major."],
    }
    model.eval()
    write_outputs(name, model, x_test, y_test, meta, out_dir)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", action="append", choices=sorted(fm.MODELS),
                    help="model to build (repeatable); default all")
    ap.add_argument("--epochs", type=int, help="epochs for every Fashion-MNIST model "
                    f"(default per model: {FMNIST_EPOCHS})")
    ap.add_argument("--reuse", action="store_true",
                    help="skip training: load models/torch/NAME.pt and re-export")
    ap.add_argument("--threads", type=int, default=2,
                    help="torch threads (default 2; use 1 when other jobs load the cores: "
                    "OpenMP threads that share busy cores run slower than one thread)")
    ap.add_argument("--out", default=os.path.join(REPO, "models"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    os.makedirs(args.out, exist_ok=True)
    for name in args.only or list(fm.MODELS):
        if name.startswith("fmnist"):
            fmnist_model(name, args.epochs or FMNIST_EPOCHS[name], args.reuse, args.out)
        else:
            cifar_model(name, args.out)


if __name__ == "__main__":
    main()
