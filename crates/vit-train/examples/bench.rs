//! One benchmark case of `cargo xtask bench`, on our side: prints one JSON line with the
//! median step time, images/s and the process's peak resident memory.
//!
//! `bench CASE [--steps N] [--warmup N] [--device cpu] [--dtype f32|bf16|f16]`
//! `[--decoder auto|image|turbojpeg] [--cache off|on] [--workers N]`, CASE one of
//! `cifar-train`, `cifar-infer`, `ti16-train`, `ti16-infer`, `b16-infer`, `r26s32-infer` /
//! `r26s32-train` (the hybrid R26+ViT-S/32; training at batch 16), `resnet50-infer` /
//! `resnet50-train` (the ResNet baseline, BiT R50x1 at 224 px, batch 8 / 16), `gemm`, and for GPUs (`cargo xtask gpu-check`) `b16-train-b64`,
//! `b16-infer-b64` (ViT-B/16 at batch 64), for the GPU pack (`.gpu/run.sh`) `b16-trainer-b64`
//! (configs/b16.toml's step as the trainer takes it, `--config` for another recipe),
//! `s16-infer-b64` and `r26s32-infer-b64` (`--batch N` / `--image-size N` set another batch /
//! input size for any model case),
//! and `fmnist-train`: the main job's training step
//! as `vit-train` runs it (configs/fashion-mnist.toml's model, batch, AdamW, clipping and
//! augmentation, batches made by its loader from datasets/fashion-mnist, run from the
//! repository root; the time of a step includes waiting for its batch), and
//! `imagefolder-train` / `imagefolder-load`: training on `cargo xtask data imagenet-like`'s
//! folder (RandomResizedCrop 224 + flip, batch 64, 2 workers, a tiny ViT), or its loader alone;
//! `shards-train` / `shards-load`: the same on the same images as WebDataset shards. `--dtype` sets the device's float type for every
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
use vit_model::{Model, ModelConfig, VitConfig, device_from_name};

/// (model, batch, train?) of a case.
fn case(name: &str) -> Result<Option<(ModelConfig, usize, bool)>> {
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
    let s16 = VitConfig::preset("vit_small_patch16_224")?;
    // The paper's ResNet baseline: BiT-M R50x1 (timm resnetv2_50x1_bit) at 224 px.
    let r50 = ModelConfig::preset("resnetv2_50x1_bit")?;
    let (cifar, ti16, b16, r26s32, s16) = (
        ModelConfig::from(cifar),
        ModelConfig::from(ti16),
        ModelConfig::from(b16),
        ModelConfig::from(r26s32),
        ModelConfig::from(s16),
    );
    Ok(Some(match name {
        "cifar-train" => (cifar, 128, true),
        "cifar-infer" => (cifar, 128, false),
        "ti16-train" => (ti16, 32, true),
        "ti16-infer" => (ti16, 32, false),
        "b16-infer" => (b16.clone(), 8, false),
        "b16-train-b64" => (b16.clone(), 64, true),
        "b16-infer-b64" => (b16, 64, false),
        "r26s32-infer" => (r26s32.clone(), 8, false),
        "r26s32-train" => (r26s32.clone(), 16, true),
        "resnet50-infer" => (r50.clone(), 8, false),
        "resnet50-train" => (r50, 16, true),
        "s16-infer-b64" => (s16, 64, false),
        "r26s32-infer-b64" => (r26s32, 64, false),
        "gemm" | "fmnist-train" | "b16-trainer-b64" | "imagefolder-train" | "imagefolder-load"
        | "shards-train" | "shards-load" => return Ok(None),
        n if n.starts_with("sample-") => return Ok(None),
        other => bail!(
            "unknown case `{other}`; expected cifar-train, cifar-infer, ti16-train, ti16-infer, \
             b16-infer, r26s32-infer, r26s32-train, resnet50-infer, resnet50-train, \
             b16-train-b64, b16-infer-b64, b16-trainer-b64, s16-infer-b64, r26s32-infer-b64, \
             fmnist-train or gemm"
        ),
    }))
}

