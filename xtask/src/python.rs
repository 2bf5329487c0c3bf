//! The Python venv the reference scripts run in.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// Runs `cmd`; an error when it cannot start or exits non-zero.
pub fn check(cmd: &mut Command) -> Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("could not start {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}

/// `xtask/.venv`'s python, creating the venv when missing (nothing installed in it).
pub fn plain_venv(root: &Path) -> Result<PathBuf> {
    let dir = root.join("xtask/.venv");
    let python = dir.join("bin/python");
    if !python.exists() {
        println!("creating {}", dir.display());
        check(Command::new("python3").args(["-m", "venv"]).arg(&dir))?;
    }
    Ok(python)
}

/// Creates `xtask/.venv` when missing and installs the pinned requirements; returns its python.
pub fn venv(root: &Path) -> Result<PathBuf> {
    venv_with(root, "requirements.txt")
}

/// `xtask/.venv` with the requirements of `xtask/python/{file}` installed.
pub fn venv_with(root: &Path, file: &str) -> Result<PathBuf> {
    let python = plain_venv(root)?;
    let reqs = root.join("xtask/python").join(file);
    check(
        Command::new(&python)
            .args(["-m", "pip", "install", "--quiet", "-r"])
            .arg(&reqs),
    )?;
    Ok(python)
}

/// Runs a Python script with arguments in the venv.
pub fn run(python: &Path, args: &[&OsStr]) -> Result<()> {
    check(Command::new(python).args(args))
}

/// Installs MKL's wheel into `xtask/.venv` (pinned in `requirements-mkl.txt`); returns the
/// folder holding `libmkl_rt` (what `.cargo/config.toml`'s VIT_MKL_DIR names).
pub fn mkl(root: &Path) -> Result<PathBuf> {
    venv_with(root, "requirements-mkl.txt")?;
    let dir = root.join("xtask/.venv/lib");
    if !dir.join("libmkl_rt.so.3").exists() {
        bail!(
            "pip installed mkl, but {} has no libmkl_rt.so.3",
            dir.display()
        );
    }
    Ok(dir)
}
