//! `inspect`: the paper's pictures of what a ViT learns (section 4.5, App. D.7-D.8), for any
//! model `predict` can load: attention rollout over images (Fig. 6 / 14), mean attention
//! distance by depth (Fig. 7 right / 11), position-embedding similarity (Fig. 7 centre) and
//! the principal components of the embedding filters (Fig. 7 left). A ResNet has no attention
//! and no position embedding: for it `inspect` draws the root convolution's filters.
//!
//! The numbers are computed on the host in f64 from the model's attention weights (softmax
//! over all tokens, class token first, eval mode), as [`rollout`], [`distance`], [`posemb`]
//! and [`filters`] define them; [`figures`] draws them.

pub mod distance;
pub mod figures;
pub mod filters;
pub mod posemb;
pub mod rollout;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use burn::tensor::Tensor;
use serde::Serialize;

use crate::cli::{HeadFusion, InspectArgs};
use crate::predict;

/// The numbers of one image (`--json`: one line each).
#[derive(Debug, Serialize)]
pub struct ImageReport {
    pub path: PathBuf,
    /// The rollout map over the patch grid (rows), divided by its maximum.
    pub rollout: Vec<Vec<f64>>,
    /// Mean attention distance in input pixels, `[layer][head]`.
    pub attention_distance: Vec<Vec<f64>>,
}

/// The numbers of the model (`--json`: the last line).
#[derive(Debug, Serialize)]
pub struct ModelReport {
    /// Cosine similarity of the patch positions' embeddings, `[N][N]` (class token left out).
    pub posemb_similarity: Vec<Vec<f64>>,
    /// Fraction of the filters' variance each drawn principal component explains (empty for a
    /// hybrid, whose projection is 1x1 over the ResNet's channels).
    pub embedding_pca_explained: Vec<f64>,
}

/// How many principal components of the embedding filters are drawn (the paper's 28).
pub const COMPONENTS: usize = 28;

/// Runs the model over the images, writes the figures into `args.out` and returns the
/// numbers. Existing figures there are replaced only with `--overwrite`.
pub fn inspect(args: &InspectArgs) -> Result<(Vec<ImageReport>, ModelReport)> {
    if !(0.0..1.0).contains(&args.discard_ratio) {
        bail!("--discard-ratio {}: must be in [0, 1)", args.discard_ratio);
    }
    let loaded = predict::load(&args.source)?;
    let Some(model) = loaded.model.as_vit() else {
        return inspect_resnet(args, &loaded);
    };
    let c = model.config.clone();
    let (s, prefix, h, grid) = (
        c.seq_len(),
        c.num_prefix_tokens(),
        c.num_heads,
        c.grid_size(),
    );
    let pixels = c.pixels_per_patch();
    let stems = stems(&args.images);
    let mut targets: Vec<PathBuf> = stems
        .iter()
        .flat_map(|s| {
            ["rollout", "rollout_map", "heads"].map(|k| args.out.join(format!("{s}_{k}.png")))
        })
        .collect();
    targets.extend(
        [
            "attention_distance",
            "posemb_similarity",
            "embedding_filters",
        ]
        .map(|k| args.out.join(format!("{k}.png"))),
    );
    prepare_out(args, &targets)?;
    let fusion = match args.head_fusion {
        HeadFusion::Mean => "mean",
        HeadFusion::Max => "max",
        HeadFusion::Min => "min",
    };
    let what = if prefix > 0 {
        format!("heads fused by {fusion}, discard {}", args.discard_ratio)
    } else {
        format!(
            "heads fused by {fusion}, discard {}, mean over tokens (no class token)",
            args.discard_ratio
        )
    };

    let mut reports = Vec::new();
    let mut mean_distance = vec![vec![0.0; h]; c.depth];
    for (path, stem) in args.images.iter().zip(&stems) {
        let x = loaded.prepare(path)?;
        let layers: Vec<Vec<f32>> = model
            .attention_maps(x.clone())?
            .into_iter()
            .map(values)
            .collect::<Result<_>>()?;
        let fused: Vec<Vec<f64>> = layers
            .iter()
            .map(|a| rollout::fuse_heads(a, h, s, args.head_fusion))
            .collect();
        let map = rollout::rollout_map(&rollout::rollout(&fused, s, args.discard_ratio), s, prefix);
        let distances: Vec<Vec<f64>> = layers
            .iter()
            .map(|a| distance::mean_distance(a, h, s, prefix, grid, pixels))
            .collect();
        for (m, d) in mean_distance.iter_mut().zip(&distances) {
            m.iter_mut()
                .zip(d)
                .for_each(|(m, d)| *m += d / args.images.len() as f64);
        }
        let size = c.image_size;
        figures::rollout(&args.out, stem, &display(x)?, size, &map, grid, &what)?;
        let last = layers.last().context("the model has no blocks")?;
        let per_head: Vec<Vec<f64>> = (0..h)
            .map(|k| query_attention(&last[k * s * s..(k + 1) * s * s], s, prefix))
            .collect();
        let head_what = if prefix > 0 {
            "class token's attention"
        } else {
            "mean attention over tokens"
        };
        figures::heads(&args.out, stem, &per_head, grid, head_what)?;
        reports.push(ImageReport {
            path: path.clone(),
            rollout: map.chunks(grid[1]).map(<[f64]>::to_vec).collect(),
            attention_distance: distances,
        });
    }
    figures::attention_distance(&args.out, &mean_distance, args.images.len())?;

    let pos = values(model.pos_embed.val())?;
    let n = s - prefix;
    let sim = posemb::cosine_similarity(&pos, s, c.embed_dim, prefix);
    figures::posemb_similarity(&args.out, &sim, grid)?;

    let explained = if c.backbone.is_some() {
        eprintln!(
            "embedding_filters.png: not drawn for a hybrid (its projection is a {}x{} conv over \
             the ResNet's {} channels, not image filters)",
            c.patch_size[0],
            c.patch_size[1],
            c.embed_in_channels()
        );
        Vec::new()
    } else {
        let [ph, pw] = c.patch_size;
        let k = c.in_channels * ph * pw;
        let weight = values(model.patch_embed.proj.weight.val())?;
        let (components, explained) =
            filters::principal_components(&weight, c.embed_dim, k, COMPONENTS);
        figures::embedding_filters(&args.out, &components, [c.in_channels, ph, pw])?;
        explained
    };
    Ok((
        reports,
        ModelReport {
            posemb_similarity: sim.chunks(n).map(<[f64]>::to_vec).collect(),
            embedding_pca_explained: explained,
        },
    ))
}

