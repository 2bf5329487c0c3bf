//! The ImageNet path against its references (tests/fixtures/imagenet, made by
//! `xtask/python/imagenet_fixtures.py` from torchvision, timm and Pillow on real photos of
//! ImageNet's sizes): the evaluation transform pixel for pixel, RandomResizedCrop's boxes and
//! pixels, the partial JPEG decode, and `eval --weights` against timm's evaluation loop.
//!
//! Tolerances: with libjpeg-turbo (the `turbojpeg` feature, Pillow's own decoder) every
//! pixel is equal (0 levels). With the pure-Rust `image` decoder (zune-jpeg) JPEG pixels are
//! within [`IMAGE_CRATE_MAX`] levels of Pillow's, [`IMAGE_CRATE_MEAN`] on average (its chroma
//! upsampling and colour conversion are its own); PNGs are equal.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use serde_json::Value;
use sha2::{Digest, Sha256};
use vit_model::{CropMode, Interpolation, Preprocessing};
use vit_train::config::{Decoder, OnBadImage};
use vit_train::data::Source;
use vit_train::data::crop::rrc_box;
use vit_train::data::decode::decode;
use vit_train::data::pixmap::{Pixmap, Rect};
use vit_train::data::resize::resize_region;
use vit_train::data::transforms::Transform;

/// The `image` decoder's largest difference from Pillow on a JPEG pixel, in levels.
const IMAGE_CRATE_MAX: i32 = 8;
/// The `image` decoder's mean absolute difference from Pillow on JPEG pixels, in levels.
const IMAGE_CRATE_MEAN: f64 = 0.4;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/imagenet")
}

