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
    let mut out = String::with_capacity(text.len());
    normalize_query_into(text, &mut out);
    out
}

/// [`normalize_query`] into `out` (cleared first), so a column is normalised without a
/// heap allocation per row.
pub fn normalize_query_into(text: &str, out: &mut String) {
    out.clear();
    // ASCII is NFKC already and folds to its lower case: the common case skips both passes.
    let ascii = text.is_ascii();
    let folded: std::borrow::Cow<str> = if ascii {
        text.into()
    } else {
        let nfkc: String = text.nfkc().collect();
        caseless::default_case_fold_str(&nfkc).nfkc().collect::<String>().into()
    };
    for word in folded.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    if ascii {
        out.make_ascii_lowercase();
    }
}

/// Stable 64-bit id of a query: XXH3-64 of [`normalize_query`].
pub fn query_id(text: &str) -> u64 {
    query_id_with(text, &mut String::new())
}

/// [`query_id`] with a caller-owned buffer for the normalised text.
pub fn query_id_with(text: &str, buffer: &mut String) -> u64 {
    normalize_query_into(text, buffer);
    xxhash_rust::xxh3::xxh3_64(buffer.as_bytes())
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
    fn the_ascii_path_agrees_with_the_unicode_path() {
        // A string with one non-ASCII character takes the Unicode path; appending it to ASCII
        // text must not change how the ASCII part is normalised.
        for text in ["  Green\tTEA \n 500g ", "A\x0bB\x0cC\rD", "ÄPFEL", "", "   ", "MiXeD-Case_42"] {
            let unicode = normalize_query(&format!("{text} é"));
            let ascii = normalize_query(text);
            assert_eq!(unicode.trim_end_matches('é').trim_end(), ascii, "{text:?}");
        }
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