/// Reads the head's bias back, so that a lazy backend has run the optimiser's update.
fn wait_for_update(m: &Model) {
    let _ = match m {
        Model::Vit(v) => v
            .head
            .as_ref()
            .and_then(|h| h.bias.as_ref().map(|b| b.val().into_data())),
        Model::Bit(b) => b.head.as_ref().map(|h| h.fc.bias.val().into_data()),
    };
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

/// The headline recipe's step as the trainer takes it (`train::step::optimizer_step`):
/// configs/b16.toml's model (dropout 0.1), AdamW with its weight decay and no-decay groups,
/// clipping at global norm 1, at `batch` images a step without accumulation, on host batches
/// of random pixels uploaded each step as the loader's are. (median seconds, images, GFLOP).
fn b16_trainer(
    warmup: usize,
    steps: usize,
    device: &Device,
    config_path: &str,
    batch: usize,
    image_size: Option<usize>,
) -> Result<(f64, usize, f64)> {
    use vit_train::config::Config;
    use vit_train::data::loader::Batch;
    use vit_train::train::{optim, step};

    let mut overrides = vec![
        format!("train.batch_size={batch}"),
        "train.accum_steps=1".to_string(),
    ];
    if let Some(n) = image_size {
        overrides.push(format!("model.image_size=[{n}, {n}]"));
    }
    let config = Config::load(std::path::Path::new(config_path), &overrides)?;
    let t = config.train.clone();
    let vit = config.model.config.clone();
    let ad = device.clone().autodiff();
    let mut model = Some(vit.init_seeded(t.seed, &ad)?);
    let mut optim = optim::build(&t, model.as_ref().expect("model"));
    let shape = [vit.in_channels(), vit.image_size()[0], vit.image_size()[1]];
    let classes = vit.num_classes();
    // A fixed pseudo-random batch (an LCG: the values do not matter, only that they vary).
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let images = (0..batch * shape.iter().product::<usize>())
        .map(|_| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1);
            ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect();
    let labels: Vec<u32> = (0..batch as u32).map(|i| i % classes as u32).collect();
    let mut targets = vec![0.0f32; batch * classes];
    for (i, &l) in labels.iter().enumerate() {
        targets[i * classes + l as usize] = 1.0;
    }
    let data = Batch {
        images,
        labels,
        targets,
        skipped: Vec::new(),
    };
    let s = time(warmup, steps, || {
        let (m, _) = step::optimizer_step(
            model.take().expect("model"),
            &mut optim,
            &data,
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
    Ok((s, batch, 3.0 * per_image * batch as f64))
}

/// The image-folder cases' recipe: `cargo xtask data imagenet-like`'s training folder,
/// RandomResizedCrop 224 (bilinear) + flip, batch 64, 2 workers, a ViT too small to matter
/// (patch 32, D 32, one block); images read and decoded every step unless `cache` is "on".
fn imagefolder_config(
    decoder: &str,
    cache: &str,
    workers: usize,
    shards: bool,
) -> Result<vit_train::config::Config> {
    // The shard cases: the same images as shards (`vit-train shards --from
    // datasets/imagenet-like/train --out datasets/imagenet-like/shards`, or VIT_BENCH_SHARDS).
    let (format, root, train, test) = if shards {
        let root = std::env::var("VIT_BENCH_SHARDS")
            .unwrap_or_else(|_| "datasets/imagenet-like/shards".into());
        let index = std::path::Path::new(&root).join("train.index.json");
        let text = std::fs::read_to_string(&index).with_context(|| {
            format!(
                "the shard cases need {} (cargo xtask bench-shards writes it)",
                index.display()
            )
        })?;
        let v: serde_json::Value = serde_json::from_str(&text)?;
        let n = v["shards"].as_array().map_or(1, Vec::len);
        let pattern = format!("train-{{000000..{:06}}}.tar", n - 1);
        ("webdataset", root, pattern.clone(), pattern)
    } else {
        (
            "image-folder",
            "datasets/imagenet-like".to_string(),
            "train".to_string(),
            "val".to_string(),
        )
    };
    let text = format!(
        r#"
[model]
image_size = [224, 224]
patch_size = [32, 32]
num_classes = 10
embed_dim = 32
depth = 1
num_heads = 2
[data]
format = "{format}"
root = "{root}"
train = "{train}"
test = "{test}"
mean = [0.5, 0.5, 0.5]
std = [0.5, 0.5, 0.5]
workers = {workers}
decoder = "{decoder}"
cache = "{cache}"
on_bad_image = "skip"
[data.augment]
rrc_scale = [0.08, 1.0]
hflip = true
[train]
batch_size = 64
lr = 1e-3
"#
    );
    let path =
        std::env::temp_dir().join(format!("vit-bench-imagefolder-{}.toml", std::process::id()));
    std::fs::write(&path, text)?;
    let config = vit_train::config::Config::load(&path, &[]);
    let _ = std::fs::remove_file(&path);
    config
}

/// Training (or, `train = false`, the loader alone) on the image folder: (mean seconds per
/// batch, images per batch). The mean, not the median: batches come from two workers in
/// pairs, so steps alternate between waiting and not.
#[allow(clippy::too_many_arguments)]
fn imagefolder(
    train: bool,
    shards: bool,
    warmup: usize,
    steps: usize,
    device: &Device,
    decoder: &str,
    cache: &str,
    workers: usize,
) -> Result<(f64, usize, f64)> {
    use std::sync::Arc;
    use vit_train::data::load_splits;
    use vit_train::data::loader::{Loader, Mode, train_plan};
    use vit_train::data::transforms::Transform;
    use vit_train::train::{optim, step};

    let config = imagefolder_config(decoder, cache, workers, shards)?;
    let t = config.train.clone();
    let vit = config.model.config.clone();
    let splits = load_splits(&config.data, &vit, t.seed)
        .context("the image-folder cases need `cargo xtask data imagenet-like`")?;
    let set = Arc::new(splits.train);
    let shape = set.shape;
    let ad = device.clone().autodiff();
    let mut model = Some(vit.init_seeded(t.seed, &ad)?);
    let mut optim = optim::build(&t, model.as_ref().expect("model"));
    let transform = Arc::new(Transform::training(&config.data));
    let mut batches = std::iter::empty().boxed_loader();
    let mut epoch = 0;
    let mut next = || -> Result<vit_train::data::loader::Batch> {
        loop {
            if let Some(b) = batches.next() {
                return b;
            }
            let mode = Mode::Train {
                seed: t.seed,
                epoch,
                smoothing: 0.0,
            };
            epoch += 1;
            let d = &config.data;
            let p = train_plan(
                &set,
                t.batch_size,
                mode,
                (workers, d.shuffle_buffer, d.shuffle_initial),
            );
            batches =
                Loader::new(set.clone(), p, 0, mode, transform.clone(), workers).boxed_loader();
        }
    };
    let mut run = || -> Result<()> {
        let batch = next()?;
        if train {
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
            .map_err(|e| anyhow::anyhow!("{e}"))?;
            model = Some(m);
        }
        Ok(())
    };
    for _ in 0..warmup {
        run()?;
    }
    let start = Instant::now();
    for _ in 0..steps {
        run()?;
    }
    let s = start.elapsed().as_secs_f64() / steps as f64;
    let gflop = if train {
        3.0 * vit.flops_per_image() as f64 / 1e9 * t.batch_size as f64
    } else {
        0.0
    };
    Ok((s, t.batch_size, gflop))
}

/// One worker's work per image at `size`: read, decode, RandomResizedCrop (bilinear), flip,
/// normalise, in this thread: (seconds per image, 1, 0).
fn sample(size: usize, steps: usize, decoder: &str) -> Result<(f64, usize, f64)> {
    use rand::SeedableRng;
    use vit_train::data::transforms::Transform;
    let config = imagefolder_config(decoder, "off", 1, false)?;
    let set =
        vit_train::data::image_folder::load(&config.data.root.join("train"), [3, size, size])?;
    let t = Transform::training(&config.data);
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    let n = steps * 16;
    let pick: Vec<usize> = (0..n + 16)
        .map(|i| (i * 7919) % set.len())
        .filter(|&i| {
            !set.path(i)
                .is_some_and(|p| p.to_string_lossy().contains("odd_"))
        })
        .collect();
    for &i in &pick[..16] {
        t.train(set.source(i), [3, size, size], &mut rng)?;
    }
    let start = Instant::now();
    for &i in &pick[16..] {
        std::hint::black_box(t.train(set.source(i), [3, size, size], &mut rng)?);
    }
    Ok((
        start.elapsed().as_secs_f64() / (pick.len() - 16) as f64,
        1,
        0.0,
    ))
}

/// The decode and resize candidates on the folder's JPEGs, one thread, ms per image (best of
/// three passes): printed as one JSON object.
fn candidates() -> Result<serde_json::Value> {
    use rand::SeedableRng;
    use vit_model::Interpolation;
    use vit_train::config::Decoder;
    use vit_train::data::decode::decode;
    use vit_train::data::pixmap::{Pixmap, Rect};
    use vit_train::data::resize::resize_region;
    use vit_train::data::transforms::rrc_draw;
    let config = imagefolder_config("auto", "off", 1, false)?;
    let listing = vit_train::data::image_folder::list(&config.data.root.join("train"))?;
    let files: Vec<_> = listing
        .items
        .iter()
        .map(|(p, _)| p.clone())
        .filter(|p| !p.to_string_lossy().contains("odd_"))
        .collect();
    let step = (files.len() / 200).max(1);
    let data: Vec<Vec<u8>> = files
        .iter()
        .step_by(step)
        .map(std::fs::read)
        .collect::<std::io::Result<_>>()?;
    let n = data.len() as f64;
    let best = |f: &mut dyn FnMut()| {
        (0..3)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed().as_secs_f64() / n * 1e3
            })
            .fold(f64::MAX, f64::min)
    };
    let mut ms = serde_json::Map::new();
    ms.insert(
        "decode_image_crate".into(),
        best(&mut || {
            for d in &data {
                std::hint::black_box(image::load_from_memory(d).expect("jpeg").to_rgb8());
            }
        })
        .into(),
    );
    ms.insert(
        "decode_vit_pure_rust".into(),
        best(&mut || {
            for d in &data {
                std::hint::black_box(decode(d, 3, None, Decoder::Image).expect("jpeg"));
            }
        })
        .into(),
    );
    let imgs: Vec<Pixmap> = data
        .iter()
        .map(|d| decode(d, 3, None, Decoder::Image).map(|p| p.0))
        .collect::<Result<_>>()?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    let boxes: Vec<Rect> = imgs
        .iter()
        .map(|im| {
            rrc_draw(
                im.width,
                im.height,
                [0.08, 1.0],
                [0.75, 4.0 / 3.0],
                &mut rng,
            )
        })
        .collect();
    if Decoder::TURBOJPEG_BUILT {
        ms.insert(
            "decode_turbojpeg".into(),
            best(&mut || {
                for d in &data {
                    std::hint::black_box(decode(d, 3, None, Decoder::Turbojpeg).expect("jpeg"));
                }
            })
            .into(),
        );
        ms.insert(
            "decode_turbojpeg_crop_region".into(),
            best(&mut || {
                for (d, r) in data.iter().zip(&boxes) {
                    std::hint::black_box(decode(d, 3, Some(*r), Decoder::Turbojpeg).expect("jpeg"));
                }
            })
            .into(),
        );
    }
    for (name, filter) in [
        ("bilinear", Interpolation::Bilinear),
        ("bicubic", Interpolation::Bicubic),
    ] {
        ms.insert(
            format!("resize_{name}_vit_pillow_exact"),
            best(&mut || {
                for (im, r) in imgs.iter().zip(&boxes) {
                    std::hint::black_box(resize_region(im, *r, 224, 224, filter));
                }
            })
            .into(),
        );
        // fast_image_resize (SIMD, antialiased; not Pillow's rounding), crop included.
        let alg = match filter {
            Interpolation::Bilinear => fast_image_resize::FilterType::Bilinear,
            _ => fast_image_resize::FilterType::CatmullRom,
        };
        ms.insert(
            format!("resize_{name}_fast_image_resize"),
            best(&mut || {
                let mut resizer = fast_image_resize::Resizer::new();
                for (im, r) in imgs.iter().zip(&boxes) {
                    let src = fast_image_resize::images::ImageRef::new(
                        im.width as u32,
                        im.height as u32,
                        &im.px,
                        fast_image_resize::PixelType::U8x3,
                    )
                    .expect("image");
                    let mut dst = fast_image_resize::images::Image::new(
                        224,
                        224,
                        fast_image_resize::PixelType::U8x3,
                    );
                    let opts = fast_image_resize::ResizeOptions::new()
                        .resize_alg(fast_image_resize::ResizeAlg::Convolution(alg))
                        .crop(r.x as f64, r.y as f64, r.w as f64, r.h as f64);
                    resizer.resize(&src, &mut dst, &opts).expect("resize");
                    std::hint::black_box(dst);
                }
            })
            .into(),
        );
        let image_filter = match filter {
            Interpolation::Bilinear => image::imageops::FilterType::Triangle,
            _ => image::imageops::FilterType::CatmullRom,
        };
        ms.insert(
            format!("resize_{name}_image_imageops"),
            best(&mut || {
                for (im, r) in imgs.iter().zip(&boxes) {
                    let c = im.crop(*r);
                    let buf = image::RgbImage::from_raw(c.width as u32, c.height as u32, c.px)
                        .expect("rgb");
                    std::hint::black_box(image::imageops::resize(&buf, 224, 224, image_filter));
                }
            })
            .into(),
        );
    }
    let crops: Vec<Pixmap> = imgs
        .iter()
        .zip(&boxes)
        .map(|(im, r)| resize_region(im, *r, 224, 224, Interpolation::Bilinear))
        .collect();
    ms.insert(
        "to_tensor_normalize".into(),
        best(&mut || {
            for c in &crops {
                std::hint::black_box(c.to_normalized_chw(&[0.5; 3], &[0.5; 3]));
            }
        })
        .into(),
    );
    Ok(serde_json::json!({ "side": "vit", "case": "candidates", "images": data.len(), "ms": ms }))
}

/// A boxed batch iterator (the loader of the current epoch).
trait BoxedLoader {
    fn boxed_loader(self) -> Box<dyn Iterator<Item = Result<vit_train::data::loader::Batch>>>;
}

impl<I: Iterator<Item = Result<vit_train::data::loader::Batch>> + 'static> BoxedLoader for I {
    fn boxed_loader(self) -> Box<dyn Iterator<Item = Result<vit_train::data::loader::Batch>>> {
        Box::new(self)
    }
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
    let cpu_gemm = vit_kernels::cpu_gemm::select_cpu_gemm()?;
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

    let decoder = flag("--decoder").unwrap_or_else(|| "auto".into());
    let cache = flag("--cache").unwrap_or_else(|| "off".into());
    let workers: usize = flag("--workers").map_or(Ok(2), |s| s.parse())?;
    if name == "candidates" {
        println!("{}", candidates()?);
        return Ok(());
    }
    // --batch N: another batch size for the model cases (the GPU pack's dry run uses a small
    // one on a software rasterizer).
    let batch_override: Option<usize> = flag("--batch").map(|s| s.parse()).transpose()?;
    // --image-size N: the model cases at N x N pixels (the dry run's, on a rasterizer).
    let size_override: Option<usize> = flag("--image-size").map(|s| s.parse()).transpose()?;
    let (seconds, images, gflop) = match case(name)? {
        None if name == "fmnist-train" => fmnist_train(warmup, steps, &device)?,
        None if name == "b16-trainer-b64" => b16_trainer(
            warmup,
            steps,
            &device,
            &flag("--config").unwrap_or_else(|| "configs/b16.toml".into()),
            batch_override.unwrap_or(64),
            size_override,
        )?,
        None if name.starts_with("sample-") => {
            let size = name["sample-".len()..].parse().context("sample-SIZE")?;
            sample(size, steps, &decoder)?
        }
        None if name.starts_with("imagefolder-") || name.starts_with("shards-") => imagefolder(
            name.ends_with("-train"),
            name.starts_with("shards-"),
            warmup,
            steps,
            &device,
            &decoder,
            &cache,
            workers,
        )?,
        None => {
            // A 2048 x 2048 product through vit's Linear (the kernels' GEMM on `cpu`, with the
            // bias added in its epilogue: 4M adds against 17 GFLOP).
            let n = 2048;
            let a = Tensor::<3>::random([1, n, n], Distribution::Default, &device);
            let layer = burn::nn::LinearConfig::new(n, n).init(&device);
            let s = time(warmup, steps, || {
                let c = vit_kernels::linear(&layer, a.clone());
                let _ = c.into_data();
            });
            (s, 0, 2.0 * (n as f64).powi(3) / 1e9)
        }
        Some((config, batch, train)) => {
            let batch = batch_override.unwrap_or(batch);
            let config = match size_override {
                Some(n) => config.with_image_size([n, n]),
                None => config,
            };
            let per_image = config.flops_per_image() as f64 / 1e9;
            let [h, w] = config.image_size();
            let shape = [batch, config.in_channels(), h, w];
            let classes = config.num_classes();
            if train {
                let ad = device.clone().autodiff();
                let mut model = Some(config.try_init(&ad)?);
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
                    wait_for_update(&m);
                    model = Some(m);
                });
                // forward + backward ~ 3x the forward FLOPs.
                (s, batch, 3.0 * per_image * batch as f64)
            } else {
                let model = config.try_init(&device.clone().autodiff())?.valid();
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
            "decoder": vit_train::config::Decoder::Auto.resolve().ok().map(|_| decoder.clone()),
            "cache": cache,
            "workers": workers,
        })
    );
    Ok(())
}