/// What applies to a ResNet: `root_filters.png`, the root convolution's filters (the first
/// 64). The figures of attention and position embeddings do not apply, and are named so.
fn inspect_resnet(
    args: &InspectArgs,
    loaded: &predict::Loaded,
) -> Result<(Vec<ImageReport>, ModelReport)> {
    const DRAWN: usize = 64;
    prepare_out(args, &[args.out.join("root_filters.png")])?;
    let weight = loaded.model.first_conv_weight();
    let [out, c, kh, kw] = weight.dims();
    let v = values(weight)?;
    let per = c * kh * kw;
    let filters: Vec<Vec<f64>> = v
        .chunks_exact(per)
        .take(DRAWN)
        .map(|f| f.iter().map(|&x| f64::from(x)).collect())
        .collect();
    figures::root_filters(&args.out, &filters, [c, kh, kw], out)?;
    eprintln!(
        "a ResNet has no attention and no position embedding: attention rollout, attention \
         distance, position-embedding similarity and embedding-filter components do not apply \
         (only root_filters.png is drawn{})",
        if args.images.is_empty() {
            ""
        } else {
            "; the images are not used"
        }
    );
    Ok((
        Vec::new(),
        ModelReport {
            posemb_similarity: Vec::new(),
            embedding_pca_explained: Vec::new(),
        },
    ))
}

/// Creates `args.out`, refusing to go on if one of `targets` is there already and
/// `--overwrite` was not given.
fn prepare_out(args: &InspectArgs, targets: &[PathBuf]) -> Result<()> {
    if !args.overwrite
        && let Some(t) = targets.iter().find(|t| t.exists())
    {
        bail!(
            "{} exists; inspect does not replace files unless given --overwrite",
            t.display()
        );
    }
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))
}

/// A tensor's values as f32, row-major.
fn values<const D: usize>(t: Tensor<D>) -> Result<Vec<f32>> {
    Ok(t.into_data().convert::<f32>().try_into_vec::<f32>()?)
}

/// The attention of the class token (or, without one, the mean over queries) to the patches.
fn query_attention(a: &[f32], s: usize, prefix: usize) -> Vec<f64> {
    if prefix > 0 {
        a[prefix..s].iter().map(|&v| f64::from(v)).collect()
    } else {
        (0..s)
            .map(|k| (0..s).map(|q| f64::from(a[q * s + k])).sum::<f64>() / s as f64)
            .collect()
    }
}

/// The model's input `[1, C, H, W]` as RGB pixels (min-max scaled over all channels; grey
/// repeated).
fn display(x: Tensor<4>) -> Result<Vec<[u8; 3]>> {
    let [_, c, h, w] = x.dims();
    let v = values(x)?;
    let lo = v.iter().copied().fold(f32::MAX, f32::min);
    let hi = v.iter().copied().fold(f32::MIN, f32::max);
    let span = (hi - lo).max(f32::MIN_POSITIVE);
    let px = |ch: usize, i: usize| (255.0 * (v[ch * h * w + i] - lo) / span).round() as u8;
    Ok((0..h * w)
        .map(|i| {
            if c >= 3 {
                [px(0, i), px(1, i), px(2, i)]
            } else {
                [px(0, i); 3]
            }
        })
        .collect())
}

/// File stems for the figures of each image, made unique (`cat`, `cat_2`, ...).
fn stems(images: &[PathBuf]) -> Vec<String> {
    let mut seen = std::collections::HashMap::<String, usize>::new();
    images
        .iter()
        .map(|p| {
            let stem = Path::new(p)
                .file_stem()
                .map_or("image".into(), |s| s.to_string_lossy().into_owned());
            let n = seen.entry(stem.clone()).or_insert(0);
            *n += 1;
            if *n == 1 { stem } else { format!("{stem}_{n}") }
        })
        .collect()
}
