//! `cargo xtask bench`: our models and PyTorch + timm on the same machine, in the same run,
//! case by case interleaved (the machine is noisy), each case in its own process (so its
//! peak memory is its own). Prints a table and writes it into BENCHMARKS.md.

use std::fs;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::python;

pub const CASES: [&str; 10] = [
    "gemm",
    "fmnist-train",
    "imagefolder-train",
    "imagefolder-load",
    "cifar-train",
    "cifar-infer",
    "ti16-train",
    "ti16-infer",
    "b16-infer",
    "r26s32-infer",
];

const BEGIN: &str = "<!-- cargo xtask bench: begin -->";
const END: &str = "<!-- cargo xtask bench: end -->";

pub fn json_line(out: std::process::Output, what: &str) -> Result<Value> {
    if !out.status.success() {
        bail!("{what} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .with_context(|| format!("{what} printed no JSON line:\n{text}"))?;
    Ok(serde_json::from_str(line)?)
}

pub fn cpu_model() -> String {
    fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

/// Runs the benchmark (`steps` timed steps per case, `cases` a subset or all, our side on
/// each of `backends`: `cpu` (Flex), `ndarray`, ...) and records it.
pub fn bench(
    root: &Path,
    steps: usize,
    cases: &[String],
    backends: &[String],
    cpu_gemms: &[String],
) -> Result<()> {
    let backends: Vec<&str> = if backends.is_empty() {
        vec!["cpu"]
    } else {
        backends.iter().map(String::as_str).collect()
    };
    // Every non-default backend is a cargo feature of the same binary.
    let features: Vec<String> = backends
        .iter()
        .filter(|b| !matches!(**b, "cpu" | "flex"))
        .map(|b| format!("vit-train/{b}"))
        .collect();
    let cases: Vec<&str> = if cases.is_empty() {
        CASES.to_vec()
    } else {
        cases.iter().map(String::as_str).collect()
    };
    let cpu_gemms: Vec<&str> = if cpu_gemms.is_empty() {
        vec!["auto"]
    } else {
        cpu_gemms.iter().map(String::as_str).collect()
    };
    let python = python::venv(root)?;
    let mkl_dir = if cpu_gemms.contains(&"mkl") {
        Some(python::mkl(root)?)
    } else {
        None
    };
    crate::bench_loader::build_bench(root, &features)?;
    let ours = root.join("target/release/examples/bench");
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let steps_s = steps.to_string();
    let mut rows = Vec::new();
    for case in &cases {
        let mut ours_rows = Vec::new();
        for backend in &backends {
            // The GEMM choice only matters to the CPU kernels (Flex).
            let gemms = if matches!(*backend, "cpu" | "flex") {
                cpu_gemms.clone()
            } else {
                vec!["auto"]
            };
            for gemm in gemms {
                eprintln!("bench {case}: vit on {backend} (VIT_CPU_GEMM={gemm}) ...");
                let mut cmd = Command::new(&ours);
                // fmnist-train reads configs/ and datasets/ relative to the root.
                cmd.current_dir(root)
                    .args([case, "--steps", &steps_s, "--device", backend])
                    .env("BURN_DEVICE", "flex")
                    .env("VIT_CPU_GEMM", gemm);
                if let Some(dir) = &mkl_dir {
                    cmd.env("VIT_MKL_DIR", dir);
                }
                ours_rows.push(json_line(
                    cmd.output()?,
                    &format!("vit {case} on {backend} (VIT_CPU_GEMM={gemm})"),
                )?);
            }
        }
        eprintln!("bench {case}: torch ...");
        // The image-folder cases: torchvision's ImageFolder + DataLoader (bench_loader.py).
        let script = if case.starts_with("imagefolder-") {
            "xtask/python/bench_loader.py"
        } else {
            "xtask/python/bench_torch.py"
        };
        let b = json_line(
            Command::new(&python)
                .current_dir(root)
                .arg(root.join(script))
                .args([case, "--steps", &steps_s, "--threads", &threads.to_string()])
                .output()?,
            &format!("torch {case}"),
        )?;
        for a in ours_rows {
            rows.push((case.to_string(), a, b.clone()));
        }
    }
    let table = render(&rows, threads, steps);
    println!("{table}");
    record(root, &table)
}

fn f(v: &Value, k: &str) -> f64 {
    v[k].as_f64().unwrap_or(0.0)
}

fn render(rows: &[(String, Value, Value)], threads: usize, steps: usize) -> String {
    let torch = rows
        .first()
        .map(|r| r.2["backend"].as_str().unwrap_or("torch").to_string())
        .unwrap_or_default();
    let timm = rows
        .first()
        .and_then(|r| r.2["timm"].as_str().map(str::to_string))
        .unwrap_or_default();
    // Each backend's own GEMM is its ceiling.
    let gemm_of = |backend: &str, cpu_gemm: &Value| {
        rows.iter()
            .find(|r| r.0 == "gemm" && r.1["backend"] == backend && r.1["cpu_gemm"] == *cpu_gemm)
            .map_or((0.0, 0.0), |r| (f(&r.1, "gflop_s"), f(&r.2, "gflop_s")))
    };
    let mut s = format!(
        "Machine: {} ({threads} threads used by both sides), {}; vit: Burn 0.22 (`cpu` = \
         Flex with simd + rayon; mimalloc keeping freed memory); {torch}, timm {timm}, fp32, \
         torch.set_num_threads({threads}). Median of {steps} steps after 2 warm-up steps. \
         GFLOP/s: the full forward pass's FLOPs (`VitConfig::flops_per_image`, x3 for training) per \
         second on both sides; vit runs a class-token model's last block for the class token only, so its \
         column can exceed its GEMM's.\n\n\
         | case | vit backend | vit | PyTorch | vit / PyTorch | vit peak RSS | PyTorch peak RSS | vit GFLOP/s (of its GEMM) | PyTorch GFLOP/s (of its GEMM) |\n\
         |---|---|---|---|---|---|---|---|---|\n",
        cpu_model(),
        std::env::consts::ARCH,
    );
    for (case, a, b) in rows {
        let backend = a["backend"].as_str().unwrap_or("cpu");
        let (gemm_ours, gemm_torch) = gemm_of(backend, &a["cpu_gemm"]);
        // On `cpu`, the kernels' GEMM too (cpu_gemm.rs).
        let backend = match a["cpu_gemm"].as_str() {
            Some(g) if matches!(backend, "cpu" | "flex") => format!("{backend} ({g})"),
            _ => backend.to_string(),
        };
        let (unit, va, vb) = if case == "gemm" {
            ("GFLOP/s", f(a, "gflop_s"), f(b, "gflop_s"))
        } else {
            ("img/s", f(a, "img_s"), f(b, "img_s"))
        };
        // Same shapes on both sides: PyTorch's GFLOP/s is our FLOP count over its time.
        let flop = f(a, "gflop_s") * f(a, "seconds");
        let tg = if case == "gemm" {
            vb
        } else {
            flop / f(b, "seconds").max(1e-12)
        };
        let pct = |g: f64, base: f64| if base > 0.0 { 100.0 * g / base } else { 0.0 };
        s += &format!(
            "| {case} | {backend} | {va:.1} {unit} | {vb:.1} {unit} | {:.2}x | {:.0} MiB | {:.0} MiB | {:.1} ({:.0}%) | {:.1} ({:.0}%) |\n",
            va / vb.max(1e-12),
            f(a, "peak_rss_mib"),
            f(b, "peak_rss_mib"),
            f(a, "gflop_s"),
            pct(f(a, "gflop_s"), gemm_ours),
            tg,
            pct(tg, gemm_torch),
        );
    }
    s
}

/// Replaces the table between the markers in BENCHMARKS.md (adds the section if missing).
fn record(root: &Path, table: &str) -> Result<()> {
    record_between(
        root,
        BEGIN,
        END,
        "vit vs PyTorch + timm (`cargo xtask bench`)",
        table,
    )
}

/// Replaces the block between `begin` and `end` in BENCHMARKS.md with `table` and the date;
/// without the markers, appends a section titled `title`.
pub fn record_between(root: &Path, begin: &str, end: &str, title: &str, table: &str) -> Result<()> {
    let path = root.join("BENCHMARKS.md");
    let text = fs::read_to_string(&path).with_context(|| format!("{}", path.display()))?;
    let date = Command::new("date")
        .arg("+%Y-%m-%d %H:%M %Z")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let block = format!("{begin}\nLast run: {date}.\n\n{table}{end}");
    let new = match (text.find(begin), text.find(end)) {
        (Some(a), Some(b)) if a < b => format!("{}{block}{}", &text[..a], &text[b + end.len()..]),
        _ => format!("{text}\n## {title}\n\n{block}\n"),
    };
    fs::write(&path, new)?;
    println!("table written to {}", path.display());
    Ok(())
}
