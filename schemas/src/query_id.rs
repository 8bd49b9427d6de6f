//! `query_id`: the key every stage after mining is partitioned by, shared by both halves.
//!
//! The hash is XXH3-64 of the normalised text. XXH3 is a published, versioned algorithm, so an id
//! written today by the pipeline is the same id the trainer computes next year.

use unicode_normalization::UnicodeNormalization;

/// Unicode NFKC, full case folding, whitespace runs collapsed to one space, ends trimmed.
///
/// Case folding can produce text that is no longer NFKC ("ﬃ" folds after NFKC, "ẞ" → "ss"), so
/// NFKC runs again after folding: this is Unicode's `NFKC_Casefold` up to default-ignorables.
pub fn normalize_query(text: &str) -> String {
    let nfkc: String = text.nfkc().collect();
    let folded = caseless::default_case_fold_str(&nfkc);
    let renormalized: String = folded.nfkc().collect();
    renormalized.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Stable 64-bit id of a query: XXH3-64 of [`normalize_query`].
pub fn query_id(text: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64(normalize_query(text).as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisation_folds_case_width_and_whitespace() {
        assert_eq!(normalize_query("  Green\tTEA \n 500g "), "green tea 500g");
        // Full-width letters and digits (NFKC), German sharp s (full case folding).
        assert_eq!(normalize_query("ＧＲＥＥＮ ｔｅａ ５００ｇ"), "green tea 500g");
        assert_eq!(normalize_query("STRAẞE"), "strasse");
        assert_eq!(normalize_query("ﬁsh oil"), "fish oil");
    }

    #[test]
    fn equivalent_queries_share_an_id() {
        assert_eq!(query_id("Green Tea"), query_id("green   tea"));
        assert_ne!(query_id("green tea"), query_id("black tea"));
    }

    #[test]
    fn id_is_pinned() {
        // Changing this value silently re-keys every run directory; it must never change.
        assert_eq!(query_id("green tea 500g"), xxhash_rust::xxh3::xxh3_64(b"green tea 500g"));
        assert_eq!(format!("{:016x}", query_id("")), "2d06800538d394c2");
    }
}
