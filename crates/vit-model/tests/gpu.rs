//! The wgpu backend against timm: one process, the small parity fixtures, on whatever adapter
//! wgpu finds (Mesa's lavapipe in CI, a real GPU elsewhere). Built with `--features wgpu`.
#![cfg(feature = "wgpu")]

mod common;

use common::*;
use vit_model::weights::read_safetensors;
use vit_model::{ResampleMode, device_from_name, resample_pos_embed};

#[test]
fn parity_fixtures_on_wgpu() {
    let device = device_from_name("wgpu").unwrap();
    check_case("token_32", &token_config(), &device, 1e-4);
    check_case("mean_48x64", &mean_config(), &device, 1e-4);
    check_case("pre_logits", &pre_logits_config(), &device, 1e-4);
    // The hybrid: weight-standardised convs with asymmetric SAME padding, GroupNorm, max-pool.
    check_case("hybrid_64", &hybrid_config(), &device, 1e-4);

    let refs = read_safetensors(&fixture("resample.safetensors")).unwrap();
    let posemb = tensor::<3>(&refs["posemb"], &device);
    for mode in ResampleMode::ALL {
        let got = resample_pos_embed(posemb.clone(), [7, 7], [10, 12], 1, mode).unwrap();
        let d = max_abs_diff(got.into_data(), &refs[&format!("{mode}.10x12")]);
        assert!(
            d <= 1e-5,
            "{mode}: differs from the reference by {d} on wgpu"
        );
    }
}
