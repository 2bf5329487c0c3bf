//! Writing shards from an image folder (`vit-train shards`): the samples shuffled from a
//! seed (a shard then holds many classes, as a shuffle buffer needs), each as `KEY.EXT` (the
//! original file's bytes, or, above `max_side`, re-encoded as JPEG quality 90 after a
//! Pillow-exact bicubic reduction, as FFCV stores ImageNet), `KEY.cls` and `KEY.json` (its
//! path in the folder); shards of at most `shard_bytes` each, named `PREFIX-NNNNNN.tar`, with
//! `classes.txt` and `PREFIX.index.json` (samples and bytes per shard) beside them.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use super::{CLASSES_FILE, IndexEntry, ShardIndex};
use crate::data::decode::{Decoder, decode};
use crate::data::image_folder::list;
use crate::data::resize::resize;
use vit_model::Interpolation;

/// What to write.
pub struct WriteOptions {
    /// At most this many bytes per shard (a sample never spans two).
    pub shard_bytes: u64,
    /// Re-encode images whose longest side is above this (px).
    pub max_side: Option<usize>,
    /// Names: `PREFIX-000000.tar`, ...
    pub prefix: String,
    /// The samples' order is shuffled from this seed.
    pub seed: u64,
}

/// What was written.
pub struct Written {
    pub shards: Vec<PathBuf>,
    pub samples: usize,
    pub reencoded: usize,
    pub bytes: u64,
}

/// Parses a size like `1GB`, `500MB`, `64KiB`, `3e9` (bytes).
pub fn parse_size(s: &str) -> Result<u64> {
    let t = s.trim();
    let split = t.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .trim()
        .parse()
        .with_context(|| format!("`{s}`: expected a size such as 1GB or 500MB"))?;
    let mult = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "m" | "mb" => 1e6,
        "g" | "gb" => 1e9,
        "kib" => 1024.0,
        "mib" => 1024.0 * 1024.0,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        other => bail!("`{s}`: unknown unit `{other}` (B, KB, MB, GB, KiB, MiB, GiB)"),
    };
    if n.is_nan() || n <= 0.0 {
        bail!("`{s}`: the size must be positive");
    }
    Ok((n * mult) as u64)
}

/// The bytes to store for an image file: as it is, or reduced to `max_side` and re-encoded.
fn sample_bytes(path: &Path, max_side: Option<usize>) -> Result<(Vec<u8>, String, bool)> {
    let data = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    let Some(max) = max_side else {
        return Ok((data, ext, false));
    };
    let (w, h) = crate::data::decode::dimensions(&data)
        .with_context(|| format!("cannot decode image {}", path.display()))?;
    if w.max(h) <= max {
        return Ok((data, ext, false));
    }
    let (img, _) = decode(&data, 3, None, Decoder::Image)
        .with_context(|| format!("cannot decode image {}", path.display()))?;
    let s = max as f64 / w.max(h) as f64;
    let (nw, nh) = (
        ((w as f64 * s).round() as usize).max(1),
        ((h as f64 * s).round() as usize).max(1),
    );
    let small = resize(&img, nw, nh, Interpolation::Bicubic);
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90)
        .encode(
            &small.px,
            nw as u32,
            nh as u32,
            image::ExtendedColorType::Rgb8,
        )
        .with_context(|| format!("cannot encode {}", path.display()))?;
    Ok((out, "jpg".into(), true))
}

fn append(tar: &mut tar::Builder<BufWriter<File>>, name: &str, data: &[u8]) -> std::io::Result<()> {
    let mut header = tar::Header::new_ustar();
    header.set_size(data.len() as u64);
    header.set_mode(0o444);
    header.set_mtime(0);
    header.set_entry_type(tar::EntryType::Regular);
    tar.append_data(&mut header, name, data)
}

