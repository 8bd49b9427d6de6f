//! The layout of a run directory, in one place: both halves find tables, parts, shards,
//! manifests and the response cache through [`RunDir`] and never spell a path themselves.
//!
//! ```text
//! <run>/manifest.json                      the unsharded run's stages (merge steps included)
//! <run>/manifest.shard-<i>-of-<n>.json     one shard's per-query stages
//! <run>/cache.redb | cache.shard-<i>-of-<n>.redb
//! <run>/tables/<table>/[shard=<i>/]part-<writer>-<seq>.<attempt>.parquet
//! <run>/tables/failures/stage=<stage>/[shard=<i>/]part-<writer>-<seq>.<attempt>.parquet
//! <run>/commits/<stage>/<scope>/<fingerprint>.json              what a stage committed
//! <run>/commits/<stage>/<scope>/<fingerprint>/part-<seq>.json   what a part committed
//! <run>/manifests/<scope>/<revision>.json                       manifest revisions (create-only)
//! <run>/<input>.{parquet,csv,jsonl} | <run>/<input>/ | <run>/inputs/<input>/
//! ```
//!
//! The root may be a local path or an object-store URL (`s3://bucket/run`); [`crate::store`]
//! turns these locations into keys, and [`crate::commit`] says which files a reader may read.

use std::fmt;
use std::path::{Path, PathBuf};

/// One of `count` shards of the sharded stages: the queries with `query_id % count == index` (the
/// items with `item_id mod count == index` for the catalogue's embeddings).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

impl Shard {
    /// Parses `i/n` (0 <= i < n).
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = || format!("--shard {text}: expected i/n with 0 <= i < n, e.g. 0/8");
        let (i, n) = text.split_once('/').ok_or_else(bad)?;
        let (index, count): (u32, u32) = (i.trim().parse().map_err(|_| bad())?, n.trim().parse().map_err(|_| bad())?);
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Self { index, count })
    }
}

impl Shard {
    /// The shard a batch system assigned to this process, if any: a Slurm array task
    /// (`SLURM_ARRAY_TASK_ID` counted from `SLURM_ARRAY_TASK_MIN` in steps of
    /// `SLURM_ARRAY_TASK_STEP`, of `SLURM_ARRAY_TASK_COUNT`), else a Kubernetes Indexed Job pod
    /// (`JOB_COMPLETION_INDEX` of `LREM_SHARD_COUNT`, which the Job's manifest sets: Kubernetes
    /// does not tell a pod the completion count). `env` looks a variable up.
    pub fn from_env(env: impl Fn(&str) -> Option<String>) -> Result<Option<Self>, String> {
        let number = |name: &str| -> Result<Option<u32>, String> {
            env(name)
                .map(|v| v.trim().parse::<u32>().map_err(|_| format!("{name}={v}: expected a non-negative integer")))
                .transpose()
        };
        let required = |name: &str, because: &str| -> Result<u32, String> {
            number(name)?.ok_or_else(|| format!("{because} is set but {name} is not"))
        };
        let (index, count, from) = if let Some(id) = number("SLURM_ARRAY_TASK_ID")? {
            let min = number("SLURM_ARRAY_TASK_MIN")?.unwrap_or(0);
            let step = number("SLURM_ARRAY_TASK_STEP")?.unwrap_or(1).max(1);
            let count = required("SLURM_ARRAY_TASK_COUNT", "SLURM_ARRAY_TASK_ID")?;
            let offset = id
                .checked_sub(min)
                .ok_or_else(|| format!("SLURM_ARRAY_TASK_ID={id} is below SLURM_ARRAY_TASK_MIN={min}"))?;
            (offset / step, count, "SLURM_ARRAY_TASK_ID")
        } else if let Some(index) = number("JOB_COMPLETION_INDEX")? {
            (index, required("LREM_SHARD_COUNT", "JOB_COMPLETION_INDEX")?, "JOB_COMPLETION_INDEX")
        } else {
            return Ok(None);
        };
        if count == 0 || index >= count {
            return Err(format!("{from}: shard {index} of {count} is out of range (0 <= i < n)"));
        }
        Ok(Some(Self { index, count }))
    }
}

