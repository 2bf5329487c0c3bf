//! Presets: parameter counts equal timm's, and unknown names get a helpful error.

use std::collections::BTreeMap;

use burn::module::Module;
use burn::tensor::Device;
use vit_model::VitConfig;
use vit_model::preset::preset_names;

#[derive(serde::Deserialize)]
struct Counts {
    counts: BTreeMap<String, usize>,
}

#[test]
fn param_counts_equal_timm() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/param_counts.json"
    );
    let timm: Counts = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    // The spec's exact numbers, and timm's for every preset it registers.
    assert_eq!(timm.counts["vit_tiny_patch16_224"], 5_717_416);
    assert_eq!(timm.counts["vit_base_patch16_224"], 86_567_656);
    assert!(
        timm.counts.len() >= 15,
        "fixture lists {} presets",
        timm.counts.len()
    );
    let device = Device::flex();
    for name in preset_names() {
        let config = VitConfig::preset(&name).unwrap();
        // Parameters are lazy: counting them does not allocate the weights.
        let built = config.init(&device).num_params();
        assert_eq!(built, config.num_params(), "{name}: built vs formula");
        if let Some(&want) = timm.counts.get(&name) {
            assert_eq!(built, want, "{name}: ours vs timm");
        }
    }
}

#[test]
fn spec_formula_agrees_for_presets_timm_lacks() {
    // Total = P^2*C*D + D + D + (N+1)*D + L*(12D^2+13D) + 2D + D*K + K (vit-spec section 2).
    for name in preset_names() {
        let c = VitConfig::preset(&name).unwrap();
        if c.backbone.is_some() {
            continue; // The hybrids' counts are timm's (param_counts_equal_timm).
        }
        let (p, d, l) = (c.patch_size[0], c.embed_dim, c.depth);
        let n = c.num_patches();
        let k = 1000;
        let want =
            p * p * 3 * d + d + d + (n + 1) * d + l * (12 * d * d + 13 * d) + 2 * d + d * k + k;
        assert_eq!(c.num_params(), want, "{name}");
    }
}

#[test]
fn unknown_preset_lists_the_known_ones() {
    let err = VitConfig::preset("vit_base_patch15_224")
        .unwrap_err()
        .to_string();
    assert!(err.contains("vit_base_patch15_224"), "{err}");
    assert!(err.contains("vit_base_patch16_224"), "{err}");
    assert!(err.contains("vit_huge_patch14_518"), "{err}");
}

#[test]
fn invalid_configs_are_rejected_with_the_field() {
    let err = VitConfig::new()
        .with_patch_size([15, 16])
        .validate()
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("patch_size = [15, 16]: must divide image_size [224, 224]"),
        "{err}"
    );
    let err = VitConfig::new()
        .with_num_heads(5)
        .validate()
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("num_heads = 5: must divide embed_dim 768"),
        "{err}"
    );
    let err = VitConfig::new()
        .with_class_token(false)
        .validate()
        .unwrap_err()
        .to_string();
    assert!(err.contains("class_token"), "{err}");
}
