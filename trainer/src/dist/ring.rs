//! The ring all-reduce: a reduce-scatter, then an all-gather, each rank sending to the next and
//! receiving from the previous (Patarasuk & Yuan 2009; what NCCL and Horovod run over TCP).
//!
//! Each rank sends and receives `2·(world−1)/world` of the buffer per call whatever the number
//! of ranks, where a star sends `2·(world−1)` whole copies through rank 0's link. Every chunk's
//! sum is added once, on one rank, in a fixed order, and then copied around the ring, so every
//! rank still ends with bit-identical values.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use super::wire::{read_f32s, read_frame, read_frame_of, write_f32s, write_frame};
use super::{HELLO_TIMEOUT, configure, connect_retrying, peer_error};
use crate::error::{Context, Result};
use crate::{bail, err};

/// This rank's two ring links.
#[derive(Debug)]
pub(super) struct Ring {
    rank: usize,
    world: usize,
    next: TcpStream,
    prev: TcpStream,
}

/// Where the next rank listens, as rank 0 tells each rank: an address rank 0 saw the next rank
/// connect from, with the port it bound.
pub(super) struct Listening {
    pub listener: TcpListener,
    pub port: u16,
}

impl Listening {
    /// Every interface, a port the system picks.
    pub fn bind() -> Result<Self> {
        let listener = TcpListener::bind(("0.0.0.0", 0)).context("binding the ring's listener")?;
        let port = listener.local_addr()?.port();
        Ok(Self { listener, port })
    }
}

/// The address of rank `r + 1` for rank `r`, from what rank 0 knows: the leaves' addresses as
/// their connections came in (index `i` is rank `i + 1`), their ports, and rank 0's own port,
/// which the last rank reaches through the master's host name.
pub(super) fn next_addresses(peers: &[SocketAddr], ports: &[u16], master_host: &str, root_port: u16) -> Vec<String> {
    // A rank that reached rank 0 over loopback runs on rank 0's host, which the other nodes
    // know by the master's name.
    let address = |a: &SocketAddr, p: u16| {
        if a.ip().is_loopback() { format!("{master_host}:{p}") } else { SocketAddr::new(a.ip(), p).to_string() }
    };
    let mut next: Vec<String> = peers.iter().zip(ports).map(|(a, &p)| address(a, p)).collect();
    next.push(format!("{master_host}:{root_port}"));
    next
}

impl Ring {
    /// Connects to the next rank at `next` and accepts the previous rank on `listening`, each
    /// link opened with the sender's rank so a crossed wire fails by name.
    pub fn connect(rank: usize, world: usize, listening: Listening, next: &str, timeout: Duration) -> Result<Self> {
        let next = connect_retrying(next, rank, (rank + 1) % world, timeout)?;
        let deadline = Instant::now() + timeout;
        write_frame(&next, &(rank as u64).to_le_bytes()).map_err(|e| peer_error(e, (rank + 1) % world))?;
        let prev_rank = (rank + world - 1) % world;
        listening.listener.set_nonblocking(true)?;
        let prev = loop {
            match listening.listener.accept() {
                Ok((stream, _)) => {
                    stream.set_nonblocking(false)?;
                    configure(&stream, HELLO_TIMEOUT)?;
                    // As on the master port: a connection that is not a peer is dropped.
                    let Ok(hello) = read_frame_of(&stream, 8) else { continue };
                    let from = u64::from_le_bytes(hello.try_into().expect("8 bytes")) as usize;
                    if from != prev_rank {
                        bail!("rank {rank}'s ring link came from rank {from}, expected rank {prev_rank}");
                    }
                    configure(&stream, timeout)?;
                    break stream;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if Instant::now() > deadline {
                        bail!("rank {rank} waited {} s for rank {prev_rank}'s ring link", timeout.as_secs());
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => return Err(e).context(format!("rank {rank} accepting its ring link")),
            }
        };
        Ok(Self { rank, world, next, prev })
    }

    /// Replaces `values` on every rank by the element-wise sum over the ranks.
    pub fn all_reduce_sum(&self, values: &mut [f32]) -> Result<()> {
        let (w, r) = (self.world, self.rank);
        let bounds = |c: usize| {
            let start = |c: usize| c * (values.len() / w) + c.min(values.len() % w);
            start(c)..start(c + 1)
        };
        let chunks: Vec<_> = (0..w).map(bounds).collect();
        // Reduce-scatter: after step s, this rank holds the sum over s + 2 ranks of chunk
        // (r − s − 1) mod w; after w − 1 steps, the whole sum of chunk (r + 1) mod w.
        for s in 0..w - 1 {
            let send = chunks[(r + w - s) % w].clone();
            let recv = chunks[(r + 2 * w - s - 1) % w].clone();
            let received = self.exchange(&values[send], recv.len())?;
            values[recv].iter_mut().zip(&received).for_each(|(v, x)| *v += x);
        }
        // All-gather: pass each finished chunk on around the ring.
        for s in 0..w - 1 {
            let send = chunks[(r + 1 + w - s) % w].clone();
            let recv = chunks[(r + w - s) % w].clone();
            let received = self.exchange(&values[send], recv.len())?;
            values[recv].copy_from_slice(&received);
        }
        Ok(())
    }

    /// Sends `mine` to the next rank while receiving `expect` values from the previous one (both
    /// at once: two ranks writing large frames to each other first would block on full buffers).
    fn exchange(&self, mine: &[f32], expect: usize) -> Result<Vec<f32>> {
        let next_rank = (self.rank + 1) % self.world;
        let prev_rank = (self.rank + self.world - 1) % self.world;
        let (sent, received) = std::thread::scope(|s| {
            let sending = s.spawn(|| write_f32s(&self.next, mine));
            let received = read_f32s(&self.prev);
            (sending.join().expect("the sending thread does not panic"), received)
        });
        sent.map_err(|e| peer_error(e, next_rank))?;
        let received = received.map_err(|e| peer_error(e, prev_rank))?;
        if received.len() != expect {
            return Err(err!(
                "rank {prev_rank} sent {} values of a chunk of {expect} to sum: the ranks run different configurations",
                received.len()
            ));
        }
        Ok(received)
    }
}

/// A frame holding an address, for rank 0 to tell each rank where its next rank listens.
pub(super) fn read_address(stream: &TcpStream) -> std::io::Result<String> {
    let bytes = read_frame(stream)?;
    String::from_utf8(bytes).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}
