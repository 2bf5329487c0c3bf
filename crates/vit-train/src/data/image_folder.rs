//! ImageFolder: `root/<class>/<image>`, classes in sorted order, as torchvision's
//! `ImageFolder` lists it (files with an image extension, sorted; hidden files left out).
//! Images keep their own sizes: the transforms cut and resize each one to the model's input
//! when a batch needs it. A training split that fits a memory budget can be held decoded
//! ([`cache`]), each image reduced to a maximum side first.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use rayon::prelude::*;
use vit_model::Interpolation;

use super::decode::{self, Decoder};
use super::pixmap::Pixmap;
use super::resize::resize;
use super::{ImageSet, Pixels};
use crate::config::OnBadImage;

/// Extensions listed as images (torchvision's `IMG_EXTENSIONS` that this build decodes, and
/// GIF), compared case-insensitively.
pub const EXTENSIONS: [&str; 6] = ["jpg", "jpeg", "png", "bmp", "webp", "gif"];

/// An image file and its class index.
pub type Labelled = (PathBuf, u32);

/// What a folder holds.
pub struct Listing {
    pub items: Vec<Labelled>,
    pub classes: Vec<String>,
    /// Files left out because their extension is not an image's (e.g. `README.txt`).
    pub ignored: usize,
}

fn is_image(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| EXTENSIONS.iter().any(|x| x.eq_ignore_ascii_case(e)))
}

fn hidden(name: &std::ffi::OsStr) -> bool {
    name.to_string_lossy().starts_with('.')
}

/// Lists `(path, class index)` under `root`, classes being the sorted subfolder names.
pub fn list(root: &Path) -> Result<Listing> {
    let mut classes: Vec<String> = std::fs::read_dir(root)
        .with_context(|| format!("cannot read image folder {}", root.display()))?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir() && !hidden(&e.file_name()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    classes.sort();
    if classes.is_empty() {
        bail!(
            "{}: no class subfolders (expected {}/<class>/<image>)",
            root.display(),
            root.display()
        );
    }
    let mut items = Vec::new();
    let mut ignored = 0;
    for (label, class) in classes.iter().enumerate() {
        let dir = root.join(class);
        let mut files = Vec::new();
        for e in std::fs::read_dir(&dir)
            .with_context(|| format!("cannot read class folder {}", dir.display()))?
        {
            let e = e.with_context(|| format!("cannot list {}", dir.display()))?;
            let p = e.path();
            if hidden(&e.file_name()) || !p.is_file() {
                continue;
            }
            if is_image(&p) {
                files.push(p);
            } else {
                ignored += 1;
            }
        }
        files.sort();
        items.extend(files.into_iter().map(|p| (p, label as u32)));
    }
    Ok(Listing {
        items,
        classes,
        ignored,
    })
}

/// A split as files (nothing decoded): `shape` is the model's input `[c, h, w]`, which the
/// transforms make of every image.
pub fn load(root: &Path, shape: [usize; 3]) -> Result<ImageSet> {
    let listing = list(root)?;
    if listing.items.is_empty() {
        bail!(
            "{}: no image files (extensions {}) in its class folders",
            root.display(),
            EXTENSIONS.join(", ")
        );
    }
    if listing.ignored > 0 {
        eprintln!(
            "note: {}: {} files without an image extension left out",
            root.display(),
            listing.ignored
        );
    }
    let (paths, labels): (Vec<PathBuf>, Vec<u32>) = listing.items.into_iter().unzip();
    ImageSet::from_files(paths, labels, shape, listing.classes)
}

/// `data.cache`: whether a training split is held decoded in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Cache {
    /// When the decoded images (each within `data.cache_max_side`) fit in `data.cache_mb`.
    #[default]
    Auto,
    /// Always (errors if they do not fit in `data.cache_mb`).
    On,
    /// Never: every image is read and decoded each time it is used.
    Off,
}

/// Splits of more files than this are not considered for the cache (reading their headers
/// to size it would take longer than it saves).
pub const CACHE_MAX_FILES: usize = 200_000;

