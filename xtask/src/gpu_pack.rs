//! `cargo xtask gpu-pack`: everything a GPU machine without a Rust toolchain or network needs
//! for the first GPU numbers, in one ignored folder (`.gpu/`) that travels with the working
//! tree: the wgpu build of `vit-train`, the `bench` example and the GPU parity tests'
//! executables (stripped), their fixtures, the b16 recipe, the PyTorch side's script, the
//! Vulkan loaders as Debian packages, and `run.sh`, which runs it all in one call.
//! `cargo xtask gpu-dry-run` runs a fresh copy of it here, without cargo on PATH, on Mesa's
//! lavapipe.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;

/// The carried tree's limit on the device machine (working tree and carried paths together).
const LIMIT: u64 = 64 << 20;

/// CI's test build's features: packing from the same build means nothing new to compile where
/// `cargo test` ran (ndarray and turbojpeg come along; turbojpeg is linked in statically).
pub const FEATURES: &str = "vit-train/wgpu,vit-train/ndarray,vit-train/turbojpeg";

/// The Vulkan loader and GL dispatch libraries (Debian amd64), for a machine whose image has
/// NVIDIA's driver but no loader.
const DEBS: &[&str] = &[
    "libvulkan1",
    "libegl1",
    "libglvnd0",
    "libopengl0",
    "libgl1",
    "libglx0",
    "libgles2",
];

/// The executables' archive in `.gpu/` (unpacked there into `bin/` by run.sh).
const BINARIES: &str = "bin.tar.xz";

/// The executables packed: (cargo target kind, target name, name in `bin/`).
const EXECUTABLES: &[(&str, &str, &str)] = &[
    ("bin", "vit-train", "vit-train"),
    ("example", "bench", "bench"),
    ("test", "gpu", "test-gpu"),
    ("test", "backends", "test-backends"),
];

/// The fixtures tests/gpu.rs reads (vit-model's tests/fixtures).
const FIXTURES: &[&str] = &[
    "token_32.model.safetensors",
    "token_32.io.safetensors",
    "mean_48x64.model.safetensors",
    "mean_48x64.io.safetensors",
    "pre_logits.model.safetensors",
    "pre_logits.io.safetensors",
    "hybrid_64.model.safetensors",
    "hybrid_64.io.safetensors",
    "resample.safetensors",
];

