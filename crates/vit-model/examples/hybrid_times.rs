//! Where the hybrid R26+ViT-S/32 spends its inference time at batch 8 (the `r26s32-infer`
//! bench case) on Flex: the whole forward, the ResNet, its convolutions and GroupNorms alone.
//!
//! `cargo run --release --workspace --features vit-model/wgpu --example hybrid_times` (best
//! of 5 per line).

use std::time::Instant;

use burn::tensor::{Device, Distribution, Tensor};
use vit_model::VitConfig;

fn time(name: &str, mut f: impl FnMut()) {
    let mut best = f64::MAX;
    for _ in 0..5 {
        let t = Instant::now();
        f();
        best = best.min(t.elapsed().as_secs_f64());
    }
    println!("{name}: {:.1} ms", best * 1e3);
}

fn main() {
    let device = Device::flex();
    let model = VitConfig::preset("vit_small_r26_s32_224")
        .unwrap()
        .init(&device);
    let x = Tensor::<4>::random([8, 3, 224, 224], Distribution::Normal(0.0, 1.0), &device);
    let backbone = model.patch_embed.backbone.as_ref().unwrap();
    time("forward", || {
        model.forward(x.clone()).unwrap().into_data();
    });
    time("backbone", || {
        backbone.forward(x.clone()).into_data();
    });
    // Every conv and norm of the backbone on inputs of its shapes.
    let mut convs = Vec::new();
    let mut norms = Vec::new();
    let stem = backbone.stem.conv.forward(x.clone());
    norms.push((&backbone.stem.norm, stem.clone()));
    convs.push((&backbone.stem.conv, x.clone()));
    let mut h = backbone.stem.forward(x.clone());
    for stage in &backbone.stages {
        for block in &stage.blocks {
            let y1 = block.conv1.forward(h.clone());
            let y2 = block.conv2.forward(y1.clone());
            let y3 = block.conv3.forward(y2.clone());
            convs.extend([
                (&block.conv1, h.clone()),
                (&block.conv2, y1.clone()),
                (&block.conv3, y2.clone()),
            ]);
            norms.extend([(&block.norm1, y1), (&block.norm2, y2), (&block.norm3, y3)]);
            if let Some(d) = &block.downsample {
                let y = d.conv.forward(h.clone());
                convs.push((&d.conv, h.clone()));
                norms.push((&d.norm, y));
            }
            h = block.forward(h);
        }
    }
    time("convs (with weight standardisation)", || {
        for (conv, x) in &convs {
            conv.forward(x.clone()).into_data();
        }
    });
    for k in [1, 3, 7] {
        time(&format!("  {k}x{k} convs"), || {
            for (conv, x) in convs.iter().filter(|(c, _)| c.weight.dims()[2] == k) {
                conv.forward(x.clone()).into_data();
            }
        });
    }
    time("weight standardisation alone", || {
        for (conv, _) in &convs {
            conv.standardized_weight().into_data();
        }
    });
    time("group norms", || {
        for (norm, x) in &norms {
            norm.forward(x.clone()).into_data();
        }
    });
}
