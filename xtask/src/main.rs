//! `cargo xtask ...`: set-up, reference fixtures and benchmarks for vit.

mod python;

use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "Project tasks for vit")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Regenerate the parity fixtures of vit-model from timm / PyTorch / scipy (makes a venv
    /// in xtask/.venv and pip-installs xtask/python/requirements.txt into it).
    Fixtures,
}

/// The workspace root (xtask's parent folder).
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

fn main() -> Result<()> {
    match Cli::parse().task {
        Task::Fixtures => {
            let root = root();
            let python = python::venv(&root)?;
            let out = root.join("crates/vit-model/tests/fixtures");
            python::run(
                &python,
                &[
                    root.join("xtask/python/fixtures.py").as_os_str(),
                    "--out".as_ref(),
                    out.as_os_str(),
                ],
            )?;
            println!("fixtures written to {}", out.display());
            Ok(())
        }
    }
}
