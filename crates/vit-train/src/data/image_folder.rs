//! ImageFolder: `root/<class>/<image>`, classes in sorted order, decoded with the `image` crate.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use image::DynamicImage;
use image::imageops::FilterType;

use super::ImageSet;
use crate::config::OnBadImage;

/// Opens and decodes an image file.
pub fn open(path: &Path) -> Result<DynamicImage> {
    image::open(path).with_context(|| format!("cannot decode image {}", path.display()))
}

/// Decodes one image file to `channels` (1: luma, 3: RGB; alpha dropped) at `[h, w]`, CHW u8.
pub fn decode(path: &Path, channels: usize, size: [usize; 2]) -> Result<Vec<u8>> {
    let img = open(path)?;
    let [h, w] = size;
    let img = if (img.height() as usize, img.width() as usize) != (h, w) {
        img.resize_exact(w as u32, h as u32, FilterType::Triangle)
    } else {
        img
    };
    to_chw(&img, channels)
}

/// An image's pixels as CHW u8 in `channels` (1: luma, 3: RGB; alpha dropped).
pub fn to_chw(img: &DynamicImage, channels: usize) -> Result<Vec<u8>> {
    Ok(match channels {
        1 => img.to_luma8().into_raw(),
        3 => {
            let rgb = img.to_rgb8().into_raw();
            let mut chw = vec![0u8; rgb.len()];
            let n = rgb.len() / 3;
            for (p, px) in rgb.chunks_exact(3).enumerate() {
                for c in 0..3 {
                    chw[c * n + p] = px[c];
                }
            }
            chw
        }
        c => bail!("images are read as 1 or 3 channels, the model has {c}"),
    })
}

/// An image file and its class index.
pub type Labelled = (PathBuf, u32);

/// Lists `(path, class index)` under `root`, classes being the sorted subfolder names.
pub fn list(root: &Path) -> Result<(Vec<Labelled>, Vec<String>)> {
    let mut classes: Vec<String> = std::fs::read_dir(root)
        .with_context(|| format!("cannot read image folder {}", root.display()))?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    classes.sort();
    if classes.is_empty() {
        bail!("{}: no class subfolders", root.display());
    }
    let mut items = Vec::new();
    for (label, class) in classes.iter().enumerate() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(root.join(class))?
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.is_file())
            .collect();
        files.sort();
        items.extend(files.into_iter().map(|p| (p, label as u32)));
    }
    Ok((items, classes))
}

/// Splits of at most this many images are decoded into memory; larger ones are decoded per
/// batch by the loader threads.
pub const IN_MEMORY_LIMIT: usize = 200_000;

/// Checks that a file is an image the `image` crate can read (header only: cheap).
fn check(path: &Path) -> Result<()> {
    image::ImageReader::open(path)
        .and_then(|r| r.with_guessed_format())
        .map_err(anyhow::Error::from)
        .and_then(|r| r.into_dimensions().map_err(anyhow::Error::from))
        .map(|_| ())
        .with_context(|| format!("cannot decode image {}", path.display()))
}

/// Loads a split at the model's size: decoded into memory when small, else checked (headers)
/// and decoded on use. Undecodable files stop the load, naming the file, or are skipped with a
/// warning (`on_bad`).
pub fn load(
    root: &Path,
    channels: usize,
    size: [usize; 2],
    on_bad: OnBadImage,
) -> Result<ImageSet> {
    let (items, classes) = list(root)?;
    let in_memory = items.len() <= IN_MEMORY_LIMIT;
    let mut images = Vec::new();
    let mut paths = Vec::new();
    let mut labels = Vec::new();
    for (path, label) in items {
        let result = if in_memory {
            decode(&path, channels, size).map(|px| images.extend(px))
        } else {
            check(&path)
        };
        match result {
            Ok(()) => {
                labels.push(label);
                paths.push(path);
            }
            Err(e) if on_bad == OnBadImage::Skip => {
                eprintln!("warning: skipping {}: {:#}", path.display(), e);
            }
            Err(e) => {
                return Err(e.context("set data.on_bad_image = \"skip\" to leave such files out"));
            }
        }
    }
    if labels.is_empty() {
        bail!("{}: no readable images", root.display());
    }
    let shape = [channels, size[0], size[1]];
    if in_memory {
        ImageSet::new(images, labels, shape, classes)
    } else {
        ImageSet::from_files(paths, labels, shape, classes)
    }
}
