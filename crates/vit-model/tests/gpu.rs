//! The GPU backends against timm: the small parity fixtures on wgpu (whatever adapter wgpu
//! finds: Mesa's lavapipe in CI, a real GPU elsewhere; built with `--features wgpu`), and on
//! the devices named in `VIT_TEST_DEVICES` (`cuda`, ...; `cargo xtask gpu-check` sets it).

mod common;

use common::*;
use vit_model::weights::read_safetensors;
use vit_model::{ResampleMode, device_from_name, resample_pos_embed};

fn parity_fixtures_on(name: &str) {
    let device = device_from_name(name).unwrap();
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
            "{mode}: differs from the reference by {d} on {name}"
        );
    }
}

#[cfg(feature = "wgpu")]
#[test]
fn parity_fixtures_on_wgpu() {
    parity_fixtures_on("wgpu");
}

#[test]
fn parity_fixtures_on_listed_devices() {
    let Ok(list) = std::env::var("VIT_TEST_DEVICES") else {
        eprintln!("VIT_TEST_DEVICES is not set: no extra device checked");
        return;
    };
    for name in list.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        parity_fixtures_on(name);
    }
}
