//! Fuzzing the readers of outside data: IDX files (raw and gzip), CIFAR records, image folders
//! (PNG / JPEG / BMP / GIF headers and bodies), and TOML recipes, byte-mutated from real seeds;
//! and recipes built from random `--set` values, which must either be rejected by name or
//! give batches without a panic (a value the rules let through must be one the loader takes).
//!
//! The bounded run here is part of the tests; a longer one: `FUZZ_CASES=20000 cargo test
//! --release -p vit-train --test fuzz` (RELIABILITY.md records what was run).

mod common;
#[path = "../../vit-model/tests/common/mutate.rs"]
mod mutate;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use common::*;
use mutate::{apply, cases, edits};
use proptest::prelude::*;
use rand::SeedableRng;
use vit_train::config::{Config, DataSection, Decoder};
use vit_train::data::loader::{Mode, make_batch};
use vit_train::data::transforms::Transform;
use vit_train::data::{ImageSet, cifar, idx, image_folder};

fn temp(name: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "vit-train-fuzz-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn gunzip(path: &Path) -> Vec<u8> {
    idx::read_maybe_gz(path).unwrap()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// The first 20 images of the fixture, as an IDX file, and the labels file.
fn idx_seeds() -> (Vec<u8>, Vec<u8>) {
    let images = gunzip(&fixture_root().join("t10k-images-idx3-ubyte.gz"));
    let labels = gunzip(&fixture_root().join("t10k-labels-idx1-ubyte.gz"));
    let mut images = images[..16 + 20 * 784].to_vec();
    images[4..8].copy_from_slice(&20u32.to_be_bytes());
    let mut labels = labels[..8 + 20].to_vec();
    labels[4..8].copy_from_slice(&20u32.to_be_bytes());
    (images, labels)
}

/// Parses an IDX pair; when both parse and agree, the images must make a batch.
fn parse_idx(images: &[u8], labels: &[u8]) {
    let path = Path::new("fuzz.idx");
    let (Ok((n, h, w, px)), Ok(labels)) = (
        idx::parse_images(images, path),
        idx::parse_labels(labels, path),
    ) else {
        return;
    };
    let classes: Vec<String> = (0..256).map(|i| i.to_string()).collect();
    if let Ok(set) = ImageSet::new(px, labels, [1, h, w], classes) {
        assert_eq!(set.len(), n);
    }
}

fn image_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let png =
        std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/predict_32.png"))
            .unwrap();
    let img = image::load_from_memory(&png).unwrap();
    let encode = |format| {
        let mut out = std::io::Cursor::new(Vec::new());
        img.to_rgb8().write_to(&mut out, format).unwrap();
        out.into_inner()
    };
    // A real photo at ImageNet's size, 4:2:0 (cargo xtask data imagenet-like).
    let photo = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/imagenet/val/rocket/rocket_00000.jpg"),
    )
    .unwrap();
    vec![
        ("png", png.clone()),
        ("jpg", encode(image::ImageFormat::Jpeg)),
        ("bmp", encode(image::ImageFormat::Bmp)),
        ("gif", encode(image::ImageFormat::Gif)),
        ("jpg", photo),
    ]
}

/// An image folder's `[data]` with timm's ViT normalisation.
fn fuzz_data(channels: usize) -> DataSection {
    let v = |x: f32| format!("[{}]", vec![x.to_string(); channels].join(", "));
    toml::from_str(&format!(
        "format = \"image-folder\"\nroot = \".\"\nmean = {}\nstd = {}\n",
        v(0.5),
        v(0.5)
    ))
    .unwrap()
}

/// Random `--set` values: every kind of TOML value on every recipe key.
fn set_value() -> impl Strategy<Value = String> {
    prop_oneof![
        (-3i64..300).prop_map(|v| v.to_string()),
        prop::sample::select(vec![
            "0.0", "-0.5", "0.5", "1.0", "1.5", "1e30", "-1e30", "nan", "inf", "-inf", "1e-9",
        ])
        .prop_map(String::from),
        prop::sample::select(vec![
            "[0.08, 1.0]",
            "[1.0, 0.08]",
            "[0.0, 0.0]",
            "[-1.0, 2.0]",
            "[nan, 1.0]",
            "[]",
            "[28, 28]",
            "[0, 28]",
            "[7, 7]",
            "[3, 5]",
        ])
        .prop_map(String::from),
        prop::sample::select(vec![
            "true",
            "false",
            "\"\"",
            "\"cpu\"",
            "\"gpu\"",
            "\"cuda:x\"",
            "\"mean\"",
            "\"token\"",
            "\"adamw\"",
            "\"sgd\"",
            "\"linear\"",
        ])
        .prop_map(String::from),
    ]
}

