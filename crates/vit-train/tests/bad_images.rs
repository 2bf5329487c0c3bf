//! Bad image files at scale: each is an error naming the file, or with
//! `data.on_bad_image = "skip"` is left out and counted; none panics or allocates what its
//! header claims.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use vit_train::config::Decoder;
use vit_train::data::decode::{MAX_PIXELS, decode};

fn photo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/imagenet/val/rocket/rocket_00000.jpg")
}

fn odd(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/imagenet/val/cat")
        .join(name)
}

fn decoders() -> Vec<Decoder> {
    let mut d = vec![Decoder::Image];
    if Decoder::TURBOJPEG_BUILT {
        d.push(Decoder::Turbojpeg);
    }
    d
}

/// A JPEG whose frame header declares `w` x `h` (its SOF0 patched), the rest of it a real
/// photo's.
fn jpeg_declaring(w: u16, h: u16) -> Vec<u8> {
    let mut b = std::fs::read(photo()).unwrap();
    let sof = (0..b.len() - 1)
        .find(|&i| b[i] == 0xff && (b[i + 1] == 0xc0 || b[i + 1] == 0xc2))
        .unwrap();
    b[sof + 5..sof + 7].copy_from_slice(&h.to_be_bytes());
    b[sof + 7..sof + 9].copy_from_slice(&w.to_be_bytes());
    b
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut c = 0xffff_ffffu32;
    for &b in bytes {
        c ^= u32::from(b);
        for _ in 0..8 {
            c = if c & 1 != 0 {
                (c >> 1) ^ 0xedb8_8320
            } else {
                c >> 1
            };
        }
    }
    !c
}

/// A PNG whose IHDR declares 100,000 x 100,000 RGB pixels (valid CRC), with one tiny IDAT.
fn png_bomb() -> Vec<u8> {
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut chunk = |kind: &[u8], data: &[u8]| {
        out.extend((data.len() as u32).to_be_bytes());
        let mut body = kind.to_vec();
        body.extend(data);
        out.extend(&body);
        out.extend(crc32(&body).to_be_bytes());
    };
    let mut ihdr = Vec::new();
    ihdr.extend(100_000u32.to_be_bytes());
    ihdr.extend(100_000u32.to_be_bytes());
    ihdr.extend([8, 2, 0, 0, 0]);
    chunk(b"IHDR", &ihdr);
    chunk(b"IDAT", &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01]);
    chunk(b"IEND", &[]);
    out
}

/// A palette PNG of four known colours.
fn palette_png(path: &Path) -> Vec<[u8; 3]> {
    let colours = [[255, 0, 0], [0, 255, 0], [10, 20, 30], [200, 100, 50]];
    let f = std::fs::File::create(path).unwrap();
    let mut e = png::Encoder::new(std::io::BufWriter::new(f), 4, 2);
    e.set_color(png::ColorType::Indexed);
    e.set_depth(png::BitDepth::Eight);
    e.set_palette(colours.concat());
    e.write_header()
        .unwrap()
        .write_image_data(&[0, 1, 2, 3, 3, 2, 1, 0])
        .unwrap();
    [0, 1, 2, 3, 3, 2, 1, 0]
        .iter()
        .map(|&i| colours[i])
        .collect()
}

