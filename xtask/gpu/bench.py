"""The GPU pack's benchmark (run by .gpu/run.sh): ours (the packed `bench` on wgpu) against
PyTorch + timm (bench_torch.py on CUDA) case by case in one process tree, each run with a step
count and a timeout inside the script's deadline, and the peak GPU memory of each run read from
nvidia-smi while it runs. Writes gpu.md (the table) and gpu.jsonl (one raw line per run).
"""
import argparse
import json
import os
import subprocess
import threading
import time

CASES = ["b16-trainer-b64", "b16-infer-b64", "s16-infer-b64", "r26s32-infer-b64"]
WHAT = {
    "b16-trainer-b64": "ViT-B/16 training, batch 64 (configs/b16.toml's step: AdamW, clip 1, dropout 0.1)",
    "b16-infer-b64": "ViT-B/16 inference, batch 64",
    "s16-infer-b64": "ViT-S/16 inference, batch 64",
    "r26s32-infer-b64": "R26+ViT-S/32 (hybrid) inference, batch 64",
}


def smi(query):
    try:
        out = subprocess.run(["nvidia-smi", query, "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=10)
        return out.stdout.strip().splitlines() if out.returncode == 0 else []
    except (OSError, subprocess.TimeoutExpired):
        return []


def used_mib():
    """Memory in use on GPU 0 (MiB), or None without nvidia-smi."""
    lines = smi("--query-gpu=memory.used")
    return float(lines[0]) if lines else None


class Peak(threading.Thread):
    """Samples nvidia-smi every 0.2 s while a run goes: the most the run's process held
    (--query-compute-apps), else the most in use on the card less what was in use before."""

    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid, self.base, self.total, self.proc = pid, used_mib(), 0.0, 0.0
        self.stop = threading.Event()

    def run(self):
        while not self.stop.wait(0.2):
            used = used_mib()
            if used is not None and self.base is not None:
                self.total = max(self.total, used - self.base)
            for line in smi("--query-compute-apps=pid,used_memory"):
                parts = [p.strip() for p in line.split(",")]
                if len(parts) == 2 and parts[0] == str(self.pid) and parts[1].isdigit():
                    self.proc = max(self.proc, float(parts[1]))

    def mib(self):
        return self.proc or self.total or None


def one(cmd, timeout, env=None):
    """Runs one bench process; its JSON line (the last stdout line that parses) with the
    sampled peak GPU memory, or {"error": ...}."""
    t = time.time()
    print(f"  $ {' '.join(cmd)}  (timeout {timeout:.0f}s)", flush=True)
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env={**os.environ, **(env or {})})
    peak = Peak(p.pid)
    peak.start()
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        p.communicate()
        return {"error": f"timed out after {timeout:.0f}s", "wall_s": time.time() - t}
    finally:
        peak.stop.set()
        peak.join()
    for line in reversed(out.strip().splitlines()):
        try:
            v = json.loads(line)
            v["gpu_peak_mib"] = peak.mib()
            v["wall_s"] = time.time() - t
            return v
        except json.JSONDecodeError:
            continue
    lines = [l for l in err.strip().splitlines() if l.strip() and not l.startswith("note: run with")]
    panic = [l for l in lines if "panicked at" in l]
    tail = (lines[lines.index(panic[-1]) + 1] if panic and lines.index(panic[-1]) + 1 < len(lines)
            else (lines or ["no output"])[-1])
    return {"error": f"exit {p.returncode}: {tail[:200]}", "wall_s": time.time() - t}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pack", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--gpu", default="")
    ap.add_argument("--tests", help="the tests' result lines (markdown)")
    ap.add_argument("--deadline", type=float, required=True, help="epoch seconds")
    ap.add_argument("--dry-run", action="store_true")
    args = ap.parse_args()
    dry = args.dry_run
    bench = os.path.join(args.pack, "bin", "bench")
    torch_py = os.path.join(args.pack, "bench_torch.py")
    # Step counts: enough timed steps for a stable median on a GPU; one on a rasterizer.
    steps = ["--steps", "1", "--warmup", "1"] if dry else ["--steps", "10", "--warmup", "3"]
    # A dry run's rasterizer computes on the CPU: the models at 64 px (ViT-B/16 on 16 patches).
    small = ["--batch", "2", "--image-size", "64"] if dry else []
    torch_device = "cpu" if dry else "cuda"
    threads = str(os.cpu_count() or 1)

    def ours(case, dtype):
        return (f"vit wgpu {dtype}", [bench, case, *steps, *small, "--device", "wgpu", "--dtype", dtype,
                                      "--config", os.path.join(args.pack, "configs", "b16.toml")], 150)

    def torch(case, dtype, autocast=False, compile_=False):
        label = f"PyTorch {torch_device} {dtype}" + (" autocast" if autocast else "") + (" compile" if compile_ else "")
        cmd = ["python3" if not os.environ.get("VIT_GPU_PYTHON") else os.environ["VIT_GPU_PYTHON"],
               torch_py, case, *steps, *small, "--threads", threads, "--device", torch_device,
               "--dtype", dtype]
        if autocast:
            cmd.append("--autocast")
        if compile_:
            cmd.append("--compile")
        return (label, cmd, 180 if compile_ else 90)

    # First pass: the f32 comparison and bf16 autocast on every case; then what is extra (f16
    # on wgpu, torch.compile), as long as time is left.
    plan = []
    for case in CASES:
        plan += [(case, *ours(case, "f32")), (case, *torch(case, "f32"))]
        if not dry:
            plan.append((case, *torch(case, "bf16", autocast=True)))
    for case in CASES:
        plan.append((case, *ours(case, "f16")))
        if not dry:
            plan.append((case, *torch(case, "f32", compile_=True)))

    rows = []
    with open(os.path.join(args.out, "gpu.jsonl"), "w") as raw:
        for case, label, cmd, timeout in plan:
            left = args.deadline - time.time() - 15
            if left < 20:
                rows.append((case, label, {"error": "skipped: out of time"}))
                continue
            print(f"[{case}] {label} ...", flush=True)
            r = one(cmd, min(timeout, left))
            r["label"] = label
            print(f"  -> {r.get('img_s', 0):.1f} img/s" if "error" not in r else f"  -> {r['error']}",
                  flush=True)
            raw.write(json.dumps(r) + "\n")
            raw.flush()
            rows.append((case, label, r))

    tests = open(args.tests).read().strip() if args.tests and os.path.exists(args.tests) else ""
    md = [f"GPU: {args.gpu or 'unknown'}." + (" **Dry run** (one step, batch 2 at 64 px, PyTorch on the CPU): "
                                               "no speed is measured here." if dry else ""),
          f"Steps: median of {steps[1]} after {steps[3]} warm-up; ours on wgpu (Vulkan), PyTorch + timm on "
          f"{torch_device}; GPU memory is the run's peak by nvidia-smi.", "", tests, "",
          "| case | side | img/s | vs PyTorch f32 | peak GPU memory | host peak RSS |",
          "|---|---|---|---|---|---|"]
    for case in CASES:
        base = next((r.get("img_s") for c, l, r in rows if c == case and l.endswith(f"{torch_device} f32")
                     and "error" not in r), None)
        md.append(f"| **{WHAT[case]}** | | | | | |")
        for c, label, r in rows:
            if c != case:
                continue
            if "error" in r:
                md.append(f"| | {label} | {r['error']} | | | |")
                continue
            ratio = f"{r['img_s'] / base:.2f}x" if base else ""
            mem = f"{r['gpu_peak_mib']:.0f} MiB" if r.get("gpu_peak_mib") else "n/a"
            md.append(f"| | {label} | {r['img_s']:.1f} | {ratio} | {mem} | {r.get('peak_rss_mib', 0):.0f} MiB |")
    with open(os.path.join(args.out, "gpu.md"), "w") as f:
        f.write("\n".join(md) + "\n")
    print("\n".join(md), flush=True)
    ok = any("error" not in r for _, _, r in rows)
    return 0 if ok and "FAILED" not in tests else 1


if __name__ == "__main__":
    raise SystemExit(main())
