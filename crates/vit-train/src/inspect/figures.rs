//! The figures of `inspect`, drawn with plotters: titled, with axes or colour bars.

use std::path::Path;

use anyhow::{Context, Result};
use plotters::prelude::*;

use crate::plot::register_font;

type Area<'a> = DrawingArea<BitMapBackend<'a>, plotters::coord::Shift>;

/// matplotlib's Viridis at 0, 0.1, ..., 1.
const VIRIDIS: [(u8, u8, u8); 11] = [
    (68, 1, 84),
    (72, 36, 117),
    (65, 68, 135),
    (53, 95, 141),
    (42, 120, 142),
    (33, 145, 140),
    (34, 168, 132),
    (68, 191, 112),
    (122, 209, 81),
    (189, 223, 38),
    (253, 231, 37),
];

/// Viridis at `v` in [0, 1] (linear between the table's colours).
fn viridis(v: f64) -> RGBColor {
    let x = v.clamp(0.0, 1.0) * 10.0;
    let i = (x.floor() as usize).min(9);
    let t = x - i as f64;
    let (a, b) = (VIRIDIS[i], VIRIDIS[i + 1]);
    let mix = |p: u8, q: u8| (f64::from(p) * (1.0 - t) + f64::from(q) * t).round() as u8;
    RGBColor(mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}

/// A title along the top of `area` (when a font is available).
fn title(area: &Area, text: &str, labels: bool) -> Result<()> {
    if labels {
        area.draw(&Text::new(
            text.to_string(),
            (10, 8),
            ("sans-serif", 18).into_font().color(&BLACK),
        ))?;
    }
    Ok(())
}

/// A vertical colour bar from `lo` (bottom) to `hi` at `(x, y)`, `h` pixels tall, labelled.
fn colour_bar(
    area: &Area,
    (x, y): (i32, i32),
    h: i32,
    lo: f64,
    hi: f64,
    labels: bool,
) -> Result<()> {
    for i in 0..h {
        let v = 1.0 - f64::from(i) / f64::from(h - 1).max(1.0);
        area.draw(&Rectangle::new(
            [(x, y + i), (x + 16, y + i + 1)],
            viridis(v).filled(),
        ))?;
    }
    area.draw(&Rectangle::new([(x, y), (x + 16, y + h)], BLACK))?;
    if labels {
        let style = ("sans-serif", 13).into_font().color(&BLACK);
        for (v, yy) in [(hi, y), ((lo + hi) / 2.0, y + h / 2), (lo, y + h)] {
            area.draw(&Text::new(
                format!("{v:.2}"),
                (x + 20, yy - 6),
                style.clone(),
            ))?;
        }
    }
    Ok(())
}

/// Draws an `[h, w]` RGB image (row-major) scaled by `scale` with its top-left at `at`.
fn blit(
    area: &Area,
    rgb: &[[u8; 3]],
    [h, w]: [usize; 2],
    at: (i32, i32),
    scale: f64,
) -> Result<()> {
    let (oh, ow) = ((h as f64 * scale) as i32, (w as f64 * scale) as i32);
    for y in 0..oh {
        for x in 0..ow {
            let sy = ((f64::from(y) / scale) as usize).min(h - 1);
            let sx = ((f64::from(x) / scale) as usize).min(w - 1);
            let [r, g, b] = rgb[sy * w + sx];
            area.draw_pixel((at.0 + x, at.1 + y), &RGBColor(r, g, b))?;
        }
    }
    area.draw(&Rectangle::new([at, (at.0 + ow, at.1 + oh)], BLACK))?;
    Ok(())
}

/// A map over a grid in Viridis (values in [0, 1]).
fn heat(map: &[f64]) -> Vec<[u8; 3]> {
    map.iter()
        .map(|&v| {
            let c = viridis(v);
            [c.0, c.1, c.2]
        })
        .collect()
}

/// The map resampled (bilinear, cell centres) to `[h, w]`.
fn upsample(map: &[f64], grid: [usize; 2], [h, w]: [usize; 2]) -> Vec<f64> {
    let at = |r: usize, c: usize| map[r.min(grid[0] - 1) * grid[1] + c.min(grid[1] - 1)];
    let mut out = Vec::with_capacity(h * w);
    for y in 0..h {
        let fy = ((y as f64 + 0.5) * grid[0] as f64 / h as f64 - 0.5).max(0.0);
        let (y0, ty) = (fy.floor() as usize, fy - fy.floor());
        for x in 0..w {
            let fx = ((x as f64 + 0.5) * grid[1] as f64 / w as f64 - 0.5).max(0.0);
            let (x0, tx) = (fx.floor() as usize, fx - fx.floor());
            let top = at(y0, x0) * (1.0 - tx) + at(y0, x0 + 1) * tx;
            let bottom = at(y0 + 1, x0) * (1.0 - tx) + at(y0 + 1, x0 + 1) * tx;
            out.push(top * (1.0 - ty) + bottom * ty);
        }
    }
    out
}

fn save(root: Area, path: &Path) -> Result<()> {
    root.present()
        .with_context(|| format!("cannot write {}", path.display()))
}

/// `{stem}_rollout.png` (input, map, overlay) and `{stem}_rollout_map.png` (the map alone).
pub fn rollout(
    dir: &Path,
    stem: &str,
    input: &[[u8; 3]],
    size: [usize; 2],
    map: &[f64],
    grid: [usize; 2],
    what: &str,
) -> Result<()> {
    let labels = register_font();
    let side = 256.0;
    let scale = side / size[0].max(size[1]) as f64;
    let up = upsample(map, grid, size);
    let overlay: Vec<[u8; 3]> = input
        .iter()
        .zip(heat(&up))
        .map(|(p, h)| std::array::from_fn(|i| ((u16::from(p[i]) + u16::from(h[i])) / 2) as u8))
        .collect();

    let path = dir.join(format!("{stem}_rollout.png"));
    let root = BitMapBackend::new(&path, (900, 330)).into_drawing_area();
    root.fill(&WHITE)?;
    title(&root, &format!("attention rollout, {what}: {stem}"), labels)?;
    let small = ("sans-serif", 14).into_font().color(&BLACK);
    for (i, (name, img)) in [
        ("input", input.to_vec()),
        ("rollout", heat(&up)),
        ("overlay", overlay),
    ]
    .into_iter()
    .enumerate()
    {
        let x = 10 + i as i32 * 276;
        blit(&root, &img, size, (x, 50), scale)?;
        if labels {
            root.draw(&Text::new(name, (x, 32), small.clone()))?;
        }
    }
    colour_bar(&root, (838, 50), 256, 0.0, 1.0, labels)?;
    save(root, &path)?;

    let path = dir.join(format!("{stem}_rollout_map.png"));
    let root = BitMapBackend::new(&path, (340, 310)).into_drawing_area();
    root.fill(&WHITE)?;
    title(
        &root,
        &format!("rollout map ({}x{} patches)", grid[0], grid[1]),
        labels,
    )?;
    let cell = side / grid[0].max(grid[1]) as f64;
    blit(&root, &heat(map), grid, (10, 40), cell)?;
    colour_bar(&root, (290, 40), 256, 0.0, 1.0, labels)?;
    save(root, &path)
}

/// `{stem}_heads.png`: the last layer's class-token attention of each head over the patches,
/// each divided by its maximum.
pub fn heads(
    dir: &Path,
    stem: &str,
    maps: &[Vec<f64>],
    grid: [usize; 2],
    what: &str,
) -> Result<()> {
    let labels = register_font();
    let cols = maps.len().min(6);
    let rows = maps.len().div_ceil(cols.max(1));
    let tile = 150;
    let path = dir.join(format!("{stem}_heads.png"));
    let (w, h) = ((cols as u32 * 170 + 70).max(560), rows as u32 * 175 + 45);
    let root = BitMapBackend::new(&path, (w, h)).into_drawing_area();
    root.fill(&WHITE)?;
    title(
        &root,
        &format!("last layer, {what}, per head: {stem}"),
        labels,
    )?;
    let small = ("sans-serif", 13).into_font().color(&BLACK);
    let cell = f64::from(tile) / grid[0].max(grid[1]) as f64;
    for (i, map) in maps.iter().enumerate() {
        let (x, y) = (10 + (i % cols) as i32 * 170, 45 + (i / cols) as i32 * 175);
        let max = map
            .iter()
            .copied()
            .fold(f64::MIN, f64::max)
            .max(f64::MIN_POSITIVE);
        let norm: Vec<f64> = map.iter().map(|v| v / max).collect();
        blit(&root, &heat(&norm), grid, (x, y + 18), cell)?;
        if labels {
            root.draw(&Text::new(format!("head {i}"), (x, y), small.clone()))?;
        }
    }
    colour_bar(&root, (w as i32 - 55, 63), tile, 0.0, 1.0, labels)?;
    save(root, &path)
}

/// `attention_distance.png`: every head's mean attention distance against its layer.
pub fn attention_distance(dir: &Path, distances: &[Vec<f64>], images: usize) -> Result<()> {
    let labels = register_font();
    let path = dir.join("attention_distance.png");
    let root = BitMapBackend::new(&path, (640, 480)).into_drawing_area();
    root.fill(&WHITE)?;
    let layers = distances.len();
    let max = distances
        .iter()
        .flatten()
        .copied()
        .fold(0.0f64, f64::max)
        .max(1.0);
    let mut builder = ChartBuilder::on(&root);
    builder.margin(15);
    if labels {
        builder
            .caption(
                format!(
                    "mean attention distance ({images} image{})",
                    if images == 1 { "" } else { "s" }
                ),
                ("sans-serif", 20),
            )
            .x_label_area_size(40)
            .y_label_area_size(55);
    }
    let mut chart = builder.build_cartesian_2d(0.5..layers as f64 + 0.5, 0.0..max * 1.1)?;
    if labels {
        chart
            .configure_mesh()
            .x_desc("network depth (layer)")
            .y_desc("mean attention distance (pixels)")
            .x_labels(layers.min(24))
            .x_label_formatter(&|x| format!("{x:.0}"))
            .draw()?;
    }
    let heads = distances.first().map_or(0, Vec::len);
    for h in 0..heads {
        let colour = viridis(if heads > 1 {
            h as f64 / (heads - 1) as f64
        } else {
            0.5
        });
        chart.draw_series(
            distances
                .iter()
                .enumerate()
                .map(|(l, d)| Circle::new(((l + 1) as f64, d[h]), 4, colour.filled())),
        )?;
    }
    save(root, &path)
}

/// `posemb_similarity.png`: for each patch position (tile), the cosine similarity of its
/// embedding to every position's (cells), tiled as the grid.
pub fn posemb_similarity(dir: &Path, sim: &[f64], grid: [usize; 2]) -> Result<()> {
    let labels = register_font();
    let n = grid[0] * grid[1];
    let path = dir.join("posemb_similarity.png");
    let cell = (560 / (grid[0].max(grid[1]) * (grid[0].max(grid[1]) + 1))).max(1) as i32;
    let tile_w = cell * grid[1] as i32 + cell;
    let tile_h = cell * grid[0] as i32 + cell;
    let (w, h) = (tile_w * grid[1] as i32 + 140, tile_h * grid[0] as i32 + 90);
    let root = BitMapBackend::new(&path, (w as u32, h as u32)).into_drawing_area();
    root.fill(&WHITE)?;
    title(&root, "position embedding similarity (cosine)", labels)?;
    let (x0, y0) = (50, 55);
    for p in 0..n {
        let (tr, tc) = (p / grid[1], p % grid[1]);
        for q in 0..n {
            let (r, c) = (q / grid[1], q % grid[1]);
            let x = x0 + tc as i32 * tile_w + c as i32 * cell;
            let y = y0 + tr as i32 * tile_h + r as i32 * cell;
            let v = (sim[p * n + q] + 1.0) / 2.0;
            root.draw(&Rectangle::new(
                [(x, y), (x + cell, y + cell)],
                viridis(v).filled(),
            ))?;
        }
    }
    if labels {
        let small = ("sans-serif", 14).into_font().color(&BLACK);
        root.draw(&Text::new(
            "input patch column",
            (x0 + tile_w * grid[1] as i32 / 2 - 60, 35),
            small.clone(),
        ))?;
        root.draw(&Text::new(
            "input patch row",
            (12, y0 + tile_h * grid[0] as i32 / 2 + 50),
            small.transform(FontTransform::Rotate270),
        ))?;
    }
    colour_bar(
        &root,
        (w - 75, y0),
        (tile_h * grid[0] as i32).min(400),
        -1.0,
        1.0,
        labels,
    )?;
    save(root, &path)
}

/// `embedding_filters.png`: principal components as `[C, ph, pw]` tiles, each min-max scaled
/// (grey for one channel).
pub fn embedding_filters(dir: &Path, components: &[Vec<f64>], shape: [usize; 3]) -> Result<()> {
    let what = format!(
        "embedding filters: first {} principal components",
        components.len()
    );
    filter_grid(
        &dir.join("embedding_filters.png"),
        &what,
        components,
        shape,
        7,
    )
}

/// `root_filters.png`: a ResNet's root-convolution filters as `[C, kh, kw]` tiles, each
/// min-max scaled (so as the weight standardisation leaves them).
pub fn root_filters(dir: &Path, filters: &[Vec<f64>], shape: [usize; 3], of: usize) -> Result<()> {
    let what = format!(
        "root convolution: {} of {of} filters ({}x{})",
        filters.len(),
        shape[1],
        shape[2]
    );
    filter_grid(&dir.join("root_filters.png"), &what, filters, shape, 8)
}

/// Tiles of `[C, ph, pw]` values in `cols` columns under a title.
fn filter_grid(
    path: &Path,
    what: &str,
    tiles: &[Vec<f64>],
    [c, ph, pw]: [usize; 3],
    cols: usize,
) -> Result<()> {
    let labels = register_font();
    let rows = tiles.len().div_ceil(cols);
    let scale = (64 / ph.max(pw)).max(2) as f64;
    let tile = (ph.max(pw) as f64 * scale) as i32;
    let (w, h) = (
        cols as i32 * (tile + 12) + 20,
        rows as i32 * (tile + 12) + 50,
    );
    let root = BitMapBackend::new(path, (w as u32, h as u32)).into_drawing_area();
    root.fill(&WHITE)?;
    title(&root, what, labels)?;
    for (i, comp) in tiles.iter().enumerate() {
        let lo = comp.iter().copied().fold(f64::MAX, f64::min);
        let hi = comp.iter().copied().fold(f64::MIN, f64::max);
        let span = (hi - lo).max(f64::MIN_POSITIVE);
        let px: Vec<[u8; 3]> = (0..ph * pw)
            .map(|p| {
                let v = |ch: usize| (255.0 * (comp[ch * ph * pw + p] - lo) / span).round() as u8;
                if c >= 3 {
                    [v(0), v(1), v(2)]
                } else {
                    [v(0); 3]
                }
            })
            .collect();
        let (x, y) = (
            10 + (i % cols) as i32 * (tile + 12),
            40 + (i / cols) as i32 * (tile + 12),
        );
        blit(&root, &px, [ph, pw], (x, y), scale)?;
    }
    save(root, path)
}
