//! `qa bench`: measures the figures named in BENCH.md, one module per area,
//! and writes `<area>.json` plus a `README.md` table into the output
//! directory. A figure that cannot be measured is reported with a null value
//! and the reason in its note instead of aborting the others.

mod applianced;
mod cluster;
mod firewall;
mod image;
mod management;

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// One figure, exactly as BENCH.md lays it out.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Metric {
    pub name: String,
    pub value: Option<f64>,
    pub unit: String,
    pub baseline: Option<f64>,
    pub ratio: Option<f64>,
    pub note: String,
}

impl Metric {
    /// A measured figure; the ratio is computed when there is a baseline.
    pub fn new(name: &str, unit: &str, value: f64, baseline: Option<f64>, note: String) -> Self {
        let ratio = baseline.filter(|b| *b > 0.0).map(|b| round(value / b));
        Metric {
            name: name.to_owned(),
            value: Some(round(value)),
            unit: unit.to_owned(),
            baseline: baseline.map(round),
            ratio,
            note,
        }
    }

    /// A figure that could not be measured, and why.
    pub fn failed(name: &str, unit: &str, why: &anyhow::Error) -> Self {
        eprintln!("bench: {name} failed: {why:#}");
        Metric {
            name: name.to_owned(),
            value: None,
            unit: unit.to_owned(),
            baseline: None,
            ratio: None,
            note: format!("not measured: {why:#}"),
        }
    }
}

/// One area's file, `<area>.json`.
#[derive(Serialize, Deserialize)]
struct AreaFile {
    metrics: Vec<Metric>,
}

/// An area: one JSON file of figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Area {
    Firewall,
    Applianced,
    Image,
    Cluster,
    Management,
}

impl Area {
    /// Every area, in the order they are measured.
    const ALL: [Area; 5] = [
        Area::Firewall,
        Area::Applianced,
        Area::Image,
        Area::Cluster,
        Area::Management,
    ];

    /// The area's file name without `.json`.
    fn name(self) -> &'static str {
        match self {
            Area::Firewall => "firewall",
            Area::Applianced => "applianced",
            Area::Image => "image",
            Area::Cluster => "cluster",
            Area::Management => "management",
        }
    }
}

/// Measures the areas in `only` (every area when empty) and writes their
/// files into `out`; the VM figures boot the image built in `image_out`.
/// The README table lists every area file present in `out`, so a run of
/// one area keeps the others' last figures.
pub fn run(out: &Path, runs: usize, only: &[Area], image_out: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    for area in Area::ALL {
        if !only.is_empty() && !only.contains(&area) {
            continue;
        }
        let metrics = match area {
            Area::Firewall => firewall::measure(runs),
            Area::Applianced => applianced::measure(),
            Area::Image => image::measure(image_out),
            Area::Cluster => cluster::measure(),
            Area::Management => management::measure(),
        };
        let path = out.join(format!("{}.json", area.name()));
        let json = serde_json::to_string_pretty(&AreaFile { metrics })?;
        std::fs::write(&path, json + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("bench: wrote {}", path.display());
    }
    let mut table = String::from(
        "# Benchmark figures\n\nWritten by `qa bench` (`make bench`); format and names in BENCH.md.\n\n\
         | name | value | unit | baseline | ratio | note |\n|---|---|---|---|---|---|\n",
    );
    for area in Area::ALL {
        let path = out.join(format!("{}.json", area.name()));
        let Ok(json) = std::fs::read_to_string(&path) else {
            continue;
        };
        let file: AreaFile =
            serde_json::from_str(&json).with_context(|| format!("reading {}", path.display()))?;
        for m in &file.metrics {
            let _ = writeln!(
                table,
                "| `{}` | {} | {} | {} | {} | {} |",
                m.name,
                cell(m.value),
                m.unit,
                cell(m.baseline),
                cell(m.ratio),
                m.note.replace('|', "\\|").replace('\n', " ")
            );
        }
    }
    let path = out.join("README.md");
    std::fs::write(&path, &table).with_context(|| format!("writing {}", path.display()))?;
    eprintln!("bench: wrote {}\n\n{table}", path.display());
    Ok(())
}

fn cell(v: Option<f64>) -> String {
    v.map_or_else(|| "–".to_owned(), |v| v.to_string())
}

/// Three decimals: more is noise on a shared machine.
pub fn round(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

/// The median of `samples` (None when empty).
pub fn median(samples: &[f64]) -> Option<f64> {
    let mut s: Vec<f64> = samples.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(s[n / 2]),
        _ => Some((s[n / 2 - 1] + s[n / 2]) / 2.0),
    }
}

/// A duration in milliseconds.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
