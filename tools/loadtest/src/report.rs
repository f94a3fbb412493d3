//! `wschat-loadtest report`: the JSON lines `matrix` wrote for several targets, side by side.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Context as _;

use crate::matrix::CellResult;

/// `report` arguments.
#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// JSON-lines files written by `matrix --json`.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// The target the ratios are taken against.
    #[arg(long)]
    pub baseline: String,
}

/// Prints the Markdown tables.
///
/// # Errors
/// When a file cannot be read or holds something else than `matrix` results.
pub fn run(args: &ReportArgs) -> anyhow::Result<()> {
    let mut results = Vec::new();
    for file in &args.files {
        let text =
            std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            results.push(serde_json::from_str::<CellResult>(line).context("a matrix result")?);
        }
    }
    print!("{}", table(&results, &args.baseline));
    Ok(())
}

/// Two Markdown tables: throughput, latency and loss per target and cell (with the ratio of throughput to the
/// baseline's), and CPU per delivered frame.
pub fn table(results: &[CellResult], baseline: &str) -> String {
    let mut cells: Vec<&str> = Vec::new();
    let mut targets: Vec<&str> = Vec::new();
    let mut by: BTreeMap<(&str, &str), &CellResult> = BTreeMap::new();
    for r in results {
        if !cells.contains(&r.cell.as_str()) {
            cells.push(&r.cell);
        }
        if !targets.contains(&r.target.as_str()) {
            targets.push(&r.target);
        }
        by.insert((r.target.as_str(), r.cell.as_str()), r);
    }
    let delivered = grid(
        "delivered msgs/s (p50 ms, lost)",
        &cells,
        &targets,
        |target, cell| match by.get(&(target, cell)) {
            None => "—".to_owned(),
            Some(r) => {
                let ratio = by
                    .get(&(baseline, cell))
                    .filter(|_| target != baseline)
                    .map(|b| format!(", **{:.1}×**", r.delivered_per_sec / b.delivered_per_sec))
                    .unwrap_or_default();
                format!(
                    "{:.0} ({:.1}, {}){ratio}",
                    r.delivered_per_sec, r.p50_ms, r.lost
                )
            }
        },
    );
    let cpu = grid(
        "CPU µs per delivered frame",
        &cells,
        &targets,
        |target, cell| match by.get(&(target, cell)) {
            Some(r) if !r.cpu_us_per_frame.is_empty() => r
                .cpu_us_per_frame
                .iter()
                .map(|(label, us)| format!("{label} {us:.1}"))
                .collect::<Vec<_>>()
                .join(", "),
            _ => "—".to_owned(),
        },
    );
    format!("{delivered}\n{cpu}")
}

/// One Markdown table: a row per target, a column per cell, `text` in each.
fn grid(
    title: &str,
    cells: &[&str],
    targets: &[&str],
    text: impl Fn(&str, &str) -> String,
) -> String {
    let mut out = format!(
        "| {title} | {} |\n|---|{}\n",
        cells.join(" | "),
        "---|".repeat(cells.len())
    );
    for target in targets {
        let row: Vec<String> = cells.iter().map(|cell| text(target, cell)).collect();
        out.push_str(&format!("| {target} | {} |\n", row.join(" | ")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(target: &str, cell: &str, rate: f64) -> CellResult {
        CellResult {
            target: target.into(),
            cell: cell.into(),
            delivered_per_sec: rate,
            p50_ms: 1.0,
            p99_ms: 2.0,
            delivered: 10,
            lost: 0,
            duplicates: 0,
            cross_room: 0,
            cpu_us_per_frame: vec![("ws-default".into(), 12.5)],
        }
    }

    #[test]
    fn the_table_puts_targets_side_by_side_with_ratios_to_the_baseline() {
        let table = table(
            &[
                result("channels", "1x2 K=4", 100.0),
                result("wschat", "1x2 K=4", 1500.0),
            ],
            "channels",
        );

        assert!(
            table.contains("| wschat | 1500 (1.0, 0), **15.0×** |"),
            "{table}"
        );
        assert!(table.contains("| channels | 100 (1.0, 0) |"), "{table}");
        assert!(table.contains("ws-default 12.5"), "{table}");
    }
}
