//! Workload 9: the memory driver against a raw `Vec`.

use std::{sync::Arc, time::Instant};

use storage::{CancellationToken, ResourceExt};
use storage::{MemOptions, MemResource};

use super::{
    CHUNK, Config, MIB, Reader, out_of_order, pipe, random_reads, raw, sequential_reads,
    write_sequential,
};
use crate::measure::{Table, median, shuffled};

pub fn run(config: &Config, data: &Arc<Vec<u8>>, table: &mut Table) {
    let len = data.len();
    let (mut ours, mut raw_times, mut pipes) = (vec![], vec![], vec![]);
    for _ in 0..config.rounds {
        let resource = MemResource::new(CancellationToken::new());
        let started = Instant::now();
        write_sequential(&resource, data);
        ours.push(started.elapsed().as_secs_f64());
        drop(resource);
        raw_times.push(raw::vec_write(data, CHUNK));
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
        0.85,
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

    let r = resource.clone();
    let ours = random_reads(
        1,
        config.random_ops,
        len,
        &(Arc::new(move |at: u64, buf: &mut [u8]| {
            r.read_at(at, buf).expect("read");
        }) as Reader),
    );
    let d = Arc::clone(data);
    let raw_rate = random_reads(
        1,
        config.random_ops,
        len,
        &(Arc::new(move |at: u64, buf: &mut [u8]| {
            let at = at as usize;
            buf.copy_from_slice(&d[at..at + buf.len()]);
        }) as Reader),
    );
    table.rate(
        "9/3. mem: 4 KiB random read_at",
        "raw slice copy",
        ours,
        raw_rate,
        0.9,
    );

    let mem = MemResource::open(
        CancellationToken::new(),
        MemOptions {
            initial_data: None,
            capacity: 64 * MIB,
        },
    )
    .expect("mem");
    let (write_ns, hit_ns) = out_of_order(&mem, 65_536);
    let raw_ns = raw::vec_scattered(&shuffled(65_536, 99));
    table.cost(
        "9/8. mem: 64k out-of-order 1 KiB writes",
        write_ns,
        hit_ns,
        "raw copies into a zeroed Vec",
        raw_ns,
        1000.0,
    );
}
