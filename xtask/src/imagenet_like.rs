//! `cargo xtask data imagenet-like [--images N]`: an image folder shaped like ImageNet's, cut
//! from real photos that packages ship: scikit-image's sample photos (Debian
//! `python3-skimage`, fetched with `apt-get download`) and scikit-learn's `china.jpg` and
//! `flower.jpg` (its PyPI wheel, fetched with `pip download`). One class per photo; each image
//! a random crop of it (30-100% of the area, flipped at random, brightness within +-12%)
//! resized to ImageNet's sizes (short side 300-500 px, aspect 3:4 to 3:2) and written as a
//! JPEG of quality 90 with 4:2:0 chroma, as cameras and Flickr write them. Plus the odd files
//! ImageNet has: a CMYK JPEG, a grayscale JPEG, a PNG with alpha, a 16-bit PNG, and a
//! truncated JPEG. Deterministic: the same files every run (a fixed seed).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use image::imageops::FilterType;
use image::{ImageBuffer, Rgb, RgbImage, Rgba};
use jpeg_encoder::{ColorType, Encoder, SamplingFactor};

/// The source photos: (class name, file under skimage's data folder or sklearn's images).
const SKIMAGE: &[(&str, &str)] = &[
    ("astronaut", "astronaut.png"),
    ("cat", "chelsea.png"),
    ("coffee", "coffee.png"),
    ("galaxies", "hubble_deep_field.jpg"),
    ("tissue", "ihc.png"),
    ("motorcycle", "motorcycle_left.png"),
    ("retina", "retina.jpg"),
    ("rocket", "rocket.jpg"),
];
const SKLEARN: &[(&str, &str)] = &[("temple", "china.jpg"), ("flower", "flower.jpg")];
const SKLEARN_VERSION: &str = "1.7.2";

/// splitmix64: a small deterministic generator (the files must not change between runs).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }
}

