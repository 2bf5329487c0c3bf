//! Probe behind `fused::linear`'s row blocks: Flex's matmul (the gemm crate) on the shapes of a
//! CIFAR-size ViT's Linear layers (8,320 token rows), in one call and in row blocks.
//!
//! `cargo run --release -p vit-kernels --example gemm_blocks` (best of 12 per line, GFLOP/s).
//!
//! The last line of each shape calls the `gemm` crate directly, in one call, into a buffer
//! allocated once: with gemm's AVX-512 kernels (its `x86-v4` feature) that runs at full rate, so
//! the one-call slowdown through Flex is not gemm's blocking; it goes with Flex's fresh 19-25 MB
//! output per call (this example takes ~280k page faults, `perf stat -e page-faults`).

use std::time::Instant;

use burn::tensor::{Device, Distribution, Tensor};

fn main() {
    let device = Device::flex();
    for (m, k, n) in [(8320, 192, 576), (8320, 192, 768), (8320, 768, 192)] {
        let a = Tensor::<2>::random([m, k], Distribution::Normal(0.0, 1.0), &device);
        let b = Tensor::<2>::random([k, n], Distribution::Normal(0.0, 1.0), &device);
        for block in [m, 4160, 2080, 1024] {
            let mut best = f64::MAX;
            for _ in 0..12 {
                let t = Instant::now();
                let outs: Vec<_> = (0..m)
                    .step_by(block)
                    .map(|s| a.clone().narrow(0, s, block.min(m - s)).matmul(b.clone()))
                    .collect();
                outs.into_iter().for_each(|o| drop(o.into_data()));
                best = best.min(t.elapsed().as_secs_f64());
            }
            let gflops = 2.0 * (m * k * n) as f64 / best / 1e9;
            println!("[{m}, {k}] x [{k}, {n}] in blocks of {block} rows: {gflops:.1} GFLOP/s");
        }
        let a = a.into_data().try_into_vec::<f32>().unwrap();
        let b = b.into_data().try_into_vec::<f32>().unwrap();
        let mut c = vec![0.0f32; m * n];
        let mut best = f64::MAX;
        for _ in 0..12 {
            let t = Instant::now();
            // SAFETY: a is [m, k], b is [k, n] and c is [m, n], all dense row-major.
            unsafe {
                gemm::gemm(
                    m,
                    n,
                    k,
                    c.as_mut_ptr(),
                    1,
                    n as isize,
                    false,
                    a.as_ptr(),
                    1,
                    k as isize,
                    b.as_ptr(),
                    1,
                    n as isize,
                    0.0,
                    1.0,
                    false,
                    false,
                    false,
                    gemm::Parallelism::Rayon(0),
                );
            }
            best = best.min(t.elapsed().as_secs_f64());
        }
        let gflops = 2.0 * (m * k * n) as f64 / best / 1e9;
        println!(
            "[{m}, {k}] x [{k}, {n}] gemm crate, one call, output allocated once: {gflops:.1} GFLOP/s"
        );
    }
}
