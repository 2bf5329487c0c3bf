//! `cargo xtask gpu-check`: everything a GPU machine should prove, in one go (GPU time is
//! scarce): build with `cuda` and `wgpu`, run the parity tests on the GPU (inference against
//! timm's fixtures, training against Flex), then benchmark ViT-B/16 training and inference at
//! batch 64 against PyTorch + timm on CUDA in the same run, and write the table into
//! BENCHMARKS.md.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::bench::{json_line, record_between};
use crate::python;

const BEGIN: &str = "<!-- cargo xtask gpu-check: begin -->";
const END: &str = "<!-- cargo xtask gpu-check: end -->";

pub struct Options {
    pub build_only: bool,
    pub steps: usize,
    pub python: Option<PathBuf>,
    /// Our devices (default `cuda`, `wgpu`); each is also a cargo feature.
    pub devices: Vec<String>,
    /// Bench cases (default ViT-B/16 training and inference at batch 64).
    pub cases: Vec<String>,
}

fn cargo(root: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO"));
    cmd.current_dir(root).args(args);
    cmd
}

/// The test runs of the check: (what, cargo arguments). Every build is of the whole
/// workspace with the same features, so that all of them share one set of artifacts.
fn test_runs(features: &str) -> Vec<(&'static str, Vec<String>)> {
    let common = ["test", "--workspace", "--release", "--features", features];
    let with = |rest: &[&str]| common.iter().chain(rest).map(|s| s.to_string()).collect();
    vec![
        (
            "device names (`auto` finds the GPU)",
            with(&["--lib", "--", "device"]),
        ),
        (
            "inference parity with timm on the GPU devices",
            with(&["--test", "gpu"]),
        ),
        (
            "training parity with Flex on the GPU devices",
            with(&["--test", "backends", "--", "listed_devices"]),
        ),
    ]
}

pub fn gpu_check(root: &Path, options: &Options) -> Result<()> {
    let devices: Vec<&str> = if options.devices.is_empty() {
        vec!["cuda", "wgpu"]
    } else {
        options.devices.iter().map(String::as_str).collect()
    };
    let cases: Vec<&str> = if options.cases.is_empty() {
        vec!["b16-train-b64", "b16-infer-b64"]
    } else {
        options.cases.iter().map(String::as_str).collect()
    };
    let cuda = devices.contains(&"cuda");
    let features = devices
        .iter()
        .map(|d| format!("vit-train/{}", d.split(':').next().unwrap_or(d)))
        .collect::<Vec<_>>()
        .join(",");
    println!("building with --features {features} ...");
    for (what, args) in test_runs(&features) {
        // The same arguments up to the test filter, and --no-run.
        let mut args: Vec<&str> = args
            .iter()
            .map(String::as_str)
            .take_while(|a| *a != "--")
            .collect();
        args.push("--no-run");
        python::check(&mut cargo(root, &args)).with_context(|| format!("building: {what}"))?;
    }
    python::check(&mut cargo(
        root,
        &[
            "build",
            "--workspace",
            "--release",
            "--example",
            "bench",
            "--features",
            &features,
        ],
    ))
    .context("building the bench example")?;
    if options.build_only {
        println!("built; the rest (tests and benchmarks on the GPU) needs an NVIDIA GPU");
        return Ok(());
    }
    let gpu = Command::new("nvidia-smi")
        .args([
            "--query-gpu=name,driver_version,memory.total",
            "--format=csv,noheader",
        ])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|s| !s.is_empty());
    let gpu = match (gpu, cuda) {
        (Some(gpu), _) => gpu,
        // A dry run of everything but CUDA (wgpu on a software rasterizer, say).
        (None, false) => "no NVIDIA GPU (a run without cuda)".to_string(),
        (None, true) => bail!(
            "no NVIDIA GPU answers (`nvidia-smi` is missing or failed); the build is done, run \
             `cargo xtask gpu-check` again on a machine with one"
        ),
    };
    println!("GPU: {gpu}");

    let mut results = Vec::new();
    for (what, args) in test_runs(&features) {
        println!("test: {what} ...");
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let status = cargo(root, &args)
            .env("VIT_TEST_DEVICES", devices.join(","))
            .env("VIT_EXPECT_GPU", if cuda { "1" } else { "0" })
            .status()?;
        results.push((what, status.success()));
    }

    let python = match &options.python {
        Some(p) => p.clone(),
        None => {
            let venv = root.join("xtask/.venv/bin/python");
            if venv.exists() {
                venv
            } else {
                PathBuf::from("python3")
            }
        }
    };
    let bench = root.join("target/release/examples/bench");
    let steps = options.steps.to_string();
    let mut rows = Vec::new();
    let torch_device = if cuda { "cuda" } else { "cpu" };
    for &case in &cases {
        let mut ours = vec![];
        for d in &devices {
            ours.push((*d, "f32"));
            if d.starts_with("cuda") {
                ours.push((*d, "bf16"));
            }
        }
        for (device, dtype) in ours {
            eprintln!("gpu-check {case}: vit on {device} {dtype} ...");
            let out = Command::new(&bench)
                .args([
                    case, "--steps", &steps, "--device", device, "--dtype", dtype,
                ])
                .output()?;
            rows.push(row(
                case,
                "vit",
                json_line(out, &format!("vit {case} {device} {dtype}")),
            ));
        }
        // Without CUDA (a dry run), PyTorch runs on the CPU in f32 only.
        let torch_runs: &[(&str, bool)] = if cuda {
            &[("f32", false), ("bf16", false), ("bf16", true)]
        } else {
            &[("f32", false)]
        };
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .to_string();
        for &(dtype, autocast) in torch_runs {
            eprintln!("gpu-check {case}: torch {torch_device} {dtype} autocast={autocast} ...");
            let mut cmd = Command::new(&python);
            cmd.arg(root.join("xtask/python/bench_torch.py")).args([
                case,
                "--steps",
                &steps,
                "--threads",
                &threads,
                "--device",
                torch_device,
                "--dtype",
                dtype,
            ]);
            if autocast {
                cmd.arg("--autocast");
            }
            rows.push(row(
                case,
                "torch",
                json_line(cmd.output()?, &format!("torch {case}")),
            ));
        }
    }
    let table = render(&gpu, &results, &cases, &rows, options.steps);
    println!("{table}");
    if cuda {
        record_between(
            root,
            BEGIN,
            END,
            "GPU check (`cargo xtask gpu-check`)",
            &table,
        )?;
    } else {
        println!("(not written to BENCHMARKS.md: a run without cuda is a dry run)");
    }
    if results.iter().any(|r| !r.1) {
        bail!("some GPU tests failed (see above and the table)");
    }
    Ok(())
}

