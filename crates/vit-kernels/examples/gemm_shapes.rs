//! The Linear layers' GEMMs of the benchmarked ViTs, one shape at a time, through vit's fused
//! Linear (`x W + b`) on the CPU backend: which GEMM runs is the process's `VIT_CPU_GEMM`
//! (`cpu_gemm.rs`). Prints one JSON line per shape (best of `--repeats` calls, GFLOP/s).
//!
//! `cargo xtask gemm-shapes` runs it once per GEMM and PyTorch's `F.linear` on the same shapes
//! (xtask/python/gemm_shapes.py), and writes the table into BENCHMARKS.md.

use std::time::Instant;

use burn::nn::LinearConfig;
use burn::tensor::{Device, Distribution, Tensor};
use vit_kernels as fused;
use vit_kernels::cpu_gemm::select_cpu_gemm;

/// (model, layer, rows, in, out): rows = batch x tokens of the bench cases.
const SHAPES: [(&str, &str, usize, usize, usize); 14] = [
    ("fmnist (b128, 50 tok, D64)", "qkv", 6400, 64, 192),
    ("fmnist (b128, 50 tok, D64)", "proj", 6400, 64, 64),
    ("fmnist (b128, 50 tok, D64)", "fc1", 6400, 64, 256),
    ("fmnist (b128, 50 tok, D64)", "fc2", 6400, 256, 64),
    ("cifar (b128, 65 tok, D192)", "qkv", 8320, 192, 576),
    ("cifar (b128, 65 tok, D192)", "fc1", 8320, 192, 768),
    ("cifar (b128, 65 tok, D192)", "fc2", 8320, 768, 192),
    ("ti16 (b32, 197 tok, D192)", "qkv", 6304, 192, 576),
    ("ti16 (b32, 197 tok, D192)", "fc1", 6304, 192, 768),
    ("ti16 (b32, 197 tok, D192)", "fc2", 6304, 768, 192),
    ("b16 (b8, 197 tok, D768)", "qkv", 1576, 768, 2304),
    ("b16 (b8, 197 tok, D768)", "proj", 1576, 768, 768),
    ("b16 (b8, 197 tok, D768)", "fc1", 1576, 768, 3072),
    ("b16 (b8, 197 tok, D768)", "fc2", 1576, 3072, 768),
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let repeats: usize = std::env::args()
        .skip_while(|a| a != "--repeats")
        .nth(1)
        .map_or(Ok(20), |s| s.parse())?;
    let gemm = select_cpu_gemm()?;
    let device = Device::flex();
    for (model, layer, m, k, n) in SHAPES {
        let x = Tensor::<3>::random([1, m, k], Distribution::Default, &device);
        let linear = LinearConfig::new(k, n).init(&device);
        let mut best = f64::MAX;
        for _ in 0..repeats + 2 {
            let t = Instant::now();
            let y = fused::linear(&linear, x.clone());
            drop(y.into_data());
            best = best.min(t.elapsed().as_secs_f64());
        }
        let gflops = 2.0 * (m * k * n) as f64 / best / 1e9;
        println!(
            "{}",
            serde_json::json!({"gemm": gemm.short_name(), "model": model, "layer": layer,
                "m": m, "k": k, "n": n, "gflop_s": gflops})
        );
    }
    Ok(())
}
