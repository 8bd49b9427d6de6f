//! Data-parallel training's process group: `world` processes (ranks), rank 0 listening on the
//! master address and every other rank connected to it over TCP.
//!
//! Two collectives: [`ProcessGroup::all_reduce_sum`] over a ring (`ring.rs`: each rank sends
//! `2·(world−1)/world` of the gradients per step, whatever the world size) and
//! [`ProcessGroup::all_gather`] through rank 0 (a star; it moves embeddings and digests, not
//! gradients). Each chunk of a sum is added once, on one rank, and copied to the others, so all
//! ranks hold bit-identical gradients, take the same clipped step and keep identical parameters
//! without ever comparing them. That determinism is what lets a test hold N processes to one
//! process on the N-times batch.
//!
//! Why not `burn-collective` 0.21: its multi-node mode needs a separately started orchestrator
//! and a tensor data service per node, and it has no all-gather (which in-batch negatives across
//! ranks need). NCCL (through cudarc) does not run on CPUs, where the equality test runs; the
//! price is that gradients go through host memory and TCP (docs/trainer.md).

mod launch;
mod ring;
mod wire;

pub use launch::Launch;

use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use crate::error::{Context, Result};
use crate::{bail, err};
use ring::{Listening, Ring, next_addresses, read_address};
use wire::{read_f32s, read_frame, read_frame_of, read_u64s, write_f32s, write_frame, write_u64s};

/// How long rank 0 waits for a new connection to say who it is.
pub(super) const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// Identifies this protocol in the handshake, so a stray connection is refused by name.
const MAGIC: &[u8; 8] = b"LREMDDP1";

/// One process of a data-parallel run and its links to the others.
#[derive(Debug)]
pub struct ProcessGroup {
    rank: usize,
    world: usize,
    links: Links,
    /// The all-reduce's links (none for a single process).
    ring: Option<Ring>,
}

#[derive(Debug)]
enum Links {
    Alone,
    /// Rank 0: the stream of rank `i + 1` at index `i`.
    Root(Vec<TcpStream>),
    Leaf(TcpStream),
}

impl Default for ProcessGroup {
    fn default() -> Self {
        Self::single()
    }
}

impl ProcessGroup {
    /// A run of one process: every collective is the identity.
    pub fn single() -> Self {
        Self { rank: 0, world: 1, links: Links::Alone, ring: None }
    }

    /// Joins the group `launch` describes: rank 0 binds the master address and waits for the
    /// others; the others connect to it, retrying until `timeout` while rank 0 starts. A rank
    /// that no peer answers within `timeout` after that (a peer hung or died) fails with an
    /// error naming the peer, rather than waiting forever.
    pub fn connect(launch: &Launch, timeout: Duration) -> Result<Self> {
        let (rank, world) = (launch.rank, launch.world_size);
        if world == 1 {
            return Ok(Self::single());
        }
        let master = launch.master.as_deref().context("a data-parallel run needs a master address")?;
        let links = if rank == 0 {
            Links::Root(accept(master, world, timeout)?)
        } else {
            Links::Leaf(join(master, rank, world, timeout)?)
        };
        let ring = Some(ring_over(&links, rank, world, master, timeout)?);
        Ok(Self { rank, world, links, ring })
    }

    pub fn rank(&self) -> usize {
        self.rank
    }

    pub fn world(&self) -> usize {
        self.world
    }

    /// Rank 0 writes checkpoints, metrics and the exported model.
    pub fn is_root(&self) -> bool {
        self.rank == 0
    }

    /// This rank's contiguous share of `n` rows: sizes differ by at most one, earlier ranks
    /// taking the extra rows; a rank may get none when `n < world`.
    pub fn share(&self, n: usize) -> std::ops::Range<usize> {
        self.share_of(self.rank, n)
    }

    /// Rank `rank`'s share of `n` rows (see [`ProcessGroup::share`]).
    pub fn share_of(&self, rank: usize, n: usize) -> std::ops::Range<usize> {
        let start = |r: usize| r * (n / self.world) + r.min(n % self.world);
        start(rank)..start(rank + 1)
    }

    /// Replaces `values` on every rank by the element-wise sum over the ranks (the same bits on
    /// every rank).
    pub fn all_reduce_sum(&self, values: &mut [f32]) -> Result<()> {
        match &self.ring {
            None => Ok(()),
            Some(ring) => ring.all_reduce_sum(values),
        }
    }

