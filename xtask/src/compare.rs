//! `cargo xtask compare`: the paper's Figure 5 (section 4.4) at this project's scale — BiT
//! ResNets, hybrids and ViTs, three sizes each, trained from scratch on Fashion-MNIST with one
//! recipe per family (the shipped `configs/fashion-mnist*.toml`), test top-1 against training
//! FLOPs.
//!
//! Every run is a `vit-train` run folder under `runs/compare/`; a finished one is read, not run
//! again, and an interrupted one (Ctrl-C: vit-train writes its `last` checkpoint) continues with
//! `--resume`, so the ladder can be stopped and restarted at any point. The sizes of a family
//! are ~3x apart in FLOPs per image and its recipe's schedule is the same for all three, so its
//! budgets are ~3x apart; the rungs run smallest first, so a partial ladder covers every family.
//!
//! Training FLOPs are `vit-train info --json`'s forward FLOPs per image (convolutions counted
//! exactly for the ResNet and the hybrid's stem) x 3 (forward + backward) x images seen.
//! Output: `docs/compare/figure5.json` (one object per finished run) and `figure5.png`, both
//! rewritten after each run, and a Markdown table on stdout.

use std::fs;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};
use plotters::prelude::*;
use serde_json::{Value, json};

use crate::python::check;

/// One run of the ladder: its family, its size's name, the family's recipe and the overrides
/// that make the size.
struct Rung {
    family: &'static str,
    size: &'static str,
    recipe: &'static str,
    sets: &'static [&'static str],
}

const VIT: &str = "configs/fashion-mnist.toml";
const HYBRID: &str = "configs/fashion-mnist-hybrid.toml";
const RESNET: &str = "configs/fashion-mnist-bit.toml";

/// The transformer sizes, shared by the ViTs and the hybrids (forward MFLOPs per image on
/// 28x28: ViT 5.1 / 15.8 / 50.1, hybrid 5.8 / 16.5 / 50.9); the middle one is the recipes' own.
const T_S: &[&str] = &["model.embed_dim=40", "model.depth=3", "model.num_heads=4"];
const T_M: &[&str] = &[];
const T_L: &[&str] = &["model.embed_dim=96", "model.depth=6", "model.num_heads=6"];
/// BiT sizes (5.7 / 13.6 / 39.8 MFLOPs): one bottleneck per stage, widths that keep every
/// GroupNorm at 32 groups; the middle one is the recipe's `bit_tiny`.
const R_S: &[&str] = &["model.channels=[128,128,256,512]"];
const R_M: &[&str] = &[];
const R_L: &[&str] = &["model.channels=[256,512,768,1536]"];

/// Smallest budgets first.
const LADDER: [Rung; 9] = [
    rung("resnet", "S", RESNET, R_S),
    rung("hybrid", "S", HYBRID, T_S),
    rung("vit", "S", VIT, T_S),
    rung("resnet", "M", RESNET, R_M),
    rung("hybrid", "M", HYBRID, T_M),
    rung("vit", "M", VIT, T_M),
    rung("resnet", "L", RESNET, R_L),
    rung("hybrid", "L", HYBRID, T_L),
    rung("vit", "L", VIT, T_L),
];

const fn rung(
    family: &'static str,
    size: &'static str,
    recipe: &'static str,
    sets: &'static [&'static str],
) -> Rung {
    Rung {
        family,
        size,
        recipe,
        sets,
    }
}

impl Rung {
    fn id(&self) -> String {
        format!("{}-{}", self.family, self.size.to_lowercase())
    }

    /// `--set` arguments: the size's and the run folder.
    fn set_args(&self) -> Vec<String> {
        let out = format!("output.dir=\"runs/compare/{}\"", self.id());
        self.sets
            .iter()
            .map(|s| s.to_string())
            .chain([out])
            .flat_map(|s| ["--set".to_string(), s])
            .collect()
    }
}

/// Runs the ladder (or the rungs named in `only`, e.g. `vit-s`), then writes the figure and its
/// data. `plot_only`: no training, only what the finished runs say.
pub fn compare(root: &Path, only: &[String], plot_only: bool) -> Result<()> {
    for id in only {
        if !LADDER.iter().any(|r| r.id() == *id) {
            let ids: Vec<String> = LADDER.iter().map(Rung::id).collect();
            bail!("unknown rung `{id}`; the ladder's are {}", ids.join(", "));
        }
    }
    if !root.join("datasets/fashion-mnist").is_dir() {
        bail!("datasets/fashion-mnist is missing: run `cargo xtask data fashion-mnist` first");
    }
    check(Command::new(env!("CARGO")).current_dir(root).args([
        "build",
        "--release",
        "-p",
        "vit-train",
    ]))
    .context("building vit-train")?;
    let bin = root.join("target/release/vit-train");
    let started = std::time::Instant::now();
    let mut results = Vec::new();
    for rung in LADDER.iter() {
        let dir = root.join("runs/compare").join(rung.id());
        let selected = only.is_empty() || only.contains(&rung.id());
        if selected && !plot_only && !finished(&dir) {
            let trained = train(root, &bin, rung, &dir);
            if trained.is_err() && dir.join("checkpoints/last").exists() {
                // Ctrl-C (or a kill): vit-train wrote its checkpoint; the next call continues.
                println!(
                    "compare: {} stopped before its end; `cargo xtask compare` continues it",
                    rung.id()
                );
                break;
            }
            trained?;
        }
        if finished(&dir) {
            results.push(result(root, &bin, rung, &dir)?);
            write_outputs(root, &results)?;
        }
    }
    println!(
        "compare: {} of {} runs finished ({:.1} min in this call)\n",
        results.len(),
        LADDER.len(),
        started.elapsed().as_secs_f64() / 60.0
    );
    println!("{}", table(&results));
    Ok(())
}

