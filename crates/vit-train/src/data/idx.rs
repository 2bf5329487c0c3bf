//! IDX files of the MNIST family (raw or gzip), as LeCun's and Zalando's sites publish them.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use flate2::read::GzDecoder;

use super::ImageSet;

/// Reads a file, gunzipping it when it starts with the gzip magic.
pub fn read_maybe_gz(path: &Path) -> Result<Vec<u8>> {
    let raw = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        GzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .with_context(|| format!("{}: corrupt or truncated gzip data", path.display()))?;
        Ok(out)
    } else {
        Ok(raw)
    }
}

fn header(bytes: &[u8], path: &Path, magic: u32, dims: usize) -> Result<Vec<usize>> {
    let need = 4 + 4 * dims;
    if bytes.len() < need {
        bail!(
            "{}: truncated IDX header ({} bytes, need {need})",
            path.display(),
            bytes.len()
        );
    }
    let word = |i: usize| u32::from_be_bytes(bytes[4 * i..4 * i + 4].try_into().unwrap());
    if word(0) != magic {
        bail!(
            "{}: not an IDX file of the expected kind (magic 0x{:08x}, expected 0x{magic:08x})",
            path.display(),
            word(0)
        );
    }
    Ok((1..=dims).map(|i| word(i) as usize).collect())
}

/// Parses an IDX image file (magic 0x803): `[n, rows, cols]` u8 pixels.
pub fn parse_images(bytes: &[u8], path: &Path) -> Result<(usize, usize, usize, Vec<u8>)> {
    let dims = header(bytes, path, 0x0803, 3)?;
    let (n, rows, cols) = (dims[0], dims[1], dims[2]);
    let body = &bytes[16..];
    // The header's counts are untrusted: their product may not fit a usize.
    let want = n.checked_mul(rows).and_then(|v| v.checked_mul(cols));
    if want != Some(body.len()) {
        let want = want.map_or("more than usize::MAX".into(), |w| w.to_string());
        bail!(
            "{}: header says {n} images of {rows}x{cols} ({want} bytes) but {} bytes follow",
            path.display(),
            body.len()
        );
    }
    Ok((n, rows, cols, body.to_vec()))
}

/// Parses an IDX label file (magic 0x801).
pub fn parse_labels(bytes: &[u8], path: &Path) -> Result<Vec<u32>> {
    let dims = header(bytes, path, 0x0801, 1)?;
    let body = &bytes[8..];
    if body.len() != dims[0] {
        bail!(
            "{}: header says {} labels but {} bytes follow",
            path.display(),
            dims[0],
            body.len()
        );
    }
    Ok(body.iter().map(|&b| u32::from(b)).collect())
}

/// The file of a split, with or without `.gz`.
fn find(root: &Path, name: &str) -> Result<PathBuf> {
    let plain = root.join(name);
    let gz = root.join(format!("{name}.gz"));
    if plain.exists() {
        Ok(plain)
    } else if gz.exists() {
        Ok(gz)
    } else {
        bail!(
            "missing data file: neither {} nor {} exists (fetch it with `cargo xtask data ...`, \
             see datasets/README.md)",
            plain.display(),
            gz.display()
        )
    }
}

/// Loads `{split}-images-idx3-ubyte[.gz]` and `{split}-labels-idx1-ubyte[.gz]` from `root`.
pub fn load(root: &Path, split: &str, classes: Vec<String>) -> Result<ImageSet> {
    let ipath = find(root, &format!("{split}-images-idx3-ubyte"))?;
    let lpath = find(root, &format!("{split}-labels-idx1-ubyte"))?;
    let (n, h, w, images) = parse_images(&read_maybe_gz(&ipath)?, &ipath)?;
    let labels = parse_labels(&read_maybe_gz(&lpath)?, &lpath)?;
    if labels.len() != n {
        bail!(
            "{} has {n} images but {} has {} labels",
            ipath.display(),
            lpath.display(),
            labels.len()
        );
    }
    ImageSet::new(images, labels, [1, h, w], classes)
        .with_context(|| format!("{}", lpath.display()))
}