    /// Every rank's `mine`, in rank order (lengths may differ between ranks).
    pub fn all_gather(&self, mine: &[f32]) -> Result<Vec<Vec<f32>>> {
        match &self.links {
            Links::Alone => Ok(vec![mine.to_vec()]),
            Links::Root(peers) => {
                let mut all = vec![mine.to_vec()];
                for (i, peer) in peers.iter().enumerate() {
                    all.push(read_f32s(peer).map_err(|e| peer_error(e, i + 1))?);
                }
                let lengths: Vec<u64> = all.iter().map(|v| v.len() as u64).collect();
                let flat = all.concat();
                for (i, peer) in peers.iter().enumerate() {
                    write_u64s(peer, &lengths).map_err(|e| peer_error(e, i + 1))?;
                    write_f32s(peer, &flat).map_err(|e| peer_error(e, i + 1))?;
                }
                Ok(all)
            }
            Links::Leaf(root) => {
                write_f32s(root, mine).map_err(|e| peer_error(e, 0))?;
                let lengths = read_u64s(root).map_err(|e| peer_error(e, 0))?;
                let flat = read_f32s(root).map_err(|e| peer_error(e, 0))?;
                let total: u64 = lengths.iter().sum();
                if lengths.len() != self.world || total != flat.len() as u64 {
                    bail!(
                        "rank 0 sent a gather of {} parts and {} values, announced {total}",
                        lengths.len(),
                        flat.len()
                    );
                }
                let mut out = Vec::with_capacity(lengths.len());
                let mut at = 0;
                for len in lengths {
                    out.push(flat[at..at + len as usize].to_vec());
                    at += len as usize;
                }
                Ok(out)
            }
        }
    }

    /// Fails on every rank, naming the ranks that differ, unless all ranks pass the same
    /// `value` (a digest of what each rank set up: the schedule, the resumed step).
    pub fn check_same(&self, what: &str, value: u64) -> Result<()> {
        // Four 16-bit pieces: each exact in an f32.
        let pieces: Vec<f32> = (0..4).map(|i| ((value >> (16 * i)) & 0xffff) as f32).collect();
        let all = self.all_gather(&pieces)?;
        let differ: Vec<usize> = (0..all.len()).filter(|&r| all[r] != all[0]).collect();
        if !differ.is_empty() {
            bail!(
                "{what} differs between rank 0 and rank(s) {differ:?}: start every rank with the same configuration, data and checkpoint"
            );
        }
        Ok(())
    }
}

/// Sets up the ring over the star: every rank listens on a port of its own, rank 0 learns them
/// and tells each rank where its next rank listens.
fn ring_over(links: &Links, rank: usize, world: usize, master: &str, timeout: Duration) -> Result<Ring> {
    let listening = Listening::bind()?;
    let next = match links {
        Links::Alone => unreachable!("a single process has no ring"),
        Links::Leaf(root) => {
            write_u64s(root, &[u64::from(listening.port)]).map_err(|e| peer_error(e, 0))?;
            read_address(root).map_err(|e| peer_error(e, 0))?
        }
        Links::Root(peers) => {
            let mut ports = Vec::with_capacity(peers.len());
            let mut addrs = Vec::with_capacity(peers.len());
            for (i, peer) in peers.iter().enumerate() {
                let port = read_u64s(peer).map_err(|e| peer_error(e, i + 1))?;
                match port.as_slice() {
                    [p] if *p > 0 && *p <= u64::from(u16::MAX) => ports.push(*p as u16),
                    _ => bail!("rank {} sent {port:?} as its ring port", i + 1),
                }
                addrs.push(peer.peer_addr()?);
            }
            let host = master.rsplit_once(':').map_or(master, |(h, _)| h);
            let next = next_addresses(&addrs, &ports, host, listening.port);
            for (i, peer) in peers.iter().enumerate() {
                write_frame(peer, next[i + 1].as_bytes()).map_err(|e| peer_error(e, i + 1))?;
            }
            next[0].clone()
        }
    };
    Ring::connect(rank, world, listening, &next, timeout)
}

