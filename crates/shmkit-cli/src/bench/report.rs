//! The results: tables, JSON, the SVG plot, and the performance targets
//! checked against them.

use std::path::Path;

use serde::Serialize;

use super::stats::{Latency, Throughput};
use super::system::Machine;
use super::transport::BenchResult;
use crate::size;

#[derive(Debug, Serialize)]
pub struct Settings {
    pub sizes: Vec<usize>,
    pub rounds: u32,
    pub batch_ms: f64,
    pub pinned: bool,
    pub quick: bool,
}

#[derive(Debug, Serialize)]
pub struct LatencyRow {
    pub transport: &'static str,
    pub label: &'static str,
    pub size: usize,
    #[serde(flatten)]
    pub ns: Latency,
    /// p50 over the floor's p50 at the same size.
    pub p50_over_floor: Option<f64>,
}

impl LatencyRow {
    pub fn new(transport: &'static str, label: &'static str, size: usize, ns: Latency) -> Self {
        LatencyRow {
            transport,
            label,
            size,
            ns,
            p50_over_floor: None,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct ThroughputRow {
    pub transport: &'static str,
    pub label: &'static str,
    pub size: usize,
    #[serde(flatten)]
    pub rate: Throughput,
    /// Bytes per second over single-thread memcpy's at the same size.
    pub over_memcpy: Option<f64>,
    /// Bytes per second over the raw shared-memory ring's at the same size.
    pub over_floor: Option<f64>,
}

impl ThroughputRow {
    pub fn new(
        transport: &'static str,
        label: &'static str,
        size: usize,
        rate: Throughput,
    ) -> Self {
        ThroughputRow {
            transport,
            label,
            size,
            rate,
            over_memcpy: None,
            over_floor: None,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct FanOut {
    pub subscribers: usize,
    pub subscribers_busy_poll: bool,
    pub size: usize,
    pub publisher_cpu_ns_per_message: f64,
}

/// One performance target, as measured in this run.
#[derive(Debug, Serialize)]
pub struct Target {
    pub goal: String,
    pub measured: String,
    pub met: bool,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub machine: Machine,
    pub settings: Settings,
    pub latency_ns: Vec<LatencyRow>,
    pub throughput: Vec<ThroughputRow>,
    pub broadcast_fan_out: Vec<FanOut>,
    /// CPU time of a blocking receiver with nothing to receive, ms per second.
    pub idle_receiver_cpu_ms_per_s: Option<f64>,
    pub targets: Vec<Target>,
    pub notes: Vec<String>,
}

impl Report {
    pub fn build(
        machine: Machine,
        settings: Settings,
        mut latency: Vec<LatencyRow>,
        mut throughput: Vec<ThroughputRow>,
        fan_out: Vec<FanOut>,
        idle: Option<f64>,
        notes: Vec<String>,
    ) -> Report {
        let floor = |size: usize, rows: &[LatencyRow]| {
            rows.iter()
                .find(|r| r.transport == "floor" && r.size == size)
                .map(|r| r.ns.p50 as f64)
        };
        for i in 0..latency.len() {
            let base = floor(latency[i].size, &latency);
            latency[i].p50_over_floor = base.map(|b| latency[i].ns.p50 as f64 / b.max(1.0));
        }
        for i in 0..throughput.len() {
            let size = throughput[i].size;
            let base = throughput
                .iter()
                .find(|r| r.transport == "memcpy" && r.size == size)
                .map(|r| r.rate.gigabytes_per_sec);
            throughput[i].over_memcpy = base.map(|b| throughput[i].rate.gigabytes_per_sec / b);
            let floor = throughput
                .iter()
                .find(|r| r.transport == "floor" && r.size == size)
                .map(|r| r.rate.gigabytes_per_sec);
            throughput[i].over_floor = floor.map(|f| throughput[i].rate.gigabytes_per_sec / f);
        }
        let mut report = Report {
            machine,
            settings,
            latency_ns: latency,
            throughput,
            broadcast_fan_out: fan_out,
            idle_receiver_cpu_ms_per_s: idle,
            targets: Vec::new(),
            notes,
        };
        report.targets = report.check_targets();
        report
    }

    fn p50(&self, transport: &str, size: usize) -> Option<f64> {
        self.latency_ns
            .iter()
            .find(|r| r.transport == transport && r.size == size)
            .map(|r| r.ns.p50 as f64)
    }

    fn rate(&self, transport: &str, size: usize) -> Option<f64> {
        self.throughput
            .iter()
            .find(|r| r.transport == transport && r.size == size)
            .map(|r| r.rate.gigabytes_per_sec)
    }

    /// The targets of the performance work, each where this run measured it.
    fn check_targets(&self) -> Vec<Target> {
        let mut t = Vec::new();
        let mut add = |goal: &str, measured: String, met: bool| {
            t.push(Target {
                goal: goal.to_owned(),
                measured,
                met,
            })
        };
        if let (Some(q), Some(f)) = (self.p50("queue-busy", 64), self.p50("floor", 64)) {
            add(
                "64 B busy-poll round trip <= 1.3x the raw ping-pong",
                format!("{:.2}x ({q:.0} ns / {f:.0} ns, p50)", q / f),
                q <= 1.3 * f,
            );
        }
        for &size in &self.settings.sizes {
            if let (Some(z), Some(s)) = (self.p50("zero-copy", size), self.p50("queue-busy", size))
            {
                let goal = if size >= 4096 {
                    format!(
                        "zero-copy round trip faster than send at {}",
                        size::show(size as u64)
                    )
                } else {
                    format!(
                        "zero-copy round trip as fast as send at {}",
                        size::show(size as u64)
                    )
                };
                // "As fast": within 3 %, the run-to-run noise of a p50 here.
                let met = if size >= 4096 { z < s } else { z <= s * 1.03 };
                add(&goal, format!("{z:.0} ns vs {s:.0} ns (p50)"), met);
            }
            if let (Some(z), Some(s)) =
                (self.rate("zero-copy", size), self.rate("queue-busy", size))
            {
                add(
                    &format!(
                        "zero-copy streaming at least as fast as send at {}",
                        size::show(size as u64)
                    ),
                    format!("{z:.2} vs {s:.2} GB/s"),
                    z >= s * 0.97,
                );
            }
        }
        let mib = 1 << 20;
        if let (Some(q), Some(m)) = (self.rate("queue-busy", mib), self.rate("memcpy", mib)) {
            let floor = self
                .rate("floor", mib)
                .map_or(String::new(), |f| format!("; the raw ring: {:.2}x", f / m));
            add(
                "1 MiB messages at >= 0.9x memcpy bandwidth",
                format!("{:.2}x ({q:.2} / {m:.2} GB/s{floor})", q / m),
                q >= 0.9 * m,
            );
        }
        if let (Some(b), Some(p)) = (self.p50("queue-blocking", 64), self.p50("queue-busy", 64)) {
            add(
                "64 B blocking round trip <= 2x busy-poll",
                format!("{:.2}x ({b:.0} / {p:.0} ns, p50)", b / p),
                b <= 2.0 * p,
            );
        }
        // The async and wait-set targets: both against the default blocking
        // receiver, which spins 20 µs before it sleeps (async futures spin as
        // long); the rows without spin say what waking a sleeper costs in the
        // same run.
        let unspun = |size: usize| {
            let b = self.p50("queue-sleep", size);
            let a = self.p50("queue-async-sleep", size);
            match (a, b) {
                (Some(a), Some(b)) => format!("; without spin: async {a:.0}, blocking {b:.0} ns"),
                (None, Some(b)) => format!("; blocking without spin {b:.0} ns"),
                (Some(a), None) => format!("; async without spin {a:.0} ns"),
                (None, None) => String::new(),
            }
        };
        for size in [64, 1024] {
            if let (Some(a), Some(b)) = (
                self.p50("queue-async", size),
                self.p50("queue-blocking", size),
            ) {
                add(
                    &format!(
                        "{} async round trip (tokio, both sides) <= 2x blocking",
                        size::show(size as u64)
                    ),
                    format!("{:.2}x ({a:.0} / {b:.0} ns, p50{})", a / b, unspun(size)),
                    a <= 2.0 * b,
                );
            }
        }
        for &size in &self.settings.sizes {
            if let (Some(w), Some(b)) =
                (self.p50("waitset", size), self.p50("queue-blocking", size))
            {
                add(
                    &format!(
                        "{} round trip through WaitSets of 500 channels <= 2x one blocking receiver",
                        size::show(size as u64)
                    ),
                    format!("{:.2}x ({w:.0} / {b:.0} ns, p50{})", w / b, unspun(size)),
                    w <= 2.0 * b,
                );
            }
        }
        if let Some(idle) = self.idle_receiver_cpu_ms_per_s {
            add(
                "an idle blocking receiver uses no CPU",
                format!("{idle:.1} ms CPU per second"),
                idle < 5.0,
            );
        }
        let fan = |busy: bool, k: usize| {
            self.broadcast_fan_out
                .iter()
                .find(|f| f.subscribers == k && f.subscribers_busy_poll == busy)
                .map(|f| f.publisher_cpu_ns_per_message)
        };
        if let (Some(one), Some(many)) = (fan(true, 1), fan(true, 16)) {
            add(
                "broadcast publisher cost independent of subscribers (busy-poll, 1 vs 16)",
                format!("{one:.0} vs {many:.0} ns CPU per publish"),
                many <= one * 1.5,
            );
        }
        t
    }

    pub fn print(&self) {
        let m = &self.machine;
        println!(
            "shmkit {} bench on {} ({} CPUs, {} {}), {}; {} rounds of {:.0} ms batches, interleaved",
            m.shmkit,
            m.cpu,
            m.cores,
            m.os,
            m.kernel,
            if self.settings.pinned { "pinned to CPUs 0 and 1" } else { "not pinned" },
            self.settings.rounds,
            self.settings.batch_ms,
        );
        for note in &self.notes {
            println!("note: {note}");
        }
        println!("\nRound trip, two processes (ns; x floor = p50 over the floor's p50)");
        println!(
            "{:<46} {:>8} {:>9} {:>9} {:>9} {:>10} {:>8}",
            "transport", "size", "p50", "p99", "p99.9", "max", "x floor"
        );
        for size in &self.settings.sizes {
            for r in self.latency_ns.iter().filter(|r| r.size == *size) {
                println!(
                    "{:<46} {:>8} {:>9} {:>9} {:>9} {:>10} {:>8}",
                    r.label,
                    size::show(r.size as u64),
                    r.ns.p50,
                    r.ns.p99,
                    r.ns.p999,
                    r.ns.max,
                    r.p50_over_floor.map_or("-".into(), |x| format!("{x:.2}")),
                )
            }
        }
        println!(
            "\nThroughput, one way, two processes (x memcpy = over one thread's memcpy, \
             x floor = over the raw ring's)"
        );
        println!(
            "{:<46} {:>8} {:>12} {:>9} {:>9} {:>8}",
            "transport", "size", "messages/s", "GB/s", "x memcpy", "x floor"
        );
        for size in &self.settings.sizes {
            for r in self.throughput.iter().filter(|r| r.size == *size) {
                println!(
                    "{:<46} {:>8} {:>12.0} {:>9.2} {:>9} {:>8}",
                    r.label,
                    size::show(r.size as u64),
                    r.rate.messages_per_sec,
                    r.rate.gigabytes_per_sec,
                    r.over_memcpy.map_or("-".into(), |x| format!("{x:.2}")),
                    r.over_floor.map_or("-".into(), |x| format!("{x:.2}")),
                )
            }
        }
        if !self.broadcast_fan_out.is_empty() {
            println!("\nBroadcast fan-out: the publisher's CPU time per 64 B message");
            for f in &self.broadcast_fan_out {
                println!(
                    "  {:>2} subscribers ({}): {:>6.0} ns",
                    f.subscribers,
                    if f.subscribers_busy_poll {
                        "busy-poll"
                    } else {
                        "blocking, woken"
                    },
                    f.publisher_cpu_ns_per_message
                );
            }
        }
        if let Some(idle) = self.idle_receiver_cpu_ms_per_s {
            println!("\nAn idle blocking receiver used {idle:.1} ms of CPU per second.");
        }
        if !self.targets.is_empty() {
            println!("\nTargets");
            for t in &self.targets {
                println!(
                    "  [{}] {}: {}",
                    if t.met { "met " } else { "MISS" },
                    t.goal,
                    t.measured
                );
            }
        }
    }
}

/// A time in nanoseconds as an axis label: `250 ns`, `10 µs`, `2 ms`.
fn show_ns(ns: f64) -> String {
    match ns {
        n if n >= 1e6 => format!("{} ms", n / 1e6),
        n if n >= 1e3 => format!("{} µs", n / 1e3),
        n => format!("{n} ns"),
    }
}

/// Draws p50 and p99 round trip and throughput against message size, one line
/// per transport, into an SVG file.
pub fn plot(report: &Report, path: &Path) -> BenchResult<()> {
    use plotters::prelude::*;

    let root = SVGBackend::new(path, (1500, 520)).into_drawing_area();
    root.fill(&WHITE)?;
    let panels = root.split_evenly((1, 3));
    let sizes: Vec<f64> = report.settings.sizes.iter().map(|&s| s as f64).collect();
    let (xmin, xmax) = (
        sizes.first().copied().unwrap_or(8.0) / 1.5,
        sizes.last().copied().unwrap_or(8.0) * 1.5,
    );
    let mut transports: Vec<&'static str> = report.latency_ns.iter().map(|r| r.label).collect();
    transports.dedup();
    let colour = |i: usize| Palette99::pick(i).to_rgba();

    let latency_panel = |area: &DrawingArea<SVGBackend, plotters::coord::Shift>,
                         title: &str,
                         pick: fn(&LatencyRow) -> u64|
     -> BenchResult<()> {
        let values: Vec<f64> = report.latency_ns.iter().map(|r| pick(r) as f64).collect();
        let ymin = values.iter().copied().fold(f64::MAX, f64::min).max(1.0) / 1.5;
        let ymax = values.iter().copied().fold(1.0, f64::max) * 1.5;
        let mut chart = ChartBuilder::on(area)
            .caption(title, ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(60)
            .build_cartesian_2d((xmin..xmax).log_scale(), (ymin..ymax).log_scale())?;
        chart
            .configure_mesh()
            .x_desc("message size")
            .x_label_formatter(&|&bytes| size::show(bytes as u64))
            .y_desc("round trip")
            .y_label_formatter(&|&ns| show_ns(ns))
            .draw()?;
        for (i, label) in transports.iter().enumerate() {
            let points: Vec<(f64, f64)> = report
                .latency_ns
                .iter()
                .filter(|r| r.label == *label)
                .map(|r| (r.size as f64, pick(r) as f64))
                .collect();
            let c = colour(i);
            chart
                .draw_series(LineSeries::new(points.clone(), c.stroke_width(2)))?
                .label(*label)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 16, y)], c.stroke_width(2))
                });
            chart.draw_series(points.into_iter().map(|p| Circle::new(p, 3, c.filled())))?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .label_font(("sans-serif", 11))
            .draw()?;
        Ok(())
    };
    latency_panel(&panels[0], "Round trip, p50", |r| r.ns.p50)?;
    latency_panel(&panels[1], "Round trip, p99", |r| r.ns.p99)?;

    let rates: Vec<f64> = report
        .throughput
        .iter()
        .map(|r| r.rate.gigabytes_per_sec)
        .collect();
    let ymin = rates.iter().copied().fold(f64::MAX, f64::min).max(1e-4) / 1.5;
    let ymax = rates.iter().copied().fold(1e-3, f64::max) * 1.5;
    let mut chart = ChartBuilder::on(&panels[2])
        .caption("Throughput, one way", ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(60)
        .build_cartesian_2d((xmin..xmax).log_scale(), (ymin..ymax).log_scale())?;
    chart
        .configure_mesh()
        .x_desc("message size")
        .x_label_formatter(&|&bytes| size::show(bytes as u64))
        .y_desc("GB/s")
        .y_label_formatter(&|&gb| format!("{gb}"))
        .draw()?;
    let mut streams: Vec<&'static str> = report.throughput.iter().map(|r| r.label).collect();
    streams.sort_unstable();
    streams.dedup();
    for label in streams {
        let points: Vec<(f64, f64)> = report
            .throughput
            .iter()
            .filter(|r| r.label == label)
            .map(|r| (r.size as f64, r.rate.gigabytes_per_sec))
            .collect();
        // The same colour as in the latency panels where the transport is there.
        let i = transports
            .iter()
            .position(|t| *t == label)
            .unwrap_or(transports.len() + 1);
        let c = colour(i);
        chart
            .draw_series(LineSeries::new(points.clone(), c.stroke_width(2)))?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], c.stroke_width(2)));
        chart.draw_series(points.into_iter().map(|p| Circle::new(p, 3, c.filled())))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font(("sans-serif", 11))
        .draw()?;
    root.present()?;
    Ok(())
}
