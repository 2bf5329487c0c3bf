//! Transforms: geometry, normalisation, targets, mixing.

use rand::SeedableRng;
use rand::rngs::StdRng;
use vit_model::{Interpolation, Preprocessing};
use vit_train::config::{AugmentSection, Decoder, OnBadImage};
use vit_train::data::Source;
use vit_train::data::pixmap::Pixmap;
use vit_train::data::transforms::*;

fn ramp() -> Image {
    // 2 channels of 4x5, distinct values.
    let px: Vec<u8> = (0..40).map(|i| (i * 5) as u8).collect();
    Image::from_u8(&px, [2, 4, 5])
}

#[test]
fn hflip_mirrors_rows_and_twice_is_identity() {
    let img = ramp();
    let f = hflip(&img);
    assert_eq!(f.px[0], img.px[4]);
    assert_eq!(f.px[5 * 4], img.px[5 * 4 + 4]);
    assert_eq!(hflip(&f).px, img.px);
}

#[test]
fn random_crop_shifts_content_with_zero_fill() {
    let img = ramp();
    let mut rng = StdRng::seed_from_u64(1);
    assert_eq!(random_crop(&img, 0, &mut rng).px, img.px);
    let mut shifted = 0;
    for _ in 0..20 {
        let c = random_crop(&img, 2, &mut rng);
        assert_eq!(c.px.len(), img.px.len());
        // Every value is either an original pixel or padding.
        assert!(c.px.iter().all(|v| *v == 0.0 || img.px.contains(v)));
        shifted += usize::from(c.px != img.px);
    }
    assert!(shifted > 10);
}

#[test]
fn random_resized_crop_keeps_size_and_range() {
    // An RGB ramp of 40x30, cut and resized to 7x9 (h x w).
    let px: Vec<u8> = (0..40 * 30 * 3).map(|i| (i % 200) as u8 + 20).collect();
    let img = Pixmap {
        px,
        width: 40,
        height: 30,
        channels: 3,
    };
    let mut rng = StdRng::seed_from_u64(2);
    for filter in [Interpolation::Bilinear, Interpolation::Bicubic] {
        let out = random_resized_crop(&img, [7, 9], [0.3, 1.0], [0.75, 1.33], filter, &mut rng);
        assert_eq!((out.channels, out.height, out.width), (3, 7, 9));
        // Bicubic overshoots, but not by more than the ramp's range.
        assert!(out.px.iter().any(|&v| v > 20));
    }
}

fn plain(mean: Vec<f32>, std: Vec<f32>, augment: AugmentSection) -> Transform {
    let p = Preprocessing {
        mean,
        std,
        ..Preprocessing::for_preset("vit_base_patch16_224")
    };
    Transform {
        augment,
        ..Transform::from_preprocessing(&p, Decoder::Auto, OnBadImage::Error)
    }
}

#[test]
fn eval_transform_normalises_per_channel() {
    let t = plain(vec![0.5, 0.25], vec![0.5, 0.25], AugmentSection::default());
    let px = [255u8, 0, 128, 0];
    let out = t.eval(Source::Fixed(&px), [2, 1, 2]).unwrap();
    let want = [1.0, -1.0, (128.0 / 255.0 - 0.25) / 0.25, -1.0];
    for (a, b) in out.iter().zip(want) {
        assert!((a - b).abs() < 1e-6, "{out:?}");
    }
}

#[test]
fn train_transform_is_seeded() {
    let t = plain(
        vec![0.0, 0.0],
        vec![1.0, 1.0],
        AugmentSection {
            crop_padding: 1,
            hflip: true,
            rand_ops: 2,
            erase_prob: 0.5,
            ..Default::default()
        },
    );
    let px: Vec<u8> = (0..40).map(|i| (i * 5) as u8).collect();
    let a = t
        .train(Source::Fixed(&px), [2, 4, 5], &mut StdRng::seed_from_u64(3))
        .unwrap();
    let b = t
        .train(Source::Fixed(&px), [2, 4, 5], &mut StdRng::seed_from_u64(3))
        .unwrap();
    assert_eq!(a, b);
    assert!(a.iter().all(|v| v.is_finite()));
}

#[test]
fn smoothed_and_mixed_targets_sum_to_one() {
    let t = soft_targets(&[2, 0], 4, 0.1);
    assert!((t[2] - 0.925).abs() < 1e-6);
    assert_eq!(t[1], 0.025); // row 0, a wrong class
    let mut images: Vec<f32> = (0..2 * 3).map(|i| i as f32).collect();
    let mut targets = t.clone();
    let mut rng = StdRng::seed_from_u64(4);
    mix_batch(&mut images, &mut targets, [1, 1, 3], 4, 0.4, 0.0, &mut rng);
    for row in targets.chunks(4) {
        assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-6);
    }
    // Mixup: image 0 = lam * img0 + (1 - lam) * img1, and lam is read off the targets.
    let lam = (targets[2] - t[6]) / (t[2] - t[6]);
    assert!((images[0] - (lam * 0.0 + (1.0 - lam) * 3.0)).abs() < 1e-5);
}
