//! Data sets and the batch loader. Fixed-size sets (IDX, CIFAR) are held in memory as u8
//! pixels (CHW); image folders are files of any size, decoded, cut and resized per use by the
//! transforms (timm's pipeline), or held decoded when small ([`image_folder::cache`]).

pub mod cifar;
pub mod crop;
pub mod decode;
pub mod idx;
pub mod image_folder;
pub mod loader;
pub mod pixmap;
pub mod resize;
pub mod transforms;
#[cfg(feature = "turbojpeg")]
pub mod turbo;
pub mod webdataset;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use vit_model::ModelConfig;

use crate::config::{DataFormat, DataSection};

/// Where an image set's pixels are.
#[derive(Debug, Clone)]
pub enum Pixels {
    /// All images decoded at the model's size, `[c, h, w]` u8 each, concatenated (IDX, CIFAR).
    Memory(Vec<u8>),
    /// Image files of any size (an image folder), read and decoded when a batch needs them,
    /// or taken from `cache`, their decoded originals (one per path).
    Files {
        paths: Vec<PathBuf>,
        cache: Option<Vec<Arc<pixmap::Pixmap>>>,
    },
    /// Images inside WebDataset tar shards, read from there when a batch needs them;
    /// `shard_of[i]`: the shard (in the pattern's order) image `i` comes from.
    Shards {
        members: Vec<Member>,
        shard_of: Vec<u32>,
    },
}

/// An image stored as a member of a tar shard: where its bytes are.
#[derive(Debug, Clone)]
pub struct Member {
    pub shard: Arc<PathBuf>,
    /// Offset of the member's data in the shard, and its size.
    pub offset: u64,
    pub size: u64,
    /// The member's name in the shard (`KEY.jpg`).
    pub name: Box<str>,
}

impl Member {
    /// Reads the member's bytes (one positioned read; nothing else of the shard).
    pub fn read(&self) -> Result<Vec<u8>> {
        use std::os::unix::fs::FileExt;
        let f = std::fs::File::open(&*self.shard)
            .with_context(|| format!("cannot open shard {}", self.shard.display()))?;
        let mut buf = vec![0u8; self.size as usize];
        f.read_exact_at(&mut buf, self.offset)
            .with_context(|| format!("cannot read {}", self.path().display()))?;
        Ok(buf)
    }

    /// `SHARD.tar/KEY.jpg`: how messages name it.
    pub fn path(&self) -> PathBuf {
        self.shard.join(&*self.name)
    }
}

