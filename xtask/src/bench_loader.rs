//! `cargo xtask bench-loader`: the ImageNet path's data pipeline against torchvision's, on
//! `cargo xtask data imagenet-like`'s folder, in one run on this machine, case by case
//! interleaved: training with a model too small to matter and the loader alone (batch 64, 2
//! workers, RandomResizedCrop 224 + flip), each decoder of ours; one worker's images per
//! second at 224, 384 and 518 px; and every decode and resize candidate, ms per image. Writes
//! the tables into BENCHMARKS.md.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::bench::{cpu_model, json_line, record_between};
use crate::python;

const BEGIN: &str = "<!-- cargo xtask bench-loader: begin -->";
const END: &str = "<!-- cargo xtask bench-loader: end -->";

fn which(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Builds the bench example, with libjpeg-turbo where cmake and nasm are here to build it.
pub fn build_bench(root: &Path, extra_features: &[String]) -> Result<bool> {
    let turbo = which("cmake") && which("nasm");
    let mut features: Vec<String> = extra_features.to_vec();
    if turbo {
        features.push("vit-train/turbojpeg".into());
    } else {
        eprintln!("note: cmake or nasm missing: the bench is built without libjpeg-turbo");
    }
    let mut cmd = Command::new(env!("CARGO"));
    cmd.current_dir(root).args([
        "build",
        "--release",
        "--quiet",
        "-p",
        "vit-train",
        "--example",
        "bench",
    ]);
    if !features.is_empty() {
        cmd.args(["--features", &features.join(",")]);
    }
    python::check(&mut cmd).context("building the bench example failed")?;
    Ok(turbo)
}

pub(crate) fn ours(root: &Path, args: &[&str]) -> Result<Value> {
    let out = Command::new(root.join("target/release/examples/bench"))
        .current_dir(root)
        .args(args)
        .env("BURN_DEVICE", "flex")
        .output()?;
    json_line(out, &format!("vit {}", args.join(" ")))
}

pub(crate) fn torch(root: &Path, py: &Path, args: &[&str]) -> Result<Value> {
    let out = Command::new(py)
        .current_dir(root)
        .arg(root.join("xtask/python/bench_loader.py"))
        .args(args)
        .output()?;
    json_line(out, &format!("torch {}", args.join(" ")))
}

pub(crate) fn f(v: &Value, k: &str) -> f64 {
    v[k].as_f64().unwrap_or(0.0)
}

/// Warm-up batches before the timed ones. The first batches' memory is new to the process:
/// the kernel zeroes it on first touch (in a VM, slowly: `clear_page_erms` was 30% of a
/// 3-batch warm-up's profile), on both sides; 20 batches reach the steady state.
pub(crate) const WARMUP: &str = "20";

pub fn bench_loader(root: &Path, steps: usize, rounds: usize) -> Result<()> {
    if !root.join("datasets/imagenet-like/train").exists() {
        bail!("no datasets/imagenet-like: run `cargo xtask data imagenet-like` first");
    }
    let py = python::venv(root)?;
    let turbo = build_bench(root, &[])?;
    let decoders: Vec<&str> = if turbo {
        vec!["turbojpeg", "image"]
    } else {
        vec!["image"]
    };
    let steps_s = steps.to_string();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads_s = threads.to_string();
    let mut s = format!(
        "Machine: {} ({threads} threads), {}; `cargo xtask bench-loader --steps {steps} --rounds \
         {rounds}`. vit: batches from `vit-train`'s loader (2 worker threads; images read and \
         decoded every step, `data.cache = \"off\"`, unless the row says cached) and its training \
         step; torchvision: `ImageFolder` + `DataLoader` (2 worker processes) with timm's \
         `create_transform(224, is_training=True)` (no colour jitter), `torch.set_num_threads({threads})`. \
         Both: RandomResizedCrop 224 (scale 0.08-1, bilinear) + flip + normalise, batch 64, a ViT \
         too small to matter (patch 32, D 32, one block, AdamW), `cargo xtask data imagenet-like`'s \
         2,000 training JPEGs (short side 300-500 px). Mean over {steps} batches after {WARMUP} \
         warm-up batches.\n\n\
         | round | case | vit decoder | vit img/s | torchvision img/s | vit / torchvision | vit peak RSS | torchvision peak RSS (main process) |\n\
         |---|---|---|---|---|---|---|---|\n",
        cpu_model(),
        std::env::consts::ARCH
    );
    for round in 1..=rounds {
        for case in ["imagefolder-load", "imagefolder-train"] {
            eprintln!("bench-loader round {round}: {case} ...");
            let t = torch(
                root,
                &py,
                &[case, "--steps", &steps_s, "--threads", &threads_s],
            )?;
            let mut rows = Vec::new();
            for d in &decoders {
                rows.push((
                    d.to_string(),
                    ours(root, &[case, "--steps", &steps_s, "--decoder", d])?,
                ));
            }
            rows.push((
                format!("{} (cached)", decoders[0]),
                ours(
                    root,
                    &[
                        case,
                        "--steps",
                        &steps_s,
                        "--decoder",
                        decoders[0],
                        "--cache",
                        "on",
                    ],
                )?,
            ));
            for (d, v) in rows {
                s += &format!(
                    "| {round} | {case} | {d} | {:.0} | {:.0} | {:.2}x | {:.0} MiB | {:.0} MiB |\n",
                    f(&v, "img_s"),
                    f(&t, "img_s"),
                    f(&v, "img_s") / f(&t, "img_s").max(1e-9),
                    f(&v, "peak_rss_mib"),
                    f(&t, "peak_rss_mib"),
                );
            }
        }
    }
    // One worker: decode + RandomResizedCrop + flip + normalise per image, one thread.
    s += "\nOne worker's throughput (images per second in one thread: read, decode, \
          RandomResizedCrop to the size, flip, normalise), for sizing `data.workers` to a GPU: \
          workers needed = the GPU's img/s / this.\n\n\
          | size | vit (libjpeg-turbo) | vit (pure Rust) | torchvision + PIL |\n|---|---|---|---|\n";
    for size in [224, 384, 518] {
        let case = format!("sample-{size}");
        eprintln!("bench-loader: {case} ...");
        let t = torch(root, &py, &[&case, "--steps", &steps_s])?;
        let turbo_row = if turbo {
            format!(
                "{:.0}",
                f(
                    &ours(
                        root,
                        &[&case, "--steps", &steps_s, "--decoder", "turbojpeg"]
                    )?,
                    "img_s"
                )
            )
        } else {
            "not built".into()
        };
        let image = ours(root, &[&case, "--steps", &steps_s, "--decoder", "image"])?;
        s += &format!(
            "| {size} | {turbo_row} | {:.0} | {:.0} |\n",
            f(&image, "img_s"),
            f(&t, "img_s")
        );
    }
    // The candidates.
    eprintln!("bench-loader: candidates ...");
    let v = ours(root, &["candidates"])?;
    let t = torch(root, &py, &["candidates"])?;
    s += &format!(
        "\nDecode and resize candidates, ms per image (one thread, best of three passes over {} \
         of the folder's JPEGs; resizes are RandomResizedCrop boxes to 224x224):\n\n\
         | step | candidate | ms / image |\n|---|---|---|\n",
        v["images"]
    );
    let rows: [(&str, &str, &Value, &str); 14] = [
        (
            "decode",
            "Pillow (libjpeg-turbo), `Image.open` + `convert(\"RGB\")`",
            &t,
            "decode",
        ),
        (
            "decode",
            "`image` crate (zune-jpeg), `load_from_memory` + `to_rgb8`",
            &v,
            "decode_image_crate",
        ),
        (
            "decode",
            "vit pure Rust (zune-jpeg strict, called directly)",
            &v,
            "decode_vit_pure_rust",
        ),
        (
            "decode",
            "libjpeg-turbo 3.1 (TurboJPEG), whole image",
            &v,
            "decode_turbojpeg",
        ),
        (
            "decode",
            "libjpeg-turbo 3.1, only the crop's MCU rows and columns",
            &v,
            "decode_turbojpeg_crop_region",
        ),
        (
            "resize bilinear",
            "Pillow `crop` + `resize`",
            &t,
            "resize_bilinear",
        ),
        (
            "resize bilinear",
            "vit (Pillow's arithmetic, exact)",
            &v,
            "resize_bilinear_vit_pillow_exact",
        ),
        (
            "resize bilinear",
            "fast_image_resize 6 (not Pillow's rounding)",
            &v,
            "resize_bilinear_fast_image_resize",
        ),
        (
            "resize bilinear",
            "`image::imageops::resize` (Triangle)",
            &v,
            "resize_bilinear_image_imageops",
        ),
        (
            "resize bicubic",
            "Pillow `crop` + `resize`",
            &t,
            "resize_bicubic",
        ),
        (
            "resize bicubic",
            "vit (Pillow's arithmetic, exact)",
            &v,
            "resize_bicubic_vit_pillow_exact",
        ),
        (
            "resize bicubic",
            "fast_image_resize 6 (CatmullRom)",
            &v,
            "resize_bicubic_fast_image_resize",
        ),
        (
            "resize bicubic",
            "`image::imageops::resize` (CatmullRom)",
            &v,
            "resize_bicubic_image_imageops",
        ),
        (
            "to tensor",
            "torchvision `ToTensor` + `Normalize` vs vit's table",
            &t,
            "to_tensor_normalize",
        ),
    ];
    for (step, what, src, key) in rows {
        let ms = src["ms"][key].as_f64();
        s += &format!(
            "| {step} | {what} | {} |\n",
            ms.map_or("not built".into(), |m| format!("{m:.3}"))
        );
    }
    s += &format!(
        "| to tensor | vit `to_normalized_chw` | {:.3} |\n",
        f(&v["ms"], "to_tensor_normalize")
    );
    println!("{s}");
    record_between(
        root,
        BEGIN,
        END,
        "The ImageNet path's loader vs torchvision (`cargo xtask bench-loader`)",
        &s,
    )
}
