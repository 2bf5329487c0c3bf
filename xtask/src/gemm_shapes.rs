//! `cargo xtask gemm-shapes`: the benchmarked ViTs' Linear GEMMs, shape by shape, on each CPU
//! GEMM of vit (the gemm crate, MKL) and on PyTorch's `F.linear`, in one run; the table goes
//! into BENCHMARKS.md. It shows at which shapes a GEMM falls behind (the bench cases only show
//! whole models).

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::bench::{cpu_model, record_between};
use crate::python;

const BEGIN: &str = "<!-- cargo xtask gemm-shapes: begin -->";
const END: &str = "<!-- cargo xtask gemm-shapes: end -->";

fn json_lines(out: std::process::Output, what: &str) -> Result<Vec<Value>> {
    if !out.status.success() {
        bail!("{what} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).with_context(|| format!("{what} printed {l:?}")))
        .collect()
}

pub fn gemm_shapes(root: &Path, repeats: usize) -> Result<()> {
    let python = python::venv(root)?;
    let mkl_dir = python::mkl(root)?;
    python::check(Command::new(env!("CARGO")).current_dir(root).args([
        "build",
        "--release",
        "--quiet",
        "-p",
        "vit-kernels",
        "--example",
        "gemm_shapes",
    ]))?;
    let example = root.join("target/release/examples/gemm_shapes");
    let repeats_s = repeats.to_string();
    let ours = |gemm: &str| -> Result<Vec<Value>> {
        eprintln!("gemm-shapes: vit with VIT_CPU_GEMM={gemm} ...");
        json_lines(
            Command::new(&example)
                .args(["--repeats", &repeats_s])
                .env("VIT_CPU_GEMM", gemm)
                .env("VIT_MKL_DIR", &mkl_dir)
                .output()?,
            &format!("gemm_shapes with VIT_CPU_GEMM={gemm}"),
        )
    };
    let gemm_crate = ours("gemm")?;
    let mkl = ours("mkl")?;
    eprintln!("gemm-shapes: torch ...");
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut child = Command::new(&python)
        .arg(root.join("xtask/python/gemm_shapes.py"))
        .args(["--threads", &threads.to_string(), "--repeats", &repeats_s])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let shapes: String = gemm_crate.iter().map(|v| format!("{v}\n")).collect();
    child
        .stdin
        .take()
        .context("torch's stdin")?
        .write_all(shapes.as_bytes())?;
    let torch = json_lines(child.wait_with_output()?, "gemm_shapes.py")?;

    let g = |v: &Value| v["gflop_s"].as_f64().unwrap_or(0.0);
    let mut table = format!(
        "Machine: {} ({threads} threads on every side), x86_64. GFLOP/s of `x W + b` (best of \
         {repeats} calls): vit's fused Linear with VIT_CPU_GEMM=gemm ({}) and =mkl ({}), \
         PyTorch's `F.linear` ({}), one process each, same run.\n\n\
         | model | layer | M x K x N | gemm crate | MKL (vit) | PyTorch | gemm crate / PyTorch | MKL (vit) / PyTorch |\n\
         |---|---|---|---|---|---|---|---|\n",
        cpu_model(),
        gemm_crate[0]["gemm"].as_str().unwrap_or("?"),
        mkl[0]["gemm"].as_str().unwrap_or("?"),
        torch[0]["gemm"].as_str().unwrap_or("?"),
    );
    for ((a, b), t) in gemm_crate.iter().zip(&mkl).zip(&torch) {
        table += &format!(
            "| {} | {} | {} x {} x {} | {:.1} | {:.1} | {:.1} | {:.2}x | {:.2}x |\n",
            a["model"].as_str().unwrap_or("?"),
            a["layer"].as_str().unwrap_or("?"),
            a["m"],
            a["k"],
            a["n"],
            g(a),
            g(b),
            g(t),
            g(a) / g(t).max(1e-9),
            g(b) / g(t).max(1e-9),
        );
    }
    println!("{table}");
    record_between(
        root,
        BEGIN,
        END,
        "The Linear layers' GEMMs, shape by shape (`cargo xtask gemm-shapes`)",
        &table,
    )
}
