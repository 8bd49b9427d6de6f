//! The DAG's own invariants: order, table contracts, and the phases of a sharded run.

use lrem_pipeline::stages::{DAG, PHASES, Scope, find, position};

#[test]
fn every_upstream_comes_earlier_and_every_table_is_in_the_contract() {
    for (i, stage) in DAG.iter().enumerate() {
        for upstream in stage.upstream() {
            let at = position(find(upstream).unwrap());
            assert!(at < i, "{} reads {upstream}, which runs after it", stage.name());
        }
        for table in stage.tables() {
            lrem_schemas::table(table).unwrap();
        }
    }
    let mut names: Vec<_> = DAG.iter().map(|s| s.name()).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), DAG.len());
}

#[test]
fn the_phases_cover_the_dag_and_a_shard_reads_only_earlier_phases_or_its_own_scope() {
    let mut phase_of = std::collections::BTreeMap::new();
    let mut next = 0;
    for (p, phase) in PHASES.iter().enumerate() {
        let end = phase.until.map_or(DAG.len(), |u| position(find(u).unwrap()) + 1);
        for stage in &DAG[next..end] {
            assert_eq!(phase.sharded, stage.scope() != Scope::Once, "{} in phase {}", stage.name(), phase.name);
            phase_of.insert(stage.name(), p);
        }
        next = end;
    }
    assert_eq!(next, DAG.len(), "the last phase runs to the end");
    for stage in DAG {
        for upstream in stage.upstream() {
            let same_phase = phase_of[upstream] == phase_of[stage.name()];
            let same_scope = find(upstream).unwrap().scope() == stage.scope();
            assert!(!same_phase || same_scope, "{} reads {upstream} of another scope in its phase", stage.name());
        }
    }
}
