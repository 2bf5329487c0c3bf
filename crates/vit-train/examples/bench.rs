//! One benchmark case of `cargo xtask bench`, on our side: prints one JSON line with the
//! median step time, images/s and the process's peak resident memory.
//!
//! `bench CASE [--steps N] [--warmup N] [--device cpu] [--dtype f32|bf16|f16]`, CASE one of
//! `cifar-train`, `cifar-infer`, `ti16-train`, `ti16-infer`, `b16-infer`, `r26s32-infer` (the
//! hybrid R26+ViT-S/32), `gemm`, and for GPUs (`cargo xtask gpu-check`) `b16-train-b64`,
//! `b16-infer-b64` (ViT-B/16 at batch 64), and `fmnist-train`: the main job's training step
//! as `vit-train` runs it (configs/fashion-mnist.toml's model, batch, AdamW, clipping and
//! augmentation, batches made by its loader from datasets/fashion-mnist, run from the
//! repository root; the time of a step includes waiting for its batch). `--dtype` sets the device's float type for every
//! tensor (Burn has no mixed precision). Each case runs in its own
//! process so that its peak memory is its own. Training steps are forward, backward and an
//! AdamW step (PyTorch's defaults) on random data; inference is a forward pass without
//! autodiff. The allocator is the `vit-train` binary's (mimalloc, configured by
//! `vit_train::alloc`).

use std::time::Instant;

use anyhow::{Context, Result, bail};
use burn::module::Module;
use burn::optim::{AdamWConfig, GradientsParams};
use burn::tensor::{Device, Distribution, FloatDType, Int, Tensor};
use vit_model::{VitConfig, device_from_name};

