//! `inspect`'s numbers against timm + numpy (`xtask/python/inspect_fixtures.py`): attention
//! rollout (mean, max and min head fusion, with and without discarding), mean attention
//! distance, position-embedding similarity and the embedding filters' PCA, on a class-token
//! model at 224 and on a non-square model without a class token; then the command itself.

mod common;
// vit-model's fixture helpers and configs, shared rather than copied.
#[path = "../../vit-model/tests/common/mod.rs"]
mod model_common;

use burn::tensor::{Device, Tensor, TensorData};
use common::*;
use vit_model::weights::{StateDict, read_safetensors};
use vit_model::{VisionTransformer, VitConfig};
use vit_train::cli::HeadFusion;
use vit_train::inspect::{distance, filters, posemb, rollout};

use model_common::mean_config as config_48x64;

/// A vit-model fixture (`model_common::fixture` resolves against this crate's folder).
fn model_fixture(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../vit-model/tests/fixtures")
        .join(name)
}

fn values(t: &TensorData) -> Vec<f64> {
    t.iter::<f32>().map(f64::from).collect()
}

fn close(got: &[f64], want: &[f64], tol: f64, what: &str) -> f64 {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let d = got
        .iter()
        .zip(want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    assert!(d <= tol, "{what}: differs from the reference by {d}");
    d
}

/// The 224 model: one grey channel, patch 16, class token, 3 blocks of 2 heads.
fn config_224() -> VitConfig {
    VitConfig::new()
        .with_image_size([224, 224])
        .with_patch_size([16, 16])
        .with_in_channels(1)
        .with_num_classes(5)
        .with_embed_dim(32)
        .with_depth(3)
        .with_num_heads(2)
        .with_mlp_ratio(2.0)
}

fn load(case: &str, config: &VitConfig) -> VisionTransformer {
    vit_model::weights::load_safetensors(
        config.init(&Device::flex()),
        &model_fixture(&format!("{case}.model.safetensors")),
    )
    .unwrap()
}

/// Our model's attention weights of image `b`, per layer `[h, S, S]` flattened.
fn our_maps(model: &VisionTransformer, input: &TensorData, b: usize) -> Vec<Vec<f32>> {
    let x = Tensor::<4>::from_data(input.clone(), &Device::flex());
    model
        .attention_maps(x)
        .unwrap()
        .into_iter()
        .map(|a| {
            let [_, h, s, _] = a.dims();
            a.narrow(0, b, 1)
                .reshape([h * s * s])
                .into_data()
                .try_to_vec::<f32>()
                .unwrap()
        })
        .collect()
}

fn map_of(
    maps: &[Vec<f32>],
    h: usize,
    s: usize,
    prefix: usize,
    fusion: HeadFusion,
    r: f64,
) -> Vec<f64> {
    let fused: Vec<Vec<f64>> = maps
        .iter()
        .map(|a| rollout::fuse_heads(a, h, s, fusion))
        .collect();
    rollout::rollout_map(&rollout::rollout(&fused, s, r), s, prefix)
}

/// Rollout and distances from our model's attention, for every image of the case.
fn check_model(case: &str, config: &VitConfig, refs: &StateDict, input: &TensorData) {
    let model = load(case, config);
    let (h, s, prefix) = (
        config.num_heads,
        config.seq_len(),
        config.num_prefix_tokens(),
    );
    for b in 0..input.shape()[0] {
        let maps = our_maps(&model, input, b);
        let got = map_of(&maps, h, s, prefix, HeadFusion::Mean, 0.0);
        let d = close(
            &got,
            &values(&refs[&format!("rollout.mean.{b}")]),
            1e-5,
            case,
        );
        eprintln!("{case} image {b}: rollout within {d:e}");
        let got: Vec<f64> = maps
            .iter()
            .flat_map(|a| {
                distance::mean_distance(
                    a,
                    h,
                    s,
                    prefix,
                    config.grid_size(),
                    config.pixels_per_patch(),
                )
            })
            .collect();
        // Distances are in pixels (up to ~100 here): 1e-5 relative.
        let want = values(&refs[&format!("distance.{b}")]);
        let scale = want.iter().copied().fold(1.0, f64::max);
        let d = close(&got, &want, 1e-5 * scale, &format!("{case} distances"));
        eprintln!("{case} image {b}: distances within {d:e} (largest {scale:.1} px)");
    }
}

/// Cosine similarity and PCA (up to sign) of the model's own parameters.
fn check_parameters(case: &str, config: &VitConfig, refs: &StateDict) {
    let model = load(case, config);
    let (s, d, prefix) = (
        config.seq_len(),
        config.embed_dim,
        config.num_prefix_tokens(),
    );
    let pos: Vec<f32> = model.pos_embed.val().into_data().try_to_vec().unwrap();
    let sim = posemb::cosine_similarity(&pos, s, d, prefix);
    close(
        &sim,
        &values(&refs["posemb_similarity"]),
        1e-5,
        "posemb similarity",
    );
    let [ph, pw] = config.patch_size;
    let k = config.in_channels * ph * pw;
    let w: Vec<f32> = model
        .patch_embed
        .proj
        .weight
        .val()
        .into_data()
        .try_to_vec()
        .unwrap();
    let (components, explained) = filters::principal_components(&w, d, k, 28);
    close(
        &explained,
        &values(&refs["pca.explained"]),
        1e-6,
        "PCA explained variance",
    );
    let want = values(&refs["pca.components"]);
    assert_eq!(components.len() * k, want.len());
    for (i, c) in components.iter().enumerate() {
        let w = &want[i * k..(i + 1) * k];
        let sign = if c.iter().zip(w).map(|(a, b)| a * b).sum::<f64>() < 0.0 {
            -1.0
        } else {
            1.0
        };
        let c: Vec<f64> = c.iter().map(|v| v * sign).collect();
        // The smallest components of a 32-filter bank are less well conditioned.
        let tol = if explained[i] > 1e-3 { 1e-4 } else { 1e-2 };
        close(&c, w, tol, &format!("{case}: principal component {i}"));
    }
}

#[test]
fn class_token_model_at_224_matches_timm() {
    let refs = read_safetensors(&model_fixture("inspect_224.refs.safetensors")).unwrap();
    check_model("inspect_224", &config_224(), &refs, &refs["input"]);
    check_parameters("inspect_224", &config_224(), &refs);
}

#[test]
fn non_square_model_without_class_token_matches_timm() {
    let refs = read_safetensors(&model_fixture("mean_48x64.inspect.safetensors")).unwrap();
    let io = read_safetensors(&model_fixture("mean_48x64.io.safetensors")).unwrap();
    let config = config_48x64();
    check_model("mean_48x64", &config, &refs, &io["input"]);
    check_parameters("mean_48x64", &config, &refs);
    // Head fusion by max / min with discarding, on timm's own attention weights (a near-tie
    // between two implementations' weights could pick another entry to discard).
    let (h, s) = (config.num_heads, config.seq_len());
    for b in 0..2 {
        let maps: Vec<Vec<f32>> = (0..config.depth)
            .map(|l| {
                let a = values(&refs[&format!("attn.{l}")]);
                a[b * h * s * s..(b + 1) * h * s * s]
                    .iter()
                    .map(|&v| v as f32)
                    .collect()
            })
            .collect();
        for (fusion, r, key) in [
            (HeadFusion::Max, 0.9, "max_discard_0.9"),
            (HeadFusion::Min, 0.5, "min_discard_0.5"),
            (HeadFusion::Mean, 0.0, "mean"),
        ] {
            let got = map_of(&maps, h, s, 0, fusion, r);
            close(
                &got,
                &values(&refs[&format!("rollout.{key}.{b}")]),
                1e-6, // the references are stored as f32
                key,
            );
        }
    }
}

/// The command: figures and JSON for a model given as weights + a recipe's `[model]`; it does
/// not replace existing figures unless told to.
#[test]
fn inspect_writes_the_figures_and_json() {
    let dir = temp_dir("inspect");
    let recipe = dir.join("m.toml");
    std::fs::write(
        &recipe,
        "[model]\nimage_size = [224, 224]\npatch_size = [16, 16]\nin_channels = 1\n\
         num_classes = 5\nembed_dim = 32\ndepth = 3\nnum_heads = 2\nmlp_ratio = 2.0\n",
    )
    .unwrap();
    let img = dir.join("stripes.png");
    image::GrayImage::from_fn(300, 260, |x, y| {
        image::Luma([((x / 20 + y / 30) % 2 * 200) as u8])
    })
    .save(&img)
    .unwrap();
    let out = dir.join("figures");
    let weights = model_fixture("inspect_224.model.safetensors");
    let args = [
        "inspect",
        "--weights",
        weights.to_str().unwrap(),
        "--model",
        recipe.to_str().unwrap(),
        "--mean",
        "0.5",
        "--std",
        "0.5",
        "--out",
        out.to_str().unwrap(),
        "--json",
        img.to_str().unwrap(),
    ];
    let (ok, stdout, err) = vit_train(&args);
    assert!(ok, "{err}");
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    let rollout = lines[0]["rollout"].as_array().unwrap();
    assert_eq!(rollout.len(), 14);
    let max = rollout
        .iter()
        .flat_map(|r| r.as_array().unwrap())
        .map(|v| v.as_f64().unwrap())
        .fold(0.0, f64::max);
    assert!(
        (max - 1.0).abs() < 1e-12,
        "the map is divided by its maximum"
    );
    assert_eq!(lines[0]["attention_distance"].as_array().unwrap().len(), 3);
    assert_eq!(lines[1]["posemb_similarity"].as_array().unwrap().len(), 196);
    assert_eq!(
        lines[1]["embedding_pca_explained"]
            .as_array()
            .unwrap()
            .len(),
        28
    );
    for name in [
        "stripes_rollout.png",
        "stripes_rollout_map.png",
        "stripes_heads.png",
        "attention_distance.png",
        "posemb_similarity.png",
        "embedding_filters.png",
    ] {
        let f = out.join(name);
        assert!(image::open(&f).is_ok(), "{} is not an image", f.display());
    }
    // Again: the figures are there, so it stops and names one; --overwrite replaces them.
    let (ok, _, err) = vit_train(&args);
    assert!(
        !ok && err.contains("exists") && err.contains("--overwrite"),
        "{err}"
    );
    let mut again = args.to_vec();
    again.insert(1, "--overwrite");
    let (ok, _, err) = vit_train(&again);
    assert!(ok, "{err}");

    // A hybrid: the grid is the feature map's, distances in input pixels (16 per cell), and
    // the embedding filters are skipped with a message (a 2x2 conv over 256 channels).
    let hybrid = dir.join("hybrid.toml");
    std::fs::write(
        &hybrid,
        "[model]\nimage_size = [64, 64]\npatch_size = [2, 2]\nnum_classes = 10\n\
         embed_dim = 48\ndepth = 2\nnum_heads = 3\n[model.backbone]\nlayers = [1, 1]\n\
         stem_width = 32\n",
    )
    .unwrap();
    let rgb = dir.join("rgb.png");
    image::RgbImage::from_fn(64, 64, |x, y| {
        image::Rgb([(x * 4) as u8, (y * 4) as u8, 128])
    })
    .save(&rgb)
    .unwrap();
    let weights = model_fixture("hybrid_64.model.safetensors");
    let out = dir.join("hybrid");
    let (ok, stdout, err) = vit_train(&[
        "inspect",
        "--weights",
        weights.to_str().unwrap(),
        "--model",
        hybrid.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--json",
        rgb.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    assert!(err.contains("not drawn for a hybrid"), "{err}");
    let line: serde_json::Value = serde_json::from_str(stdout.lines().next().unwrap()).unwrap();
    assert_eq!(line["rollout"].as_array().unwrap().len(), 4);
    assert!(!out.join("embedding_filters.png").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}
