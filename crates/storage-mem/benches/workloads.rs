//! Workload 9 of the contract's performance table: the memory driver
//! against a raw `Vec`, measured in the same run, reported as ratios.
//!
//! `cargo bench -p storage-mem --bench workloads` (or `cargo xtask bench`,
//! which runs the mmap driver's too); `-- --quick` runs fewer rounds. The
//! workloads are shared with the mmap driver's bench, in
//! `storage_core::testing::bench`. The rows that allocate (9/1, 9/5, 9/8)
//! take each sample in a fresh process of this binary (`--sample KIND`),
//! so neither side measures the other's allocation history.

#![allow(
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    reason = "timings and counts shown as floating-point ratios; offsets within a buffer"
)]

use std::{sync::Arc, time::Instant};

use storage_core::{
    CancellationToken, ResourceExt,
    testing::bench::{
        CHUNK, Config, MIB, Reader, Table, median, out_of_order, pattern, pipe, random_reads,
        sequential_reads, shuffled, vec_scattered, vec_write, write_sequential,
    },
};
use storage_mem::{MemOptions, MemResource};

fn main() {
    let config = Config::from_args();
    if let Some(kind) = sample_asked() {
        // One sample, in a process of its own (see `sampled`).
        println!("{}", sample(&config, &kind));
        return;
    }
    let data = Arc::new(pattern(config.file_len));
    let mut table = Table::new(config.file_len);
    run(&config, &data, &mut table);
    table.print();
}

/// The kind after `--sample`, when this process is to take one sample.
fn sample_asked() -> Option<String> {
    let mut args = std::env::args().skip_while(|arg| arg != "--sample");
    args.next()?;
    args.next()
}

/// One measurement of `kind`: seconds, or ns per write for `ooo-*`.
fn sample(config: &Config, kind: &str) -> f64 {
    match kind {
        "ooo-ours" => out_of_order(&out_of_order_target(), 65_536).0,
        "ooo-raw" => vec_scattered(&shuffled(65_536, 99)),
        kind => {
            let data = Arc::new(pattern(config.file_len));
            match kind {
                "write-ours" => {
                    let resource = MemResource::new(CancellationToken::new());
                    let started = Instant::now();
                    write_sequential(&resource, &data);
                    started.elapsed().as_secs_f64()
                }
                "write-raw" => vec_write(&data, CHUNK),
                "pipe-ours" => pipe(&MemResource::new(CancellationToken::new()), &data),
                other => panic!("no sample kind {other}"),
            }
        }
    }
}

/// Medians of `kinds`, each sample taken in a fresh process, the kinds in
/// turn round by round. The rows that allocate are measured this way: in
/// one process, what one side freed decided whether the other got
/// recycled memory or fresh pages to fault in (a raw baseline ran 7×
/// faster after our chunks had been freed a certain way), so each side
/// would have measured the other's allocation history.
fn sampled<const N: usize>(config: &Config, kinds: [&str; N]) -> [f64; N] {
    let exe = std::env::current_exe().expect("the bench's own path");
    let mut samples: [Vec<f64>; N] = std::array::from_fn(|_| Vec::new());
    for _ in 0..config.rounds {
        for (kind, samples) in kinds.iter().zip(samples.iter_mut()) {
            let mut command = std::process::Command::new(&exe);
            command.args(["--sample", kind]);
            if std::env::args().any(|a| a == "--quick") {
                command.arg("--quick");
            }
            let output = command.output().expect("a sample process");
            assert!(output.status.success(), "sample {kind} failed");
            let text = String::from_utf8_lossy(&output.stdout);
            samples.push(text.trim().parse().expect("a sample's number"));
        }
    }
    samples.map(|mut samples| median(&mut samples))
}

fn run(config: &Config, data: &Arc<Vec<u8>>, table: &mut Table) {
    let [ours, raw_write, pipe] = sampled(config, ["write-ours", "write-raw", "pipe-ours"]);
    table.throughput(
        "9/1. mem: sequential write 64 KiB + commit",
        "raw Vec extend_from_slice",
        ours,
        raw_write,
        0.9,
    );
    table.throughput(
        "9/5. mem: writer → reader pipe",
        "raw Vec write (9/1.)",
        pipe,
        raw_write,
        0.9,
    );

    let resource = MemResource::open(
        CancellationToken::new(),
        MemOptions {
            initial_data: Some(data.to_vec()),
            capacity: 0,
        },
    )
    .expect("mem");
    let (mut ours, mut raw_times) = sequential_reads(config.rounds, &resource, data);
    table.throughput(
        "9/2. mem: sequential read 64 KiB",
        "raw slice copy",
        median(&mut ours),
        median(&mut raw_times),
        0.95,
    );

    random_read_rounds(config, &resource, data, table);
    out_of_order_rounds(config, table);
}

/// 9/3: 4 KiB random reads of `resource` against the same reads of `data`.
fn random_read_rounds(
    config: &Config,
    resource: &MemResource,
    data: &Arc<Vec<u8>>,
    table: &mut Table,
) {
    let len = data.len();
    // Rounds of ours and raw in turn, so a slow spell of a shared machine
    // falls on both.
    let (mut ours, mut raw_rates) = (vec![], vec![]);
    for _ in 0..config.rounds {
        let r = resource.clone();
        ours.push(random_reads(
            1,
            config.random_ops,
            len,
            &(Arc::new(move |at: u64, buf: &mut [u8]| {
                r.read_at(at, buf).expect("read");
            }) as Reader),
        ));
        let d = Arc::clone(data);
        raw_rates.push(random_reads(
            1,
            config.random_ops,
            len,
            &(Arc::new(move |at: u64, buf: &mut [u8]| {
                let at = at as usize;
                buf.copy_from_slice(&d[at..at + buf.len()]);
            }) as Reader),
        ));
    }
    let (ours, raw_rate) = (median(&mut ours), median(&mut raw_rates));
    table.rate(
        "9/3. mem: 4 KiB random read_at",
        "raw slice copy",
        ours,
        raw_rate,
        0.9,
    );
}

/// The resource 9/8 writes into: empty, room made for 64 MiB.
fn out_of_order_target() -> MemResource {
    MemResource::open(
        CancellationToken::new(),
        MemOptions {
            initial_data: None,
            capacity: 64 * MIB,
        },
    )
    .expect("mem")
}

/// 9/8: 64k out-of-order 1 KiB writes into a fresh resource against raw
/// copies into a zeroed `Vec`, each in a fresh process. (The cost of a
/// `wait_range` hit is taken in this one.)
fn out_of_order_rounds(config: &Config, table: &mut Table) {
    let [write_ns, raw_ns] = sampled(config, ["ooo-ours", "ooo-raw"]);
    let (_, hit_ns) = out_of_order(&out_of_order_target(), 65_536);
    table.cost(
        "9/8. mem: 64k out-of-order 1 KiB writes",
        write_ns,
        hit_ns,
        "raw copies into a zeroed Vec",
        raw_ns,
        0.8,
    );
}