/// (model, batch, train?) of a case.
fn case(name: &str) -> Result<Option<(VitConfig, usize, bool)>> {
    let cifar = VitConfig::new()
        .with_image_size([32, 32])
        .with_patch_size([4, 4])
        .with_num_classes(10)
        .with_embed_dim(192)
        .with_depth(6)
        .with_num_heads(3)
        .with_mlp_dim(Some(768));
    let ti16 = VitConfig::preset("vit_tiny_patch16_224")?;
    let b16 = VitConfig::preset("vit_base_patch16_224")?;
    let r26s32 = VitConfig::preset("vit_small_r26_s32_224")?;
    Ok(Some(match name {
        "cifar-train" => (cifar, 128, true),
        "cifar-infer" => (cifar, 128, false),
        "ti16-train" => (ti16, 32, true),
        "ti16-infer" => (ti16, 32, false),
        "b16-infer" => (b16.clone(), 8, false),
        "b16-train-b64" => (b16.clone(), 64, true),
        "b16-infer-b64" => (b16, 64, false),
        "r26s32-infer" => (r26s32, 8, false),
        "gemm" | "fmnist-train" => return Ok(None),
        other => bail!(
            "unknown case `{other}`; expected cifar-train, cifar-infer, ti16-train, ti16-infer, \
             b16-infer, r26s32-infer, b16-train-b64, b16-infer-b64, fmnist-train or gemm"
        ),
    }))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Peak resident set size of this process, from /proc (0 where unavailable).
fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

/// Times `step` `warmup + steps` times; returns the median of the timed ones (seconds).
fn time(warmup: usize, steps: usize, mut step: impl FnMut()) -> f64 {
    for _ in 0..warmup {
        step();
    }
    median(
        (0..steps)
            .map(|_| {
                let t = Instant::now();
                step();
                t.elapsed().as_secs_f64()
            })
            .collect(),
    )
}

/// The main job's step: (median seconds, images per step, GFLOP per step).
fn fmnist_train(warmup: usize, steps: usize, device: &Device) -> Result<(f64, usize, f64)> {
    use std::sync::Arc;
    use vit_train::config::Config;
    use vit_train::data::load_splits;
    use vit_train::data::loader::{Loader, Mode, plan};
    use vit_train::data::transforms::Transform;
    use vit_train::train::{optim, step};

    let config = Config::load(std::path::Path::new("configs/fashion-mnist.toml"), &[])?;
    let t = config.train.clone();
    let vit = config.model.config.clone();
    let splits = load_splits(&config.data, &vit, t.seed)?;
    let ad = device.clone().autodiff();
    let mut model = Some(vit.init_seeded(t.seed, &ad)?);
    let mut optim = optim::build(&t, model.as_ref().expect("model"));
    let set = Arc::new(splits.train);
    let shape = set.shape;
    let mode = Mode::Train {
        seed: t.seed,
        epoch: 0,
        smoothing: t.label_smoothing,
    };
    let batches = plan(set.len(), t.batch_size, mode, true);
    let transform = Arc::new(Transform::training(&config.data));
    let mut loader = Loader::new(set, batches, 0, mode, transform, config.data.workers);
    let s = time(warmup, steps, || {
        let batch = loader.next().expect("a batch").expect("readable data");
        let (m, _) = step::optimizer_step(
            model.take().expect("model"),
            &mut optim,
            &batch,
            shape,
            &t,
            t.lr,
            None,
            &ad,
        )
        .expect("a finite loss");
        model = Some(m);
    });
    let per_image = vit.flops_per_image() as f64 / 1e9;
    Ok((s, t.batch_size, 3.0 * per_image * t.batch_size as f64))
}

fn main() -> Result<()> {
    // The allocator settings of the vit-train binary (mimalloc keeping freed memory).
    vit_train::alloc::configure();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let name = args.first().context(
        "usage: bench CASE [--steps N] [--warmup N] [--device D] [--dtype f32|bf16|f16]",
    )?;
    let flag = |f: &str| {
        args.iter()
            .position(|a| a == f)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let steps: usize = flag("--steps").map_or(Ok(10), |s| s.parse())?;
    let warmup: usize = flag("--warmup").map_or(Ok(2), |s| s.parse())?;
    let device_name = flag("--device").unwrap_or_else(|| "cpu".into());
    // The CPU kernels' GEMM (VIT_CPU_GEMM): an unusable value is an error, not a silent fallback.
    let cpu_gemm = vit_model::cpu_gemm::select_cpu_gemm()?;
    let mut device = device_from_name(&device_name)?;
    let dtype = flag("--dtype").unwrap_or_else(|| "f32".into());
    let float = match dtype.as_str() {
        "f32" => FloatDType::F32,
        "bf16" => FloatDType::BF16,
        "f16" => FloatDType::F16,
        other => bail!("--dtype {other}: expected f32, bf16 or f16"),
    };
    if float != FloatDType::F32 {
        device
            .configure(float)
            .map_err(|e| anyhow::anyhow!("{device_name} cannot compute in {dtype}: {e:?}"))?;
    }

    let (seconds, images, gflop) = match case(name)? {
        None if name == "fmnist-train" => fmnist_train(warmup, steps, &device)?,
        None => {
            // A 2048 x 2048 product through vit's Linear (the kernels' GEMM on `cpu`, with the
            // bias added in its epilogue: 4M adds against 17 GFLOP).
            let n = 2048;
            let a = Tensor::<3>::random([1, n, n], Distribution::Default, &device);
            let layer = burn::nn::LinearConfig::new(n, n).init(&device);
            let s = time(warmup, steps, || {
                let c = vit_model::fused::linear(&layer, a.clone());
                let _ = c.into_data();
            });
            (s, 0, 2.0 * (n as f64).powi(3) / 1e9)
        }
        Some((config, batch, train)) => {
            let per_image = config.flops_per_image() as f64 / 1e9;
            let shape = [
                batch,
                config.in_channels,
                config.image_size[0],
                config.image_size[1],
            ];
            let classes = config.num_classes;
            if train {
                let ad = device.clone().autodiff();
                let mut model = Some(config.init(&ad));
                let mut optim = AdamWConfig::new().with_epsilon(1e-8).init();
                let x = Tensor::<4>::random(shape, Distribution::Default, &ad);
                let y = Tensor::<1, Int>::from_data(
                    (0..batch as i64)
                        .map(|i| i % classes as i64)
                        .collect::<Vec<_>>()
                        .as_slice(),
                    &ad,
                );
                let s = time(warmup, steps, || {
                    let m = model.take().expect("model");
                    let logits = m.forward(x.clone()).expect("input fits");
                    let loss = burn::nn::loss::CrossEntropyLossConfig::new()
                        .init(&ad)
                        .forward(logits, y.clone());
                    let grads = GradientsParams::from_grads(loss.backward(), &m);
                    let m = optim.step(1e-4, m, grads);
                    // Wait for the update (lazy backends).
                    let _ = m
                        .head
                        .as_ref()
                        .map(|h| h.bias.as_ref().map(|b| b.val().into_data()));
                    model = Some(m);
                });
                // forward + backward ~ 3x the forward FLOPs.
                (s, batch, 3.0 * per_image * batch as f64)
            } else {
                let model = config.init(&device.clone().autodiff()).valid();
                let x = Tensor::<4>::random(shape, Distribution::Default, &device);
                let s = time(warmup, steps, || {
                    let _ = model.forward(x.clone()).expect("input fits").into_data();
                });
                (s, batch, per_image * batch as f64)
            }
        }
    };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "{}",
        serde_json::json!({
            "side": "vit",
            "backend": device_name,
            "cpu_gemm": cpu_gemm.short_name(),
            "dtype": dtype,
            "case": name,
            "seconds": seconds,
            "img_s": if images > 0 { images as f64 / seconds } else { 0.0 },
            "gflop_s": gflop / seconds,
            "peak_rss_mib": peak_rss_mib(),
            "threads": threads,
            "steps": steps,
        })
    );
    Ok(())
}