impl Shard {
    /// The shard whose manifest is named `name` (`manifest.shard-<i>-of-<n>.json`).
    pub fn from_manifest_name(name: &str) -> Option<Self> {
        let (i, n) = name.strip_prefix("manifest.shard-")?.strip_suffix(".json")?.split_once("-of-")?;
        let shard = Self { index: i.parse().ok()?, count: n.parse().ok()? };
        (shard.index < shard.count).then_some(shard)
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// A part of a table: written by one writer (a partition of a SQL stage; 0 for a streaming
/// stage), numbered in the order it was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Part {
    pub writer: usize,
    pub seq: usize,
}

impl Part {
    /// The name of a part put there by hand (or by [`crate::Triple`] fixtures).
    pub fn file_name(self) -> String {
        format!("part-{:03}-{:05}.parquet", self.writer, self.seq)
    }

    /// The name the part gets when `attempt` writes it: never the name of another attempt's.
    pub fn file_name_of(self, attempt: &str) -> String {
        format!("part-{:03}-{:05}.{attempt}.parquet", self.writer, self.seq)
    }

    /// The part a file name names, if it names one (with or without an attempt).
    pub fn parse(file_name: &str) -> Option<Self> {
        let stem = file_name.strip_prefix("part-")?.strip_suffix(".parquet")?;
        let (numbers, _attempt) = stem.split_once('.').unwrap_or((stem, ""));
        let (writer, seq) = numbers.split_once('-')?;
        Some(Self { writer: writer.parse().ok()?, seq: seq.parse().ok()? })
    }
}

/// Where the pieces of one run live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunDir {
    root: PathBuf,
}

/// Input files are looked for with these extensions, in this order.
pub const INPUT_EXTENSIONS: [&str; 3] = ["parquet", "csv", "jsonl"];

impl RunDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The directory of a table: all of its shards below it.
    pub fn table(&self, table: &str) -> PathBuf {
        self.root.join("tables").join(table)
    }

    /// Where one shard (or the unsharded run) writes `table`.
    pub fn table_of(&self, table: &str, shard: Option<Shard>) -> PathBuf {
        shard_dir(self.table(table), shard)
    }

    /// Where one shard (or the unsharded run) writes the failures of `stage`.
    pub fn failures_of(&self, stage: &str, shard: Option<Shard>) -> PathBuf {
        shard_dir(self.table("failures").join(format!("stage={stage}")), shard)
    }

    /// The copy of the newest manifest of the unsharded run (`None`) or of one shard.
    pub fn manifest(&self, shard: Option<Shard>) -> PathBuf {
        match shard {
            None => self.root.join("manifest.json"),
            Some(s) => self.root.join(format!("manifest.shard-{}-of-{}.json", s.index, s.count)),
        }
    }

    /// The response cache; shards run at once, possibly on other machines, so each has its own.
    pub fn cache(&self, shard: Option<Shard>) -> PathBuf {
        match shard {
            None => self.root.join("cache.redb"),
            Some(s) => self.root.join(format!("cache.shard-{}-of-{}.redb", s.index, s.count)),
        }
    }

    /// Where an input table may lie in the directory, in the order they are tried.
    pub fn input_candidates(&self, table: &str) -> Vec<PathBuf> {
        INPUT_EXTENSIONS
            .iter()
            .map(|ext| self.root.join(format!("{table}.{ext}")))
            .chain([self.root.join(table), self.root.join("inputs").join(table)])
            .collect()
    }
}