pub fn gpu_pack(root: &Path) -> Result<()> {
    let pack = root.join(".gpu");
    let exes = build(root)?;
    // Everything but the cached .debs is laid out afresh.
    for sub in ["bin", "fixtures", "configs"] {
        let _ = std::fs::remove_dir_all(pack.join(sub));
    }
    for sub in ["fixtures", "configs"] {
        std::fs::create_dir_all(pack.join(sub))?;
    }
    let _ = std::fs::remove_file(pack.join(BINARIES));
    // Stripped in a scratch folder, then one solid xz archive: the four executables share
    // most of their code (Burn, CubeCL, wgpu), which a dictionary as large as all of them
    // stores once (~350 MiB stripped -> see MANIFEST.txt). run.sh unpacks it with python3.
    let scratch = std::env::temp_dir().join(format!("vit-gpu-pack-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(scratch.join("bin"))?;
    let mut stripped = 0;
    for (_, name, packed) in EXECUTABLES {
        let from = exes
            .get(*name)
            .with_context(|| format!("cargo built no `{name}` executable"))?;
        let to = scratch.join("bin").join(packed);
        let status = Command::new("strip")
            .arg("--strip-all")
            .arg("-o")
            .arg(&to)
            .arg(from)
            .status()
            .context("running `strip` (binutils)")?;
        ensure!(status.success(), "strip {} failed", from.display());
        stripped += std::fs::metadata(&to)?.len();
    }
    let glibc = glibc_needed(&scratch.join("bin"))?;
    println!(
        "compressing {:.0} MiB of stripped executables (xz, one solid archive; a few minutes) ...",
        mib(stripped)
    );
    let archive = std::fs::File::create(pack.join(BINARIES))?;
    let mut tar = Command::new("tar")
        .current_dir(&scratch)
        .args(["cf", "-", "bin"])
        .stdout(Stdio::piped())
        .spawn()
        .context("running tar")?;
    let xz = Command::new("xz")
        .args(["-T1", "--lzma2=preset=9,dict=384MiB", "-c"])
        .stdin(tar.stdout.take().expect("piped"))
        .stdout(archive)
        .status()
        .context("running xz (xz-utils)")?;
    ensure!(
        tar.wait()?.success() && xz.success(),
        "packing the executables failed"
    );
    let _ = std::fs::remove_dir_all(&scratch);
    for f in FIXTURES {
        let from = root.join("crates/vit-model/tests/fixtures").join(f);
        std::fs::copy(&from, pack.join("fixtures").join(f))
            .with_context(|| format!("copying {}", from.display()))?;
    }
    std::fs::copy(root.join("configs/b16.toml"), pack.join("configs/b16.toml"))?;
    for (from, to) in [
        ("xtask/gpu/run.sh", "run.sh"),
        ("xtask/gpu/bench.py", "bench.py"),
        ("xtask/python/bench_torch.py", "bench_torch.py"),
    ] {
        std::fs::copy(root.join(from), pack.join(to)).with_context(|| format!("copying {from}"))?;
    }
    debs(&pack.join("debs"))?;
    let commit = git(root, &["rev-parse", "--short", "HEAD"]).unwrap_or_default();
    let dirty =
        git(root, &["status", "--porcelain", "--untracked-files=no"]).is_ok_and(|s| !s.is_empty());

    // The size: what travels is the working tree (tracked and untracked-not-ignored files)
    // plus this folder.
    let pack_bytes = tree_bytes(&pack)?;
    let tree = working_tree_bytes(root)?;
    let mut manifest = format!(
        "commit {commit}{}, --release --features {FEATURES}, built on {}; needs glibc >= \
         {glibc}; {:.1} MiB of stripped executables in {BINARIES}\n\n",
        if dirty {
            " (with uncommitted changes)"
        } else {
            ""
        },
        cpu_name(),
        mib(stripped),
    );
    let mut files = Vec::new();
    list(&pack, &pack, &mut files)?;
    files.sort();
    for (rel, bytes) in &files {
        if !rel.starts_with("out") && !rel.starts_with("bin/") {
            manifest += &format!("{:>10}  {rel}\n", bytes);
        }
    }
    manifest += &format!(
        "\n.gpu: {:.1} MiB; with the working tree ({:.1} MiB) {:.1} MiB of the 64 MiB a call carries\n",
        mib(pack_bytes),
        mib(tree),
        mib(pack_bytes + tree)
    );
    std::fs::write(pack.join("MANIFEST.txt"), &manifest)?;
    print!("{manifest}");
    ensure!(
        pack_bytes + tree < LIMIT,
        "the pack and the working tree come to {:.1} MiB, over the 64 MiB a device call carries",
        mib(pack_bytes + tree)
    );
    println!(
        "on the GPU machine: run with carry [\".gpu\"] and the command `bash .gpu/run.sh` \
         (results in $OUT/gpu.md)"
    );
    Ok(())
}

fn mib(b: u64) -> f64 {
    b as f64 / (1u64 << 20) as f64
}

/// Builds the workspace's tests (and with them the binary and the examples) in release with
/// [`FEATURES`]; the executables by target name, from cargo's JSON messages.
fn build(root: &Path) -> Result<BTreeMap<String, PathBuf>> {
    println!("building: cargo test --workspace --release --features {FEATURES} --no-run");
    let mut child = Command::new(env!("CARGO"))
        .current_dir(root)
        .args([
            "test",
            "--workspace",
            "--release",
            "--features",
            FEATURES,
            "--no-run",
            "--message-format",
            "json-render-diagnostics",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .context("running cargo")?;
    let mut exes = BTreeMap::new();
    let stdout = child.stdout.take().expect("piped");
    for line in std::io::BufReader::new(stdout).lines() {
        let Ok(v) = serde_json::from_str::<Value>(&line?) else {
            continue;
        };
        if v["reason"] != "compiler-artifact" {
            continue;
        }
        let (Some(exe), Some(name)) = (v["executable"].as_str(), v["target"]["name"].as_str())
        else {
            continue;
        };
        let kinds = v["target"]["kind"].as_array().cloned().unwrap_or_default();
        for (kind, want, _) in EXECUTABLES {
            if name == *want && kinds.iter().any(|k| k == kind) {
                // A binary is built twice under `cargo test`: as itself and as its unit tests.
                let test = v["profile"]["test"].as_bool().unwrap_or(false);
                if (*kind == "test") == test {
                    exes.insert(name.to_string(), PathBuf::from(exe));
                }
            }
        }
    }
    let status = child.wait()?;
    ensure!(status.success(), "the build failed ({status})");
    Ok(exes)
}

/// The loader packages, downloaded once with apt into `dir` (amd64, from the machine's Debian
/// mirror; apt's lists are refreshed in a private folder if the system's lack them).
fn debs(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let have = |p: &str| {
        std::fs::read_dir(dir).is_ok_and(|mut d| {
            d.any(|e| {
                e.is_ok_and(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .starts_with(&format!("{p}_"))
                })
            })
        })
    };
    let missing: Vec<&str> = DEBS.iter().copied().filter(|p| !have(p)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    let lists = std::env::temp_dir().join("vit-gpu-pack-apt");
    std::fs::create_dir_all(lists.join("partial"))?;
    let opts = [
        "-oAPT::Architecture=amd64".to_string(),
        "-oAPT::Architectures=amd64".to_string(),
        format!("-oDir::State::Lists={}", lists.display()),
    ];
    let download = || {
        Command::new("apt-get")
            .current_dir(dir)
            .args(&opts)
            .arg("download")
            .args(&missing)
            .status()
    };
    if !download().is_ok_and(|s| s.success()) {
        let status = Command::new("apt-get")
            .args(&opts)
            .arg("update")
            .status()
            .context("running apt-get (the Vulkan loader packages come from Debian's mirror)")?;
        ensure!(status.success(), "apt-get update failed");
        let status = download()?;
        ensure!(status.success(), "apt-get download {missing:?} failed");
    }
    Ok(())
}

/// The newest glibc symbol version the packed executables need (they must run on the GPU
/// machine's image, whose glibc may be older than the build machine's).
fn glibc_needed(bin: &Path) -> Result<String> {
    let mut newest = (0u32, 0u32);
    for e in std::fs::read_dir(bin)? {
        let out = Command::new("objdump")
            .arg("-T")
            .arg(e?.path())
            .output()
            .context("running objdump (binutils)")?;
        for tok in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            // objdump prints the version as `(GLIBC_2.34)`.
            let tok = tok.trim_matches(|c| c == '(' || c == ')');
            let Some(v) = tok.strip_prefix("GLIBC_") else {
                continue;
            };
            let mut it = v.split('.').map(|n| n.parse::<u32>().unwrap_or(0));
            let ver = (it.next().unwrap_or(0), it.next().unwrap_or(0));
            newest = newest.max(ver);
        }
    }
    Ok(format!("{}.{}", newest.0, newest.1))
}

fn git(root: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new("git").current_dir(root).args(args).output()?;
    ensure!(out.status.success(), "git {args:?} failed");
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn cpu_name() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "an unknown CPU".into())
}

fn list(base: &Path, dir: &Path, out: &mut Vec<(String, u64)>) -> Result<()> {
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let meta = e.metadata()?;
        if meta.is_dir() {
            list(base, &e.path(), out)?;
        } else {
            let rel = e.path().strip_prefix(base)?.display().to_string();
            out.push((rel, meta.len()));
        }
    }
    Ok(())
}

fn tree_bytes(dir: &Path) -> Result<u64> {
    let mut files = Vec::new();
    list(dir, dir, &mut files)?;
    Ok(files
        .iter()
        .filter(|(r, _)| !r.starts_with("out") && !r.starts_with("bin/"))
        .map(|(_, b)| b)
        .sum())
}

/// Tracked and untracked-not-ignored files: what a device call sends besides carried paths.
fn working_tree_bytes(root: &Path) -> Result<u64> {
    let files = git(
        root,
        &[
            "ls-files",
            "-z",
            "--cached",
            "--others",
            "--exclude-standard",
        ],
    )?;
    Ok(files
        .split('\0')
        .filter(|f| !f.is_empty())
        .filter_map(|f| std::fs::metadata(root.join(f)).ok())
        .map(|m| m.len())
        .sum())
}

/// `cargo xtask gpu-dry-run`: a fresh copy of `.gpu/` run with PATH holding no cargo or rustc,
/// `VIT_GPU_DRY_RUN=1` (few steps, small batches, PyTorch on the CPU, a software Vulkan device
/// accepted): it must pass end to end and write the table.
pub fn gpu_dry_run(root: &Path) -> Result<()> {
    let pack = root.join(".gpu");
    ensure!(
        pack.join("run.sh").exists(),
        "no {} (run `cargo xtask gpu-pack` first)",
        pack.join("run.sh").display()
    );
    let work = std::env::temp_dir().join(format!("vit-gpu-dry-run-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    let status = Command::new("cp")
        .arg("-a")
        .arg(&pack)
        .arg(work.join(".gpu"))
        .status()?;
    ensure!(status.success(), "copying {}", pack.display());
    let _ = std::fs::remove_dir_all(work.join(".gpu/out"));
    let out = work.join("out");
    let path = "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin";
    for tool in ["cargo", "rustc"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .env_clear()
            .env("PATH", path)
            .output()?;
        ensure!(
            !found.status.success(),
            "{tool} is on {path}: the dry run would not show that the pack needs no toolchain"
        );
    }
    // PyTorch on the CPU from the fixtures' venv (the GPU machine's python3 has its own).
    let python = root.join("xtask/.venv/bin/python");
    ensure!(
        python.exists(),
        "no {} (cargo xtask fixtures makes it)",
        python.display()
    );
    let t = std::time::Instant::now();
    let status = Command::new("bash")
        .arg(work.join(".gpu/run.sh"))
        .current_dir(&work)
        .env_clear()
        .env("PATH", path)
        .env("HOME", std::env::var_os("HOME").unwrap_or_default())
        .env("OUT", &out)
        .env("VIT_GPU_DRY_RUN", "1")
        .env("VIT_GPU_BUDGET_S", "1500")
        .env("VIT_GPU_PYTHON", &python)
        .status()?;
    let table = std::fs::read_to_string(out.join("gpu.md")).unwrap_or_default();
    println!(
        "dry run: {status} in {:.0} s; log {}",
        t.elapsed().as_secs_f64(),
        out.join("gpu.log").display()
    );
    if !status.success() {
        bail!(
            "the dry run failed ({status}); see {}",
            out.join("gpu.log").display()
        );
    }
    ensure!(
        table.contains("| vit wgpu f32 |") && table.contains("| PyTorch cpu f32 |"),
        "the dry run wrote no table rows ({})",
        out.join("gpu.md").display()
    );
    Ok(())
}