/// The size a cached image is held at: within `max_side` (aspect kept; Pillow's rounding).
fn cached_size(w: usize, h: usize, max_side: usize) -> (usize, usize) {
    let long = w.max(h);
    if long <= max_side {
        return (w, h);
    }
    let s = max_side as f64 / long as f64;
    (
        ((w as f64 * s).round() as usize).max(1),
        ((h as f64 * s).round() as usize).max(1),
    )
}

/// What caching a split did.
pub struct CacheReport {
    pub cached: bool,
    pub bytes: u64,
    /// Files that could not be read (left out with `on_bad_image = "skip"`), with the reason.
    pub skipped: Vec<String>,
}

/// Decodes a split of files into memory as the cache policy says: every image converted to
/// the set's channels and, when larger, reduced to `max_side` (Pillow's antialiased bicubic).
/// Unreadable files stop the load, naming the file, or with `Skip` are left out and listed.
pub fn cache(
    set: ImageSet,
    policy: Cache,
    max_side: usize,
    budget_mb: usize,
    decoder: Decoder,
    on_bad: OnBadImage,
) -> Result<(ImageSet, CacheReport)> {
    let no = |set| {
        Ok((
            set,
            CacheReport {
                cached: false,
                bytes: 0,
                skipped: Vec::new(),
            },
        ))
    };
    let Pixels::Files { paths, cache: None } = &set.pixels else {
        return no(set);
    };
    if policy == Cache::Off || (policy == Cache::Auto && paths.len() > CACHE_MAX_FILES) {
        return no(set);
    }
    let c = set.shape[0];
    let budget = budget_mb as u64 * 1024 * 1024;
    // Headers only, to size the cache before decoding anything.
    let sizes: Vec<Option<(usize, usize)>> = paths
        .par_iter()
        .map(|p| {
            std::fs::read(p)
                .ok()
                .and_then(|b| decode::dimensions(&b).ok())
                .map(|(w, h)| cached_size(w, h, max_side))
        })
        .collect();
    let bytes: u64 = sizes
        .iter()
        .flatten()
        .map(|(w, h)| (w * h * c) as u64)
        .sum();
    if bytes > budget {
        if policy == Cache::On {
            bail!(
                "data.cache = \"on\": the {} images need {} MiB decoded (at most {max_side} px a \
                 side), more than data.cache_mb = {budget_mb}",
                paths.len(),
                bytes / (1024 * 1024)
            );
        }
        return no(set);
    }
    let decoded: Vec<Result<Pixmap>> = paths
        .par_iter()
        .map(|p| {
            let data = std::fs::read(p).with_context(|| format!("cannot read {}", p.display()))?;
            let (img, _) = decode::decode(&data, c, None, decoder)
                .with_context(|| format!("cannot decode image {}", p.display()))?;
            let (w, h) = cached_size(img.width, img.height, max_side);
            Ok(if (w, h) == (img.width, img.height) {
                img
            } else {
                resize(&img, w, h, Interpolation::Bicubic)
            })
        })
        .collect();
    let mut keep = Vec::new();
    let mut cached = Vec::new();
    let mut skipped = Vec::new();
    for (i, d) in decoded.into_iter().enumerate() {
        match d {
            Ok(img) => {
                keep.push(i);
                cached.push(Arc::new(img));
            }
            Err(e) if on_bad == OnBadImage::Skip => skipped.push(format!("{e:#}")),
            Err(e) => {
                return Err(e.context("set data.on_bad_image = \"skip\" to leave such files out"));
            }
        }
    }
    let bytes = cached.iter().map(|p| p.px.len() as u64).sum();
    let mut set = set.subset(&keep);
    if let Pixels::Files { cache, .. } = &mut set.pixels {
        *cache = Some(cached);
    }
    if set.is_empty() {
        bail!("no readable images");
    }
    Ok((
        set,
        CacheReport {
            cached: true,
            bytes,
            skipped,
        },
    ))
}