/// Whether `dir` holds a run that trained to its end.
fn finished(dir: &Path) -> bool {
    metrics(dir).is_ok_and(|lines| {
        lines
            .iter()
            .any(|l| l["split"] == "end" && l["ended"] == "finished")
    })
}

fn metrics(dir: &Path) -> Result<Vec<Value>> {
    let path = dir.join("metrics.jsonl");
    let text = fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str(l).with_context(|| format!("a line of {}: {l}", path.display()))
        })
        .collect()
}

/// Trains `rung` into `dir`: from its `last` checkpoint when there is one, else from scratch
/// (a folder without a checkpoint, left by a run stopped before its first, holds nothing to
/// continue and is the ladder's own: it is cleared).
fn train(root: &Path, bin: &Path, rung: &Rung, dir: &Path) -> Result<()> {
    let mut cmd = Command::new(bin);
    cmd.current_dir(root);
    if dir.join("checkpoints/last").exists() {
        println!("compare: {} continues from its last checkpoint", rung.id());
        cmd.arg("--resume").arg(dir);
    } else {
        if dir.exists() {
            println!(
                "compare: {} has no checkpoint yet; starting it again",
                rung.id()
            );
            fs::remove_dir_all(dir).with_context(|| format!("clearing {}", dir.display()))?;
        }
        println!(
            "compare: {} ({} {})",
            rung.id(),
            rung.recipe,
            rung.sets.join(" ")
        );
        cmd.args(["--config", rung.recipe]).args(rung.set_args());
    }
    check(&mut cmd).with_context(|| format!("training {}", rung.id()))
}