fn references() -> Value {
    let text = std::fs::read_to_string(fixtures().join("references.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// The decoders of this build: libjpeg-turbo (when built in) and the `image` crate.
fn decoders() -> Vec<Decoder> {
    let mut d = vec![Decoder::Image];
    if Decoder::TURBOJPEG_BUILT {
        d.push(Decoder::Turbojpeg);
    }
    d
}

fn png(path: &Path) -> Pixmap {
    let img = image::open(path).unwrap().to_rgb8();
    Pixmap {
        width: img.width() as usize,
        height: img.height() as usize,
        channels: 3,
        px: img.into_raw(),
    }
}

fn sha256(px: &[u8]) -> String {
    Sha256::digest(px)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// (max, mean) absolute difference.
fn diff(a: &[u8], b: &[u8]) -> (i32, f64) {
    assert_eq!(a.len(), b.len());
    let d: Vec<i32> = a
        .iter()
        .zip(b)
        .map(|(&x, &y)| (i32::from(x) - i32::from(y)).abs())
        .collect();
    (
        d.iter().copied().max().unwrap_or(0),
        d.iter().map(|&v| f64::from(v)).sum::<f64>() / d.len().max(1) as f64,
    )
}

fn is_jpeg(file: &str) -> bool {
    file.ends_with(".jpg")
}

fn case_transform(c: &Value, decoder: Decoder) -> Transform {
    let f = |k: &str| -> Vec<f32> {
        c[k].as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect()
    };
    let p = Preprocessing {
        mean: f("mean"),
        std: f("std"),
        crop_pct: c["crop_pct"].as_f64().unwrap(),
        crop_mode: c["crop_mode"]
            .as_str()
            .unwrap()
            .parse::<CropMode>()
            .unwrap(),
        interpolation: c["interpolation"]
            .as_str()
            .unwrap()
            .parse::<Interpolation>()
            .unwrap(),
    };
    Transform::from_preprocessing(&p, decoder, OnBadImage::Error)
}

#[test]
fn eval_transform_matches_timm_pixel_for_pixel() {
    let refs = references();
    let mut report = Vec::new();
    for decoder in decoders() {
        for (k, c) in refs["eval"].as_array().unwrap().iter().enumerate() {
            let file = c["file"].as_str().unwrap();
            let size = [
                c["size"][0].as_u64().unwrap() as usize,
                c["size"][1].as_u64().unwrap() as usize,
            ];
            let t = case_transform(c, decoder);
            let path = fixtures().join(file);
            let (img, _) = t.load_file(&path, 3, None).unwrap();
            let out = t.eval_pixmap(&img, size);
            assert_eq!([out.height, out.width], size, "case {k}");
            let exact = decoder == Decoder::Turbojpeg || !is_jpeg(file);
            if exact {
                assert_eq!(
                    sha256(&out.px),
                    c["sha256"].as_str().unwrap(),
                    "case {k} ({file}, {decoder:?}): pixels differ from timm's (mean level {} \
                     here, {} there)",
                    out.px.iter().map(|&v| f64::from(v)).sum::<f64>() / out.px.len() as f64,
                    c["mean_level"]
                );
            }
            if let Some(name) = c["out"].as_str() {
                let (max, mean) = diff(&out.px, &png(&fixtures().join(name)).px);
                report.push(format!("{decoder:?} {file}: max {max} mean {mean:.3}"));
                if exact {
                    assert_eq!(max, 0, "case {k}");
                } else {
                    assert!(
                        max <= IMAGE_CRATE_MAX && mean <= IMAGE_CRATE_MEAN,
                        "case {k} ({file}): max {max} mean {mean} levels from Pillow's"
                    );
                }
            }
            // The normalised tensor (ToTensor + Normalize in f32) at sampled positions.
            if exact {
                let x = t.eval(Source::File(&path), [3, size[0], size[1]]).unwrap();
                for (i, v) in c["sample_index"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .zip(c["sample_value"].as_array().unwrap())
                {
                    let (i, v) = (i.as_u64().unwrap() as usize, v.as_f64().unwrap() as f32);
                    assert_eq!(x[i], v, "case {k}: normalised value {i}");
                }
            }
        }
    }
    eprintln!("{}", report.join("\n"));
}

#[test]
fn random_resized_crop_boxes_match_torchvision() {
    let refs = references();
    let cases = refs["rrc_boxes"].as_array().unwrap();
    let mut fallbacks = 0;
    for (k, c) in cases.iter().enumerate() {
        let num = |v: &Value| v.as_f64().unwrap();
        let pair = |v: &Value| [num(&v[0]), num(&v[1])];
        let draws: Vec<f64> = c["draws"].as_array().unwrap().iter().map(num).collect();
        let mut at = 0;
        let mut next = || {
            at += 1;
            draws[at - 1]
        };
        let next = std::cell::RefCell::new(&mut next);
        let (w, h) = (
            c["w"].as_u64().unwrap() as usize,
            c["h"].as_u64().unwrap() as usize,
        );
        let r = rrc_box(
            w,
            h,
            pair(&c["scale"]),
            pair(&c["ratio"]),
            &mut |lo, hi| lo + (hi - lo) * (next.borrow_mut())(),
            &mut |n| ((next.borrow_mut())() * (n + 1) as f64).floor() as usize,
        );
        let want: Vec<usize> = c["box"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect();
        assert_eq!(
            [r.x, r.y, r.w, r.h],
            [want[0], want[1], want[2], want[3]],
            "case {k}: {c}"
        );
        // Ten tries, none fitting: the central crop (two draws per try, no offsets drawn).
        fallbacks += usize::from(draws.len() == 20);
    }
    assert!(
        fallbacks > 5,
        "the fallback was reached in only {fallbacks} cases"
    );
}

#[test]
fn random_resized_crop_pixels_match_torchvision() {
    let refs = references();
    for decoder in decoders() {
        for c in refs["rrc_pixels"].as_array().unwrap() {
            let file = c["file"].as_str().unwrap();
            let b: Vec<usize> = c["box"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as usize)
                .collect();
            let r = Rect {
                x: b[0],
                y: b[1],
                w: b[2],
                h: b[3],
            };
            let filter: Interpolation = c["interpolation"].as_str().unwrap().parse().unwrap();
            let data = std::fs::read(fixtures().join(file)).unwrap();
            // The partial decode around the box, as training does.
            let (img, at) = decode(&data, 3, Some(r), decoder).unwrap();
            let local = Rect {
                x: r.x - at.x,
                y: r.y - at.y,
                ..r
            };
            let out = resize_region(&img, local, 224, 224, filter);
            let (max, mean) = diff(
                &out.px,
                &png(&fixtures().join(c["out"].as_str().unwrap())).px,
            );
            if decoder == Decoder::Turbojpeg || !is_jpeg(file) {
                assert_eq!(max, 0, "{file} {r:?} {filter:?} ({decoder:?})");
            } else {
                assert!(
                    max <= IMAGE_CRATE_MAX && mean <= IMAGE_CRATE_MEAN,
                    "{file}: max {max} mean {mean}"
                );
            }
        }
    }
}

/// libjpeg-turbo's partial decode: the pixels of the region equal the full decode's.
#[test]
fn partial_jpeg_decode_equals_the_full_decode() {
    if !Decoder::TURBOJPEG_BUILT {
        eprintln!("skipped: built without the turbojpeg feature");
        return;
    }
    let mut seed = 1u64;
    let mut rand = |n: usize| {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((seed >> 33) as usize) % n.max(1)
    };
    let mut regions = 0;
    for entry in walk(&fixtures().join("val")) {
        if !entry.to_string_lossy().ends_with(".jpg") {
            continue;
        }
        let data = std::fs::read(&entry).unwrap();
        let (full, _) = decode(&data, 3, None, Decoder::Turbojpeg).unwrap();
        for _ in 0..40 {
            let w = 1 + rand(full.width);
            let h = 1 + rand(full.height);
            let r = Rect {
                x: rand(full.width - w + 1),
                y: rand(full.height - h + 1),
                w,
                h,
            };
            let (part, at) = decode(&data, 3, Some(r), Decoder::Turbojpeg).unwrap();
            let local = Rect {
                x: r.x - at.x,
                y: r.y - at.y,
                ..r
            };
            assert!(part.width * part.height <= full.width * full.height);
            assert_eq!(
                part.crop(local).px,
                full.crop(r).px,
                "{}: region {r:?} (decoded {at:?})",
                entry.display()
            );
            regions += 1;
        }
    }
    assert!(regions >= 400, "{regions}");
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out.sort();
    out
}

/// `vit-train eval --weights` on the folder against timm's own loop (ImageFolder +
/// create_transform + DataLoader): loss within 0.3%, top-1 / top-5 within one image.
#[test]
fn eval_weights_matches_timm_evaluation_loop() {
    let text = std::fs::read_to_string(fixtures().join("eval_reference.json")).unwrap();
    let want: Value = serde_json::from_str(&text).unwrap();
    let weights = fixtures().join("eval_model.safetensors");
    let model = fixtures().join("eval_model.toml");
    let root = fixtures();
    for decoder in decoders() {
        let decoder_name = match decoder {
            Decoder::Turbojpeg => "turbojpeg",
            _ => "image",
        };
        let (ok, out, err) = vit_train(&[
            "eval",
            "--weights",
            weights.to_str().unwrap(),
            "--model",
            model.to_str().unwrap(),
            "--data",
            root.to_str().unwrap(),
            "--batch-size",
            "5",
            "--decoder",
            decoder_name,
            "--json",
        ]);
        assert!(ok, "{err}");
        let got: Value = serde_json::from_str(out.trim()).unwrap();
        let n = want["images"].as_u64().unwrap();
        assert_eq!(got["images"].as_u64().unwrap(), n, "{out}");
        let (gl, wl) = (
            got["loss"].as_f64().unwrap(),
            want["loss"].as_f64().unwrap(),
        );
        let rel = (gl - wl).abs() / wl;
        eprintln!("{decoder_name}: loss {gl} vs timm {wl} ({rel:.2e} relative)");
        assert!(rel < 3e-3, "loss {gl} vs timm's {wl}");
        for k in ["top1", "top5"] {
            let d = (got[k].as_f64().unwrap() - want[k].as_f64().unwrap()).abs() * n as f64;
            assert!(d <= 1.0 + 1e-9, "{k}: {} vs timm's {}", got[k], want[k]);
        }
        if decoder == Decoder::Turbojpeg {
            // The same pixels: the loss differs by the two libraries' float arithmetic only.
            assert!(rel < 1e-4, "loss {gl} vs timm's {wl}");
        }
    }
}

/// The headline recipe on an ImageNet-style folder of real photos, as a user runs it, with
/// a tiny model laid over ViT-B/16: `info` counts the folder, the run stops with a
/// checkpoint, and `--resume` continues exactly (the same losses as a straight run).
#[test]
fn b16_recipe_runs_on_an_image_folder_and_resumes_exactly() {
    let b16 = concat!(env!("CARGO_MANIFEST_DIR"), "/../../configs/b16.toml");
    let dir = temp_dir("b16-folder");
    let root = fixtures();
    let sets = |out: &Path| -> Vec<String> {
        [
            format!("data.root={:?}", root.display().to_string()),
            "data.train=\"val\"".into(),
            "data.test=\"val\"".into(),
            "data.workers=2".into(),
            "model.num_classes=3".into(),
            "model.embed_dim=32".into(),
            "model.depth=1".into(),
            "model.num_heads=2".into(),
            "model.patch_size=[32, 32]".into(),
            "train.batch_size=8".into(),
            "train.accum_steps=2".into(),
            "train.warmup_steps=2".into(),
            "train.epochs=3".into(),
            format!("output.dir={:?}", out.display().to_string()),
        ]
        .into_iter()
        .collect()
    };
    let args = |out: &Path, extra: &[&str]| -> Vec<String> {
        let mut a = vec!["--config".to_string(), b16.to_string()];
        for s in sets(out) {
            a.push("--set".into());
            a.push(s);
        }
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let run = |a: Vec<String>| {
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        vit_train(&a)
    };
    // info: the folder's images and the epoch in steps.
    let mut info = vec!["info".to_string()];
    info.extend(args(&dir.join("info"), &[]));
    let (ok, out, err) = run(info);
    assert!(ok, "{err}");
    assert!(
        out.contains("train: 17 images in 3 classes") && out.contains("an epoch: 2 steps of 8"),
        "{out}"
    );
    // Straight: 6 steps (3 epochs of 2).
    let straight = dir.join("straight");
    let (ok, out, err) = run(args(&straight, &[]));
    assert!(ok, "{err}");
    assert!(out.contains("done: 6 steps"), "{out}");
    // Interrupted after 3 steps, then resumed.
    let split = dir.join("split");
    let (ok, _, err) = run(args(&split, &["--stop-after", "3"]));
    assert!(ok, "{err}");
    assert!(split.join("checkpoints/last/model.safetensors").exists());
    let (ok, out, err) = vit_train(&["--resume", split.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(out.contains("done: 6 steps"), "{out}");
    assert_eq!(losses(&split), losses(&straight));
    assert_eq!(losses(&straight).len(), 6);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// One-channel images take the same resampling as each channel of an RGB one (the RGB path
/// is Pillow's to the bit, above): a grey photo resized as luma equals its RGB copy's red
/// channel, for every filter, up- and downscaling, both pass orders.
#[test]
fn luma_resize_equals_each_rgb_channel() {
    let (gray, _) = decode(
        &std::fs::read(fixtures().join("val/cat/odd_gray.jpg")).unwrap(),
        1,
        None,
        Decoder::Image,
    )
    .unwrap();
    let rgb = gray.clone().with_channels(3);
    for filter in [
        Interpolation::Bilinear,
        Interpolation::Bicubic,
        Interpolation::Lanczos,
        Interpolation::Box,
        Interpolation::Hamming,
    ] {
        for (r, w, h) in [
            (
                Rect {
                    x: 3,
                    y: 5,
                    w: 300,
                    h: 200,
                },
                224,
                224,
            ),
            (
                Rect {
                    x: 0,
                    y: 0,
                    w: 40,
                    h: 300,
                },
                97,
                61,
            ),
            (
                Rect {
                    x: 10,
                    y: 1,
                    w: 333,
                    h: 17,
                },
                50,
                100,
            ),
        ] {
            let a = resize_region(&gray, r, w, h, filter);
            let b = resize_region(&rgb, r, w, h, filter);
            let red: Vec<u8> = b.px.chunks_exact(3).map(|p| p[0]).collect();
            assert_eq!(a.px, red, "{filter:?} {r:?} -> {w}x{h}");
        }
    }
}