const KEYS: &[&str] = &[
    "model.image_size",
    "model.patch_size",
    "model.in_channels",
    "model.num_classes",
    "model.embed_dim",
    "model.depth",
    "model.num_heads",
    "model.mlp_ratio",
    "model.mlp_dim",
    "model.pool",
    "model.class_token",
    "model.drop_rate",
    "model.drop_path_rate",
    "model.norm_eps",
    "data.val_fraction",
    "data.workers",
    "data.mean",
    "data.std",
    "data.augment.crop_padding",
    "data.augment.rrc_scale",
    "data.augment.rrc_ratio",
    "data.augment.rrc_interpolation",
    "data.crop_pct",
    "data.cache_max_side",
    "data.augment.hflip",
    "data.augment.rand_ops",
    "data.augment.rand_magnitude",
    "data.augment.erase_prob",
    "data.augment.mixup_alpha",
    "data.augment.cutmix_alpha",
    "train.batch_size",
    "train.accum_steps",
    "train.lr",
    "train.min_lr",
    "train.beta1",
    "train.eps",
    "train.clip_grad_norm",
    "train.layer_decay",
    "train.label_smoothing",
    "train.device",
    "train.checkpoint_every",
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(2000)))]

    #[test]
    fn idx_bytes(e in edits(), labels_too in any::<bool>()) {
        let (images, labels) = idx_seeds();
        if labels_too {
            parse_idx(&images, &apply(&labels, &e));
        } else {
            parse_idx(&apply(&images, &e), &labels);
        }
    }

    #[test]
    fn idx_gzip_bytes(e in edits()) {
        let (images, _) = idx_seeds();
        let path = temp("x-images-idx3-ubyte.gz");
        std::fs::write(&path, apply(&gzip(&images), &e)).unwrap();
        if let Ok(bytes) = idx::read_maybe_gz(&path) {
            let _ = idx::parse_images(&bytes, &path);
        }
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }

    #[test]
    fn cifar_bytes(e in edits(), label_bytes in 1usize..=2) {
        let (images, _) = idx_seeds();
        // Three records of real pixels.
        let mut seed = Vec::new();
        for r in 0..3 {
            seed.extend(std::iter::repeat_n(r as u8, label_bytes));
            seed.extend(images.iter().cycle().skip(16 + r * 100).take(3072));
        }
        let bytes = apply(&seed, &e);
        if let Ok((px, labels)) = cifar::parse(&bytes, Path::new("fuzz.bin"), label_bytes) {
            prop_assert_eq!(px.len(), labels.len() * 3072);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(1000)))]

    /// A mutated image file in a folder: listed, then through the evaluation and training
    /// transforms with each decoder, either pixels of the model's shape or an error naming
    /// the file, never a panic.
    #[test]
    fn image_folder_files(e in edits(), which in 0usize..5, gray in any::<bool>()) {
        let (ext, seed) = image_seeds().swap_remove(which);
        let file = temp(&format!("class_a/img.{ext}"));
        let root = file.parent().unwrap().parent().unwrap().to_path_buf();
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, apply(&seed, &e)).unwrap();
        let channels = if gray { 1 } else { 3 };
        let shape = [channels, 32, 32];
        let set = image_folder::load(&root, shape).unwrap();
        prop_assert_eq!(set.len(), 1);
        let mut decoders = vec![Decoder::Image];
        if Decoder::TURBOJPEG_BUILT {
            decoders.push(Decoder::Turbojpeg);
        }
        for decoder in decoders {
            let mut t = Transform::evaluation(&fuzz_data(channels));
            t.decoder = decoder;
            let mut train = t.clone();
            train.augment.rrc_scale = Some([0.08, 1.0]);
            train.augment.hflip = true;
            let mut rng = rand::rngs::StdRng::seed_from_u64(3);
            for made in [t.eval(set.source(0), shape), train.train(set.source(0), shape, &mut rng)] {
                match made {
                    Ok(px) => prop_assert_eq!(px.len(), channels * 32 * 32),
                    Err(err) => {
                        let msg = format!("{err:#}");
                        prop_assert!(msg.contains("img."), "the error names the file: {}", msg);
                    }
                }
            }
        }
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn recipe_bytes(e in edits()) {
        let dir = temp("recipe");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("fuzz.toml");
        std::fs::write(&path, apply(recipe_text(&dir.join("run")).as_bytes(), &e)).unwrap();
        if let Err(err) = Config::load(&path, &[]) {
            let msg = format!("{err:#}");
            prop_assert!(msg.contains("fuzz.toml"), "the error names the file: {}", msg);
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A recipe either fails to load, naming the key, or makes training batches.
    #[test]
    fn recipe_values_are_rejected_or_work(
        sets in prop::collection::vec((prop::sample::select(KEYS), set_value()), 1..4),
    ) {
        let dir = temp("sets");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("recipe.toml");
        std::fs::write(&path, recipe_text(&dir.join("run"))).unwrap();
        let sets: Vec<String> = sets.iter().map(|(k, v)| format!("{k}={v}")).collect();
        match Config::load(&path, &sets) {
            Err(err) => {
                let msg = format!("{err:#}");
                // A rule between two fields is reported under one of them and names the
                // other (`model.num_heads = 2: must divide embed_dim 19`).
                let field = |s: &String| {
                    let key = s.split('=').next().unwrap();
                    key.rsplit('.').next().unwrap().to_string()
                };
                prop_assert!(
                    sets.iter().any(|s| msg.contains(&field(s))),
                    "the error names a field that was set: {}", msg
                );
            }
            Ok(config) => {
                let vit = config.model.config.clone();
                let shape = [vit.in_channels(), vit.image_size()[0], vit.image_size()[1]];
                let per: usize = shape.iter().product();
                let n = 4;
                let px: Vec<u8> = (0..n * per).map(|i| (i * 37 % 251) as u8).collect();
                let classes: Vec<String> =
                    (0..vit.num_classes()).map(|i| i.to_string()).collect();
                let labels = (0..n as u32).map(|i| i % vit.num_classes() as u32).collect();
                let set = ImageSet::new(px, labels, shape, classes).unwrap();
                let transform = Transform::training(&config.data);
                let mode = Mode::Train {
                    seed: 1,
                    epoch: 0,
                    smoothing: config.train.label_smoothing,
                };
                let batch = make_batch(&set, &[0, 1, 2, 3], 0, mode, &transform).unwrap();
                prop_assert_eq!(batch.images.len(), n * per);
                prop_assert!(batch.images.iter().all(|v| v.is_finite()));
            }
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
