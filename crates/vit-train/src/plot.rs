//! `curves.png` beside `metrics.jsonl`: training loss, validation loss and accuracy by step.

use std::path::Path;

use anyhow::{Context, Result};
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

use crate::report::read_metrics;

/// Fonts looked for to label the axes (plotters draws text with a TTF it is given).
const FONTS: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/Library/Fonts/Arial.ttf",
    "C:\\Windows\\Fonts\\arial.ttf",
];

/// Registers a system TTF as `sans-serif`; false when none is found (figures go unlabelled).
pub fn register_font() -> bool {
    use std::sync::OnceLock;
    static OK: OnceLock<bool> = OnceLock::new();
    *OK.get_or_init(|| {
        FONTS.iter().any(|p| {
            std::fs::read(p).ok().is_some_and(|bytes| {
                let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok()
            })
        })
    })
}

type Area<'a> = DrawingArea<BitMapBackend<'a>, plotters::coord::Shift>;
type Panel<'a, 'b> =
    ChartContext<'a, BitMapBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// One chart over `0..max_step`, with caption and axes when a font is available.
fn panel<'a, 'b>(
    area: &'a Area<'b>,
    caption: &str,
    labels: bool,
    max_step: f64,
    y: std::ops::Range<f64>,
) -> Result<Panel<'a, 'b>> {
    let mut builder = ChartBuilder::on(area);
    builder.margin(15);
    if labels {
        builder
            .caption(caption, ("sans-serif", 20))
            .x_label_area_size(35)
            .y_label_area_size(50);
    }
    let mut chart = builder.build_cartesian_2d(0.0..max_step, y)?;
    if labels {
        chart.configure_mesh().x_desc("step").draw()?;
    }
    Ok(chart)
}

/// Draws `curves.png` in a run folder from its `metrics.jsonl`; `averaged`: the run validated
/// the moving average of its weights (`train.ema_decay`), which the legend then says.
pub fn plot_run(dir: &Path, averaged: bool) -> Result<()> {
    let validated = if averaged {
        "validation (EMA weights)"
    } else {
        "validation"
    };
    let lines = read_metrics(dir)?;
    let series =
        |split: &str, f: &dyn Fn(&crate::report::MetricLine) -> Option<f64>| -> Vec<(f64, f64)> {
            lines
                .iter()
                .filter(|l| l.split == split)
                .filter_map(|l| f(l).map(|v| (l.step as f64, v)))
                .collect()
        };
    let train_loss = series("train", &|l| Some(l.loss));
    let val_loss = series("val", &|l| Some(l.loss));
    let val_acc = series("val", &|l| l.top1.map(|a| 100.0 * a));
    if train_loss.is_empty() {
        return Ok(());
    }
    let labels = register_font();
    let path = dir.join("curves.png");
    let root = BitMapBackend::new(&path, (1200, 500)).into_drawing_area();
    root.fill(&WHITE)?;
    let (left, right) = root.split_horizontally(600);
    let max_step = train_loss.last().map(|p| p.0).unwrap_or(1.0).max(1.0);

    let max_loss = train_loss
        .iter()
        .chain(&val_loss)
        .map(|p| p.1)
        .fold(0.0f64, f64::max)
        .max(1e-3);
    let mut chart = panel(&left, "loss", labels, max_step, 0.0..max_loss * 1.05)?;
    chart
        .draw_series(LineSeries::new(train_loss, &BLUE))?
        .label("train")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE));
    chart
        .draw_series(LineSeries::new(val_loss.clone(), RED.stroke_width(2)))?
        .label(validated)
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED));
    if labels {
        chart
            .configure_series_labels()
            .background_style(WHITE)
            .border_style(BLACK)
            .draw()?;
    }

    let lo = val_acc
        .iter()
        .map(|p| p.1)
        .fold(100.0f64, f64::min)
        .min(90.0);
    let mut chart = panel(
        &right,
        &format!("{validated} top-1 (%)"),
        labels,
        max_step,
        (lo - 1.0).max(0.0)..100.0,
    )?;
    chart.draw_series(LineSeries::new(val_acc.clone(), GREEN.stroke_width(2)))?;
    chart.draw_series(val_acc.iter().map(|&p| Circle::new(p, 3, GREEN.filled())))?;
    root.present()
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}
