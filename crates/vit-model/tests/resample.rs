//! Position-embedding resampling against timm, scipy (the JAX code) and HF's formula.

mod common;

use burn::tensor::{Device, Tensor};
use common::*;
use vit_model::weights::read_safetensors;
use vit_model::{ResampleMode, resample_pos_embed};

const TOL: f32 = 1e-5;

#[test]
fn every_mode_matches_its_reference() {
    let device = Device::flex();
    let refs = read_safetensors(&fixture("resample.safetensors")).unwrap();
    let posemb = tensor::<3>(&refs["posemb"], &device);
    let mut checked = 0;
    for mode in ResampleMode::ALL {
        for new in [[10, 12], [12, 12], [4, 5]] {
            let key = format!("{mode}.{}x{}", new[0], new[1]);
            let got = resample_pos_embed(posemb.clone(), [7, 7], new, 1, mode).unwrap();
            let d = max_abs_diff(got.into_data(), &refs[&key]);
            assert!(d <= TOL, "{key}: differs from the reference by {d}");
            checked += 1;
        }
    }
    assert_eq!(checked, 15);
}

#[test]
fn modes_parse_and_unknown_ones_are_listed() {
    assert_eq!("timm".parse::<ResampleMode>().unwrap(), ResampleMode::Timm);
    let err = "cubic".parse::<ResampleMode>().unwrap_err().to_string();
    assert!(err.contains("timm, jax, hf, bilinear, nearest"), "{err}");
}

#[test]
fn wrong_pos_embed_length_is_an_error() {
    let device = Device::flex();
    let pos = Tensor::<3>::zeros([1, 50, 8], &device);
    let err = resample_pos_embed(pos, [6, 6], [8, 8], 1, ResampleMode::Timm)
        .unwrap_err()
        .to_string();
    assert!(err.contains("[1, 37, D]"), "{err}");
}

#[test]
fn set_image_size_runs_a_224_model_at_384() {
    let device = Device::flex();
    let config = vit_model::VitConfig::preset("vit_tiny_patch16_224")
        .unwrap()
        .with_depth(1)
        .with_num_classes(3);
    let model = config.init(&device);
    let pos_224 = model.pos_embed.val();
    let model = model
        .set_image_size([384, 384], ResampleMode::Timm)
        .unwrap();
    assert_eq!(model.pos_embed.val().dims(), [1, 1 + 24 * 24, 192]);
    assert_eq!(model.config.image_size, [384, 384]);
    // The class token's embedding is kept as it was.
    let d = max_abs_diff(
        model.pos_embed.val().narrow(1, 0, 1).into_data(),
        &pos_224.clone().narrow(1, 0, 1).into_data(),
    );
    assert_eq!(d, 0.0);
    // Equal to the function applied by hand.
    let want = resample_pos_embed(pos_224, [14, 14], [24, 24], 1, ResampleMode::Timm).unwrap();
    assert_eq!(
        max_abs_diff(model.pos_embed.val().into_data(), &want.into_data()),
        0.0
    );
    let logits = model
        .forward(Tensor::zeros([1, 3, 384, 384], &device))
        .unwrap();
    assert_eq!(logits.dims(), [1, 3]);
    // Non-square, and an impossible size is an error naming the field.
    let model = model.set_image_size([224, 320], ResampleMode::Jax).unwrap();
    assert_eq!(model.pos_embed.val().dims(), [1, 1 + 14 * 20, 192]);
    let err = model
        .set_image_size([100, 100], ResampleMode::Timm)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("patch_size = [16, 16]: must divide image_size [100, 100]"),
        "{err}"
    );
}

#[test]
fn resampling_is_differentiable() {
    let device = Device::flex().autodiff();
    let pos = Tensor::<3>::ones([1, 1 + 9, 4], &device).require_grad();
    let out = resample_pos_embed(pos.clone(), [3, 3], [5, 4], 1, ResampleMode::Timm).unwrap();
    let grads = out.sum().backward();
    let grad = pos.grad(&grads).expect("pos_embed gets a gradient");
    // d(sum)/d(pos) is the column sums of the resampling matrix: 1 for the class token and,
    // the taps being normalised, new/old = 20/9 in total over the grid.
    let g = grad.into_data().try_to_vec::<f32>().unwrap();
    assert!(
        g[..4].iter().all(|&v| (v - 1.0).abs() < 1e-6),
        "{:?}",
        &g[..4]
    );
    let grid_total: f32 = g[4..].iter().sum::<f32>() / 4.0;
    assert!((grid_total - 20.0).abs() < 1e-4, "{grid_total}");
}
