//! Data formats on real files: parsers, truncated and corrupt input, image folders.

mod common;

use std::io::Write;

use common::*;
use vit_train::config::{DataFormat, OnBadImage};
use vit_train::data::{cifar, idx, image_folder};

#[test]
fn idx_fixture_parses() {
    let root = fixture_root();
    let classes: Vec<String> = (0..10).map(|i| i.to_string()).collect();
    let train = idx::load(&root, "train", classes.clone()).unwrap();
    let test = idx::load(&root, "t10k", classes).unwrap();
    assert_eq!((train.len(), test.len()), (800, 200));
    assert_eq!(train.shape, [1, 28, 28]);
    // The first Fashion-MNIST test image is an ankle boot (9), the second a pullover (2).
    assert_eq!(&train.labels[..2], &[9, 2]);
    let mut counts = [0usize; 10];
    train.labels.iter().for_each(|&l| counts[l as usize] += 1);
    assert!(counts.iter().all(|&c| c > 50), "{counts:?}");
    // Real pixels: mostly background, some bright.
    let px = train.image(0).unwrap();
    assert!(px.iter().filter(|&&v| v == 0).count() > 300);
    assert!(px.iter().any(|&v| v > 200));
}

#[test]
fn truncated_and_corrupt_idx_files_are_clear_errors() {
    let dir = temp_dir("idx-bad");
    let good = idx::read_maybe_gz(&fixture_root().join("t10k-images-idx3-ubyte.gz")).unwrap();

    let p = dir.join("cut-images-idx3-ubyte");
    std::fs::write(&p, &good[..good.len() - 100]).unwrap();
    let err = format!(
        "{:#}",
        idx::parse_images(&std::fs::read(&p).unwrap(), &p).unwrap_err()
    );
    assert!(
        err.contains("cut-images-idx3-ubyte") && err.contains("header says 200 images of 28x28"),
        "{err}"
    );

    let err = format!("{:#}", idx::parse_images(&good[..10], &p).unwrap_err());
    assert!(err.contains("truncated IDX header"), "{err}");

    let labels = idx::read_maybe_gz(&fixture_root().join("t10k-labels-idx1-ubyte.gz")).unwrap();
    let err = format!("{:#}", idx::parse_images(&labels, &p).unwrap_err());
    assert!(
        err.contains("magic 0x00000801, expected 0x00000803"),
        "{err}"
    );

    // A gzip stream cut in the middle.
    let gz = std::fs::read(fixture_root().join("t10k-images-idx3-ubyte.gz")).unwrap();
    let p = dir.join("broken.gz");
    std::fs::write(&p, &gz[..gz.len() / 2]).unwrap();
    let err = format!("{:#}", idx::read_maybe_gz(&p).unwrap_err());
    assert!(
        err.contains("broken.gz") && err.contains("corrupt or truncated gzip"),
        "{err}"
    );

    let err = format!(
        "{:#}",
        idx::load(&dir, "missing", vec!["a".into()]).unwrap_err()
    );
    assert!(
        err.contains("missing-images-idx3-ubyte") && err.contains("cargo xtask data"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn cifar_records_parse_and_bad_lengths_fail() {
    let dir = temp_dir("cifar");
    // Two CIFAR-10 records: label, then 3072 pixels (R plane, G plane, B plane).
    let mut bytes = Vec::new();
    for (label, value) in [(3u8, 10u8), (7, 200)] {
        bytes.push(label);
        bytes.extend(std::iter::repeat_n(value, 3072));
    }
    let p = dir.join("data.bin");
    let (images, labels) = cifar::parse(&bytes, &p, 1).unwrap();
    assert_eq!(labels, vec![3, 7]);
    assert_eq!(images.len(), 2 * 3072);
    assert_eq!(images[3072], 200);
    // CIFAR-100: coarse then fine label; the fine one is the class.
    let mut b100 = vec![1u8, 42];
    b100.extend(vec![0u8; 3072]);
    assert_eq!(cifar::parse(&b100, &p, 2).unwrap().1, vec![42]);
    let err = format!("{:#}", cifar::parse(&bytes[..5000], &p, 1).unwrap_err());
    assert!(
        err.contains("data.bin") && err.contains("3073-byte CIFAR records"),
        "{err}"
    );
    let err = format!("{:#}", cifar::load(&dir, true, false, vec![]).unwrap_err());
    assert!(err.contains("data_batch_1.bin"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn image_folder_decodes_converts_and_reports_bad_files() {
    use vit_train::config::Cache;
    use vit_train::data::Source;
    let dir = temp_dir("folder");
    for (class, shade) in [("cat", 30u8), ("dog", 220u8)] {
        std::fs::create_dir_all(dir.join(class)).unwrap();
        for i in 0..2 {
            // RGBA inputs, at a size other than the model's.
            let img = image::RgbaImage::from_pixel(20, 10, image::Rgba([shade, shade, shade, 128]));
            img.save(dir.join(class).join(format!("{i}.png"))).unwrap();
        }
    }
    // Not images: left out of the listing, as torchvision's ImageFolder does.
    std::fs::write(dir.join("cat/notes.txt"), "not an image").unwrap();
    std::fs::write(dir.join("cat/.hidden.png"), "not listed").unwrap();
    let set = image_folder::load(&dir, [3, 8, 8]).unwrap();
    assert_eq!(set.classes, vec!["cat", "dog"]);
    assert_eq!(set.labels, vec![0, 0, 1, 1]);
    assert_eq!(set.shape, [3, 8, 8]);
    let t = normalize_only(3);
    // Uniform images stay uniform through the resize and crop: (220 / 255 - 0.5) / 0.5.
    let px = t.eval(set.source(3), [3, 8, 8]).unwrap();
    assert_eq!(px.len(), 3 * 64);
    let want = (220.0f32 / 255.0 - 0.5) / 0.5;
    assert!(
        px.iter().all(|&v| (v - want).abs() < 1e-6),
        "{:?}",
        &px[..4]
    );
    let gray = image_folder::load(&dir, [1, 4, 4]).unwrap();
    assert_eq!(
        normalize_only(1)
            .eval(gray.source(0), [1, 4, 4])
            .unwrap()
            .len(),
        16
    );

    let mut f = std::fs::File::create(dir.join("dog/broken.png")).unwrap();
    f.write_all(b"\x89PNG\r\n\x1a\nnot really").unwrap();
    let set = image_folder::load(&dir, [3, 8, 8]).unwrap();
    assert_eq!(set.len(), 5);
    let i = (0..set.len())
        .find(|&i| set.path(i).unwrap().ends_with("broken.png"))
        .unwrap();
    let Source::File(_) = set.source(i) else {
        panic!("not cached")
    };
    let err = format!("{:#}", t.eval(set.source(i), [3, 8, 8]).unwrap_err());
    assert!(err.contains("broken.png"), "{err}");
    // Held in memory: the bad file stops the load, naming it, or is left out and listed.
    let err = format!(
        "{:#}",
        image_folder::cache(
            set.clone(),
            Cache::On,
            512,
            64,
            Default::default(),
            OnBadImage::Error
        )
        .err()
        .unwrap()
    );
    assert!(
        err.contains("broken.png") && err.contains("on_bad_image"),
        "{err}"
    );
    let (cached, report) = image_folder::cache(
        set,
        Cache::Auto,
        512,
        64,
        Default::default(),
        OnBadImage::Skip,
    )
    .unwrap();
    assert!(
        report.cached && report.skipped.len() == 1,
        "{:?}",
        report.skipped
    );
    assert!(report.skipped[0].contains("broken.png"));
    assert_eq!(cached.len(), 4);
    assert!(matches!(cached.source(0), Source::Decoded(..)));
    assert_eq!(t.eval(cached.source(3), [3, 8, 8]).unwrap(), px);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn missing_data_path_names_the_files() {
    let dir = temp_dir("missing");
    let (_, mut config) = recipe(&dir, &[]);
    config.data.root = dir.join("nowhere");
    let vit = config.model.config.clone();
    let err = format!(
        "{:#}",
        vit_train::data::load_splits(&config.data, &vit, 0)
            .err()
            .unwrap()
    );
    assert!(err.contains("nowhere/train-images-idx3-ubyte"), "{err}");
    assert_eq!(config.data.format, DataFormat::Idx);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A set of image files (the loader decodes them per batch), one of which is not an image.
fn files_with_a_bad_one(dir: &std::path::Path) -> vit_train::data::ImageSet {
    let good = dir.join("good.png");
    image::GrayImage::from_pixel(8, 8, image::Luma([200u8]))
        .save(&good)
        .unwrap();
    let bad = dir.join("broken.png");
    std::fs::write(&bad, b"not a png").unwrap();
    let mut paths = vec![good.clone(); 9];
    paths.insert(6, bad);
    vit_train::data::ImageSet::from_files(paths, vec![0; 10], [1, 8, 8], vec!["a".into()]).unwrap()
}

/// Normalisation by 0.5 / 0.5, no augmentation; image files as timm evaluates them.
fn normalize_only(channels: usize) -> vit_train::data::transforms::Transform {
    let p = vit_model::Preprocessing {
        mean: vec![0.5; channels],
        std: vec![0.5; channels],
        ..vit_model::Preprocessing::for_preset("vit_base_patch16_224")
    };
    vit_train::data::transforms::Transform::from_preprocessing(
        &p,
        Default::default(),
        OnBadImage::Error,
    )
}

#[test]
fn loader_reports_an_unreadable_image_in_its_batch() {
    use std::sync::Arc;
    use vit_train::data::loader::{Loader, Mode, plan};
    let dir = temp_dir("loader-bad-file");
    let set = Arc::new(files_with_a_bad_one(&dir));
    let transform = Arc::new(normalize_only(1));
    let batches = plan(set.len(), 3, Mode::Eval, false);
    let results: Vec<_> = Loader::new(set, batches, 0, Mode::Eval, transform, 2).collect();
    // Batches 0 and 1 are whole; batch 2 (images 6, 7, 8) fails naming the file; the loader
    // does not stop early: the fourth batch still comes (from the other worker).
    assert_eq!(results.len(), 4);
    assert!(results[0].is_ok() && results[1].is_ok() && results[3].is_ok());
    let err = format!("{:#}", results[2].as_ref().err().unwrap());
    assert!(
        err.contains("batch 2") && err.contains("broken.png"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn loader_turns_a_worker_panic_into_an_error() {
    use std::sync::Arc;
    use vit_train::config::AugmentSection;
    use vit_train::data::loader::{Loader, Mode, plan};
    use vit_train::data::transforms::Transform;
    let root = fixture_root();
    let classes: Vec<String> = (0..10).map(|i| i.to_string()).collect();
    let set = Arc::new(idx::load(&root, "t10k", classes).unwrap());
    // A transform no recipe can make (erase_prob is checked when a recipe loads): the
    // workers' `random_bool(1.5)` panics, which used to end the epoch silently, forever.
    let transform = Arc::new(Transform {
        augment: AugmentSection {
            erase_prob: 1.5,
            ..Default::default()
        },
        ..normalize_only(1)
    });
    let mode = Mode::Train {
        seed: 1,
        epoch: 0,
        smoothing: 0.0,
    };
    let mut loader = Loader::new(
        set.clone(),
        plan(set.len(), 50, mode, true),
        0,
        mode,
        transform,
        2,
    );
    let err = format!("{:#}", loader.next().unwrap().err().unwrap());
    assert!(
        err.contains("cannot make batch 0") && err.contains("1.5"),
        "{err}"
    );
}

#[test]
fn evaluate_sees_every_image_or_fails() {
    use std::sync::Arc;
    let dir = temp_dir("eval-bad-file");
    let set = Arc::new(files_with_a_bad_one(&dir));
    let transform = Arc::new(normalize_only(1));
    let device = burn::tensor::Device::flex();
    let model = vit_model::VitConfig::new()
        .with_image_size([8, 8])
        .with_patch_size([4, 4])
        .with_in_channels(1)
        .with_num_classes(1)
        .with_embed_dim(8)
        .with_depth(1)
        .with_num_heads(2)
        .init(&device);
    let err = vit_train::eval::evaluate(&model.into(), set, transform, 4, 2, &device).unwrap_err();
    assert!(format!("{err:#}").contains("broken.png"), "{err:#}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn an_empty_split_is_an_error() {
    let dir = temp_dir("empty-split");
    // 0.0001 of 800 training images rounds to no validation image.
    let (_, config) = recipe(&dir, &["data.val_fraction=0.0001"]);
    let vit = config.model.config.clone();
    let err = vit_train::data::load_splits(&config.data, &vit, 1)
        .err()
        .map(|e| format!("{e:#}"))
        .unwrap();
    assert!(err.contains("the validation split has no images"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}
