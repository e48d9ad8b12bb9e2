//! Workload 9 of the contract's performance table: the memory driver
//! against a raw `Vec`, measured in the same run, reported as ratios.
//!
//! `cargo bench -p storage-mem --bench workloads` (or `cargo xtask bench`,
//! which runs the mmap driver's too); `-- --quick` runs fewer rounds. The
//! workloads are shared with the mmap driver's bench, in
//! `storage_core::testing::bench`.

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
    let data = Arc::new(pattern(config.file_len));
    let mut table = Table::new(config.file_len);
    run(&config, &data, &mut table);
    table.print();
}

fn run(config: &Config, data: &Arc<Vec<u8>>, table: &mut Table) {
    let (mut ours, mut raw_times, mut pipes) = (vec![], vec![], vec![]);
    for _ in 0..config.rounds {
        let resource = MemResource::new(CancellationToken::new());
        let started = Instant::now();
        write_sequential(&resource, data);
        ours.push(started.elapsed().as_secs_f64());
        drop(resource);
        raw_times.push(vec_write(data, CHUNK));
        pipes.push(pipe(&MemResource::new(CancellationToken::new()), data));
    }
    let raw_write = median(&mut raw_times);
    table.throughput(
        "9/1. mem: sequential write 64 KiB + commit",
        "raw Vec extend_from_slice",
        median(&mut ours),
        raw_write,
        0.9,
    );
    table.throughput(
        "9/5. mem: writer → reader pipe",
        "raw Vec write (9/1.)",
        median(&mut pipes),
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

/// 9/8: 64k out-of-order 1 KiB writes into a fresh resource against raw
/// copies into a zeroed `Vec`.
fn out_of_order_rounds(config: &Config, table: &mut Table) {
    let order = shuffled(65_536, 99);
    let (mut writes, mut hits, mut raw_writes) = (vec![], vec![], vec![]);
    for _ in 0..config.rounds {
        let mem = MemResource::open(
            CancellationToken::new(),
            MemOptions {
                initial_data: None,
                capacity: 64 * MIB,
            },
        )
        .expect("mem");
        let (write_ns, hit_ns) = out_of_order(&mem, 65_536);
        drop(mem);
        writes.push(write_ns);
        hits.push(hit_ns);
        raw_writes.push(vec_scattered(&order));
    }
    let (write_ns, hit_ns, raw_ns) = (
        median(&mut writes),
        median(&mut hits),
        median(&mut raw_writes),
    );
    table.cost(
        "9/8. mem: 64k out-of-order 1 KiB writes",
        write_ns,
        hit_ns,
        "raw copies into a zeroed Vec",
        raw_ns,
        0.8,
    );
}