#[test]
fn odd_files_decode_as_pillow_reads_them_and_bad_ones_are_errors() {
    let dir = temp_dir("odd-files");
    let palette = dir.join("palette.png");
    let want = palette_png(&palette);
    let truncated = std::fs::read(odd("odd_truncated.jpg")).unwrap_or_else(|_| {
        let b = std::fs::read(photo()).unwrap();
        b[..b.len() * 6 / 10].to_vec()
    });
    for decoder in decoders() {
        // Palette: expanded to its colours.
        let (img, _) = decode(&std::fs::read(&palette).unwrap(), 3, None, decoder).unwrap();
        assert_eq!(img.px, want.concat(), "{decoder:?}");
        // CMYK, grayscale, 16-bit, alpha: decoded, 3 channels.
        for name in [
            "odd_cmyk.jpg",
            "odd_gray.jpg",
            "odd_16bit.png",
            "odd_alpha.png",
        ] {
            let (img, _) = decode(&std::fs::read(odd(name)).unwrap(), 3, None, decoder).unwrap();
            assert_eq!(img.channels, 3);
            assert!(img.px.iter().any(|&v| v > 0), "{name}");
        }
        // Truncated (cut anywhere), empty, random bytes: errors, as Pillow's.
        let whole = std::fs::read(photo()).unwrap();
        let mut cases = vec![
            ("truncated", truncated.clone()),
            ("empty", Vec::new()),
            ("garbage", b"\xff\xd8\xffnot a jpeg at all".to_vec()),
        ];
        for frac in [0.05, 0.3, 0.5, 0.9, 0.99] {
            cases.push((
                "cut",
                whole[..(whole.len() as f64 * frac) as usize].to_vec(),
            ));
        }
        for (what, bytes) in cases {
            match decode(&bytes, 3, None, decoder) {
                Ok((img, _)) => panic!(
                    "{what} ({} bytes, {decoder:?}) decoded to {}x{}",
                    bytes.len(),
                    img.width,
                    img.height
                ),
                Err(e) => assert!(!format!("{e:#}").is_empty()),
            }
        }
        // Extraneous bytes before the end marker: libjpeg warns, Pillow decodes it; so do we.
        let eoi = whole.len() - 2;
        assert_eq!(&whole[eoi..], &[0xff, 0xd9]);
        let mut extra = whole[..eoi].to_vec();
        extra.extend([0x55u8; 40]);
        extra.extend([0xff, 0xd9]);
        let (img, _) = decode(&extra, 3, None, decoder).unwrap();
        let (full, _) = decode(&whole, 3, None, decoder).unwrap();
        assert!(img.px == full.px, "{decoder:?}");
        // Decompression bombs: refused from the header, before any pixel buffer exists.
        for (what, bytes) in [
            ("jpeg", jpeg_declaring(60_000, 60_000)),
            ("png", png_bomb()),
        ] {
            let Err(err) = decode(&bytes, 3, None, decoder) else {
                panic!("{what} decoded");
            };
            let err = format!("{err:#}");
            assert!(
                err.contains(&format!("limit of {MAX_PIXELS}")),
                "{what} ({decoder:?}): {err}"
            );
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A training run over a folder with every kind of bad file: with the default policy it
/// stops naming the first, with `skip` it trains and counts them (a file deleted after the
/// listing too).
#[test]
fn a_run_stops_on_bad_files_or_skips_and_counts_them() {
    let dir = temp_dir("bad-run");
    let data = dir.join("data");
    for class in ["a", "b"] {
        let d = data.join("train").join(class);
        std::fs::create_dir_all(&d).unwrap();
        for i in 0..6 {
            std::fs::copy(photo(), d.join(format!("{i}.jpg"))).unwrap();
        }
        std::fs::create_dir_all(data.join("val").join(class)).unwrap();
        std::fs::copy(photo(), data.join("val").join(class).join("0.jpg")).unwrap();
    }
    let bad = data.join("train/a");
    let b = std::fs::read(photo()).unwrap();
    std::fs::write(bad.join("truncated.jpg"), &b[..b.len() / 2]).unwrap();
    std::fs::write(bad.join("empty.jpg"), b"").unwrap();
    std::fs::write(bad.join("bomb.jpg"), jpeg_declaring(60_000, 60_000)).unwrap();
    std::fs::write(bad.join("bomb.png"), png_bomb()).unwrap();
    let recipe = dir.join("recipe.toml");
    let write = |policy: &str, out: &str, cache: &str| {
        std::fs::write(
            &recipe,
            format!(
                r#"
[model]
image_size = [32, 32]
patch_size = [16, 16]
num_classes = 2
embed_dim = 16
depth = 1
num_heads = 2
[data]
format = "image-folder"
root = "{}"
test = "val"
mean = [0.5, 0.5, 0.5]
std = [0.5, 0.5, 0.5]
on_bad_image = "{policy}"
cache = "{cache}"
[data.augment]
rrc_scale = [0.08, 1.0]
hflip = true
[train]
epochs = 2
batch_size = 4
[output]
dir = "{}"
"#,
                data.display(),
                dir.join(out).display()
            ),
        )
        .unwrap();
    };
    for cache in ["off", "on"] {
        write("error", &format!("stop-{cache}"), cache);
        let (ok, _, err) = vit_train(&["--config", recipe.to_str().unwrap()]);
        assert!(!ok, "{cache}");
        assert!(
            (err.contains("truncated.jpg") || err.contains("empty.jpg") || err.contains("bomb."))
                && err.contains("on_bad_image")
                && !err.contains("panicked"),
            "{cache}: {err}"
        );
    }
    // A file deleted after the listing (read when its batch is made: cache off).
    write("skip", "skip-off", "off");
    let listed = vit_train::data::image_folder::list(&data.join("train")).unwrap();
    assert_eq!(listed.items.len(), 16);
    let (ok, out, err) = vit_train(&["--config", recipe.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(
        out.contains("4 unreadable image files skipped"),
        "{out}\n{err}"
    );
    for name in ["truncated.jpg", "empty.jpg", "bomb.jpg", "bomb.png"] {
        assert!(
            out.contains(name) || err.contains(name),
            "{name}: {out}\n{err}"
        );
    }
    write("skip", "skip-on", "on");
    let (ok, out, err) = vit_train(&["--config", recipe.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(
        out.contains("4 unreadable image files skipped"),
        "{out}\n{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A file that disappears between the listing and its batch is an error naming it.
#[test]
fn a_file_deleted_after_listing_is_named() {
    use std::sync::Arc;
    use vit_train::data::loader::{Loader, Mode, plan};
    use vit_train::data::transforms::Transform;
    let dir = temp_dir("deleted");
    let class = dir.join("a");
    std::fs::create_dir_all(&class).unwrap();
    for i in 0..4 {
        std::fs::copy(photo(), class.join(format!("{i}.jpg"))).unwrap();
    }
    let set = Arc::new(vit_train::data::image_folder::load(&dir, [3, 32, 32]).unwrap());
    std::fs::remove_file(class.join("2.jpg")).unwrap();
    let data: vit_train::config::DataSection = toml::from_str(&format!(
        "format = \"image-folder\"\nroot = {:?}\nmean = [0.5, 0.5, 0.5]\nstd = [0.5, 0.5, 0.5]\n",
        dir.display().to_string()
    ))
    .unwrap();
    let mut t = Transform::evaluation(&data);
    let batches = plan(set.len(), 4, Mode::Eval, false);
    let err = Loader::new(
        set.clone(),
        batches.clone(),
        0,
        Mode::Eval,
        Arc::new(t.clone()),
        1,
    )
    .next()
    .unwrap()
    .err()
    .unwrap();
    let msg = format!("{err:#}");
    assert!(
        msg.contains("2.jpg") && msg.contains("cannot read"),
        "{msg}"
    );
    t.on_bad_image = vit_train::config::OnBadImage::Skip;
    let batch = Loader::new(set, batches, 0, Mode::Eval, Arc::new(t), 1)
        .next()
        .unwrap()
        .unwrap();
    assert_eq!((batch.len(), batch.skipped.len()), (3, 1));
    std::fs::remove_dir_all(&dir).unwrap();
}