pub(super) fn peer_error(e: std::io::Error, peer: usize) -> crate::Error {
    let why = match e.kind() {
        std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe => {
            "closed the connection (it exited: see its log)".to_string()
        }
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
            "did not answer within the timeout (LREM_DIST_TIMEOUT_S)".to_string()
        }
        _ => e.to_string(),
    };
    err!("data-parallel: rank {peer} {why}")
}

pub(super) fn configure(stream: &TcpStream, timeout: Duration) -> Result<()> {
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    Ok(())
}

fn accept(master: &str, world: usize, timeout: Duration) -> Result<Vec<TcpStream>> {
    // Every interface: the master's name may resolve to a loopback address on its own host
    // (Debian's 127.0.1.1), which the other nodes could not reach.
    let port: u16 = master
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse().ok())
        .with_context(|| format!("master address {master}: expected HOST:PORT"))?;
    let listener =
        TcpListener::bind(("0.0.0.0", port)).with_context(|| format!("rank 0 cannot listen on port {port}"))?;
    listener.set_nonblocking(true)?;
    let mut peers: Vec<Option<TcpStream>> = (1..world).map(|_| None).collect();
    let deadline = Instant::now() + timeout;
    while peers.iter().any(Option::is_none) {
        let stream = match listener.accept() {
            Ok((stream, _)) => stream,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if Instant::now() > deadline {
                    let missing: Vec<usize> = (1..world).filter(|r| peers[r - 1].is_none()).collect();
                    bail!("rank 0 waited {} s on {master} for rank(s) {missing:?}", timeout.as_secs());
                }
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
            Err(e) => return Err(e).context(format!("rank 0 accepting on {master}")),
        };
        stream.set_nonblocking(false)?;
        configure(&stream, HELLO_TIMEOUT)?;
        // A connection that is not a peer (a port scan, a stray client) is dropped, not fatal.
        let Ok(hello) = read_frame_of(&stream, 24) else { continue };
        let refuse = |why: String| -> Result<()> {
            let _ = write_frame(&stream, why.as_bytes());
            Ok(())
        };
        if &hello[..8] != MAGIC {
            refuse("not an lrem-train data-parallel peer".into())?;
            continue;
        }
        let their_rank = u64::from_le_bytes(hello[8..16].try_into().expect("8 bytes")) as usize;
        let their_world = u64::from_le_bytes(hello[16..24].try_into().expect("8 bytes")) as usize;
        if their_world != world {
            let why = format!("rank {their_rank} was started with world size {their_world}, rank 0 with {world}");
            refuse(why.clone())?;
            bail!("{why}");
        }
        if their_rank == 0 || their_rank >= world || peers[their_rank - 1].is_some() {
            let why = format!("rank {their_rank} is out of range or taken (world size {world})");
            refuse(why.clone())?;
            bail!("{why}");
        }
        write_frame(&stream, b"")?;
        configure(&stream, timeout)?;
        peers[their_rank - 1] = Some(stream);
    }
    Ok(peers.into_iter().map(|p| p.expect("every rank joined")).collect())
}

/// Connects rank `rank` to rank `to` at `address`, retrying while that rank starts, for up to
/// `timeout`.
pub(super) fn connect_retrying(address: &str, rank: usize, to: usize, timeout: Duration) -> Result<TcpStream> {
    let deadline = Instant::now() + timeout;
    loop {
        let addrs: Vec<_> =
            address.to_socket_addrs().with_context(|| format!("rank {to}'s address {address}"))?.collect();
        if let Some(stream) = addrs.iter().find_map(|a| TcpStream::connect_timeout(a, Duration::from_secs(5)).ok()) {
            configure(&stream, timeout)?;
            return Ok(stream);
        }
        if Instant::now() > deadline {
            bail!("rank {rank} could not reach rank {to} at {address} within {} s", timeout.as_secs());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn join(master: &str, rank: usize, world: usize, timeout: Duration) -> Result<TcpStream> {
    let stream = connect_retrying(master, rank, 0, timeout)?;
    let mut hello = MAGIC.to_vec();
    hello.extend((rank as u64).to_le_bytes());
    hello.extend((world as u64).to_le_bytes());
    write_frame(&stream, &hello)?;
    let answer = read_frame(&stream).map_err(|e| peer_error(e, 0))?;
    if !answer.is_empty() {
        bail!("rank 0 refused rank {rank}: {}", String::from_utf8_lossy(&answer));
    }
    Ok(stream)
}
