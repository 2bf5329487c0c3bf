//! Per-op times of one ViT-Ti/16 block at batch 32 (`[32, 197, 192]` tokens) on Flex: what a
//! block's forward pass spends where, for the kernels in `vit_kernels`.
//!
//! `cargo run --release -p vit-kernels --example op_times` (best of 20 per line; `+ 0.0` lines
//! time the copy that gives the in-place kernels a buffer of their own, to subtract).

use std::time::Instant;

use burn::nn::LinearConfig;
use burn::tensor::{Device, Distribution, Tensor};
use vit_kernels as fused;

fn time(name: &str, mut f: impl FnMut()) {
    let mut best = f64::MAX;
    for _ in 0..20 {
        let t = Instant::now();
        f();
        best = best.min(t.elapsed().as_secs_f64());
    }
    println!("{name}: {:.3} ms", best * 1e3);
}

fn main() {
    let device = Device::flex();
    let (b, s, d, heads) = (32, 197, 192, 3);
    let random =
        |shape: [usize; 3]| Tensor::<3>::random(shape, Distribution::Normal(0.0, 1.0), &device);
    let (x, h, qkv) = (
        random([b, s, d]),
        random([b, s, 4 * d]),
        random([b, s, 3 * d]),
    );
    let scores = Tensor::<4>::random([b, heads, s, s], Distribution::Normal(0.0, 1.0), &device);
    let (gamma, beta) = (Tensor::ones([d], &device), Tensor::zeros([d], &device));
    let linear = |d_in, d_out| LinearConfig::new(d_in, d_out).init(&device);
    let (l_qkv, l_proj, l_fc1, l_fc2) = (
        linear(d, 3 * d),
        linear(d, d),
        linear(d, 4 * d),
        linear(4 * d, d),
    );
    // Reading the result back waits for it (Flex runs eagerly; this keeps the timing honest
    // should it not).
    let done3 = |t: Tensor<3>| drop(t.into_data());
    let done4 = |t: Tensor<4>| drop(t.into_data());

    time("x + 0.0 ([32, 197, 192])", || done3(x.clone() + 0.0));
    time("layer_norm", || {
        done3(fused::layer_norm(
            x.clone() + 0.0,
            gamma.clone(),
            beta.clone(),
            1e-6,
        ))
    });
    time("residual add", || done3(x.clone() + x.clone()));
    time("qkv linear", || done3(fused::linear(&l_qkv, x.clone())));
    time("multi_head_attention", || {
        done3(fused::multi_head_attention(qkv.clone(), heads))
    });
    time("scores + 0.0 ([32, 3, 197, 197])", || {
        done4(scores.clone() + 0.0)
    });
    time("scaled_softmax", || {
        done4(fused::scaled_softmax(scores.clone() + 0.0, 0.125))
    });
    time("proj linear", || done3(fused::linear(&l_proj, x.clone())));
    time("fc1 linear", || done3(fused::linear(&l_fc1, x.clone())));
    time("fc1 linear_gelu", || {
        done3(fused::linear_gelu(&l_fc1, x.clone()))
    });
    time("h + 0.0 ([32, 197, 768])", || done3(h.clone() + 0.0));
    time("gelu", || done3(fused::gelu(h.clone() + 0.0)));
    time("fc2 linear", || done3(fused::linear(&l_fc2, h.clone())));
}