/// One image as the transforms receive it.
pub enum Source<'a> {
    /// A fixed-size image, CHW u8 of the set's shape.
    Fixed(&'a [u8]),
    /// A decoded original of any size, and its file.
    Decoded(&'a pixmap::Pixmap, &'a Path),
    /// An image file, to be read and decoded.
    File(&'a Path),
    /// An image inside a tar shard, to be read and decoded.
    Member(&'a Member),
}

/// A labelled image set of `[c, h, w]` images.
#[derive(Debug, Clone)]
pub struct ImageSet {
    pub pixels: Pixels,
    pub labels: Vec<u32>,
    /// `[channels, height, width]`.
    pub shape: [usize; 3],
    /// Class names, by label.
    pub classes: Vec<String>,
}

impl ImageSet {
    /// Checks sizes and labels.
    pub fn new(
        images: Vec<u8>,
        labels: Vec<u32>,
        shape: [usize; 3],
        classes: Vec<String>,
    ) -> Result<Self> {
        let per = shape.iter().product::<usize>();
        if images.len() != labels.len() * per {
            bail!(
                "{} labels but {} bytes of pixels ({} per image)",
                labels.len(),
                images.len(),
                per
            );
        }
        Self::with_pixels(Pixels::Memory(images), labels, shape, classes)
    }

    /// A set of image files, decoded on use; `shape` is what the transforms make of them.
    pub fn from_files(
        paths: Vec<PathBuf>,
        labels: Vec<u32>,
        shape: [usize; 3],
        classes: Vec<String>,
    ) -> Result<Self> {
        if paths.len() != labels.len() {
            bail!("{} files but {} labels", paths.len(), labels.len());
        }
        Self::with_pixels(Pixels::Files { paths, cache: None }, labels, shape, classes)
    }

    pub(crate) fn with_pixels(
        pixels: Pixels,
        labels: Vec<u32>,
        shape: [usize; 3],
        classes: Vec<String>,
    ) -> Result<Self> {
        if let Some(&bad) = labels.iter().find(|&&l| l as usize >= classes.len()) {
            bail!(
                "label {bad} out of range: the data has {} classes (model.num_classes / data.classes)",
                classes.len()
            );
        }
        Ok(Self {
            pixels,
            labels,
            shape,
            classes,
        })
    }

    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Image `i` as the transforms receive it.
    pub fn source(&self, i: usize) -> Source<'_> {
        let per = self.shape.iter().product::<usize>();
        match &self.pixels {
            Pixels::Memory(px) => Source::Fixed(&px[i * per..(i + 1) * per]),
            Pixels::Files {
                paths,
                cache: Some(c),
            } => Source::Decoded(&c[i], &paths[i]),
            Pixels::Files { paths, cache: None } => Source::File(&paths[i]),
            Pixels::Shards { members, .. } => Source::Member(&members[i]),
        }
    }

    /// Pixels of image `i` of a fixed-size set, CHW; `None` for image files, whose pixels
    /// only exist once a transform has made them.
    pub fn image(&self, i: usize) -> Option<&[u8]> {
        match self.source(i) {
            Source::Fixed(px) => Some(px),
            _ => None,
        }
    }

    /// The file of image `i`, for sets of files.
    pub fn path(&self, i: usize) -> Option<&Path> {
        match &self.pixels {
            Pixels::Files { paths, .. } => Some(&paths[i]),
            Pixels::Memory(_) | Pixels::Shards { .. } => None,
        }
    }

    /// The images at `indices`, in that order.
    pub fn subset(&self, indices: &[usize]) -> Self {
        let pixels = match &self.pixels {
            Pixels::Memory(px) => {
                let per = self.shape.iter().product::<usize>();
                let mut images = Vec::with_capacity(indices.len() * per);
                for &i in indices {
                    images.extend_from_slice(&px[i * per..(i + 1) * per]);
                }
                Pixels::Memory(images)
            }
            Pixels::Files { paths, cache } => Pixels::Files {
                paths: indices.iter().map(|&i| paths[i].clone()).collect(),
                cache: cache
                    .as_ref()
                    .map(|c| indices.iter().map(|&i| c[i].clone()).collect()),
            },
            Pixels::Shards { members, shard_of } => Pixels::Shards {
                members: indices.iter().map(|&i| members[i].clone()).collect(),
                shard_of: indices.iter().map(|&i| shard_of[i]).collect(),
            },
        };
        Self {
            pixels,
            labels: indices.iter().map(|&i| self.labels[i]).collect(),
            shape: self.shape,
            classes: self.classes.clone(),
        }
    }
}

/// Train, validation and test sets.
pub struct Splits {
    pub train: ImageSet,
    pub val: ImageSet,
    pub test: ImageSet,
    /// What holding the training images in memory did (image folders).
    pub cache: Option<image_folder::CacheReport>,
}

fn class_names(data: &DataSection, model: &ModelConfig) -> Result<Vec<String>> {
    match &data.classes {
        Some(c) if c.len() != model.num_classes() => bail!(
            "data.classes lists {} names but model.num_classes is {}",
            c.len(),
            model.num_classes()
        ),
        Some(c) => Ok(c.clone()),
        None => Ok((0..model.num_classes()).map(|i| i.to_string()).collect()),
    }
}

/// Loads one split by name (IDX prefix, image-folder subfolder, or `train`/`test` for CIFAR),
/// fitted to the model's input (see [`fit`]).
pub fn load_split(data: &DataSection, model: &ModelConfig, split: &str) -> Result<ImageSet> {
    fit(load_raw(data, model, split)?, data, model)
}

/// One split as stored.
fn load_raw(data: &DataSection, model: &ModelConfig, split: &str) -> Result<ImageSet> {
    let classes = class_names(data, model)?;
    Ok(match data.format {
        DataFormat::Idx => idx::load(&data.root, split, classes)?,
        DataFormat::Cifar10 | DataFormat::Cifar100 => {
            let train = split == data.train;
            cifar::load(
                &data.root,
                train,
                data.format == DataFormat::Cifar100,
                classes,
            )?
        }
        DataFormat::WebDataset => {
            let [h, w] = model.image_size();
            let set = webdataset::load(
                &data.root,
                split,
                [model.in_channels(), h, w],
                data.classes.clone(),
            )?;
            if set.classes.len() != model.num_classes() {
                bail!(
                    "the shards of `{split}` in {} have {} classes but model.num_classes is {}",
                    data.root.display(),
                    set.classes.len(),
                    model.num_classes()
                );
            }
            set
        }
        DataFormat::ImageFolder => {
            let [h, w] = model.image_size();
            let set = image_folder::load(&data.root.join(split), [model.in_channels(), h, w])?;
            if set.classes.len() != model.num_classes() {
                bail!(
                    "{} has {} class folders but model.num_classes is {}",
                    data.root.join(split).display(),
                    set.classes.len(),
                    model.num_classes()
                );
            }
            set
        }
    })
}

/// Checks that a set's images have the model's input shape; with `data.resize`, in-memory
/// images are resized (bicubic) and grayscale ones repeated to 3 channels to fit it, as a
/// pretrained RGB model at another resolution needs.
pub fn fit(set: ImageSet, data: &DataSection, model: &ModelConfig) -> Result<ImageSet> {
    let [h, w] = model.image_size();
    let want = [model.in_channels(), h, w];
    // Image files are made to the model's shape by the transforms.
    if set.shape == want || matches!(set.pixels, Pixels::Files { .. } | Pixels::Shards { .. }) {
        return Ok(set);
    }
    let convertible = set.shape[0] == want[0] || (set.shape[0] == 1 && want[0] == 3);
    if let (true, true, Pixels::Memory(px)) = (data.resize, convertible, &set.pixels) {
        let per = set.shape.iter().product::<usize>();
        let mut out = Vec::with_capacity(set.len() * want.iter().product::<usize>());
        for img in px.chunks_exact(per) {
            out.extend(resize_chw(img, set.shape, want));
        }
        return ImageSet::new(out, set.labels, want, set.classes);
    }
    bail!(
        "{}: images are {:?} (channels, height, width) but the model expects {want:?}; set \
         model.image_size / model.in_channels to match, or data.resize = true",
        data.root.display(),
        set.shape
    )
}

/// One CHW u8 image resized to `to` (bicubic), a single channel repeated when `to` has 3.
fn resize_chw(px: &[u8], from: [usize; 3], to: [usize; 3]) -> Vec<u8> {
    use image::imageops::{FilterType, resize};
    use image::{ImageBuffer, Luma};
    let [c, h, w] = from;
    let plane = h * w;
    let mut out = Vec::with_capacity(to.iter().product());
    let mut planes = Vec::with_capacity(c);
    for ch in 0..c {
        let buf: ImageBuffer<Luma<u8>, Vec<u8>> = ImageBuffer::from_raw(
            w as u32,
            h as u32,
            px[ch * plane..(ch + 1) * plane].to_vec(),
        )
        .expect("plane size");
        planes.push(resize(&buf, to[2] as u32, to[1] as u32, FilterType::CatmullRom).into_raw());
    }
    for ch in 0..to[0] {
        out.extend_from_slice(&planes[ch % c]);
    }
    out
}

/// Loads train, validation (separate split, a seeded fraction of train, or else the test set)
/// and test.
pub fn load_splits(data: &DataSection, model: &ModelConfig, seed: u64) -> Result<Splits> {
    let mut train = load_raw(data, model, &data.train)?;
    let test = load_raw(data, model, &data.test)?;
    let mut val = if let Some(v) = &data.val {
        load_raw(data, model, v)?
    } else if data.val_fraction > 0.0 {
        let mut idx: Vec<usize> = (0..train.len()).collect();
        idx.shuffle(&mut StdRng::seed_from_u64(seed.wrapping_add(0x5eed)));
        let n_val = ((train.len() as f64) * data.val_fraction).round() as usize;
        let val = train.subset(&idx[..n_val]);
        train = train.subset(&idx[n_val..]);
        val
    } else {
        test.clone()
    };
    if let Some(n) = data.train_per_class {
        // The first n images of each class, in file order.
        let mut seen = vec![0usize; train.classes.len().max(1)];
        let keep: Vec<usize> = (0..train.len())
            .filter(|&i| {
                let c = train.labels[i] as usize;
                let take = seen.get(c).is_some_and(|&s| s < n);
                if take {
                    seen[c] += 1;
                }
                take
            })
            .collect();
        train = train.subset(&keep);
    }
    if let Some(n) = data.train_limit {
        let n = n.min(train.len());
        train = train.subset(&(0..n).collect::<Vec<_>>());
    }
    if let Some(n) = data.val_limit {
        let n = n.min(val.len());
        val = val.subset(&(0..n).collect::<Vec<_>>());
    }
    // An empty split would train on nothing or report an accuracy over no images.
    for (name, set) in [("training", &train), ("validation", &val), ("test", &test)] {
        if set.is_empty() {
            bail!(
                "{}: the {name} split has no images (check data.train / data.val / data.test, \
                 data.val_fraction and the limits)",
                data.root.display()
            );
        }
    }
    let (train, cache) = if matches!(train.pixels, Pixels::Files { .. }) {
        let root = data.root.join(&data.train);
        let (set, report) = image_folder::cache(
            train,
            data.cache,
            data.cache_max_side,
            data.cache_mb,
            data.decoder,
            data.on_bad_image,
        )
        .with_context(|| format!("caching {}", root.display()))?;
        (set, Some(report))
    } else {
        (train, None)
    };
    Ok(Splits {
        train: fit(train, data, model)?,
        val: fit(val, data, model)?,
        test: fit(test, data, model)?,
        cache,
    })
}
