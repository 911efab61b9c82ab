"""What bench/peers_methods.py, peers_llm.py and peers_cnn.py share: bitplan's calibration
selection, ONNX Runtime sessions as the peers' models run, and the rule that a peer's refusal
or failure is a result - printed and kept in its row, never replaced by a figure."""
import os
import sys
import traceback


def select_indices(count, seed, size):
    """bitplan's data/dataset.cpp select_indices (offset 0): the first `count` positions of
    the identity (seed 0) or of a splitmix64 Fisher-Yates shuffle (seed != 0)."""
    order = list(range(size))
    if seed != 0:
        mask = (1 << 64) - 1
        state = seed & mask

        def next_u64():
            nonlocal state
            state = (state + 0x9E3779B97F4A7C15) & mask
            z = state
            z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
            z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
            return z ^ (z >> 31)

        def below(bound):
            threshold = ((1 << 64) - bound) % bound
            while True:
                r = next_u64()
                if r >= threshold:
                    return r % bound

        for i in range(size - 1, 0, -1):
            j = below(i + 1)
            order[i], order[j] = order[j], order[i]
    return order[:count]


def ort_session(path, threads, optimize=True):
    """An ONNX Runtime CPU session with `threads` intra-op threads, run sequentially; without
    `optimize` a QDQ model stays DequantizeLinear -> float op (the grid without the kernels)."""
    import onnxruntime as ort
    o = ort.SessionOptions()
    if not optimize:
        o.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    o.intra_op_num_threads = threads
    o.inter_op_num_threads = 1
    o.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(str(path), o, providers=["CPUExecutionProvider"])


def refusal(error):
    """The row note for a peer's exception (its type and first line), printed; with
    PEERS_TRACEBACK set, the traceback too."""
    text = str(error).strip()
    note = f"refused/failed: {type(error).__name__}: {text.splitlines()[0] if text else ''}"[:300]
    print(f"#   {note}", file=sys.stderr)
    if os.environ.get("PEERS_TRACEBACK"):
        traceback.print_exc()
    return note
