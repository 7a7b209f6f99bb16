//! Sends lines to a Kafka topic, one record per line, spread over its partitions; creates the
//! topic when missing. For the example project's streaming bronze and the stream benchmark:
//!
//! ```sh
//! cargo run --example produce -- 127.0.0.1:9092 pins 2 < events.jsonl
//! ```

use std::io::BufRead;

use rskafka::client::ClientBuilder;
use rskafka::client::partition::{Compression, UnknownTopicHandling};
use rskafka::record::Record;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [broker, topic, partitions] = args.as_slice() else {
        eprintln!("usage: produce BROKER TOPIC PARTITIONS < lines");
        std::process::exit(2);
    };
    let partitions: i32 = partitions.parse().expect("PARTITIONS is a number");
    let client = ClientBuilder::new(vec![broker.clone()])
        .build()
        .await
        .unwrap_or_else(|e| panic!("cannot reach the broker {broker}: {e}"));
    let exists = client
        .list_topics()
        .await
        .expect("list topics")
        .iter()
        .any(|t| &t.name == topic);
    if !exists {
        client
            .controller_client()
            .expect("controller")
            .create_topic(topic.clone(), partitions, 1, 5_000)
            .await
            .expect("create the topic");
    }
    let mut clients = Vec::new();
    for p in 0..partitions {
        clients.push(
            client
                .partition_client(topic.clone(), p, UnknownTopicHandling::Retry)
                .await
                .expect("partition client"),
        );
    }
    // Records per produce request (one record batch each); PRODUCE_BATCH overrides.
    let batch_size: usize = std::env::var("PRODUCE_BATCH")
        .ok()
        .and_then(|b| b.parse().ok())
        .unwrap_or(2_000);
    let mut pending: Vec<Vec<Record>> = vec![Vec::new(); partitions as usize];
    let mut sent = 0usize;
    for (i, line) in std::io::stdin().lock().lines().enumerate() {
        let line = line.expect("read stdin");
        let p = i % partitions as usize;
        pending[p].push(Record {
            key: None,
            value: Some(line.into_bytes()),
            headers: Default::default(),
            timestamp: chrono::Utc::now(),
        });
        if pending[p].len() == batch_size {
            sent += pending[p].len();
            let batch = std::mem::take(&mut pending[p]);
            clients[p]
                .produce(batch, Compression::NoCompression)
                .await
                .expect("produce");
        }
    }
    for (p, batch) in pending.into_iter().enumerate() {
        sent += batch.len();
        clients[p]
            .produce(batch, Compression::NoCompression)
            .await
            .expect("produce");
    }
    eprintln!("sent {sent} records to {topic}");
}
