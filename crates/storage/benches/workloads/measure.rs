//! Statistics and the summary table of the benchmark suite.

/// The median of `values` (sorts them).
pub fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// The `p`-th percentile (0..=100) of `values` (sorts them).
pub fn percentile(values: &mut [f64], p: f64) -> f64 {
    values.sort_by(f64::total_cmp);
    let index = ((values.len() - 1) as f64 * p / 100.0).round() as usize;
    values[index]
}

/// A xorshift generator: deterministic, so runs compare.
pub fn xorshift(seed: u64) -> impl FnMut() -> u64 {
    let mut state = seed | 1;
    move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    }
}

/// A deterministic shuffle of `0..n`.
pub fn shuffled(n: usize, seed: u64) -> Vec<usize> {
    let mut next = xorshift(seed);
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        order.swap(i, (next() % (i as u64 + 1)) as usize);
    }
    order
}

/// `len` bytes of pseudo-random data.
pub fn pattern(len: usize) -> Vec<u8> {
    let mut next = xorshift(0x2545_F491_4F6C_DD1D);
    let mut data = Vec::with_capacity(len + 8);
    while data.len() < len {
        data.extend_from_slice(&next().to_le_bytes());
    }
    data.truncate(len);
    data
}

/// The summary: one markdown row per workload.
pub struct Table {
    file_len: usize,
    rows: Vec<String>,
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "**missed**" }
}

impl Table {
    pub fn new(file_len: usize) -> Self {
        Self {
            file_len,
            rows: Vec::new(),
        }
    }

    /// A throughput workload measured in seconds (lower is better).
    pub fn throughput(&mut self, name: &str, baseline: &str, ours: f64, raw: f64, target: f64) {
        let gb = |seconds: f64| self.file_len as f64 / seconds / 1e9;
        let ratio = raw / ours;
        let (goal, met) = if target > 0.0 {
            (format!("≥ {target}"), verdict(ratio >= target))
        } else {
            ("—".into(), "")
        };
        self.rows.push(format!(
            "| {name} | {:.2} GB/s | {baseline}: {:.2} GB/s | {ratio:.2} | {goal} | {met} |",
            gb(ours),
            gb(raw),
        ));
    }

    /// A rate workload in operations per second (higher is better).
    pub fn rate(&mut self, name: &str, baseline: &str, ours: f64, raw: f64, target: f64) {
        let ratio = ours / raw;
        let goal = if target > 0.0 {
            format!("≥ {target}")
        } else {
            "—".into()
        };
        let met = if target > 0.0 {
            verdict(ratio >= target)
        } else {
            ""
        };
        self.rows.push(format!(
            "| {name} | {:.2} Mops/s ({:.0} ns/op) | {baseline}: {:.2} Mops/s ({:.0} ns/op) | {ratio:.2} | {goal} | {met} |",
            ours / 1e6,
            1e9 / ours,
            raw / 1e6,
            1e9 / raw,
        ));
    }

    /// Latencies in µs: p50/p99, against a raw baseline's p99 when given
    /// (target: ratio of p99s at most `target`), else an absolute p99 bound
    /// of `target` µs.
    pub fn latency(&mut self, name: &str, ours: &mut [f64], raw: Option<Vec<f64>>, target: f64) {
        let (p50, p99) = (percentile(ours, 50.0), percentile(ours, 99.0));
        if let Some(mut raw) = raw {
            let (r50, r99) = (percentile(&mut raw, 50.0), percentile(&mut raw, 99.0));
            let ratio = p99 / r99;
            self.rows.push(format!(
                "| {name} | p50 {p50:.1} µs, p99 {p99:.1} µs | parking_lot condvar ping: p50 {r50:.1} µs, p99 {r99:.1} µs | p99 {ratio:.2}× | p99 ≤ {target}× | {} |",
                verdict(ratio <= target)
            ));
        } else {
            self.rows.push(format!(
                "| {name} | p50 {p50:.1} µs, p99 {p99:.1} µs | — | — | p99 ≤ {target} µs | {} |",
                verdict(p99 <= target)
            ));
        }
    }

    /// Per-call costs in ns: writes (target: at most `target` ns) against a
    /// raw baseline's writes, and `wait_range` hits.
    pub fn cost(
        &mut self,
        name: &str,
        write_ns: f64,
        hit_ns: f64,
        baseline: &str,
        raw_ns: f64,
        target: f64,
    ) {
        let (goal, met) = if target > 0.0 {
            (format!("≤ {target} ns/write"), verdict(write_ns <= target))
        } else {
            ("—".into(), "")
        };
        self.rows.push(format!(
            "| {name} | {write_ns:.0} ns per write_at, {hit_ns:.0} ns per wait_range hit | {baseline}: {raw_ns:.0} ns per write | {:.2} | {goal} | {met} |",
            raw_ns / write_ns
        ));
    }

    pub fn print(&self) {
        println!("| workload | ours (median) | baseline in the same run | ratio | target | |");
        println!("| --- | --- | --- | --- | --- | --- |");
        for row in &self.rows {
            println!("{row}");
        }
    }
}
