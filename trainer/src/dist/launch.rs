//! Where a process stands in a data-parallel run: from the command line, else from the
//! variables `torchrun` sets (`WORLD_SIZE`, `RANK`, `LOCAL_RANK`, `MASTER_ADDR`, `MASTER_PORT`),
//! else from those `srun` sets for a job step (`SLURM_STEP_NUM_TASKS`, `SLURM_PROCID`,
//! `SLURM_LOCALID`), else a single process. `SLURM_NTASKS` is not read: a batch script of a
//! many-task job has it too, and a plain `lrem-train` there is one process.

use crate::bail;
use crate::error::{Context, Result};

/// torchrun's default master port.
const DEFAULT_PORT: u16 = 29500;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launch {
    pub world_size: usize,
    pub rank: usize,
    /// The process's index on its node: which GPU it takes (modulo the GPUs it can see).
    pub local_rank: usize,
    /// `host:port` of rank 0 (absent for a single process).
    pub master: Option<String>,
}

impl Launch {
    /// Resolves the flags against the environment `env` (a lookup, so tests pass their own).
    pub fn resolve(
        world_size: Option<usize>,
        rank: Option<usize>,
        local_rank: Option<usize>,
        master: Option<String>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self> {
        let number = |names: &[&str]| -> Result<Option<usize>> {
            for name in names {
                if let Some(v) = env(name).filter(|v| !v.is_empty()) {
                    return Ok(Some(v.trim().parse().with_context(|| format!("{name}={v}: not a number"))?));
                }
            }
            Ok(None)
        };
        let world_size = match world_size {
            Some(n) => n,
            None => number(&["WORLD_SIZE", "SLURM_STEP_NUM_TASKS"])?.unwrap_or(1),
        };
        if world_size == 0 {
            bail!("--world-size must be at least 1");
        }
        let rank = match rank {
            Some(r) => r,
            // One process is rank 0 whatever a surrounding job says.
            None if world_size == 1 => 0,
            None => number(&["RANK", "SLURM_PROCID"])?.unwrap_or(0),
        };
        // Without a launcher's local rank, ranks on one machine take the GPUs in turn.
        let local_rank = match local_rank {
            Some(l) => l,
            None => number(&["LOCAL_RANK", "SLURM_LOCALID"])?.unwrap_or(rank),
        };
        if rank >= world_size {
            bail!("rank {rank} is out of range for world size {world_size} (ranks count from 0)");
        }
        let master = match master {
            Some(m) => Some(m),
            None => match env("MASTER_ADDR").filter(|a| !a.is_empty()) {
                Some(addr) => {
                    let port = env("MASTER_PORT").filter(|p| !p.is_empty()).unwrap_or(DEFAULT_PORT.to_string());
                    Some(format!("{addr}:{port}"))
                }
                None => None,
            },
        };
        if world_size > 1 && master.is_none() {
            bail!(
                "a run of {world_size} processes needs rank 0's address: pass --master HOST:PORT or set MASTER_ADDR \
                 (under Slurm: MASTER_ADDR=$(scontrol show hostnames \"$SLURM_JOB_NODELIST\" | head -n1))"
            );
        }
        Ok(Self { world_size, rank, local_rank, master: master.filter(|_| world_size > 1) })
    }

    /// [`Launch::resolve`] against this process's environment.
    pub fn from_env(
        world_size: Option<usize>,
        rank: Option<usize>,
        local_rank: Option<usize>,
        master: Option<String>,
    ) -> Result<Self> {
        Self::resolve(world_size, rank, local_rank, master, |name| std::env::var(name).ok())
    }
}
