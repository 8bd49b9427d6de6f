//! Held out by need: which hard queries of the sample world may be trained on, which choose the
//! schedule, and which only evaluation sees. Both halves compute it from the `needs` table and a
//! seed, so the pipeline's training data and the trainer's check agree without a shared file.
//!
//! A need goes, by a seeded hash of its id, to evaluation (every phrasing unseen), to validation
//! (every phrasing, for choosing the schedule; never trained on, never reported), or to training.
//! Of a training need, the last phrasing is held out too: evaluation on it measures unseen
//! phrasings of needs the model was trained on.

/// Where a hard query of the sample world goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Holdout {
    Train,
    Validation,
    /// A phrasing of a need evaluation holds out whole.
    UnseenNeed,
    /// The held-out phrasing of a training need.
    UnseenPhrasing,
}

impl Holdout {
    pub fn as_str(self) -> &'static str {
        match self {
            Holdout::Train => "train",
            Holdout::Validation => "validation",
            Holdout::UnseenNeed => "unseen_need",
            Holdout::UnseenPhrasing => "unseen_phrasing",
        }
    }

    /// Whether training may see it (cold start and RL alike).
    pub fn trainable(self) -> bool {
        self == Holdout::Train
    }
}

/// Share of needs evaluation holds out whole, and share used for validation.
pub const UNSEEN_NEEDS: f64 = 0.25;
pub const VALIDATION_NEEDS: f64 = 0.10;

/// Where phrasing `phrasing` (0-based, of `phrasings`) of need `need_id` goes, for `seed`.
pub fn holdout(need_id: i32, phrasing: i32, phrasings: i32, seed: u64) -> Holdout {
    let bytes = [need_id.to_le_bytes().as_slice(), seed.to_le_bytes().as_slice()].concat();
    let u = (xxhash_rust::xxh3::xxh3_64(&bytes) >> 11) as f64 / (1u64 << 53) as f64;
    if u < UNSEEN_NEEDS {
        Holdout::UnseenNeed
    } else if u < UNSEEN_NEEDS + VALIDATION_NEEDS {
        Holdout::Validation
    } else if phrasing == phrasings - 1 && phrasings > 1 {
        Holdout::UnseenPhrasing
    } else {
        Holdout::Train
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_are_near_their_targets_and_a_need_is_never_split_across_unseen_and_train() {
        let needs = 10_000;
        let count = |h: Holdout| (0..needs).filter(|&n| holdout(n, 0, 3, 0) == h).count() as f64 / needs as f64;
        assert!((count(Holdout::UnseenNeed) - UNSEEN_NEEDS).abs() < 0.02);
        assert!((count(Holdout::Validation) - VALIDATION_NEEDS).abs() < 0.02);
        for n in 0..1000 {
            let all: Vec<Holdout> = (0..3).map(|p| holdout(n, p, 3, 0)).collect();
            match all[0] {
                Holdout::Train => assert_eq!(all, [Holdout::Train, Holdout::Train, Holdout::UnseenPhrasing]),
                whole => assert!(all.iter().all(|&h| h == whole), "{n}: {all:?}"),
            }
        }
        assert_ne!(
            (0..100).map(|n| holdout(n, 0, 3, 0)).collect::<Vec<_>>(),
            (0..100).map(|n| holdout(n, 0, 3, 1)).collect::<Vec<_>>()
        );
    }
}
