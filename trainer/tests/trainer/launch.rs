//! The data-parallel launch: flags, torchrun's variables and Slurm's, in that order.

use lrem_trainer::dist::*;

fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
    move |name| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string())
}

#[test]
fn flags_win_over_torchrun_which_wins_over_slurm() {
    let vars =
        [("WORLD_SIZE", "4"), ("RANK", "2"), ("SLURM_NTASKS", "8"), ("SLURM_PROCID", "5"), ("MASTER_ADDR", "node1")];
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