/// One measured row, or the error text in its place (a dtype a device lacks is a result too).
fn row(case: &str, side: &str, r: Result<Value>) -> (String, String, Result<Value, String>) {
    (
        case.to_string(),
        side.to_string(),
        r.map_err(|e| e.to_string().lines().last().unwrap_or("").to_string()),
    )
}

fn render(
    gpu: &str,
    tests: &[(&str, bool)],
    cases: &[&str],
    rows: &[(String, String, Result<Value, String>)],
    steps: usize,
) -> String {
    let mut s = format!("GPU: {gpu}. Median of {steps} steps after 2 warm-up steps.\n\n");
    for (what, ok) in tests {
        s += &format!("- {}: {what}\n", if *ok { "passed" } else { "FAILED" });
    }
    s += "\n| case | side | device | dtype | img/s | vs PyTorch f32 | host peak RSS |\n\
          |---|---|---|---|---|---|---|\n";
    for &case in cases {
        let torch_f32 = rows
            .iter()
            .find(|r| r.0 == case && r.1 == "torch")
            .and_then(|r| r.2.as_ref().ok())
            .and_then(|v| v["img_s"].as_f64())
            .unwrap_or(0.0);
        for (_, side, r) in rows.iter().filter(|r| r.0 == case) {
            match r {
                Ok(v) => {
                    let img_s = v["img_s"].as_f64().unwrap_or(0.0);
                    let device = v["device"]
                        .as_str()
                        .or(v["backend"].as_str())
                        .unwrap_or("?");
                    s += &format!(
                        "| {case} | {side} | {device} | {} | {img_s:.1} | {:.2}x | {:.0} MiB |\n",
                        v["dtype"].as_str().unwrap_or("f32"),
                        img_s / torch_f32.max(1e-12),
                        v["peak_rss_mib"].as_f64().unwrap_or(0.0),
                    );
                }
                Err(e) => s += &format!("| {case} | {side} | | | failed: {e} | | |\n"),
            }
        }
    }
    s
}