/// Writes the shards of the image folder `from` (`CLASS/IMAGE`) into `out`. Refuses to
/// overwrite: `out` must not hold this prefix's shards or index already.
pub fn write_shards(from: &Path, out: &Path, o: &WriteOptions) -> Result<Written> {
    let listing = list(from)?;
    if listing.items.is_empty() {
        bail!(
            "{} holds no images (expected CLASS/IMAGE files)",
            from.display()
        );
    }
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let index_path = out.join(format!("{}.index.json", o.prefix));
    let first = out.join(format!("{}-000000.tar", o.prefix));
    for p in [&index_path, &first] {
        if p.exists() {
            bail!(
                "{} exists: vit-train shards does not overwrite; choose another --out or --prefix",
                p.display()
            );
        }
    }
    let classes_path = out.join(CLASSES_FILE);
    let classes_text: String = listing.classes.iter().map(|c| format!("{c}\n")).collect();
    match std::fs::read_to_string(&classes_path) {
        Ok(existing) if existing != classes_text => bail!(
            "{} exists with other classes than {}'s; choose another --out",
            classes_path.display(),
            from.display()
        ),
        Ok(_) => {}
        Err(_) => std::fs::write(&classes_path, &classes_text)
            .with_context(|| format!("cannot write {}", classes_path.display()))?,
    }
    let mut items = listing.items.clone();
    items.shuffle(&mut StdRng::seed_from_u64(o.seed));
    let mut index = ShardIndex { shards: Vec::new() };
    let mut written = Written {
        shards: Vec::new(),
        samples: 0,
        reencoded: 0,
        bytes: 0,
    };
    let mut tar: Option<(tar::Builder<BufWriter<File>>, PathBuf, usize, u64)> = None;
    for (i, (path, label)) in items.iter().enumerate() {
        let (data, ext, reencoded) = sample_bytes(path, o.max_side)?;
        let rel = path
            .strip_prefix(from)
            .unwrap_or(path)
            .to_string_lossy()
            .into_owned();
        let meta = serde_json::json!({ "path": rel, "class": listing.classes[*label as usize] })
            .to_string();
        // Each member takes a 512-byte header and its data padded to 512.
        let size: u64 = [data.len(), label.to_string().len(), meta.len()]
            .iter()
            .map(|&n| 512 + (n as u64).div_ceil(512) * 512)
            .sum();
        if tar
            .as_ref()
            .is_some_and(|t| t.2 > 0 && t.3 + size > o.shard_bytes)
        {
            finish_shard(tar.take(), &mut index, &mut written)?;
        }
        if tar.is_none() {
            let p = out.join(format!("{}-{:06}.tar", o.prefix, written.shards.len()));
            let f = File::create_new(&p)
                .with_context(|| format!("cannot create {} (it must not exist)", p.display()))?;
            tar = Some((tar::Builder::new(BufWriter::new(f)), p, 0, 0));
        }
        let t = tar.as_mut().expect("opened above");
        let key = format!("{i:08}");
        let io = |e: std::io::Error| anyhow::anyhow!("cannot write {}: {e}", t.1.display());
        append(&mut t.0, &format!("{key}.{ext}"), &data).map_err(io)?;
        append(
            &mut t.0,
            &format!("{key}.cls"),
            label.to_string().as_bytes(),
        )
        .map_err(io)?;
        append(&mut t.0, &format!("{key}.json"), meta.as_bytes()).map_err(io)?;
        t.2 += 1;
        t.3 += size;
        written.samples += 1;
        written.reencoded += usize::from(reencoded);
    }
    finish_shard(tar.take(), &mut index, &mut written)?;
    std::fs::write(&index_path, serde_json::to_string_pretty(&index)?)
        .with_context(|| format!("cannot write {}", index_path.display()))?;
    Ok(written)
}

fn finish_shard(
    tar: Option<(tar::Builder<BufWriter<File>>, PathBuf, usize, u64)>,
    index: &mut ShardIndex,
    written: &mut Written,
) -> Result<()> {
    let Some((builder, path, samples, _)) = tar else {
        return Ok(());
    };
    let mut inner = builder
        .into_inner()
        .with_context(|| format!("cannot write {}", path.display()))?;
    inner
        .flush()
        .with_context(|| format!("cannot write {}", path.display()))?;
    let bytes = std::fs::metadata(&path)?.len();
    index.shards.push(IndexEntry {
        file: path
            .file_name()
            .expect("a file")
            .to_string_lossy()
            .into_owned(),
        samples,
        bytes,
    });
    written.bytes += bytes;
    written.shards.push(path);
    Ok(())
}