fn shard_dir(dir: PathBuf, shard: Option<Shard>) -> PathBuf {
    match shard {
        None => dir,
        Some(s) => dir.join(format!("shard={}", s.index)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_names_round_trip_and_sort_in_write_order() {
        let parts = [Part { writer: 0, seq: 2 }, Part { writer: 0, seq: 10 }, Part { writer: 1, seq: 0 }];
        let mut names: Vec<String> = parts.iter().map(|p| p.file_name()).collect();
        names.sort();
        assert_eq!(names.iter().map(|n| Part::parse(n).unwrap()).collect::<Vec<_>>(), parts);
        assert_eq!(Part::parse("_part-000-00001.json"), None);
        assert_eq!(Part::parse(&parts[1].file_name_of("a7f3")), Some(parts[1]));
        assert_eq!(Shard::from_manifest_name("manifest.shard-2-of-8.json"), Some(Shard { index: 2, count: 8 }));
        assert_eq!(Shard::from_manifest_name("manifest.shard-8-of-8.json"), None);
        assert_eq!(Part::parse("part-0.parquet"), None);
    }

    #[test]
    fn shards_have_their_own_tables_manifest_and_cache() {
        let run = RunDir::new("/r");
        let s = Some(Shard { index: 2, count: 8 });
        assert_eq!(run.table_of("cot", s), Path::new("/r/tables/cot/shard=2"));
        assert_eq!(run.failures_of("cot", None), Path::new("/r/tables/failures/stage=cot"));
        assert_eq!(run.manifest(s), Path::new("/r/manifest.shard-2-of-8.json"));
        assert_eq!(run.cache(s), Path::new("/r/cache.shard-2-of-8.redb"));
    }

    #[test]
    fn shard_parse_names_the_flag() {
        assert_eq!(Shard::parse("3/8"), Ok(Shard { index: 3, count: 8 }));
        for bad in ["8/8", "1", "a/2", "0/0"] {
            assert!(Shard::parse(bad).unwrap_err().starts_with(&format!("--shard {bad}:")));
        }
    }

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string())
    }

    #[test]
    fn shards_come_from_slurm_arrays_and_indexed_jobs() {
        assert_eq!(Shard::from_env(env(&[])), Ok(None));
        // `--array=0-3`
        let slurm = [("SLURM_ARRAY_TASK_ID", "2"), ("SLURM_ARRAY_TASK_COUNT", "4"), ("SLURM_ARRAY_TASK_MIN", "0")];
        assert_eq!(Shard::from_env(env(&slurm)), Ok(Some(Shard { index: 2, count: 4 })));
        // `--array=1-7:2` (tasks 1, 3, 5, 7)
        let stepped = [
            ("SLURM_ARRAY_TASK_ID", "5"),
            ("SLURM_ARRAY_TASK_COUNT", "4"),
            ("SLURM_ARRAY_TASK_MIN", "1"),
            ("SLURM_ARRAY_TASK_STEP", "2"),
        ];
        assert_eq!(Shard::from_env(env(&stepped)), Ok(Some(Shard { index: 2, count: 4 })));
        let k8s = [("JOB_COMPLETION_INDEX", "0"), ("LREM_SHARD_COUNT", "3")];
        assert_eq!(Shard::from_env(env(&k8s)), Ok(Some(Shard { index: 0, count: 3 })));
    }

    #[test]
    fn a_shard_from_the_environment_that_cannot_be_right_names_the_variable() {
        let cases: [(&[(&str, &str)], &str); 4] = [
            (&[("JOB_COMPLETION_INDEX", "1")], "LREM_SHARD_COUNT is not"),
            (&[("SLURM_ARRAY_TASK_ID", "x"), ("SLURM_ARRAY_TASK_COUNT", "2")], "SLURM_ARRAY_TASK_ID=x"),
            (&[("SLURM_ARRAY_TASK_ID", "4"), ("SLURM_ARRAY_TASK_COUNT", "4")], "SLURM_ARRAY_TASK_ID: shard 4 of 4"),
            (&[("JOB_COMPLETION_INDEX", "0"), ("LREM_SHARD_COUNT", "0")], "JOB_COMPLETION_INDEX: shard 0 of 0"),
        ];
        for (vars, expected) in cases {
            let err = Shard::from_env(env(vars)).unwrap_err();
            assert!(err.contains(expected), "{err:?} does not contain {expected:?}");
        }
    }
}
