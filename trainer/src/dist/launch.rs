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

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string())
    }

    #[test]
    fn flags_win_over_torchrun_which_wins_over_slurm() {
        let vars = [
            ("WORLD_SIZE", "4"),
            ("RANK", "2"),
            ("SLURM_NTASKS", "8"),
            ("SLURM_PROCID", "5"),
            ("MASTER_ADDR", "node1"),
        ];
        let l = Launch::resolve(None, None, None, None, env(&vars)).unwrap();
        assert_eq!((l.world_size, l.rank, l.master.as_deref()), (4, 2, Some("node1:29500")));
        let slurm = [
            ("SLURM_STEP_NUM_TASKS", "8"),
            ("SLURM_PROCID", "5"),
            ("SLURM_LOCALID", "1"),
            ("MASTER_ADDR", "n"),
            ("MASTER_PORT", "7"),
        ];
        let l = Launch::resolve(None, None, None, None, env(&slurm)).unwrap();
        assert_eq!((l.world_size, l.rank, l.local_rank, l.master.as_deref()), (8, 5, 1, Some("n:7")));
        let l = Launch::resolve(Some(2), Some(1), None, Some("h:1".into()), env(&vars)).unwrap();
        assert_eq!((l.world_size, l.rank, l.master.as_deref()), (2, 1, Some("h:1")));
        assert_eq!(Launch::resolve(None, None, None, None, env(&[])).unwrap().world_size, 1);
        // A batch script of a many-task job is one process, rank 0.
        let batch = [("SLURM_NTASKS", "8"), ("SLURM_PROCID", "0")];
        assert_eq!(Launch::resolve(None, None, None, None, env(&batch)).unwrap().world_size, 1);
        let one = Launch::resolve(Some(1), None, None, None, env(&vars)).unwrap();
        assert_eq!((one.world_size, one.rank, one.master), (1, 0, None));
        // Without a local rank, ranks on one machine take the GPUs in turn.
        let l = Launch::resolve(Some(4), Some(3), None, Some("h:1".into()), env(&[])).unwrap();
        assert_eq!(l.local_rank, 3);
    }

    #[test]
    fn a_bad_launch_says_what_is_missing() {
        let e = Launch::resolve(Some(2), Some(0), None, None, env(&[])).unwrap_err().to_string();
        assert!(e.contains("--master") && e.contains("MASTER_ADDR"), "{e}");
        let e = Launch::resolve(Some(2), Some(2), None, Some("h:1".into()), env(&[])).unwrap_err().to_string();
        assert!(e.contains("rank 2 is out of range"), "{e}");
        let e = Launch::resolve(None, None, None, None, env(&[("WORLD_SIZE", "two")])).unwrap_err().to_string();
        assert!(e.contains("WORLD_SIZE=two"), "{e}");
    }
}