/// A finished run's row: `{family, model, params, train_flops, top1, wall_s}` and the size.
fn result(root: &Path, bin: &Path, rung: &Rung, dir: &Path) -> Result<Value> {
    let out = Command::new(bin)
        .current_dir(root)
        .args(["info", "--json", "--config", rung.recipe])
        .args(rung.set_args())
        .output()
        .context("running vit-train info")?;
    if !out.status.success() {
        bail!(
            "vit-train info for {} failed: {}",
            rung.id(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let info: Value = serde_json::from_slice(&out.stdout).context("vit-train info --json")?;
    let lines = metrics(dir)?;
    let end = lines
        .iter()
        .rev()
        .find(|l| l["split"] == "end")
        .context("no end line")?;
    let test = lines
        .iter()
        .rev()
        .find(|l| l["split"] == "test")
        .with_context(|| format!("{}: no test line in metrics.jsonl", dir.display()))?;
    let num = |v: &Value, key: &str| {
        v[key]
            .as_f64()
            .with_context(|| format!("{}: `{key}` is not a number", dir.display()))
    };
    let images = num(end, "step")? * num(&info, "images_per_step")?;
    Ok(json!({
        "family": rung.family,
        "model": format!("{} {}", rung.family, rung.size),
        "size": rung.size,
        "params": info["params"],
        "flops_per_image": info["flops_per_image"],
        "images_seen": images,
        "train_flops": 3.0 * num(&info, "flops_per_image")? * images,
        "top1": num(test, "top1")?,
        "wall_s": num(end, "time_s")?,
    }))
}

fn write_outputs(root: &Path, results: &[Value]) -> Result<()> {
    let dir = root.join("docs/compare");
    fs::create_dir_all(&dir)?;
    fs::write(
        dir.join("figure5.json"),
        serde_json::to_string_pretty(results)? + "\n",
    )?;
    figure(&dir.join("figure5.png"), results)
}

fn family_name(family: &str) -> &'static str {
    match family {
        "resnet" => "BiT ResNet",
        "hybrid" => "Hybrid",
        _ => "ViT",
    }
}

/// The Markdown table of the finished runs.
fn table(results: &[Value]) -> String {
    let mut s = String::from(
        "| family | size | parameters | forward MFLOPs / image | images seen | training FLOPs | \
         test top-1 | wall time |\n|---|---|---|---|---|---|---|---|\n",
    );
    for r in results {
        s += &format!(
            "| {} | {} | {} | {:.1} | {:.0} | {:.2e} | {:.2}% | {:.1} min |\n",
            family_name(r["family"].as_str().unwrap_or("")),
            r["size"].as_str().unwrap_or(""),
            r["params"],
            r["flops_per_image"].as_f64().unwrap_or(0.0) / 1e6,
            r["images_seen"].as_f64().unwrap_or(0.0),
            r["train_flops"].as_f64().unwrap_or(0.0),
            100.0 * r["top1"].as_f64().unwrap_or(0.0),
            r["wall_s"].as_f64().unwrap_or(0.0) / 60.0,
        );
    }
    s
}

/// Fonts looked for to label the axes (as vit-train's plot.rs).
const FONTS: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
];

fn register_font() -> bool {
    FONTS.iter().any(|p| {
        fs::read(p).ok().is_some_and(|bytes| {
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok()
        })
    })
}

/// Figure 5's style: test top-1 against training FLOPs on a log axis, a colour per family, a
/// marker per size, each family's sizes joined.
fn figure(path: &Path, results: &[Value]) -> Result<()> {
    let point = |r: &Value| {
        (
            r["train_flops"].as_f64().unwrap_or(1.0),
            100.0 * r["top1"].as_f64().unwrap_or(0.0),
        )
    };
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, 0.0f64, 100.0f64, 0.0f64);
    for (x, y) in results.iter().map(point) {
        (x0, x1, y0, y1) = (x0.min(x), x1.max(x), y0.min(y), y1.max(y));
    }
    if results.is_empty() {
        (x0, x1, y0, y1) = (1e12, 1e15, 80.0, 95.0);
    }
    let labels = register_font();
    let root = BitMapBackend::new(path, (900, 600)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut builder = ChartBuilder::on(&root);
    builder.margin(20);
    if labels {
        builder
            .caption(
                "Fashion-MNIST from scratch: test top-1 vs training compute",
                ("sans-serif", 22),
            )
            .x_label_area_size(45)
            .y_label_area_size(60);
    }
    let mut chart = builder.build_cartesian_2d(
        ((x0 / 1.6)..(x1 * 1.6)).log_scale(),
        (y0 - 0.5).floor()..(y1 + 0.5).ceil(),
    )?;
    if labels {
        chart
            .configure_mesh()
            .x_desc("training FLOPs (forward x 3 x images seen)")
            .y_desc("test top-1 (%)")
            .x_label_formatter(&|v| format!("{v:.0e}"))
            .draw()?;
    }
    for (family, color) in [
        ("resnet", BLUE),
        ("hybrid", RGBColor(230, 120, 0)),
        ("vit", RED),
    ] {
        let points: Vec<(f64, f64, String)> = results
            .iter()
            .filter(|r| r["family"] == family)
            .map(|r| {
                let (x, y) = point(r);
                (x, y, r["size"].as_str().unwrap_or("").to_string())
            })
            .collect();
        if points.is_empty() {
            continue;
        }
        chart
            .draw_series(LineSeries::new(
                points.iter().map(|p| (p.0, p.1)),
                color.stroke_width(2),
            ))?
            .label(family_name(family))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
        for (x, y, size) in &points {
            let (p, style) = ((*x, *y), color.filled());
            match size.as_str() {
                "S" => chart.draw_series([Circle::new(p, 6, style)])?,
                "M" => chart.draw_series([TriangleMarker::new(p, 8, style)])?,
                _ => chart.draw_series([
                    EmptyElement::at(p) + Rectangle::new([(-6, -6), (6, 6)], style)
                ])?,
            };
        }
    }
    if labels {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE)
            .border_style(BLACK)
            .draw()?;
        // Which marker is which size.
        root.draw(&Text::new(
            "sizes: circle S, triangle M, square L",
            (100, 50),
            ("sans-serif", 15),
        ))?;
    }
    root.present()
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_is_finished_only_when_it_trained_to_its_end() {
        let dir = std::env::temp_dir().join(format!("xtask-compare-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        assert!(!finished(&dir), "no metrics.jsonl");
        let stopped = r#"{"split":"end","step":40,"time_s":3.0,"ended":"stopped (--stop-after)"}"#;
        fs::write(dir.join("metrics.jsonl"), format!("{stopped}\n")).unwrap();
        assert!(!finished(&dir), "stopped by --stop-after");
        let done = r#"{"split":"end","step":80,"time_s":6.0,"ended":"finished"}"#;
        fs::write(dir.join("metrics.jsonl"), format!("{stopped}\n{done}\n")).unwrap();
        assert!(finished(&dir));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_ladder_runs_each_size_of_every_family_before_the_next() {
        let ids: Vec<String> = LADDER.iter().map(Rung::id).collect();
        assert_eq!(ids.len(), 9);
        for (i, size) in ["s", "m", "l"].iter().enumerate() {
            let mut fams: Vec<&str> = ids[3 * i..3 * i + 3]
                .iter()
                .map(|id| id.strip_suffix(&format!("-{size}")).unwrap())
                .collect();
            fams.sort();
            assert_eq!(fams, ["hybrid", "resnet", "vit"]);
        }
        let sets = LADDER[0].set_args();
        assert_eq!(sets.last().unwrap(), "output.dir=\"runs/compare/resnet-s\"");
        assert!(sets.chunks(2).all(|p| p[0] == "--set"));
    }
}