fn run(cmd: &mut Command) -> Result<()> {
    let out = cmd
        .output()
        .with_context(|| format!("could not start {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Fetches the packages into `tmp` and returns the photos as (class, path).
fn sources(tmp: &Path, python: &Path) -> Result<Vec<(String, PathBuf)>> {
    let skimage = tmp.join("skimage");
    fs::create_dir_all(&skimage)?;
    let data = skimage.join("usr/lib/python3/dist-packages/skimage/data");
    if !data.exists() {
        println!("fetching Debian python3-skimage (apt-get download)");
        let download = || {
            run(Command::new("apt-get")
                .args(["download", "-qq", "python3-skimage"])
                .current_dir(&skimage))
        };
        if download().is_err() {
            let _ = run(Command::new("apt-get").args(["update", "-qq"]));
            download().context("apt-get download python3-skimage (the sample photos)")?;
        }
        let deb = fs::read_dir(&skimage)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| p.extension().is_some_and(|e| e == "deb"))
            .context("apt-get download left no .deb")?;
        run(Command::new("dpkg").arg("-x").arg(&deb).arg(&skimage))?;
    }
    let sklearn = tmp.join("sklearn");
    let images = sklearn.join("sklearn/datasets/images");
    if !images.exists() {
        println!(
            "fetching scikit-learn=={SKLEARN_VERSION}'s wheel (pip download), for china.jpg and flower.jpg"
        );
        fs::create_dir_all(&sklearn)?;
        run(Command::new(python)
            .args([
                "-m",
                "pip",
                "download",
                "--quiet",
                "--no-deps",
                "--only-binary",
                ":all:",
            ])
            .arg(format!("scikit-learn=={SKLEARN_VERSION}"))
            .arg("-d")
            .arg(&sklearn))?;
        let wheel = fs::read_dir(&sklearn)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| p.extension().is_some_and(|e| e == "whl"))
            .context("pip download left no wheel")?;
        run(Command::new(python)
            .args(["-m", "zipfile", "-e"])
            .arg(&wheel)
            .arg(&sklearn))?;
    }
    let mut out = Vec::new();
    for (class, file) in SKIMAGE {
        out.push((class.to_string(), data.join(file)));
    }
    for (class, file) in SKLEARN {
        out.push((class.to_string(), images.join(file)));
    }
    for (_, p) in &out {
        if !p.exists() {
            bail!("the package has no {}", p.display());
        }
    }
    Ok(out)
}

/// A random ImageNet-like view of `src`: (the image, its width, height).
fn cut(src: &RgbImage, rng: &mut Rng) -> RgbImage {
    let aspect = rng.range(0.75, 1.5); // width / height
    let short = 300 + (rng.unit() * 201.0) as u32; // 300..=500
    let (w, h) = if aspect >= 1.0 {
        ((short as f64 * aspect).round() as u32, short)
    } else {
        (short, (short as f64 / aspect).round() as u32)
    };
    let (sw, sh) = (src.width() as f64, src.height() as f64);
    // The largest crop of this aspect, then 30-100% of its area.
    let (mut cw, mut ch) = if sw / sh > aspect {
        (sh * aspect, sh)
    } else {
        (sw, sw / aspect)
    };
    let s = rng.range(0.3, 1.0).sqrt();
    cw = (cw * s).max(8.0);
    ch = (ch * s).max(8.0);
    let x = rng.range(0.0, sw - cw) as u32;
    let y = rng.range(0.0, sh - ch) as u32;
    let crop = image::imageops::crop_imm(src, x, y, cw as u32, ch as u32).to_image();
    let mut out = image::imageops::resize(&crop, w, h, FilterType::Lanczos3);
    if rng.unit() < 0.5 {
        image::imageops::flip_horizontal_in_place(&mut out);
    }
    let gain = rng.range(0.88, 1.12);
    for p in out.pixels_mut() {
        for c in p.0.iter_mut() {
            *c = (f64::from(*c) * gain).round().clamp(0.0, 255.0) as u8;
        }
    }
    out
}

fn jpeg(path: &Path, px: &[u8], w: u32, h: u32, color: ColorType) -> Result<()> {
    let mut e =
        Encoder::new_file(path, 90).with_context(|| format!("cannot create {}", path.display()))?;
    e.set_sampling_factor(SamplingFactor::R_4_2_0);
    e.encode(px, w as u16, h as u16, color)
        .with_context(|| format!("cannot write {}", path.display()))
}

/// The odd files ImageNet has, into `dir` (a class folder), made from `img`.
fn odd_files(dir: &Path, img: &RgbImage) -> Result<()> {
    let (w, h) = img.dimensions();
    // CMYK (ImageNet has 22 such JPEGs): K from the darkest channel, as print separations.
    let cmyk: Vec<u8> = img
        .pixels()
        .flat_map(|p| {
            let [r, g, b] = p.0.map(f64::from);
            let k = 255.0 - r.max(g).max(b);
            let d = (255.0 - k).max(1.0);
            let c = |v: f64| (255.0 * (255.0 - v - k) / d).round() as u8;
            [c(r), c(g), c(b), k.round() as u8]
        })
        .collect();
    jpeg(&dir.join("odd_cmyk.jpg"), &cmyk, w, h, ColorType::Cmyk)?;
    let gray = image::imageops::grayscale(img);
    jpeg(
        &dir.join("odd_gray.jpg"),
        gray.as_raw(),
        w,
        h,
        ColorType::Luma,
    )?;
    // The PNGs at a third of the size: lossless files are large, and size does not matter here.
    let small = image::imageops::resize(img, w / 3, h / 3, FilterType::Triangle);
    let (w, h) = small.dimensions();
    let img = &small;
    let alpha: ImageBuffer<Rgba<u8>, Vec<u8>> = ImageBuffer::from_fn(w, h, |x, y| {
        let p = img.get_pixel(x, y).0;
        Rgba([p[0], p[1], p[2], ((x * 255) / w.max(1)) as u8])
    });
    alpha.save(dir.join("odd_alpha.png"))?;
    let deep: ImageBuffer<Rgb<u16>, Vec<u16>> = ImageBuffer::from_fn(w, h, |x, y| {
        Rgb(img
            .get_pixel(x, y)
            .0
            .map(|v| u16::from(v) * 257 + (x % 7) as u16))
    });
    deep.save(dir.join("odd_16bit.png"))?;
    // Truncated: the first 60% of a JPEG.
    let (w, h) = img.dimensions();
    let whole = dir.join("odd_truncated.tmp.jpg");
    jpeg(&whole, img.as_raw(), w, h, ColorType::Rgb)?;
    let bytes = fs::read(&whole)?;
    fs::write(
        dir.join("odd_truncated.jpg"),
        &bytes[..bytes.len() * 6 / 10],
    )?;
    fs::remove_file(&whole)?;
    Ok(())
}

/// Writes `root/datasets/imagenet-like/{train,val}/<class>/*.jpg`: `images` training images
/// and a tenth as many for validation, split evenly over the ten classes.
pub fn imagenet_like(root: &Path, python: &Path, images: usize) -> Result<()> {
    let dest = root.join("datasets/imagenet-like");
    let tmp = root.join("datasets/.imagenet-like-sources");
    let photos = sources(&tmp, python)?;
    let per_class = images.div_ceil(photos.len()).max(1);
    let val_per_class = (per_class / 10).max(2);
    if dest.exists() {
        fs::remove_dir_all(&dest)?;
    }
    let mut rng = Rng(0x1a6e_7e75);
    let mut written = 0usize;
    for (ci, (class, path)) in photos.iter().enumerate() {
        let src = image::open(path)
            .with_context(|| format!("cannot decode {}", path.display()))?
            .to_rgb8();
        for (split, n) in [("train", per_class), ("val", val_per_class)] {
            let dir = dest.join(split).join(class);
            fs::create_dir_all(&dir)?;
            for i in 0..n {
                let img = cut(&src, &mut rng);
                let (w, h) = img.dimensions();
                jpeg(
                    &dir.join(format!("{class}_{i:05}.jpg")),
                    img.as_raw(),
                    w,
                    h,
                    ColorType::Rgb,
                )?;
                written += 1;
            }
            // The odd files, in one class of each split.
            if ci == 1 {
                odd_files(&dir, &cut(&src, &mut rng))?;
            }
        }
    }
    fs::write(
        dest.join("SOURCES.txt"),
        "Cut by `cargo xtask data imagenet-like` from scikit-image's sample photos (Debian \
         python3-skimage: astronaut, chelsea (cat), coffee, hubble_deep_field, ihc, \
         motorcycle_left, retina, rocket; public domain / CC0 / CC-BY as skimage/data/README.txt \
         lists) and scikit-learn's china.jpg and flower.jpg (scikit-learn's wheel; CC-BY). Each \
         class is one photo; the odd_* files in train/cat and val/cat are ImageNet's odd cases \
         (CMYK, grayscale, alpha, 16-bit, truncated).\n",
    )?;
    println!(
        "{written} JPEGs (+ 10 odd files) in {} ({} classes, {per_class} train / {val_per_class} val each)",
        dest.display(),
        photos.len()
    );
    Ok(())
}
