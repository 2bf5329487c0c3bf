//! `cargo xtask bench-shards`: the ImageNet-like training images as an image folder and as
//! WebDataset shards, vit's loader (and training step) on each against torchvision's
//! `ImageFolder` and `webdataset`'s pipeline, each with its peak memory; optionally on a shard
//! set larger than this machine's memory (`--large-gb`), made of copies of the shards and
//! deleted afterwards, to show the loader's memory does not grow with the data.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::bench::{cpu_model, record_between};
use crate::bench_loader::{WARMUP, build_bench, f, ours, torch};
use crate::python;

const BEGIN: &str = "<!-- cargo xtask bench-shards: begin -->";
const END: &str = "<!-- cargo xtask bench-shards: end -->";

fn make_shards(root: &Path) -> Result<()> {
    let out = root.join("datasets/imagenet-like/shards");
    if out.join("train.index.json").exists() {
        return Ok(());
    }
    let status = Command::new(env!("CARGO"))
        .current_dir(root)
        .args([
            "run",
            "--release",
            "--quiet",
            "-p",
            "vit-train",
            "--",
            "shards",
        ])
        .args(["--from", "datasets/imagenet-like/train", "--out"])
        .arg(&out)
        .args(["--shard-size", "16MB"])
        .status()?;
    if !status.success() {
        bail!("vit-train shards failed");
    }
    Ok(())
}

/// A shard set of about `gb` GB: copies (not links: each its own pages) of the shards.
fn make_large(root: &Path, gb: f64) -> Result<std::path::PathBuf> {
    let src = root.join("datasets/imagenet-like/shards");
    let dst = root.join("datasets/imagenet-like/shards-large");
    let _ = std::fs::remove_dir_all(&dst);
    std::fs::create_dir_all(&dst)?;
    let text = std::fs::read_to_string(src.join("train.index.json"))?;
    let index: serde_json::Value = serde_json::from_str(&text)?;
    let shards = index["shards"].as_array().context("index")?.clone();
    let bytes: u64 = shards
        .iter()
        .map(|s| s["bytes"].as_u64().unwrap_or(0))
        .sum();
    let copies = ((gb * 1e9) / bytes as f64).ceil() as usize;
    let mut out = Vec::new();
    for c in 0..copies {
        for s in &shards {
            let name = format!("train-{:06}.tar", out.len());
            std::fs::copy(src.join(s["file"].as_str().unwrap()), dst.join(&name))?;
            let mut e = s.clone();
            e["file"] = name.into();
            out.push(e);
        }
        eprintln!("bench-shards: large set, copy {}/{copies}", c + 1);
    }
    std::fs::copy(src.join("classes.txt"), dst.join("classes.txt"))?;
    std::fs::write(
        dst.join("train.index.json"),
        serde_json::to_string(&serde_json::json!({ "shards": out }))?,
    )?;
    Ok(dst)
}

pub fn bench_shards(root: &Path, steps: usize, large_gb: Option<f64>) -> Result<()> {
    if !root.join("datasets/imagenet-like/train").exists() {
        bail!("no datasets/imagenet-like: run `cargo xtask data imagenet-like` first");
    }
    let py = python::venv(root)?;
    let turbo = build_bench(root, &[])?;
    make_shards(root)?;
    let decoder = if turbo { "turbojpeg" } else { "image" };
    let steps_s = steps.to_string();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut s = format!(
        "Machine: {} ({threads} threads); `cargo xtask bench-shards --steps {steps}`. The 2,000 \
         training JPEGs of `cargo xtask data imagenet-like` as the folder and as shards \
         (`vit-train shards --shard-size 16MB`: 7 shards). vit: its loader (2 workers, decoder \
         {decoder}, images decoded every step; shards in a webdataset pipeline's order, shuffle \
         buffer 8192 / initial 2048) and training step; PyTorch: torchvision `ImageFolder` + \
         `DataLoader`, and `webdataset.WebDataset(shardshuffle, split_by_worker).shuffle(8192, \
         initial=2048).decode(\"pil\")` + `WebLoader`, 2 worker processes each. Both: timm's \
         RandomResizedCrop 224 + flip + normalise, batch 64, a ViT too small to matter. Mean over \
         {steps} batches after {WARMUP} warm-up batches. Peak RSS: vit's process; PyTorch's main \
         process (its workers are other processes).\n\n\
         | case | format | vit img/s | PyTorch img/s | vit / PyTorch | vit peak RSS MiB | PyTorch peak RSS MiB |\n\
         |---|---|---|---|---|---|---|\n",
        cpu_model()
    );
    for case in ["load", "train"] {
        for format in ["imagefolder", "shards"] {
            let name = format!("{format}-{case}");
            eprintln!("bench-shards: {name} ...");
            let v = ours(
                root,
                &[
                    &name,
                    "--steps",
                    &steps_s,
                    "--warmup",
                    WARMUP,
                    "--decoder",
                    decoder,
                ],
            )?;
            let t = torch(root, &py, &[&name, "--steps", &steps_s, "--warmup", WARMUP])?;
            s += &format!(
                "| {case} | {} | {:.0} | {:.0} | {:.2}x | {:.0} | {:.0} |\n",
                if format == "shards" {
                    "shards"
                } else {
                    "image folder"
                },
                f(&v, "img_s"),
                f(&t, "img_s"),
                f(&v, "img_s") / f(&t, "img_s").max(1e-9),
                f(&v, "peak_rss_mib"),
                f(&t, "peak_rss_mib"),
            );
        }
    }
    if let Some(gb) = large_gb {
        let dir = make_large(root, gb)?;
        let size: u64 = std::fs::read_dir(&dir)?
            .map(|e| e.map_or(0, |e| e.metadata().map_or(0, |m| m.len())))
            .sum();
        eprintln!(
            "bench-shards: shards-load on {:.1} GB ...",
            size as f64 / 1e9
        );
        let mut cmd = Command::new(root.join("target/release/examples/bench"));
        cmd.current_dir(root)
            .args([
                "shards-load",
                "--steps",
                &steps_s,
                "--warmup",
                WARMUP,
                "--decoder",
                decoder,
            ])
            .env("BURN_DEVICE", "flex")
            .env("VIT_BENCH_SHARDS", &dir);
        let started = std::time::Instant::now();
        let out = cmd.output()?;
        let secs = started.elapsed().as_secs_f64();
        let v = crate::bench::json_line(out, "vit shards-load (large)")?;
        let mem = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| {
                m.lines()
                    .find(|l| l.starts_with("MemTotal:"))
                    .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
            })
            .map_or(0.0, |kb| kb / 1024.0 / 1024.0);
        s += &format!(
            "\nThe same loader on a shard set of {:.1} GB ({} copies of the shards, more than this \
             machine's {mem:.1} GiB of memory): {:.0} img/s, peak RSS {:.0} MiB, the process \
             {secs:.0} s in all (reading every shard's table of contents included).\n",
            size as f64 / 1e9,
            std::fs::read_dir(&dir)?.count() / 7,
            f(&v, "img_s"),
            f(&v, "peak_rss_mib"),
        );
        std::fs::remove_dir_all(&dir)?;
    }
    println!("{s}");
    record_between(
        root,
        BEGIN,
        END,
        "Image folder vs WebDataset shards (`cargo xtask bench-shards`)",
        &s,
    )
}
