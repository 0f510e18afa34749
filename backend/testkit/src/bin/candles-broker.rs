//! `candles-broker DIR [TOPIC:PARTITIONS ...]`: the tests' Apache Kafka broker
//! ([`candles_testkit::Kafka`]) for the native stack (`scripts/stack.sh`): KRaft on a free
//! loopback port, data in `DIR/kafka`, the topics created. Prints `brokers=HOST:PORT` as its
//! first line once the broker answers, then runs until it is killed (the broker goes with it:
//! its watchdog sees this process end).
#![forbid(unsafe_code)]

use anyhow::{Context as _, bail};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let Some(dir) = args.next() else {
        bail!(
            "usage: candles-broker DIR [TOPIC:PARTITIONS ...] (e.g. candles-broker /tmp/run trades:6 trades.dlq:1)"
        );
    };
    let topics = args
        .map(|a| {
            let (name, n) = a.split_once(':').unwrap_or((&a, "1"));
            let n: u32 = n.parse().with_context(|| {
                format!("invalid topic {a:?}: write NAME:PARTITIONS, e.g. trades:6")
            })?;
            Ok((name.to_string(), n))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let dir = std::path::Path::new(&dir).join("kafka");
    let kafka = candles_testkit::Kafka::start_in(&dir)?;
    for (name, partitions) in &topics {
        kafka.create_topic(name, *partitions)?;
    }
    println!("brokers={}", kafka.brokers());
    loop {
        std::thread::park();
    }
}
